//! The route table: every route's method and template, and path matching.
//! Series are named by these templates, never by raw paths.

/// A matched route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Route {
    /// `GET /`
    Index,
    /// `GET /notes/{slug}`
    Note,
    /// `GET /feed.xml`
    FeedRss,
    /// `GET /feed.atom`
    FeedAtom,
    /// `GET /feed.json`
    FeedJson,
    /// `GET /search`
    Search,
    /// `GET /health`
    Health,
    /// `GET /style.css`
    Style,
    /// `POST /micropub`
    MicropubPost,
    /// `GET /micropub`
    MicropubQuery,
    /// `GET /admin/login`
    LoginForm,
    /// `POST /admin/login`
    Login,
    /// `POST /admin/logout`
    Logout,
    /// `GET /admin`
    Admin,
    /// `POST /admin/notes`
    AdminCreate,
    /// `GET /admin/notes/{id}/edit`
    AdminEdit,
    /// `POST /admin/notes/{id}`
    AdminUpdate,
    /// `POST /admin/notes/{id}/delete`
    AdminDelete,
    /// `GET /admin/performance`
    Dashboard,
    /// `GET /admin/performance.json`
    DashboardJson,
    /// `GET /admin/performance.csv`
    DashboardCsv,
    /// `GET /metrics`
    Metrics,
    /// Test-only: a handler that panics (enabled by tests alone).
    TestPanic,
    /// Anything else: one shared series.
    Unmatched,
}

impl Route {
    /// Every route, in discriminant order.
    pub const ALL: [Route; 24] = [
        Route::Index,
        Route::Note,
        Route::FeedRss,
        Route::FeedAtom,
        Route::FeedJson,
        Route::Search,
        Route::Health,
        Route::Style,
        Route::MicropubPost,
        Route::MicropubQuery,
        Route::LoginForm,
        Route::Login,
        Route::Logout,
        Route::Admin,
        Route::AdminCreate,
        Route::AdminEdit,
        Route::AdminUpdate,
        Route::AdminDelete,
        Route::Dashboard,
        Route::DashboardJson,
        Route::DashboardCsv,
        Route::Metrics,
        Route::TestPanic,
        Route::Unmatched,
    ];

    /// Method and path template: the series name.
    pub fn template(self) -> &'static str {
        match self {
            Route::Index => "GET /",
            Route::Note => "GET /notes/{slug}",
            Route::FeedRss => "GET /feed.xml",
            Route::FeedAtom => "GET /feed.atom",
            Route::FeedJson => "GET /feed.json",
            Route::Search => "GET /search",
            Route::Health => "GET /health",
            Route::Style => "GET /style.css",
            Route::MicropubPost => "POST /micropub",
            Route::MicropubQuery => "GET /micropub",
            Route::LoginForm => "GET /admin/login",
            Route::Login => "POST /admin/login",
            Route::Logout => "POST /admin/logout",
            Route::Admin => "GET /admin",
            Route::AdminCreate => "POST /admin/notes",
            Route::AdminEdit => "GET /admin/notes/{id}/edit",
            Route::AdminUpdate => "POST /admin/notes/{id}",
            Route::AdminDelete => "POST /admin/notes/{id}/delete",
            Route::Dashboard => "GET /admin/performance",
            Route::DashboardJson => "GET /admin/performance.json",
            Route::DashboardCsv => "GET /admin/performance.csv",
            Route::Metrics => "GET /metrics",
            Route::TestPanic => "GET /__test/panic",
            Route::Unmatched => "(unmatched)",
        }
    }

    /// The method and path of the template, split.
    pub fn method_and_path(self) -> (&'static str, &'static str) {
        self.template()
            .split_once(' ')
            .unwrap_or(("", self.template()))
    }
}

/// The result of matching: the route and its one path parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    /// The route.
    pub route: Route,
    /// `{slug}` or `{id}`, when the template has one.
    pub param: Option<String>,
    /// The path exists but not for this method (405).
    pub wrong_method: bool,
}

/// Matches a method and a path (without query string). `HEAD` matches `GET`.
pub fn match_route(method: &str, path: &str) -> Matched {
    let method = if method == "HEAD" { "GET" } else { method };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut wrong_method = false;
    for route in Route::ALL {
        let (m, template) = route.method_and_path();
        if route == Route::Unmatched {
            continue;
        }
        let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        if t.len() != segments.len() {
            continue;
        }
        let mut param = None;
        let fits = t.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') {
                if s.is_empty() {
                    return false;
                }
                param = Some(s.to_string());
                true
            } else {
                t == s
            }
        });
        if !fits {
            continue;
        }
        if m == method {
            return Matched {
                route,
                param,
                wrong_method: false,
            };
        }
        wrong_method = true;
    }
    Matched {
        route: Route::Unmatched,
        param: None,
        wrong_method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn templates_and_params() {
        let m = match_route("GET", "/notes/hello-world");
        assert_eq!(
            (m.route, m.param.as_deref()),
            (Route::Note, Some("hello-world"))
        );
        assert_eq!(match_route("HEAD", "/").route, Route::Index);
        assert_eq!(
            match_route("POST", "/admin/notes/7/delete").route,
            Route::AdminDelete
        );
        assert_eq!(
            match_route("POST", "/admin/notes/7").route,
            Route::AdminUpdate
        );
        assert_eq!(
            match_route("GET", "/admin/notes/7/edit").param.as_deref(),
            Some("7")
        );
        let m = match_route("DELETE", "/");
        assert_eq!((m.route, m.wrong_method), (Route::Unmatched, true));
        let m = match_route("GET", "/nope/x");
        assert_eq!((m.route, m.wrong_method), (Route::Unmatched, false));
        assert_eq!(match_route("GET", "/notes/").route, Route::Unmatched);
    }
}

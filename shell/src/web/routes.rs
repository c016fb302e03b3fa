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
    /// Anything else: one shared series.
    Unmatched,
    /// Test builds only: `GET /__test/panic`, a handler that panics.
    #[cfg(feature = "test-routes")]
    TestPanic,
    /// Test builds only: `GET /__test/status/{code}`, answers that status.
    #[cfg(feature = "test-routes")]
    TestStatus,
    /// Test builds only: `GET /__test/sleep/{ms}`, answers after `ms`.
    #[cfg(feature = "test-routes")]
    TestSleep,
    /// Test builds only: `GET /__test/slow-query/{ms}`, one SQL statement
    /// that runs for `ms`.
    #[cfg(feature = "test-routes")]
    TestSlowQuery,
    /// Test builds only: `GET /__test/bytes/{kib}`, a body of `kib` KiB.
    #[cfg(feature = "test-routes")]
    TestBytes,
}

impl Route {
    /// Every production route, in discriminant order.
    pub const ALL: [Route; 23] = [
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
        Route::Unmatched,
    ];

    /// The test builds' routes (none in a production build).
    #[cfg(feature = "test-routes")]
    pub const TEST_ROUTES: &'static [Route] = &[
        Route::TestPanic,
        Route::TestStatus,
        Route::TestSleep,
        Route::TestSlowQuery,
        Route::TestBytes,
    ];
    /// The test builds' routes (none in a production build).
    #[cfg(not(feature = "test-routes"))]
    pub const TEST_ROUTES: &'static [Route] = &[];

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
            Route::Unmatched => "(unmatched)",
            #[cfg(feature = "test-routes")]
            Route::TestPanic => "GET /__test/panic",
            #[cfg(feature = "test-routes")]
            Route::TestStatus => "GET /__test/status/{code}",
            #[cfg(feature = "test-routes")]
            Route::TestSleep => "GET /__test/sleep/{ms}",
            #[cfg(feature = "test-routes")]
            Route::TestSlowQuery => "GET /__test/slow-query/{ms}",
            #[cfg(feature = "test-routes")]
            Route::TestBytes => "GET /__test/bytes/{kib}",
        }
    }

    /// The route as the monitor knows it.
    pub fn key(self) -> crate::monitoring::RouteKey {
        crate::monitoring::RouteKey {
            index: self as usize,
            template: self.template(),
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

/// Whether `template`'s path fits `segments`; its one parameter if so.
fn fit(template: &str, segments: &[&str]) -> Option<Option<String>> {
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    if t.len() != segments.len() {
        return None;
    }
    let mut param = None;
    for (t, s) in t.iter().zip(segments) {
        if t.starts_with('{') {
            if s.is_empty() {
                return None;
            }
            param = Some(s.to_string());
        } else if t != s {
            return None;
        }
    }
    Some(param)
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

/// Matches a method and a path (without query string). `HEAD` matches `GET`.
pub fn match_route(method: &str, path: &str) -> Matched {
    let method = if method == "HEAD" { "GET" } else { method };
    let segments = segments(path);
    let mut wrong_method = false;
    for &route in Route::ALL.iter().chain(Route::TEST_ROUTES) {
        if route == Route::Unmatched {
            continue;
        }
        let (m, template) = route.method_and_path();
        let Some(param) = fit(template, &segments) else {
            continue;
        };
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

/// The methods `path` answers, for a 405's `Allow` header (RFC 9110
/// 15.5.6): `GET` brings `HEAD`.
pub fn allowed_methods(path: &str) -> String {
    let segments = segments(path);
    let mut methods: Vec<&str> = Vec::new();
    for &route in Route::ALL.iter().chain(Route::TEST_ROUTES) {
        let (m, template) = route.method_and_path();
        if route == Route::Unmatched || fit(template, &segments).is_none() {
            continue;
        }
        let add: &[&str] = if m == "GET" { &["GET", "HEAD"] } else { &[m] };
        for &a in add {
            if !methods.contains(&a) {
                methods.push(a);
            }
        }
    }
    methods.join(", ")
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
        assert_eq!(allowed_methods("/micropub"), "POST, GET, HEAD");
        assert_eq!(allowed_methods("/"), "GET, HEAD");
        let m = match_route("GET", "/nope/x");
        assert_eq!((m.route, m.wrong_method), (Route::Unmatched, false));
        // Test routes exist in test builds only: a production build
        // matches nothing under /__test.
        let test = match_route("GET", "/__test/panic").route;
        assert_eq!(test == Route::Unmatched, Route::TEST_ROUTES.is_empty());
        assert_eq!(match_route("GET", "/notes/").route, Route::Unmatched);
    }
}

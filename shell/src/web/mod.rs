//! The web layer: one module per area, dispatched from [`App::handle`].

pub mod admin;
pub mod auth;
pub mod charts;
pub mod dashboard;
pub mod feeds;
pub mod markdown;
pub mod metrics;
pub mod micropub;
pub mod public;
pub mod ratelimit;
pub mod routes;
#[cfg(feature = "test-routes")]
pub mod test_routes;
pub mod views;

use std::sync::Arc;

use rouille::{Request, Response};

use crate::db::{Db, DbError};
use crate::monitoring::Monitor;
use ratelimit::RateLimiter;
use routes::{match_route, Matched, Route};

/// The site's settings, as the pages use them (`config` builds them from
/// `STARPUNK_*`).
#[derive(Clone, PartialEq)]
pub struct Site {
    /// `STARPUNK_SITE_URL`, without a trailing slash.
    pub url: String,
    /// `STARPUNK_SITE_NAME`.
    pub name: String,
    /// `STARPUNK_DATA_DIR` (the dashboard shows the files' sizes).
    pub data_dir: std::path::PathBuf,
    /// `STARPUNK_METRICS_TOKEN`: a bearer token that opens `/metrics`.
    pub metrics_token: Option<String>,
}

// The token never reaches a log, not even through `{:?}`.
impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("data_dir", &self.data_dir)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

/// Everything a request handler needs.
pub struct App {
    /// The site's own settings.
    pub site: Site,
    /// The database.
    pub db: Db,
    /// The monitor (disabled inside when monitoring is off).
    pub monitor: Arc<Monitor>,
    /// Login attempts per client address.
    pub login_limit: RateLimiter,
    /// Dashboard and export requests per client address.
    pub dashboard_limit: RateLimiter,
    /// Password checks, site-wide (whatever the addresses).
    pub password_checks: RateLimiter,
    /// Wrong Micropub and `/metrics` bearer tokens per client address: a
    /// client that has used them up gets 429 before its token is looked
    /// at; a correct token never uses one.
    pub token_failures: RateLimiter,
    /// Wrong bearer tokens site-wide (guesses spread over addresses).
    pub token_failures_global: RateLimiter,
}

impl App {
    /// Runs `check` (is this bearer token the right one?) unless the
    /// client, or the site, has used up its wrong tokens: `Err(seconds)`
    /// to wait then (the token is not looked at). A wrong token uses one.
    pub fn check_token(&self, req: &Request, check: impl FnOnce() -> bool) -> Result<bool, u64> {
        let ip = req.remote_addr().ip();
        self.token_failures.peek(ip)?;
        self.token_failures_global.peek_global()?;
        let ok = check();
        if !ok {
            let _ = self.token_failures.check(ip);
            let _ = self.token_failures_global.check_global();
        }
        Ok(ok)
    }
}

/// An error a handler returns; mapped to a status in one place.
#[derive(Debug)]
pub enum WebError {
    /// 400, with a message for the client.
    BadRequest(String),
    /// 404.
    NotFound,
    /// The database failed: 503 if busy, 500 otherwise.
    Db(DbError),
}

impl From<DbError> for WebError {
    fn from(e: DbError) -> Self {
        WebError::Db(e)
    }
}

impl WebError {
    fn into_response(self, site_name: &str) -> Response {
        let (status, message) = match &self {
            WebError::BadRequest(m) => (400, m.clone()),
            WebError::NotFound => (404, "Not found".to_string()),
            WebError::Db(e) if e.is_busy() => (503, "Busy, try again in a moment".to_string()),
            WebError::Db(e) if e.is_disk_full() => {
                crate::db::log_disk_full(e);
                (
                    503,
                    "The disk is full: nothing was saved. Try again once space is freed"
                        .to_string(),
                )
            }
            WebError::Db(e) if e.is_unwritable() => {
                crate::elog!("starpunk: {e}");
                (503, "The database cannot be written right now".to_string())
            }
            WebError::Db(e) => {
                crate::elog!("starpunk: {e}");
                (500, "Internal server error".to_string())
            }
        };
        let body = views::page(site_name, &message, None, maud::html! { h2 { (message) } });
        let response = Response::html(body.into_string()).with_status_code(status);
        if status == 503 {
            response.with_unique_header("Retry-After", "2")
        } else {
            response
        }
    }
}

/// A handler's result.
pub type WebResult = Result<Response, WebError>;

/// The content security policy of the admin pages: nothing but this
/// site's own stylesheet, forms and images, no scripts, no framing.
pub const ADMIN_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers every response carries: no framing (clickjacking), no MIME
/// sniffing, no full URLs in the Referer of outgoing links; a strict CSP on
/// `/admin` pages.
fn with_security_headers(response: Response, admin: bool) -> Response {
    let response = response
        .with_unique_header("X-Frame-Options", "DENY")
        .with_unique_header("X-Content-Type-Options", "nosniff")
        .with_unique_header("Referrer-Policy", "strict-origin-when-cross-origin");
    if admin {
        response.with_unique_header("Content-Security-Policy", ADMIN_CSP)
    } else {
        response
    }
}

impl App {
    /// Handles one request: routing, instrumentation, errors.
    pub fn handle(&self, request: &Request) -> Response {
        let matched = match_route(request.method(), &request.url());
        let route = matched.route;
        let response = self
            .monitor
            .around_request(route.key(), || self.dispatch(request, &matched));
        with_security_headers(response, request.url().starts_with("/admin"))
    }

    fn dispatch(&self, req: &Request, m: &Matched) -> Response {
        let param = m.param.as_deref().unwrap_or("");
        let result = match m.route {
            Route::Index => public::index(self, req),
            Route::Note => public::note(self, param),
            Route::Search => public::search(self, req),
            Route::Health => Ok(public::health(self, req)),
            Route::Style => Ok(Response::from_data("text/css; charset=utf-8", views::STYLE)
                .with_public_cache(3600)),
            Route::FeedRss => feeds::rss(self, req),
            Route::FeedAtom => feeds::atom(self, req),
            Route::FeedJson => feeds::json(self, req),
            Route::MicropubPost => Ok(micropub::post(self, req)),
            Route::MicropubQuery => Ok(micropub::query(self, req)),
            Route::LoginForm => Ok(auth::login_form(self, req, None)),
            Route::Login => auth::login(self, req),
            Route::Logout => auth::logout(self, req),
            Route::Admin => admin::index(self, req),
            Route::AdminCreate => admin::create(self, req),
            Route::AdminEdit => admin::edit_form(self, req, param),
            Route::AdminUpdate => admin::update(self, req, param),
            Route::AdminDelete => admin::delete(self, req, param),
            Route::Dashboard => dashboard::page(self, req),
            Route::DashboardJson => dashboard::json(self, req),
            Route::DashboardCsv => dashboard::csv(self, req),
            Route::Metrics => Ok(metrics::handle(self, req)),
            #[cfg(feature = "test-routes")]
            Route::TestPanic
            | Route::TestStatus
            | Route::TestSleep
            | Route::TestSlowQuery
            | Route::TestBytes => test_routes::handle(self, m.route, param),
            Route::Unmatched if m.wrong_method => Ok(Response::text("Method not allowed\n")
                .with_status_code(405)
                .with_unique_header("Allow", routes::allowed_methods(&req.url()))),
            Route::Unmatched => Err(WebError::NotFound),
        };
        result.unwrap_or_else(|e| e.into_response(&self.site.name))
    }

    /// The absolute URL of `path` on this site.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.site.url, path)
    }
}

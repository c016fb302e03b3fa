//! Starting the blog: database, credentials, monitor, ticker, server.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::http::{HttpSettings, Refusal, Server};
use crate::monitoring::request::refusals::Reason;
use crate::monitoring::Monitor;
use crate::web::auth::{hash_password, random_token, sha256_hex, MICROPUB_KEY, PASSWORD_KEY};
use crate::web::ratelimit::RateLimiter;
use crate::web::routes::Route;
use crate::web::{App, Site};

/// Settings key: set once the generated credentials were printed.
pub const ANNOUNCED_KEY: &str = "credentials_announced";

/// Credentials generated on this start, to print once.
#[derive(Debug, Default)]
pub struct Generated {
    /// Credentials were generated on an earlier start that stopped before
    /// printing them: the owner must set them (they cannot be shown: only
    /// hashes are stored).
    pub never_shown: bool,
    /// The new admin password, if one was generated.
    pub admin_password: Option<String>,
    /// The new Micropub token, if one was generated.
    pub micropub_token: Option<String>,
}

/// A running blog.
pub struct Running {
    /// The HTTP server.
    pub server: Server,
    /// The application state.
    pub app: Arc<App>,
    /// What was generated on this start.
    pub generated: Generated,
}

/// Why the blog could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database could not be opened or migrated.
    Db(DbError),
    /// The address could not be bound.
    Bind(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Db(e) => write!(f, "{e}"),
            StartError::Bind(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A built blog, not yet serving: the app and what the front needs to
/// serve it. Derefs to the [`App`].
pub struct Blog {
    /// The application state.
    pub app: App,
    /// `STARPUNK_BIND`.
    pub bind: SocketAddr,
    /// The HTTP front's limits and timeouts.
    pub http: HttpSettings,
}

impl Deref for Blog {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

impl DerefMut for Blog {
    fn deref_mut(&mut self) -> &mut App {
        &mut self.app
    }
}

/// Builds the app (database, credentials, monitor) without serving.
pub fn build(config: Config) -> Result<(Blog, Generated), StartError> {
    let monitor = Arc::new(Monitor::new(&config.perf));
    let db = Db::open(&config.data_dir, monitor.clone()).map_err(StartError::Db)?;
    monitor.open_history(&config.data_dir);
    let conn = db.writer().map_err(StartError::Db)?;
    let generated = Generated {
        admin_password: ensure_secret(
            &conn,
            PASSWORD_KEY,
            config.admin_password.as_deref(),
            12,
            hash_password,
            crate::web::auth::verify_password,
        )
        .map_err(StartError::Db)?,
        micropub_token: ensure_secret(
            &conn,
            MICROPUB_KEY,
            config.micropub_token.as_deref(),
            24,
            sha256_hex,
            |secret, stored| stored == sha256_hex(secret),
        )
        .map_err(StartError::Db)?,
        never_shown: false,
    };
    let announced = conn
        .setting(ANNOUNCED_KEY)
        .map_err(StartError::Db)?
        .is_some();
    let mut generated = generated;
    generated.never_shown = !announced
        && generated.admin_password.is_none()
        && generated.micropub_token.is_none()
        && (config.admin_password.is_none() || config.micropub_token.is_none());
    if config.admin_password.is_some() && config.micropub_token.is_some() {
        // Both configured: nothing of ours to announce, now or later.
        conn.set_setting(ANNOUNCED_KEY, "configured")
            .map_err(StartError::Db)?;
    }
    drop(conn);
    let app = App {
        site: Site {
            url: config.site_url,
            name: config.site_name,
            data_dir: config.data_dir,
            metrics_token: config.metrics_token,
        },
        db,
        monitor,
        login_limit: RateLimiter::new(10, 10),
        dashboard_limit: RateLimiter::new(120, 600),
        password_checks: RateLimiter::new(20, 60),
        token_failures: RateLimiter::new(10, 10),
        token_failures_global: RateLimiter::new(60, 120),
    };
    let blog = Blog {
        app,
        bind: config.bind,
        http: config.http,
    };
    Ok((blog, generated))
}

/// Stores only a hash of a secret under `key`: the configured secret
/// (re-hashed only when the stored hash no longer matches it), or, when none
/// is configured and none is stored yet, a generated one of `random_bytes`,
/// returned so it can be printed once.
fn ensure_secret(
    conn: &crate::db::Conn<'_>,
    key: &str,
    configured: Option<&str>,
    random_bytes: usize,
    hash: fn(&str) -> String,
    matches: fn(&str, &str) -> bool,
) -> Result<Option<String>, DbError> {
    let stored = conn.setting(key)?;
    match (configured, stored) {
        (Some(secret), stored) => {
            if !stored.is_some_and(|h| matches(secret, &h)) {
                conn.set_setting(key, &hash(secret))?;
            }
            Ok(None)
        }
        (None, Some(_)) => Ok(None),
        (None, None) => {
            let secret = random_token(random_bytes);
            conn.set_setting(key, &hash(&secret))?;
            Ok(Some(secret))
        }
    }
}

/// The route templates alert rules may name (handed to
/// [`Config::load`]: configuration knows no web layer).
pub fn route_templates() -> Vec<&'static str> {
    Route::ALL.iter().map(|r| r.template()).collect()
}

/// Binds `blog.bind`, serves the blog and starts the monitor's ticker.
pub fn serve(blog: Blog, generated: Generated) -> Result<Running, StartError> {
    let listener = crate::http::bind(blog.bind).map_err(StartError::Bind)?;
    serve_on(listener, blog, generated)
}

/// Serves `app` on a bound listener and starts the monitor's ticker.
pub fn serve_on(
    listener: std::net::TcpListener,
    blog: Blog,
    generated: Generated,
) -> Result<Running, StartError> {
    let Blog { app, http, .. } = blog;
    let app = Arc::new(app);
    let handler_app = app.clone();
    let monitor = app.monitor.clone();
    let server = Server::start_on(
        listener,
        http,
        // The handler, then `materialise` (the front's: reads the body into
        // memory), with the monitor learning the body's length from it
        // (`Monitor::measure_body`) and the front's waits before it.
        Arc::new(move |req, arrival, materialise| {
            let monitor = &handler_app.monitor;
            monitor.note_arrival(arrival.body, arrival.queued);
            monitor.measure_body(|| handler_app.handle(req), materialise)
        }),
        // What the front refused or timed out: counted by reason, apart
        // from the routes.
        Arc::new(move |_head, why, _bytes, _took| monitor.record_refused(refusal_reason(why))),
    )
    .map_err(StartError::Bind)?;
    app.monitor.set_site(&app.site.url);
    spawn_ticker(Arc::downgrade(&app));
    Ok(Running {
        server,
        app,
        generated,
    })
}

/// The monitor's name for why the front answered a request itself.
fn refusal_reason(why: Refusal) -> Reason {
    match why {
        Refusal::BadRequest => Reason::BadRequest,
        Refusal::BodyTimeout => Reason::BodyTimeout,
        Refusal::BodyTooLarge => Reason::BodyTooLarge,
        Refusal::UriTooLong => Reason::UriTooLong,
        Refusal::HeadTooLarge => Reason::HeadTooLarge,
        Refusal::BodyBudget => Reason::BodyBudget,
        Refusal::ResponseBudget => Reason::ResponseBudget,
        Refusal::Connections => Reason::Connections,
        Refusal::ClientConnections => Reason::ClientConnections,
    }
}

/// Binds first (a busy port changes nothing stored), then builds and
/// serves. Without a configured site URL, the site is the bound address.
pub fn start(mut config: Config) -> Result<Running, StartError> {
    let listener = crate::http::bind(config.bind).map_err(StartError::Bind)?;
    if !config.site_url_explicit {
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        config.site_url = crate::config::site_url_for(addr);
    }
    let (app, generated) = build(config)?;
    serve_on(listener, app, generated)
}

/// Records that the generated credentials were shown (call after printing
/// them), so a later start does not warn that they never were.
pub fn mark_announced(app: &App) -> Result<(), DbError> {
    app.db.writer()?.set_setting(ANNOUNCED_KEY, "printed")
}

/// Seconds between the ticker's query-plan rounds.
const PLAN_EVERY_SECONDS: u64 = 5;

/// Once a second: window checkpoints and memory samples; every
/// [`PLAN_EVERY_SECONDS`] the plans of new slow patterns. Ends with the app.
fn spawn_ticker(app: Weak<App>) {
    let _ = std::thread::Builder::new()
        .name("starpunk-ticker".into())
        .spawn(move || {
            let mut second = 0u64;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                second += 1;
                match app.upgrade() {
                    // A bug in a tick must not end the ticker (and with it
                    // the window, the history and the alerts).
                    Some(app) => {
                        let tick = std::panic::AssertUnwindSafe(|| {
                            app.monitor.tick(second);
                            // Query plans of the patterns seen slow, off
                            // the request path.
                            if second.is_multiple_of(PLAN_EVERY_SECONDS) {
                                app.db.explain_wanted();
                            }
                        });
                        if std::panic::catch_unwind(tick).is_err() {
                            app.monitor.recover();
                            crate::elog!(
                                "starpunk: a monitor tick failed; the next one runs as usual"
                            );
                        }
                    }
                    None => return,
                }
            }
        });
}

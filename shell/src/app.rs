//! Starting the blog: database, credentials, monitor, ticker, server.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::Config;
use crate::db::{Db, DbError};
use crate::monitoring::Monitor;
use crate::web::auth::{hash_password, random_token, sha256_hex, MICROPUB_KEY, PASSWORD_KEY};
use crate::web::ratelimit::RateLimiter;
use crate::web::server::Server;
use crate::web::App;

/// Credentials generated on this start, to print once.
#[derive(Debug, Default)]
pub struct Generated {
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

/// Builds the app (database, credentials, monitor) without serving.
pub fn build(config: Config) -> Result<(App, Generated), StartError> {
    let monitor = Arc::new(Monitor::new(&config.perf));
    let db = Db::open(&config.data_dir, monitor.clone()).map_err(StartError::Db)?;
    let conn = db.conn().map_err(StartError::Db)?;
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
    };
    drop(conn);
    let app = App {
        config,
        db,
        monitor,
        login_limit: RateLimiter::new(10, 10),
        dashboard_limit: RateLimiter::new(120, 600),
    };
    Ok((app, generated))
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

/// Serves `app` and starts the monitor's ticker.
pub fn serve(app: App, generated: Generated) -> Result<Running, StartError> {
    let app = Arc::new(app);
    let handler_app = app.clone();
    let server = Server::start(
        app.config.bind,
        app.config.http.clone(),
        Arc::new(move |req| handler_app.handle(req)),
    )
    .map_err(StartError::Bind)?;
    spawn_ticker(Arc::downgrade(&app));
    Ok(Running {
        server,
        app,
        generated,
    })
}

/// Builds and serves.
pub fn start(config: Config) -> Result<Running, StartError> {
    let (app, generated) = build(config)?;
    serve(app, generated)
}

/// Once a second: window checkpoints and memory samples. Ends with the app.
fn spawn_ticker(app: Weak<App>) {
    let _ = std::thread::Builder::new()
        .name("starpunk-ticker".into())
        .spawn(move || {
            let mut second = 0u64;
            loop {
                std::thread::sleep(Duration::from_secs(1));
                second += 1;
                match app.upgrade() {
                    Some(app) => app.monitor.tick(second),
                    None => return,
                }
            }
        });
}

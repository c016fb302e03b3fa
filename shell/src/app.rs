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

/// HTTP worker threads.
pub const WORKERS: usize = 8;

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
            StartError::Bind(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Builds the app (database, credentials, monitor) without serving.
pub fn build(config: Config) -> Result<(App, Generated), StartError> {
    let monitor = Arc::new(Monitor::new(&config.perf));
    let db = Db::open(&config.data_dir, monitor.clone()).map_err(StartError::Db)?;
    let mut generated = Generated::default();
    {
        let conn = db.conn().map_err(StartError::Db)?;
        match (
            &config.admin_password,
            conn.setting(PASSWORD_KEY).map_err(StartError::Db)?,
        ) {
            (Some(pw), stored) => {
                let current = stored.is_some_and(|phc| crate::web::auth::verify_password(pw, &phc));
                if !current {
                    conn.set_setting(PASSWORD_KEY, &hash_password(pw))
                        .map_err(StartError::Db)?;
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                let pw = random_token(12);
                conn.set_setting(PASSWORD_KEY, &hash_password(&pw))
                    .map_err(StartError::Db)?;
                generated.admin_password = Some(pw);
            }
        }
        match (
            &config.micropub_token,
            conn.setting(MICROPUB_KEY).map_err(StartError::Db)?,
        ) {
            (Some(t), _) => conn
                .set_setting(MICROPUB_KEY, &sha256_hex(t))
                .map_err(StartError::Db)?,
            (None, Some(_)) => {}
            (None, None) => {
                let t = random_token(24);
                conn.set_setting(MICROPUB_KEY, &sha256_hex(&t))
                    .map_err(StartError::Db)?;
                generated.micropub_token = Some(t);
            }
        }
    }
    let app = App {
        config,
        db,
        monitor,
        login_limit: RateLimiter::new(10, 10),
        dashboard_limit: RateLimiter::new(120, 600),
        test_routes: false,
    };
    Ok((app, generated))
}

/// Serves `app` and starts the monitor's ticker.
pub fn serve(app: App, generated: Generated) -> Result<Running, StartError> {
    let app = Arc::new(app);
    let handler_app = app.clone();
    let server = Server::start(
        app.config.bind,
        WORKERS,
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

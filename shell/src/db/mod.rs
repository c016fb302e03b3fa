//! The database layer: a small pool of SQLite connections and the one place
//! SQL runs, so every statement passes the monitor's hook.

pub mod migrations;
pub mod notes;
pub mod sessions;
pub mod settings;

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Params, Row};

use crate::monitoring::Monitor;

/// Connections in the pool.
pub const POOL_SIZE: usize = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong in the database layer.
#[derive(Debug)]
pub enum DbError {
    /// SQLite said no.
    Sqlite(rusqlite::Error),
    /// No connection came free in time.
    PoolTimeout,
    /// The schema is newer than this binary.
    SchemaTooNew {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },
    /// The data directory could not be created.
    Io(std::io::Error),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "database error: {e}"),
            DbError::PoolTimeout => write!(f, "no database connection free within 10 s"),
            DbError::SchemaTooNew { found, supported } => write!(
                f,
                "the database schema is version {found}, newer than this starpunk supports ({supported}); \
                 run a newer starpunk or restore a backup"
            ),
            DbError::Io(e) => write!(f, "cannot create the data directory: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

/// The pool: connections, and how many are lent out.
struct Pool {
    idle: Mutex<Vec<Connection>>,
    freed: Condvar,
    size: usize,
    in_use: AtomicUsize,
}

/// The database: a pool and the monitor its statements report to.
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
    monitor: Arc<Monitor>,
}

/// A connection lent by the pool; every statement goes through its methods.
pub struct Conn<'a> {
    conn: Option<Connection>,
    db: &'a Db,
}

impl Db {
    /// Opens (creating if needed) `dir/starpunk.db`, migrates it, and fills
    /// the pool.
    pub fn open(dir: &Path, monitor: Arc<Monitor>) -> Result<Db, DbError> {
        std::fs::create_dir_all(dir).map_err(DbError::Io)?;
        let path = dir.join("starpunk.db");
        let open = || -> Result<Connection, DbError> {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            #[cfg(feature = "test-routes")]
            test_sleep_function(&conn)?;
            Ok(conn)
        };
        let first = open()?;
        let db = Db {
            pool: Arc::new(Pool {
                idle: Mutex::new(Vec::new()),
                freed: Condvar::new(),
                size: POOL_SIZE,
                in_use: AtomicUsize::new(0),
            }),
            monitor,
        };
        migrations::migrate(&first, &db.monitor)?;
        let mut idle = vec![first];
        for _ in 1..POOL_SIZE {
            idle.push(open()?);
        }
        *db.pool.idle.lock().unwrap_or_else(|p| p.into_inner()) = idle;
        Ok(db)
    }

    /// Borrows a connection, waiting up to 10 s for one.
    pub fn conn(&self) -> Result<Conn<'_>, DbError> {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = idle.pop() {
                self.pool.in_use.fetch_add(1, Ordering::Relaxed);
                return Ok(Conn {
                    conn: Some(conn),
                    db: self,
                });
            }
            let (guard, timeout) = self
                .pool
                .freed
                .wait_timeout(idle, ACQUIRE_TIMEOUT)
                .unwrap_or_else(|p| p.into_inner());
            idle = guard;
            if timeout.timed_out() && idle.is_empty() {
                return Err(DbError::PoolTimeout);
            }
        }
    }

    /// Connections in the pool.
    pub fn pool_size(&self) -> usize {
        self.pool.size
    }

    /// Connections lent out now.
    pub fn pool_in_use(&self) -> usize {
        self.pool.in_use.load(Ordering::Relaxed)
    }

    /// The monitor statements report to.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}

/// Database-wide figures for the dashboard.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct DbStats {
    /// Page cache hits over hits + misses, across the pool's connections.
    pub cache_hit_rate: Option<f64>,
    /// Bytes of the database file.
    pub db_bytes: u64,
    /// Bytes of the write-ahead log.
    pub wal_bytes: u64,
}

impl Conn<'_> {
    fn raw(&self) -> &Connection {
        // Present from construction until drop.
        self.conn.as_ref().expect("connection present until drop")
    }

    /// Runs a query, mapping each row.
    pub fn query<T>(
        &self,
        sql: &'static str,
        params: impl Params,
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        self.db.monitor.around_query(sql, || {
            let run = || -> rusqlite::Result<Vec<T>> {
                let mut stmt = self.raw().prepare_cached(sql)?;
                let mut rows = stmt.query(params)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(map(row)?);
                }
                Ok(out)
            };
            let result = run().map_err(DbError::from);
            let n = result.as_ref().map_or(0, |v| v.len() as u64);
            (result, n)
        })
    }

    /// Runs a query expected to return at most one row.
    pub fn query_opt<T>(
        &self,
        sql: &'static str,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, DbError> {
        Ok(self.query(sql, params, map)?.into_iter().next())
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &'static str, params: impl Params) -> Result<usize, DbError> {
        self.db.monitor.around_query(sql, || {
            let result = self
                .raw()
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params))
                .map_err(DbError::from);
            let n = result.as_ref().map_or(0, |n| *n as u64);
            (result, n)
        })
    }

    /// The rowid of the last insert on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        self.raw().last_insert_rowid()
    }

    /// Runs `f` in a transaction: committed when `f` returns `Ok`, rolled
    /// back otherwise.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.execute("BEGIN IMMEDIATE", [])?;
        match f(self) {
            Ok(v) => {
                self.execute("COMMIT", [])?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute("ROLLBACK", []);
                Err(e)
            }
        }
    }

    /// File sizes of the database and its write-ahead log.
    ///
    /// The page-cache hit rate needs `sqlite3_db_status`, which rusqlite
    /// does not wrap; calling it through `rusqlite::ffi` would put `unsafe`
    /// in the shell, which our rules forbid, so it is reported as unknown.
    pub fn stats(&self, dir: &Path) -> DbStats {
        let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        DbStats {
            cache_hit_rate: None,
            db_bytes: size("starpunk.db"),
            wal_bytes: size("starpunk.db-wal"),
        }
    }
}

/// Test builds only: `test_sleep(ms)`, a statement that takes as long as
/// asked (at most 10 s), for the tests' slow statements.
#[cfg(feature = "test-routes")]
fn test_sleep_function(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "test_sleep",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8,
        |ctx| {
            let ms: i64 = ctx.get(0)?;
            std::thread::sleep(Duration::from_millis(ms.clamp(0, 10_000) as u64));
            Ok(ms)
        },
    )
}

#[cfg(feature = "test-routes")]
impl Conn<'_> {
    /// Test builds only: one statement that runs for `ms` milliseconds.
    pub fn test_sleep(&self, ms: u64) -> Result<(), DbError> {
        self.query("SELECT test_sleep(?1)", [ms as i64], |r| r.get::<_, i64>(0))
            .map(|_| ())
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.db.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.push(conn);
            self.db.pool.in_use.fetch_sub(1, Ordering::Relaxed);
            self.db.pool.freed.notify_one();
        }
    }
}

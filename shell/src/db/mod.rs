//! The database layer: SQLite in WAL mode behind two pools, and the one
//! place SQL runs, so every statement passes the monitor's hook.
//!
//! Reads go to a pool of read-only connections; writes queue for the one
//! writer connection ([`Db::writer`]). In WAL mode readers never wait for
//! a writer, so a held write lock (a backup, the `sqlite3` shell, a slow
//! write) stalls only other writes, which answer 503 with `Retry-After`
//! (see [`DbError::is_busy`]) instead of taking every connection.

pub mod migrations;
pub mod notes;
pub mod plans;
pub mod sessions;
pub mod settings;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Params, Row};

use crate::monitoring::Monitor;

/// Read-only connections in the read pool.
pub const POOL_SIZE: usize = 4;
/// How long a request waits for a connection (read) or the writer.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite's own wait for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// The database or its directory cannot be written.
    ReadOnly(String),
    /// The device holding the data directory has no space left.
    NoSpace(PathBuf),
}

impl DbError {
    /// A lock held elsewhere, or no connection free in time: try again
    /// soon (503 with `Retry-After`), not a fault (500).
    pub fn is_busy(&self) -> bool {
        match self {
            DbError::PoolTimeout => true,
            DbError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// The disk is full: SQLite's `SQLITE_FULL`, or an I/O error that is
    /// `ENOSPC`. Writes get 503 with `Retry-After` and say so.
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::NoSpace(_) => true,
            DbError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            DbError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            _ => false,
        }
    }

    /// The database cannot be written (read-only file or directory, full
    /// disk): 503, and `/health` says so.
    pub fn is_unwritable(&self) -> bool {
        match self {
            DbError::ReadOnly(_) | DbError::NoSpace(_) => true,
            DbError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::SystemIoFailure
                )
            ),
            _ => false,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "database error: {e}"),
            DbError::PoolTimeout => write!(f, "no database connection free within 5 s"),
            DbError::SchemaTooNew { found, supported } => write!(
                f,
                "the database schema is version {found}, newer than this starpunk supports ({supported}); \
                 run a newer starpunk or restore a backup"
            ),
            DbError::Io(e) => write!(f, "cannot create the data directory: {e}"),
            DbError::ReadOnly(what) => write!(f, "{what}"),
            DbError::NoSpace(dir) => write!(
                f,
                "no space left on the device holding {}; free some space and start again",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

/// A pool: connections, and how many are lent out.
struct Pool {
    idle: Mutex<Vec<Connection>>,
    freed: Condvar,
    size: usize,
    in_use: AtomicUsize,
}

impl Pool {
    fn new(conns: Vec<Connection>) -> Pool {
        Pool {
            size: conns.len(),
            idle: Mutex::new(conns),
            freed: Condvar::new(),
            in_use: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Result<Connection, DbError> {
        let deadline = std::time::Instant::now() + ACQUIRE_TIMEOUT;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = idle.pop() {
                self.in_use.fetch_add(1, Ordering::Relaxed);
                return Ok(conn);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(DbError::PoolTimeout);
            }
            idle = self
                .freed
                .wait_timeout(idle, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn give_back(&self, conn: Connection) {
        // A connection never goes back inside a transaction (a panic or a
        // failed COMMIT in between): the writer would hold the write lock
        // and every later write would join an uncommitted transaction.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_one();
    }
}

/// What the database's state was found to be.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DbHealth {
    /// A read succeeded just now.
    pub can_read: bool,
    /// The last write succeeded (or none failed since start).
    pub can_write: bool,
    /// `PRAGMA quick_check` at start: `"ok"`, or what it reported.
    pub integrity: String,
}

/// The database: a read pool, the writer, and the monitor its statements
/// report to.
#[derive(Clone)]
pub struct Db {
    readers: Arc<Pool>,
    writer: Arc<Pool>,
    monitor: Arc<Monitor>,
    /// False once a write failed for lack of write access or space; true
    /// again after a write succeeds.
    writable: Arc<std::sync::atomic::AtomicBool>,
    integrity: Arc<String>,
    /// The database file.
    path: PathBuf,
    /// The query plans' read-only connection, opened at the first plan.
    explainer: Arc<Mutex<Option<plans::Explainer>>>,
}

/// A connection lent by a pool; every statement goes through its methods.
pub struct Conn<'a> {
    conn: Option<Connection>,
    pool: &'a Pool,
    db: &'a Db,
}

/// Creates `path` (empty: SQLite takes it as a new database) readable and
/// writable by the owner only, so SQLite's `-wal` and `-shm` files, made
/// with the database's permissions, are private too; tightens an existing
/// file.
fn create_private(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    if let Err(e) = opened {
        return Err(DbError::ReadOnly(format!(
            "cannot write the database {}: {e}; fix the permissions of the data directory \
             or set STARPUNK_DATA_DIR",
            path.display()
        )));
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(())
}

/// Logs a write refused for a full disk: one line a minute at most, not
/// one per request (the disk stays full for a while).
pub fn log_disk_full(e: &DbError) {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last.saturating_add(60)
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        crate::elog!(
            "starpunk: the disk is full; writes are refused with 503 until space is freed ({e})"
        );
    }
}

/// Below this much free space, a failure to open the database is put down
/// to the full disk.
const LOW_SPACE: u64 = 64 * 1024;

/// Bytes free to this process on the device holding `dir` (or its nearest
/// existing ancestor), if the system says.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let at = dir.ancestors().find(|a| a.exists())?;
    let s = rustix::fs::statvfs(at).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

impl Db {
    /// Opens (creating if needed) `dir/starpunk.db` with private
    /// permissions, checks that it can be written and how its integrity
    /// is, migrates it, and fills the pools.
    pub fn open(dir: &Path, monitor: Arc<Monitor>) -> Result<Db, DbError> {
        // A full disk shows as many things on the way (a file that cannot
        // be created, SQLite's FULL or a failed write of the WAL): name
        // the real cause.
        Db::open_checked(dir, monitor).map_err(|e| {
            if e.is_disk_full() || free_bytes(dir).is_some_and(|b| b < LOW_SPACE) {
                DbError::NoSpace(dir.to_path_buf())
            } else {
                e
            }
        })
    }

    fn open_checked(dir: &Path, monitor: Arc<Monitor>) -> Result<Db, DbError> {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(DbError::Io)?;
        }
        let path = dir.join("starpunk.db");
        create_private(&path)?;
        let open = |flags: OpenFlags| -> Result<Connection, DbError> {
            let conn = Connection::open_with_flags(&path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            Ok(conn)
        };
        let writer = open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        // A read-write open of a file the process cannot write silently
        // falls back to read-only: this finds out.
        let probe = writer
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK")
            .map_err(DbError::from);
        if writer.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
            || probe.as_ref().is_err_and(DbError::is_unwritable)
        {
            return Err(DbError::ReadOnly(format!(
                "the database {} is not writable; fix the permissions of the data directory \
                 or set STARPUNK_DATA_DIR",
                path.display()
            )));
        }
        probe?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        #[cfg(feature = "test-routes")]
        test_sleep_function(&writer)?;
        let integrity: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap_or_else(|e| e.to_string());
        if integrity != "ok" {
            crate::elog!("starpunk: the database failed its integrity check: {integrity}");
        }
        migrations::migrate(&writer, &monitor)?;
        let mut readers = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            let conn = open(OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            #[cfg(feature = "test-routes")]
            test_sleep_function(&conn)?;
            readers.push(conn);
        }
        Ok(Db {
            readers: Arc::new(Pool::new(readers)),
            writer: Arc::new(Pool::new(vec![writer])),
            monitor,
            writable: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            integrity: Arc::new(integrity),
            path,
            explainer: Arc::new(Mutex::new(None)),
        })
    }

    /// Explains the statements the monitor wants plans of (see
    /// `Monitor::plans_wanted`) on a read-only connection of their own.
    /// The ticker calls it; the connection is opened once (a failure to
    /// open is tried again on the next call).
    pub fn explain_wanted(&self) {
        let monitor = &self.monitor;
        if monitor.inner().is_none() {
            return;
        }
        let Ok(mut slot) = self.explainer.lock() else {
            return;
        };
        if slot.is_none() {
            *slot = plans::Explainer::open(&self.path).ok();
        }
        let Some(explainer) = slot.as_ref() else {
            return;
        };
        let Ok(schema) = explainer.schema_version() else {
            // Opened again next time (the file may have been replaced).
            *slot = None;
            return;
        };
        for (op, sql) in monitor.plans_wanted(schema) {
            monitor.set_plan(op, explainer.explain(sql, schema));
        }
    }

    /// Borrows a read-only connection, waiting up to 5 s for one.
    pub fn conn(&self) -> Result<Conn<'_>, DbError> {
        Ok(Conn {
            conn: Some(self.readers.take()?),
            pool: &self.readers,
            db: self,
        })
    }

    /// Borrows the writer, waiting up to 5 s for it: the only connection
    /// that writes (it reads too, for read-then-write steps).
    pub fn writer(&self) -> Result<Conn<'_>, DbError> {
        Ok(Conn {
            conn: Some(self.writer.take()?),
            pool: &self.writer,
            db: self,
        })
    }

    /// Connections in the pools (readers and the writer).
    pub fn pool_size(&self) -> usize {
        self.readers.size + self.writer.size
    }

    /// Connections lent out now.
    pub fn pool_in_use(&self) -> usize {
        self.readers.in_use.load(Ordering::Relaxed) + self.writer.in_use.load(Ordering::Relaxed)
    }

    /// The monitor statements report to.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Can it read now, could it write last time, and its integrity at start.
    pub fn health(&self) -> DbHealth {
        let can_read = self
            .conn()
            .and_then(|c| c.query_opt("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .is_ok();
        DbHealth {
            can_read,
            can_write: self.writable.load(Ordering::Relaxed),
            integrity: self.integrity.to_string(),
        }
    }

    /// Page-cache hits over hits + misses since the connections opened,
    /// across the idle connections of both pools (those lent out at this
    /// moment are left out); `None` before any page was read.
    pub fn cache_hit_rate(&self) -> Option<f64> {
        let (mut hits, mut misses) = (0u64, 0u64);
        for pool in [&self.readers, &self.writer] {
            let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            for (h, m) in idle.iter().filter_map(cache_counts) {
                hits += h;
                misses += m;
            }
        }
        (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
    }

    /// Notes what a write's outcome says about write access.
    fn note_write(&self, ok: bool, err: Option<&DbError>) {
        if ok {
            self.writable.store(true, Ordering::Relaxed);
        } else if err.is_some_and(DbError::is_unwritable) {
            self.writable.store(false, Ordering::Relaxed);
        }
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
    #[track_caller]
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
    #[track_caller]
    pub fn query_opt<T>(
        &self,
        sql: &'static str,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, DbError> {
        Ok(self.query(sql, params, map)?.into_iter().next())
    }

    /// Runs a statement; returns the rows it changed.
    #[track_caller]
    pub fn execute(&self, sql: &'static str, params: impl Params) -> Result<usize, DbError> {
        let result = self.db.monitor.around_query(sql, || {
            let result = self
                .raw()
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params))
                .map_err(DbError::from);
            let n = result.as_ref().map_or(0, |n| *n as u64);
            (result, n)
        });
        // Transaction control says nothing about write access on its own:
        // a ROLLBACK after a failed write must not report the database
        // writable again.
        if !(sql.starts_with("BEGIN") || sql.starts_with("ROLLBACK")) {
            self.db.note_write(result.is_ok(), result.as_ref().err());
        }
        result
    }

    /// The rowid of the last insert on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        self.raw().last_insert_rowid()
    }

    /// Runs `f` in a transaction: committed when `f` returns `Ok`, rolled
    /// back otherwise.
    #[track_caller]
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.execute("BEGIN IMMEDIATE", [])?;
        match f(self) {
            Ok(v) => match self.execute("COMMIT", []) {
                Ok(_) => Ok(v),
                Err(e) => {
                    let _ = self.execute("ROLLBACK", []);
                    Err(e)
                }
            },
            Err(e) => {
                let _ = self.execute("ROLLBACK", []);
                Err(e)
            }
        }
    }

    /// File sizes of the database and its write-ahead log, and the
    /// page-cache hit rate of the idle connections (see
    /// [`Db::cache_hit_rate`]).
    pub fn stats(&self, dir: &Path) -> DbStats {
        let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        DbStats {
            cache_hit_rate: self.db.cache_hit_rate(),
            db_bytes: size("starpunk.db"),
            wal_bytes: size("starpunk.db-wal"),
        }
    }
}

/// Page-cache hits and misses of one connection since it opened: SQLite's
/// `sqlite3_db_status`, which rusqlite does not wrap. The shell's one
/// `unsafe` call (issue 10 allows it here, in a single function).
#[allow(unsafe_code)]
fn cache_counts(conn: &Connection) -> Option<(u64, u64)> {
    use rusqlite::ffi;
    let (mut hit, mut miss, mut high) = (0, 0, 0);
    // SAFETY:
    // - `conn.handle()` is the open `sqlite3*` of `conn`, borrowed for the
    //   whole block, so it outlives both calls; the caller holds the
    //   connection (idle in a pool, behind that pool's mutex), so no other
    //   thread uses it meanwhile (it was opened with SQLITE_OPEN_NO_MUTEX).
    // - `sqlite3_db_status` only writes the `c_int`s we pass, which live on
    //   this stack frame for the call; the op codes are SQLite's constants;
    //   `resetFlg` 0 changes nothing.
    let rc = unsafe {
        let db = conn.handle();
        (
            ffi::sqlite3_db_status(db, ffi::SQLITE_DBSTATUS_CACHE_HIT, &mut hit, &mut high, 0),
            ffi::sqlite3_db_status(db, ffi::SQLITE_DBSTATUS_CACHE_MISS, &mut miss, &mut high, 0),
        )
    };
    (rc == (ffi::SQLITE_OK, ffi::SQLITE_OK)).then(|| (hit.max(0) as u64, miss.max(0) as u64))
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
    #[track_caller]
    pub fn test_sleep(&self, ms: u64) -> Result<(), DbError> {
        self.query("SELECT test_sleep(?1)", [ms as i64], |r| r.get::<_, i64>(0))
            .map(|_| ())
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

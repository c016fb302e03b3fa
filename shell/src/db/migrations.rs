//! Versioned schema migrations, applied at start, each in a transaction.

use rusqlite::Connection;

use super::DbError;
use crate::monitoring::Monitor;

/// `(version, SQL)`; `PRAGMA user_version` records the last applied.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        content TEXT NOT NULL,
        published_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE INDEX notes_published ON notes (published_at DESC) WHERE deleted_at IS NULL;
    CREATE VIRTUAL TABLE notes_fts USING fts5(content, content='notes', content_rowid='id');
    CREATE TRIGGER notes_ai AFTER INSERT ON notes WHEN new.deleted_at IS NULL BEGIN
        INSERT INTO notes_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER notes_au AFTER UPDATE ON notes BEGIN
        INSERT INTO notes_fts (notes_fts, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.deleted_at IS NULL;
        INSERT INTO notes_fts (rowid, content)
            SELECT new.id, new.content WHERE new.deleted_at IS NULL;
    END;
    CREATE TRIGGER notes_ad AFTER DELETE ON notes WHEN old.deleted_at IS NULL BEGIN
        INSERT INTO notes_fts (notes_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        csrf_token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
)];

/// The newest schema this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Applies every migration newer than the file's version; refuses a file
/// newer than this binary.
pub fn migrate(conn: &Connection, monitor: &Monitor) -> Result<(), DbError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest() {
        return Err(DbError::SchemaTooNew {
            found,
            supported: latest(),
        });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Timed through the same hook as every other statement (the ADR
        // lists migration execution as an instrumentation point).
        let applied = monitor
            .around_query(sql, || (conn.execute_batch(sql), 0))
            .and_then(|_| conn.pragma_update(None, "user_version", version));
        match applied {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::PerfConfig;

    #[test]
    fn migrates_once_and_refuses_newer_schema() {
        let conn = Connection::open_in_memory().unwrap();
        let monitor = Monitor::new(&PerfConfig::default());
        migrate(&conn, &monitor).unwrap();
        migrate(&conn, &monitor).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest());
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        let e = migrate(&conn, &monitor).unwrap_err();
        assert!(
            e.to_string().contains("newer than this starpunk supports"),
            "{e}"
        );
    }
}

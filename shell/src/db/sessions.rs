//! Admin sessions: only a hash of each session token is stored.

use super::{Conn, DbError};

impl Conn<'_> {
    /// Stores a session.
    pub fn create_session(
        &self,
        token_hash: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<(), DbError> {
        self.execute("DELETE FROM sessions WHERE expires_at < ?1", [now()])?;
        self.execute(
            "INSERT INTO sessions (token_hash, csrf_token, expires_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![token_hash, csrf, expires_at],
        )?;
        Ok(())
    }

    /// The CSRF token of a live session.
    pub fn session_csrf(&self, token_hash: &str) -> Result<Option<String>, DbError> {
        self.query_opt(
            "SELECT csrf_token FROM sessions WHERE token_hash = ?1 AND expires_at >= ?2",
            rusqlite::params![token_hash, now()],
            |r| r.get(0),
        )
    }

    /// Ends a session.
    pub fn delete_session(&self, token_hash: &str) -> Result<(), DbError> {
        self.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
        Ok(())
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

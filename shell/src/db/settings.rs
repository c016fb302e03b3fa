//! Key-value settings (password and token hashes).

use super::{Conn, DbError};

impl Conn<'_> {
    /// The value of `key`.
    pub fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        self.query_opt("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
    }

    /// Sets `key` to `value`.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

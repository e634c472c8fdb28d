//! Page sessions (the cookie a page gets for its key), kept across restarts.

use rusqlite::params;

use super::{Store, StoreError};
use crate::core::time::EpochMs;

impl Store {
    /// Page sessions: the SHA-256 of the token (hex), caller label, started at.
    pub fn load_web_sessions(&self) -> Result<Vec<(String, String, EpochMs)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare("SELECT token_sha256, caller, created_ms FROM web_sessions")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Queues a new page session, by its token's hash.
    pub fn record_web_session(&self, token_sha256: String, caller: String, created_ms: EpochMs) {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO web_sessions (token_sha256, caller, created_ms) VALUES (?1, ?2, ?3)",
                params![token_sha256, caller, created_ms],
            )
            .map(drop)
        });
    }

    /// Queues the end of one session (its key started too many newer ones).
    pub fn forget_web_session(&self, token_sha256: String) {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM web_sessions WHERE token_sha256 = ?1",
                params![token_sha256],
            )
            .map(drop)
        });
    }

    /// Queues the end of every session of `caller` (its key was rotated).
    pub fn forget_web_sessions_of(&self, caller: String) {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM web_sessions WHERE caller = ?1",
                params![caller],
            )
            .map(drop)
        });
    }

    /// Queues the end of sessions started at or before `before_ms` (older than a week).
    pub fn forget_web_sessions_before(&self, before_ms: EpochMs) {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM web_sessions WHERE created_ms <= ?1",
                params![before_ms],
            )
            .map(drop)
        });
    }
}

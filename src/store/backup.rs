//! The database side of `diemcau backup`: one read transaction of the live database
//! written out as a compact new file (`VACUUM INTO`: the service goes on writing), and
//! the copy opened on its own and checked before anyone relies on it.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, open_existing};

/// What a checked copy holds, to print and to compare with the service's pages.
#[derive(Debug)]
pub struct BackupCounts {
    pub bytes: u64,
    /// Rows of the tables the organisers' evidence comes from.
    pub transitions: i64,
    pub timer_commands: i64,
    pub rehearsals: i64,
    pub notices: i64,
}

/// A copy's integrity check: `Ok` with its counts, or what SQLite found wrong.
pub type CheckedCopy = Result<BackupCounts, String>;

/// Copies the database at `source` into the new file `copy`, then checks the copy.
pub fn backup_database(source: &Path, copy: &Path) -> Result<CheckedCopy, StoreError> {
    let conn = open_existing(source).map_err(StoreError::File)?;
    let target = copy
        .to_str()
        .ok_or_else(|| StoreError::Write(format!("{} is not UTF-8", copy.display())))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(StoreError::File)?;
    drop(conn);
    verify(copy).map_err(StoreError::File)
}

fn verify(copy: &Path) -> rusqlite::Result<CheckedCopy> {
    let conn = Connection::open_with_flags(copy, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let found: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if found != "ok" {
        return Ok(Err(found));
    }
    let count = |table: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
    };
    Ok(Ok(BackupCounts {
        bytes: std::fs::metadata(copy).map(|m| m.len()).unwrap_or(0),
        transitions: count("transitions")?,
        timer_commands: count("timer_commands")?,
        rehearsals: count("rehearsals")?,
        notices: count("notices")?,
    }))
}

//! The schema and its migrations, and opening an existing database from outside the
//! service (`diemcau check`, `diemcau backup`).

use std::path::Path;

use rusqlite::{Connection, params};

use super::{DB_FILE, StoreError};
use crate::core::time::EpochMs;

/// Schema, one entry per version; never edit an entry once shipped, add one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: liveness history and connection sessions.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE transitions (
         id INTEGER PRIMARY KEY,
         site TEXT NOT NULL,
         from_state TEXT NOT NULL,
         to_state TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         detected_at_ms INTEGER NOT NULL,
         reason TEXT NOT NULL);
     CREATE INDEX transitions_by_site ON transitions (site, id);
     CREATE TABLE sessions (
         id TEXT PRIMARY KEY,
         site TEXT NOT NULL,
         agent TEXT NOT NULL,
         version TEXT NOT NULL,
         opened_ms INTEGER NOT NULL,
         closed_ms INTEGER,
         close_reason TEXT);
     CREATE INDEX sessions_by_site ON sessions (site);",
    // 2: every applied timer command, replayed at start to rebuild the timer.
    "CREATE TABLE timer_commands (
         id INTEGER PRIMARY KEY,
         at_ms INTEGER NOT NULL,
         actor TEXT NOT NULL,
         command TEXT NOT NULL,
         command_id TEXT UNIQUE,
         rev INTEGER NOT NULL,
         result TEXT NOT NULL);",
    // 3: page sessions (a key traded for a cookie survives a restart).
    "CREATE TABLE web_sessions (
         token TEXT PRIMARY KEY,
         caller TEXT NOT NULL,
         created_ms INTEGER NOT NULL);",
    // 4: every rehearsal check attempt.
    "CREATE TABLE rehearsals (
         id TEXT PRIMARY KEY,
         site TEXT NOT NULL,
         started_ms INTEGER NOT NULL,
         finished_ms INTEGER NOT NULL,
         technician TEXT NOT NULL,
         checklist TEXT NOT NULL,
         figures TEXT NOT NULL,
         rows TEXT NOT NULL,
         verdict TEXT NOT NULL);
     CREATE INDEX rehearsals_by_site ON rehearsals (site, started_ms);",
    // 5: roll calls and messages, and who confirmed them.
    "CREATE TABLE notices (
         id TEXT PRIMARY KEY,
         kind TEXT NOT NULL,
         text TEXT NOT NULL,
         level TEXT NOT NULL,
         target TEXT NOT NULL,
         sent_ms INTEGER NOT NULL,
         deadline_ms INTEGER,
         sender TEXT NOT NULL);
     CREATE TABLE notice_acks (
         notice TEXT NOT NULL,
         site TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         PRIMARY KEY (notice, site));",
    // 6: active checks of the sites' video equipment.
    "CREATE TABLE device_transitions (
         id INTEGER PRIMARY KEY,
         site TEXT NOT NULL,
         from_state TEXT NOT NULL,
         to_state TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         reason TEXT NOT NULL);
     CREATE INDEX device_transitions_by_site ON device_transitions (site, id);",
    // 7: the rehearsal schedule, one slot per site.
    "CREATE TABLE rehearsal_slots (
         site TEXT PRIMARY KEY,
         starts_ms INTEGER NOT NULL,
         ends_ms INTEGER NOT NULL);",
    // 8: each connected site's median RTT, sampled every `report.rtt_sample_ms`, for the
    // evidence report's RTT over its window.
    "CREATE TABLE rtt_samples (
         site TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         median_ms REAL NOT NULL);
     CREATE INDEX rtt_samples_by_time ON rtt_samples (at_ms);",
    // 9: page sessions are kept as the SHA-256 of their token, never the cookie value;
    // sessions stored before (raw tokens) end: their pages open their link again.
    "DELETE FROM web_sessions;
     ALTER TABLE web_sessions RENAME COLUMN token TO token_sha256;",
    // 10: when the service itself was not running (crash, kill -9, stop): evidence
    // that these intervals are nobody's uptime and nobody's outage.
    "CREATE TABLE service_downtime (
         id INTEGER PRIMARY KEY,
         from_ms INTEGER NOT NULL,
         to_ms INTEGER NOT NULL,
         cause TEXT NOT NULL);",
    // 11: wall alerts marked "Đã biết": who (the typed name and the key's role) and when.
    "CREATE TABLE alert_dismissals (
         id INTEGER PRIMARY KEY,
         alert TEXT NOT NULL,
         site TEXT,
         text TEXT NOT NULL,
         name TEXT NOT NULL,
         by_role TEXT NOT NULL,
         at_ms INTEGER NOT NULL);",
    // 12: the id of the slot a timer command named, so that a replay on reordered rows
    // (ids kept) acts on the same slot.
    "ALTER TABLE timer_commands ADD COLUMN slot_id TEXT;",
    // 13: incidents, as the facts that make them up (opened, taken, noted, back,
    // resolved…; the event's JSON beside its kind), and the organisers' excused sites.
    // Both appended, never changed.
    "CREATE TABLE incident_events (
         id INTEGER PRIMARY KEY,
         incident TEXT NOT NULL,
         kind TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         event TEXT NOT NULL);
     CREATE TABLE excusals (
         id INTEGER PRIMARY KEY,
         site TEXT NOT NULL,
         excused INTEGER NOT NULL,
         name TEXT NOT NULL,
         by_role TEXT NOT NULL,
         reason TEXT NOT NULL,
         at_ms INTEGER NOT NULL);",
];

pub(super) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Opens a database that must already exist, beside a service that may be writing it,
/// for reading (a check, a backup). Not read-only: a WAL reader may need to create the
/// shared-memory file when the service is stopped.
pub fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// What `diemcau check` says of a data dir's database, without changing it.
#[derive(Debug)]
pub struct DatabaseHealth {
    pub bytes: u64,
    pub schema: i64,
    pub schema_known: usize,
    /// `ok`, or what SQLite found wrong.
    pub integrity: String,
}

/// Inspects `<data_dir>/diemcau.sqlite3` if there is one: size, schema, quick check.
pub fn inspect(data_dir: &Path) -> Result<Option<DatabaseHealth>, StoreError> {
    let path = data_dir.join(DB_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    super::data_dir::check_database_file(&path)?;
    let conn = open_existing(&path).map_err(|source| StoreError::Open {
        path: path.clone(),
        source,
    })?;
    Ok(Some(DatabaseHealth {
        bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        schema: schema_version(&conn)?,
        schema_known: MIGRATIONS.len(),
        integrity: conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?,
    }))
}

pub(super) fn migrate(conn: &mut Connection, now: EpochMs) -> Result<(), StoreError> {
    let version = schema_version(conn)?;
    let tx = conn.transaction()?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_ms', ?1)",
        params![now.to_string()],
    )?;
    tx.commit()?;
    Ok(())
}

//! When the service must stop while the disk still refuses writes: the writes kept in
//! memory become a recovery file somewhere that works (SQL statements, in order), named
//! in the log, and the next start replays it into the database before anything else.
//!
//! The writes are closures; their SQL is read off SQLite itself (a trace of each
//! statement with its values bound) by running them on an empty in-memory copy of the
//! schema, so the file says exactly what the database would have been told.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use sha2::{Digest, Sha256};

use super::WriteFn;
use super::schema::MIGRATIONS;

/// The SQL of `writes`, one statement each (with its values), in order.
pub(super) fn statements_of(writes: &[WriteFn]) -> rusqlite::Result<Vec<String>> {
    let mut scratch = Connection::open_in_memory()?;
    for sql in MIGRATIONS {
        scratch.execute_batch(sql)?;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    scratch.trace_v2(
        TraceEventCodes::SQLITE_TRACE_STMT,
        Some(move |event: TraceEvent<'_>| {
            if let TraceEvent::Stmt(statement, _) = event
                && let Some(sql) = statement.expanded_sql()
                && ["INSERT", "UPDATE", "DELETE"]
                    .iter()
                    .any(|verb| sql.trim_start().to_ascii_uppercase().starts_with(verb))
            {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(sql);
            }
        }),
    )?;
    for write in writes {
        let tx = scratch.transaction()?;
        write(&tx)?;
        tx.commit()?;
    }
    drop(scratch);
    let statements = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(statements)
}

/// Where a recovery file may go, in order: `recovery_dir` if set, then memory that
/// outlives the process (`/dev/shm`), then the temporary folder.
pub fn places(recovery_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = recovery_dir.map(Path::to_path_buf).into_iter().collect();
    places.push(PathBuf::from("/dev/shm/diemcau-recovery"));
    places.push(std::env::temp_dir().join("diemcau-recovery"));
    places
}

/// The recovery file's name for `data_dir`: one per data dir.
fn file_name(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(dir.to_string_lossy().as_bytes());
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{short}.sql")
}

/// Writes `statements` to the first place that takes them; returns the file.
pub fn save(
    data_dir: &Path,
    places: &[PathBuf],
    statements: &[String],
) -> Result<PathBuf, Vec<String>> {
    let mut failures = Vec::new();
    let mut text = format!(
        "-- diemcau: {} writes the disk refused for {}, replayed at the next start\n",
        statements.len(),
        data_dir.display()
    );
    for sql in statements {
        text.push_str(sql);
        text.push_str(";\n");
    }
    for place in places {
        let path = place.join(file_name(data_dir));
        let saved = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(place)?;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })();
        match saved {
            Ok(()) => return Ok(path),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    Err(failures)
}

/// A recovery file of `data_dir` waiting to be replayed, and its statements.
pub(super) fn waiting(data_dir: &Path, places: &[PathBuf]) -> Option<(PathBuf, String)> {
    places.iter().find_map(|place| {
        let path = place.join(file_name(data_dir));
        Some((path.clone(), std::fs::read_to_string(&path).ok()?))
    })
}

/// A replayed file is renamed `….replayed-<time>`, kept as the record of what happened.
pub(super) fn mark_replayed(path: &Path) {
    let mut done = path.to_path_buf().into_os_string();
    done.push(format!(".replayed-{}", chrono::Utc::now().timestamp()));
    let _ = std::fs::rename(path, done);
}

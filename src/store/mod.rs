//! Embedded SQLite store (WAL) in the data dir: the only place with SQL or rusqlite.
//! Callers hand it typed rows and get typed rows back; one file per table family.
//!
//! One writer thread (`writer`) owns the write connection and applies operations in
//! the order they were queued, batching bursts into one transaction; callers that must
//! know the data is on disk await the reply. Reads use a second connection (WAL lets
//! them run beside the writer).

mod backup;
mod data_dir;
mod devices;
mod dismissals;
mod downtime;
mod incidents;
mod notices;
pub mod recovery;
mod rehearsals;
mod schema;
mod sites;
mod timer;
mod web_sessions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, Transaction};
use tokio::sync::oneshot;

use crate::core::time::EpochMs;
pub use backup::{BackupCounts, CheckedCopy, backup_database};
pub use data_dir::{ALIVE_FILE, DataDirLock, LOCK_FILE, LastRun, Pulse, claim, readable_by_others};
pub use rehearsals::{StoredRehearsal, StoredRow};
pub use schema::{DatabaseHealth, inspect, open_existing};
use schema::{MIGRATIONS, migrate, schema_version};
pub use sites::{History, StoredTransition};
pub use timer::{NewCommand, StoredCommand};
use writer::{Op, WriteFailure, run_writer};

pub const DB_FILE: &str = "diemcau.sqlite3";

/// A write may run more than once: after the disk refused it, it is retried (and at
/// a stop, it is run once more to read its SQL for the recovery file).
type WriteFn = Box<dyn Fn(&Transaction) -> rusqlite::Result<()> + Send>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another diemcau{} already serves {dir}: stop it first (systemctl stop diemcau), or give this one another --data-dir",
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    Locked { dir: PathBuf, pid: Option<u32> },
    #[error(
        "{path} is {} — not a diemcau database: restore the latest `diemcau backup` folder, or move the file away to start an empty history",
        if *empty { "empty" } else { "not an SQLite file" }
    )]
    NotADatabase { path: PathBuf, empty: bool },
    #[error(
        "the recovery file {path} cannot be replayed ({message}): free space in the data dir and start again, or move the file away to start without it (keep it for the record)"
    )]
    Recovery { path: PathBuf, message: String },
    #[error("store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create data dir {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A database file opened from outside the service (check, backup).
    #[error("{0}")]
    File(rusqlite::Error),
    #[error("store write failed: {0}")]
    Write(String),
    /// The disk refuses writes (full, read-only, I/O error): the write is kept in
    /// memory, in order, and retried every second until it is stored.
    #[error("not on disk yet ({0}): kept in memory and retried every second")]
    Pending(String),
    #[error("store writer has stopped")]
    Stopped,
    #[error(
        "{path} was written by a newer diemcau (schema {found}; this one knows {known}): run the newer binary, or restore a backup made by this one"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: usize,
    },
}

/// Whether the disk takes writes, for `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The disk's error while writes are failing. A std `Mutex` set by the writer
    /// thread and read by `/readyz`; held only to copy the string.
    failing: Mutex<Option<String>>,
    /// Writes kept in memory until the disk takes them again.
    pending: std::sync::atomic::AtomicUsize,
    /// Transactions that failed, since start.
    errors: std::sync::atomic::AtomicU64,
}

impl StoreHealth {
    /// `None` when writes go through; else why not.
    pub fn failure(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn pending_writes(&self) -> usize {
        self.pending.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn failed_transactions(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::Sender<Op>,
    /// Guards the read connection (a SQLite connection is used by one thread at a
    /// time). A std `Mutex` taken inside `spawn_blocking` or at start, never on an
    /// async thread across an await; hold it for one query's rows only.
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    health: Arc<StoreHealth>,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path, now: EpochMs) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        data_dir::check_database_file(&path)?;
        let open = |path: &Path| -> Result<Connection, StoreError> {
            let conn = Connection::open(path).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // WAL + NORMAL: a committed transaction survives a process kill.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(conn)
        };
        let mut writer = open(&path)?;
        let found = schema_version(&writer)?;
        if found > MIGRATIONS.len() as i64 {
            return Err(StoreError::NewerSchema {
                path,
                found,
                known: MIGRATIONS.len(),
            });
        }
        migrate(&mut writer, now)?;
        let reader = open(&path)?;
        let (writes, queue) = mpsc::channel();
        let health = Arc::new(StoreHealth::default());
        let writer_health = health.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(writer, queue, &writer_health))
            .expect("spawn store writer");
        Ok(Store {
            writes,
            reader: Arc::new(Mutex::new(reader)),
            path,
            health,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Queues a write; it is applied in order, but nobody waits for it.
    fn write(&self, f: impl Fn(&Transaction) -> rusqlite::Result<()> + Send + 'static) {
        let _ = self.writes.send(Op::Write(Box::new(f), None));
    }

    /// Queues a write and waits until it is committed, or until the disk refused it
    /// (`Pending`: it stays queued and is retried until it is stored).
    async fn write_durable(
        &self,
        f: impl Fn(&Transaction) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(Op::Write(Box::new(f), Some(tx)))
            .map_err(|_| StoreError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WriteFailure::Rejected(message))) => Err(StoreError::Write(message)),
            Ok(Err(WriteFailure::Pending(message))) => Err(StoreError::Pending(message)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Replays the recovery file a stop with a refusing disk left for `data_dir`, if
    /// any, before anything else is written; returns it and how many writes it held.
    pub async fn replay_recovery(
        &self,
        data_dir: &Path,
        places: &[PathBuf],
    ) -> Result<Option<(PathBuf, usize)>, StoreError> {
        let Some((path, text)) = recovery::waiting(data_dir, places) else {
            return Ok(None);
        };
        let count = text.lines().filter(|l| !l.starts_with("--")).count();
        let sql = text.clone();
        let failed = |message: String| StoreError::Recovery {
            path: path.clone(),
            message,
        };
        match self.write_durable(move |tx| tx.execute_batch(&sql)).await {
            Ok(()) => {}
            Err(StoreError::Write(m) | StoreError::Pending(m)) => return Err(failed(m)),
            Err(e) => return Err(failed(e.to_string())),
        }
        recovery::mark_replayed(&path);
        Ok(Some((path, count)))
    }

    /// The SQL of the writes the disk still refuses, in order (for a recovery file).
    pub async fn refused_writes(&self) -> Result<Vec<String>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(Op::Statements(tx))
            .map_err(|_| StoreError::Stopped)?;
        rx.await
            .map_err(|_| StoreError::Stopped)?
            .map_err(StoreError::Write)
    }

    /// Waits until everything queued before this call is on disk, or kept in memory
    /// because the disk refuses writes: readers then see what is stored so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self.write_durable(|_| Ok(())).await {
            Err(StoreError::Pending(_)) => Ok(()),
            other => other,
        }
    }

    /// Runs a read query on the reader connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }

    /// Whether a write reaches the disk now (for `/readyz`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(failure) = self.health.failure() {
            return Err(StoreError::Pending(failure));
        }
        self.write_durable(|tx| {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_check', '1')
                 ON CONFLICT(key) DO UPDATE SET value = value",
                [],
            )
            .map(drop)
        })
        .await
    }
}

/// A durable write's outcome for a caller that must go on while the disk refuses
/// writes: `Pending` (kept, retried) is as good as stored; other errors stand.
pub fn keep_going_unless_rejected(stored: Result<(), StoreError>) -> Result<(), StoreError> {
    match stored {
        Err(StoreError::Pending(reason)) => {
            tracing::warn!(%reason, "applied from memory; stored when the disk takes writes again");
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::liveness::{SiteState, Transition};
    use crate::core::sites::SiteId;

    fn transition(to: SiteState, at: EpochMs) -> Transition {
        Transition {
            from: SiteState::NeverSeen,
            to,
            at_ms: at,
            detected_at_ms: at + 1,
            reason: "test".into(),
        }
    }

    #[test]
    fn a_database_from_a_newer_diemcau_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), 1).unwrap());
        let newer = MIGRATIONS.len() as i64 + 1;
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", newer).unwrap();
        drop(conn);

        let why = Store::open(dir.path(), 2)
            .err()
            .expect("refused")
            .to_string();
        assert!(why.contains("newer diemcau"), "{why}");
        let health = inspect(dir.path()).unwrap().unwrap();
        assert_eq!((health.schema, health.integrity.as_str()), (newer, "ok"));
    }

    #[tokio::test]
    async fn transitions_survive_reopening_and_come_back_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let site: SiteId = "05443".parse().unwrap();
        {
            let store = Store::open(dir.path(), 1000).unwrap();
            store.record_transition(site, &transition(SiteState::Online, 2000));
            store.record_transition(site, &transition(SiteState::Offline, 3000));
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path(), 9000).unwrap();
        let recent = store.recent_transitions(site, 10).await.unwrap();
        assert_eq!(
            recent.iter().map(|t| t.at_ms).collect::<Vec<_>>(),
            vec![3000, 2000]
        );
        let history = store.load_history().unwrap();
        assert_eq!(
            history.tracking_since_ms, 1000,
            "tracking starts at the first open"
        );
        assert_eq!(history.transitions.len(), 2);
    }

    #[tokio::test]
    async fn a_wrong_write_is_dropped_alone_and_the_rest_of_its_batch_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let site: SiteId = "05443".parse().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        // Queued together, so they share one transaction.
        store.record_transition(site, &transition(SiteState::Online, 2000));
        let wrong =
            store.write_durable(|tx| tx.execute("INSERT INTO nowhere VALUES (1)", []).map(drop));
        store.record_transition(site, &transition(SiteState::Offline, 3000));
        assert!(matches!(wrong.await, Err(StoreError::Write(_))));
        store.flush().await.unwrap();
        assert_eq!(store.recent_transitions(site, 10).await.unwrap().len(), 2);
        assert!(
            store.health().failure().is_none(),
            "a wrong write is not a disk failure"
        );
    }

    #[tokio::test]
    async fn a_failed_durable_write_reports_the_error_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let err = store
            .write_durable(|tx| tx.execute("INSERT INTO nowhere VALUES (1)", []).map(drop))
            .await;
        assert!(err.is_err());
        store.check_writable().await.unwrap();
    }
}

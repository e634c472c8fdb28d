//! Embedded SQLite store (WAL) in the data dir: transitions, connection sessions.
//!
//! One writer thread owns the write connection and applies operations in the order
//! they were queued, batching bursts into one transaction; callers that must know the
//! data is on disk await the reply. Reads use a second connection (WAL lets them run
//! beside the writer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::oneshot;

use crate::core::link::median;
use crate::core::liveness::{SiteState, Transition};
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

pub const DB_FILE: &str = "diemcau.sqlite3";

/// Schema, one entry per version; never edit an entry once shipped, add one.
const MIGRATIONS: &[&str] = &[
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
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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

/// A write may run more than once: after the disk refused it, it is retried.
type WriteFn = Box<dyn Fn(&Transaction) -> rusqlite::Result<()> + Send>;

/// What a waiting writer is told.
type Outcome = Result<(), WriteFailure>;

#[derive(Clone, Debug)]
enum WriteFailure {
    /// This write itself is wrong (a bug): dropped, the others go on.
    Rejected(String),
    /// The disk refused: kept and retried.
    Pending(String),
}

enum Op {
    Write(WriteFn, Option<oneshot::Sender<Outcome>>),
}

/// Whether the disk takes writes, for `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// The disk's error while writes are failing.
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
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    health: Arc<StoreHealth>,
}

/// A stored transition of one site.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredTransition {
    pub site: String,
    #[serde(flatten)]
    pub transition: Transition,
}

/// A stored timer command.
#[derive(Clone, Debug)]
pub struct StoredCommand {
    pub id: i64,
    pub at_ms: EpochMs,
    /// The command as JSON.
    pub command: String,
    pub command_id: Option<String>,
    /// The snapshot answered, as JSON.
    pub result: String,
}

/// What history says at startup.
#[derive(Debug, Default)]
pub struct History {
    /// When this store first started: uptime counts from here.
    pub tracking_since_ms: EpochMs,
    /// Every transition, oldest first.
    pub transitions: Vec<StoredTransition>,
    /// Connections opened per site.
    pub sessions_per_site: HashMap<String, u64>,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path, now: EpochMs) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
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
    pub fn write(&self, f: impl Fn(&Transaction) -> rusqlite::Result<()> + Send + 'static) {
        let _ = self.writes.send(Op::Write(Box::new(f), None));
    }

    /// Queues a write and waits until it is committed, or until the disk refused it
    /// (`Pending`: it stays queued and is retried until it is stored).
    pub async fn write_durable(
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

    /// Waits until everything queued before this call is on disk, or kept in memory
    /// because the disk refuses writes: readers then see what is stored so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self.write_durable(|_| Ok(())).await {
            Err(StoreError::Pending(_)) => Ok(()),
            other => other,
        }
    }

    /// Runs a read query on the reader connection, off the async threads.
    pub async fn read<T: Send + 'static>(
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

    pub fn record_transition(&self, site: SiteId, t: &Transition) {
        let t = t.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO transitions (site, from_state, to_state, at_ms, detected_at_ms, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![site.as_str(), t.from.as_str(), t.to.as_str(), t.at_ms, t.detected_at_ms, t.reason],
            )
            .map(drop)
        });
    }

    pub fn record_session_opened(
        &self,
        session: uuid::Uuid,
        site: SiteId,
        agent: &str,
        version: &str,
        at: EpochMs,
    ) {
        let (agent, version) = (agent.to_string(), version.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (id, site, agent, version, opened_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session.to_string(), site.as_str(), agent, version, at],
            )
            .map(drop)
        });
    }

    pub fn record_session_closed(&self, session: uuid::Uuid, at: EpochMs, reason: &str) {
        let reason = reason.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE sessions SET closed_ms = ?2, close_reason = ?3 WHERE id = ?1",
                params![session.to_string(), at, reason],
            )
            .map(drop)
        });
    }

    /// The newest transitions of a site, newest first.
    pub async fn recent_transitions(
        &self,
        site: SiteId,
        limit: u32,
    ) -> Result<Vec<Transition>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT from_state, to_state, at_ms, detected_at_ms, reason FROM transitions
                 WHERE site = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![site.as_str(), limit], |row| {
                Ok(Transition {
                    from: parse_state(row.get::<_, String>(0)?),
                    to: parse_state(row.get::<_, String>(1)?),
                    at_ms: row.get(2)?,
                    detected_at_ms: row.get(3)?,
                    reason: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Stores one sample of each connected site's median RTT (in the background).
    pub fn record_rtt_medians(&self, at: EpochMs, medians: Vec<(SiteId, f64)>) {
        self.write(move |tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO rtt_samples (site, at_ms, median_ms) VALUES (?1, ?2, ?3)",
            )?;
            for (site, median_ms) in &medians {
                insert.execute(params![site.as_str(), at, median_ms])?;
            }
            Ok(())
        });
    }

    /// Each site's median of its RTT samples taken in `[from, to)`, in ms (sites without
    /// a sample are left out). Samples are gathered by site as they are read, with no
    /// row kept as a string: a day at 3,321 sites is ~5 M rows.
    pub async fn rtt_median_by_site_between(
        &self,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<HashMap<String, f64>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT site, median_ms FROM rtt_samples WHERE at_ms >= ?1 AND at_ms < ?2",
            )?;
            let by_site = group_by_site(stmt.query(params![from, to])?, |row| row.get(1))?;
            Ok(by_site
                .into_iter()
                .filter_map(|(site, samples)| Some((site, median(samples.into_iter())?)))
                .collect())
        })
        .await
    }

    /// Every transition before `before_ms`, by site: (state, time), oldest first.
    pub async fn transitions_by_site_before(
        &self,
        before_ms: EpochMs,
    ) -> Result<HashMap<String, Vec<(SiteState, EpochMs)>>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT site, to_state, at_ms FROM transitions WHERE at_ms < ?1 ORDER BY at_ms, id",
            )?;
            group_by_site(stmt.query(params![before_ms])?, |row| {
                let state = row.get_ref(1)?.as_str()?;
                Ok((state.parse().unwrap_or(SiteState::NeverSeen), row.get(2)?))
            })
        })
        .await
    }

    /// When this store first started.
    pub async fn tracking_since(&self) -> Result<EpochMs, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT value FROM meta WHERE key = 'created_ms'",
                [],
                |row| row.get::<_, String>(0),
            )
            .map(|v| v.parse().unwrap_or(0))
        })
        .await
    }

    /// Replaces the whole rehearsal schedule.
    pub async fn replace_schedule(
        &self,
        slots: Vec<crate::core::schedule::RehearsalSlot>,
    ) -> Result<(), StoreError> {
        self.write_durable(move |tx| {
            tx.execute("DELETE FROM rehearsal_slots", [])?;
            for slot in &slots {
                tx.execute(
                    "INSERT INTO rehearsal_slots (site, starts_ms, ends_ms) VALUES (?1, ?2, ?3)",
                    params![slot.site.as_str(), slot.starts_ms, slot.ends_ms],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// The rehearsal schedule, in time order.
    pub async fn schedule(&self) -> Result<Vec<crate::core::schedule::RehearsalSlot>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT site, starts_ms, ends_ms FROM rehearsal_slots ORDER BY starts_ms",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            Ok(rows
                .filter_map(Result::ok)
                .filter_map(|(site, starts_ms, ends_ms)| {
                    Some(crate::core::schedule::RehearsalSlot {
                        site: site.parse().ok()?,
                        starts_ms,
                        ends_ms,
                    })
                })
                .collect())
        })
        .await
    }

    /// The newest device-check transitions of a site, newest first.
    pub async fn device_transitions(
        &self,
        site: SiteId,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT from_state, to_state, at_ms, reason FROM device_transitions WHERE site = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![site.as_str(), limit], |row| {
                Ok(serde_json::json!({
                    "from": row.get::<_, String>(0)?,
                    "to": row.get::<_, String>(1)?,
                    "at_ms": row.get::<_, i64>(2)?,
                    "reason": row.get::<_, String>(3)?,
                }))
            })?;
            rows.collect()
        })
        .await
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

    /// Page sessions: token and caller label.
    /// Page sessions: token, caller label, started at.
    pub fn load_web_sessions(&self) -> Result<Vec<(String, String, EpochMs)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare("SELECT token, caller, created_ms FROM web_sessions")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Rehearsal checks, newest first; of one site, or of all.
    pub async fn rehearsals(
        &self,
        site: Option<SiteId>,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, site, started_ms, finished_ms, technician, checklist, figures, rows, verdict
                 FROM rehearsals WHERE ?1 IS NULL OR site = ?1 ORDER BY started_ms DESC, rowid DESC",
            )?;
            let rows = stmt.query_map(params![site.map(|s| s.to_string())], |row| {
                let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
                    Ok(serde_json::from_str(&row.get::<_, String>(i)?).unwrap_or_default())
                };
                Ok(serde_json::json!({
                    "id": row.get::<_, String>(0)?,
                    "site": row.get::<_, String>(1)?,
                    "started_ms": row.get::<_, i64>(2)?,
                    "finished_ms": row.get::<_, i64>(3)?,
                    "technician": row.get::<_, String>(4)?,
                    "checklist": json(5)?,
                    "figures": json(6)?,
                    "rows": json(7)?,
                    "verdict": row.get::<_, String>(8)?,
                }))
            })?;
            rows.collect()
        })
        .await
    }

    /// Every notice (oldest first) with its confirmations (site code, time).
    #[allow(clippy::type_complexity)]
    pub fn load_notices(
        &self,
    ) -> Result<Vec<(crate::core::notices::Notice, Vec<(String, EpochMs)>)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut acks: HashMap<String, Vec<(String, EpochMs)>> = HashMap::new();
        let mut stmt = conn.prepare("SELECT notice, site, at_ms FROM notice_acks")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (notice, site, at) = row?;
            acks.entry(notice).or_default().push((site, at));
        }
        let mut stmt = conn.prepare(
            "SELECT id, kind, text, level, target, sent_ms, deadline_ms, sender FROM notices ORDER BY sent_ms, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut notices = Vec::new();
        for row in rows {
            let (id, kind, text, level, target, sent_ms, deadline_ms, sender) = row?;
            let (Ok(parsed_id), Ok(kind), Ok(target)) = (
                id.parse(),
                serde_json::from_str(&kind),
                serde_json::from_str(&target),
            ) else {
                continue; // written by this program: cannot happen short of manual edits
            };
            let notice = crate::core::notices::Notice {
                id: parsed_id,
                kind,
                text,
                level,
                target,
                sent_ms,
                deadline_ms,
                sender,
                recipients: Vec::new(),
                acks: Default::default(),
            };
            notices.push((notice, acks.remove(&id).unwrap_or_default()));
        }
        Ok(notices)
    }

    /// Every applied timer command, oldest first.
    pub fn load_timer_commands(&self) -> Result<Vec<StoredCommand>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(
            "SELECT id, at_ms, command, command_id, result FROM timer_commands ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredCommand {
                id: row.get(0)?,
                at_ms: row.get(1)?,
                command: row.get(2)?,
                command_id: row.get(3)?,
                result: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Everything the service needs from history at startup (synchronous: runs before serving).
    pub fn load_history(&self) -> Result<History, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let tracking_since_ms: EpochMs = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'created_ms'",
                [],
                |row| row.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut stmt = conn.prepare(
            "SELECT site, from_state, to_state, at_ms, detected_at_ms, reason FROM transitions ORDER BY id",
        )?;
        let transitions = stmt
            .query_map([], |row| {
                Ok(StoredTransition {
                    site: row.get(0)?,
                    transition: Transition {
                        from: parse_state(row.get::<_, String>(1)?),
                        to: parse_state(row.get::<_, String>(2)?),
                        at_ms: row.get(3)?,
                        detected_at_ms: row.get(4)?,
                        reason: row.get(5)?,
                    },
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = conn.prepare("SELECT site, COUNT(*) FROM sessions GROUP BY site")?;
        let sessions_per_site = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<HashMap<_, _>>>()?;
        Ok(History {
            tracking_since_ms,
            transitions,
            sessions_per_site,
        })
    }
}

/// States written by this program always parse; anything else reads as never seen.
/// Rows whose first column is a site id, gathered by site in the order read, without a
/// string per row: the report reads millions of them at national scale.
fn group_by_site<T>(
    mut rows: rusqlite::Rows<'_>,
    value: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<HashMap<String, Vec<T>>> {
    let mut by_site: HashMap<String, Vec<T>> = HashMap::new();
    while let Some(row) = rows.next()? {
        let (site, value) = (row.get_ref(0)?.as_str()?, value(row)?);
        match by_site.get_mut(site) {
            Some(values) => values.push(value),
            None => drop(by_site.insert(site.to_string(), vec![value])),
        }
    }
    Ok(by_site)
}

fn parse_state(text: String) -> SiteState {
    text.parse().unwrap_or(SiteState::NeverSeen)
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
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

fn migrate(conn: &mut Connection, now: EpochMs) -> Result<(), StoreError> {
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

/// Applies queued writes in order; a burst becomes one transaction. When the disk
/// refuses (full, read-only, I/O error), the writes are kept in order and retried
/// every second; a write that is itself wrong is dropped alone.
fn run_writer(mut conn: Connection, queue: mpsc::Receiver<Op>, health: &StoreHealth) {
    const BATCH: usize = 512;
    const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
    // Writes the disk refused, oldest first; their waiters were already told.
    let mut kept: Vec<WriteFn> = Vec::new();
    loop {
        let mut batch: Vec<Op> = Vec::new();
        let first = if kept.is_empty() {
            queue.recv().ok()
        } else {
            match queue.recv_timeout(RETRY) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if retry_kept(&mut conn, &mut kept, health) {
                        return;
                    }
                    std::thread::sleep(RETRY);
                    continue;
                }
            }
        };
        match first {
            Some(op) => batch.push(op),
            None if kept.is_empty() => return, // every sender is gone
            None => {}
        }
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut writes: Vec<(WriteFn, Option<oneshot::Sender<Outcome>>)> =
            kept.drain(..).map(|f| (f, None)).collect();
        writes.extend(batch.into_iter().map(|Op::Write(f, reply)| (f, reply)));
        kept = commit(&mut conn, writes, health);
    }
}

/// Retries the kept writes alone (the queue is closed); true once they are stored.
fn retry_kept(conn: &mut Connection, kept: &mut Vec<WriteFn>, health: &StoreHealth) -> bool {
    let writes = kept.drain(..).map(|f| (f, None)).collect();
    *kept = commit(conn, writes, health);
    kept.is_empty()
}

/// Commits `writes` in one transaction; returns the writes to keep for a retry.
fn commit(
    conn: &mut Connection,
    mut writes: Vec<(WriteFn, Option<oneshot::Sender<Outcome>>)>,
    health: &StoreHealth,
) -> Vec<WriteFn> {
    loop {
        let mut failed_at = None;
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for (i, (f, _)) in writes.iter().enumerate() {
                failed_at = Some(i);
                f(&tx)?;
            }
            failed_at = None;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                if health.failure().is_some() {
                    tracing::warn!(
                        writes = writes.len(),
                        "store writable again: the writes kept in memory are stored"
                    );
                }
                *health.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
                health
                    .pending
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                for (_, reply) in writes {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
                return Vec::new();
            }
            Err(e) if is_disk_error(&e) => {
                health
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let message = e.to_string();
                let mut failing = health.failing.lock().unwrap_or_else(|e| e.into_inner());
                if failing.is_none() {
                    tracing::error!(error = %message, "STORE CANNOT WRITE: the service goes on from memory and keeps every write until the disk takes it (free space, or fix the data dir's permissions)");
                }
                *failing = Some(message.clone());
                drop(failing);
                health
                    .pending
                    .store(writes.len(), std::sync::atomic::Ordering::Relaxed);
                return writes
                    .into_iter()
                    .map(|(f, reply)| {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(WriteFailure::Pending(message.clone())));
                        }
                        f
                    })
                    .collect();
            }
            Err(e) => {
                // One write is wrong: drop it alone, tell its waiter, commit the rest.
                health
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "store write failed");
                let Some(i) = failed_at else {
                    for (_, reply) in writes {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(WriteFailure::Rejected(e.to_string())));
                        }
                    }
                    return Vec::new();
                };
                let (_, reply) = writes.remove(i);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(WriteFailure::Rejected(e.to_string())));
                }
                if writes.is_empty() {
                    return Vec::new();
                }
            }
        }
    }
}

/// Errors of the disk rather than of the write: worth keeping the write for.
fn is_disk_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | ReadOnly | CannotOpen | DatabaseBusy | DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

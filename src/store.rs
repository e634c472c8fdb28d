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

use crate::clock::EpochMs;
use crate::liveness::{SiteState, Transition};
use crate::sites::SiteId;

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
    #[error("store writer has stopped")]
    Stopped,
}

type WriteFn = Box<dyn FnOnce(&Transaction) -> rusqlite::Result<()> + Send>;

enum Op {
    Write(WriteFn, Option<oneshot::Sender<Result<(), String>>>),
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::Sender<Op>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
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
        migrate(&mut writer, now)?;
        let reader = open(&path)?;
        let (writes, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(writer, queue))
            .expect("spawn store writer");
        Ok(Store {
            writes,
            reader: Arc::new(Mutex::new(reader)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a write; it is applied in order, but nobody waits for it.
    pub fn write(&self, f: impl FnOnce(&Transaction) -> rusqlite::Result<()> + Send + 'static) {
        let _ = self.writes.send(Op::Write(Box::new(f), None));
    }

    /// Queues a write and waits until it is committed.
    pub async fn write_durable(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(Op::Write(Box::new(f), Some(tx)))
            .map_err(|_| StoreError::Stopped)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Write(message)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    /// Waits until everything queued before this call is on disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write_durable(|_| Ok(())).await
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

    /// Every transition before `before_ms` as (site, state, time), oldest first.
    pub async fn transitions_before(
        &self,
        before_ms: EpochMs,
    ) -> Result<Vec<(String, SiteState, EpochMs)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT site, to_state, at_ms FROM transitions WHERE at_ms < ?1 ORDER BY at_ms, id",
            )?;
            let rows = stmt.query_map(params![before_ms], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    parse_state(row.get::<_, String>(1)?),
                    row.get::<_, i64>(2)?,
                ))
            })?;
            rows.collect()
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
        slots: Vec<crate::schedule::RehearsalSlot>,
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
    pub async fn schedule(&self) -> Result<Vec<crate::schedule::RehearsalSlot>, StoreError> {
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
                    Some(crate::schedule::RehearsalSlot {
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
    pub fn load_web_sessions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare("SELECT token, caller FROM web_sessions")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
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
    ) -> Result<Vec<(crate::notices::Notice, Vec<(String, EpochMs)>)>, StoreError> {
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
            let notice = crate::notices::Notice {
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
fn parse_state(text: String) -> SiteState {
    text.parse().unwrap_or(SiteState::NeverSeen)
}

fn migrate(conn: &mut Connection, now: EpochMs) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
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

/// Applies queued writes in order; a burst becomes one transaction.
fn run_writer(mut conn: Connection, queue: mpsc::Receiver<Op>) {
    const BATCH: usize = 512;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut waiters = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for Op::Write(f, reply) in batch.drain(..) {
                f(&tx)?;
                waiters.extend(reply);
            }
            tx.commit()
        })();
        if let Err(e) = &result {
            tracing::error!(error = %e, "store write failed");
        }
        for waiter in waiters {
            let _ = waiter.send(result.as_ref().map(drop).map_err(|e| e.to_string()));
        }
    }
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

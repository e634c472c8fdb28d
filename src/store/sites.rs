//! The sites' history: liveness transitions, connection sessions, RTT samples, and
//! what the service restores from them at start.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::core::link::median;
use crate::core::liveness::{SiteState, Transition};
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

/// A stored transition of one site.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoredTransition {
    pub site: String,
    #[serde(flatten)]
    pub transition: Transition,
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

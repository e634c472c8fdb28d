//! Rehearsal checks and the rehearsal schedule.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::core::rehearsal::{Figures, RehearsalResult, Verdict};
use crate::core::schedule::RehearsalSlot;
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

impl Store {
    /// Queues a finished rehearsal check.
    pub fn record_rehearsal(&self, result: &RehearsalResult) {
        let stored = result.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO rehearsals (id, site, started_ms, finished_ms, technician, checklist, figures, rows, verdict)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    stored.id.to_string(),
                    stored.site.as_str(),
                    stored.started_ms,
                    stored.finished_ms,
                    stored.technician,
                    serde_json::to_string(&stored.checklist).expect("serializes"),
                    serde_json::to_string(&stored.figures).expect("serializes"),
                    serde_json::to_string(&stored.rows).expect("serializes"),
                    stored.verdict.as_str(),
                ],
            )
            .map(drop)
        });
    }

    /// Replaces the whole rehearsal schedule.
    pub async fn replace_schedule(&self, slots: Vec<RehearsalSlot>) -> Result<(), StoreError> {
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
    pub async fn schedule(&self) -> Result<Vec<RehearsalSlot>, StoreError> {
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
                    Some(RehearsalSlot {
                        site: site.parse().ok()?,
                        starts_ms,
                        ends_ms,
                    })
                })
                .collect())
        })
        .await
    }

    /// Rehearsal checks, newest first; of one site, or of all.
    pub async fn rehearsals(
        &self,
        site: Option<SiteId>,
    ) -> Result<Vec<StoredRehearsal>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, site, started_ms, finished_ms, technician, checklist, figures, rows, verdict
                 FROM rehearsals WHERE ?1 IS NULL OR site = ?1 ORDER BY started_ms DESC, rowid DESC",
            )?;
            let mut rows = stmt.query(params![site.map(|s| s.to_string())])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                // Written by this program: a site that does not parse cannot happen
                // short of manual edits, and could not be shown against a site.
                let Ok(site) = row.get_ref(1)?.as_str()?.parse() else {
                    continue;
                };
                let id = row.get(0)?;
                found.push(StoredRehearsal {
                    id,
                    site,
                    started_ms: row.get(2)?,
                    finished_ms: row.get(3)?,
                    technician: row.get(4)?,
                    checklist: json_or_default(row.get_ref(5)?.as_str()?),
                    figures: json_or_default(row.get_ref(6)?.as_str()?),
                    rows: json_or_default(row.get_ref(7)?.as_str()?),
                    verdict: verdict(row.get_ref(8)?.as_str()?),
                });
            }
            Ok(found)
        })
        .await
    }
}

/// A stored rehearsal check, as the board, the call list, the report and the CSV read
/// it (the same fields as the `RehearsalResult` that was stored).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredRehearsal {
    /// The check's id (a UUID when this program wrote it).
    pub id: String,
    pub site: SiteId,
    pub started_ms: EpochMs,
    pub finished_ms: EpochMs,
    pub technician: String,
    pub checklist: BTreeMap<String, bool>,
    pub figures: Figures,
    pub rows: Vec<StoredRow>,
    pub verdict: Verdict,
}

/// One row of a stored verdict table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredRow {
    pub metric: String,
    pub label: String,
    pub figure: Option<f64>,
    pub unit: String,
    pub threshold: String,
    pub verdict: Option<Verdict>,
    pub advice: Option<String>,
}

/// A JSON column written by this program; empty if someone edited it into nonsense.
fn json_or_default<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

/// Verdicts written by this program always parse; anything else reads as a fail.
fn verdict(text: &str) -> Verdict {
    match text {
        "pass" => Verdict::Pass,
        "warn" => Verdict::Warn,
        _ => Verdict::Fail,
    }
}

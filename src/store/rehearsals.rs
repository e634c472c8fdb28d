//! Rehearsal checks and the rehearsal schedule.

use rusqlite::params;

use super::{Store, StoreError};
use crate::core::rehearsal::RehearsalResult;
use crate::core::schedule::RehearsalSlot;
use crate::core::sites::SiteId;

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
}

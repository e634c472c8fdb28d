//! The service's own downtime intervals: appended at each start that follows a stop
//! or a crash, never changed.

use rusqlite::params;

use super::{Store, StoreError};
use crate::core::report::Downtime;
use crate::core::time::EpochMs;

impl Store {
    /// Queues one interval the service was not running, and why (`crash`, `stopped`).
    pub fn record_downtime(&self, downtime: Downtime, cause: &'static str) {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO service_downtime (from_ms, to_ms, cause) VALUES (?1, ?2, ?3)",
                params![downtime.from_ms, downtime.to_ms, cause],
            )
            .map(drop)
        });
    }

    /// Every downtime interval that overlaps `[from, to)`, oldest first, with its cause.
    pub async fn downtime_between(
        &self,
        from: EpochMs,
        to: EpochMs,
    ) -> Result<Vec<(Downtime, String)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT from_ms, to_ms, cause FROM service_downtime
                 WHERE to_ms > ?1 AND from_ms < ?2 ORDER BY from_ms, id",
            )?;
            let rows = stmt.query_map(params![from, to], |row| {
                Ok((
                    Downtime {
                        from_ms: row.get(0)?,
                        to_ms: row.get(1)?,
                    },
                    row.get(2)?,
                ))
            })?;
            rows.collect()
        })
        .await
    }

    /// The whole downtime so far (the live uptime leaves it out).
    pub fn downtime_total_ms(&self) -> Result<EpochMs, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(conn.query_row(
            "SELECT COALESCE(SUM(to_ms - from_ms), 0) FROM service_downtime",
            [],
            |row| row.get(0),
        )?)
    }
}

//! Wall alerts marked "Đã biết": appended, never changed.

use rusqlite::params;

use super::{Store, StoreError};
use crate::core::notices::Dismissal;

/// The most recent dismissals a wall loads (a day has a few hundred at most).
const RECENT: i64 = 1000;

impl Store {
    /// Stores a dismissal before the walls hear of it (awaits the disk).
    pub async fn record_dismissal(&self, dismissal: &Dismissal) -> Result<(), StoreError> {
        let row = dismissal.clone();
        self.write_durable(move |tx| {
            tx.execute(
                "INSERT INTO alert_dismissals (alert, site, text, name, by_role, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.alert,
                    row.site.map(|s| s.to_string()),
                    row.text,
                    row.name,
                    row.by,
                    row.at_ms
                ],
            )
            .map(drop)
        })
        .await
    }

    /// The latest dismissals, oldest first.
    pub async fn recent_dismissals(&self) -> Result<Vec<Dismissal>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT alert, site, text, name, by_role, at_ms FROM
                   (SELECT * FROM alert_dismissals ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )?;
            let rows = stmt.query_map(params![RECENT], |row| {
                Ok(Dismissal {
                    alert: row.get(0)?,
                    site: row
                        .get::<_, Option<String>>(1)?
                        .and_then(|code| code.parse().ok()),
                    text: row.get(2)?,
                    name: row.get(3)?,
                    by: row.get(4)?,
                    at_ms: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

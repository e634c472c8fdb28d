//! Incident events and excused sites: appended, never changed. The incident book is
//! rebuilt from the events at start.

use rusqlite::{Connection, params};

use super::{Store, StoreError};
use crate::core::incidents::{Excusal, IncidentEvent};

impl Store {
    /// Queues an event the rules produced (nobody waits for it).
    pub fn record_incident_event(&self, event: &IncidentEvent) {
        let row = event.clone();
        self.write(move |tx| insert_event(tx, &row));
    }

    /// Stores a person's act on an incident before anyone hears of it (awaits the disk).
    pub async fn record_incident_act(&self, event: &IncidentEvent) -> Result<(), StoreError> {
        let row = event.clone();
        self.write_durable(move |tx| insert_event(tx, &row)).await
    }

    /// Every incident event, in the order it was stored (for the report).
    pub async fn incident_events(&self) -> Result<Vec<IncidentEvent>, StoreError> {
        self.read(events).await
    }

    /// The same, at start (before the async runtime serves anyone).
    pub fn load_incident_events(&self) -> Result<Vec<IncidentEvent>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(events(&conn)?)
    }

    pub fn load_excusals(&self) -> Result<Vec<Excusal>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        Ok(excusals(&conn)?)
    }

    pub async fn record_excusal(&self, excusal: &Excusal) -> Result<(), StoreError> {
        let row = excusal.clone();
        self.write_durable(move |tx| {
            tx.execute(
                "INSERT INTO excusals (site, excused, name, by_role, reason, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.site.to_string(),
                    row.excused,
                    row.name,
                    row.role,
                    row.reason,
                    row.at_ms
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Every excusal, oldest first (a site's latest is in force).
    pub async fn excusals(&self) -> Result<Vec<Excusal>, StoreError> {
        self.read(excusals).await
    }
}

/// Events in stored order. An unreadable row (a kind a newer version wrote) is left out
/// with a warning rather than losing the rest.
fn events(conn: &Connection) -> rusqlite::Result<Vec<IncidentEvent>> {
    let mut stmt = conn.prepare_cached("SELECT id, event FROM incident_events ORDER BY id")?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let rows: Vec<(i64, String)> = rows.collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, text)| match serde_json::from_str(&text) {
            Ok(event) => Some(event),
            Err(error) => {
                tracing::warn!(row = id, %error, "an incident event this version cannot read is left out");
                None
            }
        })
        .collect())
}

fn excusals(conn: &Connection) -> rusqlite::Result<Vec<Excusal>> {
    let mut stmt = conn.prepare_cached(
        "SELECT site, excused, name, by_role, reason, at_ms FROM excusals ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    })?;
    let rows: Vec<(String, bool, String, String, String, i64)> =
        rows.collect::<rusqlite::Result<_>>()?;
    // A site code this version cannot read is left out, not the whole list.
    Ok(rows
        .into_iter()
        .filter_map(|(code, excused, name, role, reason, at_ms)| {
            Some(Excusal {
                site: code.parse().ok()?,
                excused,
                name,
                role,
                reason,
                at_ms,
            })
        })
        .collect())
}

fn insert_event(tx: &rusqlite::Transaction, event: &IncidentEvent) -> rusqlite::Result<()> {
    let json = serde_json::to_string(event).expect("an incident event serializes");
    tx.execute(
        "INSERT INTO incident_events (incident, kind, at_ms, event) VALUES (?1, ?2, ?3, ?4)",
        params![
            event.incident().to_string(),
            event.kind(),
            event.at_ms(),
            json
        ],
    )
    .map(drop)
}

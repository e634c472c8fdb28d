//! The history of the active checks of the sites' equipment.

use rusqlite::params;

use super::{Store, StoreError};
use crate::core::device::{DeviceState, DeviceTransition};
use crate::core::sites::SiteId;

impl Store {
    /// Queues a change of a site's equipment state.
    pub fn record_device_transition(&self, site: SiteId, t: &DeviceTransition) {
        let t = t.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO device_transitions (site, from_state, to_state, at_ms, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![site.as_str(), t.from.as_str(), t.to.as_str(), t.at_ms, t.reason],
            )
            .map(drop)
        });
    }

    /// The newest device-check transitions of a site, newest first.
    pub async fn device_transitions(
        &self,
        site: SiteId,
        limit: u32,
    ) -> Result<Vec<DeviceTransition>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT from_state, to_state, at_ms, reason FROM device_transitions WHERE site = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![site.as_str(), limit], |row| {
                Ok(DeviceTransition {
                    from: device_state(row.get_ref(0)?.as_str()?),
                    to: device_state(row.get_ref(1)?.as_str()?),
                    at_ms: row.get(2)?,
                    reason: row.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

/// States written by this program always parse; anything else reads as unknown.
fn device_state(text: &str) -> DeviceState {
    match text {
        "up" => DeviceState::Up,
        "down" => DeviceState::Down,
        _ => DeviceState::Unknown,
    }
}

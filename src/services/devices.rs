//! The results of the active checks of the sites' video equipment (a TCP connect to each
//! site's `probe` address, run by `tasks`), one `DeviceCheck` per site.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::core::device::{DeviceCheck, DeviceTransition};
use crate::core::sites::SiteIdx;

/// Current results, by site index (only sites with a probe address).
#[derive(Default)]
pub struct Devices {
    /// Guards each site's latest equipment check. A std `Mutex`: held to record one
    /// result and queue its stored transition (non-blocking), or to copy the results
    /// out; never across an await.
    checks: Mutex<HashMap<SiteIdx, DeviceCheck>>,
}

impl Devices {
    /// Every checked device, by site index.
    pub fn all(&self) -> Vec<(SiteIdx, DeviceCheck)> {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.iter().map(|(i, c)| (*i, c.clone())).collect()
    }

    pub fn get(&self, site: SiteIdx) -> Option<DeviceCheck> {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&site)
            .cloned()
    }

    /// Records one check; a change of state is handed to `persist` before the lock is
    /// released, so a reader that saw the new state and then flushed the store also
    /// finds the transition in the history.
    pub fn record(
        &self,
        site: SiteIdx,
        result: Result<f64, String>,
        now: i64,
        failures_to_down: u32,
        persist: impl FnOnce(&DeviceTransition),
    ) -> Option<DeviceTransition> {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let transition = checks
            .entry(site)
            .or_default()
            .record(result, now, failures_to_down);
        if let Some(t) = &transition {
            persist(t);
        }
        transition
    }
}

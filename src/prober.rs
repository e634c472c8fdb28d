//! Runs the active checks: a TCP connect to each site's `probe` address on a schedule
//! (blackbox style), with metrics, stored transitions and live-feed events.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::params;
use serde_json::json;
use tokio::net::TcpStream;

use crate::app::AppState;
use crate::device::{DeviceCheck, DeviceTransition};
use crate::hub::Topic;
use crate::sites::SiteIdx;

/// Current results, by site index (only sites with a probe address).
#[derive(Default)]
pub struct Devices {
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
    fn record(
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

/// Starts one checking task per site that has a probe address.
pub fn spawn_all(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
    state
        .roster
        .sites()
        .iter()
        .enumerate()
        .filter_map(|(idx, site)| site.probe.clone().map(|address| (idx, address)))
        .map(|(idx, address)| tokio::spawn(check_forever(state.clone(), idx, address)))
        .collect()
}

async fn check_forever(state: AppState, site: SiteIdx, address: String) {
    let config = &state.config.checks;
    let mut every = tokio::time::interval(Duration::from_millis(config.interval_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(config.timeout_ms);
    loop {
        every.tick().await;
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
            Ok(Ok(_stream)) => Ok(started.elapsed().as_secs_f64() * 1000.0),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", config.timeout_ms)),
        };
        let now = state.clock.now_ms();
        state.metrics.device_check(
            site,
            result.as_ref().ok().copied(),
            started.elapsed().as_secs_f64(),
        );
        let id = state.roster.site(site).id;
        let persist = |t: &DeviceTransition| {
            let stored = t.clone();
            state.store.write(move |tx| {
                tx.execute(
                    "INSERT INTO device_transitions (site, from_state, to_state, at_ms, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id.as_str(), stored.from.as_str(), stored.to.as_str(), stored.at_ms, stored.reason],
                )
                .map(drop)
            });
        };
        if let Some(t) = state
            .devices
            .record(site, result, now, config.failures_to_down, persist)
        {
            tracing::info!(site = %id, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "device state changed");
            let event = json!({"type": "device", "site": id, "transition": t, "device": state.devices.get(site)});
            state.hub.publish(Topic::Sites, |seq| {
                let mut event = event;
                event["seq"] = json!(seq);
                event.to_string()
            });
        }
    }
}

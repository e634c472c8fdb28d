//! Every background loop of `serve`: each reads the clock or waits on a channel, then
//! calls one service. `App::run` starts them and aborts them at shutdown.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::core::device::DeviceTransition;
use crate::core::liveness::SiteState;
use crate::core::report::Downtime;
use crate::core::sites::{SiteId, SiteIdx};
use crate::core::time::EpochMs;
use crate::protocol::LiveMsg;
use crate::state::AppState;

/// Starts every loop; the handles are aborted when the server stops.
pub fn spawn_all(
    state: &AppState,
    site_changes: mpsc::UnboundedReceiver<(SiteId, SiteState, EpochMs)>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(publish_links(state.clone())),
        tokio::spawn(state.timekeeper.clone().run_auto_stop()),
        tokio::spawn(follow_site_changes(state.clone(), site_changes)),
        tokio::spawn(incident_rules(state.clone())),
        tokio::spawn(follow_keys(state.clone())),
        tokio::spawn(sample_rtt(state.clone())),
        tokio::spawn(pulse(state.clone())),
        tokio::spawn(restart_grace(state.clone())),
        tokio::spawn(watch_wall_clock(state.clone())),
        tokio::spawn(refresh_programme(state.clone())),
    ];
    tasks.extend(spawn_device_checks(state));
    tasks
}

/// The service's pulse, every 40 ms: after a crash the next start knows when it
/// stopped to within a twenty-fifth of a second (two crashes stay within 0.1 s).
async fn pulse(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(40));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.pulse.beat(state.clock.now_ms());
    }
}

/// Once a second: did the wall clock step (NTP, a resumed VM)? Service time follows a
/// forward step (`clock::SystemClock::rebase`); the skipped interval is recorded as
/// the service's dead time (nobody's uptime nor outage), and every silence, running
/// slot and page clock is moved with it, so nothing jumps.
async fn watch_wall_clock(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(step) = state.clock.rebase() else {
            continue;
        };
        // Silences at once (a session's next check must not see the skipped minutes), the
        // running slot next (a stored command), then the pages' and bridges' clocks (the
        // `clock_step` frame follows the timer frame at once).
        state.hub.clock_stepped_silences(step.by_ms);
        state.timekeeper.clock_stepped(step.by_ms).await;
        state.hub.clock_stepped(step.by_ms, step.to_ms);
        tracing::warn!(
            by_ms = step.by_ms,
            from_ms = step.from_ms,
            to_ms = step.to_ms,
            "the wall clock stepped forward: service time follows (records stay in true wall time); \
             the interval is left out of every site's uptime, countdowns and silences do not jump"
        );
        state.metrics.clock_step(step.by_ms);
        state.store.record_downtime(
            Downtime {
                from_ms: step.from_ms,
                to_ms: step.to_ms,
            },
            "clock_step",
        );
    }
}

/// Every 15 s: the programme's "Chậm N phút" stays true while nobody presses a key.
async fn refresh_programme(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(15));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is at once: the start's snapshot says it all
    loop {
        every.tick().await;
        state.timekeeper.refresh_programme();
    }
}

/// Once the offline threshold has passed after the start, the sites that were up
/// before the restart and are not back are offline.
async fn restart_grace(state: AppState) {
    tokio::time::sleep(Duration::from_millis(
        state.config.liveness.offline_after_ms,
    ))
    .await;
    state.hub.restart_grace_over();
}

/// Follows `secrets.toml`: a rotated key stops working at once (within a second), and
/// its page sessions and open sockets end.
async fn follow_keys(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match state.secrets.reload_if_changed() {
            Ok(changed) => {
                for holder in changed {
                    revoke(&state, holder);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "secrets.toml changed but cannot be used: the keys in force stay");
            }
        }
    }
}

fn revoke(state: &AppState, holder: Caller) {
    tracing::warn!(holder = %holder.label(), "key rotated: its page sessions and sockets end");
    state.sessions.revoke(holder);
    if let Caller::Site(id) = holder
        && let Some(idx) = state.roster.index_of(id)
    {
        state.hub.kick(idx, crate::protocol::close::BAD_KEY);
    }
    let _ = state.revoked.send(holder);
}

/// Hands every state change to the incident desk, and every drop to the timekeeper
/// (a presenting site that drops pauses its slot).
async fn follow_site_changes(
    state: AppState,
    mut changes: mpsc::UnboundedReceiver<(SiteId, SiteState, EpochMs)>,
) {
    while let Some((site, to, at_ms)) = changes.recv().await {
        state.incidents.site_changed(site, to, at_ms);
        if to == SiteState::Offline {
            state.timekeeper.site_offline(site, at_ms).await;
        }
    }
}

/// Every second: the incidents' time rules (degraded too long, back long enough to
/// close, nobody took it).
async fn incident_rules(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.incidents.tick();
    }
}

/// Every `report.rtt_sample_ms`, each connected site's median RTT is stored, so the
/// evidence report can give the RTT of its own window, long after the day.
async fn sample_rtt(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(state.config.report.rtt_sample_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is immediate: nobody is connected yet
    loop {
        every.tick().await;
        let medians = state.hub.connected_rtt_medians();
        if !medians.is_empty() {
            state
                .store
                .record_rtt_medians(state.clock.now_ms(), medians);
        }
    }
}

/// Every probe interval, the link figures of connected sites go to the live feed.
async fn publish_links(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(
        state.config.liveness.probe_interval_ms,
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.hub.publish_links();
    }
}

/// Starts one checking task per site that has a probe address.
fn spawn_device_checks(state: &AppState) -> Vec<tokio::task::JoinHandle<()>> {
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
        let persist = |t: &DeviceTransition| state.store.record_device_transition(id, t);
        if let Some(t) = state
            .devices
            .record(site, result, now, config.failures_to_down, persist)
        {
            tracing::info!(site = %id, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "device state changed");
            state.incidents.device_changed(
                id,
                t.to == crate::core::device::DeviceState::Down,
                t.at_ms,
            );
            state.hub.publish(LiveMsg::Device {
                site: id,
                transition: t,
                device: state.devices.get(site),
            });
        }
    }
}

//! Liveness of one site: `never_seen` → `online` ⇄ `degraded` → `offline`.
//!
//! Pure: every method takes `now`. One deadline per site (`next_deadline`): the shell
//! sleeps until it and calls `tick`; every valid inbound frame pushes it back.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::core::time::EpochMs;

/// What the wall shows for a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    NeverSeen,
    Online,
    Degraded,
    Offline,
}

impl SiteState {
    pub const ALL: [SiteState; 4] = [
        SiteState::NeverSeen,
        SiteState::Online,
        SiteState::Degraded,
        SiteState::Offline,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SiteState::NeverSeen => "never_seen",
            SiteState::Online => "online",
            SiteState::Degraded => "degraded",
            SiteState::Offline => "offline",
        }
    }

    /// Counted as up for uptime: the site is connected and heard from.
    pub fn is_up(&self) -> bool {
        matches!(self, SiteState::Online | SiteState::Degraded)
    }
}

impl FromStr for SiteState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown site state `{s}`"))
    }
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state, with when it became true and when it was noticed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: SiteState,
    pub to: SiteState,
    /// When the new state became true (for silence: last frame + threshold).
    pub at_ms: EpochMs,
    /// When the server noticed.
    pub detected_at_ms: EpochMs,
    pub reason: String,
}

/// Thresholds, from `[liveness]` in the config.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub degraded_after_ms: i64,
    pub offline_after_ms: i64,
    pub online_after_echoes: u32,
    pub flapping_offline_count: u32,
    pub flapping_window_ms: i64,
}

/// Liveness state machine of one site.
#[derive(Clone, Debug)]
pub struct Liveness {
    state: SiteState,
    /// When `state` began.
    since_ms: Option<EpochMs>,
    /// Last valid inbound frame; the deadlines count from here.
    last_seen_ms: Option<EpochMs>,
    /// A socket is open for this site.
    connected: bool,
    /// Timely echoes in a row since the site was last degraded.
    timely_echoes: u32,
    /// Times the site went offline, pruned to the flapping window.
    offline_times: VecDeque<EpochMs>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            state: SiteState::NeverSeen,
            since_ms: None,
            last_seen_ms: None,
            connected: false,
            timely_echoes: 0,
            offline_times: VecDeque::new(),
        }
    }
}

impl Liveness {
    pub fn state(&self) -> SiteState {
        self.state
    }

    pub fn since_ms(&self) -> Option<EpochMs> {
        self.since_ms
    }

    pub fn last_seen_ms(&self) -> Option<EpochMs> {
        self.last_seen_ms
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Service time stepped by `by_ms` (the wall clock jumped): the silence counts from
    /// the same moment as before, so the step is nobody's silence. `since` stays the
    /// time that was recorded.
    pub fn shift(&mut self, by_ms: i64) {
        if let Some(last) = self.last_seen_ms.as_mut() {
            *last += by_ms;
        }
    }

    /// Restores what history says (the state before a restart is not carried over:
    /// sites start `never_seen` until they reconnect; only the flapping record is).
    pub fn remember_offline(&mut self, at_ms: EpochMs) {
        self.offline_times.push_back(at_ms);
    }

    /// A site that was up when the service stopped: last heard at `at_ms` at the latest.
    pub fn remember_last_seen(&mut self, at_ms: EpochMs) {
        self.last_seen_ms = Some(at_ms);
    }

    /// A site that was up before a restart and has not come back within the offline
    /// threshold of it: offline (a real absence, which alerts and counts).
    pub fn not_back_after_restart(&mut self, now: EpochMs) -> Option<Transition> {
        if self.connected || self.state != SiteState::NeverSeen {
            return None;
        }
        self.change(
            SiteState::Offline,
            now,
            now,
            "không kết nối lại sau khi máy chủ khởi động lại — not back after the server restarted"
                .into(),
        )
    }

    /// A site said a valid `hello`: a fresh socket is proof enough to be online.
    pub fn connected(&mut self, now: EpochMs) -> Option<Transition> {
        self.connected = true;
        self.last_seen_ms = Some(now);
        self.timely_echoes = 0;
        self.change(SiteState::Online, now, now, "connected".into())
    }

    /// Any valid inbound frame: re-arms the deadline.
    pub fn heard(&mut self, now: EpochMs) {
        if self.connected {
            self.last_seen_ms = Some(now);
        }
    }

    /// An echo came back; `timely` when it answered its probe within the stall limit.
    /// A degraded site is online again after enough timely echoes in a row.
    pub fn echo(&mut self, now: EpochMs, timely: bool, limits: &Thresholds) -> Option<Transition> {
        self.heard(now);
        if !timely {
            self.timely_echoes = 0;
            return None;
        }
        self.timely_echoes += 1;
        if self.connected
            && self.state == SiteState::Degraded
            && self.timely_echoes >= limits.online_after_echoes
        {
            let reason = format!("{} timely echoes", self.timely_echoes);
            return self.change(SiteState::Online, now, now, reason);
        }
        None
    }

    /// A probe got no timely answer: the run of good echoes starts again.
    pub fn probe_missed(&mut self) {
        self.timely_echoes = 0;
    }

    /// When `tick` may next change the state, if ever.
    pub fn next_deadline(&self, limits: &Thresholds) -> Option<EpochMs> {
        let last = self.last_seen_ms?;
        match (self.connected, self.state) {
            (true, SiteState::Online) => Some(last + limits.degraded_after_ms),
            (true, SiteState::Degraded) => Some(last + limits.offline_after_ms),
            _ => None,
        }
    }

    /// Applies silence deadlines that have passed by `now`.
    pub fn tick(&mut self, now: EpochMs, limits: &Thresholds) -> Vec<Transition> {
        let mut changes = Vec::new();
        let Some(last) = self.last_seen_ms.filter(|_| self.connected) else {
            return changes;
        };
        let silence = now - last;
        let steps = [
            (
                SiteState::Online,
                SiteState::Degraded,
                limits.degraded_after_ms,
            ),
            (
                SiteState::Degraded,
                SiteState::Offline,
                limits.offline_after_ms,
            ),
        ];
        for (from, to, after) in steps {
            if self.state == from && silence >= after {
                let reason = format!("no frame for {after} ms");
                changes.extend(self.change(to, last + after, now, reason));
                self.timely_echoes = 0;
            }
        }
        changes
    }

    /// The socket closed or failed: offline at once.
    pub fn disconnected(&mut self, now: EpochMs, reason: &str) -> Option<Transition> {
        self.connected = false;
        match self.state {
            SiteState::NeverSeen | SiteState::Offline => None,
            _ => self.change(SiteState::Offline, now, now, reason.to_string()),
        }
    }

    /// Offline at least `flapping_offline_count` times within the window before `now`.
    pub fn is_flapping(&self, now: EpochMs, limits: &Thresholds) -> bool {
        let recent = self
            .offline_times
            .iter()
            .filter(|at| now - **at <= limits.flapping_window_ms)
            .count();
        recent >= limits.flapping_offline_count as usize
    }

    fn change(
        &mut self,
        to: SiteState,
        at_ms: EpochMs,
        detected_at_ms: EpochMs,
        reason: String,
    ) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.since_ms = Some(at_ms);
        if to == SiteState::Offline {
            self.offline_times.push_back(at_ms);
            // Keep the record bounded: only the newest entries can count.
            while self.offline_times.len() > 64 {
                self.offline_times.pop_front();
            }
        }
        Some(Transition {
            from,
            to,
            at_ms,
            detected_at_ms,
            reason,
        })
    }
}

/// Time up (online or degraded) since tracking began, folded from transitions.
#[derive(Clone, Debug)]
pub struct Uptime {
    tracking_since_ms: EpochMs,
    up_ms: i64,
    up_since_ms: Option<EpochMs>,
    /// Time the service itself was down: watched by nobody, left out of the ratio.
    unwatched_ms: i64,
}

impl Uptime {
    pub fn new(tracking_since_ms: EpochMs) -> Self {
        Self {
            tracking_since_ms,
            up_ms: 0,
            up_since_ms: None,
            unwatched_ms: 0,
        }
    }

    /// Leaves `ms` of the service's own downtime out of the observed time.
    pub fn exclude(&mut self, ms: i64) {
        self.unwatched_ms += ms.max(0);
    }

    /// Service time jumped forward by `by_ms` (the wall clock stepped): that interval is
    /// nobody's time, neither up nor down.
    pub fn skip(&mut self, by_ms: i64) {
        self.exclude(by_ms);
        if let Some(since) = self.up_since_ms.as_mut() {
            *since += by_ms.max(0);
        }
    }

    /// Folds one transition in (in time order).
    pub fn apply(&mut self, to: SiteState, at_ms: EpochMs) {
        match (self.up_since_ms, to.is_up()) {
            (None, true) => self.up_since_ms = Some(at_ms),
            (Some(since), false) => {
                self.up_ms += (at_ms - since).max(0);
                self.up_since_ms = None;
            }
            _ => {}
        }
    }

    /// Fraction of the time since tracking began that the site was up.
    pub fn ratio(&self, now: EpochMs) -> Option<f64> {
        let observed = now - self.tracking_since_ms - self.unwatched_ms;
        if observed <= 0 {
            return None;
        }
        let current = self.up_since_ms.map_or(0, |since| (now - since).max(0));
        Some(((self.up_ms + current) as f64 / observed as f64).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Thresholds = Thresholds {
        degraded_after_ms: 6000,
        offline_after_ms: 15000,
        online_after_echoes: 3,
        flapping_offline_count: 3,
        flapping_window_ms: 600_000,
    };

    fn online_at(t: EpochMs) -> Liveness {
        let mut site = Liveness::default();
        site.connected(t).unwrap();
        site
    }

    #[test]
    fn hello_makes_a_never_seen_site_online() {
        let mut site = Liveness::default();
        let t = site.connected(1000).unwrap();
        assert_eq!(
            (t.from, t.to, t.at_ms),
            (SiteState::NeverSeen, SiteState::Online, 1000)
        );
        assert_eq!(site.since_ms(), Some(1000));
    }

    #[test]
    fn silent_site_turns_degraded_then_offline_at_the_thresholds_to_the_millisecond() {
        let mut site = online_at(0);
        assert_eq!(site.next_deadline(&LIMITS), Some(6000));
        assert!(site.tick(5999, &LIMITS).is_empty());
        let t = site.tick(6000, &LIMITS);
        assert_eq!(t[0].to, SiteState::Degraded);
        assert_eq!(site.next_deadline(&LIMITS), Some(15000));
        assert!(site.tick(14_999, &LIMITS).is_empty());
        let t = site.tick(15_020, &LIMITS);
        assert_eq!(t[0].to, SiteState::Offline);
        assert_eq!((t[0].at_ms, t[0].detected_at_ms), (15_000, 15_020));
        assert_eq!(site.next_deadline(&LIMITS), None);
    }

    #[test]
    fn a_late_tick_records_both_transitions_at_the_times_they_became_true() {
        let mut site = online_at(0);
        let t = site.tick(20_000, &LIMITS);
        let seen: Vec<_> = t
            .iter()
            .map(|t| (t.to, t.at_ms, t.detected_at_ms))
            .collect();
        assert_eq!(
            seen,
            vec![
                (SiteState::Degraded, 6000, 20_000),
                (SiteState::Offline, 15_000, 20_000)
            ]
        );
    }

    #[test]
    fn every_frame_rearms_the_deadline() {
        let mut site = online_at(0);
        site.heard(5000);
        assert!(site.tick(6000, &LIMITS).is_empty());
        assert_eq!(site.next_deadline(&LIMITS), Some(11_000));
    }

    #[test]
    fn degraded_site_needs_three_timely_echoes_in_a_row() {
        let mut site = online_at(0);
        site.tick(6000, &LIMITS);
        assert!(site.echo(7000, true, &LIMITS).is_none());
        assert!(site.echo(9000, true, &LIMITS).is_none());
        site.probe_missed();
        assert!(site.echo(11_000, true, &LIMITS).is_none());
        assert!(site.echo(13_000, false, &LIMITS).is_none());
        assert!(site.echo(15_000, true, &LIMITS).is_none());
        assert!(site.echo(17_000, true, &LIMITS).is_none());
        let t = site.echo(19_000, true, &LIMITS).unwrap();
        assert_eq!(
            (t.from, t.to, t.reason.as_str()),
            (SiteState::Degraded, SiteState::Online, "3 timely echoes")
        );
    }

    #[test]
    fn closing_the_socket_is_offline_at_once_and_reconnect_is_online() {
        let mut site = online_at(0);
        let t = site.disconnected(500, "socket closed").unwrap();
        assert_eq!((t.to, t.at_ms), (SiteState::Offline, 500));
        assert!(
            site.tick(100_000, &LIMITS).is_empty(),
            "no deadline while disconnected"
        );
        assert!(site.disconnected(600, "again").is_none());
        assert_eq!(site.connected(700).unwrap().to, SiteState::Online);
    }

    #[test]
    fn three_drops_in_ten_minutes_is_flapping_and_it_wears_off() {
        let mut site = Liveness::default();
        for minute in 0..3 {
            let t = minute * 60_000;
            site.connected(t);
            site.disconnected(t + 1000, "closed");
        }
        assert!(site.is_flapping(130_000, &LIMITS));
        assert!(!site.is_flapping(60_000 + 1000 + 600_001, &LIMITS));
        let mut calm = Liveness::default();
        calm.connected(0);
        calm.disconnected(1, "closed");
        assert!(!calm.is_flapping(2, &LIMITS));
    }

    #[test]
    fn uptime_counts_online_and_degraded_time() {
        let mut uptime = Uptime::new(0);
        uptime.apply(SiteState::Online, 100);
        uptime.apply(SiteState::Degraded, 300);
        uptime.apply(SiteState::Offline, 600);
        uptime.apply(SiteState::Online, 800);
        assert_eq!(uptime.ratio(1000), Some(0.7));
        assert_eq!(Uptime::new(5).ratio(5), None);
    }

    #[test]
    fn state_names_round_trip() {
        for state in SiteState::ALL {
            assert_eq!(state.as_str().parse::<SiteState>().unwrap(), state);
        }
    }

    #[test]
    fn a_clock_step_is_neither_silence_nor_uptime() {
        let limits = LIMITS;
        let mut site = online_at(0);
        site.heard(1_000);
        // The wall clock jumps 3 minutes forward: without the shift, 180 s of silence.
        site.shift(180_000);
        assert!(site.tick(181_500, &limits).is_empty(), "still online");
        assert_eq!(site.state(), SiteState::Online);
        let mut uptime = Uptime::new(0);
        uptime.apply(SiteState::Online, 0);
        uptime.skip(180_000);
        assert_eq!(
            uptime.ratio(190_000),
            Some(1.0),
            "up all the watched time, not more"
        );
    }
}

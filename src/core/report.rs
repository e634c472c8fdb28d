//! The evidence report's figures ("số liệu minh chứng"): availability of each site
//! over the conference window, folded from stored transitions. Pure.

use serde::Serialize;

use crate::core::liveness::SiteState;
use crate::core::time::EpochMs;

/// How one site did over the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Availability {
    /// Time online or degraded, as a share of the window (0–1).
    pub uptime: f64,
    pub up_ms: i64,
    /// Periods offline within the window.
    pub outages: u32,
    pub outage_total_ms: i64,
    pub outage_longest_ms: i64,
}

/// When the service itself was not running (crashed, stopped, restarting): `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Downtime {
    pub from_ms: EpochMs,
    pub to_ms: EpochMs,
}

/// How much of `[start, end)` the service was running for.
fn watched(start: EpochMs, end: EpochMs, dead: &[Downtime]) -> i64 {
    let overlap: i64 = dead
        .iter()
        .map(|d| (end.min(d.to_ms) - start.max(d.from_ms)).max(0))
        .sum();
    ((end - start).max(0) - overlap).max(0)
}

/// Folds a site's transitions (`to`, `at_ms`, in time order) over `[from, to)`. Time
/// the service itself was down (`dead`, not overlapping) counts as neither up nor an
/// outage: nobody was watching; the uptime is a share of the time that was watched.
pub fn availability(
    transitions: &[(SiteState, EpochMs)],
    from: EpochMs,
    to: EpochMs,
    dead: &[Downtime],
) -> Availability {
    let mut result = Availability::default();
    let watched_window = watched(from, to, dead);
    if to <= from || watched_window == 0 {
        return result;
    }
    let mut state = transitions
        .iter()
        .take_while(|(_, at)| *at <= from)
        .last()
        .map_or(SiteState::NeverSeen, |(s, _)| *s);
    let mut since = from;
    let close = |state: SiteState, start: EpochMs, end: EpochMs, result: &mut Availability| {
        let length = watched(start, end, dead);
        if length == 0 {
            return;
        }
        if state.is_up() {
            result.up_ms += length;
        } else if state == SiteState::Offline {
            result.outage_total_ms += length;
            result.outage_longest_ms = result.outage_longest_ms.max(length);
        }
    };
    for (next, at) in transitions.iter().filter(|(_, at)| *at > from && *at < to) {
        close(state, since, *at, &mut result);
        if *next == SiteState::Offline && state != SiteState::Offline {
            result.outages += 1;
        }
        state = *next;
        since = *at;
    }
    close(state, since, to, &mut result);
    // An outage that began before the window and goes on into it counts too.
    if result.outages == 0 && result.outage_total_ms > 0 {
        result.outages = 1;
    }
    result.uptime = result.up_ms as f64 / watched_window as f64;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use SiteState::*;

    const MIN: i64 = 60_000;

    #[test]
    fn a_scripted_day_of_connects_and_drops() {
        // Window 08:00–11:00 as minutes 0–180. The site joins at 10, drops 60–65 and
        // 100–130, degrades 140–150, leaves at 170.
        let script = [
            (Online, 10 * MIN),
            (Offline, 60 * MIN),
            (Online, 65 * MIN),
            (Offline, 100 * MIN),
            (Online, 130 * MIN),
            (Degraded, 140 * MIN),
            (Online, 150 * MIN),
            (Offline, 170 * MIN),
        ];
        let a = availability(&script, 0, 180 * MIN, &[]);
        // Up: 10–60, 65–100, 130–170 = 50 + 35 + 40 = 125 minutes.
        assert_eq!(a.up_ms, 125 * MIN);
        assert!((a.uptime - 125.0 / 180.0).abs() < 1e-9);
        assert_eq!(a.outages, 3);
        assert_eq!(a.outage_total_ms, (5 + 30 + 10) * MIN);
        assert_eq!(a.outage_longest_ms, 30 * MIN);
    }

    #[test]
    fn the_state_before_the_window_carries_into_it() {
        let script = [(Online, -100 * MIN), (Offline, 20 * MIN)];
        let a = availability(&script, 0, 60 * MIN, &[]);
        assert_eq!(a.up_ms, 20 * MIN);
        assert_eq!((a.outages, a.outage_total_ms), (1, 40 * MIN));
        let already_down = [(Online, -100 * MIN), (Offline, -50 * MIN)];
        let a = availability(&already_down, 0, 60 * MIN, &[]);
        assert_eq!((a.uptime, a.outages, a.outage_total_ms), (0.0, 1, 60 * MIN));
    }

    #[test]
    fn a_site_never_seen_has_no_uptime_and_no_outage() {
        let a = availability(&[], 0, 60 * MIN, &[]);
        assert_eq!(a, Availability::default());
        assert_eq!(
            availability(&[(Online, 0)], 10, 10, &[]),
            Availability::default()
        );
    }

    #[test]
    fn the_services_own_downtime_is_neither_uptime_nor_an_outage() {
        // Up all hour by the records; the service was dead 10–12 and 40–45.
        let dead = [
            Downtime {
                from_ms: 10 * MIN,
                to_ms: 12 * MIN,
            },
            Downtime {
                from_ms: 40 * MIN,
                to_ms: 45 * MIN,
            },
        ];
        let a = availability(&[(Online, 0)], 0, 60 * MIN, &dead);
        assert_eq!(a.up_ms, 53 * MIN);
        assert_eq!(a.uptime, 1.0, "up whenever it was watched");
        assert_eq!((a.outages, a.outage_total_ms), (0, 0));
        // An outage that runs into the dead time is counted only while watched.
        let dropped = [(Online, 0), (Offline, 35 * MIN), (Online, 45 * MIN)];
        let a = availability(&dropped, 0, 60 * MIN, &dead);
        assert_eq!((a.outages, a.outage_total_ms), (1, 5 * MIN));
        assert_eq!(a.up_ms, 48 * MIN);
        assert!((a.uptime - 48.0 / 53.0).abs() < 1e-9);
    }
}

//! Server time: epoch milliseconds that never go backwards.
//!
//! The core takes `now` as an argument; this module is the only place that reads a
//! clock. `SystemClock` anchors a monotonic clock to the wall clock at start, so a
//! deadline never moves with the wall clock; once a second `rebase` compares the two.
//! When the wall clock has stepped forward (NTP correcting a clock that booted behind,
//! a virtual machine resumed after a pause, which the monotonic clock does not count)
//! the service time steps with it, so records stay in true wall time, and the caller
//! shifts what it keeps in memory by the step so that no countdown or silence jumps.
//! A wall clock stepped *back* is logged and not followed: new records would then be
//! dated before older ones (the next start takes the wall clock as it is).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::core::time::EpochMs;

/// A difference between the wall clock and service time smaller than this is no step
/// (NTP slews both clocks alike; reading them is not simultaneous).
pub const STEP_THRESHOLD_MS: i64 = 1000;

/// A source of server time, injectable so that tests can drive it.
pub trait Clock: Send + Sync + 'static {
    /// Current server time; successive calls never go backwards.
    fn now_ms(&self) -> EpochMs;

    /// Compares service time with the wall clock; follows a forward step (see the
    /// module's notes) and says so. A clock with no wall clock to follow never steps.
    fn rebase(&self) -> Option<ClockStep> {
        None
    }
}

/// Service time jumped from `from_ms` to `to_ms` with the wall clock (`by_ms` > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockStep {
    pub from_ms: EpochMs,
    pub to_ms: EpochMs,
    pub by_ms: i64,
}

/// Where `SystemClock` reads the two clocks: the machine's, or a test's.
pub trait TimeSource: Send + Sync + 'static {
    /// The wall clock, epoch milliseconds (may step).
    fn wall_ms(&self) -> EpochMs;
    /// A monotonic clock in milliseconds from any origin (never steps).
    fn monotonic_ms(&self) -> i64;
}

/// A source shared with whoever moves it (a test keeps a handle).
impl<T: TimeSource> TimeSource for std::sync::Arc<T> {
    fn wall_ms(&self) -> EpochMs {
        (**self).wall_ms()
    }

    fn monotonic_ms(&self) -> i64 {
        (**self).monotonic_ms()
    }
}

/// `SystemTime` and `Instant`.
pub struct MachineTime {
    origin: Instant,
}

impl TimeSource for MachineTime {
    fn wall_ms(&self) -> EpochMs {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as EpochMs
    }

    fn monotonic_ms(&self) -> i64 {
        self.origin.elapsed().as_millis() as i64
    }
}

/// The monotonic clock plus a base, which moves only when the wall clock steps forward.
pub struct SystemClock {
    source: Box<dyn TimeSource>,
    /// Service time = base + monotonic.
    base_ms: AtomicI64,
    /// The size of the last backward step seen, so that it is logged once.
    behind_logged_ms: AtomicI64,
}

impl SystemClock {
    pub fn new() -> Self {
        Self::with_source(MachineTime {
            origin: Instant::now(),
        })
    }

    pub fn with_source(source: impl TimeSource) -> Self {
        let base = source.wall_ms() - source.monotonic_ms();
        Self {
            source: Box::new(source),
            base_ms: AtomicI64::new(base),
            behind_logged_ms: AtomicI64::new(0),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> EpochMs {
        self.base_ms.load(Ordering::SeqCst) + self.source.monotonic_ms()
    }

    fn rebase(&self) -> Option<ClockStep> {
        let monotonic = self.source.monotonic_ms();
        let wall = self.source.wall_ms();
        let base = self.base_ms.load(Ordering::SeqCst);
        let by_ms = wall - (base + monotonic);
        if by_ms <= -STEP_THRESHOLD_MS {
            // Log each new backward step once (a second one makes the gap grow again).
            let logged = self.behind_logged_ms.load(Ordering::SeqCst);
            if -by_ms > logged + STEP_THRESHOLD_MS {
                self.behind_logged_ms.store(-by_ms, Ordering::SeqCst);
                tracing::warn!(
                    behind_ms = -by_ms,
                    "the wall clock stepped back: service time is not moved back (records would go                      before older ones); it stays ahead until the next start"
                );
            }
            return None;
        }
        if by_ms < STEP_THRESHOLD_MS {
            return None;
        }
        self.base_ms.fetch_add(by_ms, Ordering::SeqCst);
        Some(ClockStep {
            from_ms: base + monotonic,
            to_ms: wall,
            by_ms,
        })
    }
}

/// A clock that only moves when told to (tests).
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start_ms: EpochMs) -> Self {
        Self {
            now: AtomicI64::new(start_ms),
        }
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, ms: EpochMs) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> EpochMs {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn system_clock_is_near_wall_clock_and_monotonic() {
        let clock = SystemClock::new();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let a = clock.now_ms();
        let b = clock.now_ms();
        assert!((a - wall).abs() < 1000);
        assert!(b >= a);
        assert_eq!(clock.rebase(), None, "no step between two reads");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_250);
        assert_eq!(clock.rebase(), None);
    }

    /// Two clocks a test moves: the wall clock may step, the monotonic one only runs.
    #[derive(Default)]
    struct TwoClocks {
        wall: AtomicI64,
        monotonic: AtomicI64,
    }

    impl TimeSource for TwoClocks {
        fn wall_ms(&self) -> EpochMs {
            self.wall.load(Ordering::SeqCst)
        }
        fn monotonic_ms(&self) -> i64 {
            self.monotonic.load(Ordering::SeqCst)
        }
    }

    impl TwoClocks {
        fn run(&self, ms: i64) {
            self.wall.fetch_add(ms, Ordering::SeqCst);
            self.monotonic.fetch_add(ms, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_forward_step_of_the_wall_clock_is_followed_to_the_millisecond_and_reported_once() {
        let source = Arc::new(TwoClocks::default());
        source.wall.store(1_764_650_000_000, Ordering::SeqCst);
        source.monotonic.store(5_000, Ordering::SeqCst);
        let clock = SystemClock::with_source(source.clone());
        assert_eq!(clock.now_ms(), 1_764_650_000_000);
        source.run(1_000);
        source.wall.fetch_add(999, Ordering::SeqCst); // under the threshold: no step
        assert_eq!(clock.rebase(), None);
        assert_eq!(
            clock.now_ms(),
            1_764_650_001_000,
            "service time did not move"
        );
        source.wall.fetch_add(180_001, Ordering::SeqCst); // NTP: 3 minutes forward
        let step = clock.rebase().expect("a step");
        assert_eq!(
            step,
            ClockStep {
                from_ms: 1_764_650_001_000,
                to_ms: 1_764_650_182_000,
                by_ms: 181_000
            }
        );
        assert_eq!(clock.now_ms(), 1_764_650_182_000, "in true wall time again");
        assert_eq!(clock.rebase(), None, "a step is reported once");
        source.run(40);
        assert_eq!(clock.now_ms(), 1_764_650_182_040);
    }

    #[test]
    fn a_backward_step_is_not_followed_so_time_never_goes_back() {
        let source = Arc::new(TwoClocks::default());
        source.wall.store(1_764_650_000_000, Ordering::SeqCst);
        let clock = SystemClock::with_source(source.clone());
        source.run(500);
        source.wall.fetch_sub(60_000, Ordering::SeqCst);
        let before = clock.now_ms();
        assert_eq!(clock.rebase(), None);
        source.run(10);
        assert_eq!(clock.now_ms(), before + 10, "it runs on, monotonic");
    }
}

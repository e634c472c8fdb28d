//! Server time: epoch milliseconds that never jump.
//!
//! The core takes `now` as an argument; this module is the only place that reads a
//! clock. `SystemClock` anchors a monotonic `Instant` to the wall clock once at start,
//! so a wall-clock step (NTP, an operator fixing the date) never moves a deadline.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::core::time::EpochMs;

/// A source of server time, injectable so that tests can drive it.
pub trait Clock: Send + Sync + 'static {
    /// Current server time; successive calls never go backwards.
    fn now_ms(&self) -> EpochMs;
}

/// Wall clock read once at start, then advanced by the monotonic clock.
pub struct SystemClock {
    started: Instant,
    started_epoch_ms: EpochMs,
}

impl SystemClock {
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            started: Instant::now(),
            started_epoch_ms: since_epoch.as_millis() as EpochMs,
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
        self.started_epoch_ms + self.started.elapsed().as_millis() as EpochMs
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
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_250);
    }
}

//! The flood guard: every inbound frame counts, in one-second windows.

use std::time::Duration;

use tokio::time::Instant;

/// What to do with one more inbound frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Allow,
    /// Over the limit: the frame is dropped unread (`warn`: the first time this window).
    Throttle {
        warn: bool,
    },
    /// Twice the limit within one window: a flood, not a burst.
    Close,
}

/// Counts frames in one-second windows: a burst over the limit is throttled, a flood
/// (twice the limit) is closed with 4429.
pub(super) struct FloodGuard {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl FloodGuard {
    pub(super) fn new(limit: u32) -> Self {
        Self {
            limit,
            window_start: Instant::now(),
            count: 0,
        }
    }

    pub(super) fn check(&mut self) -> Flow {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Flow {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        if self.count <= self.limit {
            Flow::Allow
        } else if self.count <= self.limit.saturating_mul(2) {
            Flow::Throttle {
                warn: self.count == self.limit + 1,
            }
        } else {
            Flow::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_throttled_a_flood_is_closed_and_the_next_second_starts_afresh() {
        let start = Instant::now();
        let mut guard = FloodGuard {
            limit: 3,
            window_start: start,
            count: 0,
        };
        let flows: Vec<Flow> = (0..7).map(|_| guard.check_at(start)).collect();
        assert_eq!(
            flows,
            [
                Flow::Allow,
                Flow::Allow,
                Flow::Allow,
                Flow::Throttle { warn: true },
                Flow::Throttle { warn: false },
                Flow::Throttle { warn: false },
                Flow::Close
            ]
        );
        assert_eq!(
            guard.check_at(start + Duration::from_millis(1000)),
            Flow::Allow
        );
    }
}

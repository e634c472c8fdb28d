//! Link quality of one site: RTT median, jitter, stalled probes, reconnects.
//!
//! Separate from liveness: a site can be online with a bad link.

use std::collections::VecDeque;

use serde::Serialize;

/// How many recent RTTs the median is taken over.
const RTT_WINDOW: usize = 32;
/// A stall needs a median first; fewer samples than this and no RTT counts as stalled.
const MIN_SAMPLES_FOR_STALL: usize = 3;

/// Rolling link figures.
#[derive(Clone, Debug, Default)]
pub struct LinkStats {
    rtts_ms: VecDeque<f64>,
    last_rtt_ms: Option<f64>,
    /// RFC 3550-style smoothed jitter of successive RTTs.
    jitter_ms: f64,
    probes: u64,
    stalled: u64,
    reconnects: u64,
}

/// The figures as the API shows them.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LinkSummary {
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub probes: u64,
    pub stalled_probes: u64,
    pub reconnects: u64,
}

impl LinkStats {
    /// A probe went out.
    pub fn probe_sent(&mut self) {
        self.probes += 1;
    }

    /// A probe got no echo in time.
    pub fn probe_missed(&mut self) {
        self.stalled += 1;
    }

    /// A new connection after the first one.
    pub fn reconnected(&mut self) {
        self.reconnects += 1;
    }

    pub fn set_reconnects(&mut self, reconnects: u64) {
        self.reconnects = reconnects;
    }

    /// Records an echo's RTT; returns whether the probe counts as stalled
    /// (RTT > max(3 × median, median + 200 ms)).
    pub fn record_rtt(&mut self, rtt_ms: f64) -> bool {
        let stalled = match self.median_ms() {
            Some(median) if self.rtts_ms.len() >= MIN_SAMPLES_FOR_STALL => {
                rtt_ms > (3.0 * median).max(median + 200.0)
            }
            _ => false,
        };
        if stalled {
            self.stalled += 1;
        }
        if let Some(last) = self.last_rtt_ms {
            self.jitter_ms += ((rtt_ms - last).abs() - self.jitter_ms) / 16.0;
        }
        self.last_rtt_ms = Some(rtt_ms);
        if self.rtts_ms.len() == RTT_WINDOW {
            self.rtts_ms.pop_front();
        }
        self.rtts_ms.push_back(rtt_ms);
        stalled
    }

    pub fn median_ms(&self) -> Option<f64> {
        median(self.rtts_ms.iter().copied())
    }

    pub fn jitter_ms(&self) -> Option<f64> {
        self.last_rtt_ms.map(|_| self.jitter_ms)
    }

    pub fn summary(&self) -> LinkSummary {
        LinkSummary {
            rtt_ms: self.median_ms(),
            jitter_ms: self.jitter_ms(),
            probes: self.probes,
            stalled_probes: self.stalled,
            reconnects: self.reconnects,
        }
    }
}

/// Median of a set of values (mean of the middle two for an even count).
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn rtt_far_above_the_median_is_a_stall() {
        let mut link = LinkStats::default();
        for _ in 0..5 {
            assert!(!link.record_rtt(20.0));
        }
        // max(3 × 20, 20 + 200) = 220 ms
        assert!(!link.record_rtt(220.0));
        assert!(link.record_rtt(221.0));
        link.probe_missed();
        assert_eq!(link.summary().stalled_probes, 2);
    }

    #[test]
    fn jitter_follows_rfc3550_smoothing() {
        let mut link = LinkStats::default();
        assert_eq!(link.jitter_ms(), None);
        link.record_rtt(10.0);
        assert_eq!(link.jitter_ms(), Some(0.0));
        link.record_rtt(26.0);
        assert_eq!(link.jitter_ms(), Some(1.0));
        link.record_rtt(10.0);
        assert_eq!(link.jitter_ms(), Some(1.9375));
    }

    #[test]
    fn median_uses_a_bounded_window() {
        let mut link = LinkStats::default();
        for _ in 0..RTT_WINDOW {
            link.record_rtt(500.0);
        }
        for _ in 0..RTT_WINDOW {
            link.record_rtt(10.0);
        }
        assert_eq!(link.median_ms(), Some(10.0));
    }
}

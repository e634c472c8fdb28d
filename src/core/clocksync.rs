//! Clock offset of a client, NTP four-timestamp method, best of the last 8 samples.
//!
//! `offset = client − server`, so server time ≈ client time − offset.

use std::collections::VecDeque;

use serde::Serialize;

use crate::core::time::EpochMs;

const SAMPLES: usize = 8;

/// One probe/echo exchange reduced to offset and round trip.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OffsetSample {
    pub offset_ms: f64,
    pub rtt_ms: f64,
}

/// The four timestamps of one probe/echo exchange (server clock: 1 and 4; client: 2 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub server_sent_ms: EpochMs,
    pub client_received_ms: EpochMs,
    pub client_sent_ms: EpochMs,
    pub server_received_ms: EpochMs,
}

impl Exchange {
    /// Round trip as the server saw it, including the client's hold time.
    pub fn raw_round_trip_ms(&self) -> f64 {
        (self.server_received_ms - self.server_sent_ms) as f64
    }
}

impl OffsetSample {
    /// `None` when the client's times cannot be right (it held the probe for a
    /// negative time, or longer than the whole round trip).
    pub fn from_exchange(e: &Exchange) -> Option<Self> {
        let held = e.client_sent_ms - e.client_received_ms;
        let round_trip = e.server_received_ms - e.server_sent_ms;
        if held < 0 || round_trip < 0 || held > round_trip {
            return None;
        }
        Some(Self {
            offset_ms: ((e.client_received_ms - e.server_sent_ms)
                + (e.client_sent_ms - e.server_received_ms)) as f64
                / 2.0,
            rtt_ms: (round_trip - held) as f64,
        })
    }
}

/// The `sync` a client is told.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SyncEstimate {
    pub offset_ms: f64,
    pub rtt_ms: f64,
    /// Half the round trip of the sample used: the offset is right within this.
    pub uncertainty_ms: f64,
}

#[derive(Clone, Debug, Default)]
pub struct OffsetEstimator {
    samples: VecDeque<OffsetSample>,
}

impl OffsetEstimator {
    pub fn add(&mut self, sample: OffsetSample) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The sample with the shortest round trip is the least disturbed by queueing.
    pub fn best(&self) -> Option<SyncEstimate> {
        self.samples
            .iter()
            .min_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms))
            .map(|s| SyncEstimate {
                offset_ms: s.offset_ms,
                rtt_ms: s.rtt_ms,
                uncertainty_ms: s.rtt_ms / 2.0,
            })
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Service time stepped by `by_ms`: every client clock is that much less ahead of it.
    pub fn shift(&mut self, by_ms: i64) {
        for sample in &mut self.samples {
            sample.offset_ms -= by_ms as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(t1: EpochMs, t2: EpochMs, t3: EpochMs, t4: EpochMs) -> Exchange {
        Exchange {
            server_sent_ms: t1,
            client_received_ms: t2,
            client_sent_ms: t3,
            server_received_ms: t4,
        }
    }

    #[test]
    fn symmetric_exchange_gives_the_true_offset() {
        // Client is 500 ms ahead; 10 ms each way; client holds the probe 2 ms.
        let s = OffsetSample::from_exchange(&exchange(1000, 1510, 1512, 1022)).unwrap();
        assert_eq!(
            s,
            OffsetSample {
                offset_ms: 500.0,
                rtt_ms: 20.0
            }
        );
    }

    #[test]
    fn impossible_client_times_are_rejected() {
        assert!(OffsetSample::from_exchange(&exchange(1000, 1510, 1505, 1022)).is_none());
        assert!(OffsetSample::from_exchange(&exchange(1000, 0, 50_000, 1022)).is_none());
    }

    #[test]
    fn best_of_the_last_eight_is_the_shortest_round_trip() {
        let mut est = OffsetEstimator::default();
        est.add(OffsetSample {
            offset_ms: 7.0,
            rtt_ms: 4.0,
        });
        for i in 0..7 {
            est.add(OffsetSample {
                offset_ms: 100.0 + i as f64,
                rtt_ms: 50.0,
            });
        }
        assert_eq!(est.best().unwrap().offset_ms, 7.0);
        assert_eq!(est.best().unwrap().uncertainty_ms, 2.0);
        est.add(OffsetSample {
            offset_ms: 200.0,
            rtt_ms: 40.0,
        });
        assert_eq!(
            est.best().unwrap().offset_ms,
            200.0,
            "the 4 ms sample aged out"
        );
    }
}

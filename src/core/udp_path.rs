//! The UDP path test of a rehearsal: the service sends a video-like stream over a
//! WebRTC data channel (unordered, no retransmits) and the bridge echoes each packet;
//! what came back says the round trip's loss, RTT and jitter over UDP — what the video
//! itself rides on (a TCP websocket hides loss: it retransmits). Pure: packets and
//! figures; the shell moves the bytes.

use serde::{Deserialize, Serialize};

use crate::core::link::median;

/// `[b'D'][seq: u32 BE][sent: f64 BE, service ms]` then padding to the packet size.
pub const HEADER_BYTES: usize = 13;
const MAGIC: u8 = b'D';

/// One test packet of `size` bytes (at least the header).
pub fn packet(seq: u32, sent_ms: f64, size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size.max(HEADER_BYTES)];
    bytes[0] = MAGIC;
    bytes[1..5].copy_from_slice(&seq.to_be_bytes());
    bytes[5..13].copy_from_slice(&sent_ms.to_be_bytes());
    bytes
}

/// The sequence number and send time of an echoed packet; `None` for anything else.
pub fn read_packet(bytes: &[u8]) -> Option<(u32, f64)> {
    if bytes.len() < HEADER_BYTES || bytes[0] != MAGIC {
        return None;
    }
    let seq = u32::from_be_bytes(bytes[1..5].try_into().ok()?);
    let sent = f64::from_be_bytes(bytes[5..13].try_into().ok()?);
    sent.is_finite().then_some((seq, sent))
}

/// The time between packets for `mbps` in packets of `size` bytes.
pub fn interval_ms(mbps: f64, size: usize) -> f64 {
    size as f64 * 8.0 / (mbps * 1000.0)
}

/// What one test saw, as it goes.
#[derive(Clone, Debug, Default)]
pub struct UdpTally {
    pub connected: bool,
    pub sent: u32,
    /// Round trips of the packets that came back, in arrival order.
    rtts: Vec<f64>,
    /// Sequence numbers seen back (a duplicate is not counted twice).
    seen: std::collections::HashSet<u32>,
}

impl UdpTally {
    pub fn sent_one(&mut self) {
        self.sent += 1;
    }

    /// An echo arrived at `now_ms` (service ms, the clock the packet was stamped with).
    pub fn echoed(&mut self, bytes: &[u8], now_ms: f64) {
        let Some((seq, sent)) = read_packet(bytes) else {
            return;
        };
        if seq < self.sent && self.seen.insert(seq) {
            self.rtts.push((now_ms - sent).max(0.0));
        }
    }

    pub fn figures(&self, offered: bool, port: u16) -> UdpFigures {
        let echoed = self.seen.len() as u32;
        let mut jitter: Option<f64> = None;
        for pair in self.rtts.windows(2) {
            let j = jitter.unwrap_or(0.0);
            jitter = Some(j + ((pair[1] - pair[0]).abs() - j) / 16.0);
        }
        UdpFigures {
            offered,
            connected: self.connected,
            port,
            sent: self.sent,
            echoed,
            loss_pct: (self.sent > 0)
                .then(|| (self.sent - echoed) as f64 * 100.0 / self.sent as f64),
            rtt_median_ms: median(self.rtts.iter().copied()),
            jitter_ms: jitter.or((!self.rtts.is_empty()).then_some(0.0)),
        }
    }
}

/// The UDP path's figures, stored with the attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UdpFigures {
    /// The bridge opened a WebRTC channel (sent its offer).
    pub offered: bool,
    /// Its packets got through (ICE and DTLS done, the channel open).
    pub connected: bool,
    /// The service's UDP port the firewall must let through.
    pub port: u16,
    pub sent: u32,
    pub echoed: u32,
    pub loss_pct: Option<f64>,
    pub rtt_median_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_their_number_and_time_and_anything_else_is_ignored() {
        let p = packet(42, 1234.5, 1100);
        assert_eq!(p.len(), 1100);
        assert_eq!(read_packet(&p), Some((42, 1234.5)));
        assert_eq!(read_packet(b"hello"), None);
        assert_eq!(read_packet(&[b'X'; 40]), None);
        // 1.5 Mbps in 1,100-byte packets: one every 5.9 ms (~170 a second).
        assert!((interval_ms(1.5, 1100) - 5.866).abs() < 0.01);
    }

    #[test]
    fn loss_is_the_share_not_echoed_and_rtt_and_jitter_come_from_the_echoes() {
        let mut tally = UdpTally::default();
        for seq in 0..100u32 {
            tally.sent_one();
            if seq % 10 != 3 {
                let rtt = if seq % 2 == 0 { 20.0 } else { 24.0 };
                tally.echoed(&packet(seq, seq as f64 * 6.0, 1100), seq as f64 * 6.0 + rtt);
            }
        }
        // A duplicate and a packet never sent change nothing.
        tally.echoed(&packet(5, 30.0, 1100), 60.0);
        tally.echoed(&packet(500, 0.0, 1100), 10.0);
        let f = tally.figures(true, 8080);
        assert_eq!((f.sent, f.echoed), (100, 90));
        assert_eq!(f.loss_pct, Some(10.0));
        assert_eq!(f.rtt_median_ms, Some(20.0), "50 of 20 ms, 40 of 24 ms");
        assert!(
            f.jitter_ms.unwrap() > 1.0 && f.jitter_ms.unwrap() <= 4.0,
            "{f:?}"
        );
        let none = UdpTally::default().figures(true, 8080);
        assert_eq!((none.loss_pct, none.rtt_median_ms), (None, None));
    }
}

//! The UDP path test's service side: one UDP socket, one WebRTC peer (str0m, ICE-lite)
//! per rehearsal that asked for it. The bridge offers a data channel (unordered, no
//! retransmits) over its websocket; the service answers, then sends a video-like
//! stream on the channel and counts what the bridge echoes (`core::udp_path`).
//!
//! One task owns the socket and every peer; callers talk to it through a channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::core::udp_path::{UdpFigures, UdpTally, interval_ms, packet};

/// Checks whose UDP test may run at once; more are refused (each holds a WebRTC peer).
const MAX_PEERS: usize = 32;
/// A peer left after its stream (no one took its figures) is dropped after this.
const LINGER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("the offer is not an SDP offer this service understands: {0}")]
    BadOffer(String),
    #[error("{MAX_PEERS} UDP tests are running already: try again in a minute")]
    Busy,
    #[error("the UDP test has stopped")]
    Stopped,
}

/// How the stream is paced.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    pub seconds: u64,
    pub mbps: f64,
    pub packet_bytes: usize,
}

enum Command {
    Open {
        check: Uuid,
        offer: String,
        stream: Stream,
        /// The stream stops by then, whenever the channel opened.
        until: Instant,
        reply: oneshot::Sender<Result<String, UdpError>>,
    },
    Take {
        check: Uuid,
        reply: oneshot::Sender<Option<UdpFigures>>,
    },
}

/// The handle the sessions use.
#[derive(Clone)]
pub struct UdpPath {
    commands: mpsc::Sender<Command>,
    /// The port the bridges are told to reach (the firewall's rule).
    pub port: u16,
}

impl UdpPath {
    /// Binds `listen` and starts the peers' task; `advertise` is the address put in the
    /// answers (the listen address when it is a specific one).
    pub async fn start(listen: SocketAddr, advertise: SocketAddr) -> std::io::Result<UdpPath> {
        let socket = UdpSocket::bind(listen).await?;
        let local = socket.local_addr()?;
        let advertise = SocketAddr::new(
            advertise.ip(),
            if advertise.port() == 0 {
                local.port()
            } else {
                advertise.port()
            },
        );
        let (commands, queue) = mpsc::channel(64);
        tokio::spawn(run(Arc::new(socket), advertise, queue));
        Ok(UdpPath {
            commands,
            port: advertise.port(),
        })
    }

    /// Answers a bridge's offer; the stream starts when the channel opens.
    pub async fn open(
        &self,
        check: Uuid,
        offer: String,
        stream: Stream,
        until: Instant,
    ) -> Result<String, UdpError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Open {
                check,
                offer,
                stream,
                until,
                reply,
            })
            .await
            .map_err(|_| UdpError::Stopped)?;
        answer.await.map_err(|_| UdpError::Stopped)?
    }

    /// The figures of a check's UDP test, and the end of its peer. `None`: it never
    /// offered.
    pub async fn take(&self, check: Uuid) -> Option<UdpFigures> {
        let (reply, figures) = oneshot::channel();
        self.commands
            .send(Command::Take { check, reply })
            .await
            .ok()?;
        figures.await.ok().flatten()
    }
}

struct Peer {
    rtc: Rtc,
    channel: Option<ChannelId>,
    stream: Stream,
    until: Instant,
    started: Option<Instant>,
    next_send: Instant,
    seq: u32,
    tally: UdpTally,
}

impl Peer {
    fn streaming(&self, now: Instant) -> bool {
        let Some(started) = self.started else {
            return false;
        };
        self.channel.is_some()
            && now
                < self
                    .until
                    .min(started + Duration::from_secs(self.stream.seconds))
    }
}

/// Service time for the packets' stamps: ms since the task began (monotonic).
fn stamp(origin: Instant, at: Instant) -> f64 {
    at.duration_since(origin).as_secs_f64() * 1000.0
}

async fn run(socket: Arc<UdpSocket>, advertise: SocketAddr, mut commands: mpsc::Receiver<Command>) {
    let origin = Instant::now();
    let crypto = Arc::new(str0m::crypto::from_feature_flags());
    let mut peers: HashMap<Uuid, Peer> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        // Send what is due, then let every peer speak; the earliest deadline wakes us.
        let mut wake = now + Duration::from_millis(100);
        for peer in peers.values_mut() {
            while peer.streaming(now) && peer.next_send <= now {
                let bytes = packet(peer.seq, stamp(origin, now), peer.stream.packet_bytes);
                if let Some(mut channel) = peer.channel.and_then(|id| peer.rtc.channel(id)) {
                    if channel.write(true, &bytes).unwrap_or(false) {
                        peer.tally.sent_one();
                        peer.seq += 1;
                    }
                }
                peer.next_send += Duration::from_secs_f64(
                    interval_ms(peer.stream.mbps, peer.stream.packet_bytes) / 1000.0,
                );
            }
            if peer.streaming(now) {
                wake = wake.min(peer.next_send);
            }
            drive(peer, &socket, origin, &mut wake).await;
        }
        peers.retain(|_, p| now < p.until + LINGER);
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = received else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                // Sent to the advertised address (behind a NAT or a relay, not ours): ICE
                // matches the packet to the candidate the bridge was given.
                let input = Input::Receive(Instant::now().into_std(), Receive { proto: Protocol::Udp, source, destination: advertise, contents });
                if let Some(peer) = peers.values_mut().find(|p| p.rtc.accepts(&input)) {
                    let _ = peer.rtc.handle_input(input);
                }
            }
            command = commands.recv() => match command {
                None => return,
                Some(Command::Open { check, offer, stream, until, reply }) => {
                    let answer = if peers.len() >= MAX_PEERS && !peers.contains_key(&check) {
                        Err(UdpError::Busy)
                    } else {
                        open_peer(&offer, advertise, crypto.clone()).map(|(rtc, answer)| {
                            peers.insert(check, Peer {
                                rtc,
                                channel: None,
                                stream,
                                until,
                                started: None,
                                next_send: Instant::now(),
                                seq: 0,
                                tally: UdpTally::default(),
                            });
                            answer
                        })
                    };
                    let _ = reply.send(answer);
                }
                Some(Command::Take { check, reply }) => {
                    let figures = peers.remove(&check).map(|p| p.tally.figures(true, advertise.port()));
                    let _ = reply.send(figures);
                }
            },
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now().into_std();
                for peer in peers.values_mut() {
                    let _ = peer.rtc.handle_input(Input::Timeout(now));
                }
            }
        }
    }
}

fn open_peer(
    offer: &str,
    advertise: SocketAddr,
    crypto: Arc<str0m::crypto::CryptoProvider>,
) -> Result<(Rtc, String), UdpError> {
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| UdpError::BadOffer(e.to_string()))?;
    let mut rtc = RtcConfig::new()
        .set_ice_lite(true)
        .set_crypto_provider(crypto)
        .build(std::time::Instant::now());
    let candidate =
        Candidate::host(advertise, "udp").map_err(|e| UdpError::BadOffer(e.to_string()))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| UdpError::BadOffer(e.to_string()))?;
    Ok((rtc, answer.to_sdp_string()))
}

/// Sends what the peer has to send, handles its events, and notes when it next needs time.
async fn drive(peer: &mut Peer, socket: &UdpSocket, origin: Instant, wake: &mut Instant) {
    loop {
        match peer.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Timeout(at)) => {
                *wake = (*wake).min(Instant::from_std(at));
                return;
            }
            Ok(Output::Event(Event::ChannelOpen(id, _))) => {
                peer.channel = Some(id);
                peer.tally.connected = true;
                let now = Instant::now();
                peer.started = Some(now);
                peer.next_send = now;
            }
            Ok(Output::Event(Event::ChannelData(data))) => {
                peer.tally.echoed(&data.data, stamp(origin, Instant::now()));
            }
            Ok(Output::Event(Event::IceConnectionStateChange(
                IceConnectionState::Disconnected,
            ))) => {
                peer.channel = None;
            }
            Ok(Output::Event(_)) => {}
            Err(_) => {
                peer.channel = None;
                return;
            }
        }
    }
}

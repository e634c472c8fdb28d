//! The agent's side of the rehearsal's UDP path test: a WebRTC peer (str0m) that offers
//! a data channel like a browser does (unordered, no retransmits) and echoes every
//! packet the service sends, so a kiosk gets the same UDP rows as the bridge page.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("no UDP socket towards the service: {0}")]
    Socket(#[from] std::io::Error),
    #[error("WebRTC: {0}")]
    Rtc(String),
}

/// Opens the peer: the offer to send, and where its answer goes.
pub async fn start(
    server: IpAddr,
    lasts: Duration,
) -> Result<(String, oneshot::Sender<String>), EchoError> {
    // The address this machine reaches the service from (no packet is sent for it).
    let probe = UdpSocket::bind(SocketAddr::new(unspecified(server), 0)).await?;
    probe.connect(SocketAddr::new(server, 9)).await?;
    let local_ip = probe.local_addr()?.ip();
    drop(probe);
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| EchoError::Rtc(e.to_string()))?;
    rtc.add_local_candidate(candidate);
    let mut change = rtc.sdp_api();
    change.add_channel_with_config(ChannelConfig {
        label: "diemcau-udp".into(),
        ordered: false,
        reliability: Reliability::MaxRetransmits { retransmits: 0 },
        ..Default::default()
    });
    let (offer, pending) = change
        .apply()
        .ok_or_else(|| EchoError::Rtc("no offer".into()))?;
    let (answer_tx, answer) = oneshot::channel();
    tokio::spawn(echo(
        rtc,
        pending,
        socket,
        local,
        answer,
        Instant::now() + lasts,
    ));
    Ok((offer.to_sdp_string(), answer_tx))
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

async fn echo(
    mut rtc: Rtc,
    pending: SdpPendingOffer,
    socket: UdpSocket,
    local: SocketAddr,
    answer: oneshot::Receiver<String>,
    until: Instant,
) {
    let Ok(Ok(Ok(answer))) = tokio::time::timeout_at(until, answer)
        .await
        .map(|sdp| sdp.map(|sdp| SdpAnswer::from_sdp_string(&sdp)))
    else {
        return;
    };
    if rtc.sdp_api().accept_answer(pending, answer).is_err() {
        return;
    }
    let mut channel: Option<ChannelId> = None;
    let mut buf = vec![0u8; 2048];
    while Instant::now() < until {
        let wake = loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Timeout(at)) => break Instant::from_std(at).min(until),
                Ok(Output::Event(Event::ChannelOpen(id, _))) => channel = Some(id),
                Ok(Output::Event(Event::ChannelData(data))) => {
                    if let Some(mut open) = channel.and_then(|id| rtc.channel(id)) {
                        let _ = open.write(true, &data.data);
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = received else { continue };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let _ = rtc.handle_input(Input::Receive(
                    Instant::now().into_std(),
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                ));
            }
            _ = tokio::time::sleep_until(wake) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now().into_std()));
            }
        }
    }
}

//! The pages' live feed `/ws/live`: a full snapshot, then sequenced changes.
//!
//! Frames come from one broadcast channel, encoded once. A page that falls behind
//! (or sees a gap and sends `{"type":"resync"}`) gets a fresh snapshot; it never
//! slows anyone else.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Caller, Role};
use crate::core::budget::{Budget, Ledger};
use crate::http::error::ApiError;
use crate::metrics::SocketKind;
use crate::protocol::{Frame, LiveMsg, LiveRequest, close};
use crate::services::hub::Topic;
use crate::state::AppState;

pub async fn upgrade(
    State(app): State<AppState>,
    caller: Caller,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Secretary, Role::Display])?;
    let tasks = app.tasks.clone();
    Ok(ws
        .max_message_size(4096)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| tasks.track_future(serve(app, socket, caller))))
}

/// What one page may ask of the feed: frames a second (over it, 4429), and fresh
/// snapshots (each one is the whole wall) every ten seconds.
const FRAMES: Budget = Budget {
    limit: 20,
    window_ms: 1000,
};
const RESYNCS: Budget = Budget {
    limit: 3,
    window_ms: 10_000,
};

async fn serve(app: AppState, socket: WebSocket, caller: Caller) {
    let timer_only = caller == Caller::Role(Role::Display);
    let mut revoked = app.revoked.subscribe();
    let key_at_start = app.secrets.current().key_of(caller).cloned();
    app.metrics.connection_opened(SocketKind::Live);
    let (mut sink, mut stream) = socket.split();
    let snapshot = |app: &AppState| {
        let (receiver, seq, frame) = app.hub.subscribe(!timer_only, |sites, now| {
            let (status, sites) = sites.unzip();
            let devices = (!timer_only).then(|| {
                app.devices
                    .all()
                    .into_iter()
                    .map(|(idx, check)| (app.roster.site(idx).id.to_string(), check))
                    .collect()
            });
            LiveMsg::Snapshot {
                server_ms: now,
                status,
                sites,
                timer: app.timekeeper.snapshot(),
                devices,
                slow_rtt_ms: (!timer_only).then_some(app.config.liveness.slow_rtt_ms),
                incidents: (!timer_only).then(|| app.incidents.recent(now - 3_600_000)),
                excused: (!timer_only).then(|| app.incidents.excused()),
            }
        });
        (receiver, seq, super::text(&frame))
    };
    let send_timeout = Duration::from_millis(app.config.protocol.live_send_timeout_ms);
    let (mut receiver, mut after, first) = snapshot(&app);
    let mut pending = Some(first);
    let (mut frames, mut resyncs) = (Ledger::new(FRAMES), Ledger::new(RESYNCS));
    let close_code = loop {
        if let Some(frame) = pending.take() {
            match tokio::time::timeout(send_timeout, sink.send(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break None,
                // It does not read: say why if its buffer still has room, then let go.
                Err(_) => break Some((close::NOT_READING, "not reading: dropped")),
            }
        }
        tokio::select! {
            _ = app.shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
            holder = revoked.recv() => match holder {
                Ok(holder) if holder == caller => break Some((close::BAD_KEY, "this key was rotated: open the new link")),
                // More keys changed at once than the channel holds: look at our own.
                Err(RecvError::Lagged(_)) if app.secrets.current().key_of(caller) != key_at_start.as_ref() => {
                    break Some((close::BAD_KEY, "this key was rotated: open the new link"));
                }
                _ => {}
            },
            incoming = stream.next() => match incoming {
                Some(Ok(_)) if frames.spend((), app.clock.now_ms()).is_err() => {
                    break Some((close::FLOODING, "too many frames per second"));
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<LiveRequest>(&text) {
                    Ok(LiveRequest::Resync) => match resyncs.spend((), app.clock.now_ms()) {
                        Ok(()) => {
                            (receiver, after, pending) = { let (r, s, m) = snapshot(&app); (r, s, Some(m)) };
                        }
                        Err(spent) => {
                            let answer = LiveMsg::Error {
                                code: "resync_too_often".into(),
                                message: format!("at most {} snapshots in {} s: the next in {} s", RESYNCS.limit, RESYNCS.window_ms / 1000, spent.retry_after_seconds()),
                            };
                            pending = Some(super::text(&Frame::encode(&answer)));
                        }
                    },
                    // Pages without probes learn the server clock this way (NTP style).
                    Ok(LiveRequest::Time { client_ms }) => {
                        let answer = LiveMsg::Time { client_ms, server_ms: app.clock.now_ms() };
                        pending = Some(super::text(&Frame::encode(&answer)));
                    }
                    Err(_) => {
                        let answer = LiveMsg::Error {
                            code: "unknown_type".into(),
                            message: "the live feed accepts {\"type\":\"resync\"} and {\"type\":\"time\",\"client_ms\":…}".into(),
                        };
                        pending = Some(super::text(&Frame::encode(&answer)));
                    }
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => {}
            },
            frame = receiver.recv() => match frame {
                Ok(frame) if frame.seq <= after => {}
                Ok(frame) => {
                    if timer_only && frame.topic != Topic::Timer {
                        continue;
                    }
                    pending = Some(super::text(&frame.frame));
                }
                // Fell behind: start again from a fresh snapshot rather than skip silently.
                Err(RecvError::Lagged(_)) => {
                    (receiver, after, pending) = { let (r, s, m) = snapshot(&app); (r, s, Some(m)) };
                }
                Err(RecvError::Closed) => break Some((close::GOING_AWAY, "server shutting down")),
            },
        }
    };
    if let Some((code, reason)) = close_code {
        let frame = axum::extract::ws::CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            super::drain_until_closed(&mut stream).await;
        }
    }
    app.metrics.connection_closed(SocketKind::Live);
}

//! The bridge socket `/ws/bridge`: one task per connected site speaking protocol v1.
//!
//! - `handshake` — the hello, within its timeout, for a roster site with its own key;
//! - `session` — the loop: probes, echoes, the site's deadline, rehearsal checks, one
//!   method per kind of inbound frame;
//! - `writer` — drains the site's bounded queue, so nothing else ever waits on a slow
//!   site: a site whose queue is full is closed (4503);
//! - `flood` — every inbound frame counts toward the per-second limit.

mod flood;
mod handshake;
mod session;
mod writer;

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::StreamExt;
use tracing::Instrument;

use crate::auth::Caller;
use crate::metrics::SocketKind;
use crate::protocol::close;
use crate::state::AppState;

pub async fn upgrade(
    State(app): State<AppState>,
    caller: Option<Caller>,
    ws: WebSocketUpgrade,
) -> Response {
    let limit = app.config.protocol.max_frame_bytes;
    let tasks = app.tasks.clone();
    // Small buffers: the default 128 KiB each would cost ~135 KB per site.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| tasks.track_future(serve(app, socket, caller)))
}

/// Why the connection ended, and the close frame to send if any.
pub(super) struct Ending {
    code: Option<u16>,
    reason: String,
}

impl Ending {
    fn close(code: u16, reason: impl Into<String>) -> Self {
        Ending {
            code: Some(code),
            reason: reason.into(),
        }
    }

    fn gone(reason: impl Into<String>) -> Self {
        Ending {
            code: None,
            reason: reason.into(),
        }
    }
}

async fn serve(app: AppState, socket: WebSocket, caller: Option<Caller>) {
    app.metrics.connection_opened(SocketKind::Bridge);
    let (mut sink, mut stream) = socket.split();
    let hello_timeout = Duration::from_millis(app.config.protocol.hello_timeout_ms);
    // Awaited apart from the match: a future awaited in the scrutinee lives on beside
    // the whole session, in every site's task.
    let hello = tokio::time::timeout(
        hello_timeout,
        handshake::read_hello(&app, &mut stream, caller),
    )
    .await;
    match hello {
        Err(_) => {
            handshake::refuse(
                &mut sink,
                close::BAD_HELLO,
                "no_hello",
                "say hello within the hello timeout",
            )
            .await;
            crate::http::ws::drain_until_closed(&mut stream).await;
        }
        Ok(Err((code, error, message))) => {
            handshake::refuse(&mut sink, code, error, &message).await;
            crate::http::ws::drain_until_closed(&mut stream).await;
        }
        Ok(Ok(hello)) => {
            let span = tracing::info_span!("bridge", site = %hello.id);
            session::run(&app, hello, sink, stream)
                .instrument(span)
                .await;
        }
    }
    app.metrics.connection_closed(SocketKind::Bridge);
}

pub(super) fn close_message(code: u16, reason: &str) -> Message {
    // A close reason is limited to 123 bytes; cut on a character boundary.
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    }))
}

/// A read error: broken framing or text that is not UTF-8 gets its RFC 6455 close
/// code (1002, 1007); anything else is a lost connection.
pub(super) fn broken(e: &axum::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        match err.downcast_ref::<Error>() {
            Some(Error::Utf8(_)) => return Ending::close(1007, "text frames must be UTF-8"),
            // A peer that vanished without a close frame is a lost connection, not abuse.
            Some(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => break,
            Some(Error::Protocol(p)) => {
                return Ending::close(1002, format!("websocket protocol error: {p}"));
            }
            _ => source = err.source(),
        }
    }
    Ending::gone("connection lost")
}

pub(super) fn is_too_large(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(Error::Capacity(_)) = err.downcast_ref::<Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

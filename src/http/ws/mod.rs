//! The two websocket endpoints: `/ws/bridge` for the sites, `/ws/live` for the pages.

pub mod bridge;
pub mod live;

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes};
use axum::routing::get;

use crate::protocol::Frame;
use crate::services::hub::{Outbound, Tracked};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws/bridge", get(bridge::upgrade))
        .route("/ws/live", get(live::upgrade))
}

/// A shared frame as an axum text message (a reference count, plus a UTF-8 check).
pub fn text(frame: &Frame) -> Message {
    Message::Text(Utf8Bytes::try_from(frame.bytes()).expect("a frame is UTF-8"))
}

/// What a socket task was asked to send, as the message to write and the fan-out it
/// belongs to (released once written).
pub fn to_message(outbound: Outbound) -> (Message, Option<Arc<Tracked>>) {
    match outbound {
        Outbound::Text(frame) => (text(&frame), None),
        Outbound::Binary(data) => (Message::Binary((*data).clone()), None),
        Outbound::Tracked(tracked) => (text(&tracked.frame), Some(tracked)),
    }
}

/// After a close frame went out: reads (and drops) what the peer still sends until its
/// own close, for at most two seconds. Dropping a socket with unread bytes makes the
/// kernel reset it, and a peer that was sending would then never read the close code.
pub async fn drain_until_closed(
    stream: &mut futures_util::stream::SplitStream<axum::extract::ws::WebSocket>,
) {
    use futures_util::StreamExt;
    let drained = async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drained).await;
}

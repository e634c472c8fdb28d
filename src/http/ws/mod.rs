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

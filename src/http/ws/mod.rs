//! The two websocket endpoints: `/ws/bridge` for the sites, `/ws/live` for the pages.

pub mod bridge;
pub mod live;

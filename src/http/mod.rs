//! HTTP: one router per resource, merged here, each checking its callers' roles.
//! The two websocket endpoints live in `ws`, the pages in `web`.

pub mod access;
pub mod body;
pub mod error;
pub mod evidence;
pub mod export;
pub mod health;
pub mod incidents;
pub mod listener;
pub mod notices;
pub mod rehearsals;
pub mod relay;
pub mod sites;
pub mod timer;
pub mod web;
pub mod ws;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::Role;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Request bodies over this are a 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The staff roles: everyone but the hall display and the sites.
pub const STAFF: &[Role] = &[Role::Admin, Role::Operator, Role::Secretary];

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(sites::router())
        .merge(timer::router())
        .merge(notices::router())
        .merge(incidents::router())
        .merge(relay::router())
        .merge(rehearsals::router())
        .merge(evidence::router())
        .merge(ws::router())
        .merge(web::router())
        .fallback(not_found)
        // The largest body a caller sends is a rehearsal schedule: 1 MiB holds
        // thousands of sites.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // API answers and CSVs hold the day's data: no cache keeps a copy, and no
        // browser guesses a type other than the one declared. Assets say their own.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such page or API route".into())
}

//! HTTP: one router per resource, merged here, each checking its callers' roles.
//! The two websocket endpoints live in `ws`, the pages in `web`.

pub mod access;
pub mod body;
pub mod error;
pub mod evidence;
pub mod export;
pub mod health;
pub mod listener;
pub mod notices;
pub mod rehearsals;
pub mod sites;
pub mod timer;
pub mod web;
pub mod ws;

use axum::Router;

use crate::auth::Role;
use crate::http::error::ApiError;
use crate::state::AppState;

/// The staff roles: everyone but the hall display and the sites.
pub const STAFF: &[Role] = &[Role::Admin, Role::Operator, Role::Secretary];

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(sites::router())
        .merge(timer::router())
        .merge(notices::router())
        .merge(rehearsals::router())
        .merge(evidence::router())
        .merge(ws::router())
        .merge(web::router())
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such page or API route".into())
}

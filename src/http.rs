//! HTTP routes: health, status, sites, metrics, and the two websocket endpoints.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::sites::SiteId;

/// Transitions shown with one site.
const SITE_HISTORY: u32 = 50;
const STAFF: &[Role] = &[Role::Admin, Role::Operator, Role::Secretary];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/sites", get(sites))
        .route("/api/sites/{id}", get(site))
        .route("/ws/bridge", get(crate::bridge::upgrade))
        .route("/ws/live", get(crate::live::upgrade))
        .fallback(not_found)
        .with_state(state)
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    app.store
        .check_writable()
        .await
        .map_err(|e| ApiError::Unavailable(format!("store not writable: {e}")))?;
    Ok(Json(json!({"status": "ready", "sites": app.roster.len()})))
}

async fn metrics(
    State(app): State<AppState>,
    caller: Option<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    if !app.config.metrics.public {
        let caller = caller
            .ok_or_else(|| ApiError::Unauthorized("a key is required for /metrics".into()))?;
        caller.require(&[Role::Admin, Role::Operator])?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        app.metrics.encode(),
    ))
}

async fn status(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    Ok(Json(json!({
        "sites": app.hub.state_counts(),
        "server_ms": app.clock.now_ms(),
    })))
}

async fn sites(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    Ok(Json(
        json!({"server_ms": app.clock.now_ms(), "sites": app.hub.site_views()}),
    ))
}

async fn site(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let unknown = || {
        ApiError::NotFound(format!(
            "no site `{}` in the roster",
            id.chars().take(16).collect::<String>()
        ))
    };
    let site_id: SiteId = id.parse().map_err(|_| unknown())?;
    caller.require_or_site(STAFF, site_id)?;
    let idx = app.roster.index_of(site_id).ok_or_else(unknown)?;
    let site = app.roster.site(idx);
    let mut view = json!(app.hub.site_view(idx));
    view["contact_name"] = json!(site.contact_name);
    view["contact_phone"] = json!(site.contact_phone);
    // Transitions are written behind the state change; wait for them so the
    // history never lags the state shown beside it.
    app.store.flush().await?;
    view["transitions"] = json!(app.store.recent_transitions(site_id, SITE_HISTORY).await?);
    Ok(Json(view))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such page or API route".into())
}

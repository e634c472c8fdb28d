//! Health and metrics: `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::http::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let health = app.store.health();
    if let Some(failure) = health.failure() {
        return Err(ApiError::Unavailable(format!(
            "store not writable: {failure}; {} writes kept in memory and retried every second (the wall and the timer go on)",
            health.pending_writes()
        )));
    }
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
    app.timekeeper.refresh_metrics();
    let start = app.config.report.start.as_deref();
    let started = start
        .and_then(|text| crate::config::parse_time(text).ok())
        .is_none_or(|start_ms| app.clock.now_ms() >= start_ms);
    app.metrics.event_started(started);
    let health = app.store.health();
    app.metrics.store_health(
        health.failure().is_none(),
        health.pending_writes(),
        health.failed_transactions(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        app.metrics.encode(),
    ))
}

//! The sites: `/api/status`, `/api/sites`, `/api/sites/{id}`, the call list `/api/sites.csv`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::core::sites::SiteId;
use crate::http::STAFF;
use crate::http::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/status", get(status))
        .route("/api/sites", get(sites))
        .route("/api/sites.csv", get(sites_csv))
        .route("/api/sites/{id}", get(site))
}

/// Transitions shown with one site.
const SITE_HISTORY: u32 = 50;

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

/// The call list: every site's state now, contact and latest rehearsal verdict.
async fn sites_csv(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(STAFF)?;
    let views = app.hub.site_views();
    app.store.flush().await?;
    // Newest first: the first attempt of a site is its latest.
    let mut latest = std::collections::HashMap::new();
    for attempt in app.store.rehearsals(None).await? {
        latest
            .entry(attempt.site.to_string())
            .or_insert_with(|| attempt.verdict.as_str().to_string());
    }
    let latest = |id: &str| latest.get(id).cloned();
    Ok(crate::http::export::download(
        "diem-cau.csv",
        crate::http::export::sites_csv(&app.roster, &views, latest),
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
    let device = site.probe.as_ref().map(|_| app.devices.get(idx));
    // Transitions are queued under the same lock as the state they lead to, and
    // written behind it: read every state first, then flush, so the history
    // never lags the state shown beside it.
    app.store.flush().await?;
    view["transitions"] = json!(app.store.recent_transitions(site_id, SITE_HISTORY).await?);
    if let Some(device) = device {
        view["device"] = json!(device);
        view["device_transitions"] =
            json!(app.store.device_transitions(site_id, SITE_HISTORY).await?);
    }
    Ok(Json(view))
}

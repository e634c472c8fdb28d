//! Incidents and excused sites: `/api/incidents` (list), `/api/incidents/{id}/take`
//! ("Tôi xử lý"), `/api/incidents/{id}/notes`, `/api/excusals`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::core::incidents::{BadAct, Excusal};
use crate::core::sites::SiteId;
use crate::http::STAFF;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::services::incident_desk::DeskError;
use crate::state::AppState;

/// Who works the wall: takes incidents, notes them, excuses sites.
const WALL: &[Role] = &[Role::Admin, Role::Operator];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/incidents", get(incidents))
        .route("/api/incidents/{id}/take", post(take))
        .route("/api/incidents/{id}/notes", post(note))
        .route("/api/excusals", get(excusals).post(excuse))
}

async fn incidents(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    Ok(Json(json!({
        "incidents": app.incidents.incidents(),
        "excused": app.incidents.excused(),
    })))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeBody {
    name: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    name: String,
    text: String,
}

async fn take(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(WALL)?;
    let id = incident_id(&id)?;
    let body: TakeBody = body.json(r#"{"name": "Lan"}"#)?;
    let event = app.incidents.taking(id, &body.name, &caller.label());
    record(&app, caller, event).await
}

async fn note(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(WALL)?;
    let id = incident_id(&id)?;
    let body: NoteBody =
        body.json(r#"{"name": "Lan", "text": "đã gọi anh Hùng: mất điện, 5 phút"}"#)?;
    let event = app
        .incidents
        .noting(id, &body.name, &caller.label(), &body.text);
    record(&app, caller, event).await
}

/// A checked act, once the caller's budget allows it: stored, then on every wall.
async fn record(
    app: &AppState,
    caller: Caller,
    event: Result<crate::core::incidents::IncidentEvent, BadAct>,
) -> Result<Json<Value>, ApiError> {
    let event = event.map_err(|bad| desk_error(bad.into()))?;
    spend(app, caller)?;
    let incident = app.incidents.record(event).await.map_err(desk_error)?;
    Ok(Json(json!({ "incident": incident })))
}

async fn excusals(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    Ok(Json(json!({ "excused": app.incidents.excused() })))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExcuseBody {
    site: String,
    /// `false` takes an excusal back.
    excused: Option<bool>,
    name: String,
    #[serde(default)]
    reason: String,
}

/// The organisers mark a site as not taking part today (or take that back).
async fn excuse(
    State(app): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(WALL)?;
    let body: ExcuseBody =
        body.json(r#"{"site": "05443", "excused": true, "name": "Lan", "reason": "mất điện cả xã, đã báo ban tổ chức"}"#)?;
    let site: SiteId = body
        .site
        .parse()
        .map_err(|e: crate::core::sites::BadSiteId| ApiError::BadRequest(e.to_string()))?;
    if app.roster.index_of(site).is_none() {
        return Err(ApiError::BadRequest(format!(
            "no site {site} in the roster"
        )));
    }
    let excusal = Excusal::new(
        site,
        body.excused.unwrap_or(true),
        &body.name,
        caller.label(),
        &body.reason,
        app.clock.now_ms(),
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    spend(&app, caller)?;
    let excusal = app
        .incidents
        .excuse(excusal)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({ "excusal": excusal })))
}

fn incident_id(text: &str) -> Result<Uuid, ApiError> {
    text.parse().map_err(|_| {
        ApiError::NotFound(format!(
            "no incident `{}`",
            text.chars().take(40).collect::<String>()
        ))
    })
}

/// Each take, note and excusal is stored: one key sends a bounded number a minute.
fn spend(app: &AppState, caller: Caller) -> Result<(), ApiError> {
    app.limits
        .incident_act(caller, app.clock.now_ms())
        .map_err(|spent| {
            ApiError::too_many(
                &format!(
                    "at most {} incident takes, notes and excusals a minute from one key",
                    app.config.incidents.max_acts_per_minute
                ),
                spent,
            )
        })
}

fn desk_error(error: DeskError) -> ApiError {
    match error {
        DeskError::Bad(BadAct::Unknown(id)) => ApiError::NotFound(format!("no incident {id}")),
        DeskError::Bad(BadAct::Closed) => ApiError::Conflict(BadAct::Closed.to_string()),
        DeskError::Bad(bad) => ApiError::BadRequest(bad.to_string()),
        DeskError::Store(e) => ApiError::Unavailable(e.to_string()),
    }
}

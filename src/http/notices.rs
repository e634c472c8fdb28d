//! Roll call and messages: `/api/rollcall`, `/api/messages`; wall alerts marked
//! "Đã biết": `/api/alerts/dismissals`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::core::notices::Dismissal;
use crate::http::STAFF;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rollcall", get(roll_call).post(start_roll_call))
        .route("/api/messages", get(messages).post(send_message))
        .route("/api/alerts/dismissals", get(dismissals).post(dismiss))
        .route("/api/alerts/past", get(past_alerts))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollCallBody {
    deadline_seconds: Option<u64>,
}

async fn start_roll_call(
    State(app): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator])?;
    let body: RollCallBody = body.json(r#"{"deadline_seconds": 300}"#)?;
    let seconds = body.deadline_seconds.unwrap_or(300);
    if !(10..=3600).contains(&seconds) {
        return Err(ApiError::BadRequest(
            "deadline_seconds must be from 10 to 3600".into(),
        ));
    }
    spend_notice(&app, caller)?;
    let answer = app
        .noticeboard
        .roll_call(seconds, &caller.label())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(answer))
}

/// Each roll call and message is stored: one key sends a bounded number a minute.
fn spend_notice(app: &AppState, caller: Caller) -> Result<(), ApiError> {
    app.limits
        .notice(caller, app.clock.now_ms())
        .map_err(|spent| {
            ApiError::too_many(
                &format!(
                    "at most {} roll calls and messages a minute from one key",
                    app.config.protocol.max_notices_per_minute
                ),
                spent,
            )
        })
}

async fn roll_call(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    Ok(Json(
        json!({"roll_call": app.noticeboard.roll_call_summary()}),
    ))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
    level: Option<String>,
    to: Option<String>,
}

async fn send_message(
    State(app): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    let body: MessageBody = body.json(r#"{"text": "…", "level": "info", "to": "all"}"#)?;
    let text = body.text.trim().to_string();
    if text.is_empty() || text.chars().count() > 1000 {
        return Err(ApiError::BadRequest(
            "text must be 1 to 1000 characters".into(),
        ));
    }
    let level = body.level.unwrap_or_else(|| "info".into());
    if !matches!(level.as_str(), "info" | "warning" | "urgent") {
        return Err(ApiError::BadRequest(
            "level must be info, warning or urgent".into(),
        ));
    }
    let target = crate::core::notices::Target::parse(body.to.as_deref().unwrap_or("all"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if target.recipients(&app.roster).is_empty() {
        return Err(ApiError::BadRequest("no site matches `to`".into()));
    }
    spend_notice(&app, caller)?;
    let answer = app
        .noticeboard
        .message(text, level, target, &caller.label())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(answer))
}

async fn messages(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    Ok(Json(json!({"notices": app.noticeboard.summaries()})))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DismissBody {
    alert: String,
    site: Option<String>,
    #[serde(default)]
    text: String,
    name: String,
}

/// A wall alert marked "Đã biết": stored with the typed name, the key's role and the time.
async fn dismiss(
    State(app): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    let body: DismissBody = body.json(
        r#"{"alert": "offline:05443:1764650000000", "site": "05443", "text": "…", "name": "Lan"}"#,
    )?;
    let site = match body.site.as_deref() {
        None => None,
        Some(code) => {
            let site: crate::core::sites::SiteId = code
                .parse()
                .map_err(|e: crate::core::sites::BadSiteId| ApiError::BadRequest(e.to_string()))?;
            app.roster
                .index_of(site)
                .ok_or_else(|| ApiError::BadRequest(format!("no site {site} in the roster")))?;
            Some(site)
        }
    };
    let now = app.clock.now_ms();
    let dismissal = Dismissal::new(
        &body.alert,
        site,
        &body.text,
        &body.name,
        caller.label(),
        now,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    app.limits.dismissal(caller, now).map_err(|spent| {
        ApiError::too_many(
            &format!(
                "at most {} alerts a minute marked from one key",
                app.config.protocol.max_dismissals_per_minute
            ),
            spent,
        )
    })?;
    let dismissal = app
        .noticeboard
        .dismiss(dismissal)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({ "dismissal": dismissal })))
}

async fn dismissals(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    let dismissals = app
        .noticeboard
        .dismissals()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(json!({ "dismissals": dismissals })))
}

/// How far back the wall's list of past alerts goes, and how long it may be.
const PAST_ALERTS_MS: i64 = 24 * 3_600_000;
const PAST_ALERTS: usize = 500;

/// The outages of the last day that ended (the wall's alerts that cleared themselves),
/// newest first, from the stored transitions: a reloaded wall keeps its list.
async fn past_alerts(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(STAFF)?;
    let now = app.clock.now_ms();
    let by_site = app
        .store
        .transitions_by_site_before(now + 1)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let past = crate::core::notices::ended_outages(&by_site, now - PAST_ALERTS_MS, PAST_ALERTS);
    Ok(Json(json!({ "past": past })))
}

//! HTTP routes: health, status, sites, metrics, and the two websocket endpoints.

pub mod access;
pub mod error;
pub mod evidence;
pub mod export;
pub mod listener;
pub mod web;
pub mod ws;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::core::sites::SiteId;
use crate::core::timer::Command;
use crate::http::error::ApiError;
use crate::protocol::{LiveMsg, RehearsalChange};
use crate::services::timekeeper::CommandError;
use crate::state::AppState;

/// Transitions shown with one site.
const SITE_HISTORY: u32 = 50;
const STAFF: &[Role] = &[Role::Admin, Role::Operator, Role::Secretary];
const TIMER_CONTROL: &[Role] = &[Role::Admin, Role::Secretary];
/// A `command_id` longer than this is not an id.
const MAX_COMMAND_ID: usize = 128;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/sites", get(sites))
        .route("/api/sites.csv", get(sites_csv))
        .route("/api/sites/{id}", get(site))
        .route("/api/timer", get(timer))
        .route("/api/timer/{command}", post(timer_command))
        .route("/api/agenda", get(agenda))
        .route("/api/agenda.csv", get(agenda_csv))
        .route("/api/rollcall", get(roll_call).post(start_roll_call))
        .route("/api/messages", get(messages).post(send_message))
        .route("/api/report", get(crate::http::evidence::report))
        .route("/api/report.csv", get(crate::http::evidence::report_csv))
        .route("/api/rehearsals", get(rehearsals))
        .route("/api/rehearsals/schedule", post(set_schedule))
        .route("/api/rehearsals.csv", get(rehearsals_csv))
        .route("/ws/bridge", get(crate::http::ws::bridge::upgrade))
        .route("/ws/live", get(crate::http::ws::live::upgrade))
        .merge(crate::http::web::router())
        .fallback(not_found)
        .with_state(state)
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
        if let (Some(site), Some(verdict)) = (attempt["site"].as_str(), attempt["verdict"].as_str())
        {
            latest
                .entry(site.to_string())
                .or_insert_with(|| verdict.to_string());
        }
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

/// Any key may read the timer: every screen shows it.
async fn timer(State(app): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!(app.timekeeper.snapshot()))
}

/// Body of a timer command; every field is optional, each command takes what it needs.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    slot: Option<u32>,
    seconds: Option<i64>,
    command_id: Option<String>,
}

async fn timer_command(
    State(app): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(TIMER_CONTROL)?;
    let body: CommandBody = body.json(r#"{"slot": 4}"#)?;
    if body
        .command_id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > MAX_COMMAND_ID)
    {
        return Err(ApiError::BadRequest(format!(
            "command_id must be 1 to {MAX_COMMAND_ID} characters"
        )));
    }
    let slot_required =
        || ApiError::BadRequest("this command needs \"slot\": the presentation's order".into());
    let command =
        match name.as_str() {
            "select" => Command::Select {
                slot: body.slot.ok_or_else(slot_required)?,
            },
            "start" => Command::Start { slot: body.slot },
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "stop" => Command::Stop,
            "next" => Command::Next,
            "previous" => Command::Previous,
            "adjust" => Command::Adjust {
                seconds: body.seconds.ok_or_else(|| {
                    ApiError::BadRequest("adjust needs \"seconds\", e.g. 60 or -60".into())
                })?,
            },
            "reset" => Command::Reset { slot: body.slot },
            _ => return Err(ApiError::NotFound(
                "timer commands: select, start, pause, resume, stop, next, previous, adjust, reset"
                    .into(),
            )),
        };
    match app
        .timekeeper
        .command(command, body.command_id, &caller.label())
        .await
    {
        Ok(snapshot) => Ok(Json(snapshot)),
        Err(CommandError::Refused(e)) if e.is_bad_request() => {
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(CommandError::Refused(e)) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ CommandError::NotStored(_)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

async fn agenda(State(app): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!({"server_ms": app.clock.now_ms(), "slots": app.timekeeper.reports()}))
}

async fn agenda_csv(State(app): State<AppState>, _caller: Caller) -> impl IntoResponse {
    crate::http::export::download(
        "agenda.csv",
        crate::http::export::agenda_csv(&app.timekeeper.reports()),
    )
}

/// Staff: every site with its latest check, the count of attempts, its slot in the
/// schedule and whether it must check again. A site key: its own attempts and slot.
async fn rehearsals(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    if !matches!(caller, Caller::Site(_)) {
        caller.require(STAFF)?;
    }
    // Results are written behind the verdict; a page that was just told one finds it here.
    app.store.flush().await?;
    let schedule = app.store.schedule().await?;
    let slot_of = |id: SiteId| schedule.iter().find(|s| s.site == id).cloned();
    if let Caller::Site(id) = caller {
        let attempts = app.store.rehearsals(Some(id)).await?;
        return Ok(Json(
            json!({"site": id, "slot": slot_of(id), "attempts": attempts}),
        ));
    }
    let all = app.store.rehearsals(None).await?;
    let now = app.clock.now_ms();
    let mut counts = json!({"pass": 0, "warn": 0, "fail": 0, "not_checked": 0, "retest": 0});
    let sites: Vec<Value> = app
        .roster
        .sites()
        .iter()
        .map(|site| {
            let mine: Vec<&Value> = all.iter().filter(|r| r["site"] == site.id.as_str()).collect();
            let latest = mine.first().map(|r| (*r).clone());
            let key = latest.as_ref().and_then(|r| r["verdict"].as_str()).unwrap_or("not_checked").to_string();
            counts[&key] = json!(counts[&key].as_u64().unwrap_or(0) + 1);
            let slot = slot_of(site.id);
            let tried: Vec<(i64, &str)> = mine
                .iter()
                .map(|r| (r["started_ms"].as_i64().unwrap_or(0), r["verdict"].as_str().unwrap_or("")))
                .collect();
            let retest = crate::core::schedule::needs_retest(slot.as_ref(), &tried, now);
            if retest {
                counts["retest"] = json!(counts["retest"].as_u64().unwrap_or(0) + 1);
            }
            json!({"id": site.id, "name": site.name, "former_district": site.former_district,
                   "attempts": mine.len(), "latest": latest, "history": mine, "slot": slot, "retest": retest})
        })
        .collect();
    Ok(Json(json!({"counts": counts, "sites": sites})))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    /// Days as `2026-11-25`.
    days: Vec<String>,
    day_start: Option<String>,
    day_end: Option<String>,
    minutes: Option<u32>,
}

/// Generates the schedule (JSON body) or imports it (a `text/csv` body:
/// `code,start,minutes` with start as `25/11/2026 08:30`). Replaces the old one.
async fn set_schedule(
    State(app): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator])?;
    let slots = if body.declared("text/csv") {
        crate::core::schedule::import("schedule.csv", &body.bytes, &app.roster)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
    } else {
        let example =
            r#"{"days": ["2026-11-25"], "day_start": "08:00", "day_end": "17:00", "minutes": 10}"#;
        let body: GenerateBody = body.json(example)?;
        let date = |d: &String| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::BadRequest(format!("day `{d}` must look like 2026-11-25")))
        };
        let time = |t: Option<String>, default: &str| {
            let text = t.unwrap_or_else(|| default.to_string());
            chrono::NaiveTime::parse_from_str(&text, "%H:%M")
                .map_err(|_| ApiError::BadRequest(format!("time `{text}` must look like 08:00")))
        };
        let days = body.days.iter().map(date).collect::<Result<Vec<_>, _>>()?;
        let (start, end) = (time(body.day_start, "08:00")?, time(body.day_end, "17:00")?);
        crate::core::schedule::generate(&app.roster, &days, start, end, body.minutes.unwrap_or(10))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
    };
    let count = slots.len();
    app.store
        .replace_schedule(slots)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    app.hub
        .publish(LiveMsg::Rehearsal(RehearsalChange::Schedule {
            schedule: count,
        }));
    Ok(Json(json!({"slots": count})))
}

async fn rehearsals_csv(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(STAFF)?;
    app.store.flush().await?;
    let all = app.store.rehearsals(None).await?;
    Ok(crate::http::export::download(
        "rehearsals.csv",
        crate::http::export::rehearsals_csv(&app.roster, &all),
    ))
}

/// A request body and its declared type. Over the size limit it is a JSON 413.
struct Body {
    content_type: Option<String>,
    bytes: Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
        let bytes = Bytes::from_request(request, state).await?;
        Ok(Body {
            content_type,
            bytes,
        })
    }
}

impl Body {
    fn declared(&self, media_type: &str) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with(media_type))
    }

    /// The body as JSON (an empty body means the defaults), with a 400 that shows the
    /// shape; a body declared as anything else is refused (415).
    fn json<T: serde::de::DeserializeOwned + Default>(&self, example: &str) -> Result<T, ApiError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        if self.content_type.is_some() && !self.declared("application/json") {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json (curl: --json)".into(),
            ));
        }
        serde_json::from_slice(&self.bytes)
            .map_err(|e| ApiError::BadRequest(format!("body must be JSON like {example}: {e}")))
    }
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
    let answer = app
        .noticeboard
        .roll_call(seconds, &caller.label())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(Json(answer))
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

async fn not_found() -> ApiError {
    ApiError::NotFound("no such page or API route".into())
}

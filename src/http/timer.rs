//! The speaker timer and the agenda: `/api/timer`, its commands, `/api/agenda(.csv)`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::core::timer::{Command, Screen};
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::services::timekeeper::CommandError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/timer", get(timer))
        .route("/api/timer/{command}", post(timer_command))
        .route("/api/agenda", get(agenda))
        .route("/api/agenda.csv", get(agenda_csv))
}

const TIMER_CONTROL: &[Role] = &[Role::Admin, Role::Secretary];

/// A `command_id` longer than this is not an id.
const MAX_COMMAND_ID: usize = 128;

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
    /// `screen`: timer, clock, next or black.
    show: Option<String>,
    /// `note`: the words for the speaker (empty clears).
    text: Option<String>,
    /// `edit`: the slot's new unit, topic, venue (`hall` or a site code).
    unit: Option<String>,
    topic: Option<String>,
    venue: Option<String>,
    /// `move`: the new position (1 = first).
    to: Option<u32>,
    /// `insert`: the position after which the new slot comes (0 = first).
    after: Option<u32>,
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
            "undo" => Command::Undo,
            "edit" => {
                let slot = body.slot.ok_or_else(slot_required)?;
                check_venue(&app, body.venue.as_deref())?;
                let seconds = body.seconds.map(slot_seconds).transpose()?;
                Command::Edit {
                    slot,
                    unit: body.unit,
                    topic: body.topic,
                    seconds,
                    venue: body.venue,
                }
            }
            "move" => Command::Move {
                slot: body.slot.ok_or_else(slot_required)?,
                to: body.to.ok_or_else(|| {
                    ApiError::BadRequest("move needs \"to\": the new position, 1 = first".into())
                })?,
            },
            "insert" => {
                check_venue(&app, body.venue.as_deref())?;
                let seconds = match body.seconds {
                    None => app.config.timer.slot_seconds,
                    Some(s) => slot_seconds(s)?,
                };
                Command::Insert {
                    after: body.after.ok_or_else(|| {
                        ApiError::BadRequest("insert needs \"after\": the position before it, 0 = first".into())
                    })?,
                    unit: body.unit.ok_or_else(|| {
                        ApiError::BadRequest("insert needs \"unit\"".into())
                    })?,
                    topic: body.topic.unwrap_or_default(),
                    seconds,
                    venue: body.venue.unwrap_or_else(|| "hall".into()),
                }
            }
            "withdraw" => Command::Withdraw {
                slot: body.slot.ok_or_else(slot_required)?,
            },
            "screen" => Command::Screen {
                show: body.show.as_deref().and_then(Screen::parse).ok_or_else(|| {
                    ApiError::BadRequest(
                        "screen needs \"show\": timer, clock, next or black".into(),
                    )
                })?,
            },
            "note" => Command::Note {
                text: body.text.ok_or_else(|| {
                    ApiError::BadRequest(
                        "note needs \"text\" (empty clears the note)".into(),
                    )
                })?,
            },
            _ => return Err(ApiError::NotFound(
                "timer commands: select, start, pause, resume, stop, next, previous, adjust, reset, undo, edit, move, insert, withdraw, screen, note"
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

/// A venue from a request: `hall`, or a site of the roster.
fn check_venue(app: &AppState, venue: Option<&str>) -> Result<(), ApiError> {
    let Some(code) = venue.map(str::trim).filter(|v| *v != "hall") else {
        return Ok(());
    };
    let known = code
        .parse::<crate::core::sites::SiteId>()
        .ok()
        .and_then(|id| app.roster.index_of(id));
    match known {
        Some(_) => Ok(()),
        None => Err(ApiError::BadRequest(format!(
            "venue `{code}` is neither hall nor a site of the roster"
        ))),
    }
}

/// A slot's length from JSON (`seconds` is an i64 there, for `adjust`); the core checks
/// the range.
fn slot_seconds(seconds: i64) -> Result<u32, ApiError> {
    u32::try_from(seconds)
        .map_err(|_| ApiError::BadRequest("seconds must be from 1 to 3600".into()))
}

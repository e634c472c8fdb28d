//! Rehearsal checks and their schedule: `/api/rehearsals`, `/api/rehearsals/schedule`, `/api/rehearsals.csv`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::core::sites::SiteId;
use crate::http::STAFF;
use crate::http::body::Body;
use crate::http::error::ApiError;
use crate::protocol::{LiveMsg, RehearsalChange};
use crate::state::AppState;
use crate::store::StoredRehearsal;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rehearsals", get(rehearsals))
        .route("/api/rehearsals/schedule", post(set_schedule))
        .route("/api/rehearsals.csv", get(rehearsals_csv))
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
            let mine: Vec<&StoredRehearsal> = all.iter().filter(|r| r.site == site.id).collect();
            let latest = mine.first().map(|r| (*r).clone());
            let key = latest.as_ref().map_or("not_checked", |r| r.verdict.as_str()).to_string();
            counts[&key] = json!(counts[&key].as_u64().unwrap_or(0) + 1);
            let slot = slot_of(site.id);
            let tried: Vec<(i64, &str)> = mine
                .iter()
                .map(|r| (r.started_ms, r.verdict.as_str()))
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

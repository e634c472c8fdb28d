//! The evidence report (`/api/report`, `/api/report.csv`, `/report`): per site and per
//! presentation, over the conference window, from what the store holds.

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, Role};
use crate::config::parse_time;
use crate::core::report::availability;
use crate::http::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/report", get(report))
        .route("/api/report.csv", get(report_csv))
}

#[derive(Debug, Default, Deserialize)]
pub struct Window {
    from: Option<String>,
    to: Option<String>,
}

/// `?from=`/`?to=` (RFC 3339 or epoch ms), else the config's window, else the store's
/// whole life until now.
async fn window(app: &AppState, query: &Window) -> Result<(i64, i64), ApiError> {
    let parse = |text: &str| {
        text.parse::<i64>()
            .or_else(|_| parse_time(text))
            .map_err(ApiError::BadRequest)
    };
    let from = match query.from.as_deref().or(app.config.report.start.as_deref()) {
        Some(text) => parse(text)?,
        None => app.store.tracking_since().await?,
    };
    let to = match query.to.as_deref().or(app.config.report.end.as_deref()) {
        Some(text) => parse(text)?,
        None => app.clock.now_ms(),
    };
    if to <= from {
        return Err(ApiError::BadRequest(
            "the window must end after it starts".into(),
        ));
    }
    Ok((from, to))
}

/// The whole report as JSON; a site key gets only its own site.
pub async fn build(app: &AppState, caller: Caller, query: &Window) -> Result<Value, ApiError> {
    let own = match caller {
        Caller::Site(id) => Some(id),
        _ => {
            caller.require(&[Role::Admin, Role::Operator, Role::Secretary])?;
            None
        }
    };
    let (from, to) = window(app, query).await?;
    app.store.flush().await?;
    let by_site = app.store.transitions_by_site_before(to).await?;
    let rehearsals = app.store.rehearsals(None).await?;
    let rtt_medians = app.store.rtt_median_by_site_between(from, to).await?;
    let downtime = app.store.downtime_between(from, to).await?;
    let dead: Vec<_> = downtime.iter().map(|(d, _)| *d).collect();
    let mut rehearsal_counts = json!({"pass": 0, "warn": 0, "fail": 0, "not_checked": 0});
    let (mut uptime_sum, mut outages, mut with_outages, mut confirmed) = (0.0, 0u32, 0u32, 0u32);
    let mut sites = Vec::new();
    for (idx, site) in app.roster.sites().iter().enumerate() {
        let a = availability(
            by_site.get(site.id.as_str()).map_or(&[][..], Vec::as_slice),
            from,
            to,
            &dead,
        );
        let verdict = rehearsals
            .iter()
            .find(|r| r.site == site.id)
            .map_or("not_checked", |r| r.verdict.as_str());
        let roll_call = app.noticeboard.roll_call_confirmed(idx);
        uptime_sum += a.uptime;
        outages += a.outages;
        with_outages += (a.outages > 0) as u32;
        confirmed += roll_call.is_some() as u32;
        rehearsal_counts[verdict] = json!(rehearsal_counts[verdict].as_u64().unwrap_or(0) + 1);
        if own.is_some_and(|id| id != site.id) {
            continue;
        }
        sites.push(json!({
            "id": site.id, "name": site.name, "former_district": site.former_district,
            "uptime": a.uptime, "up_ms": a.up_ms, "outages": a.outages,
            "outage_total_ms": a.outage_total_ms, "outage_longest_ms": a.outage_longest_ms,
            "rtt_ms": rtt_medians.get(site.id.as_str()),
            "rehearsal": verdict, "roll_call_confirmed_ms": roll_call,
        }));
    }
    let presentations = app.timekeeper.reports();
    let done: Vec<_> = presentations
        .iter()
        .filter(|p| p.ended_ms.is_some())
        .collect();
    let mut totals = json!({
        "sites": app.roster.len(),
        "slots": presentations.len(),
        "slots_done": done.len(),
        // Every finished run, reset ones too: the same total as the metric.
        "overtime_ms": app.timekeeper.overtime_total_ms(),
        "attempts_reset": presentations.iter().map(|p| p.earlier_attempts.len()).sum::<usize>(),
        "interruptions": presentations.iter().map(|p| p.interruptions.len()).sum::<usize>(),
    });
    if own.is_none() {
        totals["average_uptime"] = json!(uptime_sum / app.roster.len().max(1) as f64);
        totals["outages"] = json!(outages);
        totals["sites_with_outages"] = json!(with_outages);
        totals["roll_call_confirmed"] = json!(confirmed);
        totals["rehearsal"] = rehearsal_counts;
    }
    Ok(json!({
        "window": {"from_ms": from, "to_ms": to},
        // Nobody was watching then: left out of every site's uptime and outages.
        "service_downtime": downtime.iter().map(|(d, cause)| json!({
            "from_ms": d.from_ms, "to_ms": d.to_ms, "cause": cause,
        })).collect::<Vec<_>>(),
        "generated_ms": app.clock.now_ms(),
        "totals": totals,
        "sites": sites,
        "presentations": presentations,
    }))
}

pub async fn report(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<Window>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(build(&app, caller, &query).await?))
}

pub async fn report_csv(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<Window>,
) -> Result<impl IntoResponse, ApiError> {
    let report = build(&app, caller, &query).await?;
    Ok(crate::http::export::download(
        "report.csv",
        crate::http::export::report_csv(&report, &app.timekeeper.reports()),
    ))
}

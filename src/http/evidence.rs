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
use std::collections::BTreeMap;

use crate::core::incidents::{Excusal, Incident, IncidentBook};
use crate::core::report::availability;
use crate::core::sites::SiteId;
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
    // Incidents from their stored events, replayed as at start: what the walls showed.
    let mut book = IncidentBook::new(app.config.incident_policy());
    // Only what had happened by the window's end.
    for event in app.store.incident_events().await? {
        if event.at_ms() <= to {
            book.apply(&event);
        }
    }
    let mut excused: BTreeMap<SiteId, Excusal> = BTreeMap::new();
    for excusal in app.store.excusals().await? {
        if excusal.at_ms < to {
            excused.insert(excusal.site, excusal);
        }
    }
    excused.retain(|_, e| e.excused);
    let mut rehearsal_counts = json!({"pass": 0, "warn": 0, "fail": 0, "not_checked": 0});
    let (mut uptime_sum, mut outages, mut with_outages, mut confirmed) = (0.0, 0u32, 0u32, 0u32);
    let mut sites = Vec::new();
    let mut counted = 0usize;
    for (idx, site) in app.roster.sites().iter().enumerate() {
        let a = availability(
            by_site.get(site.id.as_str()).map_or(&[][..], Vec::as_slice),
            from,
            to,
            &dead,
        );
        let latest = rehearsals.iter().find(|r| r.site == site.id);
        let verdict = latest.map_or("not_checked", |r| r.verdict.as_str());
        // What the latest check did not pass (the devices, the UDP path, the line).
        let not_passed: Vec<&str> = latest
            .into_iter()
            .flat_map(|r| &r.rows)
            .filter(|row| {
                row.verdict
                    .is_some_and(|v| v != crate::core::rehearsal::Verdict::Pass)
            })
            .map(|row| row.label.as_str())
            .collect();
        let roll_call = app.noticeboard.roll_call_confirmed(idx);
        let excusal = excused.get(&site.id);
        // An excused site is not taking part: left out of the uptime and outage totals.
        if excusal.is_none() {
            counted += 1;
            uptime_sum += a.uptime;
            outages += a.outages;
            with_outages += (a.outages > 0) as u32;
        }
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
            "rehearsal": verdict, "rehearsal_not_passed": not_passed,
            "roll_call_confirmed_ms": roll_call,
            "excused": excusal,
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
    let incidents: Vec<&Incident> = book
        .all()
        .iter()
        .filter(|i| i.opened_ms < to && i.resolved_ms.is_none_or(|at| at >= from))
        .filter(|i| own.is_none_or(|id| id == i.site))
        .collect();
    totals["incidents"] = json!(crate::core::incidents::totals(&incidents));
    let incidents: Vec<Value> = incidents
        .into_iter()
        .map(|i| {
            let name = app
                .roster
                .index_of(i.site)
                .map(|idx| app.roster.site(idx).name.clone());
            json!({
                "id": i.id, "site": i.site, "name": name, "cause": i.cause,
                "opened_ms": i.opened_ms,
                "taken_by": i.takers.first().map(|t| &t.name),
                "taken_ms": i.takers.first().map(|t| t.at_ms),
                "time_to_take_ms": i.time_to_take_ms(),
                "takers": i.takers, "notes": i.notes,
                "raised_again_ms": i.raised_again_ms, "flaps": i.flaps,
                "back_ms": i.last_back_ms, "resolved_ms": i.resolved_ms, "closing": i.closing,
                "duration_ms": i.duration_ms(),
            })
        })
        .collect();
    if own.is_none() {
        totals["average_uptime"] = json!(uptime_sum / counted.max(1) as f64);
        totals["excused_sites"] = json!(excused.len());
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
        "incidents": incidents,
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

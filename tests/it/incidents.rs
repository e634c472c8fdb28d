//! Incidents in the running service: a drop opens one, staff take it and note it, an
//! untaken one is raised again, a return closes it, an excused site opens none; every
//! fact is stored and survives a restart. The rules' timings are unit-tested on
//! explicit times in `core::incidents`; here they are a second or two.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Incidents close a second after the site is back and are raised again after two.
fn quick(config: &mut diemcau::config::Config) {
    steady(config);
    config.incidents.resolve_after_seconds = 1;
    config.incidents.raise_after_seconds = 2;
}

/// The next `incident` frame on the live feed for `site` that satisfies `done`.
async fn incident_until(feed: &mut Client, site: &str, done: impl Fn(&Value) -> bool) -> Value {
    let wanted = async {
        loop {
            let frame = feed.recv_type("incident").await;
            if frame["site"] == site && done(&frame) {
                return frame;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wanted)
        .await
        .unwrap_or_else(|_| panic!("no such incident frame for {site}"))
}

/// The operator's live feed past its snapshot, and two bridges online.
async fn feed_and_two_sites(app: &TestApp) -> (Client, EchoingBridge, EchoingBridge) {
    let mut feed = Client::connect(app, &format!("/ws/live?key={}", app.key("operator"))).await;
    feed.recv_type("snapshot").await;
    let a = EchoingBridge::join(app, SITE).await;
    let b = EchoingBridge::join(app, OTHER_SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    app.wait_for_state(OTHER_SITE, "online", WAIT).await;
    (feed, a, b)
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn a_drop_opens_one_incident_that_is_taken_noted_raised_again_and_closed_and_all_of_it_survives_a_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), quick).await;
    let operator = Some(app.key("operator"));
    let (mut feed, a, b) = feed_and_two_sites(&app).await;

    a.close().await;
    b.close().await;
    let opened_a = incident_until(&mut feed, SITE, |i| i["resolved_ms"].is_null()).await;
    let opened_b = incident_until(&mut feed, OTHER_SITE, |i| i["resolved_ms"].is_null()).await;
    assert_eq!(opened_a["cause"], "offline");
    let dropped_at = app.site(SITE).await["since_ms"].as_i64().unwrap();
    assert_eq!(
        opened_a["opened_ms"].as_i64(),
        Some(dropped_at),
        "dated at the drop: {opened_a}"
    );

    // B is taken and noted at once; A is left alone.
    let b_id = opened_b["id"].as_str().unwrap();
    let (status, answer) = app
        .post(
            &format!("/api/incidents/{b_id}/take"),
            operator,
            json!({"name": "Lan"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["incident"]["takers"][0]["name"], "Lan");
    assert_eq!(answer["incident"]["takers"][0]["role"], "operator");
    let note = "đã gọi anh Hùng: mất điện, 5 phút";
    let (status, answer) = app
        .post(
            &format!("/api/incidents/{b_id}/notes"),
            operator,
            json!({"name": "Lan", "text": note}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let live = incident_until(&mut feed, OTHER_SITE, |i| i["notes"][0]["text"] == note).await;
    assert_eq!(
        live["takers"][0]["name"], "Lan",
        "the walls hear who is on it"
    );

    // Two seconds on, nobody has A: raised again, exactly two seconds after it opened.
    let raised = incident_until(&mut feed, SITE, |i| !i["raised_again_ms"].is_null()).await;
    assert_eq!(
        raised["raised_again_ms"].as_i64().unwrap() - raised["opened_ms"].as_i64().unwrap(),
        2000
    );
    let metrics = app.get_text("/metrics").await.1;
    assert_eq!(
        metric(&metrics, "diemcau_incidents_open"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "diemcau_incidents_untaken"), Some(1.0));
    assert_eq!(
        metric(
            &metrics,
            &format!("diemcau_incident_raised_again{{site=\"{SITE}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("diemcau_incident_taken{{site=\"{OTHER_SITE}\",name=\"Lan\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("diemcau_incident_raised_again{{site=\"{OTHER_SITE}\"}}")
        ),
        None
    );

    // A comes back, drops and comes back inside the second: still one incident (a flap);
    // a second after its last return it closes.
    let a = EchoingBridge::join(&app, SITE).await;
    incident_until(&mut feed, SITE, |i| !i["back_ms"].is_null()).await;
    a.close().await;
    incident_until(&mut feed, SITE, |i| i["flaps"] == 1).await;
    let a = EchoingBridge::join(&app, SITE).await;
    let closed = incident_until(&mut feed, SITE, |i| !i["resolved_ms"].is_null()).await;
    assert_eq!(closed["closing"], "back");
    assert_eq!(
        closed["id"], opened_a["id"],
        "the flap opened no second incident"
    );
    assert_eq!(
        closed["resolved_ms"].as_i64().unwrap() - closed["last_back_ms"].as_i64().unwrap(),
        1000
    );
    let (_, list) = app.get("/api/incidents", operator).await;
    let of_a: Vec<&Value> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["site"] == SITE)
        .collect();
    assert_eq!(of_a.len(), 1, "{list}");
    a.close().await;
    let before: Vec<Value> = list["incidents"].as_array().unwrap().clone();

    // After a restart the book is the same, B still open and still Lan's.
    app.stop().await;
    let app = spawn_app_in(dir.path(), quick).await;
    let (_, list) = app.get("/api/incidents", Some(app.key("operator"))).await;
    let after = list["incidents"].as_array().unwrap();
    // A's drop after the closing is a new incident (the restart left A as it was).
    assert_eq!(&after[..before.len()], &before[..], "{list}");
    let b_after = after.iter().find(|i| i["id"] == b_id).unwrap();
    assert!(
        b_after["resolved_ms"].is_null(),
        "B was not back: still open"
    );
    assert_eq!(b_after["notes"][0]["text"], note);
}

#[tokio::test]
async fn an_excused_site_opens_no_incident_and_the_metrics_and_the_api_say_who_excused_it() {
    let app = spawn_app(quick).await;
    let operator = Some(app.key("operator"));
    let (status, answer) = app
        .post(
            "/api/excusals",
            operator,
            json!({"site": SITE, "name": "Lan", "reason": "xã sáp nhập, dự tại điểm cầu khác"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    let snapshot = feed.recv_type("snapshot").await;
    assert_eq!(snapshot["excused"][0]["site"], SITE, "{snapshot}");
    let a = EchoingBridge::join(&app, SITE).await;
    let b = EchoingBridge::join(&app, OTHER_SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    app.wait_for_state(OTHER_SITE, "online", WAIT).await;
    a.close().await;
    b.close().await;
    incident_until(&mut feed, OTHER_SITE, |_| true).await;
    app.wait_for_state(SITE, "offline", WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // a tick of the rules
    let (_, list) = app.get("/api/incidents", operator).await;
    let sites: Vec<&str> = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, [OTHER_SITE], "the excused site has none: {list}");
    assert_eq!(list["excused"][0]["name"], "Lan");
    assert_eq!(list["excused"][0]["role"], "operator");
    let metrics = app.get_text("/metrics").await.1;
    assert_eq!(
        metric(
            &metrics,
            &format!("diemcau_site_excused{{site=\"{SITE}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("diemcau_site_excused{{site=\"{OTHER_SITE}\"}}")
        ),
        Some(0.0)
    );

    // Excusing the other site closes its open incident as excused.
    app.post(
        "/api/excusals",
        operator,
        json!({"site": OTHER_SITE, "name": "Lan", "reason": "mất điện cả xã"}),
    )
    .await;
    let closed = incident_until(&mut feed, OTHER_SITE, |i| !i["resolved_ms"].is_null()).await;
    assert_eq!(closed["closing"], "excused");
}

#[tokio::test]
async fn takes_notes_and_excusals_are_checked_bounded_and_only_for_the_wall() {
    let app = spawn_app(|config| {
        quick(config);
        config.incidents.max_acts_per_minute = 3;
    })
    .await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    feed.recv_type("snapshot").await;
    let a = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    a.close().await;
    let incident = incident_until(&mut feed, SITE, |_| true).await;
    let id = incident["id"].as_str().unwrap();
    let take = format!("/api/incidents/{id}/take");
    let notes = format!("/api/incidents/{id}/notes");
    for (path, body, key, code) in [
        (take.as_str(), json!({"name": " "}), "operator", 400),
        (
            take.as_str(),
            json!({"name": "x".repeat(81)}),
            "operator",
            400,
        ),
        (
            notes.as_str(),
            json!({"name": "Lan", "text": "x".repeat(501)}),
            "operator",
            400,
        ),
        (take.as_str(), json!({"name": "Lan"}), "secretary", 403),
        (take.as_str(), json!({"name": "Lan"}), "display", 403),
        (take.as_str(), json!({"name": "Lan"}), SITE, 403),
        (
            "/api/incidents/not-an-id/take",
            json!({"name": "Lan"}),
            "operator",
            404,
        ),
        (
            "/api/excusals",
            json!({"site": SITE, "name": "Lan", "reason": " "}),
            "operator",
            400,
        ),
        (
            "/api/excusals",
            json!({"site": "99999", "name": "Lan", "reason": "x"}),
            "operator",
            400,
        ),
    ] {
        let (status, answer) = app.post(path, Some(app.key(key)), body.clone()).await;
        assert_eq!(status, code, "{path} {body} as {key}: {answer}");
    }
    let (_, list) = app.get("/api/incidents", Some(app.key("operator"))).await;
    let stored = &list["incidents"][0];
    assert!(
        stored["takers"].as_array().unwrap().is_empty()
            && stored["notes"].as_array().unwrap().is_empty(),
        "nothing refused was stored: {stored}"
    );
    assert!(list["excused"].as_array().unwrap().is_empty());
    // Three acts a minute from one key; the fourth waits.
    for _ in 0..3 {
        assert_eq!(
            app.post(&take, Some(app.key("operator")), json!({"name": "Lan"}))
                .await
                .0,
            200
        );
    }
    let (status, answer) = app
        .post(&take, Some(app.key("operator")), json!({"name": "Lan"}))
        .await;
    assert_eq!(status, 429, "{answer}");
}

#[tokio::test]
async fn the_report_lists_each_incident_with_who_took_it_its_notes_and_duration_and_the_totals_also_in_the_csv_and_after_a_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), quick).await;
    let operator = Some(app.key("operator"));
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    feed.recv_type("snapshot").await;
    let away = "05500";
    app.post(
        "/api/excusals",
        operator,
        json!({"site": away, "name": "Lan", "reason": "xã sáp nhập"}),
    )
    .await;
    let a = EchoingBridge::join(&app, SITE).await;
    let b = EchoingBridge::join(&app, OTHER_SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    app.wait_for_state(OTHER_SITE, "online", WAIT).await;
    a.close().await;
    b.close().await;
    let opened = incident_until(&mut feed, SITE, |_| true).await;
    let id = opened["id"].as_str().unwrap();
    app.post(
        &format!("/api/incidents/{id}/take"),
        operator,
        json!({"name": "Lan"}),
    )
    .await;
    let note = "đã gọi anh Hùng: mất điện, 5 phút";
    app.post(
        &format!("/api/incidents/{id}/notes"),
        operator,
        json!({"name": "Lan", "text": note}),
    )
    .await;
    let a = EchoingBridge::join(&app, SITE).await;
    incident_until(&mut feed, SITE, |i| !i["resolved_ms"].is_null()).await;

    let (status, report) = app.get("/api/report", operator).await;
    assert_eq!(status, 200, "{report}");
    let incidents = report["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 2, "{incidents:#?}");
    let of_a = incidents.iter().find(|i| i["site"] == SITE).unwrap();
    let of_b = incidents.iter().find(|i| i["site"] == OTHER_SITE).unwrap();
    assert_eq!(of_a["name"], "Phường Phan Đình Phùng");
    assert_eq!(of_a["taken_by"], "Lan");
    assert_eq!(
        of_a["time_to_take_ms"].as_i64(),
        Some(of_a["taken_ms"].as_i64().unwrap() - of_a["opened_ms"].as_i64().unwrap())
    );
    assert_eq!(of_a["notes"][0]["text"], note);
    assert_eq!(of_a["closing"], "back");
    assert_eq!(
        of_a["duration_ms"].as_i64(),
        Some(of_a["back_ms"].as_i64().unwrap() - of_a["opened_ms"].as_i64().unwrap()),
        "from the drop to the return"
    );
    assert!(of_b["taken_by"].is_null() && of_b["resolved_ms"].is_null());
    let totals = &report["totals"]["incidents"];
    assert_eq!(
        (
            totals["incidents"].as_u64(),
            totals["open"].as_u64(),
            totals["never_taken"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(totals["median_time_to_take_ms"], of_a["time_to_take_ms"]);
    assert_eq!(totals["median_duration_ms"], of_a["duration_ms"]);
    // The excused site: said on its row, left out of the uptime totals.
    assert_eq!(report["totals"]["excused_sites"], 1);
    let row = report_row(&report, away);
    assert_eq!(row["excused"]["reason"], "xã sáp nhập");
    let uptimes: Vec<f64> = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"] != away)
        .map(|s| s["uptime"].as_f64().unwrap())
        .collect();
    let mean = uptimes.iter().sum::<f64>() / uptimes.len() as f64;
    assert!((report["totals"]["average_uptime"].as_f64().unwrap() - mean).abs() < 1e-9);

    let csv = app.get_csv("/api/report.csv", app.key("operator")).await;
    assert!(csv.contains("Sự cố: 2,chưa ai nhận: 1"), "{csv}");
    let line_a = csv
        .lines()
        .find(|l| l.starts_with(&format!("{SITE},Phường Phan Đình Phùng,mất kết nối,")))
        .expect("A's incident row");
    assert!(
        line_a.contains(",Lan,") && line_a.contains(note) && line_a.ends_with("điểm cầu trở lại"),
        "{line_a}"
    );
    let line_b = csv
        .lines()
        .find(|l| l.starts_with(&format!("{OTHER_SITE},Phường Linh Sơn,mất kết nối,")))
        .expect("B's row");
    assert!(
        line_b.contains("chưa ai nhận") && line_b.ends_with("đang mở"),
        "{line_b}"
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with(away) && l.contains("xã sáp nhập (Lan,")),
        "{csv}"
    );
    a.close().await;

    // Computed from the stored records: the same after a restart.
    let window = format!(
        "?from={}&to={}",
        report["window"]["from_ms"], report["window"]["to_ms"]
    );
    app.stop().await;
    let app = spawn_app_in(dir.path(), quick).await;
    let (_, again) = app
        .get(&format!("/api/report{window}"), Some(app.key("operator")))
        .await;
    assert_eq!(again["incidents"], report["incidents"]);
    assert_eq!(again["totals"]["incidents"], report["totals"]["incidents"]);
}

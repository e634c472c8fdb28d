//! The evidence report over real stored history.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_report_counts_uptime_outages_roll_call_and_speaker_times() {
    let app = spawn_app(fast).await;
    let from = now_ms();
    let mut first = Client::join(&app, SITE).await;
    let roll_call = app
        .http
        .post(app.url("/api/rollcall"))
        .bearer_auth(app.key("operator"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(roll_call.status(), 200);
    let id = first.recv_type("roll_call").await["id"].clone();
    first.send(json!({"type": "ack", "ref": id})).await;
    drop(first); // a drop…
    app.wait_for_state(SITE, "offline", WAIT).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let _back = EchoingBridge::join(&app, SITE).await; // …and back
    app.wait_for_state(SITE, "online", WAIT).await;
    app.start_slot(1).await;
    let (status, _) = app
        .post("/api/timer/stop", Some(app.key("secretary")), json!({}))
        .await;
    assert_eq!(status, 200);
    let to = now_ms() + 1;

    let (status, report) = app
        .get(
            &format!("/api/report?from={from}&to={to}"),
            Some(app.key("operator")),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let site = report_row(&report, SITE);
    assert_eq!(site["outages"], 1);
    let outage = site["outage_total_ms"].as_i64().unwrap();
    assert!((100..2000).contains(&outage), "{outage}");
    let uptime = site["uptime"].as_f64().unwrap();
    assert!(uptime > 0.0 && uptime < 1.0, "{uptime}");
    assert!(site["roll_call_confirmed_ms"].is_number());
    assert_eq!(site["rehearsal"], "not_checked");
    let totals = &report["totals"];
    assert_eq!(
        (
            totals["sites_with_outages"].as_u64(),
            totals["roll_call_confirmed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(totals["slots_done"], 1);
    assert_eq!(report["presentations"][0]["state"], "done");

    let (status, own) = app.get("/api/report", Some(app.key(SITE))).await;
    assert_eq!(
        (status, own["sites"].as_array().unwrap().len()),
        (200, 1),
        "a site sees its own row only"
    );
    assert!(own["totals"].get("roll_call_confirmed").is_none());
    assert_eq!(
        app.get("/api/report", Some(app.key("display"))).await.0,
        403
    );
    assert_eq!(
        app.get("/api/report?from=yesterday", Some(app.key("operator")))
            .await
            .0,
        400
    );

    let text = app.get_csv("/api/report.csv", app.key("operator")).await;
    assert!(text.contains("05443,Phường Phan Đình Phùng,"));
    assert!(
        text.contains("STT,Đơn vị,Chủ đề"),
        "the presentations follow the sites"
    );
    assert_eq!(
        text.matches('\u{feff}').count(),
        0,
        "one byte-order mark, at the start"
    );
}

#[tokio::test]
async fn the_report_rtt_comes_from_the_samples_inside_its_window() {
    let app = spawn_app(|config| {
        steady(config);
        config.report.rtt_sample_ms = 100;
    })
    .await;
    let before = now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let from = now_ms();
    let _bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await; // a few samples
    let to = now_ms();
    let row = |report: &serde_json::Value, site: &str| {
        report["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["id"] == site)
            .cloned()
            .unwrap()
    };
    let operator = Some(app.key("operator"));

    let (status, report) = app
        .get(&format!("/api/report?from={from}&to={to}"), operator)
        .await;
    assert_eq!(status, 200, "{report}");
    let rtt = row(&report, SITE)["rtt_ms"].as_f64();
    assert!(
        rtt.is_some_and(|ms| (0.0..500.0).contains(&ms)),
        "the connected site's RTT over the window: {report}"
    );
    let never_connected = report["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["id"] != SITE)
        .unwrap();
    assert!(never_connected["rtt_ms"].is_null(), "{never_connected}");

    // A window that ended before the site connected has no RTT, though it is connected now.
    let (status, earlier) = app
        .get(&format!("/api/report?from={before}&to={from}"), operator)
        .await;
    assert_eq!(status, 200, "{earlier}");
    assert!(row(&earlier, SITE)["rtt_ms"].is_null(), "{earlier}");
}

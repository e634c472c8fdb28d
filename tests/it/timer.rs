//! The speaker timer through the API, the bridge sockets and the live feed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Xã Chợ Rã presents slot 26 from its own bridge.
const CHO_RA: &str = "01912";

async fn command(app: &TestApp, name: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    app.post(&format!("/api/timer/{name}"), key, body).await
}

/// The embedded configuration with `csv` as the agenda (written into `dir`).
fn with_agenda(dir: &std::path::Path, csv: &str) -> diemcau::config::Loaded {
    let path = dir.join("agenda.csv");
    std::fs::write(&path, csv).unwrap();
    diemcau::config::Loaded::load(&diemcau::config::Sources {
        agenda: Some(path),
        ..Default::default()
    })
    .unwrap()
}

/// Builds (does not run) the service on `data`, as `serve` would: its start checks apply.
async fn build_on(
    data: &std::path::Path,
    loaded: diemcau::config::Loaded,
) -> Result<diemcau::app::App, diemcau::app::StartError> {
    let clock = std::sync::Arc::new(diemcau::clock::SystemClock::new());
    diemcau::app::App::build(loaded, data.to_path_buf(), "127.0.0.1:0", clock).await
}

/// The HTTP status of a timer command given with `who`'s key.
async fn status_of(app: &TestApp, name: &str, body: Value, who: &str) -> u16 {
    command(app, name, body, Some(app.key(who))).await.0
}

async fn secretary(app: &TestApp, name: &str, body: Value) -> Value {
    let (status, answer) = command(app, name, body, Some(app.key("secretary"))).await;
    assert_eq!(status, 200, "{name}: {answer}");
    answer
}

#[tokio::test]
async fn timer_commands_take_the_secretary_or_admin_key_only() {
    let app = spawn_app(fast).await;
    assert_eq!(
        command(&app, "select", json!({"slot": 1}), None).await.0,
        401
    );
    assert_eq!(
        command(&app, "select", json!({"slot": 1}), Some("wrong"))
            .await
            .0,
        401
    );
    for who in ["operator", "display", SITE] {
        let (status, body) = command(&app, "select", json!({"slot": 1}), Some(app.key(who))).await;
        assert_eq!(status, 403, "{who}: {body}");
    }
    assert_eq!(
        app.get("/api/timer", Some(app.key("display"))).await.1["rev"],
        0,
        "refused commands change nothing"
    );
    secretary(&app, "select", json!({"slot": 1})).await;
    let (status, body) = command(&app, "start", json!({}), Some(app.key("admin"))).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("running")));
}

#[tokio::test]
async fn a_running_slot_snapshot_has_the_documented_fields() {
    let app = spawn_app(fast).await;
    let answer = secretary(&app, "start", json!({"slot": 4})).await;
    assert_eq!(answer["state"], "running");
    assert_eq!(answer["slot"]["order"], 4);
    assert_eq!(answer["slot"]["unit"], "Sở Khoa học và Công nghệ");
    assert_eq!(answer["slot"]["venue"], "hall");
    assert_eq!(answer["next"]["order"], 5);
    assert_eq!(answer["next"]["unit"], "Sở Nội vụ");
    assert_eq!(answer["duration_ms"], 420_000);
    assert_eq!(answer["added_ms"], 0);
    assert_eq!(answer["remaining_ms"], Value::Null);
    assert_eq!(
        (answer["warning_ms"].as_i64(), answer["danger_ms"].as_i64()),
        (Some(60_000), Some(30_000))
    );
    let deadline = answer["deadline_ms"].as_i64().unwrap();
    assert_eq!(deadline - answer["server_ms"].as_i64().unwrap(), 420_000);

    for key in ["display", SITE, "operator"] {
        let (status, timer) = app.get("/api/timer", Some(app.key(key))).await;
        assert_eq!(
            (status, timer["deadline_ms"].as_i64()),
            (200, Some(deadline)),
            "{key}"
        );
    }
    let paused = secretary(&app, "pause", json!({})).await;
    assert_eq!(
        (paused["state"].as_str(), paused["deadline_ms"].as_i64()),
        (Some("paused"), None)
    );
    let remaining = paused["remaining_ms"].as_i64().unwrap();
    assert!((419_000..=420_000).contains(&remaining), "{remaining}");
}

#[tokio::test]
async fn impossible_commands_are_refused_with_a_reason_in_vietnamese_and_english() {
    let app = spawn_app(fast).await;
    let key = Some(app.key("secretary"));
    let (status, body) = command(&app, "pause", json!({}), key).await;
    assert_eq!(status, 409);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("Không có phần nào đang chạy") && message.contains("nothing is running"),
        "{message}"
    );

    assert_eq!(
        command(&app, "select", json!({"slot": 27}), key).await.0,
        400
    );
    assert_eq!(command(&app, "select", json!({}), key).await.0, 400);
    assert_eq!(command(&app, "adjust", json!({}), key).await.0, 400);
    assert_eq!(command(&app, "dance", json!({}), key).await.0, 404);
    let bad_json = app
        .http
        .post(app.url("/api/timer/start"))
        .bearer_auth(app.key("secretary"))
        .body("{slot: 4")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status().as_u16(), 400);
    assert_eq!(
        bad_json.json::<Value>().await.unwrap()["error"],
        "bad_request"
    );

    secretary(&app, "start", json!({"slot": 1})).await;
    let (status, body) = command(&app, "adjust", json!({"seconds": -420}), key).await;
    assert_eq!(status, 409, "{body}");
    secretary(&app, "stop", json!({})).await;
    let (status, body) = command(&app, "start", json!({"slot": 1}), key).await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().contains("reset it first"));
    secretary(&app, "reset", json!({"slot": 1})).await;
    secretary(&app, "start", json!({"slot": 1})).await;
}

#[tokio::test]
async fn a_repeated_command_id_returns_the_first_answer_and_changes_nothing() {
    let app = spawn_app(fast).await;
    secretary(&app, "start", json!({"slot": 2})).await;
    let first = secretary(
        &app,
        "adjust",
        json!({"seconds": 60, "command_id": "adj-1"}),
    )
    .await;
    let again = secretary(
        &app,
        "adjust",
        json!({"seconds": 60, "command_id": "adj-1"}),
    )
    .await;
    assert_eq!(first, again);
    let (_, now) = app.get("/api/timer", Some(app.key("secretary"))).await;
    assert_eq!(
        (now["added_ms"].as_i64(), now["rev"].as_i64()),
        (Some(60_000), first["rev"].as_i64())
    );
}

#[tokio::test]
async fn bridges_get_the_timer_on_connect_and_on_every_change() {
    let app = spawn_app(fast).await;
    let mut bridge = EchoingBridge::join(&app, SITE).await;
    let on_connect = bridge.next_of("timer").await;
    assert_eq!(on_connect["state"], "idle");

    let mut revs = Vec::new();
    for (name, body, state) in [
        ("select", json!({"slot": 17}), "ready"),
        ("start", json!({}), "running"),
        ("adjust", json!({"seconds": 60}), "running"),
        ("pause", json!({}), "paused"),
        ("resume", json!({}), "running"),
        ("next", json!({}), "ready"),
    ] {
        let answer = secretary(&app, name, body).await;
        let frame = bridge.next_of("timer").await;
        assert_eq!(frame["state"], state, "{name}");
        assert_eq!(frame["rev"], answer["rev"], "{name}");
        revs.push(frame["rev"].as_u64().unwrap());
        if name == "next" {
            assert_eq!(
                frame["slot"]["order"], 18,
                "next selects the following slot"
            );
            assert_eq!(frame["next"]["order"], 19, "and puts the one after on deck");
        }
    }
    assert_eq!(revs, (1..=6).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_bridge_countdown_matches_the_server_within_50ms_even_with_a_skewed_clock() {
    let app = spawn_app(fast).await;
    let mut client = Client::join(&app, SITE).await;
    // This bridge's clock is 3.7 s ahead; it learns the offset from `sync`.
    let skew = 3700;
    let mut offset = 0.0;
    for _ in 0..8 {
        let probe = client.recv_type("probe").await;
        let t = now_ms() + skew;
        client
            .send(json!({"type": "echo", "seq": probe["seq"], "server_ms": probe["server_ms"], "client_recv_ms": t, "client_send_ms": t}))
            .await;
        offset = client.recv_type("sync").await["offset_ms"]
            .as_f64()
            .unwrap();
    }
    secretary(&app, "start", json!({"slot": 1})).await;
    let timer = client.recv_type("timer").await;
    let deadline = timer["deadline_ms"].as_f64().unwrap();

    let before = now_ms();
    let (_, server) = app.get("/api/timer", Some(app.key("display"))).await;
    let after = now_ms();
    let server_remaining = deadline - server["server_ms"].as_f64().unwrap();
    let client_now = ((before + after) / 2 + skew) as f64;
    let client_remaining = deadline - (client_now - offset);
    let error = (client_remaining - server_remaining).abs();
    eprintln!(
        "countdown sync error on loopback: {error:.1} ms (offset {offset:.1} ms for a {skew} ms skew)"
    );
    assert!(
        error <= 50.0,
        "client {client_remaining} vs server {server_remaining}"
    );
}

#[tokio::test]
async fn the_live_feed_carries_the_timer() {
    let app = spawn_app(fast).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("display"))).await;
    let snapshot = feed.recv_type("snapshot").await;
    assert_eq!(snapshot["timer"]["state"], "idle");
    secretary(&app, "start", json!({"slot": 3})).await;
    let frame = feed.recv_type("timer").await;
    assert_eq!(frame["state"], "running");
    assert!(frame["seq"].as_u64().unwrap() > snapshot["seq"].as_u64().unwrap());
}

#[tokio::test]
async fn the_presenting_site_going_offline_pauses_its_slot_and_alerts_the_console() {
    let app = spawn_app(fast).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("secretary"))).await;
    feed.recv_type("snapshot").await;
    let bridge = EchoingBridge::join(&app, CHO_RA).await;
    app.wait_for_state(CHO_RA, "online", WAIT).await;
    let started = secretary(&app, "start", json!({"slot": 26})).await;
    assert_eq!(started["slot"]["venue"], CHO_RA);

    bridge.close().await;
    let alert = feed.recv_type("alert").await;
    assert_eq!(
        (
            alert["kind"].as_str(),
            alert["site"].as_str(),
            alert["slot"].as_u64()
        ),
        (Some("presenter_offline"), Some(CHO_RA), Some(26))
    );
    assert!(alert["message"].as_str().unwrap().contains("Xã Chợ Rã"));
    let (_, timer) = app.get("/api/timer", Some(app.key("secretary"))).await;
    assert_eq!(timer["state"], "paused");

    tokio::time::sleep(Duration::from_millis(50)).await; // the interruption lasts a little
    secretary(&app, "resume", json!({})).await;
    let (_, agenda) = app.get("/api/agenda", Some(app.key("secretary"))).await;
    let slot = &agenda["slots"][25];
    assert_eq!(slot["pauses"], 1);
    let interruption = &slot["interruptions"][0];
    assert_eq!(interruption["site"], CHO_RA);
    let length = interruption["resumed_at_ms"].as_i64().unwrap()
        - interruption["paused_at_ms"].as_i64().unwrap();
    assert!(length >= 50, "{interruption}");
}

#[tokio::test]
async fn a_site_that_is_not_presenting_can_drop_without_touching_the_timer() {
    let app = spawn_app(fast).await;
    let bridge = EchoingBridge::join(&app, CHO_RA).await;
    app.wait_for_state(CHO_RA, "online", WAIT).await;
    secretary(&app, "start", json!({"slot": 1})).await;
    bridge.close().await;
    app.wait_for_state(CHO_RA, "offline", WAIT).await;
    let (_, timer) = app.get("/api/timer", Some(app.key("secretary"))).await;
    assert_eq!(timer["state"], "running");
}

#[tokio::test]
async fn auto_stop_ends_the_slot_after_the_grace() {
    let app = spawn_app(|c| {
        fast(c);
        c.timer.at_zero = diemcau::core::timer::AtZero::AutoStop;
        c.timer.auto_stop_grace_seconds = 0;
    })
    .await;
    let mut bridge = EchoingBridge::join(&app, SITE).await;
    secretary(&app, "start", json!({"slot": 1})).await;
    secretary(&app, "adjust", json!({"seconds": -419})).await; // one second left
    let stopped = loop {
        let frame = bridge.next_of("timer").await;
        if frame["state"] == "done" {
            break frame;
        }
    };
    assert!(stopped["remaining_ms"].as_i64().unwrap() <= 0);
    let (_, agenda) = app.get("/api/agenda", Some(app.key("display"))).await;
    assert_eq!(agenda["slots"][0]["auto_stopped"], true);
}

#[tokio::test]
async fn the_agenda_lists_planned_and_actual_times_and_exports_csv_for_excel() {
    let app = spawn_app(fast).await;
    secretary(&app, "start", json!({"slot": 1})).await;
    secretary(&app, "adjust", json!({"seconds": 30})).await;
    secretary(&app, "stop", json!({})).await;

    let (status, agenda) = app.get("/api/agenda", Some(app.key(SITE))).await;
    assert_eq!(status, 200);
    let slots = agenda["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 26);
    assert_eq!(
        (slots[0]["state"].as_str(), slots[0]["planned_ms"].as_i64()),
        (Some("done"), Some(420_000))
    );
    assert_eq!(slots[0]["added_ms"], 30_000);
    assert!(slots[0]["actual_ms"].as_i64().unwrap() < 5_000);
    assert_eq!(slots[0]["overtime_ms"], 0);
    assert_eq!(slots[1]["state"], "pending");
    assert_eq!(app.get("/api/agenda", None).await.0, 401);

    let text = app.get_csv("/api/agenda.csv", app.key("display")).await;
    assert_eq!(text.lines().count(), 27);
    assert!(text.starts_with("STT,Đơn vị,Chủ đề"));
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("1,Văn phòng UBND tỉnh,")
    );
    assert!(text.lines().nth(1).unwrap().contains(",đã xong,7:00,0:30,"));
}

#[tokio::test]
async fn metrics_show_the_timer_and_still_pass_promtool() {
    let app = spawn_app(fast).await;
    secretary(&app, "start", json!({"slot": 1})).await;
    let (_, text) = app.get_text("/metrics").await;
    assert!(text.contains("diemcau_timer_state{state=\"running\"} 1"));
    assert!(text.contains("diemcau_timer_state{state=\"idle\"} 0"));
    let remaining: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("diemcau_timer_remaining_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((415.0..=420.0).contains(&remaining), "{remaining}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("diemcau_timer_slot_info{"))
            .count(),
        26
    );
    assert!(text.contains("diemcau_timer_overtime_seconds_total 0"));
    crate::metrics::promtool_check_metrics(&text);
}

#[tokio::test]
async fn a_reset_starts_a_new_attempt_and_the_earlier_one_stays_in_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), fast).await;
    secretary(&app, "start", json!({"slot": 2})).await;
    secretary(&app, "adjust", json!({"seconds": -419})).await; // one second left
    tokio::time::sleep(std::time::Duration::from_millis(1_400)).await;
    secretary(&app, "stop", json!({})).await;
    secretary(&app, "reset", json!({"slot": 2})).await;

    the_reset_attempt_is_kept(&app).await;
    // After a restart the replayed commands give the same record.
    app.stop().await;
    let app = spawn_app_in(dir.path(), fast).await;
    the_reset_attempt_is_kept(&app).await;
}

/// Slot 2 is on its second attempt; the first (overtime under a second) is in the
/// agenda, its CSV, the report's totals and the overtime metric alike.
async fn the_reset_attempt_is_kept(app: &TestApp) {
    let (_, agenda) = app.get("/api/agenda", Some(app.key("secretary"))).await;
    let slot = &agenda["slots"][1];
    assert_eq!(
        (slot["attempt"].as_u64(), slot["state"].as_str()),
        (Some(2), Some("ready")),
        "{slot}"
    );
    let earlier = &slot["earlier_attempts"][0];
    assert_eq!(earlier["number"], 1);
    let over = earlier["overtime_ms"].as_i64().unwrap();
    assert!((300..1_000).contains(&over), "{earlier}");
    let (_, report) = app.get("/api/report", Some(app.key("secretary"))).await;
    assert_eq!(
        report["totals"]["overtime_ms"].as_i64(),
        Some(over),
        "the report keeps it"
    );
    assert_eq!(report["totals"]["attempts_reset"], 1);
    let (_, text) = app.get_text("/metrics").await;
    let metric: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("diemcau_timer_overtime_seconds_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (metric - over as f64 / 1000.0).abs() < 0.002,
        "metric {metric} vs report {over} ms"
    );
    let csv = app.get_csv("/api/agenda.csv", app.key("secretary")).await;
    let rows: Vec<&str> = csv.lines().filter(|l| l.starts_with("2,")).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[0].contains(",đã đặt lại lúc ") && rows[0].ends_with(",1"),
        "{}",
        rows[0]
    );
    assert!(rows[1].ends_with(",2"), "{}", rows[1]);
}

#[tokio::test]
async fn an_agenda_edited_to_put_stored_timings_under_another_unit_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = spawn_app_in(&data, fast).await;
    secretary(&app, "start", json!({"slot": 3})).await;
    secretary(&app, "stop", json!({})).await;
    app.stop().await;

    let shipped = include_str!("../../config/agenda.csv");
    let lines: Vec<&str> = shipped.lines().collect();
    let start_with = |csv: String| build_on(&data, with_agenda(dir.path(), &csv));
    // Rows 3 and 4 swapped (the units, the order numbers kept): refused, naming row 3.
    let swap = |line: &str, order: &str| format!("{order}{}", &line[line.find(',').unwrap()..]);
    let mut swapped = lines
        .clone()
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    swapped[3] = swap(lines[4], "3");
    swapped[4] = swap(lines[3], "4");
    let refused = match start_with(swapped.join("\n")).await {
        Ok(_) => panic!("a swapped agenda must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("row 3 is now “Sở Khoa học và Công nghệ” but its stored timings are “Sở Giáo dục và Đào tạo”'s")
            && refused.contains("Put those rows back"),
        "{refused}"
    );
    // A topic corrected, nothing moved: it starts, and slot 3 keeps its timing.
    let mut corrected = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    corrected[3] = corrected[3].replacen("Đổi mới", "Đổi mới căn bản", 1);
    assert_ne!(corrected[3], lines[3]);
    let app = start_with(corrected.join("\n"))
        .await
        .expect("a fixed typo starts");
    let reports = app.state().timekeeper.reports();
    assert_eq!(reports[2].state, diemcau::core::timer::SlotState::Done);
}

#[test]
fn every_message_that_names_a_button_names_one_the_console_has() {
    use diemcau::core::timer::TimerError;
    let console = include_str!("../../assets/console.html");
    let script = include_str!("../../assets/console.js");
    let messages = [
        TimerError::PausedUseResume(1).to_string(),
        TimerError::StopFirst(1).to_string(),
        TimerError::SlotDone(1).to_string(),
        // The alert when the presenting site drops (services/timekeeper.rs).
        include_str!("../../src/services/timekeeper.rs").to_string(),
    ];
    let mut named = 0;
    for message in &messages {
        for (at, _) in message.match_indices("bấm “") {
            let rest = &message[at + "bấm “".len()..];
            let label = &rest[..rest.find('”').expect("a closing quote")];
            assert!(
                console.contains(label)
                    || script.contains(&format!("\"▶ {label}\""))
                    || script.contains(&format!("\"⏸ {label}\"")),
                "“{label}” (in “{message:.80}”) is no button's label"
            );
            named += 1;
        }
    }
    assert!(named >= 4, "{named}");
}

#[tokio::test]
async fn undo_brings_back_a_stopped_slot_exactly_is_recorded_and_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), fast).await;
    let running = secretary(&app, "start", json!({"slot": 7})).await;
    let stopped = secretary(&app, "stop", json!({})).await;
    assert!(
        stopped["undo_until_ms"].as_i64().unwrap() > now_ms() + 9_000,
        "{stopped}"
    );
    let back = secretary(&app, "undo", json!({})).await;
    assert_eq!(back["state"], "running");
    assert_eq!(
        back["deadline_ms"], running["deadline_ms"],
        "as if it had never stopped"
    );
    let (status, again) = command(&app, "undo", json!({}), Some(app.key("secretary"))).await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("Không còn gì để hoàn tác")
    );
    assert_eq!(status_of(&app, "undo", json!({}), "display").await, 403);
    app.stop().await;
    let app = spawn_app_in(dir.path(), fast).await;
    let (_, timer) = app.get("/api/timer", Some(app.key("secretary"))).await;
    assert_eq!(
        (timer["state"].as_str(), timer["slot"]["order"].as_u64()),
        (Some("running"), Some(7))
    );
    assert_eq!(
        timer["deadline_ms"], running["deadline_ms"],
        "the replay agrees"
    );
}

#[tokio::test]
async fn a_slot_changed_on_the_day_is_recorded_and_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), fast).await;
    let edit = json!({"slot": 5, "unit": "Sở Nội vụ (ông Phó Giám đốc thay)", "seconds": 300, "venue": SITE});
    let answer = secretary(&app, "edit", edit).await;
    assert_eq!(
        answer["next"]["unit"], "Văn phòng UBND tỉnh",
        "not selected by the edit"
    );
    for (body, code) in [
        (json!({"slot": 5, "venue": "99999"}), 400),
        (json!({"slot": 5, "unit": " "}), 400),
        (json!({"slot": 5, "seconds": -5}), 400),
        (json!({"unit": "x"}), 400),
    ] {
        assert_eq!(
            status_of(&app, "edit", body.clone(), "secretary").await,
            code,
            "{body}"
        );
    }
    assert_eq!(
        status_of(&app, "edit", json!({"slot": 5, "unit": "x"}), "operator").await,
        403
    );
    let started = secretary(&app, "start", json!({"slot": 5})).await;
    assert_eq!(started["slot"]["unit"], "Sở Nội vụ (ông Phó Giám đốc thay)");
    assert_eq!(started["slot"]["venue"], SITE);
    assert_eq!(started["duration_ms"], 300_000);
    secretary(&app, "stop", json!({})).await;
    let (status, refused) = command(
        &app,
        "edit",
        json!({"slot": 5, "unit": "Sở khác"}),
        Some(app.key("secretary")),
    )
    .await;
    assert_eq!(status, 409, "a finished slot keeps its record: {refused}");
    app.stop().await;
    // The edit is replayed before the timings it explains: the service starts, slot 5 as changed.
    let app = spawn_app_in(dir.path(), fast).await;
    let (_, agenda) = app.get("/api/agenda", Some(app.key("secretary"))).await;
    let five = &agenda["slots"][4];
    assert_eq!(
        (
            five["unit"].as_str(),
            five["planned_ms"].as_i64(),
            five["state"].as_str()
        ),
        (
            Some("Sở Nội vụ (ông Phó Giám đốc thay)"),
            Some(300_000),
            Some("done")
        ),
        "{five}"
    );
}

#[tokio::test]
async fn slots_moved_inserted_and_withdrawn_on_the_day_keep_their_records_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), fast).await;
    secretary(&app, "start", json!({"slot": 3})).await;
    secretary(&app, "stop", json!({})).await;
    // Slot 3 (done) moves to the end; a late addition comes first; slot 10 is withdrawn.
    secretary(&app, "move", json!({"slot": 3, "to": 26})).await;
    secretary(
        &app,
        "insert",
        json!({"after": 0, "unit": "Lãnh đạo tỉnh phát biểu khai mạc", "seconds": 600}),
    )
    .await;
    let answer = secretary(&app, "withdraw", json!({"slot": 10})).await;
    assert_eq!(answer["rev"].as_u64().unwrap(), 5);
    let (status, refused) = command(
        &app,
        "withdraw",
        json!({"slot": 26}),
        Some(app.key("secretary")),
    )
    .await;
    assert_eq!(status, 409, "the moved slot 3, now last, ran: {refused}");
    assert_eq!(
        status_of(&app, "move", json!({"slot": 1, "to": 0}), "secretary").await,
        400
    );
    assert_eq!(
        status_of(&app, "insert", json!({"after": 1}), "secretary").await,
        400
    );

    let check = |agenda: &serde_json::Value| {
        let slots = agenda["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 26);
        assert_eq!(
            (
                slots[0]["id"].as_str(),
                slots[0]["unit"].as_str(),
                slots[0]["planned_ms"].as_i64()
            ),
            (
                Some("them-1"),
                Some("Lãnh đạo tỉnh phát biểu khai mạc"),
                Some(600_000)
            )
        );
        let last = &slots[25];
        assert_eq!(
            (
                last["id"].as_str(),
                last["unit"].as_str(),
                last["state"].as_str(),
                last["order"].as_u64()
            ),
            (
                Some("3"),
                Some("Sở Giáo dục và Đào tạo"),
                Some("done"),
                Some(26)
            ),
            "{last}"
        );
        assert!(
            slots.iter().all(|s| s["id"] != "10"),
            "slot 10 is withdrawn"
        );
    };
    let (_, agenda) = app.get("/api/agenda", Some(app.key("secretary"))).await;
    check(&agenda);
    app.stop().await;
    let app = spawn_app_in(dir.path(), fast).await;
    let (_, agenda) = app.get("/api/agenda", Some(app.key("secretary"))).await;
    check(&agenda);
}

#[tokio::test]
async fn an_agenda_reordered_with_ids_keeps_each_timing_on_its_unit_and_a_conflict_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The shipped agenda with an `id` column: r1 … r26.
    let shipped: Vec<String> = include_str!("../../config/agenda.csv")
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                format!("{line},id")
            } else {
                format!("{line},r{i}")
            }
        })
        .collect();
    let load = |rows: &[String]| with_agenda(dir.path(), &rows.join("\n"));
    let build = |loaded| build_on(&data, loaded);
    // Run 1: slot 3 (r3, Giáo dục) runs and ends; "next" selects slot 4 (r4, Khoa học), which runs.
    let mut loaded = load(&shipped);
    fast(&mut loaded.config);
    let app = build(loaded).await.expect("starts");
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let keeper = &state.timekeeper;
    let order = |slot| diemcau::core::timer::Command::Start { slot: Some(slot) };
    keeper.command(order(3), None, "secretary").await.unwrap();
    keeper
        .command(diemcau::core::timer::Command::Next, None, "secretary")
        .await
        .unwrap();
    keeper
        .command(
            diemcau::core::timer::Command::Start { slot: None },
            None,
            "secretary",
        )
        .await
        .unwrap();
    drop(state);
    let _ = tx.send(());
    server.await.unwrap().unwrap();

    // Rows 3 and 4 swapped, each with its id: the timings follow the ids.
    let mut swapped = shipped.clone();
    let renumber = |line: &str, order: &str| format!("{order}{}", &line[line.find(',').unwrap()..]);
    swapped[3] = renumber(&shipped[4], "3");
    swapped[4] = renumber(&shipped[3], "4");
    let app = build(load(&swapped)).await.expect("ids kept: it starts");
    let reports = app.state().timekeeper.reports();
    assert_eq!(
        (reports[2].id.as_str(), reports[2].unit.as_str()),
        ("r4", "Sở Khoa học và Công nghệ")
    );
    assert_eq!(
        reports[2].state,
        diemcau::core::timer::SlotState::Running,
        "r4 runs on, now 3rd"
    );
    assert_eq!(
        (reports[3].id.as_str(), reports[3].state),
        ("r3", diemcau::core::timer::SlotState::Done)
    );
    assert_eq!(reports[3].unit, "Sở Giáo dục và Đào tạo");
    drop(app);

    // The units swapped but not the ids: r3 would show Khoa học's row with Giáo dục's timing.
    let mut conflicting = shipped.clone();
    let (third, fourth) = (shipped[3].replace(",r3", ""), shipped[4].replace(",r4", ""));
    conflicting[3] = format!("{},r3", renumber(&fourth, "3"));
    conflicting[4] = format!("{},r4", renumber(&third, "4"));
    let refused = match build(load(&conflicting)).await {
        Ok(_) => panic!("units moved under the same ids must not start"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("“Sở Giáo dục và Đào tạo”'s"), "{refused}");
}

#[tokio::test]
async fn the_hall_screen_and_the_note_are_stored_and_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), fast).await;
    secretary(&app, "screen", json!({"show": "clock"})).await;
    secretary(&app, "note", json!({"text": "Xin kết thúc"})).await;
    assert_eq!(
        status_of(&app, "screen", json!({"show": "blank"}), "secretary").await,
        400
    );
    let (status, long) = command(
        &app,
        "note",
        json!({"text": "x".repeat(121)}),
        Some(app.key("secretary")),
    )
    .await;
    assert_eq!(status, 400, "{long}");
    assert_eq!(
        status_of(&app, "note", json!({"text": "hi"}), "display").await,
        403
    );
    app.stop().await;
    let app = spawn_app_in(dir.path(), fast).await;
    let (_, timer) = app.get("/api/timer", Some(app.key("display"))).await;
    assert_eq!(
        (timer["screen"].as_str(), timer["note"].as_str()),
        (Some("clock"), Some("Xin kết thúc"))
    );
}

#[tokio::test]
async fn while_nobody_presses_a_key_the_pages_hear_the_programme_fall_behind() {
    let began = chrono::Utc::now() - chrono::Duration::minutes(10);
    let app = spawn_app(|c| c.timer.starts_at = Some(began.to_rfc3339())).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("display"))).await;
    let first = feed.recv_type("snapshot").await;
    let late = first["timer"]["programme"]["delay_ms"].as_i64().unwrap();
    assert!(
        (595_000..=605_000).contains(&late),
        "ten minutes late already: {late}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.state.timekeeper.refresh_programme(); // what the 15-second task does
    let later = feed.recv_type("timer").await["programme"]["delay_ms"]
        .as_i64()
        .unwrap();
    assert!(later >= late + 250, "{late} then {later}");
    // While a slot runs, its deadline says it all: no refresh is sent.
    secretary(&app, "start", json!({})).await;
    feed.recv_type("timer").await;
    app.state.timekeeper.refresh_programme();
    assert!(
        feed.recv_any(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
}

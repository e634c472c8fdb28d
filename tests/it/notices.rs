//! Roll call and messages: sent, delivered, acknowledged, counted.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_roll_call_reaches_every_bridge_and_the_wall_counts_confirmations() {
    let app = spawn_app(fast).await;
    let mut present = Client::join(&app, SITE).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    feed.recv_type("snapshot").await;

    let (status, answer) = app
        .post(
            "/api/rollcall",
            Some(app.key("operator")),
            json!({"deadline_seconds": 120}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delivered_now"], 1);
    let roll_call = present.recv_type("roll_call").await;
    let id = roll_call["id"].clone();
    assert!(roll_call["deadline_ms"].as_i64().unwrap() > now_ms() + 100_000);
    assert_eq!(
        feed.recv_type("notice").await["notice"]["kind"],
        "roll_call"
    );

    present.send(json!({"type": "ack", "ref": id})).await;
    let ack = feed.recv_type("ack").await;
    assert_eq!((ack["site"].as_str(), &ack["notice"]), (Some(SITE), &id));

    // A site that connects later still gets the roll call.
    let mut late = Client::join(&app, OTHER_SITE).await;
    assert_eq!(late.recv_type("roll_call").await["id"], id);

    let (_, summary) = app.get("/api/rollcall", Some(app.key("operator"))).await;
    let roll_call = &summary["roll_call"];
    assert_eq!(roll_call["recipients"], 92);
    assert_eq!(roll_call["confirmed"].as_array().unwrap().len(), 1);
    assert_eq!(roll_call["confirmed"][0]["site"], SITE);
    assert_eq!(roll_call["missing"].as_array().unwrap().len(), 91);
    assert_eq!(
        app.post("/api/rollcall", Some(app.key("secretary")), json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        app.post("/api/rollcall", Some(app.key(SITE)), json!({}))
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn a_message_to_a_group_is_delivered_acknowledged_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), fast).await;
    let mut phuong = Client::join(&app, SITE).await; // Phường Phan Đình Phùng
    let (status, answer) = app.post("/api/messages", Some(app.key("secretary")),
        json!({"text": "Các phường bật micro chuẩn bị phát biểu", "level": "warning", "to": "phuong"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["notice"]["recipients"], 15);
    let message = phuong.recv_type("message").await;
    assert_eq!(
        (message["text"].as_str(), message["level"].as_str()),
        (
            Some("Các phường bật micro chuẩn bị phát biểu"),
            Some("warning")
        )
    );
    phuong
        .send(json!({"type": "ack", "ref": message["id"]}))
        .await;
    phuong
        .send(json!({"type": "ack", "ref": message["id"]}))
        .await; // twice: counted once

    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, all) = app.get("/api/messages", Some(app.key("operator"))).await;
        let notice = &all["notices"][0];
        if notice["confirmed"].as_array().unwrap().len() == 1 {
            assert_eq!(notice["missing"].as_array().unwrap().len(), 14);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ack not counted: {notice}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for (body, why) in [
        (json!({"text": ""}), "empty"),
        (json!({"text": "x", "to": "nowhere"}), "bad target"),
        (json!({"text": "x", "level": "loud"}), "bad level"),
        (json!({"text": "x", "to": "district:Không có"}), "no site"),
    ] {
        assert_eq!(
            app.post("/api/messages", Some(app.key("operator")), body)
                .await
                .0,
            400,
            "{why}"
        );
    }
    assert_eq!(
        app.post(
            "/api/messages",
            Some(app.key("display")),
            json!({"text": "x"})
        )
        .await
        .0,
        403
    );
    app.stop().await;

    let again = spawn_app_in(dir.path(), fast).await;
    let (_, all) = again
        .get("/api/messages", Some(again.key("operator")))
        .await;
    assert_eq!(
        all["notices"][0]["confirmed"][0]["site"], SITE,
        "confirmations are stored"
    );
    let mut other = Client::join(&again, "05710").await; // another phường, never confirmed
    assert_eq!(
        other.recv_type("message").await["text"],
        "Các phường bật micro chuẩn bị phát biểu"
    );
}

#[tokio::test]
async fn the_agent_prints_roll_calls_and_messages_and_confirms_with_confirm() {
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;
    let app = spawn_app(fast).await;
    let mut agent = site_agent(&app, &app.url(""))
        .arg("--confirm")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(agent.stdout.take().unwrap()).lines();
    app.wait_for_state(SITE, "online", WAIT).await;
    app.post(
        "/api/rollcall",
        Some(app.key("operator")),
        json!({"deadline_seconds": 120}),
    )
    .await;
    app.post(
        "/api/messages",
        Some(app.key("operator")),
        json!({"text": "Xin kiểm tra micro", "level": "urgent", "to": "all"}),
    )
    .await;
    let mut printed = Vec::new();
    let wanted = |printed: &Vec<String>| {
        printed.iter().any(|l| l.contains("ĐIỂM DANH"))
            && printed
                .iter()
                .any(|l| l.contains("TIN NHẮN") && l.contains("Xin kiểm tra micro"))
            && printed.iter().filter(|l| l.contains("đã xác nhận")).count() == 2
    };
    while !wanted(&printed) {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the agent prints in time")
            .unwrap()
            .expect("still running");
        printed.push(line);
    }
    let (_, summary) = app.get("/api/rollcall", Some(app.key("operator"))).await;
    assert_eq!(
        summary["roll_call"]["confirmed"][0]["site"], SITE,
        "{summary}"
    );
}

#[tokio::test]
async fn an_alert_marked_on_the_wall_is_kept_with_who_and_when_across_a_restart_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir.path(), |config| {
        config.protocol.max_dismissals_per_minute = 3
    })
    .await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    feed.recv_type("snapshot").await;
    let operator = Some(app.key("operator"));
    let good = json!({"alert": "offline:05443:1764650000000", "site": SITE, "text": "Phường Phan Đình Phùng mất kết nối", "name": "Lan"});
    let (status, answer) = app
        .post("/api/alerts/dismissals", operator, good.clone())
        .await;
    assert_eq!(status, 200, "{answer}");
    let live = feed.recv_type("dismissal").await;
    assert_eq!(
        (live["name"].as_str(), live["by"].as_str()),
        (Some("Lan"), Some("operator"))
    );
    assert_eq!(live["alert"], good["alert"]);

    // Refused whole, nothing stored: no name, a key with other characters, text over
    // its cap, a site not in the roster, the display's key.
    for (body, key, code) in [
        (
            json!({"alert": "offline:05443:1", "name": " "}),
            "operator",
            400,
        ),
        (json!({"alert": "<b>x</b>", "name": "Lan"}), "operator", 400),
        (
            json!({"alert": "a", "name": "Lan", "text": "x".repeat(301)}),
            "operator",
            400,
        ),
        (
            json!({"alert": "a", "name": "Lan", "site": "99999"}),
            "operator",
            400,
        ),
        (json!({"alert": "a", "name": "Lan"}), "display", 403),
    ] {
        let (status, answer) = app
            .post("/api/alerts/dismissals", Some(app.key(key)), body.clone())
            .await;
        assert_eq!(status, code, "{body}: {answer}");
    }
    // One key marks a bounded number a minute.
    for _ in 0..2 {
        assert_eq!(
            app.post("/api/alerts/dismissals", operator, good.clone())
                .await
                .0,
            200
        );
    }
    let (status, answer) = app
        .post("/api/alerts/dismissals", operator, good.clone())
        .await;
    assert_eq!(status, 429, "{answer}");

    app.stop().await;
    let app = spawn_app_in(dir.path(), |_| {}).await;
    let (_, stored) = app
        .get("/api/alerts/dismissals", Some(app.key("operator")))
        .await;
    let stored = stored["dismissals"].as_array().unwrap();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|d| d["name"] == "Lan" && d["site"] == SITE)
    );
    assert!((stored[0]["at_ms"].as_i64().unwrap() - now_ms()).abs() < 10_000);
}

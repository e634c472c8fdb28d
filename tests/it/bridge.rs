//! Protocol v1 on `/ws/bridge`, liveness as the operator sees it through the API.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_site_that_connects_is_online_and_offline_within_100ms_of_closing() {
    let app = spawn_app(fast).await;
    assert_eq!(app.state_of(SITE).await, "never_seen");

    let bridge = EchoingBridge::join(&app, SITE).await;
    let site = app.wait_for_state(SITE, "online", WAIT).await;
    assert_eq!(site["connected"], true);
    assert_eq!(site["agent"], "agent");

    let closing = Instant::now();
    bridge.close().await;
    app.wait_for_state(SITE, "offline", Duration::from_millis(100))
        .await;
    let took = closing.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "offline {took:?} after the close"
    );
}

#[tokio::test]
async fn a_silent_site_turns_degraded_then_offline_at_the_configured_thresholds() {
    let app = spawn_app(fast).await;
    let mut client = Client::join(&app, SITE).await;
    // The client never answers: the server only hears the hello.

    app.wait_for_state(SITE, "degraded", WAIT).await;
    let code = client.expect_close().await;
    assert_eq!(
        code, 4408,
        "a site silent past offline_after is closed so it reconnects"
    );
    let site = app.wait_for_state(SITE, "offline", WAIT).await;

    let transitions = site["transitions"].as_array().unwrap();
    let at = |i: usize| transitions[i]["at_ms"].as_i64().unwrap();
    assert_eq!(transitions[0]["to"], "offline");
    assert_eq!(transitions[1]["to"], "degraded");
    assert_eq!(transitions[2]["to"], "online");
    assert_eq!(
        at(1) - at(2),
        300,
        "degraded exactly degraded_after_ms after the last frame"
    );
    assert_eq!(
        at(0) - at(2),
        700,
        "offline exactly offline_after_ms after the last frame"
    );
    for t in &transitions[..2] {
        let lag = t["detected_at_ms"].as_i64().unwrap() - t["at_ms"].as_i64().unwrap();
        assert!(
            (0..50).contains(&lag),
            "detected {lag} ms after it became true"
        );
    }
}

#[tokio::test]
async fn a_degraded_site_is_online_again_only_after_three_timely_echoes() {
    let app = spawn_app(|c| {
        fast(c);
        c.liveness.offline_after_ms = 10_000;
    })
    .await;
    let mut client = Client::join(&app, SITE).await;
    app.wait_for_state(SITE, "degraded", WAIT).await;

    for echo in 1..=2 {
        client.echo_next_probe().await;
        client.recv_type("sync").await; // the server has processed this echo
        assert_eq!(
            app.state_of(SITE).await,
            "degraded",
            "after {echo} echo(es)"
        );
    }
    client.echo_next_probe().await;
    client.recv_type("sync").await;
    let site = app.site(SITE).await;
    assert_eq!(site["state"], "online");
    assert_eq!(site["transitions"][0]["reason"], "3 timely echoes");
}

#[tokio::test]
async fn probes_measure_rtt_and_sync_reports_the_client_clock_offset() {
    let app = spawn_app(fast).await;
    let mut client = Client::join(&app, SITE).await;
    let mut last_sync = json!(null);
    for _ in 0..4 {
        let probe = client.recv_type("probe").await;
        // This client's clock runs 5 s ahead of the server's.
        let ahead = now_ms() + 5000;
        client
            .send(
                json!({"type": "echo", "seq": probe["seq"], "server_ms": probe["server_ms"],
                         "client_recv_ms": ahead, "client_send_ms": ahead}),
            )
            .await;
        last_sync = client.recv_type("sync").await;
    }
    let offset = last_sync["offset_ms"].as_f64().unwrap();
    assert!((offset - 5000.0).abs() < 20.0, "offset {offset}");
    assert!(last_sync["uncertainty_ms"].as_f64().unwrap() < 20.0);
    let site = app.site(SITE).await;
    assert!(site["rtt_ms"].as_f64().unwrap() < 50.0, "{site}");
    assert!(site["probes"].as_u64().unwrap() >= 4);
    assert!(site["jitter_ms"].is_number());
}

#[tokio::test]
async fn bad_hellos_get_their_close_codes_and_other_sites_keep_being_served() {
    let app = spawn_app(|c| {
        fast(c);
        c.protocol.hello_timeout_ms = 200;
    })
    .await;
    let healthy = EchoingBridge::join(&app, OTHER_SITE).await;
    app.wait_for_state(OTHER_SITE, "online", WAIT).await;

    let cases: Vec<(&str, serde_json::Value, u16)> = vec![
        ("not JSON", json!("garbage"), 4400),
        (
            "echo before hello",
            json!({"type": "echo", "seq": 1, "server_ms": 1, "client_recv_ms": 1, "client_send_ms": 1}),
            4400,
        ),
        (
            "hello without agent",
            json!({"type": "hello", "site": SITE, "key": app.key(SITE)}),
            4400,
        ),
        (
            "wrong key",
            json!({"type": "hello", "site": SITE, "key": "0000", "agent": "agent", "version": "1"}),
            4401,
        ),
        (
            "another site's key",
            json!({"type": "hello", "site": SITE, "key": app.key(OTHER_SITE), "agent": "agent", "version": "1"}),
            4401,
        ),
        (
            "a role key",
            json!({"type": "hello", "site": SITE, "key": app.key("admin"), "agent": "agent", "version": "1"}),
            4401,
        ),
        (
            "unknown site",
            json!({"type": "hello", "site": "99999", "key": app.key(SITE), "agent": "agent", "version": "1"}),
            4404,
        ),
        (
            "malformed site id",
            json!({"type": "hello", "site": "phan-dinh-phung", "key": app.key(SITE), "agent": "agent", "version": "1"}),
            4404,
        ),
    ];
    for (case, frame, expected) in cases {
        let mut client = Client::connect(&app, "/ws/bridge").await;
        match frame.as_str() {
            Some(text) => client.send_text(text).await,
            None => client.send(frame).await,
        }
        let error = client.expect_error().await;
        assert!(error["message"].is_string(), "{case}: {error}");
        assert_eq!(client.expect_close().await, expected, "{case}");
    }

    let mut mute = Client::connect(&app, "/ws/bridge").await;
    assert_eq!(
        mute.expect_close().await,
        4400,
        "no hello within the hello timeout"
    );

    let mut oversized = Client::connect(&app, "/ws/bridge").await;
    oversized.send_text(&"x".repeat(70 * 1024)).await;
    assert_eq!(oversized.expect_close().await, 4413);

    assert_eq!(
        app.state_of(SITE).await,
        "never_seen",
        "no bad hello made the site appear"
    );
    let probes_before = app.site(OTHER_SITE).await["probes"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT;
    while app.site(OTHER_SITE).await["probes"].as_u64().unwrap() < probes_before + 2 {
        assert!(
            Instant::now() < deadline,
            "the healthy site is no longer probed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.state_of(OTHER_SITE).await, "online");
    healthy.close().await;
}

#[tokio::test]
async fn bad_frames_after_hello_get_error_frames_and_the_connection_stays() {
    let app = spawn_app(fast).await;
    let mut client = Client::join(&app, SITE).await;

    client.send_text("{not json").await;
    assert_eq!(client.expect_error().await["code"], "bad_json");
    client.send(json!({"type": "dance"})).await;
    assert_eq!(client.expect_error().await["code"], "unknown_type");
    client.send(json!({"type": "echo", "seq": "one"})).await;
    assert_eq!(client.expect_error().await["code"], "bad_frame");
    client.send_binary(vec![0; 16]).await;
    assert_eq!(client.expect_error().await["code"], "binary_not_allowed");
    client.send(json!({"type": "hello", "site": SITE, "key": app.key(SITE), "agent": "agent", "version": "1"})).await;
    assert_eq!(client.expect_error().await["code"], "duplicate_hello");

    client.echo_next_probe().await;
    client.recv_type("sync").await;
    assert_eq!(app.state_of(SITE).await, "online");

    client.send_text(&"y".repeat(65 * 1024)).await;
    assert_eq!(
        client.expect_close().await,
        4413,
        "a frame over 64 KiB closes"
    );
    app.wait_for_state(SITE, "offline", WAIT).await;
}

#[tokio::test]
async fn repeated_bad_frames_close_the_connection() {
    let app = spawn_app(|c| {
        fast(c);
        c.protocol.max_bad_frames = 3;
    })
    .await;
    let mut client = Client::join(&app, SITE).await;
    for _ in 0..4 {
        client.send_text("nonsense").await;
    }
    assert_eq!(client.expect_close().await, 4400);
}

#[tokio::test]
async fn a_newer_connection_of_the_same_site_replaces_the_older_with_4409() {
    let app = spawn_app(fast).await;
    let mut first = Client::join(&app, SITE).await;
    let second = EchoingBridge::join(&app, SITE).await;

    assert_eq!(first.expect_close().await, 4409);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let site = app.site(SITE).await;
    assert_eq!(
        site["state"], "online",
        "the replaced socket does not take the site offline"
    );
    assert_eq!(site["reconnects"], 1);
    let transitions = site["transitions"].as_array().unwrap();
    assert!(
        transitions.iter().all(|t| t["to"] != "offline"),
        "{transitions:?}"
    );
    second.close().await;
}

#[tokio::test]
async fn a_flooding_site_is_closed_with_4429() {
    let app = spawn_app(|c| {
        fast(c);
        c.protocol.max_frames_per_second = 20;
    })
    .await;
    let mut client = Client::join(&app, SITE).await;
    for seq in 0..100 {
        client
            .send(json!({"type": "heartbeat", "seq": seq, "client_ms": now_ms()}))
            .await;
    }
    assert_eq!(client.expect_close().await, 4429);
}

#[tokio::test]
async fn heartbeats_keep_a_site_from_turning_degraded() {
    let app = spawn_app(fast).await;
    let mut client = Client::join(&app, SITE).await;
    // Heartbeats every 100 ms for a full second: three times degraded_after_ms.
    for seq in 0..10 {
        client.send(json!({"type": "heartbeat", "seq": seq, "client_ms": now_ms(), "media": {"fps": 25}})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let site = app.site(SITE).await;
    assert_eq!(site["state"], "online", "{site}");
}

#[tokio::test]
async fn shutdown_closes_every_bridge_with_1001() {
    let app = spawn_app(fast).await;
    let bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(bridge.closed_by_server().await, Some(1001));
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_site_that_never_reads_is_dropped_and_the_others_get_every_timer_change() {
    let app = spawn_app(|c| {
        steady(c);
        c.protocol.send_queue_frames = 8;
        c.protocol.max_notices_per_minute = 10_000; // messages until the site chokes
    })
    .await;
    let mut healthy = EchoingBridge::join(&app, OTHER_SITE).await;
    // A bridge PC that hangs: a tiny receive window, its hello sent, nothing read.
    let mut stuck = frozen_client(app.addr, "/ws/bridge").await;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let hello = json!({"type": "hello", "site": SITE, "key": app.key(SITE), "agent": "agent", "version": "stuck"});
    stuck.send(Message::text(hello.to_string())).await.unwrap();
    app.wait_for_state(SITE, "online", WAIT).await;
    // It still sends heartbeats: only its not reading can end it.
    let (mut sending, _never_read) = stuck.split();
    let heartbeats = tokio::spawn(async move {
        for seq in 0.. {
            let beat = json!({"type": "heartbeat", "seq": seq, "client_ms": now_ms()});
            if sending.send(Message::text(beat.to_string())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // Long messages to every site, then timer changes, until the stuck site's buffers
    // and queue are full.
    app.start_slot(1).await;
    let long = "Đề nghị các điểm cầu kiểm tra âm thanh. ".repeat(24);
    let mut last_rev = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.state_of(SITE).await != "offline" {
        assert!(Instant::now() < deadline, "the stuck site is still held");
        for _ in 0..10 {
            let (status, answer) = app
                .post(
                    "/api/messages",
                    Some(app.key("operator")),
                    json!({"text": long, "level": "info", "to": "all"}),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
        }
        let (status, answer) = app
            .post(
                "/api/timer/adjust",
                Some(app.key("secretary")),
                json!({"seconds": 1}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        last_rev = answer["rev"].as_u64().unwrap();
    }
    let site = app.site(SITE).await;
    let reason = site["transitions"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("not reading"), "{site}");
    // The healthy site got every change, up to the last.
    loop {
        let timer = healthy.next_of("timer").await;
        if timer["rev"].as_u64().unwrap() >= last_rev {
            break;
        }
    }
    assert_eq!(app.state_of(OTHER_SITE).await, "online");
    heartbeats.abort();
    healthy.close().await;
}

#[tokio::test]
async fn a_new_connection_learns_its_clock_from_four_quick_probes_then_the_interval() {
    let app = spawn_app(|_| {}).await; // the real 2 s probe interval
    let mut client = Client::join(&app, SITE).await;
    let joined = Instant::now();
    for _ in 0..4 {
        client.echo_next_probe().await;
    }
    assert!(
        joined.elapsed() < Duration::from_millis(1200),
        "four probes within a second: {:?}",
        joined.elapsed()
    );
    let fourth = Instant::now();
    // The fourth echo's estimate rides with the next probe.
    let sync = client.recv_type("sync").await;
    assert!(sync["uncertainty_ms"].as_f64().unwrap() < 50.0, "{sync}");
    client.recv_type("probe").await;
    assert!(
        fourth.elapsed() >= Duration::from_millis(1500),
        "then every 2 s: {:?}",
        fourth.elapsed()
    );
}

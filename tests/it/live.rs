//! The live feed `/ws/live`: snapshot, then sequenced changes.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn the_live_feed_sends_a_snapshot_then_sequenced_changes() {
    let app = spawn_app(fast).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    let snapshot = feed.recv_type("snapshot").await;
    assert_eq!(snapshot["sites"].as_array().unwrap().len(), 92);
    assert_eq!(snapshot["status"]["never_seen"], 92);
    let mut seq = snapshot["seq"].as_u64().unwrap();

    let bridge = EchoingBridge::join(&app, SITE).await;
    let change = loop {
        let frame = feed.recv().await;
        seq += 1;
        assert_eq!(
            frame["seq"].as_u64(),
            Some(seq),
            "no gap, no repeat: {frame}"
        );
        if frame["type"] == "site" {
            break frame;
        }
    };
    assert_eq!(change["site"]["id"], SITE);
    assert_eq!(change["site"]["state"], "online");
    assert_eq!(change["transition"]["from"], "never_seen");

    bridge.close().await;
    let change = loop {
        let frame = feed.recv().await;
        seq += 1;
        assert_eq!(frame["seq"].as_u64(), Some(seq));
        if frame["type"] == "site" {
            break frame;
        }
    };
    assert_eq!(change["site"]["state"], "offline");
}

#[tokio::test]
async fn link_figures_reach_the_live_feed() {
    let app = spawn_app(fast).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    feed.recv_type("snapshot").await;
    let _bridge = EchoingBridge::join(&app, SITE).await;
    let links = loop {
        let frame = feed.recv_type("links").await;
        if frame["links"][0]["rtt_ms"].is_number() {
            break frame;
        }
    };
    assert_eq!(links["links"][0]["id"], SITE);
}

#[tokio::test]
async fn a_page_that_asks_for_resync_gets_a_fresh_snapshot() {
    let app = spawn_app(fast).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("secretary"))).await;
    feed.recv_type("snapshot").await;
    let bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    feed.send(json!({"type": "resync"})).await;
    let snapshot = feed.recv_type("snapshot").await;
    let site = snapshot["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .unwrap()
        .clone();
    assert_eq!(site["state"], "online");
    bridge.close().await;
}

#[tokio::test]
async fn the_display_key_sees_no_sites_and_site_keys_are_refused() {
    let app = spawn_app(fast).await;
    let mut display = Client::connect(&app, &format!("/ws/live?key={}", app.key("display"))).await;
    let snapshot = display.recv_type("snapshot").await;
    assert!(snapshot.get("sites").is_none(), "{snapshot}");

    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws/live?key={}",
        app.addr,
        app.key(SITE)
    ))
    .await;
    let status = match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("a site key must not open the live feed: {other:?}"),
    };
    assert_eq!(status, 403);
    let no_key = tokio_tungstenite::connect_async(format!("ws://{}/ws/live", app.addr)).await;
    assert!(
        matches!(no_key, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401)
    );
}

#[tokio::test]
async fn a_page_that_never_reads_is_dropped_and_the_others_keep_their_feed() {
    let app = spawn_app(|c| {
        fast(c);
        c.protocol.live_send_timeout_ms = 300;
    })
    .await;
    let operator = app.key("operator").to_string();
    let mut reader = Client::connect(&app, &format!("/ws/live?key={operator}")).await;
    // A page whose tab froze: a tiny receive window, and it never reads.
    let mut stalled = frozen_client(app.addr, &format!("/ws/live?key={operator}")).await;
    // It even asks for fresh snapshots (92 sites each), and still reads nothing.
    for _ in 0..200 {
        let resync = tokio_tungstenite::tungstenite::Message::text(r#"{"type":"resync"}"#);
        if futures_util::SinkExt::send(&mut stalled, resync)
            .await
            .is_err()
        {
            break;
        }
    }
    // Traffic for the feed: sites coming online, link figures every 50 ms.
    let mut bridges = Vec::new();
    for site in ["05443", "05710"] {
        bridges.push(EchoingBridge::join(&app, site).await);
    }

    let live_sockets = || async {
        let (_, metrics) = app.get_text("/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("diemcau_ws_connections{kind=\"live\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last_seq = reader.recv_type("snapshot").await["seq"].as_u64().unwrap();
    while live_sockets().await > 1.0 {
        assert!(Instant::now() < deadline, "the stalled page is still held");
        // The reading page keeps getting its frames, in order, meanwhile.
        let frame = reader.recv().await;
        if let Some(seq) = frame["seq"].as_u64() {
            assert_eq!(seq, last_seq + 1, "a {} frame", frame["type"]);
            last_seq = seq;
        }
    }
    let before = last_seq;
    while last_seq < before + 3 {
        last_seq = reader.recv().await["seq"].as_u64().unwrap_or(last_seq);
    }
    for bridge in bridges {
        bridge.close().await;
    }
}

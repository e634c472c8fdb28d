//! The live feed `/ws/live`: snapshot, then sequenced changes.

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

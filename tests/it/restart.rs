//! History survives a restart on the same data dir.

use crate::helpers::*;

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_transition_history_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_app_in(dir.path(), fast).await;
    let bridge = EchoingBridge::join(&first, SITE).await;
    first.wait_for_state(SITE, "online", WAIT).await;
    bridge.close().await;
    first.wait_for_state(SITE, "offline", WAIT).await;
    let admin_key = first.key("admin").to_string();
    first.stop().await;

    let second = spawn_app_in(dir.path(), fast).await;
    assert_eq!(second.key("admin"), admin_key, "keys are never rewritten");
    let site = second.site(SITE).await;
    assert_eq!(
        site["state"], "never_seen",
        "sites start unknown until they reconnect"
    );
    let tos: Vec<_> = site["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tos, ["offline", "online"]);
    assert!(
        site["uptime"].as_f64().unwrap() > 0.0,
        "uptime counts the earlier session"
    );

    let bridge = EchoingBridge::join(&second, SITE).await;
    let site = second.wait_for_state(SITE, "online", WAIT).await;
    assert_eq!(site["reconnects"], 1, "the first run's session counts");
    bridge.close().await;
}

#[tokio::test]
async fn restarts_are_the_services_events_not_the_sites_flaps() {
    let dir = tempfile::tempdir().unwrap();
    // Three restarts within seconds, the site connected through each run.
    for _ in 0..3 {
        let app = spawn_app_in(dir.path(), fast).await;
        let _bridge = EchoingBridge::join(&app, SITE).await;
        app.wait_for_state(SITE, "online", WAIT).await;
        app.stop().await; // SIGTERM's path: every socket closes with 1001
    }
    let app = spawn_app_in(dir.path(), fast).await;
    let _bridge = EchoingBridge::join(&app, SITE).await;
    let site = app.wait_for_state(SITE, "online", WAIT).await;
    assert_eq!(site["flapping"], false, "{site}");
    let offline = site["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["to"] == "offline")
        .count();
    assert_eq!(offline, 0, "a stop is not the site's drop: {site}");
}

#[tokio::test]
async fn a_site_up_before_a_restart_that_does_not_come_back_is_offline_with_its_last_seen() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_app_in(dir.path(), fast).await;
    let _bridge = EchoingBridge::join(&first, SITE).await;
    first.wait_for_state(SITE, "online", WAIT).await;
    first.stop().await;

    let second = spawn_app_in(dir.path(), fast).await;
    assert_eq!(
        second.state_of(SITE).await,
        "never_seen",
        "waiting for it at first"
    );
    // `fast`: offline after 700 ms.
    let site = second.wait_for_state(SITE, "offline", WAIT).await;
    assert!(
        site["last_seen_ms"].is_number(),
        "its last seen is kept: {site}"
    );
    let latest = &site["transitions"][0];
    assert!(
        latest["reason"]
            .as_str()
            .unwrap()
            .contains("not back after the server restarted"),
        "{site}"
    );
    assert_eq!(
        second.state_of(OTHER_SITE).await,
        "never_seen",
        "a site never seen before stays never seen"
    );
    let (_, metrics) = second.get_text("/metrics").await;
    assert!(
        metrics.contains("diemcau_sites{state=\"offline\"} 1"),
        "the alert rules read it as offline: {metrics}"
    );
}

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

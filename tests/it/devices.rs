//! Active checks of a site's equipment against a local TCP listener.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn an_active_check_turns_failing_when_its_listener_closes_and_back_when_it_reopens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let roster = format!(
        "code,name,kind,former_district,probe\n05443,Phường Phan Đình Phùng,phuong,TP,127.0.0.1:{port}\n05710,Phường Linh Sơn,phuong,TP,\n"
    );
    let app = spawn_app_with_roster(&roster, |c| {
        fast(c);
        c.checks.interval_ms = 50;
        c.checks.timeout_ms = 200;
    })
    .await;
    let device_state =
        |site: serde_json::Value| site["device"]["state"].as_str().map(str::to_string);
    let wait_for = |state: &'static str| {
        let app = &app;
        async move {
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                let site = app.site(SITE).await;
                if device_state(site.clone()).as_deref() == Some(state) {
                    return site;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "device never {state}: {site}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    wait_for("up").await;
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!("diemcau_probe_success{{site=\"{SITE}\"}} 1")),
        "{metrics}"
    );
    assert!(
        !metrics.contains("diemcau_probe_success{site=\"05710\"}"),
        "no probe address, no series"
    );

    drop(listener);
    let site = wait_for("down").await;
    assert!(
        site["device_transitions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("3 failed checks in a row")
    );
    assert_eq!(
        site["state"], "never_seen",
        "the PC's liveness is separate evidence"
    );
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains(&format!("diemcau_probe_success{{site=\"{SITE}\"}} 0")));

    let _reopened = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let site = wait_for("up").await;
    let history: Vec<_> = site["device_transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(history, ["up", "down", "up"]);
    crate::metrics::promtool_check_metrics(&app.get_text("/metrics").await.1);
}

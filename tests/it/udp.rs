//! The rehearsal's UDP path with `diemcau agent --rehearse` (a str0m WebRTC peer, as a
//! kiosk runs it): through on loopback; through a relay in the test that drops a known
//! share of the packets; and with the UDP port blocked.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::helpers::*;

async fn rehearse(app: &TestApp) -> (i32, String) {
    let output = site_agent(app, &app.url(""))
        .args(["--rehearse", "--technician", "Nguyễn Văn An"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(40), output)
        .await
        .expect("agent finishes")
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
    )
}

async fn udp_figures(app: &TestApp) -> serde_json::Value {
    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    own["attempts"][0]["figures"]["udp"].clone()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP relay between one client and the service that drops every `nth` large packet
/// (a data channel's, not the handshake's small ones) going to the service; `nth` 1
/// drops every packet (UDP blocked). Returns how many it dropped and passed.
async fn relay(service: SocketAddr, nth: u32) -> (SocketAddr, Arc<AtomicU32>, Arc<AtomicU32>) {
    let outside = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let inside = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = outside.local_addr().unwrap();
    let (dropped, passed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
    let (o, i, c, d, p) = (
        outside.clone(),
        inside.clone(),
        client.clone(),
        dropped.clone(),
        passed.clone(),
    );
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut large = 0u32;
        while let Ok((n, from)) = o.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            if nth == 1 || n > 900 {
                large += 1;
                if large % nth == 0 {
                    d.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                p.fetch_add(1, Ordering::SeqCst);
            }
            let _ = i.send_to(&buf[..n], service).await;
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = inside.recv_from(&mut buf).await {
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = outside.send_to(&buf[..n], to).await;
            }
        }
    });
    (addr, dropped, passed)
}

#[tokio::test]
async fn the_agent_measures_the_udp_path_on_loopback() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(udp_check).await;
    let (code, stdout) = rehearse(&app).await;
    assert!(stdout.contains("đo đường UDP"), "{stdout}");
    assert_eq!(code, 0, "{stdout}");
    let udp = udp_figures(&app).await;
    assert_eq!(udp["connected"], true, "{udp}");
    assert!(
        udp["sent"].as_u64().unwrap() > 200,
        "1.5 Mbps for 2 s: {udp}"
    );
    assert!(udp["loss_pct"].as_f64().unwrap() < 1.0, "{udp}");
    assert!(udp["rtt_median_ms"].as_f64().unwrap() < 50.0, "{udp}");
    assert!(
        stdout.contains("Mất gói UDP"),
        "the verdict table has the UDP rows: {stdout}"
    );
}

#[tokio::test]
async fn through_a_relay_that_drops_a_tenth_of_the_packets_the_loss_is_measured_within_two_points()
{
    let _turn = EXCLUSIVE.lock().await;
    let port = free_udp_port();
    let (relay_addr, dropped, passed) = relay(SocketAddr::from(([127, 0, 0, 1], port)), 10).await;
    let app = spawn_app(|config| {
        udp_check(config);
        config.rehearsal.udp_seconds = 3;
        config.rehearsal.udp_port = Some(port);
        config.rehearsal.udp_advertise = Some(relay_addr.to_string());
    })
    .await;
    let (code, stdout) = rehearse(&app).await;
    let udp = udp_figures(&app).await;
    assert_eq!(udp["connected"], true, "{stdout}\n{udp}");
    let measured = udp["loss_pct"].as_f64().unwrap();
    let (dropped, passed) = (
        dropped.load(Ordering::SeqCst),
        passed.load(Ordering::SeqCst),
    );
    let share = dropped as f64 * 100.0 / (dropped + passed) as f64;
    assert!(
        (share - 10.0).abs() < 0.5,
        "the relay dropped {dropped} of {}",
        dropped + passed
    );
    assert!(
        (measured - 10.0).abs() <= 2.0,
        "measured {measured} % for a 10 % drop: {udp}"
    );
    assert_eq!(code, 2, "10 % loss fails the check: {stdout}");
    assert!(stdout.contains("Mất gói UDP"), "{stdout}");
}

#[tokio::test]
async fn with_the_udp_port_blocked_the_verdict_says_so_plainly() {
    let _turn = EXCLUSIVE.lock().await;
    let port = free_udp_port();
    let (relay_addr, _, _) = relay(SocketAddr::from(([127, 0, 0, 1], port)), 1).await;
    let app = spawn_app(|config| {
        udp_check(config);
        config.rehearsal.udp_port = Some(port);
        config.rehearsal.udp_advertise = Some(relay_addr.to_string());
    })
    .await;
    let (code, stdout) = rehearse(&app).await;
    assert_eq!(code, 2, "{stdout}");
    let udp = udp_figures(&app).await;
    assert_eq!(
        (udp["offered"].as_bool(), udp["connected"].as_bool()),
        (Some(true), Some(false)),
        "{udp}"
    );
    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    let rows = own["attempts"][0]["rows"].as_array().unwrap().clone();
    let blocked = rows
        .iter()
        .find(|r| r["metric"] == "udp")
        .expect("the blocked row");
    assert!(
        blocked["advice"]
            .as_str()
            .unwrap()
            .starts_with("Mạng chặn UDP: báo quản trị mạng mở cổng UDP"),
        "{blocked}"
    );
    assert_eq!(
        blocked["threshold"],
        format!("cổng UDP {} tới máy chủ phải mở", relay_addr.port())
    );
    assert!(
        rows.iter().all(|r| r["metric"] != "udp_loss"),
        "no figures from the websocket stand in for it"
    );
    assert!(stdout.contains("Mạng chặn UDP"), "{stdout}");
    // The organisers' report says what the latest check did not pass.
    let (_, report) = app.get("/api/report", Some(app.key("operator"))).await;
    assert_eq!(
        report_row(&report, SITE)["rehearsal_not_passed"],
        serde_json::json!(["Đường UDP (hình và tiếng)"])
    );
    let csv = app.get_csv("/api/report.csv", app.key("operator")).await;
    assert!(
        csv.contains("Không đạt: Đường UDP (hình và tiếng)"),
        "{csv}"
    );
}

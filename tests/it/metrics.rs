//! `/metrics`: every per-site series from the start, valid for promtool.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::*;

/// Runs promtool in config/prometheus, feeding it `stdin`; fails the test with its
/// output, or with how to install it.
fn promtool_with(args: &[&str], stdin: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus");
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed for this test ({e}): run scripts/test, or `apt-get install prometheus`")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{report}"
    );
    report
}

/// Runs `promtool check metrics` on the text.
pub fn promtool_check_metrics(text: &str) -> String {
    promtool_with(&["check", "metrics"], text)
}

#[tokio::test]
async fn metrics_have_92_site_up_series_before_any_site_connects_and_pass_promtool() {
    let app = spawn_app(fast).await;
    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    let up_series = text
        .lines()
        .filter(|l| l.starts_with("diemcau_site_up{"))
        .count();
    assert_eq!(up_series, 92);
    for family in [
        "diemcau_sites{state=\"never_seen\"} 92",
        "diemcau_site_info{",
        "diemcau_site_last_seen_timestamp_seconds{",
        "diemcau_site_rtt_seconds{",
        "diemcau_site_jitter_seconds{",
        "diemcau_site_transitions_total{",
        "diemcau_probe_rtt_seconds_bucket{",
        "diemcau_ws_connections{kind=\"bridge\"} 0",
    ] {
        assert!(text.contains(family), "missing {family}");
    }
    let report = promtool_check_metrics(&text);
    assert!(!report.contains("error"), "{report}");
}

#[tokio::test]
async fn metrics_follow_a_site_that_connects() {
    let app = spawn_app(fast).await;
    let mut bridge = EchoingBridge::join(&app, SITE).await;
    bridge.next_of("sync").await;
    let (_, text) = app.get_text("/metrics").await;
    assert!(text.contains(&format!("diemcau_site_up{{site=\"{SITE}\"}} 1")));
    assert!(text.contains(&format!(
        "diemcau_site_transitions_total{{site=\"{SITE}\",to=\"online\"}} 1"
    )));
    assert!(text.contains("diemcau_sites{state=\"online\"} 1"));
    assert!(text.contains("diemcau_ws_connections{kind=\"bridge\"} 1"));
    promtool_check_metrics(&text);
}

#[tokio::test]
async fn private_metrics_need_an_operator_key() {
    let app = spawn_app(|c| {
        fast(c);
        c.metrics.public = false;
    })
    .await;
    assert_eq!(app.get("/metrics", None).await.0, 401);
    assert_eq!(app.get("/metrics", Some(app.key("display"))).await.0, 403);
    assert_eq!(app.get("/metrics", Some(app.key("operator"))).await.0, 200);
}

/// Metric names (diemcau_…) used in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("diemcau_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_the_service_serves() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../dashboards/diemcau.json"))
            .expect("dashboard is JSON");
    // The shipped roster (its last column `probe`) with equipment to check at one site,
    // so that the probe metrics are served too.
    let shipped = include_str!("../../config/sites.csv");
    let (header, first) = (
        shipped.lines().next().unwrap(),
        shipped.lines().nth(1).unwrap(),
    );
    assert!(
        header.ends_with(",probe") && first.ends_with(','),
        "{header} / {first}"
    );
    let roster = shipped.replacen(first, &format!("{first}127.0.0.1:9"), 1);
    let agenda = include_str!("../../config/agenda.csv");
    let app = spawn_app_with_files(&roster, Some(agenda), fast).await;
    let (_, text) = app.get_text("/metrics").await;
    let served: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for name in metric_names(target["expr"].as_str().unwrap()) {
                assert!(
                    served.contains(name.as_str()),
                    "panel `{}` uses {name}, which /metrics does not serve",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10);
    // The day's panels: who presents and the timer's state, the equipment, and the
    // wall's colours for the site states (offline red, never amber).
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for needed in [
        "diemcau_timer_current_slot",
        "diemcau_timer_state",
        "diemcau_probe_success",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needed)),
            "no panel shows {needed}"
        );
    }
    let colour_of = |state: &str| {
        dashboard["panels"][0]["fieldConfig"]["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["matcher"]["options"] == state)
            .map(|o| o["properties"][0]["value"]["fixedColor"].clone())
    };
    assert_eq!(colour_of("offline"), Some(serde_json::json!("red")));
    assert_eq!(colour_of("online"), Some(serde_json::json!("green")));
    assert_eq!(colour_of("degraded"), Some(serde_json::json!("orange")));
    assert!(colour_of("never_seen").is_some());
}

fn promtool(args: &[&str]) -> String {
    promtool_with(args, "")
}

#[tokio::test]
async fn the_alert_rules_are_valid_unit_tested_and_use_only_served_metrics() {
    promtool(&["check", "config", "prometheus.yml"]);
    assert!(promtool(&["check", "rules", "alerts.yml"]).contains("9 rules found"));
    assert!(promtool(&["test", "rules", "alerts_test.yml"]).contains("SUCCESS"));

    let app = spawn_app(|config| {
        fast(config);
        config.incidents.raise_after_seconds = 1;
    })
    .await;
    // The incident series exist while incidents are open: one taken, one raised again.
    for site in [SITE, OTHER_SITE] {
        EchoingBridge::join(&app, site).await.close().await;
        app.wait_for_state(site, "offline", WAIT).await;
    }
    let (_, list) = app.get("/api/incidents", Some(app.key("operator"))).await;
    let taken = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["site"] == SITE)
        .unwrap()["id"]
        .clone();
    let (status, _) = app
        .post(
            &format!("/api/incidents/{}/take", taken.as_str().unwrap()),
            Some(app.key("operator")),
            serde_json::json!({"name": "Lan"}),
        )
        .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let text = loop {
        let (_, text) = app.get_text("/metrics").await;
        if text.contains("\ndiemcau_incident_raised_again{") {
            break text;
        }
        assert!(started.elapsed() < WAIT, "no incident raised again: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let rules = include_str!("../../config/prometheus/alerts.yml");
    for name in metric_names(rules) {
        assert!(
            text.contains(&format!("\n{name}")),
            "alerts.yml uses {name}, which /metrics does not serve"
        );
    }
}

#[tokio::test]
async fn the_event_has_begun_only_from_the_configured_start() {
    let now = chrono::Utc::now();
    for (start, want) in [
        (now + chrono::Duration::hours(2), "0"),
        (now - chrono::Duration::hours(2), "1"),
    ] {
        let app = spawn_app(|c| c.report.start = Some(start.to_rfc3339())).await;
        let (_, text) = app.get_text("/metrics").await;
        assert!(
            text.contains(&format!("\ndiemcau_event_started {want}\n")),
            "start {start}: {text}"
        );
    }
    let app = spawn_app(|_| {}).await;
    let (_, text) = app.get_text("/metrics").await;
    assert!(
        text.contains("\ndiemcau_event_started 1\n"),
        "no start: the day is now"
    );
}

#[tokio::test]
async fn the_current_slot_is_a_series_with_its_unit_and_venue() {
    let app = spawn_app(fast).await;
    let (_, before) = app.get_text("/metrics").await;
    let is_current = |l: &&str| l.starts_with("diemcau_timer_current_slot{") && l.ends_with(" 1");
    assert!(
        !before.lines().any(|l| is_current(&l)),
        "no slot before the first start"
    );
    app.start_slot(4).await;
    let (_, text) = app.get_text("/metrics").await;
    let current: Vec<_> = text.lines().filter(is_current).collect();
    assert_eq!(current.len(), 1, "{text}");
    assert!(
        current[0].contains("order=\"4\"")
            && current[0].contains("unit=\"Sở Khoa học và Công nghệ\""),
        "{}",
        current[0]
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("diemcau_timer_current_slot{"))
            .count(),
        26
    );
}

//! Notifications end to end with the real programs: Prometheus scrapes a real diemcau
//! with the shipped rules and sends to a real Alertmanager on the shipped routes,
//! inhibitions and templates, which delivers to webhook receivers inside the test and
//! to diemcau's Zalo relay, whose requests reach a recording "Zalo" here. Debian's
//! `prometheus` and `prometheus-alertmanager` (scripts/test installs them).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::*;

/// One request a recording server took.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    content_type: String,
    body: Value,
}

/// An HTTP server that records every request and answers with the scripted statuses
/// in turn (then 200 with `{"ok": true}`), as a webhook receiver or as Zalo's API.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    async fn start(script: Vec<u16>) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let shared = (seen.clone(), script);
        let app = axum::Router::new().fallback(record).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the requests so far; returns them.
    async fn until(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let started = Instant::now();
        loop {
            let seen = self.requests();
            if done(&seen) {
                return seen;
            }
            assert!(
                started.elapsed() < within,
                "{what}: not within {within:?}; got {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

type Shared = (Arc<Mutex<Vec<Request>>>, Arc<Mutex<Vec<u16>>>);

async fn record(
    State((seen, script)): State<Shared>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    seen.lock().unwrap().push(Request {
        path: uri.path().to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body,
    });
    let status = {
        let mut script = script.lock().unwrap();
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    let answer = if status == 200 {
        json!({"ok": true, "result": {"message_id": "1", "date": 1}})
    } else {
        json!({"ok": false, "error_code": status, "description": "scripted failure"})
    };
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with `from` replaced by `to`, which must be there exactly once (a change to
/// the shipped file that this test no longer follows fails loudly).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` once in the shipped config"
    );
    text.replacen(from, to, 1)
}

/// A running program, killed with the test.
struct Program {
    _child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn wait_ready(port: u16, what: &str, child: &mut Child) {
    let started = Instant::now();
    loop {
        if let Ok(answer) = reqwest::get(format!("http://127.0.0.1:{port}/-/ready")).await {
            if answer.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start ({status}): see its output above");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} not ready in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn program(name: &str) -> Command {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{name} is needed for this test: run scripts/test, or `apt-get install prometheus prometheus-alertmanager`"
    );
    let mut command = Command::new(name);
    command.kill_on_drop(true);
    command
}

/// Alertmanager on the shipped `config/alertmanager.yml` (global, templates, route,
/// inhibitions verbatim; waits shortened), with its two receivers' channels replaced
/// by webhooks to `receiver` and, for `kythuat`, diemcau's Zalo relay.
async fn alertmanager(receiver: &Recorder, relay: Option<(&TestApp, &str)>) -> Program {
    let shipped = config_file("alertmanager.yml");
    let head = &shipped[..shipped.find("\nreceivers:").expect("a receivers section")];
    let head = replace_once(head, "group_wait: 30s", "group_wait: 1s");
    let head = replace_once(&head, "group_interval: 2m", "group_interval: 1s");
    let head = replace_once(&head, "repeat_interval: 30m", "repeat_interval: 1h");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alertmanager.tmpl"),
        config_file("alertmanager.tmpl"),
    )
    .unwrap();
    let relay_hook = match relay {
        Some((app, key)) => {
            std::fs::write(dir.path().join("notifier.key"), key).unwrap();
            format!(
                "      - url: '{}'\n        send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            credentials_file: '{}'\n",
                app.url("/api/relay/zalo"),
                dir.path().join("notifier.key").display()
            )
        }
        None => String::new(),
    };
    let text = format!(
        "{head}\nreceivers:\n  - name: kythuat\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n{relay_hook}  - name: kythuat-khong-zalo\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n",
        receiver.url("/kythuat"),
        receiver.url("/khong-zalo"),
    );
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, text).unwrap();
    let port = free_port();
    let mut child = program("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .spawn()
        .expect("start prometheus-alertmanager");
    wait_ready(port, "prometheus-alertmanager", &mut child).await;
    Program {
        _child: child,
        port,
        _dir: dir,
    }
}

/// Prometheus on the shipped prometheus.yml and alerts.yml, scraping `app` and
/// sending to `am`.
async fn prometheus(app: &TestApp, am: &Program) -> Program {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alerts.yml"),
        config_file("prometheus/alerts.yml"),
    )
    .unwrap();
    let text = config_file("prometheus/prometheus.yml");
    let text = replace_once(&text, "\"127.0.0.1:8080\"", &format!("\"{}\"", app.addr));
    let text = replace_once(
        &text,
        "\"127.0.0.1:9093\"",
        &format!("\"127.0.0.1:{}\"", am.port),
    );
    std::fs::write(dir.path().join("prometheus.yml"), text).unwrap();
    let port = free_port();
    let mut child = program("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .spawn()
        .expect("start prometheus");
    wait_ready(port, "prometheus", &mut child).await;
    Program {
        _child: child,
        port,
        _dir: dir,
    }
}

/// The webhook notifications (Alertmanager's JSON) for `alertname` with `status`.
fn notifications<'a>(seen: &'a [Request], alertname: &str, status: &str) -> Vec<&'a Value> {
    seen.iter()
        .map(|r| &r.body)
        .filter(|b| b["commonLabels"]["alertname"] == alertname && b["status"] == status)
        .collect()
}

fn sites_in(notification: &Value) -> Vec<String> {
    let mut sites: Vec<String> = notification["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["site"].as_str().unwrap().to_string())
        .collect();
    sites.sort();
    sites
}

/// Ten communes of one former district and two of another.
fn two_districts() -> (String, Vec<String>) {
    let mut csv = String::from("code,name,kind,former_district\n");
    let mut phu_binh = Vec::new();
    for n in 1..=10 {
        let code = format!("060{n:02}");
        csv.push_str(&format!("{code},Xã Phú Bình {n},xa,Huyện Phú Bình\n"));
        phu_binh.push(code);
    }
    csv.push_str("05443,Phường Phan Đình Phùng,phuong,Thành phố Thái Nguyên\n");
    csv.push_str("05710,Phường Linh Sơn,phuong,Thành phố Thái Nguyên\n");
    (csv, phu_binh)
}

/// Turns the relay on: the bot's token added to secrets.toml while the service runs.
async fn add_bot_token(app: &TestApp) {
    let path = app.data_dir.join("secrets.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[zalo]\nbot_token = \"123456:test-token\"\n");
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    while app.state.secrets.current().zalo_bot_token().is_none() {
        assert!(started.elapsed() < WAIT, "the token was not taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ten_sites_of_one_district_dropping_are_one_notification_and_their_return_one_resolved_notice()
 {
    let zalo = Recorder::start(vec![]).await;
    let (roster, phu_binh) = two_districts();
    let zalo_url = zalo.url("");
    let app = spawn_app_with_roster(&roster, |config| {
        steady(config);
        config.notify.zalo.api_url = Some(zalo_url);
        config.notify.zalo.chat_id = Some("nhom-ky-thuat".into());
    })
    .await;
    add_bot_token(&app).await;
    let receiver = Recorder::start(vec![]).await;
    let notifier = app.key("notifier").to_string();
    let am = alertmanager(&receiver, Some((&app, &notifier))).await;
    let _prometheus = prometheus(&app, &am).await;

    let mut bridges = Vec::new();
    for site in &phu_binh {
        bridges.push(EchoingBridge::join(&app, site).await);
    }
    let other = EchoingBridge::join(&app, "05443").await;
    for site in &phu_binh {
        app.wait_for_state(site, "online", WAIT).await;
    }
    // Prometheus must see them up before they drop (a scrape is every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    for bridge in bridges.drain(..) {
        bridge.close().await;
    }

    // 30 s of `for`, a scrape and an evaluation (5 s each), Alertmanager's wait.
    let seen = receiver
        .until(
            "the grouped notification",
            Duration::from_secs(60),
            |seen| !notifications(seen, "DiemcauSiteOffline", "firing").is_empty(),
        )
        .await;
    let firing = notifications(&seen, "DiemcauSiteOffline", "firing");
    assert_eq!(
        firing.len(),
        1,
        "one notification for the district: {firing:#?}"
    );
    assert_eq!(firing[0]["groupLabels"]["district"], "Huyện Phú Bình");
    assert_eq!(sites_in(firing[0]), phu_binh, "it names the ten");
    let first = &firing[0]["alerts"][0]["annotations"];
    assert_eq!(first["taken_by"], "chưa ai nhận", "{first}");
    assert!(
        first["since"].as_str().unwrap().len() == 8,
        "since when, HH:MM:SS: {first}"
    );
    assert_eq!(first["wall"], format!("http://{}/wall", app.addr));

    // The same group reached Zalo through the relay: one message naming the ten.
    let to_zalo = zalo
        .until("the Zalo message", WAIT, |seen| {
            seen.iter().any(|r| {
                r.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("mất kết nối") && t.contains("Phú Bình 10"))
            })
        })
        .await;
    let message = to_zalo
        .iter()
        .find(|r| {
            r.body["text"]
                .as_str()
                .unwrap()
                .contains("Huyện Phú Bình: 10 điểm cầu mất kết nối")
        })
        .expect("the district's message");
    assert_eq!(message.path, "/bot123456:test-token/sendMessage");
    assert!(
        message.content_type.starts_with("application/json"),
        "{}",
        message.content_type
    );
    assert_eq!(message.body["chat_id"], "nhom-ky-thuat");
    let text = message.body["text"].as_str().unwrap();
    for n in 1..=10 {
        assert!(
            text.contains(&format!("Xã Phú Bình {n} (060{n:02}) từ ")),
            "{text}"
        );
    }
    assert!(
        !text.contains("Phan Đình Phùng"),
        "another district's site is not in it: {text}"
    );

    // They return: one resolved notice for the group.
    for site in &phu_binh {
        bridges.push(EchoingBridge::join(&app, site).await);
    }
    let seen = receiver
        .until("the resolved notice", Duration::from_secs(30), |seen| {
            !notifications(seen, "DiemcauSiteOffline", "resolved").is_empty()
        })
        .await;
    let resolved = notifications(&seen, "DiemcauSiteOffline", "resolved");
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(sites_in(resolved[0]), phu_binh);
    assert_eq!(
        notifications(&seen, "DiemcauSiteOffline", "firing").len(),
        1,
        "no repeat in between"
    );
    zalo.until("the Zalo resolved message", WAIT, |seen| {
        seen.iter().any(|r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("✅ Huyện Phú Bình: 10 điểm cầu đã kết nối lại"))
        })
    })
    .await;
    drop(other);
}

/// An alert as Prometheus posts it to Alertmanager's API.
fn alert(name: &str, site: &str, district: &str) -> Value {
    json!({
        "labels": {"alertname": name, "site": site, "name": format!("Xã {site}"), "district": district, "severity": "warning"},
        "annotations": {"summary": format!("Điểm cầu Xã {site} ({site}) mất kết nối hơn 30 giây"), "taken_by": "chưa ai nhận"},
    })
}

async fn post_alerts(am: &Program, alerts: Value) {
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v2/alerts", am.port))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_silence_holds_and_a_presenter_offline_alert_silences_that_sites_plain_offline_alert() {
    let receiver = Recorder::start(vec![]).await;
    let am = alertmanager(&receiver, None).await;
    // A silence on 06001 (a commune known to be off today), made as staff make one.
    let now = chrono::Utc::now();
    let silence = json!({
        "matchers": [{"name": "site", "value": "06001", "isRegex": false, "isEqual": true}],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(2)).to_rfc3339(),
        "createdBy": "Lan", "comment": "xã báo mất điện cả ngày",
    });
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v2/silences", am.port))
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let d = "Huyện Phú Bình";
    let mut presenting = alert("DiemcauPresenterOffline", "06002", d);
    presenting["labels"]["severity"] = json!("critical");
    post_alerts(
        &am,
        json!([
            alert("DiemcauSiteOffline", "06001", d),
            alert("DiemcauSiteOffline", "06002", d),
            alert("DiemcauSiteOffline", "06003", d),
            presenting,
        ]),
    )
    .await;
    receiver
        .until("both notifications", Duration::from_secs(20), |seen| {
            !notifications(seen, "DiemcauSiteOffline", "firing").is_empty()
                && !notifications(seen, "DiemcauPresenterOffline", "firing").is_empty()
        })
        .await;
    // Past a few more group intervals: still only what was let through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = receiver.requests();
    let offline: Vec<String> = notifications(&seen.clone(), "DiemcauSiteOffline", "firing")
        .into_iter()
        .flat_map(sites_in)
        .collect();
    assert!(
        offline.iter().all(|s| s == "06003"),
        "06001 silenced, 06002 inhibited: {offline:?}"
    );
    assert!(!offline.is_empty());
    let presenter = notifications(&seen, "DiemcauPresenterOffline", "firing");
    assert_eq!(sites_in(presenter[0]), ["06002"]);
    assert!(
        seen.iter().all(|r| r.path == "/kythuat"),
        "the default receiver"
    );
}

#[tokio::test]
async fn the_zalo_relay_tries_again_after_a_failure_then_logs_and_counts_a_message_it_cannot_deliver()
 {
    // Zalo answers 500, 502, then takes the first message; then refuses the second
    // for good (400, not tried again); then is down (503) for all tries of the third.
    let zalo = Recorder::start(vec![500, 502, 200, 400, 503, 503, 503]).await;
    let zalo_url = zalo.url("");
    let app = spawn_app(|config| {
        config.notify.zalo.api_url = Some(zalo_url);
        config.notify.zalo.chat_id = Some("nhom".into());
        config.notify.zalo.attempts = 3;
        config.notify.zalo.first_retry_ms = 50;
    })
    .await;
    let notifier = Some(app.key("notifier"));
    let group = json!({
        "status": "firing",
        "groupLabels": {"alertname": "DiemcauSiteOffline", "district": "Thành phố Thái Nguyên"},
        "commonLabels": {"alertname": "DiemcauSiteOffline"},
        "alerts": [{"status": "firing", "labels": {"site": SITE, "name": "Phường Phan Đình Phùng"}, "annotations": {"since": "10:41:07", "taken_by": "Lan"}, "startsAt": "2026-12-20T03:41:07Z"}],
    });
    // Without the bot's token the relay says what to do, and nothing is queued.
    let (status, answer) = app.post("/api/relay/zalo", notifier, group.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("bot_token"),
        "{answer}"
    );
    // Only the notifier (and admin) may use it.
    assert_eq!(
        app.post("/api/relay/zalo", Some(app.key("operator")), group.clone())
            .await
            .0,
        403
    );
    add_bot_token(&app).await;

    for _ in 0..3 {
        let (status, answer) = app.post("/api/relay/zalo", notifier, group.clone()).await;
        assert_eq!(status, 202, "{answer}");
    }
    let seen = zalo
        .until("seven tries", WAIT, |seen| seen.len() >= 7)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(zalo.requests().len(), 7, "no try past the bound");
    assert!(
        seen.iter()
            .all(|r| r.body["text"] == seen[0].body["text"] && r.body["chat_id"] == "nhom")
    );
    assert_eq!(
        seen[0].body["text"],
        "🔴 Thành phố Thái Nguyên: 1 điểm cầu mất kết nối\n• Phường Phan Đình Phùng (05443) từ 10:41:07 — Lan đang xử lý"
    );
    let metrics = app.get_text("/metrics").await.1;
    let value = |series: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(
        value("diemcau_notify_sent_total{channel=\"zalo\"}").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        value("diemcau_notify_failed_total{channel=\"zalo\"}").as_deref(),
        Some("2")
    );
    assert_eq!(
        value("diemcau_notify_retries_total{channel=\"zalo\"}").as_deref(),
        Some("4")
    );
}

#[test]
fn the_shipped_alertmanager_config_and_its_templates_are_valid() {
    let output = std::process::Command::new("amtool")
        .args(["check-config", "alertmanager.yml"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .output()
        .expect("amtool (prometheus-alertmanager) is needed: run scripts/test");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("2 inhibit rules") && text.contains("1 templates"),
        "{text}"
    );
}

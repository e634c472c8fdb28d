//! The `diemcau` binary itself: serve on embedded defaults, links, check, help, kill -9.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use diemcau::auth::{Role, Secrets};
use diemcau::core::sites::Roster;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_diemcau");

fn roster() -> Roster {
    Roster::parse("sites.csv", include_bytes!("../../config/sites.csv")).unwrap()
}

/// `diemcau serve` as a child process on port 0.
struct Served {
    child: Child,
    addr: SocketAddr,
    stdout: String,
    /// Everything the server logged so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    fn start(data_dir: &Path) -> Served {
        Served::start_with(data_dir, "info")
    }

    fn start_with(data_dir: &Path, log_level: &str) -> Served {
        Served::spawn(data_dir, log_level, &[])
    }

    /// With a configuration file beside the embedded defaults.
    fn start_configured(data_dir: &Path, config_toml: &str) -> Served {
        let config = data_dir.with_extension("toml");
        std::fs::write(&config, config_toml).unwrap();
        Served::spawn(data_dir, "info", &["--config", config.to_str().unwrap()])
    }

    fn spawn(data_dir: &Path, log_level: &str, extra: &[&str]) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", log_level)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("diemcau starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut addr = None;
        let mut before = String::new();
        for line in stderr.by_ref() {
            let line = line.unwrap();
            before.push_str(&line);
            before.push('\n');
            if let Some(rest) = line.split("addr=").nth(1) {
                addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
                break;
            }
        }
        let addr = addr.expect("the serving line names the address");
        // Keep draining the log so the server never writes into a closed pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(before));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Served {
            child,
            addr,
            stdout: String::new(),
            log,
        }
    }

    fn read_stdout_after_exit(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        }
        self.stdout = out.clone();
        out
    }

    /// What the service logged so far.
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn metrics(&self, key: &str) -> String {
        reqwest::Client::new()
            .get(format!("http://{}/metrics", self.addr))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, key: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("http://{}{}", self.addr, path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn serve_starts_on_embedded_defaults_and_under_a_service_manager_logs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = Served::start(dir.path());
    let health = reqwest::get(format!("http://{}/healthz", served.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let secrets_path = dir.path().join("secrets.toml");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secrets_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();

    sigterm(&served.child);
    let exit = served.child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    // stdout is a pipe here, as under systemd: the keys stay out of it and the log.
    let stdout = served.read_stdout_after_exit();
    let log = served.log();
    for key in [Role::Operator, Role::Admin].map(|r| secrets.role_key(r).expose().to_string()) {
        assert!(
            !stdout.contains(&key) && !log.contains(&key),
            "{stdout}\n{log}"
        );
    }
    assert!(log.contains("diemcau links --base-url"), "{log}");
}

#[test]
fn at_a_terminal_the_first_start_prints_the_operator_and_admin_links() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // `script` gives the service a terminal for stdout, as a person starting it has.
    let command = format!(
        "timeout -s TERM 3 {BIN} serve --listen 127.0.0.1:0 --data-dir {}",
        data.display()
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let shown = String::from_utf8_lossy(&output.stdout);
    let (secrets, _) = Secrets::load_or_create(&data, &roster()).unwrap();
    let operator = secrets.role_key(Role::Operator).expose();
    assert!(shown.contains(&format!("/wall?key={operator}")), "{shown}");
    assert!(shown.contains(secrets.role_key(Role::Admin).expose()));
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_names_the_first_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let _bridge = EchoingBridge::join_at(served.addr, SITE, &site_key_in(&secrets)).await;
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    while served.get(&format!("/api/sites/{SITE}"), &operator).await["state"] != "online" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = || {
        let db = rusqlite::Connection::open(dir.path().join("diemcau.sqlite3")).unwrap();
        db.query_row(
            "SELECT count(*) FROM transitions WHERE reason LIKE 'server restarted%'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert_eq!(restarted(), 0);
    let (ok, said) = serve_until_it_exits(dir.path());
    assert!(!ok);
    assert!(
        said.contains(&format!("PID {}", served.child.id())) && said.contains("already serves"),
        "{said}"
    );
    assert_eq!(restarted(), 0, "the refused start recorded nothing");
    assert_eq!(
        served.get(&format!("/api/sites/{SITE}"), &operator).await["state"],
        "online",
        "the first service goes on"
    );
}

/// `serve` on `dir` that is expected to give up at once: whether it succeeded, and
/// what it said.
fn serve_until_it_exits(dir: &Path) -> (bool, String) {
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn a_start_on_a_damaged_data_dir_is_refused_with_what_to_do() {
    let start = serve_until_it_exits;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("diemcau.sqlite3"), b"").unwrap();
    let (ok, said) = start(dir.path());
    assert!(
        !ok && said.contains("is empty") && said.contains("diemcau backup"),
        "{said}"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("diemcau.sqlite3"))
            .unwrap()
            .len(),
        0
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("diemcau.sqlite3"), "Mã,Tên\n05443,A\n").unwrap();
    let (ok, said) = start(dir.path());
    assert!(!ok && said.contains("not an SQLite file"), "{said}");

    // Keys: made once, then a section lost, then an emptied key.
    let dir = tempfile::tempdir().unwrap();
    Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let path = dir.path().join("secrets.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let roles_only = &text[..text.find("[sites]").unwrap()];
    std::fs::write(&path, roles_only).unwrap();
    let (ok, said) = start(dir.path());
    assert!(!ok && said.contains("no site keys"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        roles_only,
        "no new keys were made"
    );

    let emptied = with_empty_key(&text, "operator");
    std::fs::write(&path, &emptied).unwrap();
    let (ok, said) = start(dir.path());
    assert!(!ok && said.contains("key of operator is empty"), "{said}");
}

/// `text` with the operator's key made empty.
fn with_empty_key(text: &str, role: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with(&format!("{role} ")) || line.starts_with(&format!("{role}=")) {
                format!("{role} = \"\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn killing_the_server_keeps_history_and_marks_sites_that_were_online() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    let site_key = site_key_in(&secrets);
    let _bridge = EchoingBridge::join_at(served.addr, SITE, &site_key).await;
    loop {
        let site = served.get(&format!("/api/sites/{SITE}"), &operator).await;
        if site["transitions"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(served); // SIGKILL: no clean close is recorded

    let served = Served::start(dir.path());
    let site = served.get(&format!("/api/sites/{SITE}"), &operator).await;
    assert_eq!(site["state"], "never_seen");
    let transitions = site["transitions"].as_array().unwrap();
    assert_eq!(transitions[0]["to"], "never_seen", "{site}");
    assert!(
        transitions[0]["reason"]
            .as_str()
            .unwrap()
            .contains("restarted")
    );
    assert_eq!(
        transitions[1]["to"], "online",
        "history from before the kill is intact"
    );
}

#[test]
fn links_prints_every_role_and_each_site_with_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let output = Command::new(BIN)
        .args(["links", "--base-url", "http://10.0.0.5:8080/", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let display = secrets.role_key(Role::Display).expose();
    assert!(text.contains(&format!(
        "display\tmàn hình hội trường\thttp://10.0.0.5:8080/display?key={display}"
    )));
    let site_lines: Vec<_> = text
        .lines()
        .filter(|l| l.contains("/bridge?key="))
        .collect();
    assert_eq!(site_lines.len(), 92);
    let key = secrets.site_key(SITE.parse().unwrap()).unwrap().expose();
    assert!(site_lines.contains(
        &format!("{SITE}\tPhường Phan Đình Phùng\thttp://10.0.0.5:8080/bridge?key={key}").as_str()
    ));
}

#[test]
fn links_without_keys_says_to_start_the_server_first() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["links", "--base-url", "http://h:8080", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("diemcau serve"), "{stderr}");
    assert!(
        !dir.path().join("secrets.toml").exists(),
        "links never invents keys"
    );
}

#[test]
fn check_names_the_file_line_and_reason_of_a_bad_roster_row() {
    let dir = tempfile::tempdir().unwrap();
    let sites = dir.path().join("sites.csv");
    std::fs::write(
        &sites,
        "code,name,kind,former_district\n05443,A,phuong,X\n05443,B,xa,Y\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["check", "--sites"])
        .arg(&sites)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:3: duplicate site id 05443", sites.display())),
        "{stderr}"
    );

    let output = Command::new(BIN).arg("check").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("92 sites, 26 presentations"));
}

#[test]
fn check_reads_a_live_data_dir_and_fails_on_a_damaged_database() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let check = || {
        Command::new(BIN)
            .args(["check", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let output = check();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("keys: 5 roles, 92/92 sites"), "{said}");
    assert!(said.contains("database: ok"), "{said}");
    assert!(said.contains("free"), "{said}");
    drop(served);

    let db = dir.path().join("diemcau.sqlite3");
    for leftover in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{leftover}", db.display()));
    }
    std::fs::write(&db, vec![0x42; 8192]).unwrap();
    let output = check();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("diemcau.sqlite3") && stderr.contains("diemcau backup"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_half_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let sites = dir.path().join("sites.csv");
    std::fs::write(&sites, "code,name,kind,former_district\n05443,,phuong,X\n").unwrap();
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--sites"])
        .arg(&sites)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("sites.csv:2: site 05443 has an empty name")
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the config is valid"
    );
}

#[test]
fn help_explains_each_flag_and_its_environment_variable() {
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "--config",
        "--data-dir",
        "--listen",
        "DIEMCAU_LISTEN",
        "DIEMCAU_DATA_DIR",
        "--log-format",
    ] {
        assert!(help.contains(expected), "{expected} missing from:\n{help}");
    }
}

/// Starts slot `slot` and moves its deadline by `seconds`; returns the last answer.
async fn start_and_adjust(
    served: &Served,
    secretary: &str,
    slot: u32,
    seconds: i64,
) -> serde_json::Value {
    let start = serde_json::json!({"slot": slot});
    post(served, "/api/timer/start", secretary, start).await;
    let adjust = serde_json::json!({"seconds": seconds});
    post(served, "/api/timer/adjust", secretary, adjust).await
}

async fn post(
    served: &Served,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("http://{}{}", served.addr, path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn after_kill_9_the_timer_is_exactly_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let secretary = secrets.role_key(Role::Secretary).expose().to_string();

    let answer = start_and_adjust(&served, &secretary, 3, 45).await;
    let deadline = answer["deadline_ms"].as_i64().unwrap();
    drop(served); // SIGKILL right after the answer

    let served = Served::start(dir.path());
    let timer = served.get("/api/timer", &secretary).await;
    assert_eq!(timer["state"], "running", "{timer}");
    assert_eq!(timer["slot"]["order"], 3);
    let drift = (timer["deadline_ms"].as_i64().unwrap() - deadline).abs();
    assert!(drift <= 10, "deadline moved by {drift} ms");
    let paused = post(
        &served,
        "/api/timer/pause",
        &secretary,
        serde_json::json!({}),
    )
    .await;
    drop(served);

    let served = Served::start(dir.path());
    let timer = served.get("/api/timer", &secretary).await;
    assert_eq!(
        (timer["state"].as_str(), timer["remaining_ms"].as_i64()),
        (Some("paused"), paused["remaining_ms"].as_i64())
    );
    let agenda = served.get("/api/agenda", &secretary).await;
    assert_eq!(agenda["slots"][2]["added_ms"], 45_000, "history intact");
    assert_eq!(agenda["slots"][2]["pauses"], 1);
}

#[test]
fn a_synthetic_roster_and_its_keys_are_ready_for_serve_and_simulate() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["roster", "--synthetic", "3321", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8(output.stdout).unwrap();
    assert_eq!(csv.lines().count(), 3322);
    assert!(csv.starts_with("code,name,kind,former_district\n00001,"));
    let sites = dir.path().join("sites.csv");
    std::fs::write(&sites, &csv).unwrap();
    let check = Command::new(BIN)
        .args(["check", "--sites"])
        .arg(&sites)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("3321 sites"),
        "{check:?}"
    );
    let keys = diemcau::tools::simulate::site_keys(
        &std::fs::read_to_string(dir.path().join("secrets.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(keys.len(), 3321);

    let too_many = Command::new(BIN)
        .args([
            "simulate",
            "--server",
            "http://127.0.0.1:9",
            "--sites",
            "4000",
            "--keys",
        ])
        .arg(dir.path().join("secrets.toml"))
        .output()
        .unwrap();
    assert!(!too_many.status.success());
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("keys for 3321 sites, not 4000"));
}

#[test]
fn bench_measures_the_service_beside_the_baseline_and_writes_json() {
    let _turn = EXCLUSIVE.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = Command::new(BIN)
        .args([
            "bench",
            "--sites",
            "30",
            "--seconds",
            "1",
            "--probe-interval-ms",
            "200",
            "--changes",
            "10",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("CPU per round trip, service ÷ baseline"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for side in ["service", "baseline"] {
        assert!(
            report[side]["probe_round_trips"].as_u64().unwrap() > 0,
            "{side}: {report}"
        );
        assert!(report[side]["rss_peak_bytes"].as_u64().unwrap() > 0);
    }
    assert!(report["cpu_ratio"].as_f64().unwrap().is_finite());
    assert_eq!(
        report["timer_fanout"]["samples"], 300,
        "10 commands × 30 sites"
    );
    assert_eq!(report["close_to_offline"]["samples"], 20);
    assert_eq!(
        report["baseline_fanout"]["samples"], 300,
        "the bare baseline broadcast the same 10 changes"
    );
    assert_eq!(
        report["timer_fanout_in_service"]["samples"], 10,
        "the service timed its own fan-out of each change"
    );
    assert_eq!(
        report["loopback_floor"]["written_and_read"]["samples"], 10,
        "the machine's floor was measured once per change: {report}"
    );
    for side in ["timer_fanout_cpu", "baseline_fanout_cpu"] {
        let server_ms = report[side]["server_ms"].as_f64().unwrap();
        assert!(
            server_ms.is_finite() && server_ms >= 0.0,
            "{side}: {report}"
        );
    }
    // kill -9, restart: the 10 sites still open are back, none refused.
    assert_eq!(report["reconnect"]["sites"], 10, "{report}");
    assert_eq!(report["reconnect"]["handshake_failures"], 0, "{report}");
    assert!(report["reconnect"]["all_online_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["degraded_transitions"], 0, "{report}");
}

#[tokio::test]
async fn no_key_ever_reaches_the_log_even_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start_with(dir.path(), "debug");
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let site_key = site_key_in(&secrets);
    let operator = secrets.role_key(Role::Operator).expose().to_string();

    let bridge = EchoingBridge::join_at(served.addr, SITE, &site_key).await;
    let mut refused = Client::connect_at(served.addr, "/ws/bridge").await;
    refused
        .hello(SITE, "0123456789abcdef0123456789abcdef")
        .await;
    assert_eq!(refused.expect_close().await, 4401);
    let http = reqwest::Client::new();
    http.get(format!("http://{}/api/status", served.addr))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    http.get(format!("http://{}/wall?key={operator}", served.addr))
        .send()
        .await
        .unwrap();
    http.get(format!("http://{}/api/status", served.addr))
        .bearer_auth("wrong-key-abc")
        .send()
        .await
        .unwrap();
    bridge.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = served.log.lock().unwrap().clone();
    assert!(log.contains("site connected"), "the log is captured: {log}");
    for key in [
        site_key.as_str(),
        operator.as_str(),
        "0123456789abcdef0123456789abcdef",
        "wrong-key-abc",
    ] {
        assert!(!log.contains(key), "a key reached the log");
    }
    for role in Role::ALL {
        assert!(!log.contains(secrets.role_key(role).expose()));
    }
}

#[tokio::test]
async fn keys_rotate_gives_a_new_key_that_the_running_service_takes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let old = site_key_in(&secrets);
    let bridge = EchoingBridge::join_at(served.addr, SITE, &old).await;

    let rotate = |args: &[&str]| {
        Command::new(BIN)
            .args(["keys", "rotate", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let output = rotate(&["--site", SITE, "--base-url", "http://10.0.0.5:8080/"]);
    assert!(output.status.success(), "{output:?}");
    let link = String::from_utf8(output.stdout).unwrap();
    let new = link
        .trim()
        .strip_prefix("http://10.0.0.5:8080/bridge?key=")
        .unwrap_or_else(|| panic!("a join link: {link}"));
    assert_ne!(new, old);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains(new),
        "the key goes to stdout only"
    );

    assert_eq!(bridge.closed_by_server().await, Some(4401));
    let _fresh = EchoingBridge::join_at(served.addr, SITE, new).await;

    for (args, says) in [
        (vec!["--site", "99999"], "not in the roster"),
        (vec!["--site", "phuong-1"], "not a 5-digit site code"),
        (vec!["--role", "chairman"], "possible values"),
        (vec![], "--site"),
    ] {
        let output = rotate(&args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// Sets the service's file size limit: 0 and no file may grow (the disk refuses
/// writes, as when it is full); `None` lifts it.
fn limit_file_size(served: &Served, bytes: Option<u64>) {
    let limit = bytes.unwrap_or(rlimit::INFINITY);
    rlimit::prlimit(
        served.child.id() as i32,
        rlimit::Resource::FSIZE,
        Some((limit, rlimit::INFINITY)),
        None,
    )
    .expect("prlimit on our own child");
}

#[tokio::test]
async fn when_the_disk_refuses_writes_the_wall_and_timer_go_on_and_every_write_lands_later() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let key = |role| secrets.role_key(role).expose().to_string();
    let (operator, secretary) = (key(Role::Operator), key(Role::Secretary));
    let site_key = site_key_in(&secrets);
    let http = reqwest::Client::new();
    let url = |addr: SocketAddr, path: &str| format!("http://{addr}{path}");
    let bridge = EchoingBridge::join_at(served.addr, SITE, &site_key).await;

    limit_file_size(&served, Some(0));
    // The secretary starts a slot and a site drops, while nothing can be written.
    // (`post` asserts 200: the timer is run from memory.)
    let started = post(
        &served,
        "/api/timer/start",
        &secretary,
        serde_json::json!({"slot": 1}),
    )
    .await;
    let deadline_ms = started["deadline_ms"].clone();
    bridge.close().await;
    let wait = tokio::time::Instant::now() + WAIT;
    while served.get(&format!("/api/sites/{SITE}"), &operator).await["state"] != "offline" {
        assert!(
            tokio::time::Instant::now() < wait,
            "the wall still follows the sites"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = http.get(url(served.addr, "/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.json::<serde_json::Value>().await.unwrap()["message"].to_string();
    assert!(
        reason.contains("store not writable") && reason.contains("kept in memory"),
        "{reason}"
    );
    let metrics = served.metrics(&operator).await;
    assert!(
        metrics.contains("\ndiemcau_store_writable 0\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("\ndiemcau_store_pending_writes 0\n"));
    assert!(
        served.log().contains("STORE CANNOT WRITE"),
        "a loud log line"
    );
    assert_eq!(
        served.get("/api/timer", &operator).await["state"],
        "running"
    );

    // The disk is back: everything kept is written, without a restart.
    limit_file_size(&served, None);
    let wait = tokio::time::Instant::now() + WAIT;
    while http
        .get(url(served.addr, "/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            tokio::time::Instant::now() < wait,
            "ready again once the disk takes writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = served.metrics(&operator).await;
    assert!(metrics.contains("\ndiemcau_store_writable 1\n"));
    assert!(metrics.contains("\ndiemcau_store_pending_writes 0\n"));
    assert!(served.log().contains("store writable again"));

    // Proof that it is on disk: kill -9 and start again.
    drop(served);
    let served = Served::start(dir.path());
    let timer = served.get("/api/timer", &operator).await;
    assert_eq!(timer["state"], "running", "{timer}");
    assert_eq!(timer["deadline_ms"], deadline_ms, "the same deadline");
    let site = served.get(&format!("/api/sites/{SITE}"), &operator).await;
    let reasons: Vec<&str> = site["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("socket closed by the site")),
        "the drop during the outage was stored: {reasons:?}"
    );
}

/// The store file is whole: SQLite's own integrity check, read straight from disk.
fn store_is_intact(data_dir: &Path) {
    let conn = rusqlite::Connection::open(data_dir.join("diemcau.sqlite3")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// A pseudo-random pause, so the kill lands at a different moment on every run.
fn random_pause(max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(50 + nanos % max_ms)
}

#[tokio::test]
async fn kill_9_during_a_burst_of_transitions_and_timer_commands_loses_nothing_acknowledged() {
    let _turn = EXCLUSIVE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let secretary = secrets.role_key(Role::Secretary).expose().to_string();
    let addr = served.addr;
    post(
        &served,
        "/api/timer/start",
        &secretary,
        serde_json::json!({"slot": 1}),
    )
    .await;

    // Sites joining and leaving as fast as they can: a burst of transitions and sessions.
    let sites: Vec<(String, String)> = roster()
        .sites()
        .iter()
        .take(40)
        .map(|s| {
            (
                s.id.to_string(),
                secrets.site_key(s.id).unwrap().expose().to_string(),
            )
        })
        .collect();
    let churn: Vec<_> = sites
        .into_iter()
        .map(|(site, key)| {
            tokio::spawn(async move {
                loop {
                    let Ok((mut ws, _)) =
                        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/bridge")).await
                    else {
                        return;
                    };
                    let hello = serde_json::json!({"type": "hello", "site": site, "key": key, "agent": "sim", "version": "churn"});
                    use futures_util::SinkExt;
                    if ws.send(tokio_tungstenite::tungstenite::Message::text(hello.to_string())).await.is_err() {
                        return;
                    }
                    let _ = ws.close(None).await;
                }
            })
        })
        .collect();
    // Timer commands all along; each answer is an acknowledgement.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(None::<serde_json::Value>));
    let commands = {
        let (acked, secretary) = (acked.clone(), secretary.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let Ok(answer) = http
                    .post(format!("http://{addr}/api/timer/adjust"))
                    .bearer_auth(&secretary)
                    .json(&serde_json::json!({"seconds": 1}))
                    .send()
                    .await
                else {
                    return;
                };
                if let Ok(snapshot) = answer.json::<serde_json::Value>().await {
                    *acked.lock().unwrap() = Some(snapshot);
                }
            }
        })
    };
    tokio::time::sleep(random_pause(700)).await;
    drop(served); // SIGKILL in the middle of it all
    let last = acked
        .lock()
        .unwrap()
        .clone()
        .expect("some commands were answered");
    commands.abort();
    for task in churn {
        task.abort();
    }

    store_is_intact(dir.path());
    let served = Served::start(dir.path());
    let ready = reqwest::get(format!("http://{}/readyz", served.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "the store opens cleanly");
    let timer = served.get("/api/timer", &secretary).await;
    let (rev, last_rev) = (
        timer["rev"].as_u64().unwrap(),
        last["rev"].as_u64().unwrap(),
    );
    // The answer in flight at the kill may or may not have been stored; none before it is lost.
    assert!(rev >= last_rev, "rev {rev} < acknowledged {last_rev}");
    if rev == last_rev {
        assert_eq!(timer["deadline_ms"], last["deadline_ms"]);
    }
    assert_eq!(timer["state"], "running");
}

#[tokio::test]
async fn kill_9_right_after_a_rehearsal_verdict_keeps_the_verdict() {
    let _turn = EXCLUSIVE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start_configured(
        dir.path(),
        "[rehearsal]\nidle_seconds = 1\nthroughput_seconds = 1\nprobe_interval_ms = 100\nwindow_ms = 100\nwarmup_ms = 200\n",
    );
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let site_key = site_key_in(&secrets);
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    let agent = Command::new(BIN)
        .args([
            "agent",
            "--server",
            &format!("http://{}", served.addr),
            "--site",
            SITE,
            "--key",
            &site_key,
            "--rehearse",
            "--technician",
            "Bình",
        ])
        .output()
        .unwrap();
    let verdict = agent
        .status
        .code()
        .expect("the agent exits with the verdict");
    assert!((0..=2).contains(&verdict), "{agent:?}");
    drop(served); // SIGKILL as soon as the technician has the verdict

    store_is_intact(dir.path());
    let served = Served::start(dir.path());
    let attempts = served.get("/api/rehearsals", &operator).await;
    let row = attempts["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .cloned()
        .unwrap_or_default();
    let expected = ["pass", "warn", "fail"][verdict as usize];
    assert_eq!(row["latest"]["verdict"], expected, "{row}");
    assert_eq!(row["latest"]["technician"], "Bình");
}

#[tokio::test]
async fn sigterm_under_load_stops_within_5s_closes_every_socket_with_1001_and_loses_nothing() {
    let _turn = EXCLUSIVE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    let secretary = secrets.role_key(Role::Secretary).expose().to_string();
    let addr = served.addr;
    // Every site on the line, a wall that reads and one that froze.
    let mut bridges = Vec::new();
    for site in roster().sites() {
        let key = secrets.site_key(site.id).unwrap().expose().to_string();
        bridges.push(EchoingBridge::join_at(addr, site.id.as_str(), &key).await);
    }
    let mut wall = Client::connect_at(addr, &format!("/ws/live?key={operator}")).await;
    let _frozen_wall = frozen_client(addr, &format!("/ws/live?key={operator}")).await;
    let last = start_and_adjust(&served, &secretary, 2, 30).await;

    let asked = std::time::Instant::now();
    sigterm(&served.child);
    let exit = loop {
        if let Some(exit) = served.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(6),
            "still running after 6 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = asked.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(took <= Duration::from_secs(5), "shutdown took {took:?}");
    for bridge in bridges {
        assert_eq!(bridge.closed_by_server().await, Some(1001));
    }
    assert_eq!(wall.expect_close().await, 1001);

    let served = Served::start(dir.path());
    let timer = served.get("/api/timer", &secretary).await;
    assert_eq!(timer["deadline_ms"], last["deadline_ms"], "{timer}");
    let site = served.get(&format!("/api/sites/{SITE}"), &operator).await;
    // The stop is the service's event: no site "went offline"; the restart dates the
    // sites' pause at the stop itself.
    let shutdown = &site["transitions"][0];
    assert_eq!(
        (shutdown["to"].as_str(), shutdown["reason"].as_str()),
        (
            Some("never_seen"),
            Some("server restarted; waiting for the site to reconnect")
        ),
        "{site}"
    );
    assert!(
        site["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["to"] != "offline"),
        "{site}"
    );
    let (stopped, detected) = (
        shutdown["at_ms"].as_i64().unwrap(),
        shutdown["detected_at_ms"].as_i64().unwrap(),
    );
    assert!(
        stopped < detected,
        "dated at the stop, seen at the start: {site}"
    );
}

/// The test site's key in `secrets`.
fn site_key_in(secrets: &Secrets) -> String {
    secrets
        .site_key(SITE.parse().unwrap())
        .unwrap()
        .expose()
        .to_string()
}

/// Asks a child to stop, as systemd or Ctrl-C in a terminal would.
fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_backup_taken_while_serving_is_a_data_dir_that_carries_on_with_history_timer_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let secretary = secrets.role_key(Role::Secretary).expose().to_string();
    let site_key = site_key_in(&secrets);
    let bridge = EchoingBridge::join_at(served.addr, SITE, &site_key).await;
    let answer = start_and_adjust(&served, &secretary, 4, 30).await;

    // The service keeps writing (pauses and resumes) while the copy is taken.
    let backups = tempfile::tempdir().unwrap();
    let copy = Command::new(BIN)
        .args(["backup", "--data-dir"])
        .arg(dir.path())
        .arg("--to")
        .arg(backups.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for command in ["pause", "resume"] {
        let path = format!("/api/timer/{command}");
        post(&served, &path, &secretary, serde_json::json!({})).await;
    }
    let copy = copy.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&copy.stdout);
    assert!(
        copy.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    drop(bridge);
    drop(served);

    let folder = std::fs::read_dir(backups.path())
        .unwrap()
        .next()
        .expect("one backup folder")
        .unwrap()
        .path();
    assert!(said.contains(folder.to_str().unwrap()), "{said}");
    assert!(
        folder
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("diemcau-"),
        "{folder:?}"
    );
    let restored = Served::start(&folder);
    let timer = restored.get("/api/timer", &secretary).await;
    assert_eq!(timer["slot"]["order"], 4, "{timer}");
    let agenda = restored.get("/api/agenda", &secretary).await;
    let slot = &agenda["slots"][3];
    assert_eq!(slot["added_ms"], 30_000, "{slot}");
    // The copy is one moment: before the pause, between pause and resume, or after.
    match (timer["state"].as_str(), slot["pauses"].as_i64()) {
        (Some("running"), Some(0)) => assert_eq!(timer["deadline_ms"], answer["deadline_ms"]),
        (Some("paused"), Some(1)) => assert!(timer["remaining_ms"].as_i64().unwrap() > 0),
        (Some("running"), Some(1)) => {}
        other => panic!("not a moment the service was in: {other:?} {timer}"),
    }
    let site = restored.get(&format!("/api/sites/{SITE}"), &site_key).await;
    let history: Vec<_> = site["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["never_seen", "online"],
        "the copy's history, and the site's own key still works: {site}"
    );
}

#[tokio::test]
async fn sigterm_while_the_disk_refuses_writes_saves_them_elsewhere_exits_nonzero_and_the_next_start_replays_them()
 {
    let dir = tempfile::tempdir().unwrap();
    let recovery = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!("recovery_dir = \"{}\"\n", recovery.path().display());
    let mut served = Served::start_configured(&data, &config);
    let (secrets, _) = Secrets::load_or_create(&data, &roster()).unwrap();
    let key = |role| secrets.role_key(role).expose().to_string();
    let (operator, secretary) = (key(Role::Operator), key(Role::Secretary));
    let bridge = EchoingBridge::join_at(served.addr, SITE, &site_key_in(&secrets)).await;
    while served.get(&format!("/api/sites/{SITE}"), &operator).await["state"] != "online" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No file of the service may grow past its size now: the database and its WAL
    // are full, a small file elsewhere still fits.
    let wal = std::fs::metadata(data.join("diemcau.sqlite3-wal"))
        .unwrap()
        .len();
    limit_file_size(&served, Some(wal.max(16 * 1024)));
    let started = post(
        &served,
        "/api/timer/start",
        &secretary,
        serde_json::json!({"slot": 1}),
    )
    .await;
    bridge.close().await;
    let wait = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = reqwest::get(format!("http://{}/readyz", served.addr))
            .await
            .unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(tokio::time::Instant::now() < wait, "the disk never refused");
        post(
            &served,
            "/api/timer/adjust",
            &secretary,
            serde_json::json!({"seconds": 1}),
        )
        .await;
    }
    // Acknowledged while nothing can be written: it must not be lost at the stop.
    post(
        &served,
        "/api/timer/adjust",
        &secretary,
        serde_json::json!({"seconds": 30}),
    )
    .await;
    let deadline_ms = served.get("/api/timer", &operator).await["deadline_ms"].clone();
    assert_ne!(
        deadline_ms, started["deadline_ms"],
        "adjusted while the disk refused"
    );

    sigterm(&served.child);
    let exit = served.child.wait().unwrap();
    assert!(
        !exit.success(),
        "a stop that could not store everything is not clean"
    );
    let log = served.log();
    assert!(
        log.contains("STOPPED WITH RECORDS NOT IN THE DATABASE"),
        "{log}"
    );
    let files: Vec<_> = std::fs::read_dir(recovery.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let saved = std::fs::read_to_string(&files[0]).unwrap();
    assert!(saved.contains("INSERT INTO timer_commands"), "{saved}");
    assert!(
        log.contains(&files[0].display().to_string()),
        "the log names the file"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&files[0]).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    drop(served);

    // The disk has room again: the next start replays the file before anything else.
    let served = Served::start_configured(&data, &config);
    assert!(
        served.log().contains("replayed the records"),
        "{}",
        served.log()
    );
    let timer = served.get("/api/timer", &operator).await;
    assert_eq!(timer["state"], "running", "{timer}");
    assert_eq!(
        timer["deadline_ms"], deadline_ms,
        "every acknowledged adjust is there"
    );
    let site = served.get(&format!("/api/sites/{SITE}"), &operator).await;
    let reasons: Vec<_> = site["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].clone())
        .collect();
    assert!(
        reasons.iter().filter(|to| *to == "offline").count() >= 1,
        "{site}"
    );
    let left: Vec<_> = std::fs::read_dir(recovery.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| n.to_string_lossy().contains(".replayed-")),
        "{left:?}"
    );
}

#[tokio::test]
async fn two_kill_9s_are_the_services_downtime_and_each_sites_uptime_stays_true_to_01s() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = Served::start(dir.path());
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster()).unwrap();
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    let site_key = site_key_in(&secrets);
    let online_at = |site: serde_json::Value| -> i64 {
        site["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["to"] == "online")
            .unwrap()["at_ms"]
            .as_i64()
            .unwrap()
    };
    let wait_online = |served: &Served| {
        let served_addr = served.addr;
        let operator = operator.clone();
        async move {
            let http = reqwest::Client::new();
            loop {
                let site: serde_json::Value = http
                    .get(format!("http://{served_addr}/api/sites/{SITE}"))
                    .bearer_auth(&operator)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if site["state"] == "online" {
                    return site;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Truth, from outside: the site is up from each welcome until each kill.
    let mut truth_up = 0;
    let mut dead = Vec::new();
    let from = now_ms();
    for down_for in [Duration::from_millis(1500), Duration::from_millis(2500)] {
        let _bridge = EchoingBridge::join_at(served.addr, SITE, &site_key).await;
        let up_since = online_at(wait_online(&served).await);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let killed = now_ms();
        served.child.kill().unwrap(); // SIGKILL: no goodbye, no last write
        served.child.wait().unwrap();
        truth_up += killed - up_since;
        tokio::time::sleep(down_for).await;
        drop(served);
        let restarted = now_ms();
        served = Served::start(dir.path());
        dead.push((killed, restarted));
    }
    let _bridge = EchoingBridge::join_at(served.addr, SITE, &site_key).await;
    let up_since = online_at(wait_online(&served).await);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let to = now_ms();
    truth_up += to - up_since;

    let report = served
        .get(&format!("/api/report?from={from}&to={to}"), &operator)
        .await;
    let downtime = report["service_downtime"].as_array().unwrap();
    assert_eq!(downtime.len(), 2, "{report}");
    for ((killed, restarted), listed) in dead.iter().zip(downtime) {
        let (f, t) = (
            listed["from_ms"].as_i64().unwrap(),
            listed["to_ms"].as_i64().unwrap(),
        );
        assert!(
            (killed - f).abs() <= 100 && f <= *killed + 5,
            "down from {f}, killed at {killed}"
        );
        assert!(
            t >= *restarted && t - restarted < 3000,
            "down until {t}, restarted at {restarted}"
        );
        assert_eq!(listed["cause"], "crash");
    }
    let site = report_row(&report, SITE);
    let up_ms = site["up_ms"].as_i64().unwrap();
    assert!(
        (up_ms - truth_up).abs() <= 100,
        "uptime {up_ms} ms against the truth {truth_up} ms: {site}"
    );
    assert_eq!(
        site["outages"], 0,
        "the service's downtime is not the site's outage"
    );
    let csv = reqwest::Client::new()
        .get(format!(
            "http://{}/api/report.csv?from={from}&to={to}",
            served.addr
        ))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.matches("Máy chủ ngừng hoạt động: ").count(), 2, "{csv}");
}

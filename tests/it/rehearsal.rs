//! The rehearsal check end to end: `diemcau agent --rehearse` against a real server.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_diemcau");

async fn agent(app: &TestApp, extra: &[&str]) -> (i32, String) {
    let output = site_agent(app, &app.url(""))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("agent finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    (output.status.code().unwrap_or(-1), stdout)
}

#[tokio::test]
async fn agent_rehearse_passes_on_loopback_and_the_result_is_stored_and_exported() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(short_check).await;
    let (code, stdout) = agent(
        &app,
        &[
            "--rehearse",
            "--technician",
            "Nguyễn Văn An",
            "--checked",
            "camera,micro",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("ĐẠT (pass)"), "{stdout}");
    assert!(stdout.contains("Tải lên") && stdout.contains("Mbps"));

    let (status, board) = app.get("/api/rehearsals", Some(app.key("operator"))).await;
    assert_eq!(status, 200);
    assert_eq!(board["counts"]["pass"], 1);
    assert_eq!(board["counts"]["not_checked"], 91);
    let site = board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .unwrap();
    let latest = &site["latest"];
    assert_eq!(
        (latest["verdict"].as_str(), latest["technician"].as_str()),
        (Some("pass"), Some("Nguyễn Văn An"))
    );
    assert_eq!(latest["checklist"]["camera"], true);
    assert_eq!(latest["checklist"]["loa"], false);
    let figures = &latest["figures"];
    for key in [
        "upload_mbps",
        "download_mbps",
        "rtt_median_ms",
        "jitter_ms",
        "loaded_rise_ms",
        "stalled_pct",
        "offset_uncertainty_ms",
    ] {
        assert!(figures[key].is_number(), "{key} measured: {figures}");
    }
    eprintln!("loopback rehearsal figures: {figures}");
    assert!(figures["upload_mbps"].as_f64().unwrap() >= 4.0);
    assert!(figures["download_mbps"].as_f64().unwrap() >= 4.0);
    assert_eq!(latest["rows"].as_array().unwrap().len(), 8);

    let (status, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    assert_eq!(
        (status, own["attempts"].as_array().unwrap().len()),
        (200, 1)
    );
    let (status, _) = app.get("/api/rehearsals", Some(app.key("display"))).await;
    assert_eq!(status, 403);
    let text = app
        .get_csv("/api/rehearsals.csv", app.key("operator"))
        .await;
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("05443,Phường Phan Đình Phùng,")
    );
    assert!(text.contains(",Nguyễn Văn An,Đạt,"));
}

#[tokio::test]
async fn the_throughput_test_is_refused_while_a_slot_runs() {
    let app = spawn_app(short_check).await;
    app.start_slot(1).await;
    let (code, stdout) = agent(&app, &["--rehearse", "--technician", "An"]).await;
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("Đang có phần tham luận"), "{stdout}");
    let (_, board) = app.get("/api/rehearsals", Some(app.key("operator"))).await;
    assert_eq!(
        board["counts"]["not_checked"], 92,
        "nothing ran, nothing stored"
    );
}

#[tokio::test]
async fn a_check_whose_site_does_not_come_back_is_stored_as_failed() {
    let app = spawn_app(|c| {
        short_check(c);
        c.rehearsal.idle_seconds = 30;
        c.rehearsal.reconnect_grace_seconds = 1;
    })
    .await;
    let mut client = Client::join(&app, SITE).await;
    client
        .send(json!({"type": "check_request", "technician": "An", "checklist": {}}))
        .await;
    let start = client.recv_type("check_start").await;
    assert_eq!(start["phase"], "latency");
    drop(client);

    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
        if let Some(attempt) = own["attempts"].as_array().and_then(|a| a.first()) {
            assert_eq!(attempt["verdict"], "fail");
            assert_eq!(attempt["figures"]["disconnects"], 1);
            assert_eq!(attempt["figures"]["back_within_10s"], false);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the interrupted check was not stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays the client's half of a check until its result: echoes, download windows,
/// upload frames.
async fn finish_check(client: &mut Client) -> serde_json::Value {
    let mut download: Option<(
        std::time::Instant,
        std::time::Instant,
        u64,
        Vec<u64>,
        serde_json::Value,
    )> = None;
    let mut upload: Option<(std::time::Instant, usize)> = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "no check_result");
        // Upload data spread over the whole test, as a real client sends it.
        if let Some((until, bytes)) = upload {
            if std::time::Instant::now() < until {
                client.send_binary(vec![0; bytes]).await;
            } else {
                upload = None;
            }
        }
        if let Some((_, ends, _, windows, check)) = &download
            && std::time::Instant::now() >= *ends
        {
            client.send(json!({"type": "check_report", "check": check, "phase": "download", "windows_bytes": windows})).await;
            download = None;
        }
        let frame = match client.recv_any(Duration::from_millis(10)).await {
            None => continue,
            Some(Err(bytes)) => {
                if let Some((started, _, window_ms, windows, _)) = download.as_mut() {
                    let i = (started.elapsed().as_millis() as u64 / *window_ms) as usize;
                    if windows.len() <= i {
                        windows.resize(i + 1, 0);
                    }
                    windows[i] += bytes as u64;
                }
                continue;
            }
            Some(Ok(frame)) => frame,
        };
        match frame["type"].as_str().unwrap_or("") {
            "probe" => {
                let now = now_ms();
                client.send(json!({"type": "echo", "seq": frame["seq"], "server_ms": frame["server_ms"], "client_recv_ms": now, "client_send_ms": now})).await;
            }
            "check_start" if frame["phase"] == "download" => {
                let started = std::time::Instant::now();
                let ends = started + Duration::from_secs(frame["seconds"].as_u64().unwrap());
                download = Some((
                    started,
                    ends,
                    frame["window_ms"].as_u64().unwrap(),
                    Vec::new(),
                    frame["check"].clone(),
                ));
            }
            "check_start" if frame["phase"] == "upload" => {
                let seconds = frame["seconds"].as_u64().unwrap();
                upload = Some((
                    std::time::Instant::now() + Duration::from_secs(seconds),
                    frame["frame_bytes"].as_u64().unwrap() as usize,
                ));
            }
            "check_result" => return frame,
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_site_back_within_the_grace_carries_on_and_the_drop_is_a_warning() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|c| {
        short_check(c);
        c.rehearsal.idle_seconds = 2;
    })
    .await;
    let mut client = Client::join(&app, SITE).await;
    client
        .send(json!({"type": "check_request", "technician": "An", "checklist": {}}))
        .await;
    assert_eq!(client.recv_type("check_start").await["phase"], "latency");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut back = Client::join(&app, SITE).await;
    let resumed = back.recv_type("check_start").await;
    assert_eq!(
        resumed["phase"], "latency",
        "the check carries on where it was"
    );
    let result = finish_check(&mut back).await;
    let row = result["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "disconnects")
        .unwrap()
        .clone();
    assert_eq!(
        (row["figure"].as_f64(), row["verdict"].as_str()),
        (Some(1.0), Some("warn")),
        "{result}"
    );
    assert_eq!(result["verdict"], "warn", "{result}");
    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    assert_eq!(
        own["attempts"].as_array().unwrap().len(),
        1,
        "one check, not two"
    );
    assert_eq!(own["attempts"][0]["figures"]["back_within_10s"], true);
}

#[tokio::test]
async fn the_agent_reconnects_after_the_server_restarts() {
    let _turn = EXCLUSIVE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let first = spawn_app_at(dir.path(), &listen, fast).await;
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "agent",
            "--server",
            &first.url(""),
            "--site",
            SITE,
            "--key",
            first.key(SITE),
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    first.wait_for_state(SITE, "online", WAIT).await;
    first.stop().await;

    let second = spawn_app_at(dir.path(), &listen, fast).await;
    let site = second
        .wait_for_state(SITE, "online", Duration::from_secs(10))
        .await;
    assert_eq!(site["agent"], "agent");
    assert_eq!(site["reconnects"], 1);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_schedule_is_generated_or_imported_and_missed_slots_are_listed_for_a_retest() {
    let app = spawn_app(fast).await;
    let post = |body: reqwest::Body, content_type: &'static str, key: String| {
        let request = app
            .http
            .post(app.url("/api/rehearsals/schedule"))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let operator = app.key("operator").to_string();
    let generate = json!({"days": ["2026-11-24", "2026-11-25"], "day_start": "08:00", "day_end": "16:00", "minutes": 10});
    let (status, answer) = post(
        generate.to_string().into(),
        "application/json",
        operator.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["slots"].as_u64()),
        (200, Some(92)),
        "{answer}"
    );
    let (status, answer) = post(
        json!({"days": ["2026-11-24"], "day_end": "09:00"})
            .to_string()
            .into(),
        "application/json",
        operator.clone(),
    )
    .await;
    assert_eq!(status, 400, "too little time: {answer}");
    assert!(answer["message"].as_str().unwrap().contains("not 92"));
    assert_eq!(
        post("{}".into(), "application/json", app.key(SITE).to_string())
            .await
            .0,
        403
    );

    // Import one slot that is already over: the site missed it.
    let csv = "code,start,minutes\n05443,24/11/2026 08:30,15\n";
    let (status, answer) = post(csv.into(), "text/csv", operator.clone()).await;
    assert_eq!((status, answer["slots"].as_u64()), (200, Some(1)));
    let (status, answer) = post(
        "code,start,minutes\n05443,tomorrow,15\n".into(),
        "text/csv",
        operator,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("schedule.csv:2:"),
        "{answer}"
    );

    let (_, board) = app.get("/api/rehearsals", Some(app.key("operator"))).await;
    assert_eq!(board["counts"]["retest"], 1);
    let site = board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .unwrap()
        .clone();
    assert_eq!(site["retest"], true);
    assert_eq!(
        site["slot"]["ends_ms"].as_i64().unwrap() - site["slot"]["starts_ms"].as_i64().unwrap(),
        15 * 60_000
    );
    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    assert!(
        own["slot"]["starts_ms"].is_number(),
        "the bridge page shows the site its slot"
    );
}

#[tokio::test]
async fn a_technician_name_a_spreadsheet_would_run_is_exported_as_text() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(short_check).await;
    let typed = "=HYPERLINK(\"http://evil.example\",\"Nguyễn\")";
    let (code, stdout) = agent(&app, &["--rehearse", "--technician", typed]).await;
    assert_eq!(code, 0, "{stdout}");
    let text = app
        .get_csv("/api/rehearsals.csv", app.key("operator"))
        .await;
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"Nguyễn\"\")\","),
        "the cell starts with a quote mark, the name is kept: {row}"
    );
    let (_, board) = app.get("/api/rehearsals", Some(app.key("operator"))).await;
    assert_eq!(
        board["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == SITE)
            .unwrap()["latest"]["technician"],
        typed,
        "only the spreadsheet copy is neutralised"
    );
}

#[tokio::test]
async fn a_site_starts_a_bounded_number_of_checks_an_hour() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|c| {
        short_check(c);
        c.rehearsal.max_attempts_per_hour = 1;
    })
    .await;
    let (code, stdout) = agent(&app, &["--rehearse", "--technician", "An"]).await;
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout) = agent(&app, &["--rehearse", "--technician", "An"]).await;
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("Đã kiểm tra 1 lần trong một giờ"),
        "{stdout}"
    );
    let (_, board) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    assert_eq!(board["attempts"].as_array().unwrap().len(), 1, "one stored");
}

//! What one peer may make the service do, and what the page cookie may do: the limits
//! and rules of README's "Security" section, each tried the way an attacker would.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn integers_from_clients_out_of_range_are_a_400_never_a_wrap() {
    let app = spawn_app(fast).await;
    app.start_slot(1).await;
    let secretary = app.key("secretary");
    for body in [
        r#"{"seconds": -9223372036854775808}"#,
        r#"{"seconds": 9223372036854775807}"#,
        r#"{"seconds": 99999999999999999999}"#,
        r#"{"seconds": 1e300}"#,
        r#"{"seconds": 3601}"#,
    ] {
        let response = app
            .http
            .post(app.url("/api/timer/adjust"))
            .bearer_auth(secretary)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
    }
    let (status, _) = app
        .post(
            "/api/timer/select",
            Some(secretary),
            json!({"slot": 4294967296u64}),
        )
        .await;
    assert_eq!(status, 400, "a slot beyond u32");
    let (_, timer) = app.get("/api/timer", Some(secretary)).await;
    assert_eq!(timer["added_ms"], 0, "nothing was adjusted: {timer}");
    assert_eq!(timer["state"], "running");
}

/// The page cookie a key's link hands out (`name=value`).
async fn page_cookie(app: &TestApp, page: &str, who: &str) -> String {
    let response = app
        .http
        .get(app.url(&format!("{page}?key={}", app.key(who))))
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn a_cookie_request_that_changes_something_must_come_from_the_services_own_origin() {
    let app = spawn_app(fast).await;
    let cookie = page_cookie(&app, "/console", "secretary").await;
    let own = format!("http://{}", app.addr);
    let other_port = format!("http://127.0.0.1:{}", app.addr.port() + 1);
    let post = |origin: Option<String>, bearer: bool| {
        let mut request = app.http.post(app.url("/api/timer/next"));
        request = if bearer {
            request.bearer_auth(app.key("secretary"))
        } else {
            request.header("cookie", &cookie)
        };
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(Some("https://evil.example".into()), false).await, 403);
    assert_eq!(post(Some(other_port.clone()), false).await, 403);
    assert_eq!(post(Some("null".into()), false).await, 403);
    assert_eq!(
        post(None, false).await,
        403,
        "no Origin: not from a page of ours"
    );
    let (_, timer) = app.get("/api/timer", Some(app.key("secretary"))).await;
    assert_eq!(timer["rev"], 0, "nothing was applied: {timer}");
    assert_eq!(post(Some(own.clone()), false).await, 200);
    assert_eq!(
        post(Some("https://evil.example".into()), true).await,
        200,
        "a bearer key is not a cookie: no origin rule"
    );
    // Reading with the cookie stays open to links and downloads.
    let read = app
        .http
        .get(app.url("/api/agenda.csv"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
}

#[tokio::test]
async fn a_live_feed_upgrade_on_the_cookie_from_another_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app(fast).await;
    let cookie = page_cookie(&app, "/wall", "operator").await;
    let upgrade = |origin: String| {
        let mut request = format!("ws://{}/ws/live", app.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match upgrade(format!("http://127.0.0.1:{}", app.addr.port() + 1)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("expected a 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let (mut feed, _) = upgrade(format!("http://{}", app.addr)).await.unwrap();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(WAIT, feed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.to_text().unwrap().contains("snapshot"), "{first}");
}

#[tokio::test]
async fn a_public_url_is_the_own_origin_and_makes_the_cookie_secure() {
    let app = spawn_app(|c| {
        fast(c);
        c.public_url = Some("https://diemcau.example.vn".into());
    })
    .await;
    let response = app
        .http
        .get(app.url(&format!("/console?key={}", app.key("secretary"))))
        .send()
        .await
        .unwrap();
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let status = app
        .http
        .post(app.url("/api/timer/next"))
        .header("cookie", &cookie)
        .header("origin", "https://diemcau.example.vn")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
}

#[tokio::test]
async fn a_key_in_the_address_opens_pages_and_sockets_but_not_the_api() {
    let app = spawn_app(fast).await;
    let operator = app.key("operator");
    for path in ["/api/status", "/api/sites.csv", "/api/report"] {
        let (status, body) = app.get(&format!("{path}?key={operator}"), None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{body}"
        );
    }
    let (status, _) = app.get_text(&format!("/wall?key={operator}")).await;
    assert_eq!(status, 200);
    let mut feed = Client::connect(&app, &format!("/ws/live?key={operator}")).await;
    assert_eq!(feed.recv().await["type"], "snapshot");
}

#[tokio::test]
async fn api_and_csv_answers_are_never_cached_nor_sniffed() {
    let app = spawn_app(fast).await;
    for path in [
        "/api/status",
        "/api/sites.csv",
        "/api/agenda.csv",
        "/api/nothing-here",
    ] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(app.key("operator"))
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

#[tokio::test]
async fn the_data_dir_and_every_file_the_service_writes_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // As an older version, or an installer without `-m 0700`, left it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = spawn_app_in(&data, fast).await;
    let _bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    let (status, _) = app
        .get_text(&format!("/wall?key={}", app.key("operator")))
        .await;
    assert_eq!(status, 200, "a page session is stored too");
    let running: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(running.iter().any(|n| n.ends_with("-wal")), "{running:?}");
    assert_eq!(
        diemcau::store::readable_by_others(&data),
        vec![],
        "while serving: {running:?}"
    );
    app.stop().await;
    let names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for expected in ["diemcau.sqlite3", "secrets.toml", "diemcau.lock"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    assert_eq!(
        diemcau::store::readable_by_others(&data),
        vec![],
        "the dir is 0700 and {names:?} are 0600"
    );
    for unit in ["deploy/diemcau.service", "deploy/diemcau-backup.service"] {
        let text = std::fs::read_to_string(unit).unwrap();
        assert!(text.contains("\nUMask=0077\n"), "{unit}");
    }
}

/// Bytes of every file in `dir` (the database, its WAL and SHM, the keys), once the
/// WAL is folded into the database: what is stored, not how far SQLite's WAL file has
/// grown (it is reused, up to its checkpoint size, whatever is written).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let db = rusqlite::Connection::open(dir.join("diemcau.sqlite3")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(db);
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Rows in one table of the service's database.
fn rows(app: &TestApp, table: &str) -> i64 {
    let db = rusqlite::Connection::open(app.data_dir.join("diemcau.sqlite3")).unwrap();
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn a_field_over_its_cap_is_refused_whole_and_nothing_of_it_is_stored() {
    let app = spawn_app(steady).await;
    let before = rows(&app, "sessions");
    let mut client = Client::connect(&app, "/ws/bridge").await;
    client
        .send(
            json!({"type": "hello", "site": SITE, "key": app.key(SITE), "agent": "agent",
                     "version": "v".repeat(60_000)}),
        )
        .await;
    let error = client.expect_error().await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("`version` is longer than 64"),
        "{error}"
    );
    assert_eq!(client.expect_close().await, 4400);
    app.state.store.flush().await.unwrap();
    assert_eq!(rows(&app, "sessions"), before, "no session was stored");
    assert_eq!(app.state_of(SITE).await, "never_seen");

    let mut site = Client::join(&app, SITE).await;
    site.send(json!({"type": "check_request", "technician": "A".repeat(81)}))
        .await;
    let error = site.expect_error().await;
    assert_eq!(error["code"], "too_long", "{error}");
    let many: serde_json::Map<String, serde_json::Value> =
        (0..17).map(|i| (format!("item{i}"), json!(true))).collect();
    site.send(json!({"type": "check_request", "technician": "An", "checklist": many}))
        .await;
    assert_eq!(site.expect_error().await["code"], "too_long");
    site.recv_type("probe").await; // still served: a bad frame, not a closed socket
    app.state.store.flush().await.unwrap();
    assert_eq!(rows(&app, "rehearsals"), 0, "no attempt started");
}

#[tokio::test]
async fn a_site_key_reconnecting_as_fast_as_it_can_for_20s_stores_under_1mb_and_others_keep_their_rtt()
 {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(steady).await;
    let healthy = EchoingBridge::join(&app, OTHER_SITE).await;
    app.wait_for_state(OTHER_SITE, "online", WAIT).await;
    app.state.store.flush().await.unwrap();
    let before = dir_bytes(&app.data_dir);
    let started = std::time::Instant::now();
    let (mut welcomed, mut refused) = (0, 0);
    while started.elapsed() < std::time::Duration::from_secs(20) {
        let mut client = Client::connect(&app, "/ws/bridge").await;
        // The longest hello the caps let through, each time.
        client
            .send(
                json!({"type": "hello", "site": SITE, "key": app.key(SITE), "agent": "agent",
                         "version": "v".repeat(64)}),
            )
            .await;
        match client.recv().await["type"].as_str() {
            Some("welcome") => welcomed += 1,
            _ => {
                assert_eq!(client.expect_close().await, 4429);
                refused += 1;
            }
        }
    }
    app.state.store.flush().await.unwrap();
    let grown = dir_bytes(&app.data_dir).saturating_sub(before);
    eprintln!(
        "20 s of reconnects: {welcomed} welcomed, {refused} refused, data dir +{grown} bytes"
    );
    assert!(welcomed <= 30, "at most a minute's connects: {welcomed}");
    assert!(refused > 100, "the loop ran flat out: {refused}");
    assert!(grown < 1 << 20, "the data dir grew by {grown} bytes");
    let rtt = app.site(OTHER_SITE).await["rtt_ms"].as_f64().unwrap();
    assert!(rtt < 50.0, "the healthy site's RTT went to {rtt} ms");
    assert_eq!(app.state_of(OTHER_SITE).await, "online");
    healthy.close().await;
}

#[tokio::test]
async fn pings_count_toward_the_flood_limit() {
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app(|c| {
        steady(c);
        c.protocol.max_frames_per_second = 50;
    })
    .await;
    let mut flood = Client::join(&app, SITE).await.into_inner();
    let close = flood_until_closed(&mut flood, std::time::Duration::from_micros(200), |_| {
        Message::Ping(vec![1, 2, 3].into())
    })
    .await;
    assert_eq!(close, Some(4429));
}

#[tokio::test]
async fn a_page_asking_for_snapshots_in_a_loop_gets_a_few_then_is_told_to_wait_then_closed() {
    let app = spawn_app(fast).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("operator"))).await;
    assert_eq!(feed.recv().await["type"], "snapshot");
    for _ in 0..6 {
        feed.send(json!({"type": "resync"})).await;
    }
    let mut answers = Vec::new();
    for _ in 0..6 {
        let frame = feed.recv().await;
        if frame["type"] == "snapshot" || frame["type"] == "error" {
            answers.push(
                frame["type"].as_str().unwrap().to_string()
                    + ":"
                    + frame["code"].as_str().unwrap_or(""),
            );
        }
    }
    assert_eq!(
        answers,
        [
            "snapshot:",
            "snapshot:",
            "snapshot:",
            "error:resync_too_often",
            "error:resync_too_often",
            "error:resync_too_often"
        ]
    );
    for seq in 0..40 {
        feed.send(json!({"type": "time", "client_ms": seq})).await;
    }
    assert_eq!(feed.expect_close().await, 4429);
}

#[tokio::test]
async fn one_key_sends_a_bounded_number_of_messages_a_minute() {
    let app = spawn_app(fast).await;
    let operator = app.key("operator");
    for i in 0..30 {
        let (status, answer) = app
            .post(
                "/api/messages",
                Some(operator),
                json!({"text": format!("tin {i}")}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let response = app
        .http
        .post(app.url("/api/messages"))
        .bearer_auth(operator)
        .json(&json!({"text": "một tin nữa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let wait: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let (status, _) = app
        .post(
            "/api/messages",
            Some(app.key("admin")),
            json!({"text": "admin"}),
        )
        .await;
    assert_eq!(status, 200, "another key has its own budget");
    app.state.store.flush().await.unwrap();
    assert_eq!(rows(&app, "notices"), 31);
}

#[tokio::test]
async fn connections_sending_only_blank_lines_at_the_cap_are_closed_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app(|c| {
        steady(c);
        c.protocol.max_connections = 20;
        c.protocol.handshake_timeout_ms = 800;
    })
    .await;
    let started = std::time::Instant::now();
    let mut blank: Vec<_> = Vec::new();
    for _ in 0..20 {
        blank.push(tokio::net::TcpStream::connect(app.addr).await.unwrap());
    }
    // Blank lines keep coming, as a slow-loris peer would send them.
    let feeders: Vec<_> = blank
        .into_iter()
        .map(|mut tcp| {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    if tcp.write_all(b"\r\n").await.is_err() {
                        return;
                    }
                    match tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        tcp.read(&mut buf),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for feeder in feeders {
        tokio::time::timeout(WAIT, feeder)
            .await
            .expect("every blank-line connection is closed at the deadline")
            .unwrap();
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(750), "{took:?}");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    let bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    bridge.close().await;
}

/// A TLS front (as nginx would be) for `app` on another port, with a certificate for
/// `localhost` signed by a private CA; returns its port and the CA's PEM.
async fn tls_front(app: &TestApp) -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = front.local_addr().unwrap().port();
    let backend = app.addr;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = front.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca.pem())
}

#[tokio::test]
async fn the_agent_speaks_wss_to_a_service_behind_tls_trusting_a_private_ca() {
    let app = spawn_app(steady).await;
    let (port, ca_pem) = tls_front(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let agent = |with_ca: bool| {
        let mut command = site_agent(&app, &format!("https://localhost:{port}"));
        command.stdout(std::process::Stdio::piped());
        if with_ca {
            command.arg("--ca").arg(&ca);
        }
        command.spawn().unwrap()
    };
    // Without the CA the certificate is not trusted: it never connects.
    let mut untrusted = agent(false);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.state_of(SITE).await, "never_seen");
    untrusted.kill().await.unwrap();
    let said = untrusted.wait_with_output().await.unwrap();
    let said = String::from_utf8_lossy(&said.stdout);
    assert!(said.to_lowercase().contains("certificate"), "{said}");

    let trusted = agent(true);
    let site = app.wait_for_state(SITE, "online", WAIT).await;
    assert_eq!(site["agent"], "agent");
    drop(trusted);

    // The simulator too: the roster's first site, over wss with the same CA.
    let _simulated = tokio::process::Command::new(env!("CARGO_BIN_EXE_diemcau"))
        .args([
            "simulate",
            "--server",
            &format!("https://localhost:{port}"),
            "--sites",
            "1",
        ])
        .arg("--keys")
        .arg(app.data_dir.join("secrets.toml"))
        .arg("--ca")
        .arg(&ca)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, sites) = app.get("/api/sites", Some(app.key("operator"))).await;
        let simulated = sites["sites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["agent"] == "sim" && s["state"] == "online");
        if simulated {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no simulated site came online over wss"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413() {
    let app = spawn_app(fast).await;
    let response = app
        .http
        .post(app.url("/api/messages"))
        .bearer_auth(app.key("operator"))
        .header("content-type", "application/json")
        .body(vec![b' '; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn a_client_that_reads_late_and_sends_still_gets_the_close_code() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app(|c| {
        steady(c);
        c.protocol.max_frames_per_second = 50;
        c.protocol.max_notices_per_minute = 10_000;
    })
    .await;
    // A tiny receive window that it does not read for a moment: what the service sends
    // waits in the service's send buffer, the close frame last.
    let mut client = frozen_client(app.addr, "/ws/bridge").await;
    client
        .send(Message::text(
            json!({"type": "hello", "site": SITE, "key": app.key(SITE), "agent": "agent", "version": "t"})
                .to_string(),
        ))
        .await
        .unwrap();
    let long = "Đề nghị các điểm cầu kiểm tra âm thanh. ".repeat(20);
    for _ in 0..5 {
        app.post(
            "/api/messages",
            Some(app.key("operator")),
            json!({"text": long, "to": "all"}),
        )
        .await;
    }
    for seq in 0..500 {
        let beat = json!({"type": "heartbeat", "seq": seq, "client_ms": 0});
        if client.send(Message::text(beat.to_string())).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let code = loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("an answer in time")
        {
            Some(Ok(Message::Close(close))) => break close.map(|c| u16::from(c.code)),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without its close code: {other:?}"),
        }
    };
    assert_eq!(code, Some(4429));
}

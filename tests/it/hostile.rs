//! Hostile input: arbitrary frames and bytes on the bridge socket, floods, malformed
//! HTTP. Each gets a documented answer, never a crash, and other sites keep being served.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// Error codes the bridge socket answers with (DESIGN.md, README).
const DOCUMENTED_ERRORS: &[&str] = &[
    "bad_json",
    "unknown_type",
    "bad_frame",
    "binary_not_allowed",
    "duplicate_hello",
    "check_busy",
    "check_refused",
    "slow_down",
];

#[derive(Debug, Clone)]
enum Fuzz {
    Text(String),
    Binary(Vec<u8>),
}

/// Frame-like objects (protocol names, values of any kind), arbitrary text, binary.
fn fuzz_frames() -> impl Strategy<Value = Fuzz> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|v| json!(v)),
        prop::collection::btree_map("[a-z_]{1,8}", any::<bool>(), 0..3).prop_map(|m| json!(m)),
    ];
    // Every type the server knows, one it only sends, and none.
    let kind = prop::sample::select([diemcau::protocol::KNOWN_TYPES, &["probe", ""]].concat());
    let field = prop::sample::select(vec![
        "site",
        "key",
        "agent",
        "seq",
        "server_ms",
        "client_recv_ms",
        "client_send_ms",
        "client_ms",
        "ref",
        "check",
        "phase",
        "windows_bytes",
        "technician",
        "checklist",
    ]);
    let object = (kind, prop::collection::vec((field, value), 0..6)).prop_map(|(kind, fields)| {
        let mut frame = serde_json::Map::new();
        frame.insert("type".into(), kind.into());
        for (name, value) in fields {
            frame.insert(name.into(), value);
        }
        Fuzz::Text(Value::Object(frame).to_string())
    });
    // Well-formed frames with arbitrary values: unknown seqs, impossible clock times.
    let valid = prop_oneof![
        (any::<u64>(), any::<i64>()).prop_map(|(seq, ms)| json!({"type": "heartbeat", "seq": seq, "client_ms": ms})),
        (any::<u64>(), any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(seq, a, b, c)| {
            json!({"type": "echo", "seq": seq, "server_ms": a, "client_recv_ms": b, "client_send_ms": c})
        }),
        "\\PC{0,40}".prop_map(|r| json!({"type": "ack", "ref": r})),
        ("\\PC{0,40}", "[a-z]{0,10}", prop::collection::vec(any::<u64>(), 0..8)).prop_map(|(check, phase, windows)| {
            json!({"type": "check_report", "check": check, "phase": phase, "windows_bytes": windows})
        }),
    ]
    .prop_map(|frame| Fuzz::Text(frame.to_string()));
    prop_oneof![
        4 => object,
        2 => valid,
        1 => "\\PC{0,200}".prop_map(Fuzz::Text),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Fuzz::Binary),
    ]
}

/// Proptest values drawn one by one, reproducible (the same seed every run).
fn draw<S: Strategy>(strategy: &S, runner: &mut TestRunner) -> S::Value {
    strategy.new_tree(runner).expect("a value").current()
}

/// Waits until the healthy site has been probed twice more and is still online.
async fn still_served(app: &TestApp, site: &str) {
    let before = app.site(site).await["probes"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT;
    while app.site(site).await["probes"].as_u64().unwrap() < before + 2 {
        assert!(Instant::now() < deadline, "{site} is no longer probed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.state_of(site).await, "online");
}

#[tokio::test]
async fn arbitrary_frames_on_a_site_socket_get_documented_errors_or_closes() {
    let app = spawn_app(|c| {
        fast(c);
        // Every fuzz frame gets its own answer rather than closing on the 11th bad one.
        c.protocol.max_bad_frames = 100_000;
        c.protocol.max_frames_per_second = 100_000;
    })
    .await;
    let healthy = EchoingBridge::join(&app, OTHER_SITE).await;
    let mut runner = TestRunner::deterministic();
    let strategy = fuzz_frames();
    let mut ws = Client::join(&app, SITE).await.into_inner();
    let (mut errors, mut accepted) = (0, 0);
    for _ in 0..400 {
        let frame = draw(&strategy, &mut runner);
        let message = match &frame {
            Fuzz::Text(text) => Message::text(text.clone()),
            Fuzz::Binary(bytes) => Message::binary(bytes.clone()),
        };
        ws.send(message).await.unwrap();
        // Its error marks the end of what the fuzz frame caused.
        ws.send(Message::text(r#"{"type":"sentinel"}"#))
            .await
            .unwrap();
        let mut answered = false;
        loop {
            let next = tokio::time::timeout(WAIT, ws.next())
                .await
                .unwrap_or_else(|_| panic!("{frame:?}: no answer within {WAIT:?}"));
            match next {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("server frames are JSON");
                    if value["type"] != "error" {
                        continue;
                    }
                    let code = value["code"].as_str().unwrap_or_default();
                    assert!(DOCUMENTED_ERRORS.contains(&code), "{frame:?} → {value}");
                    if value["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("sentinel")
                    {
                        break;
                    }
                    answered = true;
                }
                Some(Ok(Message::Close(close))) => {
                    let code = close.map(|c| u16::from(c.code));
                    assert!(
                        code.is_some_and(|c| [4400, 4413, 4429].contains(&c)),
                        "{frame:?} → close {code:?}"
                    );
                    ws = Client::join(&app, SITE).await.into_inner();
                    break;
                }
                Some(Ok(_)) => {} // a check's binary data, pings
                other => panic!("{frame:?} → the connection failed: {other:?}"),
            }
        }
        if answered { errors += 1 } else { accepted += 1 }
    }
    assert!(
        errors > 100 && accepted > 30,
        "the fuzz reached both sides: {errors} errors, {accepted} accepted"
    );
    still_served(&app, OTHER_SITE).await;
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    healthy.close().await;
}

/// A masked client frame, as RFC 6455 wants them.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Upgrades a raw TCP connection to `/ws/bridge` and says hello as `site`.
async fn raw_bridge(app: &TestApp, site: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(
        b"GET /ws/bridge HTTP/1.1\r\nHost: diemcau\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let hello = json!({"type": "hello", "site": site, "key": app.key(site), "agent": "agent", "version": "raw"});
    tcp.write_all(&client_frame(1, hello.to_string().as_bytes()))
        .await
        .unwrap();
    tcp
}

/// Reads server frames (unmasked) until a close frame; its code, if any.
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut bytes)).await;
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 => return None, // no frame of ours is that long
            n => (n as usize, 2),
        };
        let payload = &bytes[(at + header).min(bytes.len())..(at + header + len).min(bytes.len())];
        if opcode == 8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
        at += header + len;
    }
    None
}

#[tokio::test]
async fn arbitrary_bytes_after_the_handshake_end_the_connection_cleanly() {
    let app = spawn_app(|c| {
        fast(c);
        c.protocol.max_connects_per_minute = 1000; // 60 rounds, each a new connection
    })
    .await;
    let healthy = EchoingBridge::join(&app, OTHER_SITE).await;
    let mut runner = TestRunner::deterministic();
    let garbage = prop::collection::vec(any::<u8>(), 1..300);
    for round in 0..60 {
        let mut tcp = raw_bridge(&app, SITE).await;
        app.wait_for_state(SITE, "online", WAIT).await;
        let mut bytes = draw(&garbage, &mut runner);
        if round % 3 == 0 {
            // Text frames that are not UTF-8, correctly framed.
            bytes = client_frame(1, &[0xff, 0xfe, b'{', 0xc3]);
        }
        let _ = tcp.write_all(&bytes).await;
        if round % 3 == 0 {
            assert_eq!(close_code(&mut tcp).await, Some(1007), "not UTF-8");
        }
        // Whatever the bytes were, the server ends the connection or keeps serving it;
        // when the connection is gone, the site must be offline (no task died half-way).
        drop(tcp);
        let site = app.wait_for_state(SITE, "offline", WAIT).await;
        assert_eq!(site["connected"], false, "round {round}: {bytes:?}");
    }
    still_served(&app, OTHER_SITE).await;
    healthy.close().await;
}

#[tokio::test]
async fn a_site_sending_10000_frames_a_second_is_throttled_then_closed_and_others_keep_their_rtt() {
    let app = spawn_app(|c| {
        // Frames over the limit are dropped, echoes too: silence must not end it here.
        steady(c);
        c.protocol.max_frames_per_second = 50;
    })
    .await;
    let healthy = EchoingBridge::join(&app, OTHER_SITE).await;
    app.wait_for_state(OTHER_SITE, "online", WAIT).await;

    // A burst just over the limit is throttled: told to slow down, not closed.
    let mut bursty = Client::join(&app, SITE).await;
    for seq in 0..60 {
        bursty
            .send(json!({"type": "heartbeat", "seq": seq, "client_ms": now_ms()}))
            .await;
    }
    assert_eq!(bursty.expect_error().await["code"], "slow_down");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bursty.echo_next_probe().await;
    bursty.recv_type("probe").await; // still open, still probed
    assert_ne!(
        app.state_of(SITE).await,
        "offline",
        "a burst does not cost the connection"
    );
    drop(bursty);

    // 10,000 frames a second: closed with 4429.
    let mut flood = Client::join(&app, SITE).await.into_inner();
    let close = flood_until_closed(&mut flood, Duration::from_micros(100), |seq| {
        Message::text(json!({"type": "heartbeat", "seq": seq, "client_ms": now_ms()}).to_string())
    })
    .await;
    assert_eq!(close, Some(4429));
    let rtt = app.site(OTHER_SITE).await["rtt_ms"].as_f64().unwrap();
    assert!(rtt < 50.0, "the healthy site's RTT went to {rtt} ms");
    still_served(&app, OTHER_SITE).await;
    healthy.close().await;
}

/// Sends raw bytes as an HTTP request; returns the status code.
async fn raw_http(app: &TestApp, request: &[u8]) -> u16 {
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    let head = String::from_utf8_lossy(&answer);
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

#[tokio::test]
async fn malformed_http_gets_the_right_4xx_and_never_a_500() {
    let app = spawn_app(fast).await;
    let secretary = app.key("secretary").to_string();
    let http = reqwest::Client::new();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        http.post(app.url(path))
            .bearer_auth(&secretary)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        (
            "a 10 MB body",
            post("/api/timer/start", "application/json", vec![b' '; 10 << 20])
                .await
                .unwrap(),
            413,
        ),
        (
            "a form instead of JSON",
            post(
                "/api/timer/start",
                "application/x-www-form-urlencoded",
                b"slot=1".to_vec(),
            )
            .await
            .unwrap(),
            415,
        ),
        (
            "XML",
            post("/api/messages", "application/xml", b"<m>hi</m>".to_vec())
                .await
                .unwrap(),
            415,
        ),
        (
            "broken JSON",
            post(
                "/api/timer/start",
                "application/json",
                b"{\"slot\": ".to_vec(),
            )
            .await
            .unwrap(),
            400,
        ),
        (
            "JSON of the wrong shape",
            post(
                "/api/timer/start",
                "application/json",
                b"{\"slot\": \"four\"}".to_vec(),
            )
            .await
            .unwrap(),
            400,
        ),
        (
            "not UTF-8",
            post("/api/messages", "application/json", vec![0xff, 0xfe, 0x7b])
                .await
                .unwrap(),
            400,
        ),
        (
            "a bad window on the report",
            http.get(app.url("/api/report?from=yesterday"))
                .bearer_auth(app.key("operator"))
                .send()
                .await
                .unwrap(),
            400,
        ),
    ];
    for (case, response, expected) in cases {
        assert_eq!(response.status().as_u16(), expected, "{case}");
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|_| panic!("{case}: a JSON error"));
        assert!(body["message"].is_string(), "{case}: {body}");
    }

    // Raw requests: what a browser would never send.
    let huge_header = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: ".as_slice(),
        &[b'a'; 1 << 20],
        b"\r\n\r\n",
    ]
    .concat();
    let raw: Vec<(&str, &[u8], u16)> = vec![
        ("climbing out of the assets", b"GET /assets/../Cargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        ("climbing out, encoded", b"GET /assets/..%2f..%2fCargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        ("an encoded dot-dot", b"GET /assets/%2e%2e/%2e%2e/Cargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        ("a backslash", b"GET /assets/..%5c..%5cCargo.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
        ("a non-UTF-8 query", b"GET /api/report?from=%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401),
        ("a non-UTF-8 key", b"GET /api/status?key=%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401),
        ("a non-UTF-8 path", b"GET /api/sites/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 401),
        ("not HTTP at all", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        ("a huge header", &huge_header, 431),
    ];
    for (case, request, expected) in raw {
        let status = raw_http(&app, request).await;
        assert_eq!(status, expected, "{case}");
    }
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200, "still serving");
}

#[tokio::test]
async fn silent_connections_time_out_and_over_the_cap_new_ones_get_503_while_sites_are_served() {
    let _turn = EXCLUSIVE.lock().await; // a thousand sockets at once
    let app = spawn_app(|c| {
        steady(c);
        c.protocol.max_connections = 200;
        // Long enough that the thousand are all accepted before the first times out.
        c.protocol.handshake_timeout_ms = 1500;
    })
    .await;
    let mut healthy = EchoingBridge::join(&app, OTHER_SITE).await;

    // A connection that never sends a request is closed after the handshake timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed, not answered: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    // A thousand at once: the cap holds, the rest are told 503 at once.
    let junk =
        futures_util::future::join_all((0..1000).map(|_| TcpStream::connect(app.addr))).await;
    let answers = futures_util::future::join_all(junk.into_iter().map(|tcp| async move {
        let mut tcp = tcp.expect("the kernel accepts the connection");
        let mut answer = Vec::new();
        let started = Instant::now();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
        (answer.starts_with(b"HTTP/1.1 503"), started.elapsed())
    }));
    // Meanwhile the connected site is still probed and answers.
    let probed = async {
        let (mut probes, until) = (0, Instant::now() + Duration::from_millis(500));
        while Instant::now() < until {
            if let Ok(Some(frame)) =
                tokio::time::timeout(Duration::from_millis(100), healthy.frames.recv()).await
            {
                probes += usize::from(frame["type"] == "probe");
            }
        }
        probes
    };
    let (answers, probes) = tokio::join!(answers, probed);
    assert!(
        probes >= 4,
        "the connected site got {probes} probes in 500 ms"
    );
    let refused = answers.iter().filter(|(refused, _)| *refused).count();
    assert!(
        (790..=810).contains(&refused),
        "{refused} of 1,000 refused with a cap of 200"
    );
    assert!(
        answers.iter().all(|(_, took)| *took < WAIT),
        "every junk connection ended: refused at once or timed out"
    );

    // The slots are free again: a new site joins, the first is still online.
    let newcomer = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    assert_eq!(app.state_of(OTHER_SITE).await, "online");
    let (_, metrics) = app.get_text("/metrics").await;
    let counted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("diemcau_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the refusals are counted");
    assert_eq!(counted as usize, refused);
    newcomer.close().await;
    healthy.close().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_an_idle_websocket_is_not() {
    let app = spawn_app(|c| {
        steady(c);
        c.protocol.handshake_timeout_ms = 500;
    })
    .await;
    // A page that made one request and keeps the connection open, idle.
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let idle = Instant::now();
    let closed = tokio::time::timeout(WAIT, tcp.read(&mut answer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(
        idle.elapsed() >= Duration::from_millis(400),
        "{:?}",
        idle.elapsed()
    );

    // The hall display's feed stays quiet for longer than that, and is kept.
    let mut display = Client::connect(&app, &format!("/ws/live?key={}", app.key("display"))).await;
    display.recv_type("snapshot").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    app.start_slot(1).await;
    assert_eq!(display.recv_type("timer").await["state"], "running");
}

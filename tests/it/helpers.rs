//! Test harness: a real server on port 0 with its own data dir, a typed bridge client
//! (tokio-tungstenite) and an HTTP client. The server shuts itself down on drop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use diemcau::app::App;
use diemcau::auth::Role;
use diemcau::clock::SystemClock;
use diemcau::config::{Config, Loaded, Sources};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Tests whose figures depend on the machine being quiet (browsers, rehearsal checks,
/// load) take turns; the rest run beside them.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub const SITE: &str = "05443";
pub const OTHER_SITE: &str = "05710";

pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: std::path::PathBuf,
    /// Keeps the temporary data dir alive (None when the caller owns the dir).
    _dir: Option<Arc<tempfile::TempDir>>,
    pub keys: HashMap<String, String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    pub http: reqwest::Client,
    /// The running service's state, to flush its store before reading the file.
    pub state: diemcau::state::AppState,
}

/// Liveness thresholds in milliseconds so tests run in well under a second.
pub fn fast(config: &mut Config) {
    config.liveness.probe_interval_ms = 50;
    config.liveness.degraded_after_ms = 300;
    config.liveness.offline_after_ms = 700;
    config.liveness.echo_timeout_ms = 500;
}

/// Fast probes, but liveness slow enough that only what a test does ends a connection.
pub fn steady(config: &mut Config) {
    fast(config);
    config.liveness.degraded_after_ms = 3000;
    config.liveness.offline_after_ms = 5000;
}

/// A websocket client on `path` with a tiny receive window, for one that never reads.
pub async fn frozen_client(addr: SocketAddr, path: &str) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}{path}"), MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    ws
}

/// `diemcau agent` as `SITE`, against `server` (the app's own address, or a TLS front
/// before it); the process ends when the handle is dropped.
pub fn site_agent(app: &TestApp, server: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_diemcau"));
    command
        .args([
            "agent",
            "--server",
            server,
            "--site",
            SITE,
            "--key",
            app.key(SITE),
        ])
        .kill_on_drop(true);
    command
}

/// Sends `frame(n)` every `every`, reading what comes, until the server closes the
/// socket; returns the close code. Fails if it is still open after `WAIT`.
pub async fn flood_until_closed(
    socket: &mut Socket,
    every: Duration,
    frame: impl Fn(u64) -> Message,
) -> Option<u16> {
    let started = std::time::Instant::now();
    let mut sent = 0;
    loop {
        tokio::select! {
            received = socket.next() => match received {
                Some(Ok(Message::Close(close))) => return close.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            },
            _ = tokio::time::sleep(every) => {
                if socket.send(frame(sent)).await.is_ok() {
                    sent += 1;
                }
            }
        }
        assert!(started.elapsed() < WAIT, "still open after {sent} frames");
    }
}

/// A site's row in an evidence report.
pub fn report_row<'a>(report: &'a Value, site: &str) -> &'a Value {
    report["sites"]
        .as_array()
        .expect("the report lists sites")
        .iter()
        .find(|s| s["id"] == site)
        .expect("the site is in the report")
}

/// A rehearsal check of about three seconds instead of two minutes.
pub fn short_check(config: &mut Config) {
    let r = &mut config.rehearsal;
    // Clients that speak no WebRTC: no UDP phase (`udp_check` turns it on).
    r.udp_seconds = 0;
    r.idle_seconds = 1;
    r.throughput_seconds = 1;
    r.probe_interval_ms = 100;
    r.window_ms = 100;
    r.warmup_ms = 200;
    // A machine running the whole suite on two cores is not a quiet link: delays of a
    // few hundred ms happen. These tests check the check, not this machine's scheduler,
    // so only a real outage should fail the delay rows.
    let rubric = &mut r.rubric;
    rubric.jitter_pass_ms = 200.0;
    rubric.jitter_fail_ms = 400.0;
    rubric.loaded_rise_pass_ms = 300.0;
    rubric.loaded_rise_fail_ms = 600.0;
    rubric.stalled_pass_pct = 30.0;
    rubric.stalled_fail_pct = 60.0;
    rubric.offset_uncertainty_pass_ms = 200.0;
    rubric.offset_uncertainty_fail_ms = 400.0;
}

pub async fn spawn_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let path = dir.path().to_path_buf();
    let mut app = spawn_app_in(&path, tweak).await;
    app._dir = Some(dir);
    app
}

pub async fn spawn_app_in(data_dir: &Path, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_at(data_dir, "127.0.0.1:0", tweak).await
}

/// A server on a chosen address (to restart one on the same port).
pub async fn spawn_app_at(
    data_dir: &Path,
    listen: &str,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut loaded = Loaded::load(&Sources::default()).expect("embedded config loads");
    tweak(&mut loaded.config);
    start(loaded, data_dir, listen).await
}

/// A server with its own roster (CSV text), e.g. with `probe` addresses.
pub async fn spawn_app_with_roster(sites_csv: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_files(sites_csv, None, tweak).await
}

/// A server with its own roster and, if given, agenda (CSV texts).
pub async fn spawn_app_with_files(
    sites_csv: &str,
    agenda_csv: Option<&str>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let sites = dir.path().join("sites.csv");
    std::fs::write(&sites, sites_csv).unwrap();
    let agenda = agenda_csv.map(|text| {
        let path = dir.path().join("agenda.csv");
        std::fs::write(&path, text).unwrap();
        path
    });
    let mut loaded = Loaded::load(&Sources {
        sites: Some(sites),
        agenda,
        ..Sources::default()
    })
    .expect("roster loads");
    tweak(&mut loaded.config);
    let mut app = start(loaded, &dir.path().join("data"), "127.0.0.1:0").await;
    app._dir = Some(dir);
    app
}

/// A short check with a short UDP phase (2 s of stream, 3 s to connect).
pub fn udp_check(config: &mut Config) {
    short_check(config);
    config.rehearsal.udp_seconds = 2;
    config.rehearsal.udp_connect_seconds = 3;
}

/// A server on a clock the test drives (`SystemClock` over the test's own time source).
pub async fn spawn_app_on_clock(
    clock: Arc<dyn diemcau::clock::Clock>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut loaded = Loaded::load(&Sources::default()).expect("defaults load");
    tweak(&mut loaded.config);
    let mut app = start_on(loaded, &dir.path().join("data"), "127.0.0.1:0", clock).await;
    app._dir = Some(dir);
    app
}

async fn start(loaded: Loaded, data_dir: &Path, listen: &str) -> TestApp {
    start_on(loaded, data_dir, listen, Arc::new(SystemClock::new())).await
}

async fn start_on(
    loaded: Loaded,
    data_dir: &Path,
    listen: &str,
    clock: Arc<dyn diemcau::clock::Clock>,
) -> TestApp {
    // Logs stay silent unless asked for: DIEMCAU_TEST_LOG=debug cargo test -- --nocapture
    if let Ok(filter) = std::env::var("DIEMCAU_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    // A random UDP port for the rehearsal's UDP test, as for HTTP.
    let mut loaded = loaded;
    if loaded.config.rehearsal.udp_port.is_none() {
        loaded.config.rehearsal.udp_port = Some(0);
    }
    let app = App::build(loaded, data_dir.to_path_buf(), listen, clock)
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let secrets = app.state().secrets.current();
    let mut keys = HashMap::new();
    for role in Role::ALL {
        keys.insert(
            role.as_str().to_string(),
            secrets.role_key(role).expose().to_string(),
        );
    }
    for site in app.state().roster.sites() {
        keys.insert(
            site.id.to_string(),
            secrets.site_key(site.id).unwrap().expose().to_string(),
        );
    }
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        data_dir: data_dir.to_path_buf(),
        _dir: None,
        keys,
        shutdown: Some(tx),
        server: Some(server),
        http: reqwest::Client::new(),
        state,
    }
}

impl TestApp {
    pub fn key(&self, who: &str) -> &str {
        &self.keys[who]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET with an optional bearer key: status and JSON body (Null when not JSON).
    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// POST a JSON body with an optional bearer key: status and JSON answer.
    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts a slot as the secretary.
    pub async fn start_slot(&self, slot: u32) {
        let (status, answer) = self
            .post(
                "/api/timer/start",
                Some(self.key("secretary")),
                json!({"slot": slot}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// A CSV export: checks its type and the byte-order mark Excel needs; returns the text.
    pub async fn get_csv(&self, path: &str, key: &str) -> String {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "UTF-8 BOM for Excel");
        String::from_utf8(bytes[3..].to_vec()).expect("UTF-8")
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.http.get(self.url(path)).send().await.expect("request");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn site(&self, id: &str) -> Value {
        let (status, body) = self
            .get(&format!("/api/sites/{id}"), Some(self.key("operator")))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn state_of(&self, id: &str) -> String {
        self.site(id).await["state"].as_str().unwrap().to_string()
    }

    /// Polls the API every few ms until the site is in `state`; returns the site.
    pub async fn wait_for_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let site = self.site(id).await;
            if site["state"] == state {
                return site;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("site {id} not {state} within {within:?}: {site}");
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }

    /// Graceful stop, as on SIGTERM; waits for the store to be flushed.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket client speaking protocol v1 by hand.
pub struct Client {
    ws: Socket,
}

impl Client {
    pub async fn connect(app: &TestApp, path: &str) -> Client {
        Client::connect_at(app.addr, path).await
    }

    pub async fn connect_at(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// Connects to `/ws/bridge`, says hello as `site`, expects `welcome`.
    pub async fn join(app: &TestApp, site: &str) -> Client {
        Client::join_at(app.addr, site, app.key(site)).await
    }

    pub async fn join_at(addr: SocketAddr, site: &str, key: &str) -> Client {
        let mut client = Client::connect_at(addr, "/ws/bridge").await;
        client.hello(site, key).await;
        let welcome = client.recv_type("welcome").await;
        assert_eq!(welcome["site"]["id"], site);
        client
    }

    pub async fn hello(&mut self, site: &str, key: &str) {
        self.send(
            json!({"type": "hello", "site": site, "key": key, "agent": "agent", "version": "test"}),
        )
        .await;
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    /// The next JSON frame; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("JSON frame");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame within `wait`: `Ok(json)` for text, `Err(length)` for binary data.
    pub async fn recv_any(&mut self, wait: Duration) -> Option<Result<Value, usize>> {
        match tokio::time::timeout(wait, self.ws.next()).await {
            Err(_) => None,
            Ok(Some(Ok(Message::Text(text)))) => {
                Some(Ok(serde_json::from_str(&text).expect("JSON frame")))
            }
            Ok(Some(Ok(Message::Binary(data)))) => Some(Err(data.len())),
            Ok(Some(Ok(_))) => None,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let wanted = async {
            loop {
                let value = self.recv().await;
                if value["type"] == kind {
                    return value;
                }
            }
        };
        tokio::time::timeout(WAIT, wanted)
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` frame within {WAIT:?}"))
    }

    /// Answers the next probe at once; returns the probe.
    pub async fn echo_next_probe(&mut self) -> Value {
        let probe = self.recv_type("probe").await;
        let now = now_ms();
        self.send(
            json!({"type": "echo", "seq": probe["seq"], "server_ms": probe["server_ms"],
                         "client_recv_ms": now, "client_send_ms": now}),
        )
        .await;
        probe
    }

    /// Reads until the server closes; returns the close code (frames before it are skipped).
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time");
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Reads until an `error` frame; returns it.
    pub async fn expect_error(&mut self) -> Value {
        self.recv_type("error").await
    }

    pub fn into_inner(self) -> Socket {
        self.ws
    }
}

/// A bridge that answers every probe in the background, like a healthy site.
pub struct EchoingBridge {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Option<u16>>,
    /// Every frame the server sent, in order.
    pub frames: mpsc::UnboundedReceiver<Value>,
}

impl EchoingBridge {
    pub async fn join(app: &TestApp, site: &str) -> EchoingBridge {
        EchoingBridge::join_at(app.addr, site, app.key(site)).await
    }

    pub async fn join_at(addr: SocketAddr, site: &str, key: &str) -> EchoingBridge {
        EchoingBridge::join_delayed(addr, site, key, Duration::ZERO).await
    }

    /// A bridge on a slow line: each echo leaves `delay` after its probe arrived.
    pub async fn join_slow(app: &TestApp, site: &str, delay: Duration) -> EchoingBridge {
        EchoingBridge::join_delayed(app.addr, site, app.key(site), delay).await
    }

    async fn join_delayed(
        addr: SocketAddr,
        site: &str,
        key: &str,
        delay: Duration,
    ) -> EchoingBridge {
        let client = Client::join_at(addr, site, key).await;
        let (stop, stop_rx) = oneshot::channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_echoing(client.into_inner(), stop_rx, frames_tx, delay));
        EchoingBridge {
            stop: Some(stop),
            task,
            frames,
        }
    }

    /// Closes the socket cleanly.
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }

    /// Waits for the server to close the socket; returns its close code.
    pub async fn closed_by_server(self) -> Option<u16> {
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("closed in time")
            .expect("task")
    }

    /// The next server frame of `kind`.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        let wanted = async {
            loop {
                let frame = self.frames.recv().await.expect("the socket is open");
                if frame["type"] == kind {
                    return frame;
                }
            }
        };
        tokio::time::timeout(WAIT, wanted)
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` frame within {WAIT:?}"))
    }
}

async fn run_echoing(
    mut ws: Socket,
    mut stop: oneshot::Receiver<()>,
    frames: mpsc::UnboundedSender<Value>,
    delay: Duration,
) -> Option<u16> {
    // Echoes waiting for their time to leave (all at once when `delay` is zero).
    let mut due: std::collections::VecDeque<(tokio::time::Instant, Value)> = Default::default();
    loop {
        let next_due = due.front().map(|(at, _)| *at);
        tokio::select! {
            _ = &mut stop => {
                let _ = ws.close(None).await;
                let _ = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
                return None;
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)), if next_due.is_some() => {
                let (_, probe) = due.pop_front().expect("one is due");
                let now = now_ms();
                let reply = json!({"type": "echo", "seq": probe["seq"], "server_ms": probe["server_ms"],
                                   "client_recv_ms": now, "client_send_ms": now});
                if ws.send(Message::text(reply.to_string())).await.is_err() {
                    return None;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "probe" {
                        due.push_back((tokio::time::Instant::now() + delay, value.clone()));
                    }
                    let _ = frames.send(value);
                }
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

//! The bridge socket `/ws/bridge`: one task per connected site speaking protocol v1.
//!
//! The reader half runs the protocol (hello, probes, echoes, the site's deadline); a
//! writer task drains a bounded queue, so nothing else ever waits on a slow site: a
//! site whose queue is full is closed (4503).

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::Caller;
use crate::core::clocksync::Exchange;
use crate::core::rehearsal::RehearsalResult;
use crate::core::sites::{SiteId, SiteIdx};
use crate::core::time::EpochMs;
use crate::core::timer::TimerState;
use crate::metrics::SocketKind;
use crate::protocol::{ClientMsg, Frame, LiveMsg, RehearsalChange, ServerMsg, close};
use crate::services::hub::Outbound;
use crate::services::rehearsal_run::{RehearsalRun, Step};
use crate::state::AppState;

pub async fn upgrade(
    State(app): State<AppState>,
    caller: Option<Caller>,
    ws: WebSocketUpgrade,
) -> Response {
    let limit = app.config.protocol.max_frame_bytes;
    let tasks = app.tasks.clone();
    // Small buffers: the default 128 KiB each would cost ~135 KB per site.
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .on_upgrade(move |socket| tasks.track_future(serve(app, socket, caller)))
}

const NOT_READING_REASON: &str = "not reading: send queue full";

/// The first probes of a connection, closer together (see `run_session`).
const QUICK_PROBES: u32 = 4;
const QUICK_PROBE_EVERY: Duration = Duration::from_millis(250);

/// Why the connection ended, and the close frame to send if any.
struct Ending {
    code: Option<u16>,
    reason: String,
}

impl Ending {
    fn close(code: u16, reason: impl Into<String>) -> Self {
        Ending {
            code: Some(code),
            reason: reason.into(),
        }
    }

    fn gone(reason: impl Into<String>) -> Self {
        Ending {
            code: None,
            reason: reason.into(),
        }
    }
}

async fn serve(app: AppState, socket: WebSocket, caller: Option<Caller>) {
    app.metrics.connection_opened(SocketKind::Bridge);
    let (mut sink, mut stream) = socket.split();
    let hello_timeout = Duration::from_millis(app.config.protocol.hello_timeout_ms);
    match tokio::time::timeout(hello_timeout, read_hello(&app, &mut stream, caller)).await {
        Err(_) => {
            refuse(
                &mut sink,
                close::BAD_HELLO,
                "no_hello",
                "say hello within the hello timeout",
            )
            .await
        }
        Ok(Err((code, error, message))) => refuse(&mut sink, code, error, &message).await,
        Ok(Ok(hello)) => {
            let span = tracing::info_span!("bridge", site = %hello.id);
            run_session(&app, hello, sink, stream)
                .instrument(span)
                .await;
        }
    }
    app.metrics.connection_closed(SocketKind::Bridge);
}

struct Hello {
    id: SiteId,
    idx: SiteIdx,
    agent: crate::protocol::AgentKind,
    version: String,
}

type Refusal = (u16, &'static str, String);

async fn read_hello(
    app: &AppState,
    stream: &mut SplitStream<WebSocket>,
    caller: Option<Caller>,
) -> Result<Hello, Refusal> {
    let text = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err((
                    close::BAD_HELLO,
                    "bad_hello",
                    "the first frame must be a JSON hello".into(),
                ));
            }
            Some(Err(e)) if is_too_large(&e) => {
                return Err((
                    close::TOO_LARGE,
                    "too_large",
                    "frame exceeds the size limit".into(),
                ));
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                return Err((close::BAD_HELLO, "bad_hello", "closed before hello".into()));
            }
        }
    };
    let (site, key, agent, version) = match ClientMsg::decode(&text) {
        Ok(ClientMsg::Hello {
            site,
            key,
            agent,
            version,
        }) => (site, key, agent, version),
        Ok(_) => {
            return Err((
                close::BAD_HELLO,
                "bad_hello",
                "the first frame must be hello".into(),
            ));
        }
        Err(e) => {
            return Err((
                close::BAD_HELLO,
                "bad_hello",
                format!("bad hello: {}", e.message),
            ));
        }
    };
    let unknown = || {
        (
            close::UNKNOWN_SITE,
            "unknown_site",
            format!(
                "site `{}` is not in the roster",
                site.chars().take(16).collect::<String>()
            ),
        )
    };
    let id: SiteId = site.parse().map_err(|_| unknown())?;
    let idx = app.roster.index_of(id).ok_or_else(unknown)?;
    let authorised = match (&key, caller) {
        (Some(key), _) => app.secrets.current().is_site_key(id, key),
        // A page whose session already proved the site's key may leave the key out.
        (None, Some(Caller::Site(own))) => own == id,
        (None, _) => false,
    };
    if !authorised {
        return Err((
            close::BAD_KEY,
            "bad_key",
            format!("this key does not belong to site {id}"),
        ));
    }
    Ok(Hello {
        id,
        idx,
        agent,
        version,
    })
}

/// Says why in an error frame, then closes.
async fn refuse(sink: &mut SplitSink<WebSocket, Message>, code: u16, error: &str, message: &str) {
    tracing::debug!(code, error, "bridge connection refused");
    let frame = Frame::from(&ServerMsg::error(error, message));
    let _ = sink.send(super::text(frame)).await;
    let _ = sink.send(close_message(code, message)).await;
}

fn close_message(code: u16, reason: &str) -> Message {
    // A close reason is limited to 123 bytes; cut on a character boundary.
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    }))
}

/// A read error: broken framing or text that is not UTF-8 gets its RFC 6455 close
/// code (1002, 1007); anything else is a lost connection.
fn broken(e: &axum::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        match err.downcast_ref::<Error>() {
            Some(Error::Utf8(_)) => return Ending::close(1007, "text frames must be UTF-8"),
            // A peer that vanished without a close frame is a lost connection, not abuse.
            Some(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => break,
            Some(Error::Protocol(p)) => {
                return Ending::close(1002, format!("websocket protocol error: {p}"));
            }
            _ => source = err.source(),
        }
    }
    Ending::gone("connection lost")
}

fn is_too_large(e: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(Error::Capacity(_)) = err.downcast_ref::<Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

async fn run_session(
    app: &AppState,
    hello: Hello,
    sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
) {
    let protocol = &app.config.protocol;
    let liveness = &app.config.liveness;
    let (out, pending) = mpsc::channel(protocol.send_queue_frames);
    let (kick_tx, mut kick) = oneshot::channel();
    let (close_tx, close_rx) = oneshot::channel();
    let writer = tokio::spawn(write_frames(sink, pending, close_rx));

    let (session, mut deadline) =
        app.hub
            .connect(hello.idx, hello.agent, &hello.version, out.clone(), kick_tx);
    let site = app.roster.site(hello.idx);
    tracing::info!(%session, agent = hello.agent.as_str(), "site connected");
    let queue = Queue(&out);
    let welcome = ServerMsg::welcome(
        site.id,
        &site.name,
        site.kind,
        session,
        app.clock.now_ms(),
        liveness.probe_interval_ms,
    );

    // A new connection's clock is learnt from a few quick probes, not from one: a bridge
    // that joins just before its slot shows the right second at once.
    let every = Duration::from_millis(liveness.probe_interval_ms);
    let mut quick_left = if every > QUICK_PROBE_EVERY {
        QUICK_PROBES
    } else {
        0
    };
    let mut probes = tokio::time::interval(if quick_left > 0 {
        QUICK_PROBE_EVERY
    } else {
        every
    });
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outstanding: VecDeque<(u64, EpochMs)> = VecDeque::new();
    let mut next_seq = 0u64;
    let (mut synced, mut pending_sync) = (false, None::<ServerMsg>);
    let mut flood = FloodGuard::new(protocol.max_frames_per_second);
    let mut bad_frames = 0u32;
    let echo_timeout = liveness.echo_timeout_ms as i64;
    let rehearsal = &app.config.rehearsal;
    let mut check: Option<RehearsalRun> = None;

    let ending = 'session: {
        let pending = app.noticeboard.pending_frames(hello.idx);
        let greeting = [welcome, app.timekeeper.bridge_frame()]
            .into_iter()
            .chain(pending);
        if greeting.into_iter().any(|msg| queue.send(&msg).is_err()) {
            break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
        }
        let parked = app
            .parked_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hello.idx);
        if let Some(mut run) = parked {
            tracing::info!(check = %run.id, "site back within the grace: the check goes on");
            probes = tokio::time::interval(Duration::from_millis(rehearsal.probe_interval_ms));
            if let Some(msg) = run.resume(rehearsal, &out, presenting(app))
                && queue.send(&msg).is_err()
            {
                break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
            }
            check = Some(run);
        }
        loop {
            let sleep = deadline.map(|at| {
                let wait = (at - app.clock.now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(wait))
            });
            let phase_ends = check.as_ref().map(|c| c.phase_ends);
            tokio::select! {
                biased;
                _ = app.shutdown.cancelled() => break 'session Ending::close(close::GOING_AWAY, "server shutting down"),
                code = &mut kick => {
                    let code = code.unwrap_or(close::REPLACED);
                    let reason = match code {
                        close::REPLACED => "replaced by a newer connection",
                        close::BAD_KEY => "this site's key was rotated: reconnect with the new key",
                        _ => NOT_READING_REASON,
                    };
                    break 'session Ending::close(code, reason);
                }
                frame = stream.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            deadline = app.hub.heard(hello.idx, session);
                            continue;
                        }
                        Some(Ok(Message::Binary(data))) => {
                            // Upload test data is the one flood that is wanted.
                            if check.as_mut().is_some_and(|c| c.binary(data.len(), rehearsal)) {
                                deadline = app.hub.heard(hello.idx, session);
                                continue;
                            }
                            match admit(&mut flood, &queue) {
                                Ok(true) => {}
                                Ok(false) => continue,
                                Err(ending) => break 'session ending,
                            }
                            bad_frames += 1;
                            if queue.send(&ServerMsg::error("binary_not_allowed", "binary frames are only accepted during a throughput test")).is_err() {
                                break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
                            }
                            if bad_frames > protocol.max_bad_frames { break 'session Ending::close(close::BAD_HELLO, "too many bad frames"); }
                            continue;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map(|f| f.code).unwrap_or(1005);
                            break 'session Ending::gone(format!("socket closed by the site ({code})"));
                        }
                        Some(Err(e)) if is_too_large(&e) => break 'session Ending::close(close::TOO_LARGE, "frame exceeds the size limit"),
                        Some(Err(e)) => break 'session broken(&e),
                        None => break 'session Ending::gone("connection lost"),
                    };
                    match admit(&mut flood, &queue) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(ending) => break 'session ending,
                    }
                    match ClientMsg::decode(&text) {
                        Ok(ClientMsg::Echo { seq, client_recv_ms, client_send_ms, .. }) => {
                            let now = app.clock.now_ms();
                            match outstanding.iter().position(|(s, _)| *s == seq) {
                                Some(pos) => {
                                    let (_, sent) = outstanding.remove(pos).expect("position is valid");
                                    let exchange = Exchange { server_sent_ms: sent, client_received_ms: client_recv_ms, client_sent_ms: client_send_ms, server_received_ms: now };
                                    let outcome = app.hub.echo(hello.idx, session, exchange);
                                    deadline = outcome.next_deadline;
                                    if let Some(check) = check.as_mut() {
                                        check.echo(outcome.rtt_ms, outcome.timely, outcome.sync.map(|s| s.uncertainty_ms));
                                    }
                                    if let Some(sync) = outcome.sync {
                                        let msg = ServerMsg::Sync { offset_ms: sync.offset_ms, rtt_ms: sync.rtt_ms, uncertainty_ms: sync.uncertainty_ms };
                                        // The first estimate goes at once; later ones ride with the
                                        // next probe in the same write (one syscall, not two).
                                        if synced {
                                            pending_sync = Some(msg);
                                        } else {
                                            synced = true;
                                            if queue.send(&msg).is_err() { break 'session Ending::close(close::NOT_READING, NOT_READING_REASON); }
                                        }
                                    }
                                }
                                // Late (already counted as stalled) or unknown: still a sign of life.
                                None => deadline = app.hub.heard(hello.idx, session),
                            }
                        }
                        Ok(ClientMsg::Heartbeat { .. }) => deadline = app.hub.heard(hello.idx, session),
                        Ok(ClientMsg::Ack { reference }) => {
                            deadline = app.hub.heard(hello.idx, session);
                            app.noticeboard.ack(hello.idx, reference);
                        }
                        Ok(ClientMsg::CheckRequest { technician, checklist }) => {
                            deadline = app.hub.heard(hello.idx, session);
                            let refusal = if check.is_some() {
                                Some(("check_busy", "Đang kiểm tra rồi — a check is already running".to_string()))
                            } else if presenting(app) {
                                Some(("check_refused", "Đang có phần tham luận, không kiểm tra băng thông lúc này; thử lại khi hết phần — a presentation is under way: try again after it".to_string()))
                            } else if technician.trim().is_empty() {
                                Some(("check_refused", "Hãy ghi tên kỹ thuật viên — give the technician's name".to_string()))
                            } else {
                                None
                            };
                            let reply = match refusal {
                                Some((code, message)) => ServerMsg::error(code, message),
                                None => {
                                    let name: String = technician.trim().chars().take(80).collect();
                                    let (run, start) = RehearsalRun::start(site.id, name, checklist, rehearsal, app.clock.now_ms());
                                    tracing::info!(check = %run.id, "rehearsal check started");
                                    check = Some(run);
                                    probes = tokio::time::interval(Duration::from_millis(rehearsal.probe_interval_ms));
                                    start
                                }
                            };
                            if queue.send(&reply).is_err() { break 'session Ending::close(close::NOT_READING, NOT_READING_REASON); }
                        }
                        Ok(ClientMsg::CheckReport { check: id, phase, windows_bytes }) => {
                            deadline = app.hub.heard(hello.idx, session);
                            if let Some(check) = check.as_mut() {
                                check.report(id, &phase, windows_bytes);
                            }
                        }
                        Ok(ClientMsg::Hello { .. }) => {
                            bad_frames += 1;
                            if queue.send(&ServerMsg::error("duplicate_hello", "hello was already accepted on this connection")).is_err() {
                                break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
                            }
                        }
                        Err(e) => {
                            bad_frames += 1;
                            if queue.send(&ServerMsg::error(e.code, e.message)).is_err() {
                                break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
                            }
                        }
                    }
                    if bad_frames > protocol.max_bad_frames {
                        break 'session Ending::close(close::BAD_HELLO, "too many bad frames");
                    }
                }
                _ = probes.tick() => {
                    let now = app.clock.now_ms();
                    while outstanding.front().is_some_and(|(_, sent)| now - sent >= echo_timeout) {
                        outstanding.pop_front();
                        app.hub.probe_missed(hello.idx, session);
                        if let Some(check) = check.as_mut() { check.probe_missed(); }
                    }
                    next_seq += 1;
                    outstanding.push_back((next_seq, now));
                    app.hub.probe_sent(hello.idx, session);
                    if let Some(check) = check.as_mut() { check.probe_sent(); }
                    if pending_sync.take().is_some_and(|sync| queue.send(&sync).is_err()) {
                        break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
                    }
                    if queue.send(&ServerMsg::Probe { seq: next_seq, server_ms: now }).is_err() {
                        break 'session Ending::close(close::NOT_READING, NOT_READING_REASON);
                    }
                    if quick_left > 0 {
                        quick_left -= 1;
                        if quick_left == 0 && check.is_none() {
                            probes = tokio::time::interval_at(Instant::now() + every, every);
                            probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                    }
                }
                _ = async { tokio::time::sleep_until(phase_ends.expect("guarded")).await }, if phase_ends.is_some() => {
                    let run = check.as_mut().expect("a check is running");
                    match run.advance(rehearsal, &out, presenting(app)) {
                        Step::Next(msg) => {
                            if queue.send(&msg).is_err() { break 'session Ending::close(close::NOT_READING, NOT_READING_REASON); }
                        }
                        Step::Wait => {}
                        Step::Finished => {
                            let run = check.take().expect("a check is running");
                            let result = run.finish(rehearsal, &app.store, false, app.clock.now_ms());
                            // On disk before the site is told: a verdict it saw survives a kill -9.
                            if let Err(e) = app.store.flush().await {
                                tracing::error!(error = %e, "rehearsal result not stored");
                            }
                            announce_check(app, &result);
                            probes = tokio::time::interval(Duration::from_millis(liveness.probe_interval_ms));
                            let msg = ServerMsg::CheckResult { check: result.id, verdict: result.verdict, rows: result.rows, figures: result.figures };
                            if queue.send(&msg).is_err() { break 'session Ending::close(close::NOT_READING, NOT_READING_REASON); }
                        }
                    }
                }
                _ = async { sleep.expect("guarded by the condition").await }, if sleep.is_some() => {
                    let (offline, next) = app.hub.tick(hello.idx, session);
                    deadline = next;
                    if offline {
                        break 'session Ending::close(close::SILENT, "silent too long: offline, reconnect");
                    }
                }
            }
        }
    };

    // Mark the site first: detection latency matters more than the close handshake.
    app.hub.disconnected(hello.idx, session, &ending.reason);
    if let Some(mut run) = check {
        if ending.code.is_none() {
            // Dropped: the site has a grace to come back and carry on with its check.
            run.suspend();
            park_check(app, hello.idx, run);
        } else {
            // Closed by the server: still evidence, stored and failed on that row.
            let result = run.finish(rehearsal, &app.store, true, app.clock.now_ms());
            announce_check(app, &result);
        }
    }
    tracing::info!(reason = %ending.reason, "site disconnected");
    match ending.code {
        Some(code) => drop(close_tx.send(close_message(code, &ending.reason))),
        None => drop(close_tx),
    }
    drop(out);
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort(); // the peer does not read even its close frame
    }
}

/// Throughput tests never run while a presentation is under way.
fn presenting(app: &AppState) -> bool {
    matches!(
        app.timekeeper.snapshot().state,
        TimerState::Running | TimerState::Paused
    )
}

/// Keeps a dropped site's check for the grace; after it, the check is stored as failed.
fn park_check(app: &AppState, site: SiteIdx, run: RehearsalRun) {
    let id = run.id;
    app.parked_checks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(site, run);
    let app = app.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(
            app.config.rehearsal.reconnect_grace_seconds,
        ))
        .await;
        let mut parked = app.parked_checks.lock().unwrap_or_else(|e| e.into_inner());
        // Only this check: the site may have come back and started another since.
        if parked.get(&site).is_some_and(|run| run.id == id) {
            let run = parked.remove(&site).expect("present");
            drop(parked);
            let result = run.finish(&app.config.rehearsal, &app.store, true, app.clock.now_ms());
            announce_check(&app, &result);
        }
    });
}

/// Logs a finished check and tells the live feed (the rehearsal board).
fn announce_check(app: &AppState, result: &RehearsalResult) {
    tracing::info!(check = %result.id, verdict = result.verdict.as_str(), "rehearsal check finished");
    app.hub.publish(LiveMsg::Rehearsal(RehearsalChange::Result {
        result: result.clone(),
    }));
}

/// The site's send queue, as the reader uses it.
struct Queue<'a>(&'a mpsc::Sender<Outbound>);

impl Queue<'_> {
    /// Queues a frame without waiting; an error means the site is not reading.
    fn send(&self, msg: &ServerMsg) -> Result<(), ()> {
        self.0
            .try_send(Outbound::Text(Frame::from(msg)))
            .map_err(drop)
    }
}

/// Drains the queue into the socket; a close frame from the reader goes first.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Outbound>,
    mut close: oneshot::Receiver<Message>,
) {
    loop {
        tokio::select! {
            biased;
            frame = &mut close => {
                if let Ok(frame) = frame {
                    let _ = sink.send(frame).await;
                }
                break;
            }
            next = queue.recv() => match next {
                Some(outbound) => {
                    // Everything already queued goes out in one flush: one write, one wake-up
                    // of the peer.
                    let mut batch = Some(outbound);
                    let mut written = Ok(());
                    let mut deliveries = Vec::new();
                    while let Some(outbound) = batch.take() {
                        let (message, delivery) = super::to_message(outbound);
                        deliveries.extend(delivery);
                        written = sink.feed(message).await;
                        if written.is_err() {
                            break;
                        }
                        batch = queue.try_recv().ok();
                    }
                    if written.is_err() || sink.flush().await.is_err() {
                        break;
                    }
                    drop(deliveries); // handed to the kernel: this site is done
                }
                None => {
                    // The reader is done; it may still send a close frame.
                    if let Ok(frame) = close.await {
                        let _ = sink.send(frame).await;
                    }
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}

/// What to do with one more inbound frame.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Allow,
    /// Over the limit: the frame is dropped unread (`warn`: the first time this window).
    Throttle {
        warn: bool,
    },
    /// Twice the limit within one window: a flood, not a burst.
    Close,
}

/// Counts frames in one-second windows: a burst over the limit is throttled, a flood
/// (twice the limit) is closed with 4429.
struct FloodGuard {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl FloodGuard {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            window_start: Instant::now(),
            count: 0,
        }
    }

    fn check(&mut self) -> Flow {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Flow {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        if self.count <= self.limit {
            Flow::Allow
        } else if self.count <= self.limit.saturating_mul(2) {
            Flow::Throttle {
                warn: self.count == self.limit + 1,
            }
        } else {
            Flow::Close
        }
    }
}

/// Whether one more inbound frame is handled (`false`: dropped unread), or why the
/// connection ends.
fn admit(flood: &mut FloodGuard, queue: &Queue) -> Result<bool, Ending> {
    match flood.check() {
        Flow::Allow => Ok(true),
        Flow::Throttle { warn: false } => Ok(false),
        Flow::Throttle { warn: true } => {
            let slow_down = ServerMsg::error(
                "slow_down",
                "too many frames per second: frames are dropped; twice the limit closes the socket (4429)",
            );
            queue
                .send(&slow_down)
                .map(|()| false)
                .map_err(|()| Ending::close(close::NOT_READING, NOT_READING_REASON))
        }
        Flow::Close => Err(Ending::close(close::FLOODING, "too many frames per second")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_throttled_a_flood_is_closed_and_the_next_second_starts_afresh() {
        let start = Instant::now();
        let mut guard = FloodGuard {
            limit: 3,
            window_start: start,
            count: 0,
        };
        let flows: Vec<Flow> = (0..7).map(|_| guard.check_at(start)).collect();
        assert_eq!(
            flows,
            [
                Flow::Allow,
                Flow::Allow,
                Flow::Allow,
                Flow::Throttle { warn: true },
                Flow::Throttle { warn: false },
                Flow::Throttle { warn: false },
                Flow::Close
            ]
        );
        assert_eq!(
            guard.check_at(start + Duration::from_millis(1000)),
            Flow::Allow
        );
    }
}

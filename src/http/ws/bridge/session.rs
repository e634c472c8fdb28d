//! One site's session after its hello. The loop lists what can happen — shutdown, a
//! kick, a frame, a probe due, a rehearsal stage ending, silence — and each kind of
//! inbound frame has its own method. Every method that sends returns the `Ending` a
//! full queue means (4503), so the loop ends on the first `Err`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Interval};
use uuid::Uuid;

use super::flood::{FloodGuard, Flow};
use super::handshake::Hello;
use super::writer::write_frames;
use super::{Ending, broken, close_message, is_too_large};
use crate::core::clocksync::{Exchange, SyncEstimate};
use crate::core::rehearsal::RehearsalResult;
use crate::core::sites::{SiteId, SiteIdx};
use crate::core::time::EpochMs;
use crate::core::timer::TimerState;
use crate::protocol::{ClientMsg, Frame, LiveMsg, RehearsalChange, ServerMsg, close};
use crate::services::hub::Outbound;
use crate::services::rehearsal_run::{RehearsalRun, Step};
use crate::state::AppState;

const NOT_READING_REASON: &str = "not reading: send queue full";

/// The first probes of a connection, closer together: a bridge that joins just before
/// its slot learns its clock from a few quick probes, not from one, and shows the
/// right second at once.
const QUICK_PROBES: u32 = 4;
const QUICK_PROBE_EVERY: Duration = Duration::from_millis(250);

/// Runs a site's connection to its end: greeting, the session loop, then the close.
pub(super) async fn run(
    app: &AppState,
    hello: Hello,
    sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
) {
    let (out, queue) = mpsc::channel(app.config.protocol.send_queue_frames);
    let (kick_tx, mut kick) = oneshot::channel();
    let (close_tx, close_rx) = oneshot::channel();
    let writer = tokio::spawn(write_frames(sink, queue, close_rx));
    let (id, deadline) =
        app.hub
            .connect(hello.idx, hello.agent, &hello.version, out.clone(), kick_tx);
    tracing::info!(session = %id, agent = hello.agent.as_str(), "site connected");
    let mut session = Session::new(app, &hello, id, deadline, out);
    let ending = match session.greet() {
        Ok(()) => session.serve(&mut stream, &mut kick).await,
        Err(ending) => ending,
    };
    // Boxed: the session moves into it, and it is not kept in the task while serving.
    let closed_by_us = ending.code.is_some();
    Box::pin(session.end(ending, close_tx, writer)).await;
    if closed_by_us {
        crate::http::ws::drain_until_closed(&mut stream).await;
    }
}

/// What the loop keeps between frames.
struct Session<'a> {
    app: &'a AppState,
    idx: SiteIdx,
    site: SiteId,
    /// This connection (a newer one of the same site replaces it).
    id: Uuid,
    /// The site's send queue; full means it is not reading.
    out: mpsc::Sender<Outbound>,
    /// When the site's liveness changes next if nothing more is heard (from the hub).
    deadline: Option<EpochMs>,
    probes: Probes,
    /// The first clock estimate goes at once; later ones ride with the next probe.
    synced: bool,
    pending_sync: Option<SyncEstimate>,
    flood: FloodGuard,
    bad_frames: u32,
    /// The rehearsal check running on this connection, if any (boxed: it is large and
    /// rare, and this struct lives in every site's task).
    check: Option<Box<RehearsalRun>>,
}

/// The probes: when the next is due, and those not yet answered.
struct Probes {
    every: Duration,
    ticks: Interval,
    quick_left: u32,
    outstanding: VecDeque<(u64, EpochMs)>,
    next_seq: u64,
}

impl Probes {
    fn new(every: Duration) -> Probes {
        let quick_left = if every > QUICK_PROBE_EVERY {
            QUICK_PROBES
        } else {
            0
        };
        let mut ticks = tokio::time::interval(if quick_left > 0 {
            QUICK_PROBE_EVERY
        } else {
            every
        });
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Probes {
            every,
            ticks,
            quick_left,
            outstanding: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Probes at another rate from now on (a rehearsal check probes faster).
    fn restart(&mut self, every: Duration) {
        self.ticks = tokio::time::interval(every);
    }
}

impl<'a> Session<'a> {
    fn new(
        app: &'a AppState,
        hello: &Hello,
        id: Uuid,
        deadline: Option<EpochMs>,
        out: mpsc::Sender<Outbound>,
    ) -> Session<'a> {
        Session {
            app,
            idx: hello.idx,
            site: hello.id,
            id,
            out,
            deadline,
            probes: Probes::new(Duration::from_millis(app.config.liveness.probe_interval_ms)),
            synced: false,
            pending_sync: None,
            flood: FloodGuard::new(app.config.protocol.max_frames_per_second),
            bad_frames: 0,
            check: None,
        }
    }

    /// Welcome, the timer, the notices still to confirm; a check parked when the site
    /// dropped goes on.
    fn greet(&mut self) -> Result<(), Ending> {
        let app = self.app;
        let site = app.roster.site(self.idx);
        let welcome = ServerMsg::welcome(
            site.id,
            &site.name,
            site.kind,
            self.id,
            app.clock.now_ms(),
            app.config.liveness.probe_interval_ms,
        );
        let pending = app.noticeboard.pending_frames(self.idx);
        for msg in [welcome, app.timekeeper.bridge_frame()]
            .into_iter()
            .chain(pending)
        {
            self.send(&msg)?;
        }
        let parked = app
            .parked_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.idx);
        if let Some(mut run) = parked {
            tracing::info!(check = %run.id, "site back within the grace: the check goes on");
            let rehearsal = &app.config.rehearsal;
            self.probes
                .restart(Duration::from_millis(rehearsal.probe_interval_ms));
            if let Some(msg) = run.resume(rehearsal, &self.out, presenting(app)) {
                self.send(&msg)?;
            }
            self.check = Some(Box::new(run));
        }
        Ok(())
    }

    async fn serve(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        kick: &mut oneshot::Receiver<u16>,
    ) -> Ending {
        loop {
            let silence = self.deadline.map(|at| {
                let wait = (at - self.app.clock.now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(wait))
            });
            let stage_ends = self.check.as_ref().map(|c| c.phase_ends);
            let step = tokio::select! {
                biased;
                _ = self.app.shutdown.cancelled() => Err(Ending::close(close::GOING_AWAY, "server shutting down")),
                code = &mut *kick => Err(kicked(code.unwrap_or(close::REPLACED))),
                frame = stream.next() => self.on_frame(frame),
                _ = self.probes.ticks.tick() => self.on_probe_due(),
                // Boxed: a rare, large future kept out of every site's task.
                _ = async { tokio::time::sleep_until(stage_ends.expect("guarded")).await }, if stage_ends.is_some() => Box::pin(self.on_stage_end()).await,
                _ = async { silence.expect("guarded by the condition").await }, if silence.is_some() => self.on_silence(),
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Result<(), Ending> {
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            // Pings and pongs are frames like any other: they count toward the limit.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                if self.admit()? {
                    self.heard();
                }
                return Ok(());
            }
            Some(Ok(Message::Binary(data))) => return self.on_binary(data.len()),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| f.code).unwrap_or(1005);
                return Err(Ending::gone(format!("socket closed by the site ({code})")));
            }
            Some(Err(e)) if is_too_large(&e) => {
                return Err(Ending::close(
                    close::TOO_LARGE,
                    "frame exceeds the size limit",
                ));
            }
            Some(Err(e)) => return Err(broken(&e)),
            None => return Err(Ending::gone("connection lost")),
        };
        if !self.admit()? {
            return Ok(());
        }
        match ClientMsg::decode(&text) {
            Ok(ClientMsg::Echo {
                seq,
                client_recv_ms,
                client_send_ms,
                ..
            }) => self.on_echo(seq, client_recv_ms, client_send_ms)?,
            Ok(ClientMsg::Heartbeat { .. }) => self.heard(),
            Ok(ClientMsg::Ack { reference }) => {
                self.heard();
                self.app.noticeboard.ack(self.idx, reference);
            }
            Ok(ClientMsg::CheckRequest {
                technician,
                checklist,
                devices,
            }) => self.on_check_request(&technician, checklist, devices)?,
            Ok(ClientMsg::UdpOffer { check, sdp }) => {
                self.heard();
                self.on_udp_offer(check, sdp)?
            }
            Ok(ClientMsg::CheckReport {
                check,
                phase,
                windows_bytes,
            }) => {
                self.heard();
                if let Some(run) = self.check.as_mut() {
                    run.report(check, &phase, windows_bytes);
                }
            }
            Ok(ClientMsg::Hello { .. }) => self.bad_frame(ServerMsg::error(
                "duplicate_hello",
                "hello was already accepted on this connection",
            ))?,
            Err(e) => self.bad_frame(ServerMsg::error(e.code, e.message))?,
        }
        self.within_bad_frame_limit()
    }

    /// Upload test data is the one flood that is wanted: frames of the size the test
    /// asked for are limited by the line itself. Any other binary frame counts toward
    /// the flood limit (tiny frames cost the most per byte), and outside the test it is
    /// a bad frame.
    fn on_binary(&mut self, bytes: usize) -> Result<(), Ending> {
        let rehearsal = &self.app.config.rehearsal;
        let full_size = bytes == rehearsal.frame_bytes;
        if !full_size && !self.admit()? {
            return Ok(());
        }
        if self
            .check
            .as_mut()
            .is_some_and(|c| c.binary(bytes, rehearsal))
        {
            self.heard();
            return Ok(());
        }
        if full_size && !self.admit()? {
            return Ok(());
        }
        self.bad_frame(ServerMsg::error(
            "binary_not_allowed",
            "binary frames are only accepted during a throughput test",
        ))?;
        self.within_bad_frame_limit()
    }

    fn on_echo(
        &mut self,
        seq: u64,
        client_received_ms: EpochMs,
        client_sent_ms: EpochMs,
    ) -> Result<(), Ending> {
        let now = self.app.clock.now_ms();
        let outstanding = &mut self.probes.outstanding;
        let Some(pos) = outstanding.iter().position(|(s, _)| *s == seq) else {
            // Late (already counted as stalled) or unknown: still a sign of life.
            self.heard();
            return Ok(());
        };
        let (_, sent) = outstanding.remove(pos).expect("position is valid");
        let exchange = Exchange {
            server_sent_ms: sent,
            client_received_ms,
            client_sent_ms,
            server_received_ms: now,
        };
        let outcome = self.app.hub.echo(self.idx, self.id, exchange);
        self.deadline = outcome.next_deadline;
        if let Some(run) = self.check.as_mut() {
            run.echo(
                outcome.rtt_ms,
                outcome.timely,
                outcome.sync.map(|s| s.uncertainty_ms),
            );
        }
        if let Some(sync) = outcome.sync {
            // Later estimates ride with the next probe in the same write (one syscall).
            if self.synced {
                self.pending_sync = Some(sync);
            } else {
                self.synced = true;
                self.send(&ServerMsg::from(sync))?;
            }
        }
        Ok(())
    }

    /// The bridge's WebRTC offer for the UDP phase: answered by the UDP path's peer (a
    /// moment later, from its own task: the session goes on reading meanwhile).
    fn on_udp_offer(&mut self, check: uuid::Uuid, sdp: String) -> Result<(), Ending> {
        let app = self.app;
        let (Some(udp), Some(run)) = (app.udp.clone(), self.check.as_ref()) else {
            return self.send(&ServerMsg::error(
                "udp_refused",
                "no UDP test is running for this check",
            ));
        };
        if !run.in_udp_phase(check) {
            return self.send(&ServerMsg::error(
                "udp_refused",
                "this check is not in its UDP phase",
            ));
        }
        let r = &app.config.rehearsal;
        let stream = crate::services::udp_path::Stream {
            seconds: r.udp_seconds,
            mbps: r.udp_mbps,
            packet_bytes: r.udp_packet_bytes,
        };
        // The stream ends a second before the phase, so the last echoes are counted.
        let until = run.phase_ends - Duration::from_secs(1);
        let out = self.out.clone();
        tokio::spawn(async move {
            let reply = match udp.open(check, sdp, stream, until).await {
                Ok(answer) => ServerMsg::UdpAnswer { check, sdp: answer },
                Err(e) => ServerMsg::error("udp_refused", e.to_string()),
            };
            let _ = out.try_send(Outbound::Text(Frame::from(&reply)));
        });
        Ok(())
    }

    fn on_check_request(
        &mut self,
        technician: &str,
        checklist: BTreeMap<String, bool>,
        devices: Option<crate::core::rehearsal::DeviceFigures>,
    ) -> Result<(), Ending> {
        self.heard();
        let app = self.app;
        let refusal = if self.check.is_some() {
            Some((
                "check_busy",
                "Đang kiểm tra rồi — a check is already running",
            ))
        } else if presenting(app) {
            Some((
                "check_refused",
                "Đang có phần tham luận, không kiểm tra băng thông lúc này; thử lại khi hết phần — a presentation is under way: try again after it",
            ))
        } else if technician.trim().is_empty() {
            Some((
                "check_refused",
                "Hãy ghi tên kỹ thuật viên — give the technician's name",
            ))
        } else {
            None
        };
        let refusal = refusal.map(|(code, message)| (code, message.to_string()));
        let refusal = refusal.or_else(|| {
            let spent = app.limits.rehearsal_attempt(self.idx, app.clock.now_ms()).err()?;
            Some((
                "check_refused",
                format!(
                    "Đã kiểm tra {} lần trong một giờ, thử lại sau {} phút — too many checks this hour",
                    app.config.rehearsal.max_attempts_per_hour,
                    (spent.retry_after_seconds() + 59) / 60
                ),
            ))
        });
        let reply = match refusal {
            Some((code, message)) => ServerMsg::error(code, message),
            None => {
                let rehearsal = &app.config.rehearsal;
                let name: String = technician.trim().chars().take(80).collect();
                let (run, start) = RehearsalRun::start(
                    self.site,
                    name,
                    checklist,
                    devices,
                    app.udp.is_some(),
                    rehearsal,
                    app.clock.now_ms(),
                );
                tracing::info!(check = %run.id, "rehearsal check started");
                self.check = Some(Box::new(run));
                self.probes
                    .restart(Duration::from_millis(rehearsal.probe_interval_ms));
                start
            }
        };
        self.send(&reply)
    }

    /// A probe is due: unanswered ones past the echo timeout are stalls.
    fn on_probe_due(&mut self) -> Result<(), Ending> {
        let now = self.app.clock.now_ms();
        let echo_timeout = self.app.config.liveness.echo_timeout_ms as i64;
        let probes = &mut self.probes;
        while probes
            .outstanding
            .front()
            .is_some_and(|(_, sent)| now - sent >= echo_timeout)
        {
            probes.outstanding.pop_front();
            self.app.hub.probe_missed(self.idx, self.id);
            if let Some(run) = self.check.as_mut() {
                run.probe_missed();
            }
        }
        probes.next_seq += 1;
        probes.outstanding.push_back((probes.next_seq, now));
        let seq = probes.next_seq;
        self.app.hub.probe_sent(self.idx, self.id);
        if let Some(run) = self.check.as_mut() {
            run.probe_sent();
        }
        if let Some(sync) = self.pending_sync.take() {
            self.send(&ServerMsg::from(sync))?;
        }
        self.send(&ServerMsg::Probe {
            seq,
            server_ms: now,
        })?;
        let probes = &mut self.probes;
        if probes.quick_left > 0 {
            probes.quick_left -= 1;
            if probes.quick_left == 0 && self.check.is_none() {
                probes.ticks =
                    tokio::time::interval_at(Instant::now() + probes.every, probes.every);
                probes
                    .ticks
                    .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        }
        Ok(())
    }

    /// The running check's stage is over: the next one begins, or the verdict.
    async fn on_stage_end(&mut self) -> Result<(), Ending> {
        let app = self.app;
        let rehearsal = &app.config.rehearsal;
        let run = self.check.as_mut().expect("a check is running");
        match run.advance(rehearsal, &self.out, presenting(app)) {
            Step::Next(msg) => self.send(&msg),
            Step::Wait => Ok(()),
            Step::Finished => {
                let mut run = self.check.take().expect("a check is running");
                if run.ran_udp() {
                    run.udp = Some(udp_figures(app, run.id).await);
                }
                let result = run.finish(rehearsal, &app.store, false, app.clock.now_ms());
                // On disk before the site is told: a verdict it saw survives a kill -9.
                if let Err(e) = app.store.flush().await {
                    tracing::error!(error = %e, "rehearsal result not stored");
                }
                announce_check(app, &result);
                self.probes
                    .restart(Duration::from_millis(app.config.liveness.probe_interval_ms));
                self.send(&ServerMsg::CheckResult {
                    check: result.id,
                    verdict: result.verdict,
                    rows: result.rows,
                    figures: result.figures,
                })
            }
        }
    }

    /// The site's deadline passed without a word from it.
    fn on_silence(&mut self) -> Result<(), Ending> {
        let (offline, next) = self.app.hub.tick(self.idx, self.id);
        self.deadline = next;
        if offline {
            return Err(Ending::close(
                close::SILENT,
                "silent too long: offline, reconnect",
            ));
        }
        Ok(())
    }

    /// Any valid frame re-arms the site's deadline.
    fn heard(&mut self) {
        self.deadline = self.app.hub.heard(self.idx, self.id);
    }

    /// Queues a frame without waiting; a full queue means the site is not reading.
    fn send(&self, msg: &ServerMsg) -> Result<(), Ending> {
        self.out
            .try_send(Outbound::Text(Frame::from(msg)))
            .map_err(|_| Ending::close(close::NOT_READING, NOT_READING_REASON))
    }

    /// Whether one more inbound frame is handled (`false`: dropped unread), or why the
    /// connection ends.
    fn admit(&mut self) -> Result<bool, Ending> {
        match self.flood.check() {
            Flow::Allow => Ok(true),
            Flow::Throttle { warn: false } => Ok(false),
            Flow::Throttle { warn: true } => {
                self.send(&ServerMsg::error(
                    "slow_down",
                    "too many frames per second: frames are dropped; twice the limit closes the socket (4429)",
                ))?;
                Ok(false)
            }
            Flow::Close => Err(Ending::close(close::FLOODING, "too many frames per second")),
        }
    }

    /// A frame the protocol does not allow: counted, and answered with why.
    fn bad_frame(&mut self, why: ServerMsg) -> Result<(), Ending> {
        self.bad_frames += 1;
        self.send(&why)
    }

    fn within_bad_frame_limit(&self) -> Result<(), Ending> {
        if self.bad_frames > self.app.config.protocol.max_bad_frames {
            return Err(Ending::close(close::BAD_HELLO, "too many bad frames"));
        }
        Ok(())
    }

    /// The site is marked first (detection latency matters more than the close
    /// handshake); a check in progress is parked (dropped) or stored as failed
    /// (closed by the server); then the close frame, and the writer is given a second.
    async fn end(
        self,
        ending: Ending,
        close_tx: oneshot::Sender<Message>,
        mut writer: tokio::task::JoinHandle<()>,
    ) {
        let Session {
            app,
            idx,
            id,
            check,
            out,
            ..
        } = self;
        app.hub.disconnected(idx, id, &ending.reason);
        if let Some(mut run) = check {
            if ending.code.is_none() {
                // Dropped: the site has a grace to come back and carry on with its check.
                run.suspend();
                park_check(app, idx, *run);
            } else {
                // Closed by the server: still evidence, stored and failed on that row.
                let result =
                    run.finish(&app.config.rehearsal, &app.store, true, app.clock.now_ms());
                announce_check(app, &result);
            }
        }
        tracing::info!(reason = %ending.reason, "site disconnected");
        match ending.code {
            Some(code) => drop(close_tx.send(close_message(code, &ending.reason))),
            None => drop(close_tx),
        }
        drop(out);
        if tokio::time::timeout(Duration::from_secs(1), &mut writer)
            .await
            .is_err()
        {
            writer.abort(); // the peer does not read even its close frame
        }
    }
}

/// Why the hub asked this connection to close.
fn kicked(code: u16) -> Ending {
    let reason = match code {
        close::REPLACED => "replaced by a newer connection",
        close::BAD_KEY => "this site's key was rotated: reconnect with the new key",
        _ => NOT_READING_REASON,
    };
    Ending::close(code, reason)
}

/// Throughput tests never run while a presentation is under way.
/// What the UDP phase measured; a bridge that never offered a channel is "not offered".
async fn udp_figures(app: &AppState, check: uuid::Uuid) -> crate::core::udp_path::UdpFigures {
    let Some(udp) = app.udp.as_ref() else {
        return Default::default();
    };
    udp.take(check)
        .await
        .unwrap_or(crate::core::udp_path::UdpFigures {
            port: udp.port,
            ..Default::default()
        })
}

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
        result: Box::new(result.clone()),
    }));
}

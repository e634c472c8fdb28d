//! One rehearsal check in progress on a bridge connection: its phases, what each
//! measures, and the stored result. Driven by the bridge session task; the rubric
//! itself is in `rehearsal` (pure).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::RehearsalConfig;
use crate::core::rehearsal::{
    DeviceFigures, Figures, RehearsalResult, judge, latency_figures, p90_after_warmup,
    window_rates_mbps,
};
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;
use crate::protocol::ServerMsg;
use crate::services::hub::Outbound;
use crate::store::Store;

/// How long the server waits for the client's download report.
const REPORT_WAIT: Duration = Duration::from_secs(5);
/// Binary frames queued ahead of the probes at most: the check must measure the
/// link's queues, not ours.
const DOWNLOAD_FRAMES_IN_FLIGHT: usize = 4;

/// Which part of the rehearsal check is running (the timer has its own `Phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Latency,
    Download,
    AwaitReport,
    Upload,
    /// The UDP path: a WebRTC data channel's round trips.
    Udp,
}

/// What the session should do after a phase ended.
pub enum Step {
    /// Send this frame; the next phase has begun.
    Next(Box<ServerMsg>),
    /// The next phase has begun; nothing to send.
    Wait,
    /// The check is over.
    Finished,
}

pub struct RehearsalRun {
    pub id: Uuid,
    site: SiteId,
    technician: String,
    checklist: BTreeMap<String, bool>,
    devices: Option<DeviceFigures>,
    /// Whether the check ends with the UDP path test (the service has a UDP port).
    udp_test: bool,
    /// The UDP path's figures, once its phase is over.
    pub udp: Option<crate::core::udp_path::UdpFigures>,
    started_ms: EpochMs,
    pub phase: Stage,
    pub phase_ends: Instant,
    idle_rtts: Vec<f64>,
    loaded_rtts: Vec<f64>,
    probes: u64,
    stalled: u64,
    download_windows: Option<Vec<u64>>,
    upload_started: Option<Instant>,
    upload_windows: Vec<u64>,
    offset_uncertainty_ms: Option<f64>,
    sender: Option<JoinHandle<()>>,
    /// Drops during the check that the site came back from within the grace.
    reconnects: u32,
}

impl RehearsalRun {
    pub fn start(
        site: SiteId,
        technician: String,
        checklist: BTreeMap<String, bool>,
        devices: Option<DeviceFigures>,
        udp_test: bool,
        config: &RehearsalConfig,
        now_ms: EpochMs,
    ) -> (RehearsalRun, ServerMsg) {
        let id = Uuid::new_v4();
        let run = RehearsalRun {
            id,
            site,
            technician,
            checklist,
            devices,
            udp_test,
            udp: None,
            started_ms: now_ms,
            phase: Stage::Latency,
            phase_ends: Instant::now() + Duration::from_secs(config.idle_seconds),
            idle_rtts: Vec::new(),
            loaded_rtts: Vec::new(),
            probes: 0,
            stalled: 0,
            download_windows: None,
            upload_started: None,
            upload_windows: Vec::new(),
            offset_uncertainty_ms: None,
            sender: None,
            reconnects: 0,
        };
        let msg = run.start_msg("latency", config.idle_seconds, config);
        (run, msg)
    }

    fn start_msg(&self, phase: &'static str, seconds: u64, config: &RehearsalConfig) -> ServerMsg {
        ServerMsg::CheckStart {
            check: self.id,
            phase,
            seconds,
            window_ms: config.window_ms,
            frame_bytes: config.frame_bytes,
        }
    }

    pub fn probe_sent(&mut self) {
        if matches!(self.phase, Stage::Latency | Stage::Download | Stage::Upload) {
            self.probes += 1;
        }
    }

    pub fn probe_missed(&mut self) {
        self.stalled += 1;
    }

    pub fn echo(&mut self, rtt_ms: f64, timely: bool, uncertainty_ms: Option<f64>) {
        if !timely {
            self.stalled += 1;
        }
        match self.phase {
            Stage::Latency => self.idle_rtts.push(rtt_ms),
            Stage::Download | Stage::Upload => self.loaded_rtts.push(rtt_ms),
            Stage::AwaitReport | Stage::Udp => {}
        }
        if uncertainty_ms.is_some() {
            self.offset_uncertainty_ms = uncertainty_ms;
        }
    }

    /// A binary frame from the client: counted during the upload, refused otherwise.
    pub fn binary(&mut self, bytes: usize, config: &RehearsalConfig) -> bool {
        if self.phase != Stage::Upload {
            return false;
        }
        let started = *self.upload_started.get_or_insert_with(Instant::now);
        let window = (started.elapsed().as_millis() as u64 / config.window_ms) as usize;
        let windows = (config.throughput_seconds * 1000 / config.window_ms) as usize;
        if window < windows {
            if self.upload_windows.len() <= window {
                self.upload_windows.resize(window + 1, 0);
            }
            self.upload_windows[window] += bytes as u64;
        }
        true
    }

    /// The client's download figures; ends the wait for them.
    pub fn report(&mut self, check: Uuid, phase: &str, windows: Vec<u64>) {
        if check == self.id && phase == "download" && self.download_windows.is_none() {
            self.download_windows = Some(windows);
            if self.phase == Stage::AwaitReport {
                self.phase_ends = Instant::now();
            }
        }
    }

    /// Moves to the next phase when the current one has ended. Throughput phases never
    /// start while a presentation is under way (`presenting`): the check ends instead.
    pub fn advance(
        &mut self,
        config: &RehearsalConfig,
        out: &mpsc::Sender<Outbound>,
        presenting: bool,
    ) -> Step {
        let throughput = Duration::from_secs(config.throughput_seconds);
        match self.phase {
            Stage::Latency if presenting => Step::Finished,
            Stage::Latency => {
                self.phase = Stage::Download;
                self.phase_ends = Instant::now() + throughput;
                self.sender = Some(tokio::spawn(send_download(
                    out.clone(),
                    config.frame_bytes,
                    self.phase_ends,
                )));
                Step::Next(Box::new(self.start_msg(
                    "download",
                    config.throughput_seconds,
                    config,
                )))
            }
            Stage::Download => {
                self.phase = Stage::AwaitReport;
                self.phase_ends = if self.download_windows.is_some() {
                    Instant::now()
                } else {
                    Instant::now() + REPORT_WAIT
                };
                Step::Wait
            }
            Stage::AwaitReport if presenting => Step::Finished,
            Stage::AwaitReport => {
                self.phase = Stage::Upload;
                // A second of grace for frames still on their way.
                self.phase_ends = Instant::now() + throughput + Duration::from_secs(1);
                Step::Next(Box::new(self.start_msg(
                    "upload",
                    config.throughput_seconds,
                    config,
                )))
            }
            Stage::Upload if !self.udp_test || presenting => Step::Finished,
            Stage::Upload => {
                self.phase = Stage::Udp;
                self.phase_ends = Instant::now()
                    + Duration::from_secs(config.udp_connect_seconds + config.udp_seconds + 1);
                Step::Next(Box::new(self.start_msg("udp", config.udp_seconds, config)))
            }
            Stage::Udp => Step::Finished,
        }
    }

    /// Whether the UDP phase of this check is on (a `udp_offer` is welcome).
    pub fn in_udp_phase(&self, check: Uuid) -> bool {
        check == self.id && self.phase == Stage::Udp
    }

    /// Whether this check ran its UDP phase (its figures are to be collected).
    pub fn ran_udp(&self) -> bool {
        self.phase == Stage::Udp
    }

    /// The connection dropped: stop sending, keep what was measured.
    pub fn suspend(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
    }

    /// The site is back within the grace: carry on, redoing a throughput test that the
    /// drop cut short (its figures were lost with the connection). Returns the frame
    /// that tells the client which phase it is in.
    pub fn resume(
        &mut self,
        config: &RehearsalConfig,
        out: &mpsc::Sender<Outbound>,
        presenting: bool,
    ) -> Option<ServerMsg> {
        self.reconnects += 1;
        match self.phase {
            Stage::Latency => {
                let left = self
                    .phase_ends
                    .saturating_duration_since(Instant::now())
                    .as_secs();
                Some(self.start_msg("latency", left, config))
            }
            // Back to just before the download or the upload, which start at once.
            Stage::Download | Stage::AwaitReport => {
                self.phase = Stage::Latency;
                self.download_windows = None;
                self.advance_now(config, out, presenting)
            }
            Stage::Upload => {
                self.phase = Stage::AwaitReport;
                self.upload_windows.clear();
                self.upload_started = None;
                self.advance_now(config, out, presenting)
            }
            // The channel went with the connection: the UDP test again, from its start.
            Stage::Udp => {
                self.phase = Stage::Upload;
                self.advance_now(config, out, presenting)
            }
        }
    }

    fn advance_now(
        &mut self,
        config: &RehearsalConfig,
        out: &mpsc::Sender<Outbound>,
        presenting: bool,
    ) -> Option<ServerMsg> {
        match self.advance(config, out, presenting) {
            Step::Next(msg) => Some(*msg),
            Step::Wait | Step::Finished => {
                self.phase_ends = Instant::now();
                None
            }
        }
    }

    /// Judges and stores the check; `disconnected` when the connection dropped during it
    /// and did not come back.
    pub fn finish(
        mut self,
        config: &RehearsalConfig,
        store: &Store,
        disconnected: bool,
        now_ms: EpochMs,
    ) -> RehearsalResult {
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
        let warmup = (config.warmup_ms / config.window_ms) as usize;
        let rate = |windows: &[u64]| {
            p90_after_warmup(&window_rates_mbps(windows, config.window_ms), warmup)
        };
        let (rtt, jitter, rise, stalled) = latency_figures(
            &self.idle_rtts,
            &self.loaded_rtts,
            self.probes,
            self.stalled,
        );
        let figures = Figures {
            upload_mbps: rate(&self.upload_windows),
            download_mbps: self.download_windows.as_deref().and_then(rate),
            rtt_median_ms: rtt,
            jitter_ms: jitter,
            loaded_rise_ms: rise,
            stalled_pct: stalled,
            disconnects: self.reconnects + disconnected as u32,
            back_within_10s: self.reconnects == 1 && !disconnected,
            offset_uncertainty_ms: self.offset_uncertainty_ms,
            devices: self.devices.take(),
            udp: self.udp.take(),
        };
        let (verdict, rows) = judge(&figures, &config.rubric);
        let result = RehearsalResult {
            id: self.id,
            site: self.site,
            started_ms: self.started_ms,
            finished_ms: now_ms,
            technician: self.technician,
            checklist: self.checklist,
            verdict,
            rows,
            figures,
        };
        store.record_rehearsal(&result);
        result
    }
}

/// Sends download frames until `until`, keeping only a few ahead of the probes.
async fn send_download(out: mpsc::Sender<Outbound>, frame_bytes: usize, until: Instant) {
    let frame = std::sync::Arc::new(Bytes::from(vec![0x5a; frame_bytes]));
    while Instant::now() < until {
        if out.max_capacity() - out.capacity() >= DOWNLOAD_FRAMES_IN_FLIGHT {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        if out.try_send(Outbound::Binary(frame.clone())).is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

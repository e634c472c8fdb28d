//! Configuration: `diemcau.toml` (embedded default or `--config`), plus the roster and
//! agenda it points to. Loaded whole and checked before anything starts.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::core::agenda::Agenda;
use crate::core::liveness::Thresholds;
use crate::core::sites::Roster;
use crate::core::table::TableError;
use crate::core::timer::{AtZero, TimerPolicy};

const DEFAULT_TOML: &str = include_str!("../config/diemcau.toml");
const DEFAULT_SITES: &[u8] = include_bytes!("../config/sites.csv");
const DEFAULT_AGENDA: &[u8] = include_bytes!("../config/agenda.csv");

/// Everything in `diemcau.toml`. Missing keys keep their defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    /// The address people open, when a reverse proxy (TLS) stands in front, e.g.
    /// `https://diemcau.thainguyen.gov.vn`: pages sent from it may use the page cookie,
    /// and an https one makes the cookie `Secure`.
    pub public_url: Option<String>,
    /// Where a stop with a refusing disk writes the records it could not store, to be
    /// replayed at the next start: best on another disk. Unset: `/dev/shm`, then the
    /// temporary folder.
    pub recovery_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub sites: Option<PathBuf>,
    pub agenda: Option<PathBuf>,
    pub liveness: LivenessConfig,
    pub protocol: ProtocolConfig,
    pub timer: TimerConfig,
    pub rehearsal: RehearsalConfig,
    pub checks: ChecksConfig,
    pub report: ReportConfig,
    pub incidents: IncidentsConfig,
    pub notify: NotifyConfig,
    pub metrics: MetricsConfig,
}

/// Channels diemcau relays Alertmanager's notifications to (README "Notifications").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub zalo: ZaloConfig,
}

/// The Zalo bot the relay posts to (its token is `[zalo] bot_token` in secrets.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZaloConfig {
    /// The Zalo Bot API, e.g. `https://bot-api.zaloplatforms.com`. Unset: no relay.
    pub api_url: Option<String>,
    /// The chat (a person or a group) the bot writes to.
    pub chat_id: Option<String>,
    /// Tries per message (a timeout, a 5xx or a 429 is tried again; other answers are final).
    pub attempts: u32,
    /// Wait before the second try; doubled before each next one.
    pub first_retry_ms: u64,
    pub timeout_ms: u64,
    /// Messages waiting to be sent; over it Alertmanager is answered 503 and sends again.
    pub queue: usize,
}

impl Default for ZaloConfig {
    fn default() -> Self {
        ZaloConfig {
            api_url: None,
            chat_id: None,
            attempts: 4,
            first_retry_ms: 1000,
            timeout_ms: 10_000,
            queue: 64,
        }
    }
}

/// When a site in trouble opens an incident, when it closes, when an untaken one is
/// raised again; inside the `[report]` window when it is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentsConfig {
    pub degraded_after_seconds: u64,
    pub resolve_after_seconds: u64,
    pub raise_after_seconds: u64,
    /// Takes, notes and excusals one staff key may send in a minute (each is stored).
    pub max_acts_per_minute: u32,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            degraded_after_seconds: 60,
            resolve_after_seconds: 60,
            raise_after_seconds: 120,
            max_acts_per_minute: 60,
        }
    }
}

/// The conference window of the evidence report (RFC 3339, e.g. 2026-11-28T08:00:00+07:00),
/// and how often each connected site's median RTT is stored for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    pub start: Option<String>,
    pub end: Option<String>,
    pub rtt_sample_ms: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            start: None,
            end: None,
            rtt_sample_ms: 60_000,
        }
    }
}

impl Config {
    /// The origin (`https://host[:port]`) of `public_url`, if set.
    pub fn public_origin(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .and_then(|url| public_origin(url).ok())
    }

    /// The service is reached over https (the cookie may then say `Secure`).
    pub fn behind_https(&self) -> bool {
        self.public_origin()
            .is_some_and(|origin| origin.starts_with("https://"))
    }
}

/// The origin of a `public_url`: http or https, a host, no path beyond `/`.
fn public_origin(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("public_url `{text}` is not an address like https://diemcau.example.vn ({e})")
    })?;
    let fits = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && url.query().is_none();
    if !fits {
        return Err(format!(
            "public_url `{text}` must be http(s)://host[:port] with no path, e.g. https://diemcau.example.vn"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{text}` is not a time like 2026-11-28T08:00:00+07:00 ({e})"))
}

/// Active checks of the sites' `probe` addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksConfig {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failed checks in a row before the device counts as down.
    pub failures_to_down: u32,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            interval_ms: 10_000,
            timeout_ms: 3000,
            failures_to_down: 3,
        }
    }
}

/// The rehearsal check: phases and the rubric.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RehearsalConfig {
    /// Probes on an idle link before the throughput tests.
    pub idle_seconds: u64,
    /// Length of each throughput test (download, then upload).
    pub throughput_seconds: u64,
    pub probe_interval_ms: u64,
    /// Throughput is measured by the receiver in windows of this length…
    pub window_ms: u64,
    /// …and the windows of the first seconds are left out.
    pub warmup_ms: u64,
    pub frame_bytes: usize,
    /// A site that drops during its check may come back within this and carry on.
    pub reconnect_grace_seconds: u64,
    /// Checks one site may start in an hour (each is stored as an attempt).
    pub max_attempts_per_hour: u32,
    /// The UDP path test: this long a stream of `udp_mbps` in `udp_packet_bytes`
    /// packets each way over a WebRTC data channel, after up to `udp_connect_seconds`
    /// to open it. 0 seconds: no UDP test.
    pub udp_seconds: u64,
    pub udp_connect_seconds: u64,
    pub udp_mbps: f64,
    pub udp_packet_bytes: usize,
    /// The one UDP port the service listens on for it (the firewall must let it in).
    /// Unset: the HTTP port's number.
    pub udp_port: Option<u16>,
    /// The address the bridges are told to send UDP to (`10.0.0.5` or `10.0.0.5:8080`),
    /// when the service listens on every address or sits behind NAT. Unset: the address
    /// it listens on.
    pub udp_advertise: Option<String>,
    pub rubric: crate::core::rehearsal::Rubric,
}

impl Default for RehearsalConfig {
    fn default() -> Self {
        Self {
            idle_seconds: 95,
            throughput_seconds: 10,
            probe_interval_ms: 500,
            window_ms: 250,
            warmup_ms: 2000,
            frame_bytes: 64 * 1024,
            reconnect_grace_seconds: 10,
            max_attempts_per_hour: 12,
            udp_seconds: 20,
            udp_connect_seconds: 5,
            udp_mbps: 1.5,
            udp_packet_bytes: 1100,
            udp_port: None,
            udp_advertise: None,
            rubric: crate::core::rehearsal::Rubric::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessConfig {
    pub probe_interval_ms: u64,
    pub degraded_after_ms: u64,
    pub offline_after_ms: u64,
    pub online_after_echoes: u32,
    pub echo_timeout_ms: u64,
    pub flapping_offline_count: u32,
    pub flapping_window_ms: u64,
    /// An online site whose RTT is over this shows it in amber on the wall.
    pub slow_rtt_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolConfig {
    pub hello_timeout_ms: u64,
    pub max_frame_bytes: usize,
    pub send_queue_frames: usize,
    pub max_frames_per_second: u32,
    pub max_bad_frames: u32,
    /// Open TCP connections (pages, API, websockets); over it a new one gets 503.
    pub max_connections: usize,
    /// A connection must send each request's headers within this time (the first from
    /// when it opens, the next from the last answer); open websockets are exempt.
    pub handshake_timeout_ms: u64,
    /// A live-feed page that cannot take a frame for this long is dropped.
    pub live_send_timeout_ms: u64,
    /// Bridge connections one site may open in a minute; more are closed with 4429
    /// before anything is stored.
    pub max_connects_per_minute: u32,
    /// Roll calls and messages one staff key may send in a minute (each is stored).
    pub max_notices_per_minute: u32,
    /// Wall alerts one staff key may mark "Đã biết" in a minute (each is stored).
    pub max_dismissals_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerConfig {
    pub slot_seconds: u32,
    pub warning_seconds: u32,
    pub danger_seconds: u32,
    pub at_zero: AtZero,
    pub auto_stop_grace_seconds: u32,
    pub pause_on_site_loss: bool,
    /// When the programme begins (RFC 3339, e.g. `2026-12-20T08:00:00+07:00`); each slot's
    /// planned start follows from it. Unset: `[report] start`; neither: no times of day.
    pub starts_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub public: bool,
}

// The core's parameters come from the config here, so the core never sees a file.
impl From<&LivenessConfig> for Thresholds {
    fn from(c: &LivenessConfig) -> Self {
        Self {
            degraded_after_ms: c.degraded_after_ms as i64,
            offline_after_ms: c.offline_after_ms as i64,
            online_after_echoes: c.online_after_echoes,
            flapping_offline_count: c.flapping_offline_count,
            flapping_window_ms: c.flapping_window_ms as i64,
        }
    }
}

impl Config {
    /// The timer's rules, with the programme's start (`timer.starts_at`, else the
    /// report's start; both checked at load).
    pub fn timer_policy(&self) -> TimerPolicy {
        let c = &self.timer;
        let start = c.starts_at.as_deref().or(self.report.start.as_deref());
        TimerPolicy {
            warning_ms: c.warning_seconds as i64 * 1000,
            danger_ms: c.danger_seconds as i64 * 1000,
            at_zero: c.at_zero,
            auto_stop_grace_ms: c.auto_stop_grace_seconds as i64 * 1000,
            programme_start_ms: start.and_then(|text| parse_time(text).ok()),
        }
    }
}

impl Config {
    /// The incident rules, inside the report's window (both ends checked at load).
    pub fn incident_policy(&self) -> crate::core::incidents::IncidentPolicy {
        let c = &self.incidents;
        let at = |text: &Option<String>| text.as_deref().and_then(|t| parse_time(t).ok());
        crate::core::incidents::IncidentPolicy {
            degraded_after_ms: c.degraded_after_seconds as i64 * 1000,
            resolve_after_ms: c.resolve_after_seconds as i64 * 1000,
            raise_after_ms: c.raise_after_seconds as i64 * 1000,
            window_start_ms: at(&self.report.start),
            window_end_ms: at(&self.report.end),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            recovery_dir: None,
            data_dir: "data".into(),
            sites: None,
            agenda: None,
            liveness: LivenessConfig::default(),
            protocol: ProtocolConfig::default(),
            timer: TimerConfig::default(),
            rehearsal: RehearsalConfig::default(),
            checks: ChecksConfig::default(),
            report: ReportConfig::default(),
            incidents: IncidentsConfig::default(),
            notify: NotifyConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            probe_interval_ms: 2000,
            degraded_after_ms: 6000,
            offline_after_ms: 15000,
            online_after_echoes: 3,
            echo_timeout_ms: 2000,
            flapping_offline_count: 3,
            flapping_window_ms: 600_000,
            slow_rtt_ms: 300,
        }
    }
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            hello_timeout_ms: 5000,
            max_frame_bytes: 64 * 1024,
            send_queue_frames: 64,
            max_frames_per_second: 50,
            max_bad_frames: 10,
            max_connections: 16_384,
            handshake_timeout_ms: 10_000,
            live_send_timeout_ms: 10_000,
            max_connects_per_minute: 30,
            max_notices_per_minute: 30,
            max_dismissals_per_minute: 120,
        }
    }
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            slot_seconds: 420,
            warning_seconds: 60,
            danger_seconds: 30,
            at_zero: AtZero::Signal,
            auto_stop_grace_seconds: 30,
            pause_on_site_loss: true,
            starts_at: None,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { public: true }
    }
}

/// A configuration that could not be used, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Configuration with its roster and agenda, all checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub roster: Roster,
    pub agenda: Agenda,
}

/// Where each part comes from; `None` means the embedded default.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config: Option<PathBuf>,
    pub sites: Option<PathBuf>,
    pub agenda: Option<PathBuf>,
}

impl Loaded {
    /// Loads config, roster and agenda. Paths inside a config file are relative to it.
    pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
        let (config, base, label) = match &sources.config {
            None => (
                parse_toml(DEFAULT_TOML, "embedded diemcau.toml")?,
                None,
                "embedded diemcau.toml".to_string(),
            ),
            Some(path) => {
                let text = read_text(path)?;
                let label = path.display().to_string();
                let mut config = parse_toml(&text, &label)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                config.data_dir = base.join(&config.data_dir);
                (config, Some(base), label)
            }
        };
        config.validate(&label)?;
        let in_config = |p: &Option<PathBuf>| -> Option<PathBuf> {
            p.as_ref()
                .map(|p| base.as_ref().map_or(p.clone(), |b| b.join(p)))
        };
        let sites_path = sources.sites.clone().or_else(|| in_config(&config.sites));
        let agenda_path = sources.agenda.clone().or_else(|| in_config(&config.agenda));

        let roster = match &sites_path {
            None => Roster::parse("config/sites.csv (embedded)", DEFAULT_SITES)?,
            Some(path) => Roster::parse(&path.display().to_string(), &read_bytes(path)?)?,
        };
        let slot = config.timer.slot_seconds;
        let agenda = match &agenda_path {
            None if sites_path.is_some() => Agenda::default(),
            None => Agenda::parse(
                "config/agenda.csv (embedded)",
                DEFAULT_AGENDA,
                &roster,
                slot,
            )?,
            Some(path) => Agenda::parse(
                &path.display().to_string(),
                &read_bytes(path)?,
                &roster,
                slot,
            )?,
        };
        Ok(Loaded {
            config,
            roster,
            agenda,
        })
    }
}

impl Config {
    /// Rejects values that would make the service misbehave rather than fail.
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.to_string(),
            message: message.to_string(),
        };
        if let Some(url) = &self.public_url {
            public_origin(url).map_err(|e| invalid(&e))?;
        }
        let l = &self.liveness;
        if l.probe_interval_ms == 0 || l.echo_timeout_ms == 0 {
            return Err(invalid(
                "liveness.probe_interval_ms and echo_timeout_ms must be above 0",
            ));
        }
        if l.degraded_after_ms == 0 || l.degraded_after_ms >= l.offline_after_ms {
            return Err(invalid(
                "liveness.degraded_after_ms must be above 0 and below offline_after_ms",
            ));
        }
        if l.online_after_echoes == 0 || l.flapping_offline_count == 0 {
            return Err(invalid(
                "liveness.online_after_echoes and flapping_offline_count must be at least 1",
            ));
        }
        let p = &self.protocol;
        if p.max_frame_bytes < 1024
            || p.send_queue_frames == 0
            || p.max_frames_per_second == 0
            || p.max_connects_per_minute == 0
            || p.max_notices_per_minute == 0
            || p.max_dismissals_per_minute == 0
        {
            return Err(invalid(
                "protocol.max_frame_bytes must be at least 1024, send_queue_frames, max_frames_per_second, max_connects_per_minute, max_notices_per_minute and max_dismissals_per_minute above 0",
            ));
        }
        let t = &self.timer;
        if t.slot_seconds == 0 || t.danger_seconds > t.warning_seconds {
            return Err(invalid(
                "timer.slot_seconds must be above 0 and danger_seconds ≤ warning_seconds",
            ));
        }
        let c = &self.checks;
        if c.interval_ms == 0 || c.timeout_ms == 0 || c.failures_to_down == 0 {
            return Err(invalid(
                "checks.interval_ms, timeout_ms and failures_to_down must be above 0",
            ));
        }
        for time in [&self.report.start, &self.report.end].into_iter().flatten() {
            parse_time(time).map_err(|e| invalid(&format!("report: {e}")))?;
        }
        if let Some(time) = &self.timer.starts_at {
            parse_time(time).map_err(|e| invalid(&format!("timer.starts_at: {e}")))?;
        }
        let r = &self.rehearsal;
        if r.window_ms == 0
            || r.probe_interval_ms == 0
            || r.frame_bytes == 0
            || r.frame_bytes > p.max_frame_bytes
        {
            return Err(invalid(
                "rehearsal.window_ms and probe_interval_ms must be above 0, frame_bytes from 1 to protocol.max_frame_bytes",
            ));
        }
        let i = &self.incidents;
        if i.resolve_after_seconds == 0 || i.raise_after_seconds == 0 || i.max_acts_per_minute == 0
        {
            return Err(invalid(
                "incidents.resolve_after_seconds, raise_after_seconds and max_acts_per_minute must be above 0",
            ));
        }
        let z = &self.notify.zalo;
        if z.attempts == 0 || z.timeout_ms == 0 || z.queue == 0 {
            return Err(invalid(
                "notify.zalo.attempts, timeout_ms and queue must be above 0",
            ));
        }
        if let Some(url) = &z.api_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(&format!(
                    "notify.zalo.api_url `{url}` must be an http(s) address like https://bot-api.zaloplatforms.com"
                )));
            }
            if z.chat_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
                return Err(invalid(
                    "notify.zalo.chat_id must be set with api_url: the chat the bot writes to",
                ));
            }
        }
        if !(r.udp_mbps > 0.0 && r.udp_mbps <= 100.0)
            || !(100..=1200).contains(&r.udp_packet_bytes)
            || r.udp_connect_seconds == 0
        {
            return Err(invalid(
                "rehearsal.udp_mbps must be above 0 and at most 100, udp_packet_bytes from 100 to 1200, udp_connect_seconds above 0",
            ));
        }
        if let Some(addr) = &r.udp_advertise {
            if addr.parse::<std::net::IpAddr>().is_err()
                && addr.parse::<std::net::SocketAddr>().is_err()
            {
                return Err(invalid(&format!(
                    "rehearsal.udp_advertise `{addr}` must be an IP address like 10.0.0.5, or 10.0.0.5:8080"
                )));
            }
        }
        if self.report.rtt_sample_ms < 100 {
            return Err(invalid("report.rtt_sample_ms must be at least 100"));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(&format!(
                "listen `{}` is not an address like 127.0.0.1:8080",
                self.listen
            )));
        }
        Ok(())
    }
}

fn parse_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Toml {
        path: path.to_string(),
        message: e.to_string(),
    })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|_| ConfigError::Toml {
        path: path.display().to_string(),
        message: "not valid UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load_the_92_sites_and_26_slots() {
        let loaded = Loaded::load(&Sources::default()).unwrap();
        assert_eq!(loaded.roster.len(), 92);
        assert_eq!(loaded.agenda.len(), 26);
        assert_eq!(loaded.config.listen, "127.0.0.1:8080");
        assert_eq!(loaded.config.liveness.degraded_after_ms, 6000);
        assert_eq!(loaded.config.liveness.offline_after_ms, 15000);
    }

    #[test]
    fn config_file_paths_are_relative_to_the_file_and_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.csv"),
            "code,name,kind,former_district\n00001,A,xa,D\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.toml"),
            "sites = \"s.csv\"\n[liveness]\ndegraded_after_ms = 100\noffline_after_ms = 200\n",
        )
        .unwrap();
        let loaded = Loaded::load(&Sources {
            config: Some(dir.path().join("c.toml")),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(loaded.roster.len(), 1);
        assert!(loaded.agenda.is_empty());
        assert_eq!(loaded.config.data_dir, dir.path().join("data"));

        std::fs::write(
            dir.path().join("bad.toml"),
            "[liveness]\ndegraded_after = 1\n",
        )
        .unwrap();
        let err = Loaded::load(&Sources {
            config: Some(dir.path().join("bad.toml")),
            ..Sources::default()
        })
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("unknown field `degraded_after`"),
            "{err}"
        );
    }

    /// Why a config file holding `toml` is refused.
    fn refusal(toml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        Loaded::load(&Sources {
            config: Some(path),
            ..Sources::default()
        })
        .map(drop)
        .expect_err("the config is refused")
        .to_string()
    }

    #[test]
    fn inconsistent_thresholds_are_refused() {
        let why = refusal("[liveness]\ndegraded_after_ms = 20000\n");
        assert!(why.contains("below offline_after_ms"), "{why}");
    }

    #[test]
    fn an_rtt_sample_interval_that_would_flood_the_store_is_refused() {
        let why = refusal("[report]\nrtt_sample_ms = 0\n");
        assert!(why.contains("rtt_sample_ms"), "{why}");
    }
}

//! The two wires, each one serde enum of JSON text frames tagged by `type`:
//! - `/ws/bridge` (protocol v1, DESIGN.md): [`ClientMsg`] in, [`ServerMsg`] out;
//! - `/ws/live` (the pages' feed): [`LiveMsg`] out, every change under one sequence
//!   number ([`Sequenced`], stamped by the hub alone), and [`LiveRequest`] in.
//!
//! A frame is encoded once into a [`Frame`] and shared by every socket it goes to.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::device::{DeviceCheck, DeviceTransition};
use crate::core::link::LinkSummary;
use crate::core::liveness::{SiteState, Transition};
use crate::core::notices::{Dismissal, Notice};
use crate::core::rehearsal::RehearsalResult;
use crate::core::sites::{SiteId, SiteKind};
use crate::core::time::EpochMs;
use crate::core::timer::TimerSnapshot;

/// Close codes the server uses on `/ws/bridge` and `/ws/live`.
pub mod close {
    /// The first frame was not a valid `hello` (or came too late), or a client kept
    /// sending bad frames.
    pub const BAD_HELLO: u16 = 4400;
    /// The key does not belong to the site (or to a role allowed here).
    pub const BAD_KEY: u16 = 4401;
    /// The site is silent beyond `offline_after_ms`: it is offline, reconnect.
    pub const SILENT: u16 = 4408;
    /// The site id is not in the roster.
    pub const UNKNOWN_SITE: u16 = 4404;
    /// A newer connection of the same site replaced this one.
    pub const REPLACED: u16 = 4409;
    /// A frame was larger than the limit.
    pub const TOO_LARGE: u16 = 4413;
    /// Too many frames per second.
    pub const FLOODING: u16 = 4429;
    /// The client does not read what it is sent: its queue is full.
    pub const NOT_READING: u16 = 4503;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
}

/// What kind of program is at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Browser,
    Agent,
    Sim,
}

impl AgentKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentKind::Browser => "browser",
            AgentKind::Agent => "agent",
            AgentKind::Sim => "sim",
        }
    }
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Must be first, within the hello timeout. `key` may be left out by a page whose
    /// session cookie already authenticated the upgrade.
    Hello {
        site: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        agent: AgentKind,
        version: String,
    },
    /// Answer to a `probe`, sent at once.
    Echo {
        seq: u64,
        server_ms: EpochMs,
        client_recv_ms: EpochMs,
        client_send_ms: EpochMs,
    },
    /// Optional keep-alive, may carry media/device stats.
    Heartbeat {
        seq: u64,
        client_ms: EpochMs,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media: Option<serde_json::Value>,
    },
    /// Confirms a roll call or a message (`ref` is its id).
    Ack {
        #[serde(rename = "ref")]
        reference: Uuid,
    },
    /// The technician starts the rehearsal check, with the checklist ticked so far.
    CheckRequest {
        technician: String,
        #[serde(default)]
        checklist: std::collections::BTreeMap<String, bool>,
        /// Camera, microphone and speakers as the page measured them just before.
        #[serde(default)]
        devices: Option<crate::core::rehearsal::DeviceFigures>,
    },
    /// The UDP phase of a check: the bridge's WebRTC offer (a data channel).
    UdpOffer { check: Uuid, sdp: String },
    /// The client's half of a check: bytes received in each window of the download.
    CheckReport {
        check: Uuid,
        phase: String,
        windows_bytes: Vec<u64>,
    },
}

/// The site as `welcome` describes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WelcomeSite {
    pub id: String,
    pub name: String,
    pub kind: String,
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The hello was accepted.
    Welcome {
        site: WelcomeSite,
        session: Uuid,
        server_ms: EpochMs,
        probe_interval_ms: u64,
    },
    /// Answer with an `echo` at once.
    Probe { seq: u64, server_ms: EpochMs },
    /// The client's clock offset as the server measured it.
    Sync {
        offset_ms: f64,
        rtt_ms: f64,
        uncertainty_ms: f64,
    },
    /// The speaker timer, on connect and on every change.
    Timer(TimerSnapshot),
    /// A message from the province, shown until acknowledged with `ack`.
    Message {
        id: Uuid,
        text: String,
        level: String,
    },
    /// Roll call: confirm presence with `ack` before `deadline_ms`.
    RollCall { id: Uuid, deadline_ms: EpochMs },
    /// A phase of the rehearsal check begins: `latency`, `download` (the server sends
    /// binary frames: count bytes per window, then send `check_report`) or `upload`
    /// (send binary frames of `frame_bytes` for `seconds`).
    CheckStart {
        check: Uuid,
        phase: &'static str,
        seconds: u64,
        window_ms: u64,
        frame_bytes: usize,
    },
    /// The service's answer to a `udp_offer`.
    UdpAnswer { check: Uuid, sdp: String },
    /// The check's verdict with every row.
    CheckResult {
        check: Uuid,
        verdict: crate::core::rehearsal::Verdict,
        rows: Vec<crate::core::rehearsal::Row>,
        figures: crate::core::rehearsal::Figures,
    },
    /// The frame was refused; the connection stays unless a close follows.
    Error { code: String, message: String },
}

/// The `sync` a bridge is told: its clock offset as the server measured it.
impl From<crate::core::clocksync::SyncEstimate> for ServerMsg {
    fn from(sync: crate::core::clocksync::SyncEstimate) -> Self {
        ServerMsg::Sync {
            offset_ms: sync.offset_ms,
            rtt_ms: sync.rtt_ms,
            uncertainty_ms: sync.uncertainty_ms,
        }
    }
}

/// Why an inbound text frame could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

/// The longest strings a client may send (README "Security"); a frame with a longer
/// one is refused whole (`too_long`; a hello closes with 4400) and nothing of it is kept.
pub mod limits {
    /// `hello.site`: the ids are five digits.
    pub const SITE: usize = 16;
    /// `hello.key`: diemcau's keys are 32 hex digits.
    pub const KEY: usize = 128;
    /// `hello.version`: a program and its version.
    pub const VERSION: usize = 64;
    /// `check_request.technician`: a person's name.
    pub const TECHNICIAN: usize = 80;
    /// `check_request.checklist`: items, and each item's name.
    pub const CHECKLIST_ITEMS: usize = 16;
    pub const CHECKLIST_ITEM: usize = 32;
    /// `check_report.phase` and its windows (a throughput test has a few dozen).
    pub const PHASE: usize = 16;
    pub const REPORT_WINDOWS: usize = 600;
    /// `udp_offer.sdp`: a browser's offer is 1–5 KB.
    pub const UDP_OFFER: usize = 16 * 1024;
}

/// `field` holds more than `max` characters (or items).
fn too_long(field: &str, max: usize) -> FrameError {
    FrameError {
        code: "too_long",
        message: format!("`{field}` is longer than {max}: nothing of this frame was kept"),
    }
}

impl ClientMsg {
    /// The frame's strings within [`limits`].
    fn check_lengths(&self) -> Result<(), FrameError> {
        let over = |text: &str, max: usize| text.chars().count() > max;
        match self {
            ClientMsg::Hello {
                site, key, version, ..
            } => {
                if over(site, limits::SITE) {
                    return Err(too_long("site", limits::SITE));
                }
                if key.as_deref().is_some_and(|k| over(k, limits::KEY)) {
                    return Err(too_long("key", limits::KEY));
                }
                if over(version, limits::VERSION) {
                    return Err(too_long("version", limits::VERSION));
                }
            }
            ClientMsg::CheckRequest {
                technician,
                checklist,
                devices,
            } => {
                if devices.as_ref().is_some_and(|d| !d.is_plausible()) {
                    return Err(FrameError {
                        code: "bad_devices",
                        message: "`devices` holds a figure no browser reports (a number out of range): nothing of this frame was kept".into(),
                    });
                }
                if over(technician, limits::TECHNICIAN) {
                    return Err(too_long("technician", limits::TECHNICIAN));
                }
                if checklist.len() > limits::CHECKLIST_ITEMS {
                    return Err(too_long("checklist", limits::CHECKLIST_ITEMS));
                }
                if checklist
                    .keys()
                    .any(|item| over(item, limits::CHECKLIST_ITEM))
                {
                    return Err(too_long("checklist item", limits::CHECKLIST_ITEM));
                }
            }
            ClientMsg::UdpOffer { sdp, .. } => {
                if sdp.len() > limits::UDP_OFFER {
                    return Err(too_long("sdp", limits::UDP_OFFER));
                }
            }
            ClientMsg::CheckReport {
                phase,
                windows_bytes,
                ..
            } => {
                if over(phase, limits::PHASE) {
                    return Err(too_long("phase", limits::PHASE));
                }
                if windows_bytes.len() > limits::REPORT_WINDOWS {
                    return Err(too_long("windows_bytes", limits::REPORT_WINDOWS));
                }
            }
            ClientMsg::Echo { .. } | ClientMsg::Heartbeat { .. } | ClientMsg::Ack { .. } => {}
        }
        Ok(())
    }

    /// Decodes a text frame, telling apart non-JSON, an unknown `type`, bad fields and
    /// strings over their length cap.
    pub fn decode(text: &str) -> Result<ClientMsg, FrameError> {
        let msg = Self::decode_fields(text)?;
        msg.check_lengths()?;
        Ok(msg)
    }

    fn decode_fields(text: &str) -> Result<ClientMsg, FrameError> {
        serde_json::from_str(text).map_err(|err| {
            #[derive(Deserialize)]
            struct Tagged {
                #[serde(rename = "type")]
                kind: String,
            }
            match serde_json::from_str::<serde_json::Value>(text) {
                Err(_) => FrameError {
                    code: "bad_json",
                    message: "frame is not JSON".into(),
                },
                Ok(value) => match serde_json::from_value::<Tagged>(value) {
                    Ok(tagged) if !KNOWN_TYPES.contains(&tagged.kind.as_str()) => FrameError {
                        code: "unknown_type",
                        message: format!("unknown frame type `{}`", truncate(&tagged.kind, 40)),
                    },
                    _ => FrameError {
                        code: "bad_frame",
                        message: format!(
                            "frame does not match protocol v1: {}",
                            truncate(&err.to_string(), 200)
                        ),
                    },
                },
            }
        })
    }
}

/// The client frame types protocol v1 knows (DESIGN.md).
pub const KNOWN_TYPES: &[&str] = &[
    "hello",
    "echo",
    "heartbeat",
    "ack",
    "check_request",
    "check_report",
    "udp_offer",
];

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

impl ServerMsg {
    pub fn welcome(
        id: SiteId,
        name: &str,
        kind: SiteKind,
        session: Uuid,
        server_ms: EpochMs,
        probe_interval_ms: u64,
    ) -> Self {
        ServerMsg::Welcome {
            site: WelcomeSite {
                id: id.to_string(),
                name: name.to_string(),
                kind: kind.as_str().to_string(),
            },
            session,
            server_ms,
            probe_interval_ms,
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// One encoded text frame (UTF-8 JSON), shared by every socket it is sent to: a clone
/// is a reference count, not a copy.
/// One pointer wide, so that a site's send queue stays small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Arc<Bytes>);

impl Frame {
    pub fn encode(message: &impl Serialize) -> Frame {
        Frame(Arc::new(Bytes::from(
            serde_json::to_string(message).expect("wire messages always serialize"),
        )))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a frame is encoded from a String")
    }

    /// The UTF-8 bytes, for the socket (a reference count, not a copy).
    pub fn bytes(&self) -> Bytes {
        Bytes::clone(&self.0)
    }
}

impl From<&ServerMsg> for Frame {
    fn from(message: &ServerMsg) -> Frame {
        Frame::encode(message)
    }
}

/// Everything a page or API client sees about one site.
#[derive(Clone, Debug, Serialize)]
pub struct SiteView {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub former_district: String,
    pub state: SiteState,
    pub since_ms: Option<EpochMs>,
    pub last_seen_ms: Option<EpochMs>,
    pub connected: bool,
    pub agent: Option<AgentKind>,
    #[serde(flatten)]
    pub link: LinkSummary,
    /// Fraction of the time since tracking began that the site was up (0–1).
    pub uptime: Option<f64>,
    pub flapping: bool,
    pub clock_offset_ms: Option<f64>,
    pub clock_uncertainty_ms: Option<f64>,
}

/// Sites by state.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct StateCounts {
    pub total: usize,
    pub online: usize,
    pub degraded: usize,
    pub offline: usize,
    pub never_seen: usize,
}

/// A connected site's link figures, in the `links` frame.
#[derive(Clone, Debug, Serialize)]
pub struct LinkEntry {
    pub id: SiteId,
    #[serde(flatten)]
    pub link: LinkSummary,
    pub last_seen_ms: Option<EpochMs>,
}

/// A notice as the wall and the API show it: who it went to, who confirmed, who not.
#[derive(Clone, Debug, Serialize)]
pub struct NoticeSummary {
    #[serde(flatten)]
    pub notice: Notice,
    /// How many sites it went to.
    pub recipients: usize,
    pub confirmed: Vec<Confirmation>,
    pub missing: Vec<SiteId>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Confirmation {
    pub site: SiteId,
    pub at_ms: EpochMs,
}

/// Server → page, on `/ws/live`. Every frame but the answers to a page's own request
/// (`time`, `error`) goes out as [`Sequenced`].
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveMsg {
    /// The whole picture, first on connect and after a `resync`. A display key gets
    /// only the timer (the other fields are left out).
    Snapshot {
        server_ms: EpochMs,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<StateCounts>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sites: Option<Vec<SiteView>>,
        timer: TimerSnapshot,
        #[serde(skip_serializing_if = "Option::is_none")]
        devices: Option<BTreeMap<String, DeviceCheck>>,
        /// The wall shows an online site's RTT in amber above this (`liveness.slow_rtt_ms`).
        #[serde(skip_serializing_if = "Option::is_none")]
        slow_rtt_ms: Option<u64>,
        /// Open incidents and those closed in the last hour.
        #[serde(skip_serializing_if = "Option::is_none")]
        incidents: Option<Vec<crate::core::incidents::Incident>>,
        /// Sites excused today.
        #[serde(skip_serializing_if = "Option::is_none")]
        excused: Option<Vec<crate::core::incidents::Excusal>>,
    },
    /// A site changed state: its view and the transition that did it.
    Site {
        site: SiteView,
        transition: Option<Transition>,
    },
    /// Link figures of every connected site, each probe interval.
    Links {
        server_ms: EpochMs,
        links: Vec<LinkEntry>,
    },
    /// The speaker timer changed (the same snapshot the bridges get).
    Timer(TimerSnapshot),
    /// Something staff must act on now, e.g. `presenter_offline`.
    Alert {
        kind: &'static str,
        site: SiteId,
        slot: u32,
        at_ms: EpochMs,
        message: String,
    },
    /// A roll call or message was sent.
    Notice { notice: NoticeSummary },
    /// A site confirmed a notice.
    Ack {
        notice: Uuid,
        site: SiteId,
        at_ms: EpochMs,
    },
    /// Service time stepped forward by `by_ms` with the wall clock (at `at_ms`, after
    /// the step): a page moves its clock estimate by as much, so no countdown jumps.
    ClockStep { by_ms: i64, at_ms: EpochMs },
    /// A wall alert was marked "Đã biết": by whom and when (stored first).
    Dismissal(Dismissal),
    /// The rehearsal board changed: a check finished, or a new schedule of so many slots.
    Rehearsal(RehearsalChange),
    /// A site's equipment changed state (active check).
    Device {
        site: SiteId,
        transition: DeviceTransition,
        device: Option<DeviceCheck>,
    },
    /// An incident opened, changed (taken, noted, back, raised again) or closed: the
    /// whole incident as it is now.
    Incident(Box<crate::core::incidents::Incident>),
    /// A site was excused (or taken back) by the organisers.
    Excusal(crate::core::incidents::Excusal),
    /// The answer to a page's `time` request (NTP style, for pages without probes).
    Time { client_ms: i64, server_ms: EpochMs },
    /// The page's request was not understood.
    Error { code: String, message: String },
}

/// What changed on the rehearsal board.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum RehearsalChange {
    /// A check finished.
    Result { result: Box<RehearsalResult> },
    /// A new schedule of `schedule` slots was generated.
    Schedule { schedule: usize },
}

impl LiveMsg {
    /// Whether a display key sees it (it sees only the timer).
    pub fn is_timer(&self) -> bool {
        matches!(
            self,
            LiveMsg::Timer(_) | LiveMsg::Snapshot { .. } | LiveMsg::ClockStep { .. }
        )
    }
}

/// A live frame under the feed's sequence number: a page that sees a gap asks for a
/// fresh snapshot.
#[derive(Serialize)]
pub struct Sequenced<'a> {
    pub seq: u64,
    #[serde(flatten)]
    pub message: &'a LiveMsg,
}

/// Page → server, on `/ws/live`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveRequest {
    /// Send a fresh snapshot.
    Resync,
    /// What is the server's clock? (answered with `time`)
    Time { client_ms: i64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_echo_decode_from_the_documented_shape() {
        let hello = ClientMsg::decode(
            r#"{"type":"hello","site":"05443","key":"k","agent":"agent","version":"1.0"}"#,
        )
        .unwrap();
        assert!(
            matches!(hello, ClientMsg::Hello { ref site, key: Some(_), agent: AgentKind::Agent, .. } if site == "05443")
        );
        let cookie_hello =
            ClientMsg::decode(r#"{"type":"hello","site":"05443","agent":"browser","version":"1"}"#)
                .unwrap();
        assert!(matches!(cookie_hello, ClientMsg::Hello { key: None, .. }));
        let echo = ClientMsg::decode(
            r#"{"type":"echo","seq":3,"server_ms":1,"client_recv_ms":2,"client_send_ms":3}"#,
        )
        .unwrap();
        assert_eq!(
            echo,
            ClientMsg::Echo {
                seq: 3,
                server_ms: 1,
                client_recv_ms: 2,
                client_send_ms: 3
            }
        );
    }

    #[test]
    fn bad_frames_are_classified() {
        assert_eq!(ClientMsg::decode("not json").unwrap_err().code, "bad_json");
        assert_eq!(
            ClientMsg::decode(r#"{"type":"dance"}"#).unwrap_err().code,
            "unknown_type"
        );
        assert_eq!(
            ClientMsg::decode(r#"{"type":"echo","seq":"x"}"#)
                .unwrap_err()
                .code,
            "bad_frame"
        );
        assert_eq!(ClientMsg::decode(r#"[1,2]"#).unwrap_err().code, "bad_frame");
    }

    #[test]
    fn server_messages_carry_their_type_tag() {
        let probe = Frame::from(&ServerMsg::Probe {
            seq: 1,
            server_ms: 2,
        });
        assert_eq!(probe.as_str(), r#"{"type":"probe","seq":1,"server_ms":2}"#);
        let error = Frame::from(&ServerMsg::error("bad_json", "x"));
        assert_eq!(
            error.as_str(),
            r#"{"type":"error","code":"bad_json","message":"x"}"#
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels.
        fn any_json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                ".{0,24}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(".{0,12}", inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Objects that look like frames: a known or unknown `type` and arbitrary fields,
        /// some of them the protocol's own names with values of any kind.
        fn frame_like() -> impl Strategy<Value = serde_json::Value> {
            let kind = prop_oneof![
                prop::sample::select(KNOWN_TYPES.to_vec()).prop_map(String::from),
                ".{0,12}",
            ];
            let field = prop::sample::select(vec![
                "site",
                "key",
                "agent",
                "version",
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
                "media",
            ]);
            (kind, prop::collection::vec((field, any_json()), 0..8)).prop_map(|(kind, fields)| {
                let mut frame = serde_json::Map::new();
                frame.insert("type".into(), kind.into());
                for (name, value) in fields {
                    frame.insert(name.into(), value);
                }
                serde_json::Value::Object(frame)
            })
        }

        fn documented(result: &Result<ClientMsg, FrameError>) -> bool {
            match result {
                Ok(_) => true,
                Err(e) => {
                    ["bad_json", "unknown_type", "bad_frame"].contains(&e.code)
                        && !e.message.is_empty()
                        && e.message.chars().count() < 300
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_text_decodes_or_gets_a_documented_error(text in "\\PC{0,300}") {
                prop_assert!(documented(&ClientMsg::decode(&text)));
            }

            #[test]
            fn arbitrary_bytes_as_lossy_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                prop_assert!(documented(&ClientMsg::decode(&String::from_utf8_lossy(&bytes))));
            }

            #[test]
            fn arbitrary_json_decodes_or_gets_a_documented_error(value in any_json()) {
                prop_assert!(documented(&ClientMsg::decode(&value.to_string())));
            }

            #[test]
            fn frame_like_objects_decode_or_get_a_documented_error(frame in frame_like()) {
                let result = ClientMsg::decode(&frame.to_string());
                prop_assert!(documented(&result));
                if let Err(e) = &result {
                    let known = KNOWN_TYPES.contains(&frame["type"].as_str().unwrap_or_default());
                    prop_assert_eq!(e.code == "unknown_type", !known, "{}", frame);
                }
            }
        }
    }
}

//! diemcau ("điểm cầu", bridge point): the technical side of a hybrid provincial
//! conference — which of the commune bridge sites are connected and how well.
//!
//! Crate map. The core is plain Rust: no I/O, no clock reads (`now` is an argument).
//! - [`sites`], [`agenda`], [`table`], [`config`] — roster, agenda and configuration files
//! - [`liveness`] — per-site state machine: never_seen → online ⇄ degraded → offline
//! - [`link`] — RTT median, jitter, stalled probes
//! - [`clocksync`] — clients' clock offset (NTP four-timestamp)
//! - [`protocol`] — wire protocol v1 of the bridge socket
//! - [`timer`] — the speaker timer: slots, phases, commands
//! - [`rehearsal`] — the connection check's rubric and figures
//! - [`notices`] — roll call and messages, with who confirmed
//! - [`device`] — active checks of a site's video equipment
//! - [`report`] — availability figures for the evidence report
//! - [`schedule`] — rehearsal slots per site, and who must check again
//!
//! The shell reads the clock, calls the core under a short lock, then does the I/O:
//! - [`clock`] — the only clock reader (injectable)
//! - [`auth`], [`access`], [`sessions`] — keys, roles, page sessions, who is calling
//! - [`store`] — SQLite history
//! - [`metrics`] — Prometheus registry
//! - [`hub`] — shared live state of all sites and the live feed
//! - [`timekeeper`] — runs the timer: stored commands, broadcasts, auto-pause, auto_stop
//! - [`bridge`], [`live`] — the two websocket endpoints
//! - [`check`] — a rehearsal check running on a bridge connection
//! - [`prober`], [`noticeboard`] — active checks; roll call and message delivery
//! - [`http`], [`error`] — routes and the HTTP error type
//! - [`export`] — CSV for spreadsheets (UTF-8 with BOM, Vietnamese times)
//! - [`evidence`] — the evidence report over the conference window
//! - [`web`] — the pages and their embedded assets
//! - [`app`] — build, run, shut down
//! - [`backup`] — `diemcau backup`, a consistent copy of the data dir while it runs
//! - [`preflight`] — `diemcau check` on a data dir: keys, database, free disk
//! - [`agent`] — `diemcau agent`, a headless bridge client
//! - [`simulate`] — `diemcau simulate`, many simulated bridges with faults
//! - [`bench`] — `diemcau bench`, the service measured against a bare baseline

pub mod access;
pub mod agenda;
pub mod agent;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod bridge;
pub mod check;
pub mod clock;
pub mod clocksync;
pub mod config;
pub mod device;
pub mod error;
pub mod evidence;
pub mod export;
pub mod http;
pub mod hub;
pub mod link;
pub mod listener;
pub mod live;
pub mod liveness;
pub mod metrics;
pub mod noticeboard;
pub mod notices;
pub mod preflight;
pub mod prober;
pub mod protocol;
pub mod rehearsal;
pub mod report;
pub mod schedule;
pub mod sessions;
pub mod simulate;
pub mod sites;
pub mod store;
pub mod table;
pub mod timekeeper;
pub mod timer;
pub mod web;

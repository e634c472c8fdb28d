//! diemcau ("điểm cầu", bridge point): the technical side of a hybrid provincial
//! conference — which of the commune bridge sites are connected and how well, and the
//! speaker timer that every screen shows alike.
//!
//! Crate map, from the inside out. Each layer imports only those above it in this list;
//! `tests/it/architecture.rs` fails on any import that breaks the rule.
//! - [`core`] — the rules, pure: sites, agenda, liveness, link, clock sync, timer,
//!   rehearsal rubric, notices, devices, report, schedule, budgets. `now` is an argument.
//! - [`protocol`], [`config`], [`auth`], [`metrics`], [`store`] — the wire frames, the
//!   configuration files, keys and roles, the Prometheus registry, SQLite (the only SQL);
//!   each imports only `core`.
//! - [`clock`] — the only clock reader (injectable); [`telemetry`] — logs.
//! - [`services`] — live state: one lock around one core value, plus its side effects.
//! - [`state`] — `AppState`, what the handlers and tasks share.
//! - [`http`], [`tasks`] — axum routes and websockets; the background loops.
//! - [`app`] — build, run, shut down: wiring only.
//! - [`tools`] — the other subcommands: agent, simulate, bench, backup, preflight.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod core;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod services;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod tools;

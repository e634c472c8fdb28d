//! The product's rules, in plain Rust: no tokio, axum, rusqlite, files, sockets or
//! clock reads (`now` is always an argument), so each rule is unit-tested in
//! microseconds. This folder imports only itself (and serde, chrono, uuid, thiserror,
//! csv); `tests/it/architecture.rs` holds it to that.

pub mod agenda;
pub mod budget;
pub mod clocksync;
pub mod device;
pub mod incidents;
pub mod link;
pub mod liveness;
pub mod notices;
pub mod notify;
pub mod rehearsal;
pub mod report;
pub mod schedule;
pub mod sites;
pub mod table;
pub mod time;
pub mod timer;
pub mod udp_path;

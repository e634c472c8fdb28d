//! Integration tests: real server on port 0, real websocket and HTTP clients.

mod access;
mod alerting;
mod api;
mod architecture;
mod bridge;
mod browser;
mod cli;
mod clock;
mod devices;
mod helpers;
mod hostile;
mod incidents;
mod keys;
mod live;
mod metrics;
mod notices;
mod rehearsal;
mod report;
mod restart;
mod security;
mod simulate;
mod timer;
mod udp;

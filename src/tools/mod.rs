//! The subcommands other than `serve`: clients and operators' tools built on the same
//! crate (an agent, a simulator, the benchmark, backups, the data-dir check).

pub mod agent;
pub mod backup;
pub mod bench;
pub mod links;
pub mod preflight;
pub mod roster;
pub mod simulate;
pub mod tls;
pub mod udp_echo;

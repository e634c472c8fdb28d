//! Live state of the running service: each holds one core value behind one lock and
//! does the side effects its changes ask for (store, metrics, the live feed). They know
//! nothing of HTTP or websockets: no axum here, and no `AppState`.

pub mod devices;
pub mod hub;
pub mod incident_desk;
pub mod limits;
pub mod noticeboard;
pub mod rehearsal_run;
pub mod relay;
pub mod sessions;
pub mod timekeeper;
pub mod udp_path;

//! What every handler and background task shares: one `Arc<Shared>`, built by
//! `App::build`. It lives apart from `app` so that `http` and `tasks` can use it while
//! `app` wires them, without an import cycle.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Caller, Keyring};
use crate::clock::Clock;
use crate::config::Config;
use crate::core::agenda::Agenda;
use crate::core::sites::Roster;
use crate::metrics::Metrics;
use crate::services::hub::Hub;
use crate::services::noticeboard::Noticeboard;
use crate::services::sessions::Sessions;
use crate::services::timekeeper::Timekeeper;
use crate::store::Store;

/// Everything the handlers share; cloned as an `Arc`.
pub struct Shared {
    pub config: Config,
    pub roster: Arc<Roster>,
    pub agenda: Agenda,
    pub secrets: Keyring,
    /// Holders whose key was just rotated: their open live sockets close.
    pub revoked: tokio::sync::broadcast::Sender<Caller>,
    pub sessions: Sessions,
    /// What one key may make the service do and store, per minute or hour.
    pub limits: crate::services::limits::Limits,
    pub hub: Arc<Hub>,
    pub timekeeper: Arc<Timekeeper>,
    pub noticeboard: Noticeboard,
    /// The rehearsal's UDP path test (none when `rehearsal.udp_seconds` is 0).
    pub udp: Option<crate::services::udp_path::UdpPath>,
    /// Alertmanager's notifications, relayed to a Zalo bot.
    pub zalo: crate::services::relay::ZaloRelay,
    /// Incidents (who handles which site in trouble) and the excused sites.
    pub incidents: crate::services::incident_desk::IncidentDesk,
    /// Active checks of the sites' equipment.
    pub devices: crate::services::devices::Devices,
    /// Rehearsal checks whose connection dropped, waiting for the site to come back.
    /// A std `Mutex`: held to park, take back or expire one run (a map operation);
    /// never across an await, and the run is finished after the lock is released.
    pub parked_checks: std::sync::Mutex<
        std::collections::HashMap<
            crate::core::sites::SiteIdx,
            crate::services::rehearsal_run::RehearsalRun,
        >,
    >,
    pub store: Store,
    /// The service's own pulse in the data dir (its downtime is no site's uptime).
    pub pulse: crate::store::Pulse,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the server begins to shut down; socket tasks watch it.
    pub shutdown: CancellationToken,
    /// Websocket tasks (detached from HTTP once upgraded), awaited at shutdown.
    pub tasks: TaskTracker,
}

pub type AppState = Arc<Shared>;

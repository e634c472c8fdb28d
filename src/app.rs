//! Building and running the service: `App::build` binds (port 0 in tests) and wires
//! the parts; `App::run` serves until the shutdown future resolves, then closes every
//! socket with 1001 and flushes the store. `main` and the tests use the same path.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agenda::Agenda;
use crate::auth::{Caller, Keyring, Secrets, SecretsError, SecretsOrigin};
use crate::clock::{Clock, EpochMs};
use crate::config::{Config, Loaded};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::noticeboard::Noticeboard;
use crate::sessions::Sessions;
use crate::sites::{Roster, SiteId};
use crate::store::{Store, StoreError};
use crate::timekeeper::Timekeeper;

/// Everything the handlers share; cloned as an `Arc`.
pub struct Shared {
    pub config: Config,
    pub roster: Arc<Roster>,
    pub agenda: Agenda,
    pub secrets: Keyring,
    /// Holders whose key was just rotated: their open live sockets close.
    pub revoked: tokio::sync::broadcast::Sender<Caller>,
    pub sessions: Sessions,
    pub hub: Arc<Hub>,
    pub timekeeper: Arc<Timekeeper>,
    pub noticeboard: Noticeboard,
    /// Active checks of the sites' equipment.
    pub devices: crate::prober::Devices,
    /// Rehearsal checks whose connection dropped, waiting for the site to come back.
    pub parked_checks:
        std::sync::Mutex<std::collections::HashMap<crate::sites::SiteIdx, crate::check::CheckRun>>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the server begins to shut down; socket tasks watch it.
    pub shutdown: CancellationToken,
    /// Websocket tasks (detached from HTTP once upgraded), awaited at shutdown.
    pub tasks: TaskTracker,
}

pub type AppState = Arc<Shared>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(
        "cannot listen on {addr}: {source} (is another diemcau running? choose another --listen)"
    )]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A bound, ready-to-run service.
pub struct App {
    listener: TcpListener,
    state: AppState,
    secrets_origin: SecretsOrigin,
    /// Sites that went offline, for the timekeeper (taken by `run`).
    offline: mpsc::UnboundedReceiver<(SiteId, EpochMs)>,
}

impl App {
    /// Opens the store and secrets in `data_dir`, restores history, binds `listen`.
    pub async fn build(
        loaded: Loaded,
        data_dir: PathBuf,
        listen: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<App, StartError> {
        let Loaded {
            config,
            roster,
            agenda,
        } = loaded;
        let roster = Arc::new(roster);
        let store = Store::open(&data_dir, clock.now_ms())?;
        let (secrets, secrets_origin) = Secrets::load_or_create(&data_dir, &roster)?;
        let history = store.load_history()?;
        let metrics = Arc::new(Metrics::new(&roster, &agenda));
        let (offline_tx, offline) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub::new(
            roster.clone(),
            &config.liveness,
            clock.clone(),
            store.clone(),
            metrics.clone(),
            &history,
            offline_tx,
        ));
        let timekeeper = Arc::new(Timekeeper::restore(
            &agenda,
            (&config.timer).into(),
            config.timer.pause_on_site_loss,
            store.clone(),
            hub.clone(),
            clock.clone(),
            metrics.clone(),
        )?);
        let listener = bind(listen).map_err(|source| StartError::Listen {
            addr: listen.to_string(),
            source,
        })?;
        let noticeboard =
            Noticeboard::restore(store.clone(), hub.clone(), roster.clone(), clock.clone())?;
        let state = Arc::new(Shared {
            config,
            roster,
            agenda,
            secrets: Keyring::new(secrets, &data_dir),
            revoked: tokio::sync::broadcast::channel(64).0,
            sessions: Sessions::restore(store.clone(), clock.now_ms())?,
            hub,
            timekeeper,
            noticeboard,
            devices: Default::default(),
            parked_checks: Default::default(),
            store,
            metrics,
            clock,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        Ok(App {
            listener,
            state,
            secrets_origin,
            offline,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn secrets_origin(&self) -> SecretsOrigin {
        self.secrets_origin
    }

    /// Serves until `shutdown` resolves; then sockets close with 1001 (within 5 s)
    /// and the store is flushed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let token = state.shutdown.clone();
        // A file size limit (ulimit -f) must fail the write, not kill the service: the
        // store keeps the write and retries it. Tokio's handler replaces the default
        // action (terminate) for the life of the process.
        let _ =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ));
        let mut background = vec![
            tokio::spawn(publish_links(state.clone())),
            tokio::spawn(state.timekeeper.clone().run_auto_stop()),
            tokio::spawn(pause_on_site_loss(state.clone(), self.offline)),
            tokio::spawn(follow_keys(state.clone())),
            tokio::spawn(sample_rtt(state.clone())),
        ];
        background.extend(crate::prober::spawn_all(&state));
        let protocol = &state.config.protocol;
        let listener = crate::listener::GuardedListener::new(
            self.listener,
            protocol.max_connections,
            Duration::from_millis(protocol.handshake_timeout_ms),
            state.metrics.clone(),
        );
        let signal = {
            let token = token.clone();
            async move {
                tokio::select! {
                    _ = shutdown => token.cancel(),
                    _ = token.cancelled() => {}
                }
            }
        };
        let served = axum::serve(listener, crate::http::router(state.clone()))
            .with_graceful_shutdown(signal)
            .await;
        token.cancel();
        for task in background {
            task.abort();
        }
        state.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sockets did not close within 5 s");
        }
        if let Err(e) = state.store.flush().await {
            tracing::error!(error = %e, "store flush at shutdown failed");
        }
        served
    }
}

/// Listens with a deep backlog: thousands of sites reconnect at once after a restart.
fn bind(listen: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = listen.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not an address like 127.0.0.1:8080",
        )
    })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Follows `secrets.toml`: a rotated key stops working at once (within a second), and
/// its page sessions and open sockets end.
async fn follow_keys(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match state.secrets.reload_if_changed() {
            Ok(changed) => {
                for holder in changed {
                    revoke(&state, holder);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "secrets.toml changed but cannot be used: the keys in force stay");
            }
        }
    }
}

fn revoke(state: &AppState, holder: Caller) {
    tracing::warn!(holder = %holder.label(), "key rotated: its page sessions and sockets end");
    state.sessions.revoke(holder);
    if let Caller::Site(id) = holder
        && let Some(idx) = state.roster.index_of(id)
    {
        state.hub.kick(idx, crate::protocol::close::BAD_KEY);
    }
    let _ = state.revoked.send(holder);
}

/// Hands every offline transition to the timekeeper.
async fn pause_on_site_loss(
    state: AppState,
    mut offline: mpsc::UnboundedReceiver<(SiteId, EpochMs)>,
) {
    while let Some((site, at_ms)) = offline.recv().await {
        state.timekeeper.site_offline(site, at_ms).await;
    }
}

/// Every `report.rtt_sample_ms`, each connected site's median RTT is stored, so the
/// evidence report can give the RTT of its own window, long after the day.
async fn sample_rtt(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(state.config.report.rtt_sample_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is immediate: nobody is connected yet
    loop {
        every.tick().await;
        let medians = state.hub.connected_rtt_medians();
        if !medians.is_empty() {
            state
                .store
                .record_rtt_medians(state.clock.now_ms(), medians);
        }
    }
}

/// Every probe interval, the link figures of connected sites go to the live feed.
async fn publish_links(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(
        state.config.liveness.probe_interval_ms,
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        state.hub.publish_links();
    }
}

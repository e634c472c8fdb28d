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

use crate::auth::{Keyring, Secrets, SecretsError, SecretsOrigin};
use crate::clock::Clock;
use crate::config::Loaded;
use crate::core::liveness::SiteState;
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;
use crate::metrics::Metrics;
use crate::services::hub::Hub;
use crate::services::noticeboard::Noticeboard;
use crate::services::sessions::Sessions;
use crate::services::timekeeper::Timekeeper;
use crate::state::{AppState, Shared};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Timer(#[from] crate::services::timekeeper::RestoreError),
    #[error(
        "cannot listen on {addr}: {source} (is another diemcau running? choose another --listen)"
    )]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on UDP {addr} for the rehearsal's UDP test: {source} (choose another [rehearsal] udp_port, or udp_seconds = 0 to turn the test off)"
    )]
    ListenUdp {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, ready-to-run service.
pub struct App {
    listener: TcpListener,
    /// Held until `run` returns: a second `serve` on the data dir is refused.
    lock: crate::store::DataDirLock,
    data_dir: PathBuf,
    state: AppState,
    secrets_origin: SecretsOrigin,
    /// Every site state change, for the incident desk and the timekeeper (taken by `run`).
    site_changes: mpsc::UnboundedReceiver<(SiteId, SiteState, EpochMs)>,
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
        // Before anything is written: one service per data dir, and a port that is
        // taken fails the start before any record says the service restarted.
        let lock = crate::store::claim(&data_dir)?;
        let listener = bind(listen).map_err(|source| StartError::Listen {
            addr: listen.to_string(),
            source,
        })?;
        let udp = start_udp_path(&config, &listener).await?;
        let store = Store::open(&data_dir, clock.now_ms())?;
        let recovery_places = crate::store::recovery::places(config.recovery_dir.as_deref());
        if let Some((file, writes)) = store.replay_recovery(&data_dir, &recovery_places).await? {
            tracing::warn!(file = %file.display(), writes, "replayed the records the last stop could not store");
        }
        let (secrets, secrets_origin) = Secrets::load_or_create(&data_dir, &roster)?;
        // When the previous run was last alive: that interval is nobody's uptime.
        let (pulse, last_run) = crate::store::Pulse::open(&data_dir)?;
        let now = clock.now_ms();
        let mut restart = crate::services::hub::Restart {
            last_alive_ms: last_run.map(|run| run.alive_ms),
            downtime_ms: store.downtime_total_ms()?,
        };
        if let Some(run) = last_run.filter(|run| run.alive_ms < now) {
            let downtime = crate::core::report::Downtime {
                from_ms: run.alive_ms,
                to_ms: now,
            };
            store.record_downtime(downtime, if run.stopped { "stopped" } else { "crash" });
            restart.downtime_ms += now - run.alive_ms;
            tracing::info!(
                down_ms = now - run.alive_ms,
                clean = run.stopped,
                "the service was not running since its last pulse"
            );
        }
        pulse.beat(now);
        let history = store.load_history()?;
        let metrics = Arc::new(Metrics::new(&roster, &agenda));
        let (changes_tx, site_changes) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub::new(
            roster.clone(),
            &config.liveness,
            clock.clone(),
            store.clone(),
            metrics.clone(),
            &history,
            restart,
            changes_tx,
        ));
        let timekeeper = Arc::new(Timekeeper::restore(
            &agenda,
            config.timer_policy(),
            config.timer.pause_on_site_loss,
            store.clone(),
            hub.clone(),
            clock.clone(),
            metrics.clone(),
        )?);
        let noticeboard =
            Noticeboard::restore(store.clone(), hub.clone(), roster.clone(), clock.clone())?;
        let incidents = crate::services::incident_desk::IncidentDesk::restore(
            config.incident_policy(),
            store.clone(),
            hub.clone(),
            metrics.clone(),
            roster.clone(),
            clock.clone(),
        )?;
        metrics.public_url(&config.public_url.clone().unwrap_or_else(|| {
            format!(
                "http://{}",
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            )
        }));
        let zalo = crate::services::relay::ZaloRelay::start(&config.notify.zalo, metrics.clone());
        let secure_cookie = config.behind_https();
        let limits = crate::services::limits::Limits::new(&config);
        let state = Arc::new(Shared {
            config,
            roster,
            agenda,
            secrets: Keyring::new(secrets, &data_dir),
            revoked: tokio::sync::broadcast::channel(64).0,
            sessions: Sessions::restore(store.clone(), clock.now_ms(), secure_cookie)?,
            limits,
            hub,
            timekeeper,
            noticeboard,
            incidents,
            zalo,
            udp,
            devices: Default::default(),
            parked_checks: Default::default(),
            store,
            metrics,
            clock,
            pulse,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        Ok(App {
            listener,
            lock,
            data_dir,
            state,
            secrets_origin,
            site_changes,
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
    /// and the store is flushed. An error when records could not be stored: they are
    /// in a recovery file, named in the error and the log.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let _lock = self.lock;
        let state = self.state;
        let token = state.shutdown.clone();
        // A file size limit (ulimit -f) must fail the write, not kill the service: the
        // store keeps the write and retries it. Tokio's handler replaces the default
        // action (terminate) for the life of the process.
        let _ =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ));
        let background = crate::tasks::spawn_all(&state, self.site_changes);
        let protocol = &state.config.protocol;
        let listener = crate::http::listener::GuardedListener::new(
            self.listener,
            protocol.max_connections,
            state.metrics.clone(),
        );
        let header_timeout = Duration::from_millis(protocol.handshake_timeout_ms);
        {
            // Sockets closing from here on are the service's stop, not the sites' drops:
            // the hub knows it before any socket is told to close.
            let (state, token) = (state.clone(), token.clone());
            tokio::spawn(async move {
                shutdown.await;
                state.hub.stop_watching();
                token.cancel();
            });
        }
        crate::http::listener::serve(
            listener,
            crate::http::router(state.clone()),
            header_timeout,
            token.clone(),
        )
        .await;
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
        let stored = stop_with_everything_stored(&state, &self.data_dir).await;
        state.pulse.stopped(state.clock.now_ms());
        stored
    }
}

/// How long a stop waits for a disk that refuses writes before it saves them elsewhere.
const DISK_GRACE: Duration = Duration::from_secs(3);

/// A stop is clean only when every record is on disk. Otherwise, after a bounded wait
/// for the disk, the records go to a recovery file (replayed at the next start) and the
/// stop is an error that says where they are.
async fn stop_with_everything_stored(
    state: &AppState,
    data_dir: &std::path::Path,
) -> std::io::Result<()> {
    let health = state.store.health();
    let waited = tokio::time::Instant::now();
    while health.pending_writes() > 0 && waited.elapsed() < DISK_GRACE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if health.pending_writes() == 0 {
        return Ok(());
    }
    let statements = state
        .store
        .refused_writes()
        .await
        .map_err(std::io::Error::other)?;
    let places = crate::store::recovery::places(state.config.recovery_dir.as_deref());
    match crate::store::recovery::save(data_dir, &places, &statements) {
        Ok(file) => {
            tracing::error!(file = %file.display(), writes = statements.len(), "STOPPED WITH RECORDS NOT IN THE DATABASE: the disk still refuses writes; they are saved in the recovery file and replayed at the next start (free space in the data dir first)");
            Err(std::io::Error::other(format!(
                "{} records could not be stored (the disk refuses writes): saved to {}, replayed at the next start",
                statements.len(),
                file.display()
            )))
        }
        Err(failures) => {
            tracing::error!(
                ?failures,
                writes = statements.len(),
                "RECORDS LOST: the disk refuses writes and no recovery place took them"
            );
            Err(std::io::Error::other(format!(
                "{} records could not be stored anywhere: {}",
                statements.len(),
                failures.join("; ")
            )))
        }
    }
}

/// Listens with a deep backlog: thousands of sites reconnect at once after a restart.
/// The rehearsal's UDP port (the HTTP port's number unless `udp_port` says otherwise),
/// and the address the bridges are told to reach it at.
async fn start_udp_path(
    config: &crate::config::Config,
    listener: &TcpListener,
) -> Result<Option<crate::services::udp_path::UdpPath>, StartError> {
    let r = &config.rehearsal;
    if r.udp_seconds == 0 {
        return Ok(None);
    }
    let http = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let listen = SocketAddr::new(http.ip(), r.udp_port.unwrap_or(http.port()));
    let advertise = match r.udp_advertise.as_deref() {
        Some(text) => text
            .parse::<SocketAddr>()
            .or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 0))
            })
            .expect("checked at load"),
        None if listen.ip().is_unspecified() => {
            tracing::warn!(
                "the service listens on every address: set [rehearsal] udp_advertise to the address the communes reach it at, or their UDP test cannot connect"
            );
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), 0)
        }
        None => SocketAddr::new(listen.ip(), 0),
    };
    let udp = crate::services::udp_path::UdpPath::start(listen, advertise)
        .await
        .map_err(|source| StartError::ListenUdp {
            addr: listen,
            source,
        })?;
    tracing::info!(port = udp.port, "rehearsal UDP test listening");
    Ok(Some(udp))
}

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

/// Resolves on Ctrl-C or SIGTERM (systemd's stop): `App::run` then shuts down cleanly.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: closing sockets and flushing the store");
}

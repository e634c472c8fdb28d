//! `diemcau simulate`: many simulated bridges (protocol v1, agent `sim`) against a real
//! server, some with realistic trouble, for drills on the wall and for load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::tools::agent::{backoff, bridge_url};

/// The trouble a simulated site has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Healthy: answers every probe at once.
    None,
    /// Closes its socket every `period` and comes back `down_for` later.
    Drop,
    /// Answers every probe late (by `late`).
    Late,
    /// Stops answering without closing (the server finds it degraded, then offline).
    Silent,
    /// Drops and returns every few seconds: the wall marks it flapping.
    Flap,
}

/// What `--faults` asks for: a share of the sites for each kind of trouble.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultMix {
    pub drop: f64,
    pub late: f64,
    pub silent: f64,
    pub flap: f64,
}

impl FaultMix {
    /// `drop=0.05,late=0.05,silent=0.02,flap=0.02` (shares of the sites, 0–1).
    pub fn parse(spec: &str) -> Result<FaultMix, String> {
        let mut mix = FaultMix::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: use name=share, e.g. drop=0.05"))?;
            let share: f64 = value
                .parse()
                .ok()
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(|| format!("`{part}`: the share must be from 0 to 1"))?;
            match name {
                "drop" => mix.drop = share,
                "late" => mix.late = share,
                "silent" => mix.silent = share,
                "flap" => mix.flap = share,
                _ => return Err(format!("unknown fault `{name}` (drop, late, silent, flap)")),
            }
        }
        if mix.drop + mix.late + mix.silent + mix.flap > 1.0 {
            return Err("the shares add up to more than 1".into());
        }
        Ok(mix)
    }

    /// The fault of site number `i` of `n`: the first shares of the list get each fault.
    pub fn fault_of(&self, i: usize, n: usize) -> Fault {
        let position = i as f64 / n.max(1) as f64;
        let mut edge = 0.0;
        for (share, fault) in [
            (self.drop, Fault::Drop),
            (self.late, Fault::Late),
            (self.silent, Fault::Silent),
            (self.flap, Fault::Flap),
        ] {
            edge += share;
            if position < edge {
                return fault;
            }
        }
        Fault::None
    }
}

/// Timing of the faults (shorter in tests).
#[derive(Clone, Copy, Debug)]
pub struct FaultTiming {
    /// How long a dropping site stays connected before it drops.
    pub period: Duration,
    pub down_for: Duration,
    pub late: Duration,
    /// How long a flapping site stays connected.
    pub flap_every: Duration,
    /// How long a silent site answers before it goes quiet.
    pub silent_after: Duration,
}

impl Default for FaultTiming {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(60),
            down_for: Duration::from_secs(8),
            late: Duration::from_millis(700),
            flap_every: Duration::from_secs(5),
            silent_after: Duration::from_secs(20),
        }
    }
}

/// Counters the simulator keeps for its report (and for tests).
#[derive(Default)]
pub struct SimStats {
    pub connected: AtomicUsize,
    pub connects: AtomicU64,
    pub probes: AtomicU64,
    /// Highest timer `rev` each site has seen, by site number.
    pub timer_revs: Vec<AtomicU64>,
}

impl SimStats {
    pub fn new(sites: usize) -> Arc<SimStats> {
        Arc::new(SimStats {
            timer_revs: (0..sites).map(|_| AtomicU64::new(0)).collect(),
            ..SimStats::default()
        })
    }

    /// How many sites have seen timer revision `rev` or later.
    pub fn sites_at_rev(&self, rev: u64) -> usize {
        self.timer_revs
            .iter()
            .filter(|r| r.load(Ordering::Relaxed) >= rev)
            .count()
    }
}

/// Starts one simulated bridge (its fault and the fault's timing); it runs until the task is
/// aborted.
pub fn spawn_site(
    server: &str,
    number: usize,
    site: String,
    key: String,
    (fault, timing): (Fault, FaultTiming),
    stats: Arc<SimStats>,
    tls: Option<tokio_tungstenite::Connector>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let url = bridge_url(server).map_err(|e| e.to_string())?;
    Ok(tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            let outcome = run_once(
                &url,
                tls.clone(),
                number,
                &site,
                &key,
                fault,
                timing,
                &stats,
            )
            .await;
            let wait = match outcome {
                Some(pause) => {
                    attempt = 0;
                    pause
                }
                None => {
                    attempt += 1;
                    backoff(attempt.min(4), 0.5)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }))
}

/// One connection; returns how long to stay away before reconnecting (`None`: it
/// failed, back off).
#[allow(clippy::too_many_arguments)]
async fn run_once(
    url: &str,
    tls: Option<tokio_tungstenite::Connector>,
    number: usize,
    site: &str,
    key: &str,
    fault: Fault,
    timing: FaultTiming,
    stats: &SimStats,
) -> Option<Duration> {
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(small_buffers()), true, tls);
    let (socket, _) = connecting.await.ok()?;
    let (mut sink, mut stream) = socket.split();
    let hello = json!({"type": "hello", "site": site, "key": key, "agent": "sim", "version": env!("CARGO_PKG_VERSION")});
    sink.send(Message::text(hello.to_string())).await.ok()?;
    stats.connects.fetch_add(1, Ordering::Relaxed);
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let connected_at = Instant::now();
    let leave_at = match fault {
        Fault::Drop => Some(connected_at + timing.period),
        Fault::Flap => Some(connected_at + timing.flap_every),
        _ => None,
    };
    let result = loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = async { tokio::time::sleep_until(leave_at.expect("guarded")).await }, if leave_at.is_some() => {
                let _ = sink.send(Message::Close(None)).await;
                break Some(if fault == Fault::Drop { timing.down_for } else { Duration::from_millis(200) });
            }
        };
        let Some(Ok(Message::Text(text))) = frame else {
            match frame {
                Some(Ok(_)) => continue,
                _ => break Some(Duration::from_millis(500)),
            }
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match value["type"].as_str() {
            Some("probe") => {
                stats.probes.fetch_add(1, Ordering::Relaxed);
                if fault == Fault::Silent && connected_at.elapsed() >= timing.silent_after {
                    continue;
                }
                if fault == Fault::Late {
                    tokio::time::sleep(timing.late).await;
                }
                let now = now_ms();
                let echo = json!({"type": "echo", "seq": value["seq"], "server_ms": value["server_ms"], "client_recv_ms": now, "client_send_ms": now});
                if sink.send(Message::text(echo.to_string())).await.is_err() {
                    break Some(Duration::from_millis(500));
                }
            }
            Some("timer") => {
                let rev = value["rev"].as_u64().unwrap_or(0);
                stats.timer_revs[number].fetch_max(rev, Ordering::Relaxed);
            }
            _ => {}
        }
    };
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    result
}

/// Buffers sized for protocol frames. tungstenite zero-fills its whole read buffer
/// (128 KiB by default) before every read: thousands of simulated sites would spend
/// their time in memset and measure themselves instead of the server.
pub fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Site ids and keys from a `secrets.toml`, in id order.
pub fn site_keys(secrets_toml: &str) -> Result<Vec<(String, String)>, String> {
    let value: toml::Value =
        toml::from_str(secrets_toml).map_err(|e| format!("not a secrets.toml: {e}"))?;
    let sites = value
        .get("sites")
        .and_then(|s| s.as_table())
        .ok_or("no [sites] table in the keys file")?;
    let mut keys: Vec<(String, String)> = sites
        .iter()
        .filter_map(|(id, key)| Some((id.clone(), key.as_str()?.to_string())))
        .collect();
    keys.sort();
    Ok(keys)
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot read the keys file {path}: {source}")]
    Keys {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the keys file has keys for {have} sites, not {want}")]
    TooFewKeys { have: usize, want: usize },
    #[error(transparent)]
    Tls(#[from] crate::tools::tls::TlsError),
}

/// `diemcau simulate`: `n` simulated bridges against `server`, with the faults of
/// `faults`, a line of counts every 10 s, until Ctrl-C.
pub async fn run_until_ctrl_c(
    server: &str,
    n: usize,
    keys: &std::path::Path,
    faults: &str,
    ca: Option<&std::path::Path>,
) -> Result<(), SimulateError> {
    let mix = FaultMix::parse(faults).map_err(SimulateError::Setup)?;
    let tls = crate::tools::tls::connector(ca)?;
    let text = std::fs::read_to_string(keys).map_err(|source| SimulateError::Keys {
        path: keys.to_path_buf(),
        source,
    })?;
    let keys = site_keys(&text).map_err(SimulateError::Setup)?;
    if keys.len() < n {
        return Err(SimulateError::TooFewKeys {
            have: keys.len(),
            want: n,
        });
    }
    let stats = SimStats::new(n);
    for (i, (site, key)) in keys.into_iter().take(n).enumerate() {
        spawn_site(
            server,
            i,
            site,
            key,
            (mix.fault_of(i, n), FaultTiming::default()),
            stats.clone(),
            Some(tls.clone()),
        )
        .map_err(SimulateError::Setup)?;
    }
    println!("{n} simulated sites started against {server}; Ctrl-C to stop");
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = every.tick() => {
                use std::sync::atomic::Ordering::Relaxed;
                println!(
                    "connected {}/{n} · connections {} · probes answered {}",
                    stats.connected.load(Relaxed),
                    stats.connects.load(Relaxed),
                    stats.probes.load(Relaxed)
                );
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_are_shares_of_the_sites() {
        let mix = FaultMix::parse("drop=0.1,late=0.1,silent=0.05,flap=0.05").unwrap();
        let faults: Vec<Fault> = (0..100).map(|i| mix.fault_of(i, 100)).collect();
        assert_eq!(faults.iter().filter(|f| **f == Fault::Drop).count(), 10);
        assert_eq!(faults.iter().filter(|f| **f == Fault::Late).count(), 10);
        assert_eq!(faults.iter().filter(|f| **f == Fault::Silent).count(), 5);
        assert_eq!(faults.iter().filter(|f| **f == Fault::Flap).count(), 5);
        assert_eq!(faults.iter().filter(|f| **f == Fault::None).count(), 70);
        assert!(FaultMix::parse("drop=2").is_err());
        assert!(FaultMix::parse("melt=0.1").is_err());
        assert!(FaultMix::parse("drop=0.6,late=0.6").is_err());
        assert_eq!(FaultMix::parse("").unwrap(), FaultMix::default());
    }

    #[test]
    fn keys_come_from_the_sites_table_in_id_order() {
        let keys =
            site_keys("[roles]\nadmin = \"a\"\n[sites]\n\"00002\" = \"k2\"\n\"00001\" = \"k1\"\n")
                .unwrap();
        assert_eq!(
            keys,
            vec![("00001".into(), "k1".into()), ("00002".into(), "k2".into())]
        );
        assert!(site_keys("[roles]\n").is_err());
    }
}

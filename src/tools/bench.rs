//! `diemcau bench`: the real service binary as a child process under N bridges,
//! measured from `/proc` and from the clients, side by side with a bare
//! tokio-tungstenite echo server (`diemcau bench-baseline`) under the same load.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{Role, Secrets};
use crate::core::sites::Roster;
use crate::tools::agent::{backoff, random_unit};
use crate::tools::simulate::small_buffers;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(String);

fn fail(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

pub struct BenchOptions {
    pub sites: u32,
    pub seconds: u64,
    pub probe_interval_ms: u64,
    /// How many timer changes are fanned out, for each of service and baseline.
    pub changes: u64,
}

/// What one server process cost under the load.
#[derive(Debug, Serialize)]
pub struct ProcessCost {
    /// CPU seconds per second (1.0 = one whole core).
    pub cpu_cores: f64,
    pub rss_bytes: u64,
    pub rss_peak_bytes: u64,
    /// RSS under load minus RSS before any site connected, per site.
    pub rss_per_site_bytes: f64,
    pub probe_round_trips: u64,
    pub cpu_us_per_round_trip: f64,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub sites: u32,
    pub seconds: u64,
    pub probe_interval_ms: u64,
    pub service: ProcessCost,
    pub baseline: ProcessCost,
    /// Service CPU per probe round trip ÷ the baseline's.
    pub cpu_ratio: f64,
    pub loopback_floor: LoopbackFloor,
    /// From the service's own histogram over the measured window (bucketed: each
    /// figure is the upper edge of its bucket).
    pub probe_rtt: Percentiles,
    /// Probe sent → read by the client (one way, whole ms), service and baseline.
    pub probe_one_way: Percentiles,
    pub baseline_probe_one_way: Percentiles,
    /// Timer command sent → a site has the new snapshot, over every site and command.
    pub timer_fanout: Percentiles,
    /// Timer command sent → the last site has it, per command.
    pub timer_fanout_last_site: Percentiles,
    /// Timer command sent → its HTTP answer (stored, applied, queued to every site).
    pub timer_command_answered: Percentiles,
    /// From the service's `diemcau_timer_fanout_seconds` (bucket bounds): change applied
    /// → the last site's frame handed to the kernel; what remote sites would see, less
    /// their network, without the bench clients' share of these cores.
    pub timer_fanout_in_service: Percentiles,
    pub timer_fanout_cpu: FanoutCpu,
    /// The same for the bare baseline broadcasting a frame of the same shape.
    pub baseline_fanout: Percentiles,
    pub baseline_fanout_cpu: FanoutCpu,
    pub baseline_fanout_last_site: Percentiles,
    /// A site's socket closes → the live feed shows it offline.
    pub close_to_offline: Percentiles,
    pub connect_all_seconds: f64,
    /// Failed handshakes while every site connected at once.
    pub handshake_failures: u64,
    /// Healthy sites marked degraded from the connection burst to the end of the
    /// measured window (should be 0).
    pub degraded_transitions: u64,
    pub reconnect: Reconnect,
}

fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
        values.get(rank - 1).copied().unwrap_or(f64::NAN)
    };
    Percentiles {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        samples: values.len(),
    }
}

/// CPU time (ns), RSS and peak RSS of a process, from `/proc`. CPU time is the sum of
/// its threads' `schedstat` run time, in nanoseconds: `/proc/PID/stat` counts in ticks
/// of 10 ms, too coarse for a process that uses 0.2 % of a core or for one fan-out.
/// (A thread that ended is no longer counted; the measured windows have none that
/// matter: runtime workers and the store writer live as long as the process.)
fn proc_usage(pid: u32) -> Result<(u64, u64, u64), BenchError> {
    let mut cpu_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).map_err(fail)? {
        let path = task.map_err(fail)?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(schedstat) = std::fs::read_to_string(path) {
            cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(fail)?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((cpu_ns, kib("VmRSS:"), kib("VmHWM:")))
}

fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok(listener.local_addr().map_err(fail)?.port())
}

/// A child process, killed when dropped.
struct ChildProcess(Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the bench's clients count together.
#[derive(Default)]
struct ClientStats {
    round_trips: AtomicU64,
    /// Sites welcomed on their current connection.
    connected: AtomicUsize,
    /// TCP connected, but the upgrade or the hello → welcome failed.
    handshake_failures: AtomicU64,
    /// Probe sent (server clock) → read by the client (same machine, same clock), per
    /// whole millisecond; the last bucket holds everything slower. Counted while
    /// `measuring`, for the service and the baseline alike.
    one_way: Vec<AtomicU64>,
    measuring: std::sync::atomic::AtomicBool,
    /// When each site first had each timer revision, by revision: one shared record,
    /// so the bench counts arrivals without visiting every site while it waits.
    arrivals: Mutex<HashMap<u64, Vec<Instant>>>,
}

const ONE_WAY_BUCKETS: usize = 256;

impl ClientStats {
    fn one_way_percentiles(&self) -> Percentiles {
        let counts: Vec<u64> = self
            .one_way
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let at = |q: f64| {
            let target = (q * total as f64).ceil() as u64;
            let mut seen = 0;
            counts
                .iter()
                .position(|c| {
                    seen += c;
                    seen >= target.max(1)
                })
                .map_or(f64::NAN, |ms| ms as f64)
        };
        Percentiles {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            samples: total as usize,
        }
    }
}

/// One bridge: answers probes, notes when each timer revision arrived, and reconnects
/// like a real agent (1 s ± 50 %, doubling) until the bench closes it.
struct Bridge {
    close: Option<oneshot::Sender<()>>,
}

/// How one connection ended.
enum Ended {
    /// The bench closed it (or dropped the bridge): stop.
    Closed,
    /// Welcomed, then lost.
    Lost,
    /// Nothing listening: the service is down.
    Refused,
    HandshakeFailed,
}

fn spawn_bridge(url: String, site: String, key: String, stats: Arc<ClientStats>) -> Bridge {
    let (close, mut closing) = oneshot::channel();
    tokio::spawn(async move {
        let mut attempt = 0;
        // A reconnected site is sent the snapshot it already has: count it once.
        let mut newest_rev = 0;
        loop {
            match connection(&url, &site, &key, &stats, &mut newest_rev, &mut closing).await {
                Ended::Closed => return,
                Ended::Lost => attempt = 0,
                Ended::Refused => attempt += 1,
                Ended::HandshakeFailed => {
                    stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
            }
            tokio::select! {
                _ = &mut closing => return,
                _ = tokio::time::sleep(backoff(attempt, random_unit())) => {}
            }
        }
    });
    Bridge { close: Some(close) }
}

async fn connection(
    url: &str,
    site: &str,
    key: &str,
    stats: &ClientStats,
    newest_rev: &mut u64,
    closing: &mut oneshot::Receiver<()>,
) -> Ended {
    use tokio_tungstenite::tungstenite::Error;
    let mut socket = match tokio_tungstenite::connect_async_with_config(
        url,
        Some(small_buffers()),
        true,
    )
    .await
    {
        Ok((socket, _)) => socket,
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Ended::Refused;
        }
        Err(_) => return Ended::HandshakeFailed,
    };
    let hello =
        json!({"type": "hello", "site": site, "key": key, "agent": "sim", "version": "bench"});
    if socket.send(Message::text(hello.to_string())).await.is_err() {
        return Ended::HandshakeFailed;
    }
    let mut welcomed = false;
    let ended = loop {
        // Frames first: while they keep coming, `closing` is not even polled.
        let frame = tokio::select! {
            biased;
            frame = socket.next() => frame,
            _ = &mut *closing => {
                let _ = socket.send(Message::Close(None)).await;
                break Ended::Closed;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                break if welcomed {
                    Ended::Lost
                } else {
                    Ended::HandshakeFailed
                };
            }
            Some(Ok(_)) => continue,
        };
        // The clients must cost little, or they measure themselves: read only the
        // fields that matter, with typed parsing.
        let Ok(frame) = serde_json::from_str::<BenchFrame>(&text) else {
            continue;
        };
        match frame.kind {
            "welcome" if !welcomed => {
                welcomed = true;
                stats.connected.fetch_add(1, Ordering::Relaxed);
            }
            "probe" => {
                stats.round_trips.fetch_add(1, Ordering::Relaxed);
                let now = now_ms();
                if stats.measuring.load(Ordering::Relaxed) {
                    let late =
                        (now - frame.server_ms.unwrap_or(now)).clamp(0, ONE_WAY_BUCKETS as i64 - 1);
                    stats.one_way[late as usize].fetch_add(1, Ordering::Relaxed);
                }
                let echo = format!(
                    r#"{{"type":"echo","seq":{},"server_ms":{},"client_recv_ms":{now},"client_send_ms":{now}}}"#,
                    frame.seq.unwrap_or(0),
                    frame.server_ms.unwrap_or(0)
                );
                if socket.send(Message::text(echo)).await.is_err() {
                    break Ended::Lost;
                }
            }
            "timer" => {
                if let Some(rev) = frame.rev.filter(|rev| *rev > *newest_rev) {
                    *newest_rev = rev;
                    let arrived = Instant::now();
                    let mut arrivals = stats.arrivals.lock().unwrap();
                    arrivals.entry(rev).or_default().push(arrived);
                }
            }
            _ => {}
        }
    };
    if welcomed {
        stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
    ended
}

/// The few fields of a server frame the bench clients look at.
#[derive(serde::Deserialize)]
struct BenchFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    seq: Option<u64>,
    server_ms: Option<i64>,
    rev: Option<u64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn wait_listening(addr: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            return Err(fail(format!("nothing listens on {addr} after 30 s")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A loaded server: what it cost, and the bridges still connected to it.
struct Loaded {
    cost: ProcessCost,
    bridges: Vec<Bridge>,
    stats: Arc<ClientStats>,
    connect_all_seconds: f64,
    /// Probe RTT over the measured window, from the service's histogram.
    rtt: Option<Percentiles>,
    /// Sites the service marked degraded since it started (all are healthy).
    degraded: Option<u64>,
}

/// Connects every site to `url`, lets the burst settle, then measures `pid` for `seconds`.
async fn load(
    pid: u32,
    url: &str,
    keys: &[(String, String)],
    seconds: u64,
    metrics_url: Option<&str>,
) -> Result<Loaded, BenchError> {
    let stats = Arc::new(ClientStats {
        one_way: (0..ONE_WAY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        ..ClientStats::default()
    });
    let (_, rss_idle, _) = proc_usage(pid)?;
    let started = Instant::now();
    let bridges: Vec<Bridge> = keys
        .iter()
        .map(|(site, key)| spawn_bridge(url.into(), site.clone(), key.clone(), stats.clone()))
        .collect();
    wait_connected(&stats, keys.len(), Duration::from_secs(60)).await?;
    let connect_all_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let histogram_before = match metrics_url {
        Some(url) => Some(probe_rtt_buckets(&fetch_text(url).await?)),
        None => None,
    };
    let (cpu_ns_before, _, _) = proc_usage(pid)?;
    let trips_before = stats.round_trips.load(Ordering::Relaxed);
    let measuring = Instant::now();
    stats.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = measuring.elapsed().as_secs_f64();
    let (cpu_ns_after, rss, peak) = proc_usage(pid)?;
    let trips = stats.round_trips.load(Ordering::Relaxed) - trips_before;
    let (rtt, degraded) = match (metrics_url, histogram_before) {
        (Some(url), Some(before)) => {
            let metrics = fetch_text(url).await?;
            (
                Some(bucket_quantiles(&subtract(
                    &probe_rtt_buckets(&metrics),
                    &before,
                ))),
                Some(degraded_transitions(&metrics)),
            )
        }
        _ => (None, None),
    };
    let cpu_seconds = cpu_ns_after.saturating_sub(cpu_ns_before) as f64 / 1e9;
    let cost = ProcessCost {
        cpu_cores: cpu_seconds / elapsed,
        rss_bytes: rss,
        rss_peak_bytes: peak,
        // What the connections added, not the process's base.
        rss_per_site_bytes: rss.saturating_sub(rss_idle) as f64 / keys.len().max(1) as f64,
        probe_round_trips: trips,
        cpu_us_per_round_trip: cpu_seconds * 1e6 / trips.max(1) as f64,
    };
    Ok(Loaded {
        cost,
        bridges,
        stats,
        connect_all_seconds,
        rtt,
        degraded,
    })
}

async fn wait_connected(
    stats: &ClientStats,
    sites: usize,
    within: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + within;
    while stats.connected.load(Ordering::Relaxed) < sites {
        if Instant::now() > deadline {
            return Err(fail(format!(
                "only {} of {sites} sites connected within {} s ({} failed handshakes)",
                stats.connected.load(Ordering::Relaxed),
                within.as_secs(),
                stats.handshake_failures.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn fetch_text(url: &str) -> Result<String, BenchError> {
    reqwest::get(url)
        .await
        .map_err(fail)?
        .text()
        .await
        .map_err(fail)
}

/// The cumulative buckets of `diemcau_probe_rtt_seconds`: (upper bound in s, count).
fn probe_rtt_buckets(metrics: &str) -> Vec<(f64, f64)> {
    histogram_buckets(metrics, "diemcau_probe_rtt_seconds")
}

/// The cumulative buckets of histogram `name`: (upper bound in s, count).
fn histogram_buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// How many times any site went degraded, from `diemcau_site_transitions_total`.
fn degraded_transitions(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("diemcau_site_transitions_total{") && l.contains("to=\"degraded\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Only what was observed between two scrapes (the connection burst stays out).
fn subtract(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            (le, count - earlier)
        })
        .collect()
}

/// Quantiles from cumulative buckets, in ms (each an upper bound: the bucket's edge).
fn bucket_quantiles(buckets: &[(f64, f64)]) -> Percentiles {
    let total = buckets.last().map_or(0.0, |(_, c)| *c);
    let at = |q: f64| {
        let target = q * total;
        buckets
            .iter()
            .find(|(_, c)| *c >= target)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    };
    Percentiles {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        samples: total as usize,
    }
}

/// What sends a timer change to every site: the service's timer API, or the
/// baseline's broadcast of a frame of the same shape.
enum Trigger {
    Service {
        http: reqwest::Client,
        base: String,
        secretary: String,
    },
    Baseline {
        control: futures_util::stream::SplitSink<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
            Message,
        >,
    },
}

impl Trigger {
    /// Sends change number `i`; returns the timer revision the sites will see.
    async fn fire(&mut self, i: u64) -> Result<u64, BenchError> {
        match self {
            Trigger::Service {
                http,
                base,
                secretary,
            } => {
                let (path, body) = if i == 0 {
                    ("start", json!({"slot": 1}))
                } else {
                    (
                        "adjust",
                        json!({"seconds": if i.is_multiple_of(2) { 1 } else { -1 }}),
                    )
                };
                let answer: Value = http
                    .post(format!("{base}/api/timer/{path}"))
                    .bearer_auth(&*secretary)
                    .json(&body)
                    .send()
                    .await
                    .map_err(fail)?
                    .json()
                    .await
                    .map_err(fail)?;
                answer["rev"]
                    .as_u64()
                    .ok_or_else(|| fail(format!("timer command refused: {answer}")))
            }
            Trigger::Baseline { control } => {
                let rev = 1000 + i;
                let order = json!({"type": "broadcast", "frame": timer_like_frame(rev)});
                control
                    .send(Message::text(order.to_string()))
                    .await
                    .map_err(fail)?;
                Ok(rev)
            }
        }
    }
}

/// A frame shaped like the service's timer snapshot (DESIGN.md), for the baseline.
fn timer_like_frame(rev: u64) -> String {
    let now = now_ms();
    json!({"type": "timer", "rev": rev, "state": "running",
        "slot": {"order": 4, "unit": "Sở Khoa học và Công nghệ", "topic": "Chuyển đổi số cấp xã sau một năm vận hành", "venue": "hall"},
        "next": {"order": 5, "unit": "Sở Nội vụ", "venue": "hall"},
        "duration_ms": 420000, "added_ms": 0, "deadline_ms": now + 420000, "remaining_ms": null,
        "warning_ms": 60000, "danger_ms": 30000, "server_ms": now})
    .to_string()
}

/// Timer fan-out: `changes` changes, each timed until every site has it, in ms.
#[derive(Default)]
struct Fanout {
    per_site: Vec<f64>,
    last_site: Vec<f64>,
    /// Sent → the trigger answered (the service's command stored and applied).
    answered: Vec<f64>,
    /// CPU spent while the changes were on their way, per change (server, clients).
    cpu: FanoutCpu,
}

/// CPU ms per fan-out, counted only from each change sent to its last site served: the
/// two processes share the machine's cores, so together they bound the fan-out time.
#[derive(Debug, Default, Serialize)]
pub struct FanoutCpu {
    pub server_ms: f64,
    pub clients_ms: f64,
}

async fn fanout(
    sites: usize,
    stats: &ClientStats,
    trigger: &mut Trigger,
    server_pid: u32,
    changes: u64,
) -> Result<Fanout, BenchError> {
    let mut fanout = Fanout::default();
    let clients_pid = std::process::id();
    let (mut server_ns, mut clients_ns) = (0, 0);
    for i in 0..changes {
        let server_before = proc_usage(server_pid)?.0;
        let clients_before = proc_usage(clients_pid)?.0;
        let sent = Instant::now();
        let rev = trigger.fire(i).await?;
        fanout.answered.push(sent.elapsed().as_secs_f64() * 1000.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let arrived = || stats.arrivals.lock().unwrap().get(&rev).map_or(0, Vec::len);
        while arrived() < sites && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let times = stats
            .arrivals
            .lock()
            .unwrap()
            .remove(&rev)
            .unwrap_or_default();
        if times.len() < sites {
            return Err(fail(format!(
                "timer change {i} reached {} of {sites} sites within 10 s",
                times.len(),
            )));
        }
        server_ns += proc_usage(server_pid)?.0.saturating_sub(server_before);
        clients_ns += proc_usage(clients_pid)?.0.saturating_sub(clients_before);
        let latencies: Vec<f64> = times
            .iter()
            .map(|t| t.duration_since(sent).as_secs_f64() * 1000.0)
            .collect();
        fanout
            .last_site
            .push(latencies.iter().copied().fold(0.0, f64::max));
        fanout.per_site.extend(latencies);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let per_change_ms = |ns: u64| ns as f64 / 1e6 / changes.max(1) as f64;
    fanout.cpu = FanoutCpu {
        server_ms: per_change_ms(server_ns),
        clients_ms: per_change_ms(clients_ns),
    };
    Ok(fanout)
}

/// The machine's floor for one fan-out: the same bytes written once to each of N plain
/// loopback TCP sockets from two threads (as many as the service's workers), then read
/// on the other ends by two threads: no websocket, no async runtime, no JSON. No server
/// on these cores can fan out faster than this, whatever its design.
#[derive(Debug, Serialize)]
pub struct LoopbackFloor {
    /// Socket pairs: one per site, fewer when the open-file limit cannot hold both
    /// ends of every pair.
    pub sockets: usize,
    pub frame_bytes: usize,
    pub written: Percentiles,
    pub written_and_read: Percentiles,
}

type SocketPair = (std::net::TcpStream, std::net::TcpStream);

/// Runs `each` over every pair from two threads, half each; the first error of either.
fn on_both_halves(
    pairs: &mut [SocketPair],
    each: impl Fn(&mut SocketPair) -> std::io::Result<()> + Sync,
) -> Result<(), BenchError> {
    let half = pairs.len().div_ceil(2).max(1);
    let each = &each;
    std::thread::scope(|scope| {
        let halves: Vec<_> = pairs
            .chunks_mut(half)
            .map(|chunk| scope.spawn(move || chunk.iter_mut().try_for_each(each)))
            .collect();
        halves.into_iter().try_for_each(|half| {
            half.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a floor thread panicked")))
        })
    })
    .map_err(fail)
}

fn loopback_floor(sites: usize, frame: &[u8], rounds: usize) -> Result<LoopbackFloor, BenchError> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    let mut pairs = Vec::with_capacity(sites);
    for _ in 0..sites {
        let client = std::net::TcpStream::connect(addr).map_err(fail)?;
        let (server, _) = listener.accept().map_err(fail)?;
        server.set_nodelay(true).map_err(fail)?;
        // A frame that never comes must not hang the bench.
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(fail)?;
        pairs.push((server, client));
    }
    let (mut written, mut written_and_read) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        on_both_halves(&mut pairs, |(server, _)| server.write_all(frame))?;
        written.push(started.elapsed().as_secs_f64() * 1000.0);
        on_both_halves(&mut pairs, |(_, client)| {
            client.read_exact(&mut [0; 4096][..frame.len()])
        })?;
        written_and_read.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(LoopbackFloor {
        sockets: sites,
        frame_bytes: frame.len(),
        written: percentiles(written),
        written_and_read: percentiles(written_and_read),
    })
}

fn start_service(exe: &Path, addr: &str, dir: &Path) -> Result<ChildProcess, BenchError> {
    Ok(ChildProcess(
        Command::new(exe)
            .args(["serve", "--listen", addr, "--data-dir"])
            .arg(dir)
            .arg("--config")
            .arg(dir.join("bench.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(fail)?,
    ))
}

/// After `kill -9` and a restart on the same port and data dir: how long until the
/// service shows every still-open site online again.
#[derive(Debug, Serialize)]
pub struct Reconnect {
    pub sites: usize,
    /// Kill → the restarted service listens.
    pub listening_seconds: f64,
    /// Kill → the service's status shows all of them online.
    pub all_online_seconds: f64,
    /// Connections accepted whose upgrade or hello → welcome failed.
    pub handshake_failures: u64,
}

async fn mass_reconnect(
    service: &mut ChildProcess,
    restart: impl FnOnce() -> Result<ChildProcess, BenchError>,
    addr: &str,
    operator: &str,
    stats: &ClientStats,
    sites: usize,
) -> Result<Reconnect, BenchError> {
    let failures_before = stats.handshake_failures.load(Ordering::Relaxed);
    let _ = service.0.kill();
    let _ = service.0.wait();
    let killed = Instant::now();
    *service = restart()?;
    wait_listening(addr).await?;
    let listening_seconds = killed.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let deadline = killed + Duration::from_secs(60);
    loop {
        let online = match http
            .get(format!("http://{addr}/api/status"))
            .bearer_auth(operator)
            .send()
            .await
        {
            Ok(answer) => answer.json::<Value>().await.map_err(fail)?["sites"]["online"]
                .as_u64()
                .unwrap_or(0) as usize,
            Err(_) => 0,
        };
        if online >= sites {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "after a restart only {online} of {sites} sites were online within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Reconnect {
        sites,
        listening_seconds,
        all_online_seconds: killed.elapsed().as_secs_f64(),
        handshake_failures: stats.handshake_failures.load(Ordering::Relaxed) - failures_before,
    })
}

pub async fn run(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let n = options.sites;
    // The clients here and the service's sockets in its own process (which inherits
    // the limit): each side needs one descriptor per site, plus room.
    let needed = n as u64 + 1024;
    let _ = rlimit::increase_nofile_limit(2 * needed); // the floor holds both ends
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(fail)?;
    if soft < needed {
        return Err(fail(format!(
            "{n} sites need {needed} open files; this machine allows {soft} (raise the hard limit, e.g. ulimit -Hn)"
        )));
    }
    let dir = tempfile::tempdir().map_err(fail)?;
    let roster = Roster::synthetic(n);
    let (secrets, _) = Secrets::load_or_create(dir.path(), &roster).map_err(fail)?;
    write_files(dir.path(), &roster, options.probe_interval_ms)?;
    let keys: Vec<(String, String)> = roster
        .sites()
        .iter()
        .filter_map(|s| {
            Some((
                s.id.to_string(),
                secrets.site_key(s.id)?.expose().to_string(),
            ))
        })
        .collect();
    let exe = std::env::current_exe().map_err(fail)?;

    // The machine's floor, then the bare baseline, each alone on the machine. The floor's
    // frame is a timer snapshot in a websocket frame (a 4-byte header at this size).
    let frame = format!("    {}", timer_like_frame(1));
    let pairs = (n as u64).min(soft.saturating_sub(1024) / 2) as usize;
    let floor = tokio::task::block_in_place(|| {
        loopback_floor(pairs, frame.as_bytes(), options.changes as usize)
    })?;

    let addr = format!("127.0.0.1:{}", free_port()?);
    let baseline = ChildProcess(
        Command::new(&exe)
            .args([
                "bench-baseline",
                "--listen",
                &addr,
                "--probe-interval-ms",
                &options.probe_interval_ms.to_string(),
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(fail)?,
    );
    wait_listening(&addr).await?;
    let url = format!("ws://{addr}/ws/bridge");
    let base_run = load(baseline.0.id(), &url, &keys, options.seconds, None).await?;
    let (control, _) = tokio_tungstenite::connect_async(&url).await.map_err(fail)?;
    let (mut control, _) = control.split();
    control
        .send(Message::text(r#"{"type":"hello"}"#))
        .await
        .map_err(fail)?;
    let baseline_fanout = fanout(
        base_run.bridges.len(),
        &base_run.stats,
        &mut Trigger::Baseline { control },
        baseline.0.id(),
        options.changes,
    )
    .await?;
    drop(base_run.bridges);
    drop(baseline);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Then the service, as the organisers run it.
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut service = start_service(&exe, &addr, dir.path())?;
    wait_listening(&addr).await?;
    let base = format!("http://{addr}");
    let mut run = load(
        service.0.id(),
        &format!("ws://{addr}/ws/bridge"),
        &keys,
        options.seconds,
        Some(&format!("{base}/metrics")),
    )
    .await?;
    let initial_handshake_failures = run.stats.handshake_failures.load(Ordering::Relaxed);

    let secretary = secrets.role_key(Role::Secretary).expose().to_string();
    let mut trigger = Trigger::Service {
        http: reqwest::Client::new(),
        base: base.clone(),
        secretary,
    };
    let metrics_url = format!("{base}/metrics");
    let fanout_buckets = |metrics: &str| histogram_buckets(metrics, "diemcau_timer_fanout_seconds");
    let before = fanout_buckets(&fetch_text(&metrics_url).await?);
    let service_fanout = fanout(
        run.bridges.len(),
        &run.stats,
        &mut trigger,
        service.0.id(),
        options.changes,
    )
    .await?;
    let in_service = bucket_quantiles(&subtract(
        &fanout_buckets(&fetch_text(&metrics_url).await?),
        &before,
    ));

    // Close → offline: sockets closed one by one, watched on the live feed.
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    let close_to_offline = detection(&addr, &operator, &mut run.bridges, &keys).await?;
    let still_open = run.bridges.iter().filter(|b| b.close.is_some()).count();
    let reconnect = mass_reconnect(
        &mut service,
        || start_service(&exe, &addr, dir.path()),
        &addr,
        &operator,
        &run.stats,
        still_open,
    )
    .await?;
    drop(run.bridges);
    drop(service);

    let cpu_ratio =
        run.cost.cpu_us_per_round_trip / base_run.cost.cpu_us_per_round_trip.max(f64::MIN_POSITIVE);
    Ok(BenchReport {
        sites: n,
        seconds: options.seconds,
        probe_interval_ms: options.probe_interval_ms,
        service: run.cost,
        baseline: base_run.cost,
        cpu_ratio,
        loopback_floor: floor,
        probe_rtt: run.rtt.unwrap_or_else(|| percentiles(Vec::new())),
        probe_one_way: run.stats.one_way_percentiles(),
        baseline_probe_one_way: base_run.stats.one_way_percentiles(),
        timer_fanout: percentiles(service_fanout.per_site),
        timer_fanout_last_site: percentiles(service_fanout.last_site),
        timer_command_answered: percentiles(service_fanout.answered),
        timer_fanout_in_service: in_service,
        timer_fanout_cpu: service_fanout.cpu,
        baseline_fanout: percentiles(baseline_fanout.per_site),
        baseline_fanout_cpu: baseline_fanout.cpu,
        baseline_fanout_last_site: percentiles(baseline_fanout.last_site),
        close_to_offline,
        connect_all_seconds: run.connect_all_seconds,
        handshake_failures: initial_handshake_failures,
        degraded_transitions: run.degraded.unwrap_or(0),
        reconnect,
    })
}

async fn detection(
    addr: &str,
    operator: &str,
    bridges: &mut [Bridge],
    keys: &[(String, String)],
) -> Result<Percentiles, BenchError> {
    let (feed, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/live?key={operator}"))
        .await
        .map_err(fail)?;
    let (_, mut feed) = feed.split();
    let offline_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = offline_at.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = feed.next().await {
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let offline = value["type"] == "site" && value["site"]["state"] == "offline";
            if let Some(id) = value["site"]["id"].as_str().filter(|_| offline) {
                seen.lock()
                    .unwrap()
                    .entry(id.to_string())
                    .or_insert_with(Instant::now);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = bridges.len().min(20);
    let mut closed = Vec::new();
    for (bridge, (site, _)) in bridges.iter_mut().zip(keys).take(count) {
        if let Some(close) = bridge.close.take() {
            closed.push((site.clone(), Instant::now()));
            let _ = close.send(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    reader.abort();
    let seen = offline_at.lock().unwrap();
    Ok(percentiles(
        closed
            .iter()
            .filter_map(|(site, at)| {
                seen.get(site)
                    .map(|t| t.duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect(),
    ))
}

fn write_files(dir: &Path, roster: &Roster, probe_interval_ms: u64) -> Result<(), BenchError> {
    let mut sites = String::from("code,name,kind,former_district\n");
    for s in roster.sites() {
        sites.push_str(&format!(
            "{},{},{},{}\n",
            s.id,
            s.name,
            s.kind.as_str(),
            s.former_district
        ));
    }
    std::fs::write(dir.join("sites.csv"), sites).map_err(fail)?;
    std::fs::write(
        dir.join("agenda.csv"),
        "order,unit,unit_kind,topic\n1,Đơn vị đo,so_nganh,Đo tải\n",
    )
    .map_err(fail)?;
    let config = format!(
        "data_dir = \".\"\nsites = \"sites.csv\"\nagenda = \"agenda.csv\"\n[liveness]\nprobe_interval_ms = {probe_interval_ms}\n"
    );
    std::fs::write(dir.join("bench.toml"), config).map_err(fail)
}

/// The baseline: accepts bridges, reads their hello, welcomes them, probes every
/// interval and reads the echoes — the same frames as the service, and nothing else.
/// A `broadcast` frame from any client sends its `frame` to every connection (the
/// bench's timer fan-out, done the bare way).
pub async fn baseline_server(listen: &str, probe_interval_ms: u64) -> std::io::Result<()> {
    use tokio_tungstenite::tungstenite::Utf8Bytes;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let (everyone, _) = tokio::sync::broadcast::channel::<Utf8Bytes>(16);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let everyone = everyone.clone();
        tokio::spawn(async move {
            // The same buffer sizes as the service (ECOSYSTEM.md): a fair comparison.
            let Ok(socket) =
                tokio_tungstenite::accept_async_with_config(stream, Some(small_buffers())).await
            else {
                return;
            };
            let mut broadcasts = everyone.subscribe();
            let (mut sink, mut stream) = socket.split();
            if !matches!(stream.next().await, Some(Ok(Message::Text(_)))) {
                return;
            }
            let welcome = json!({"type": "welcome", "server_ms": now_ms(), "probe_interval_ms": probe_interval_ms});
            if sink.send(Message::text(welcome.to_string())).await.is_err() {
                return;
            }
            let mut every = tokio::time::interval(Duration::from_millis(probe_interval_ms));
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        seq += 1;
                        let probe = json!({"type": "probe", "seq": seq, "server_ms": now_ms()});
                        if sink.send(Message::text(probe.to_string())).await.is_err() {
                            return;
                        }
                    }
                    frame = broadcasts.recv() => match frame {
                        Ok(frame) => {
                            if sink.send(Message::Text(frame)).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    frame = stream.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                                continue;
                            };
                            if value["type"] == "broadcast" {
                                let frame = value["frame"].as_str().unwrap_or_default();
                                let _ = everyone.send(Utf8Bytes::from(frame));
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        });
    }
}

impl BenchReport {
    /// A short table for people.
    pub fn table(&self) -> String {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        format!(
            "diemcau bench: {} sites, {} s, probes every {} ms\n\
             {:<34} {:>12} {:>12}\n\
             {:<34} {:>11.1}% {:>11.1}%\n\
             {:<34} {:>10.1} MiB {:>8.1} MiB\n\
             {:<34} {:>10.1} KiB {:>8.1} KiB\n\
             {:<34} {:>12.1} {:>12.1}\n\
             CPU per round trip, service ÷ baseline: {:.2}\n\
             probe RTT p50 / p99 (histogram bucket, measured window): {:.1} / {:.1} ms\n\
             probe one way p50 / p99, service: {:.0} / {:.0} ms; bare baseline: {:.0} / {:.0} ms\n\
             timer fan-out p50 / p99 (per site): {:.1} / {:.1} ms; last site p99 {:.1} ms; command answered p99 {:.1} ms\n\
             in the service (applied → last frame to the kernel, bucket) p50 / p99: {:.1} / {:.1} ms\n\
             bare baseline fan-out p50 / p99: {:.1} / {:.1} ms; last site p99 {:.1} ms\n\
             CPU per fan-out, server + clients: service {:.1} + {:.1} ms; bare baseline {:.1} + {:.1} ms\n\
             machine's floor ({} B to each of {} plain sockets, 2 threads) p50 / p99: written {:.1} / {:.1} ms, and read {:.1} / {:.1} ms\n\
             close → offline p50 / p99: {:.1} / {:.1} ms ({} sites)\n\
             all sites connected in {:.2} s ({} failed handshakes); healthy sites marked degraded: {}\n\
             kill -9 and restart: listening after {:.2} s, all {} sites online after {:.2} s ({} failed handshakes)\n",
            self.sites,
            self.seconds,
            self.probe_interval_ms,
            "",
            "service",
            "baseline",
            "CPU (share of one core)",
            self.service.cpu_cores * 100.0,
            self.baseline.cpu_cores * 100.0,
            "RSS peak",
            mib(self.service.rss_peak_bytes),
            mib(self.baseline.rss_peak_bytes),
            "RSS per site",
            self.service.rss_per_site_bytes / 1024.0,
            self.baseline.rss_per_site_bytes / 1024.0,
            "CPU µs per probe round trip",
            self.service.cpu_us_per_round_trip,
            self.baseline.cpu_us_per_round_trip,
            self.cpu_ratio,
            self.probe_rtt.p50_ms,
            self.probe_rtt.p99_ms,
            self.probe_one_way.p50_ms,
            self.probe_one_way.p99_ms,
            self.baseline_probe_one_way.p50_ms,
            self.baseline_probe_one_way.p99_ms,
            self.timer_fanout.p50_ms,
            self.timer_fanout.p99_ms,
            self.timer_fanout_last_site.p99_ms,
            self.timer_command_answered.p99_ms,
            self.timer_fanout_in_service.p50_ms,
            self.timer_fanout_in_service.p99_ms,
            self.baseline_fanout.p50_ms,
            self.baseline_fanout.p99_ms,
            self.baseline_fanout_last_site.p99_ms,
            self.timer_fanout_cpu.server_ms,
            self.timer_fanout_cpu.clients_ms,
            self.baseline_fanout_cpu.server_ms,
            self.baseline_fanout_cpu.clients_ms,
            self.loopback_floor.frame_bytes,
            self.loopback_floor.sockets,
            self.loopback_floor.written.p50_ms,
            self.loopback_floor.written.p99_ms,
            self.loopback_floor.written_and_read.p50_ms,
            self.loopback_floor.written_and_read.p99_ms,
            self.close_to_offline.p50_ms,
            self.close_to_offline.p99_ms,
            self.close_to_offline.samples,
            self.connect_all_seconds,
            self.handshake_failures,
            self.degraded_transitions,
            self.reconnect.listening_seconds,
            self.reconnect.sites,
            self.reconnect.all_online_seconds,
            self.reconnect.handshake_failures,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_cumulative_buckets() {
        let metrics = "diemcau_probe_rtt_seconds_bucket{le=\"0.001\"} 50\n\
                       diemcau_probe_rtt_seconds_bucket{le=\"0.005\"} 99\n\
                       diemcau_probe_rtt_seconds_bucket{le=\"+Inf\"} 100\n";
        let q = bucket_quantiles(&probe_rtt_buckets(metrics));
        assert_eq!((q.p50_ms, q.p99_ms, q.samples), (1.0, 5.0, 100));
    }

    #[test]
    fn the_window_leaves_out_what_came_before_it() {
        let before = probe_rtt_buckets(
            "diemcau_probe_rtt_seconds_bucket{le=\"0.001\"} 0\n\
             diemcau_probe_rtt_seconds_bucket{le=\"0.05\"} 100\n\
             diemcau_probe_rtt_seconds_bucket{le=\"+Inf\"} 100\n",
        );
        let after = probe_rtt_buckets(
            "diemcau_probe_rtt_seconds_bucket{le=\"0.001\"} 100\n\
             diemcau_probe_rtt_seconds_bucket{le=\"0.05\"} 200\n\
             diemcau_probe_rtt_seconds_bucket{le=\"+Inf\"} 200\n",
        );
        let q = bucket_quantiles(&subtract(&after, &before));
        assert_eq!(
            (q.p99_ms, q.samples),
            (1.0, 100),
            "the burst's slow probes are not in the window"
        );
    }

    #[test]
    fn degraded_transitions_are_summed_over_sites() {
        let metrics = "diemcau_site_transitions_total{site=\"00001\",to=\"degraded\"} 2\n\
                       diemcau_site_transitions_total{site=\"00001\",to=\"offline\"} 5\n\
                       diemcau_site_transitions_total{site=\"00002\",to=\"degraded\"} 1\n";
        assert_eq!(degraded_transitions(metrics), 3);
    }

    #[test]
    fn the_floor_times_every_frame_written_then_read() {
        let frame = b"    {\"type\":\"timer\"}";
        let floor = loopback_floor(5, frame, 3).unwrap();
        assert_eq!((floor.sockets, floor.frame_bytes), (5, frame.len()));
        assert_eq!(floor.written.samples, 3);
        assert!(floor.written.p50_ms <= floor.written_and_read.p50_ms);
        assert!(
            floor.written_and_read.p99_ms < 10_000.0,
            "no read timed out"
        );
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50_ms, p.p99_ms), (50.0, 99.0));
        assert!(percentiles(Vec::new()).p50_ms.is_nan());
    }
}

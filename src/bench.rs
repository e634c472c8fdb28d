//! `diemcau bench`: the real service binary as a child process under N bridges,
//! measured from `/proc` and from the clients, side by side with a bare
//! tokio-tungstenite echo server (`diemcau bench-baseline`) under the same load.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{Role, Secrets};
use crate::sites::Roster;

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
    /// From the service's own histogram (bucketed: an upper bound per bucket).
    pub probe_rtt: Percentiles,
    /// Timer command sent → a site has the new snapshot, over every site and command.
    pub timer_fanout: Percentiles,
    /// Timer command sent → the last site has it, per command.
    pub timer_fanout_last_site: Percentiles,
    /// A site's socket closes → the live feed shows it offline.
    pub close_to_offline: Percentiles,
    pub connect_all_seconds: f64,
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

/// CPU ticks (user + system), RSS and peak RSS of a process, from `/proc`.
fn proc_usage(pid: u32) -> Result<(u64, u64, u64), BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(fail)?;
    // The command name is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
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
    Ok((field(11) + field(12), kib("VmRSS:"), kib("VmHWM:")))
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
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

/// One bridge: answers probes, notes when each timer revision arrived.
struct Bridge {
    close: Option<oneshot::Sender<()>>,
    timer_seen: Arc<Mutex<HashMap<u64, Instant>>>,
}

async fn connect(
    url: &str,
    site: &str,
    key: &str,
    round_trips: Arc<AtomicU64>,
) -> Result<Bridge, BenchError> {
    let (socket, _) = tokio_tungstenite::connect_async(url).await.map_err(fail)?;
    let (mut sink, mut stream) = socket.split();
    let hello =
        json!({"type": "hello", "site": site, "key": key, "agent": "sim", "version": "bench"});
    sink.send(Message::text(hello.to_string()))
        .await
        .map_err(fail)?;
    let (close, mut closing) = oneshot::channel();
    let timer_seen = Arc::new(Mutex::new(HashMap::new()));
    let seen = timer_seen.clone();
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = &mut closing => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
                frame = stream.next() => frame,
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                _ => return,
            };
            // The clients must cost little, or they measure themselves: read only the
            // fields that matter, with typed parsing.
            match serde_json::from_str::<BenchFrame>(&text) {
                Ok(BenchFrame {
                    kind,
                    seq,
                    server_ms,
                    ..
                }) if kind == "probe" => {
                    round_trips.fetch_add(1, Ordering::Relaxed);
                    let now = now_ms();
                    let echo = format!(
                        r#"{{"type":"echo","seq":{},"server_ms":{},"client_recv_ms":{now},"client_send_ms":{now}}}"#,
                        seq.unwrap_or(0),
                        server_ms.unwrap_or(0)
                    );
                    if sink.send(Message::text(echo)).await.is_err() {
                        return;
                    }
                }
                Ok(BenchFrame {
                    kind,
                    rev: Some(rev),
                    ..
                }) if kind == "timer" => {
                    seen.lock().unwrap().entry(rev).or_insert_with(Instant::now);
                }
                _ => {}
            }
        }
    });
    Ok(Bridge {
        close: Some(close),
        timer_seen,
    })
}

/// The few fields of a server frame the bench clients look at.
#[derive(serde::Deserialize)]
struct BenchFrame {
    #[serde(rename = "type")]
    kind: String,
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

/// Connects every site to `url`, lets the burst settle, then measures `pid` for `seconds`.
async fn load(
    pid: u32,
    url: &str,
    keys: &[(String, String)],
    seconds: u64,
) -> Result<(ProcessCost, Vec<Bridge>, f64), BenchError> {
    let round_trips = Arc::new(AtomicU64::new(0));
    let (_, rss_idle, _) = proc_usage(pid)?;
    let started = Instant::now();
    let mut bridges = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(250) {
        let connecting = chunk
            .iter()
            .map(|(site, key)| connect(url, site, key, round_trips.clone()));
        for bridge in futures_util::future::join_all(connecting).await {
            bridges.push(bridge?);
        }
    }
    let connect_all = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ticks_before, _, _) = proc_usage(pid)?;
    let trips_before = round_trips.load(Ordering::Relaxed);
    let measuring = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = measuring.elapsed().as_secs_f64();
    let (ticks_after, rss, peak) = proc_usage(pid)?;
    let trips = round_trips.load(Ordering::Relaxed) - trips_before;
    let cpu_seconds = ticks_after.saturating_sub(ticks_before) as f64 / ticks_per_second();
    let cost = ProcessCost {
        cpu_cores: cpu_seconds / elapsed,
        rss_bytes: rss,
        rss_peak_bytes: peak,
        // What the connections added, not the process's base.
        rss_per_site_bytes: rss.saturating_sub(rss_idle) as f64 / keys.len().max(1) as f64,
        probe_round_trips: trips,
        cpu_us_per_round_trip: cpu_seconds * 1e6 / trips.max(1) as f64,
    };
    Ok((cost, bridges, connect_all))
}

/// Quantiles of `diemcau_probe_rtt_seconds` from its cumulative buckets, in ms.
fn histogram_quantiles(metrics: &str) -> Percentiles {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("diemcau_probe_rtt_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
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

pub async fn run(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let n = options.sites;
    let needed = n as u64 * 2 + 512;
    let _ = rlimit::increase_nofile_limit(needed);
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

    // The bare baseline first, alone on the machine.
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
    let (baseline_cost, bridges, _) = load(
        baseline.0.id(),
        &format!("ws://{addr}/ws/bridge"),
        &keys,
        options.seconds,
    )
    .await?;
    drop(bridges);
    drop(baseline);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Then the service, as the organisers run it.
    let addr = format!("127.0.0.1:{}", free_port()?);
    let service = ChildProcess(
        Command::new(&exe)
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(dir.path())
            .arg("--config")
            .arg(dir.path().join("bench.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(fail)?,
    );
    wait_listening(&addr).await?;
    let (service_cost, mut bridges, connect_all_seconds) = load(
        service.0.id(),
        &format!("ws://{addr}/ws/bridge"),
        &keys,
        options.seconds,
    )
    .await?;

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(fail)?
        .text()
        .await
        .map_err(fail)?;
    let probe_rtt = histogram_quantiles(&metrics);

    // Timer fan-out: ten commands, each timed until every site has it.
    let secretary = secrets.role_key(Role::Secretary).expose().to_string();
    let (mut per_site, mut last_site) = (Vec::new(), Vec::new());
    for i in 0..10u64 {
        let (path, body) = if i == 0 {
            ("start", json!({"slot": 1}))
        } else {
            (
                "adjust",
                json!({"seconds": if i % 2 == 0 { 1 } else { -1 }}),
            )
        };
        let sent = Instant::now();
        let answer: Value = http
            .post(format!("{base}/api/timer/{path}"))
            .bearer_auth(&secretary)
            .json(&body)
            .send()
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        let rev = answer["rev"]
            .as_u64()
            .ok_or_else(|| fail(format!("timer command refused: {answer}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let times = loop {
            let times: Vec<Instant> = bridges
                .iter()
                .filter_map(|b| b.timer_seen.lock().unwrap().get(&rev).copied())
                .collect();
            if times.len() == bridges.len() || Instant::now() > deadline {
                break times;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let latencies: Vec<f64> = times
            .iter()
            .map(|t| t.duration_since(sent).as_secs_f64() * 1000.0)
            .collect();
        last_site.push(latencies.iter().copied().fold(0.0, f64::max));
        per_site.extend(latencies);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Close → offline: sockets closed one by one, watched on the live feed.
    let operator = secrets.role_key(Role::Operator).expose().to_string();
    let close_to_offline = detection(&addr, &operator, &mut bridges, &keys).await?;
    drop(service);

    let cpu_ratio = service_cost.cpu_us_per_round_trip
        / baseline_cost.cpu_us_per_round_trip.max(f64::MIN_POSITIVE);
    Ok(BenchReport {
        sites: n,
        seconds: options.seconds,
        probe_interval_ms: options.probe_interval_ms,
        service: service_cost,
        baseline: baseline_cost,
        cpu_ratio,
        probe_rtt,
        timer_fanout: percentiles(per_site),
        timer_fanout_last_site: percentiles(last_site),
        close_to_offline,
        connect_all_seconds,
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

/// The baseline: accepts bridges, reads their hello, probes every interval and reads
/// the echoes — the same frames as the service, and nothing else.
pub async fn baseline_server(listen: &str, probe_interval_ms: u64) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (mut sink, mut stream) = socket.split();
            if !matches!(stream.next().await, Some(Ok(Message::Text(_)))) {
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
                    frame = stream.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let _ = serde_json::from_str::<Value>(&text);
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
             probe RTT p50 / p99 (histogram bucket): {:.1} / {:.1} ms\n\
             timer fan-out p50 / p99 (per site): {:.1} / {:.1} ms; last site p99 {:.1} ms\n\
             close → offline p50 / p99: {:.1} / {:.1} ms ({} sites)\n\
             all sites connected in {:.2} s\n",
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
            self.timer_fanout.p50_ms,
            self.timer_fanout.p99_ms,
            self.timer_fanout_last_site.p99_ms,
            self.close_to_offline.p50_ms,
            self.close_to_offline.p99_ms,
            self.close_to_offline.samples,
            self.connect_all_seconds,
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
        let q = histogram_quantiles(metrics);
        assert_eq!((q.p50_ms, q.p99_ms, q.samples), (1.0, 5.0, 100));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50_ms, p.p99_ms), (50.0, 99.0));
        assert!(percentiles(Vec::new()).p50_ms.is_nan());
    }
}

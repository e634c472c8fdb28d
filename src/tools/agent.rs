//! `diemcau agent`: a headless bridge for a kiosk PC or a Raspberry Pi. Connects as a
//! site (protocol v1), echoes probes, applies sync, reconnects with backoff and jitter,
//! prints the link state and the countdown as lines; with `--rehearse` it runs the
//! rehearsal check and ends with its verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::close;

pub struct AgentOptions {
    /// The service, `http(s)://host:port` or `ws(s)://host:port`.
    pub server: String,
    /// A private CA to trust beside the system's (PEM), for an https service.
    pub ca: Option<std::path::PathBuf>,
    pub site: String,
    pub key: String,
    /// Run the rehearsal check, print the verdict, exit.
    pub rehearse: bool,
    pub technician: String,
    /// Checklist items the technician confirmed (camera, micro, loa, man_hinh, du_phong).
    pub checked: Vec<String>,
    /// Confirm every roll call and message at once (an unattended kiosk that is, by
    /// being on, present).
    pub confirm: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("--server must be http(s)://host:port or ws(s)://host:port (got `{0}`)")]
    BadServer(String),
    #[error(transparent)]
    Tls(#[from] crate::tools::tls::TlsError),
    #[error("the server refused this site: {0}")]
    Refused(String),
}

/// Checklist items of the rehearsal, in the order the bridge page shows them.
pub const CHECKLIST: [&str; 5] = ["camera", "micro", "loa", "man_hinh", "du_phong"];

/// Exit codes of `--rehearse`.
pub mod exit {
    pub const PASS: i32 = 0;
    pub const WARN: i32 = 1;
    pub const FAIL: i32 = 2;
    /// The check could not run (refused, e.g. during a presentation).
    pub const NOT_RUN: i32 = 3;
}

/// `http://h:p` or `ws://h:p` (with or without a path) → `ws://h:p/ws/bridge`;
/// `https://` and `wss://` → `wss://h:p/ws/bridge`.
pub fn bridge_url(server: &str) -> Result<String, AgentError> {
    let (scheme, rest) = [
        ("ws", "http://"),
        ("ws", "ws://"),
        ("wss", "https://"),
        ("wss", "wss://"),
    ]
    .into_iter()
    .find_map(|(scheme, prefix)| Some((scheme, server.strip_prefix(prefix)?)))
    .ok_or_else(|| AgentError::BadServer(server.to_string()))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(AgentError::BadServer(server.to_string()));
    }
    Ok(format!("{scheme}://{host}/ws/bridge"))
}

/// The service's IP address, from `--server` (the UDP test goes to the address the
/// service answers with; this one finds the local address to send from).
async fn server_ip(server: &str) -> Option<std::net::IpAddr> {
    let url = url::Url::parse(&bridge_url(server).ok()?).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default()?;
    tokio::net::lookup_host((host, port))
        .await
        .ok()?
        .next()
        .map(|a| a.ip())
}

/// Reconnect delay: 1 s doubling to 10 s, ±50 % so 92 agents do not return at once.
pub fn backoff(attempt: u32, random_unit: f64) -> Duration {
    let base = (1000u64 << attempt.min(4)).min(10_000) as f64;
    Duration::from_millis((base * (0.5 + random_unit)) as u64)
}

pub fn random_unit() -> f64 {
    getrandom::u32().map_or(0.5, |r| r as f64 / u32::MAX as f64)
}

enum SessionEnd {
    /// `--rehearse` got its verdict: the exit code.
    Done(i32),
    /// The connection ended; try again.
    Lost(String),
}

/// Runs until the check is done (`--rehearse`) or forever; returns the exit code.
pub async fn run(options: AgentOptions) -> Result<i32, AgentError> {
    let url = bridge_url(&options.server)?;
    let tls = crate::tools::tls::connector(options.ca.as_deref())?;
    let mut attempt = 0u32;
    // Asked once: after a drop the server carries on with the same check.
    let mut check_requested = false;
    loop {
        let mut welcomed = false;
        match session(&options, &url, &tls, &mut welcomed, &mut check_requested).await? {
            SessionEnd::Done(code) => return Ok(code),
            SessionEnd::Lost(reason) => {
                if welcomed {
                    attempt = 0;
                }
                let wait = backoff(attempt, random_unit());
                attempt += 1;
                println!(
                    "✕ mất kết nối ({reason}); thử lại sau {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A download being measured: bytes per window since it began.
struct Download {
    check: Value,
    started: Instant,
    ends: Instant,
    window_ms: u64,
    windows: Vec<u64>,
}

async fn session(
    options: &AgentOptions,
    url: &str,
    tls: &tokio_tungstenite::Connector,
    welcomed: &mut bool,
    check_requested: &mut bool,
) -> Result<SessionEnd, AgentError> {
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(tls.clone()));
    let (socket, _) = match connecting.await {
        Ok(connected) => connected,
        Err(e) => return Ok(SessionEnd::Lost(e.to_string())),
    };
    let (mut sink, mut stream) = socket.split();
    // One writer: echoes and upload frames share the socket.
    let (tx, mut rx) = mpsc::channel::<Message>(8);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let send = |value: Value| {
        let tx = tx.clone();
        async move { tx.send(Message::text(value.to_string())).await.is_ok() }
    };
    send(json!({"type": "hello", "site": options.site, "key": options.key, "agent": "agent", "version": env!("CARGO_PKG_VERSION")})).await;

    let mut download: Option<Download> = None;
    // The UDP phase's peer, waiting for the service's answer.
    let mut udp_answer: Option<(Value, tokio::sync::oneshot::Sender<String>)> = None;
    let mut last_link_line: Option<Instant> = None;
    let mut last_timer_line = String::new();
    let end = loop {
        let download_ends = download.as_ref().map(|d| d.ends);
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = async { tokio::time::sleep_until(download_ends.expect("guarded")).await }, if download_ends.is_some() => {
                let done = download.take().expect("a download is measured");
                send(json!({"type": "check_report", "check": done.check, "phase": "download", "windows_bytes": done.windows})).await;
                println!("  tải xuống: đã đo xong, gửi kết quả");
                continue;
            }
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
            None => break SessionEnd::Lost("connection closed".into()),
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(data) => {
                if let Some(d) = download.as_mut() {
                    let window = (d.started.elapsed().as_millis() as u64 / d.window_ms) as usize;
                    if d.windows.len() <= window {
                        d.windows.resize(window + 1, 0);
                    }
                    d.windows[window] += data.len() as u64;
                }
                continue;
            }
            Message::Close(Some(close_frame)) => {
                let code = u16::from(close_frame.code);
                if code == close::BAD_KEY || code == close::UNKNOWN_SITE || code == close::BAD_HELLO
                {
                    return Err(AgentError::Refused(format!(
                        "{code} {}",
                        close_frame.reason
                    )));
                }
                break SessionEnd::Lost(format!("{code} {}", close_frame.reason));
            }
            Message::Close(None) => break SessionEnd::Lost("closed".into()),
            _ => continue,
        };
        let received = now_ms();
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match frame["type"].as_str().unwrap_or("") {
            "probe" => {
                let echo = json!({"type": "echo", "seq": frame["seq"], "server_ms": frame["server_ms"], "client_recv_ms": received, "client_send_ms": now_ms()});
                if !send(echo).await {
                    break SessionEnd::Lost("writer stopped".into());
                }
            }
            "welcome" => {
                *welcomed = true;
                println!(
                    "✔ {} ({}) đã kết nối với máy chủ tỉnh",
                    frame["site"]["name"].as_str().unwrap_or(""),
                    options.site
                );
                if options.rehearse && !*check_requested {
                    *check_requested = true;
                    let checklist: BTreeMap<&str, bool> = CHECKLIST
                        .iter()
                        .map(|item| (*item, options.checked.iter().any(|c| c == item)))
                        .collect();
                    send(json!({"type": "check_request", "technician": options.technician, "checklist": checklist})).await;
                }
            }
            "sync" if last_link_line.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) => {
                last_link_line = Some(Instant::now());
                println!(
                    "● trực tuyến · độ trễ {:.0} ms · lệch đồng hồ {:.0} ms (±{:.0})",
                    frame["rtt_ms"].as_f64().unwrap_or(0.0),
                    frame["offset_ms"].as_f64().unwrap_or(0.0),
                    frame["uncertainty_ms"].as_f64().unwrap_or(0.0)
                );
            }
            "timer" => {
                let line = timer_line(&frame);
                if line != last_timer_line {
                    println!("{line}");
                    last_timer_line = line;
                }
            }
            "check_start" => {
                let seconds = frame["seconds"].as_u64().unwrap_or(0);
                match frame["phase"].as_str().unwrap_or("") {
                    "latency" => println!("Kiểm tra kết nối: đo độ trễ trong {seconds} s…"),
                    "download" => {
                        println!("  đo tải xuống trong {seconds} s…");
                        let started = Instant::now();
                        download = Some(Download {
                            check: frame["check"].clone(),
                            started,
                            ends: started + Duration::from_secs(seconds),
                            window_ms: frame["window_ms"].as_u64().unwrap_or(250).max(1),
                            windows: Vec::new(),
                        });
                    }
                    "upload" => {
                        println!("  đo tải lên trong {seconds} s…");
                        let bytes = frame["frame_bytes"].as_u64().unwrap_or(65536) as usize;
                        tokio::spawn(upload(tx.clone(), bytes, Duration::from_secs(seconds)));
                    }
                    "udp" => {
                        println!("  đo đường UDP (hình và tiếng đi đường này) trong {seconds} s…");
                        let lasts = Duration::from_secs(seconds + 20);
                        match server_ip(&options.server).await {
                            Some(ip) => match super::udp_echo::start(ip, lasts).await {
                                Ok((offer, answer)) => {
                                    send(json!({"type": "udp_offer", "check": frame["check"], "sdp": offer})).await;
                                    udp_answer = Some((frame["check"].clone(), answer));
                                }
                                Err(e) => println!("! không mở được kênh UDP: {e}"),
                            },
                            None => println!("! không tìm được địa chỉ máy chủ cho kênh UDP"),
                        }
                    }
                    _ => {}
                }
            }
            "udp_answer" => {
                if let Some((check, answer)) = udp_answer.take() {
                    if frame["check"] == check {
                        let _ = answer.send(frame["sdp"].as_str().unwrap_or("").to_string());
                    }
                }
            }
            "check_result" => {
                print_result(&frame);
                if options.rehearse {
                    let code = match frame["verdict"].as_str() {
                        Some("pass") => exit::PASS,
                        Some("warn") => exit::WARN,
                        _ => exit::FAIL,
                    };
                    break SessionEnd::Done(code);
                }
            }
            "roll_call" | "message" => {
                let line = notice_line(&frame);
                println!("{line}");
                if options.confirm {
                    let ack = json!({"type": "ack", "ref": frame["id"]});
                    if send(ack).await {
                        println!("  ✔ đã xác nhận");
                    }
                }
            }
            "error" => {
                println!("! {}", frame["message"].as_str().unwrap_or(""));
                if options.rehearse
                    && matches!(frame["code"].as_str(), Some("check_refused" | "check_busy"))
                {
                    break SessionEnd::Done(exit::NOT_RUN);
                }
            }
            _ => {}
        }
    };
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    Ok(end)
}

/// Sends upload frames as fast as the socket takes them, for `length`.
async fn upload(tx: mpsc::Sender<Message>, bytes: usize, length: Duration) {
    let frame = axum::body::Bytes::from(vec![0xa5; bytes]);
    let until = Instant::now() + length;
    while Instant::now() < until {
        if tx.send(Message::Binary(frame.clone())).await.is_err() {
            break;
        }
    }
}

/// A roll call or a message as the technician reads it.
fn notice_line(frame: &Value) -> String {
    match frame["type"].as_str() {
        Some("roll_call") => {
            let by = frame["deadline_ms"]
                .as_i64()
                .map(crate::core::time::local_time)
                .unwrap_or_default();
            format!(
                "📣 ĐIỂM DANH: xác nhận có mặt trước {by} (chạy agent với --confirm để tự xác nhận)"
            )
        }
        _ => {
            let urgent = matches!(frame["level"].as_str(), Some("urgent" | "warning"));
            format!(
                "{} TIN NHẮN từ ban tổ chức: {}",
                if urgent { "⚠" } else { "✉" },
                frame["text"].as_str().unwrap_or("")
            )
        }
    }
}

/// The timer's state as the minutes say it (`state` as the snapshot names it).
fn state_words(state: &str) -> &'static str {
    use crate::core::timer::SlotState;
    SlotState::ALL
        .into_iter()
        .find(|s| s.as_str() == state)
        .map_or("", |s| s.words_vi())
}

fn timer_line(timer: &Value) -> String {
    let state = timer["state"].as_str().unwrap_or("idle");
    if state == "idle" {
        return "⏱ chưa có phần tham luận nào".into();
    }
    let slot = &timer["slot"];
    let remaining = match timer["deadline_ms"].as_i64() {
        Some(deadline) => deadline - timer["server_ms"].as_i64().unwrap_or(deadline),
        None => timer["remaining_ms"].as_i64().unwrap_or(0),
    };
    format!(
        "⏱ phần {} — {} — {} — còn {}",
        slot["order"],
        slot["unit"].as_str().unwrap_or(""),
        state_words(state),
        crate::core::time::minutes_seconds(remaining)
    )
}

fn print_result(result: &Value) {
    let verdict = result["verdict"].as_str().unwrap_or("fail");
    let label = match verdict {
        "pass" => "ĐẠT (pass)",
        "warn" => "CẦN LƯU Ý (warn)",
        _ => "KHÔNG ĐẠT (fail)",
    };
    println!("Kết quả kiểm tra kết nối: {label}");
    for row in result["rows"].as_array().into_iter().flatten() {
        let figure = row["figure"]
            .as_f64()
            .map_or("không đo được".to_string(), |f| {
                format!("{f:.1} {}", row["unit"].as_str().unwrap_or(""))
            });
        println!(
            "  {:<26} {:>16}   {:<44} {}",
            row["label"].as_str().unwrap_or(""),
            figure,
            row["threshold"].as_str().unwrap_or(""),
            row["verdict"].as_str().unwrap_or("")
        );
        if let Some(advice) = row["advice"].as_str() {
            println!("  → {advice}");
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_the_bridge_socket() {
        assert_eq!(
            bridge_url("http://10.0.0.5:8080").unwrap(),
            "ws://10.0.0.5:8080/ws/bridge"
        );
        assert_eq!(
            bridge_url("ws://h:1/ws/bridge").unwrap(),
            "ws://h:1/ws/bridge"
        );
        assert_eq!(
            bridge_url("https://diemcau.example.vn/").unwrap(),
            "wss://diemcau.example.vn/ws/bridge"
        );
        assert!(bridge_url("10.0.0.5:8080").is_err());
        assert!(bridge_url("http://").is_err());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_with_half_jitter() {
        assert_eq!(backoff(0, 0.5), Duration::from_millis(1000));
        assert_eq!(backoff(1, 0.5), Duration::from_millis(2000));
        assert_eq!(backoff(9, 0.5), Duration::from_millis(10_000));
        assert_eq!(backoff(0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(9, 1.0), Duration::from_millis(15_000));
    }
}

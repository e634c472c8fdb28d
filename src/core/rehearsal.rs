//! The rehearsal check (kiểm tra kết nối): figures measured over ~2 minutes, judged
//! row by row against the rubric; the verdict is the worst row. Pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::link::median;
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

/// Verdict of one row and of the whole check; ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }

    pub fn label_vi(&self) -> &'static str {
        match self {
            Verdict::Pass => "Đạt",
            Verdict::Warn => "Cần lưu ý",
            Verdict::Fail => "Không đạt",
        }
    }
}

/// Thresholds, from `[rehearsal]` in the config (DESIGN.md's rubric by default).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rubric {
    pub upload_pass_mbps: f64,
    pub upload_fail_mbps: f64,
    pub download_pass_mbps: f64,
    pub download_fail_mbps: f64,
    pub rtt_pass_ms: f64,
    pub rtt_fail_ms: f64,
    pub jitter_pass_ms: f64,
    pub jitter_fail_ms: f64,
    pub loaded_rise_pass_ms: f64,
    pub loaded_rise_fail_ms: f64,
    pub stalled_pass_pct: f64,
    pub stalled_fail_pct: f64,
    pub offset_uncertainty_pass_ms: f64,
    pub offset_uncertainty_fail_ms: f64,
    /// Camera frames per second; a picture darker than `camera_black_luma` (mean luma,
    /// 0–255) is black, one changing less than `camera_frozen_change` (mean difference
    /// between frames, 0–255) is frozen; under `camera_min_height` lines is too coarse.
    pub camera_fps_pass: f64,
    pub camera_fps_fail: f64,
    pub camera_min_height: f64,
    pub camera_black_luma: f64,
    pub camera_frozen_change: f64,
    /// The loudest moment while the technician speaks, in dBFS.
    pub microphone_pass_dbfs: f64,
    pub microphone_fail_dbfs: f64,
    /// The UDP path (round trip over a WebRTC data channel without retransmits).
    pub udp_loss_pass_pct: f64,
    pub udp_loss_fail_pct: f64,
    pub udp_rtt_pass_ms: f64,
    pub udp_rtt_fail_ms: f64,
    pub udp_jitter_pass_ms: f64,
    pub udp_jitter_fail_ms: f64,
}

impl Default for Rubric {
    fn default() -> Self {
        Self {
            upload_pass_mbps: 4.0,
            upload_fail_mbps: 1.5,
            download_pass_mbps: 4.0,
            download_fail_mbps: 2.0,
            rtt_pass_ms: 100.0,
            rtt_fail_ms: 300.0,
            jitter_pass_ms: 20.0,
            jitter_fail_ms: 50.0,
            loaded_rise_pass_ms: 50.0,
            loaded_rise_fail_ms: 150.0,
            stalled_pass_pct: 1.0,
            stalled_fail_pct: 5.0,
            offset_uncertainty_pass_ms: 50.0,
            offset_uncertainty_fail_ms: 250.0,
            camera_fps_pass: 15.0,
            camera_fps_fail: 5.0,
            camera_min_height: 360.0,
            camera_black_luma: 16.0,
            camera_frozen_change: 0.5,
            microphone_pass_dbfs: -35.0,
            microphone_fail_dbfs: -50.0,
            udp_loss_pass_pct: 1.0,
            udp_loss_fail_pct: 5.0,
            udp_rtt_pass_ms: 150.0,
            udp_rtt_fail_ms: 400.0,
            udp_jitter_pass_ms: 30.0,
            udp_jitter_fail_ms: 60.0,
        }
    }
}

/// Why the browser gave no device (its `DOMException` name, as the page sends it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceError {
    /// Another program holds it (Zoom, Teams, the codec's own software…).
    NotReadableError,
    /// The technician or the browser's settings refused it.
    NotAllowedError,
    /// No such device.
    NotFoundError,
    /// Anything else the browser said.
    #[serde(other)]
    Other,
}

/// The camera as the bridge page measured it over a few seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraFigures {
    #[serde(default)]
    pub error: Option<DeviceError>,
    #[serde(default)]
    pub width: Option<f64>,
    #[serde(default)]
    pub height: Option<f64>,
    #[serde(default)]
    pub fps: Option<f64>,
    /// Mean luma of the frames, 0–255.
    #[serde(default)]
    pub brightness: Option<f64>,
    /// Mean absolute difference between successive frames, 0–255.
    #[serde(default)]
    pub change: Option<f64>,
}

/// The microphone: the loudest moment while the technician spoke.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrophoneFigures {
    #[serde(default)]
    pub error: Option<DeviceError>,
    #[serde(default)]
    pub peak_dbfs: Option<f64>,
}

/// Camera, microphone and speakers, measured in the bridge page before the line check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceFigures {
    #[serde(default)]
    pub camera: Option<CameraFigures>,
    #[serde(default)]
    pub microphone: Option<MicrophoneFigures>,
    /// The technician heard the test tone (`None`: not asked).
    #[serde(default)]
    pub speakers_heard: Option<bool>,
}

impl DeviceFigures {
    /// Every number finite and within what a browser can report (a frame must not
    /// carry figures that would be stored as nonsense).
    pub fn is_plausible(&self) -> bool {
        let within = |v: Option<f64>, lo: f64, hi: f64| {
            v.is_none_or(|v| v.is_finite() && (lo..=hi).contains(&v))
        };
        let camera = self.camera.as_ref().is_none_or(|c| {
            within(c.width, 0.0, 16384.0)
                && within(c.height, 0.0, 16384.0)
                && within(c.fps, 0.0, 1000.0)
                && within(c.brightness, 0.0, 255.0)
                && within(c.change, 0.0, 255.0)
        });
        let microphone = self
            .microphone
            .as_ref()
            .is_none_or(|m| within(m.peak_dbfs, -200.0, 0.0));
        camera && microphone
    }
}

/// The advice for a device the browser did not give.
fn device_error_advice(error: DeviceError, device: &str) -> &'static str {
    match (error, device) {
        (DeviceError::NotReadableError, "camera") => {
            "Camera đang bị chương trình khác dùng (phần mềm họp trực tuyến, phần mềm của thiết bị cầu): đóng chương trình đó rồi chạy lại, hoặc kiểm tra trước khi mở nó."
        }
        (DeviceError::NotReadableError, _) => {
            "Micro đang bị chương trình khác dùng (phần mềm họp trực tuyến): đóng chương trình đó rồi chạy lại, hoặc kiểm tra trước khi mở nó."
        }
        (DeviceError::NotAllowedError, _) => {
            "Trình duyệt chưa được phép dùng thiết bị: bấm biểu tượng ổ khóa cạnh địa chỉ trang, cho phép camera và micro, rồi chạy lại."
        }
        (DeviceError::NotFoundError, "camera") => {
            "Không thấy camera: cắm camera (hoặc cáp của thiết bị cầu) vào máy rồi chạy lại."
        }
        (DeviceError::NotFoundError, _) => "Không thấy micro: cắm micro vào máy rồi chạy lại.",
        (DeviceError::Other, _) => {
            "Trình duyệt không mở được thiết bị: khởi động lại trình duyệt rồi chạy lại."
        }
    }
}

/// The UDP path's rows: blocked is one plain row; through, its loss, RTT and jitter.
fn udp_rows(u: &crate::core::udp_path::UdpFigures, r: &Rubric) -> Vec<Row> {
    if !u.offered || !u.connected {
        return vec![Row {
            metric: "udp",
            label: "Đường UDP (hình và tiếng)",
            figure: None,
            unit: "",
            threshold: format!("cổng UDP {} tới máy chủ phải mở", u.port),
            verdict: Verdict::Fail,
            advice: Some(if u.offered {
                "Mạng chặn UDP: báo quản trị mạng mở cổng UDP ghi ở cột ngưỡng tới máy chủ diemcau (hình và tiếng của hội nghị cũng đi bằng UDP), rồi chạy lại."
            } else {
                "Trang không mở được kênh UDP: dùng Chrome, Edge hoặc Firefox bản mới, rồi chạy lại."
            }),
        }];
    }
    let rows: [(
        &'static str,
        &'static str,
        Option<f64>,
        &'static str,
        f64,
        f64,
        &'static str,
    ); 3] = [
        (
            "udp_loss",
            "Mất gói UDP",
            u.loss_pct,
            "%",
            r.udp_loss_pass_pct,
            r.udp_loss_fail_pct,
            "Mất gói trên đường UDP (hình sẽ vỡ, tiếng sẽ rè): dùng cáp mạng, tắt các máy khác dùng mạng, hoặc báo nhà mạng.",
        ),
        (
            "udp_rtt",
            "Độ trễ UDP (trung vị)",
            u.rtt_median_ms,
            "ms",
            r.udp_rtt_pass_ms,
            r.udp_rtt_fail_ms,
            "Độ trễ UDP cao: dùng cáp mạng, hoặc chuyển sang đường truyền dự phòng.",
        ),
        (
            "udp_jitter",
            "Độ dao động UDP",
            u.jitter_ms,
            "ms",
            r.udp_jitter_pass_ms,
            r.udp_jitter_fail_ms,
            "Đường UDP không ổn định: dùng cáp mạng thay cho Wi-Fi, tránh mạng di động.",
        ),
    ];
    rows.into_iter()
        .map(|(metric, label, figure, unit, pass, fail, advice)| {
            let verdict = figure.map_or(Verdict::Fail, |v| grade(v, pass, fail, Better::Lower));
            Row {
                metric,
                label,
                figure,
                unit,
                threshold: format!("đạt ≤ {pass} {unit}, không đạt > {fail} {unit}"),
                verdict,
                advice: (verdict != Verdict::Pass).then_some(advice),
            }
        })
        .collect()
}

/// The device rows, when the page measured the devices.
fn device_rows(d: &DeviceFigures, r: &Rubric) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(c) = &d.camera {
        let threshold = format!(
            "đạt ≥ {} khung/s, không đạt < {} khung/s; ít nhất {} dòng; hình không đen, không đứng",
            r.camera_fps_pass, r.camera_fps_fail, r.camera_min_height
        );
        let (verdict, advice) = match (c.error, c.fps) {
            (Some(error), _) => (Verdict::Fail, Some(device_error_advice(error, "camera"))),
            (None, None) => (
                Verdict::Fail,
                Some("Không đo được camera: giữ trang mở và chạy lại."),
            ),
            (None, Some(fps)) => {
                if c.brightness.is_some_and(|b| b < r.camera_black_luma) {
                    (
                        Verdict::Fail,
                        Some("Hình đen: mở nắp che ống kính, bật đèn phòng, kiểm tra cáp camera."),
                    )
                } else if c.change.is_some_and(|x| x < r.camera_frozen_change) {
                    (
                        Verdict::Fail,
                        Some(
                            "Hình đứng yên: rút camera ra cắm lại, hoặc khởi động lại thiết bị cầu.",
                        ),
                    )
                } else if c.height.is_some_and(|h| h < r.camera_min_height)
                    || fps < r.camera_fps_fail
                {
                    (
                        Verdict::Fail,
                        Some(
                            "Hình quá thô hoặc quá giật: dùng camera khác, hoặc cắm vào cổng USB 3.",
                        ),
                    )
                } else if fps < r.camera_fps_pass {
                    (
                        Verdict::Warn,
                        Some(
                            "Hình hơi giật: đóng các chương trình khác, bật đèn phòng cho sáng hơn.",
                        ),
                    )
                } else {
                    (Verdict::Pass, None)
                }
            }
        };
        rows.push(Row {
            metric: "camera",
            label: "Camera",
            figure: c.fps,
            unit: "khung/s",
            threshold,
            verdict,
            advice,
        });
    }
    if let Some(m) = &d.microphone {
        let (verdict, advice) = match (m.error, m.peak_dbfs) {
            (Some(error), _) => (
                Verdict::Fail,
                Some(device_error_advice(error, "microphone")),
            ),
            (None, None) => (
                Verdict::Fail,
                Some("Không đo được micro: giữ trang mở và chạy lại."),
            ),
            (None, Some(peak)) => match grade(
                peak,
                r.microphone_pass_dbfs,
                r.microphone_fail_dbfs,
                Better::Higher,
            ) {
                Verdict::Pass => (Verdict::Pass, None),
                Verdict::Warn => (
                    Verdict::Warn,
                    Some("Micro nhỏ: nói gần micro hơn, hoặc tăng mức thu trong cài đặt âm thanh."),
                ),
                Verdict::Fail => (
                    Verdict::Fail,
                    Some(
                        "Micro không thu được tiếng: kiểm tra nút tắt tiếng (mute) trên micro và trong máy, rồi nói to và chạy lại.",
                    ),
                ),
            },
        };
        rows.push(Row {
            metric: "microphone",
            label: "Micro (khi nói)",
            figure: m.peak_dbfs,
            unit: "dBFS",
            threshold: format!(
                "đạt ≥ {} dBFS, không đạt < {} dBFS",
                r.microphone_pass_dbfs, r.microphone_fail_dbfs
            ),
            verdict,
            advice,
        });
    }
    if let Some(heard) = d.speakers_heard {
        rows.push(Row {
            metric: "speakers",
            label: "Loa",
            figure: Some(heard as u8 as f64),
            unit: "nghe thấy",
            threshold: "đạt khi người kiểm tra nghe thấy tiếng chuông thử".into(),
            verdict: if heard { Verdict::Pass } else { Verdict::Fail },
            advice: (!heard).then_some("Không nghe thấy: bật loa, tăng âm lượng, chọn đúng loa trong cài đặt âm thanh của máy."),
        });
    }
    rows
}

/// What the check measured. `None`: not measured (counts as a failed row).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub upload_mbps: Option<f64>,
    pub download_mbps: Option<f64>,
    pub rtt_median_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loaded_rise_ms: Option<f64>,
    pub stalled_pct: Option<f64>,
    /// Times the connection dropped during the check.
    pub disconnects: u32,
    /// Whether the one drop (if any) was back within 10 s.
    pub back_within_10s: bool,
    pub offset_uncertainty_ms: Option<f64>,
    /// Camera, microphone and speakers (checks from before they were measured have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DeviceFigures>,
    /// The UDP path (checks from before it was measured, and services without a UDP
    /// port, have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<crate::core::udp_path::UdpFigures>,
}

/// One row of the verdict table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub label: &'static str,
    pub figure: Option<f64>,
    pub unit: &'static str,
    /// The pass and fail limits, as people read them.
    pub threshold: String,
    pub verdict: Verdict,
    /// One sentence of advice for a row that is not a pass.
    pub advice: Option<&'static str>,
}

/// Higher is better (rates) or lower is better (delays).
enum Better {
    Higher,
    Lower,
}

fn grade(value: f64, pass: f64, fail: f64, better: Better) -> Verdict {
    match better {
        Better::Higher if value >= pass => Verdict::Pass,
        Better::Higher if value < fail => Verdict::Fail,
        Better::Lower if value <= pass => Verdict::Pass,
        Better::Lower if value > fail => Verdict::Fail,
        _ => Verdict::Warn,
    }
}

/// Judges the figures: every row, and the worst of them.
pub fn judge(f: &Figures, r: &Rubric) -> (Verdict, Vec<Row>) {
    #[allow(clippy::type_complexity)]
    let measured: [(&str, &str, Option<f64>, &str, f64, f64, Better, &str); 7] = [
        (
            "upload",
            "Tải lên",
            f.upload_mbps,
            "Mbps",
            r.upload_pass_mbps,
            r.upload_fail_mbps,
            Better::Higher,
            "Tạm dừng các việc tải lên khác (sao lưu, đồng bộ) và dùng cáp mạng thay cho Wi-Fi.",
        ),
        (
            "download",
            "Tải xuống",
            f.download_mbps,
            "Mbps",
            r.download_pass_mbps,
            r.download_fail_mbps,
            Better::Higher,
            "Dùng cáp mạng thay cho Wi-Fi và tắt các máy khác đang xem video trên cùng mạng.",
        ),
        (
            "rtt",
            "Độ trễ (trung vị)",
            f.rtt_median_ms,
            "ms",
            r.rtt_pass_ms,
            r.rtt_fail_ms,
            Better::Lower,
            "Độ trễ cao: dùng cáp mạng, hoặc chuyển sang đường truyền dự phòng.",
        ),
        (
            "jitter",
            "Độ dao động (jitter)",
            f.jitter_ms,
            "ms",
            r.jitter_pass_ms,
            r.jitter_fail_ms,
            Better::Lower,
            "Đường truyền không ổn định: dùng cáp mạng thay cho Wi-Fi, tránh mạng di động.",
        ),
        (
            "loaded_rise",
            "Độ trễ tăng khi tải",
            f.loaded_rise_ms,
            "ms",
            r.loaded_rise_pass_ms,
            r.loaded_rise_fail_ms,
            Better::Lower,
            "Mạng nghẽn khi có tải: tạm dừng tải lên khác trong giờ hội nghị.",
        ),
        (
            "stalled",
            "Gói thăm dò trễ",
            f.stalled_pct,
            "%",
            r.stalled_pass_pct,
            r.stalled_fail_pct,
            Better::Lower,
            "Mất gói: kiểm tra dây mạng, bộ định tuyến, hoặc báo nhà mạng.",
        ),
        (
            "clock",
            "Sai số đồng hồ",
            f.offset_uncertainty_ms,
            "ms",
            r.offset_uncertainty_pass_ms,
            r.offset_uncertainty_fail_ms,
            Better::Lower,
            "Đồng hồ không đồng bộ được chính xác: kiểm tra lại đường truyền rồi chạy lại.",
        ),
    ];
    let mut rows: Vec<Row> = measured
        .into_iter()
        .map(
            |(metric, label, figure, unit, pass, fail, better, advice)| {
                let threshold = match better {
                    Better::Higher => format!("đạt ≥ {pass} {unit}, không đạt < {fail} {unit}"),
                    Better::Lower => format!("đạt ≤ {pass} {unit}, không đạt > {fail} {unit}"),
                };
                let verdict = figure.map_or(Verdict::Fail, |v| grade(v, pass, fail, better));
                Row {
                    metric,
                    label,
                    figure,
                    unit,
                    threshold,
                    verdict,
                    advice: (verdict != Verdict::Pass).then_some(if figure.is_none() {
                        "Không đo được: giữ trang điểm cầu mở và chạy lại kiểm tra."
                    } else {
                        advice
                    }),
                }
            },
        )
        .collect();
    let disconnects = match (f.disconnects, f.back_within_10s) {
        (0, _) => Verdict::Pass,
        (1, true) => Verdict::Warn,
        _ => Verdict::Fail,
    };
    rows.push(Row {
        metric: "disconnects",
        label: "Mất kết nối khi kiểm tra",
        figure: Some(f.disconnects as f64),
        unit: "lần",
        threshold: "đạt 0, cần lưu ý 1 lần có lại trong 10 s".into(),
        verdict: disconnects,
        advice: (disconnects != Verdict::Pass).then_some(
            "Kết nối bị ngắt: kiểm tra nguồn điện bộ định tuyến và dây mạng, rồi chạy lại.",
        ),
    });
    if let Some(devices) = &f.devices {
        rows.extend(device_rows(devices, r));
    }
    if let Some(udp) = &f.udp {
        rows.extend(udp_rows(udp, r));
    }
    let worst = rows
        .iter()
        .map(|row| row.verdict)
        .max()
        .unwrap_or(Verdict::Pass);
    (worst, rows)
}

/// Megabits per second of each window from the bytes received in it.
pub fn window_rates_mbps(bytes_per_window: &[u64], window_ms: u64) -> Vec<f64> {
    bytes_per_window
        .iter()
        .map(|bytes| *bytes as f64 * 8.0 / 1_000_000.0 / (window_ms as f64 / 1000.0))
        .collect()
}

/// The 90th percentile of the window rates after the warm-up (nearest rank).
pub fn p90_after_warmup(rates: &[f64], warmup_windows: usize) -> Option<f64> {
    let mut kept: Vec<f64> = rates.iter().skip(warmup_windows).copied().collect();
    if kept.is_empty() {
        return None;
    }
    kept.sort_by(f64::total_cmp);
    let rank = ((0.9 * kept.len() as f64).ceil() as usize).clamp(1, kept.len());
    Some(kept[rank - 1])
}

/// RTT figures of a check: idle median and jitter, loaded rise, stalled share.
pub fn latency_figures(
    idle_rtts: &[f64],
    loaded_rtts: &[f64],
    probes: u64,
    stalled: u64,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let idle = median(idle_rtts.iter().copied());
    let mut jitter: Option<f64> = None;
    for pair in idle_rtts.windows(2) {
        let j = jitter.unwrap_or(0.0);
        jitter = Some(j + ((pair[1] - pair[0]).abs() - j) / 16.0);
    }
    let loaded = median(loaded_rtts.iter().copied());
    let rise = idle.zip(loaded).map(|(i, l)| (l - i).max(0.0));
    let stalled_pct = (probes > 0).then(|| stalled as f64 * 100.0 / probes as f64);
    (idle, jitter.or(idle.map(|_| 0.0)), rise, stalled_pct)
}

/// A finished rehearsal check as stored and shown.
#[derive(Clone, Debug, Serialize)]
pub struct RehearsalResult {
    pub id: Uuid,
    pub site: SiteId,
    pub started_ms: EpochMs,
    pub finished_ms: EpochMs,
    pub technician: String,
    pub checklist: BTreeMap<String, bool>,
    pub verdict: Verdict,
    pub rows: Vec<Row>,
    pub figures: Figures,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Figures {
        Figures {
            upload_mbps: Some(10.0),
            download_mbps: Some(20.0),
            rtt_median_ms: Some(20.0),
            jitter_ms: Some(2.0),
            loaded_rise_ms: Some(10.0),
            stalled_pct: Some(0.0),
            disconnects: 0,
            back_within_10s: false,
            offset_uncertainty_ms: Some(5.0),
            devices: None,
            udp: None,
        }
    }

    #[test]
    fn a_blocked_udp_path_is_one_plain_row_and_a_lossy_one_fails_its_loss() {
        use crate::core::udp_path::UdpFigures;
        let blocked = Figures {
            udp: Some(UdpFigures {
                offered: true,
                connected: false,
                port: 8080,
                ..Default::default()
            }),
            ..good()
        };
        let (verdict, rows) = judge(&blocked, &Rubric::default());
        assert_eq!(verdict, Verdict::Fail);
        let row = rows.iter().find(|r| r.metric == "udp").unwrap();
        assert!(
            row.advice
                .unwrap()
                .starts_with("Mạng chặn UDP: báo quản trị mạng mở cổng UDP")
        );
        assert_eq!(row.threshold, "cổng UDP 8080 tới máy chủ phải mở");
        let lossy = Figures {
            udp: Some(UdpFigures {
                offered: true,
                connected: true,
                port: 8080,
                sent: 100,
                echoed: 90,
                loss_pct: Some(10.0),
                rtt_median_ms: Some(20.0),
                jitter_ms: Some(2.0),
            }),
            ..good()
        };
        let rows = judge(&lossy, &Rubric::default()).1;
        let verdict_of = |m: &str| rows.iter().find(|r| r.metric == m).unwrap().verdict;
        assert_eq!(
            (
                verdict_of("udp_loss"),
                verdict_of("udp_rtt"),
                verdict_of("udp_jitter")
            ),
            (Verdict::Fail, Verdict::Pass, Verdict::Pass)
        );
        assert!(
            rows.iter().all(|r| r.metric != "udp"),
            "through: no blocked row"
        );
    }

    fn devices(camera: CameraFigures, peak_dbfs: Option<f64>, heard: bool) -> Figures {
        Figures {
            devices: Some(DeviceFigures {
                camera: Some(camera),
                microphone: Some(MicrophoneFigures {
                    error: None,
                    peak_dbfs,
                }),
                speakers_heard: Some(heard),
            }),
            ..good()
        }
    }

    fn fine_camera() -> CameraFigures {
        CameraFigures {
            error: None,
            width: Some(1280.0),
            height: Some(720.0),
            fps: Some(30.0),
            brightness: Some(110.0),
            change: Some(6.0),
        }
    }

    #[test]
    fn the_devices_are_rows_with_their_figure_threshold_and_plain_advice() {
        let all_good = devices(fine_camera(), Some(-20.0), true);
        let (verdict, rows) = judge(&all_good, &Rubric::default());
        assert_eq!(verdict, Verdict::Pass);
        let camera = rows.iter().find(|r| r.metric == "camera").unwrap();
        assert_eq!((camera.figure, camera.unit), (Some(30.0), "khung/s"));
        assert!(
            camera.threshold.contains("15 khung/s"),
            "{}",
            camera.threshold
        );
        assert!(
            rows.iter()
                .any(|r| r.metric == "microphone" && r.figure == Some(-20.0))
        );
        assert!(
            rows.iter()
                .any(|r| r.metric == "speakers" && r.verdict == Verdict::Pass)
        );
        // Checks from before the devices were measured have no such rows.
        assert!(
            judge(&good(), &Rubric::default())
                .1
                .iter()
                .all(|r| r.metric != "camera")
        );

        let held = CameraFigures {
            error: Some(DeviceError::NotReadableError),
            ..Default::default()
        };
        let advice = |f: &Figures, metric: &str| {
            let rows = judge(f, &Rubric::default()).1;
            let row = rows.into_iter().find(|r| r.metric == metric).unwrap();
            (row.verdict, row.advice.unwrap_or(""))
        };
        let (v, why) = advice(&devices(held, Some(-20.0), true), "camera");
        assert_eq!(v, Verdict::Fail);
        assert!(
            why.contains("chương trình khác") && why.contains("đóng"),
            "{why}"
        );
        let black = CameraFigures {
            brightness: Some(3.0),
            ..fine_camera()
        };
        assert!(
            advice(&devices(black, Some(-20.0), true), "camera")
                .1
                .starts_with("Hình đen")
        );
        let frozen = CameraFigures {
            change: Some(0.0),
            ..fine_camera()
        };
        assert!(
            advice(&devices(frozen, Some(-20.0), true), "camera")
                .1
                .starts_with("Hình đứng")
        );
        let jerky = CameraFigures {
            fps: Some(10.0),
            ..fine_camera()
        };
        assert_eq!(
            advice(&devices(jerky, Some(-20.0), true), "camera").0,
            Verdict::Warn
        );
        let (v, why) = advice(&devices(fine_camera(), Some(-70.0), true), "microphone");
        assert_eq!(v, Verdict::Fail);
        assert!(
            why.contains("mute"),
            "a silent micro says to check the mute: {why}"
        );
        assert_eq!(
            advice(&devices(fine_camera(), Some(-40.0), true), "microphone").0,
            Verdict::Warn
        );
        let (v, why) = advice(&devices(fine_camera(), Some(-20.0), false), "speakers");
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("âm lượng"), "{why}");
    }

    #[test]
    fn device_figures_no_browser_reports_are_refused() {
        let ok = DeviceFigures {
            camera: Some(fine_camera()),
            ..Default::default()
        };
        assert!(ok.is_plausible());
        let huge = DeviceFigures {
            camera: Some(CameraFigures {
                fps: Some(1e9),
                ..fine_camera()
            }),
            ..Default::default()
        };
        assert!(!huge.is_plausible());
        let loud = DeviceFigures {
            microphone: Some(MicrophoneFigures {
                error: None,
                peak_dbfs: Some(12.0),
            }),
            ..Default::default()
        };
        assert!(!loud.is_plausible());
        let text = r#"{"camera":{"error":"NotReadableError"},"microphone":{"error":"SomethingNew"},"speakers_heard":true}"#;
        let read: DeviceFigures = serde_json::from_str(text).unwrap();
        assert_eq!(read.microphone.unwrap().error, Some(DeviceError::Other));
    }

    fn row_verdict(f: &Figures, metric: &str) -> Verdict {
        judge(f, &Rubric::default())
            .1
            .into_iter()
            .find(|r| r.metric == metric)
            .unwrap()
            .verdict
    }

    /// A row's metric, how to set its figure, and (figure, expected verdict) points.
    type BoundaryCase = (&'static str, fn(&mut Figures, f64), Vec<(f64, Verdict)>);

    #[test]
    fn each_row_has_its_boundaries() {
        use Verdict::*;
        let cases: Vec<BoundaryCase> = vec![
            (
                "upload",
                |f, v| f.upload_mbps = Some(v),
                vec![(4.0, Pass), (3.99, Warn), (1.5, Warn), (1.49, Fail)],
            ),
            (
                "download",
                |f, v| f.download_mbps = Some(v),
                vec![(4.0, Pass), (3.9, Warn), (2.0, Warn), (1.99, Fail)],
            ),
            (
                "rtt",
                |f, v| f.rtt_median_ms = Some(v),
                vec![(100.0, Pass), (100.1, Warn), (300.0, Warn), (300.1, Fail)],
            ),
            (
                "jitter",
                |f, v| f.jitter_ms = Some(v),
                vec![(20.0, Pass), (20.5, Warn), (50.0, Warn), (50.5, Fail)],
            ),
            (
                "loaded_rise",
                |f, v| f.loaded_rise_ms = Some(v),
                vec![(50.0, Pass), (51.0, Warn), (150.0, Warn), (151.0, Fail)],
            ),
            (
                "stalled",
                |f, v| f.stalled_pct = Some(v),
                vec![(1.0, Pass), (1.1, Warn), (5.0, Warn), (5.1, Fail)],
            ),
            (
                "clock",
                |f, v| f.offset_uncertainty_ms = Some(v),
                vec![(50.0, Pass), (51.0, Warn), (250.0, Warn), (251.0, Fail)],
            ),
        ];
        for (metric, set, points) in cases {
            for (value, expected) in points {
                let mut f = good();
                set(&mut f, value);
                assert_eq!(row_verdict(&f, metric), expected, "{metric} = {value}");
            }
        }
    }

    #[test]
    fn disconnects_pass_at_zero_warn_at_one_quick_return_and_fail_otherwise() {
        let mut f = good();
        assert_eq!(row_verdict(&f, "disconnects"), Verdict::Pass);
        f.disconnects = 1;
        f.back_within_10s = true;
        assert_eq!(row_verdict(&f, "disconnects"), Verdict::Warn);
        f.back_within_10s = false;
        assert_eq!(row_verdict(&f, "disconnects"), Verdict::Fail);
        f.disconnects = 2;
        f.back_within_10s = true;
        assert_eq!(row_verdict(&f, "disconnects"), Verdict::Fail);
    }

    #[test]
    fn the_verdict_is_the_worst_row_and_failing_rows_carry_advice() {
        let (verdict, rows) = judge(&good(), &Rubric::default());
        assert_eq!(verdict, Verdict::Pass);
        assert!(rows.iter().all(|r| r.advice.is_none()));
        let mut f = good();
        f.jitter_ms = Some(30.0);
        assert_eq!(judge(&f, &Rubric::default()).0, Verdict::Warn);
        f.upload_mbps = None;
        let (verdict, rows) = judge(&f, &Rubric::default());
        assert_eq!(
            verdict,
            Verdict::Fail,
            "a figure that was not measured fails its row"
        );
        let upload = rows.iter().find(|r| r.metric == "upload").unwrap();
        assert!(upload.advice.unwrap().contains("chạy lại"));
        let jitter = rows.iter().find(|r| r.metric == "jitter").unwrap();
        assert!(jitter.advice.unwrap().contains("cáp mạng"));
        assert_eq!(rows.len(), 8);
    }

    #[test]
    fn throughput_is_the_p90_of_250ms_windows_after_the_warm_up() {
        // 31 250 bytes in 250 ms = 1 Mbps.
        let rates = window_rates_mbps(&[31_250, 62_500, 125_000], 250);
        assert_eq!(rates, vec![1.0, 2.0, 4.0]);
        let windows: Vec<f64> = (1..=18).map(f64::from).collect();
        // The first 8 windows (2 s) are skipped; of the 10 left (9..=18) the 9th is the p90.
        assert_eq!(p90_after_warmup(&windows, 8), Some(17.0));
        assert_eq!(p90_after_warmup(&windows, 18), None);
    }

    #[test]
    fn latency_figures_compare_loaded_with_idle() {
        let (median, jitter, rise, stalled) =
            latency_figures(&[10.0, 12.0, 10.0], &[40.0, 50.0, 60.0], 200, 3);
        assert_eq!(median, Some(10.0));
        assert_eq!(rise, Some(40.0));
        assert_eq!(stalled, Some(1.5));
        assert!(jitter.unwrap() > 0.0);
        assert_eq!(latency_figures(&[], &[], 0, 0), (None, None, None, None));
    }
}

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
        }
    }
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
        }
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

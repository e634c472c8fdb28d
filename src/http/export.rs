//! Spreadsheet exports: CSV in UTF-8 with a byte-order mark (so Excel shows Vietnamese
//! correctly), times in Asia/Ho_Chi_Minh, durations as m:ss.

use axum::http::header;
use axum::response::IntoResponse;

use crate::core::liveness::SiteState;
use crate::core::sites::Roster;
use crate::core::time::{local_date_time, local_time, minutes_seconds, nearest_second};
use crate::core::timer::SlotReport;
use crate::protocol::SiteView;
use crate::store::StoredRehearsal;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A CSV file for Excel (UTF-8 with a byte-order mark) whose cells a spreadsheet
/// shows as text: none is run as a formula, whoever typed it.
struct Sheet {
    writer: csv::Writer<Vec<u8>>,
}

impl Sheet {
    /// A sheet of one table, its header row written.
    fn table(header: &[&str]) -> Sheet {
        let mut sheet = Sheet::with_rows_of_any_length(false);
        sheet.row(header);
        sheet
    }

    fn with_rows_of_any_length(flexible: bool) -> Sheet {
        let writer = csv::WriterBuilder::new()
            .flexible(flexible)
            .from_writer(BOM.to_vec());
        Sheet { writer }
    }

    fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells = cells.into_iter().map(|c| inert(c.as_ref()).into_owned());
        self.writer.write_record(cells).expect("writing to memory");
    }

    fn finish(self) -> Vec<u8> {
        self.writer.into_inner().expect("flushing to memory")
    }
}

/// A cell a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a
/// tab or a carriage return) gets a leading `'`, as OWASP advises; a plain number such
/// as `-12.5` stays a number.
pub fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// A CSV file for the browser to save under `filename`.
pub fn download(filename: &'static str, csv: Vec<u8>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        csv,
    )
}

/// A rehearsal verdict (`pass`, `warn`, `fail`, none yet) as the pages say it.
fn verdict_vi(verdict: Option<&str>) -> &'static str {
    match verdict {
        Some("pass") => "Đạt",
        Some("warn") => "Cần lưu ý",
        Some("fail") => "Không đạt",
        _ => "Chưa kiểm tra",
    }
}

fn site_state_vi(state: SiteState) -> &'static str {
    match state {
        SiteState::Online => "Trực tuyến",
        SiteState::Degraded => "Chập chờn",
        SiteState::Offline => "Mất kết nối",
        SiteState::NeverSeen => "Chưa kết nối",
    }
}

/// Every site as the wall shows it now, with its contact and latest rehearsal verdict:
/// the list to call from.
pub fn sites_csv(
    roster: &Roster,
    views: &[SiteView],
    latest_verdict: impl Fn(&str) -> Option<String>,
) -> Vec<u8> {
    let mut sheet = Sheet::table(&[
        "Mã",
        "Điểm cầu",
        "Huyện cũ",
        "Trạng thái",
        "Từ lúc",
        "Nghe lần cuối",
        "RTT trung vị (ms)",
        "Jitter (ms)",
        "Số lần kết nối lại",
        "Người liên hệ",
        "Điện thoại",
        "Kiểm tra kết nối",
    ]);
    for (site, view) in roster.sites().iter().zip(views) {
        let figure = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_default();
        sheet.row([
            view.id.clone(),
            view.name.clone(),
            view.former_district.clone(),
            site_state_vi(view.state).to_string(),
            view.since_ms.map(local_date_time).unwrap_or_default(),
            view.last_seen_ms.map(local_date_time).unwrap_or_default(),
            figure(view.link.rtt_ms),
            figure(view.link.jitter_ms),
            view.link.reconnects.to_string(),
            site.contact_name.clone().unwrap_or_default(),
            site.contact_phone.clone().unwrap_or_default(),
            verdict_vi(latest_verdict(&view.id).as_deref()).to_string(),
        ]);
    }
    sheet.finish()
}

/// The agenda with planned and actual times, for the minutes: one row per slot, and
/// before it one per earlier attempt that was reset (nothing a reset did is lost).
/// Durations and times are rounded to the nearest second.
pub fn agenda_csv(reports: &[SlotReport]) -> Vec<u8> {
    let mut sheet = Sheet::table(&[
        "STT",
        "Đơn vị",
        "Chủ đề",
        "Địa điểm",
        "Trạng thái",
        "Dự kiến",
        "Điều chỉnh",
        "Thực tế",
        "Vượt giờ",
        "Số lần tạm dừng",
        "Gián đoạn đường truyền",
        "Bắt đầu",
        "Kết thúc",
        "Lượt",
    ]);
    let duration = |ms: i64| minutes_seconds(nearest_second(ms));
    let time = |ms: i64| local_time(nearest_second(ms));
    for r in reports {
        let venue = match r.venue {
            crate::core::agenda::Venue::Hall => "Hội trường".to_string(),
            crate::core::agenda::Venue::Site(id) => format!("Điểm cầu {id}"),
        };
        for a in &r.earlier_attempts {
            sheet.row([
                r.order.to_string(),
                r.unit.clone(),
                r.topic.clone(),
                venue.clone(),
                format!("đã đặt lại lúc {}", time(a.reset_ms)),
                duration(r.planned_ms),
                duration(a.added_ms),
                duration(a.actual_ms),
                duration(a.overtime_ms),
                a.pauses.to_string(),
                a.interruptions.len().to_string(),
                a.started_ms.map(time).unwrap_or_default(),
                a.ended_ms.map(time).unwrap_or_default(),
                a.number.to_string(),
            ]);
        }
        sheet.row([
            r.order.to_string(),
            r.unit.clone(),
            r.topic.clone(),
            venue,
            r.state.words_vi().to_string(),
            duration(r.planned_ms),
            duration(r.added_ms),
            r.actual_ms.map(duration).unwrap_or_default(),
            r.overtime_ms.map(duration).unwrap_or_default(),
            r.pauses.to_string(),
            r.interruptions.len().to_string(),
            r.started_ms.map(time).unwrap_or_default(),
            r.ended_ms.map(time).unwrap_or_default(),
            r.attempt.to_string(),
        ]);
    }
    sheet.finish()
}

/// Every rehearsal attempt, newest first, one row each.
pub fn rehearsals_csv(roster: &Roster, attempts: &[StoredRehearsal]) -> Vec<u8> {
    let mut sheet = Sheet::table(&[
        "Mã",
        "Điểm cầu",
        "Huyện cũ",
        "Thời gian",
        "Kỹ thuật viên",
        "Kết quả",
        "Tải lên (Mbps)",
        "Tải xuống (Mbps)",
        "Độ trễ (ms)",
        "Jitter (ms)",
        "Trễ tăng khi tải (ms)",
        "Gói trễ (%)",
        "Mất kết nối",
        "Sai số đồng hồ (ms)",
    ]);
    for a in attempts {
        let (name, district) = roster
            .index_of(a.site)
            .map(|i| {
                (
                    roster.site(i).name.clone(),
                    roster.site(i).former_district.clone(),
                )
            })
            .unwrap_or_default();
        let figure = |value: Option<f64>| value.map(|v| format!("{v:.1}")).unwrap_or_default();
        let f = &a.figures;
        let verdict = verdict_vi(Some(a.verdict.as_str()));
        sheet.row([
            a.site.to_string(),
            name,
            district,
            local_date_time(a.started_ms),
            a.technician.clone(),
            verdict.to_string(),
            figure(f.upload_mbps),
            figure(f.download_mbps),
            figure(f.rtt_median_ms),
            figure(f.jitter_ms),
            figure(f.loaded_rise_ms),
            figure(f.stalled_pct),
            f.disconnects.to_string(),
            figure(f.offset_uncertainty_ms),
        ]);
    }
    sheet.finish()
}

/// The evidence report: the sites, a blank line, then the presentations (as the agenda).
pub fn report_csv(report: &serde_json::Value, presentations: &[SlotReport]) -> Vec<u8> {
    let mut sheet = Sheet::with_rows_of_any_length(true);
    let window = &report["window"];
    sheet.row([
        "Báo cáo minh chứng điểm cầu".to_string(),
        format!(
            "từ {} đến {}",
            window["from_ms"]
                .as_i64()
                .map(local_date_time)
                .unwrap_or_default(),
            window["to_ms"]
                .as_i64()
                .map(local_date_time)
                .unwrap_or_default()
        ),
    ]);
    for down in report["service_downtime"].as_array().into_iter().flatten() {
        let at = |key: &str| down[key].as_i64().map(local_time).unwrap_or_default();
        sheet.row([
            format!("Máy chủ ngừng hoạt động: {}–{}", at("from_ms"), at("to_ms")),
            "không tính vào thời gian trực tuyến hay mất kết nối của điểm cầu nào".to_string(),
        ]);
    }
    sheet.row([
        "Mã",
        "Điểm cầu",
        "Huyện cũ",
        "Thời gian trực tuyến (%)",
        "Số lần mất kết nối",
        "Tổng thời gian mất",
        "Lần mất lâu nhất",
        "RTT trung vị (ms)",
        "Kiểm tra kết nối",
        "Điểm danh",
        "Vắng mặt có lý do",
    ]);
    for site in report["sites"].as_array().into_iter().flatten() {
        let ms = |key: &str| site[key].as_i64().map(minutes_seconds).unwrap_or_default();
        let verdict = verdict_vi(site["rehearsal"].as_str());
        sheet.row([
            site["id"].as_str().unwrap_or("").to_string(),
            site["name"].as_str().unwrap_or("").to_string(),
            site["former_district"].as_str().unwrap_or("").to_string(),
            format!("{:.1}", site["uptime"].as_f64().unwrap_or(0.0) * 100.0),
            site["outages"].to_string(),
            ms("outage_total_ms"),
            ms("outage_longest_ms"),
            site["rtt_ms"]
                .as_f64()
                .map(|v| format!("{v:.0}"))
                .unwrap_or_default(),
            match site["rehearsal_not_passed"]
                .as_array()
                .filter(|rows| !rows.is_empty())
            {
                Some(rows) => format!(
                    "{verdict}: {}",
                    rows.iter()
                        .filter_map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => verdict.to_string(),
            },
            site["roll_call_confirmed_ms"]
                .as_i64()
                .map(local_time)
                .unwrap_or_else(|| "chưa xác nhận".into()),
            match &site["excused"] {
                serde_json::Value::Null => String::new(),
                e => format!(
                    "{} ({}, {})",
                    e["reason"].as_str().unwrap_or(""),
                    e["name"].as_str().unwrap_or(""),
                    e["at_ms"].as_i64().map(local_date_time).unwrap_or_default()
                ),
            },
        ]);
    }
    sheet.row([""]);
    incidents_csv(&mut sheet, report);
    sheet.row([""]);
    let mut out = sheet.finish();
    // The presentations table is the agenda's, without a second byte-order mark.
    out.extend_from_slice(&agenda_csv(presentations)[BOM.len()..]);
    out
}

/// The incidents, with their totals: who took each and after how long, the notes,
/// when it was resolved and how long it lasted.
fn incidents_csv(sheet: &mut Sheet, report: &serde_json::Value) {
    let totals = &report["totals"]["incidents"];
    let median = |key: &str| {
        totals[key]
            .as_i64()
            .map(minutes_seconds)
            .unwrap_or_else(|| "—".into())
    };
    sheet.row([
        format!("Sự cố: {}", totals["incidents"]),
        format!("chưa ai nhận: {}", totals["never_taken"]),
        format!(
            "thời gian nhận xử lý (trung vị): {}",
            median("median_time_to_take_ms")
        ),
        format!(
            "thời gian khắc phục (trung vị): {}",
            median("median_duration_ms")
        ),
    ]);
    sheet.row([
        "Mã",
        "Điểm cầu",
        "Sự cố",
        "Bắt đầu",
        "Người nhận xử lý",
        "Nhận sau",
        "Ghi chú",
        "Kết thúc",
        "Kéo dài",
        "Cách kết thúc",
    ]);
    for i in report["incidents"].as_array().into_iter().flatten() {
        let at = |key: &str| i[key].as_i64().map(local_time).unwrap_or_default();
        let ms = |key: &str| i[key].as_i64().map(minutes_seconds).unwrap_or_default();
        let notes: Vec<String> = i["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                format!(
                    "{} {}: {}",
                    n["at_ms"].as_i64().map(local_time).unwrap_or_default(),
                    n["name"].as_str().unwrap_or(""),
                    n["text"].as_str().unwrap_or("")
                )
            })
            .collect();
        let cause = match i["cause"].as_str() {
            Some("offline") => "mất kết nối",
            Some("degraded") => "kết nối kém kéo dài",
            Some("equipment") => "thiết bị cầu không phản hồi",
            _ => "",
        };
        let closing = match i["closing"].as_str() {
            Some("back") => "điểm cầu trở lại",
            Some("excused") => "vắng mặt có lý do",
            Some("window_end") => "hết giờ hội nghị",
            _ => "đang mở",
        };
        sheet.row([
            i["site"].as_str().unwrap_or("").to_string(),
            i["name"].as_str().unwrap_or("").to_string(),
            cause.to_string(),
            at("opened_ms"),
            i["taken_by"].as_str().unwrap_or("chưa ai nhận").to_string(),
            ms("time_to_take_ms"),
            notes.join(" | "),
            at("resolved_ms"),
            ms("duration_ms"),
            closing.to_string(),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_vietnam_and_durations_as_minutes() {
        // 2026-11-27 01:30:05 UTC is 08:30:05 in Hà Nội.
        assert_eq!(local_time(1_795_743_005_000), "08:30:05");
        assert_eq!(local_date_time(1_795_743_005_000), "27/11/2026 08:30:05");
        assert_eq!(minutes_seconds(420_000), "7:00");
        assert_eq!(minutes_seconds(45_999), "0:45");
        assert_eq!(minutes_seconds(-61_000), "-1:01");
        // The minutes round to the nearest second, they do not cut it off.
        assert_eq!(minutes_seconds(nearest_second(420_600)), "7:01");
        assert_eq!(minutes_seconds(nearest_second(420_499)), "7:00");
        assert_eq!(local_time(nearest_second(1_795_743_005_700)), "08:30:06");
        assert_eq!(nearest_second(-1_400), -1_000);
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_made_text_and_vietnamese_is_untouched() {
        for (cell, shown) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-12.5", "-12.5"),
            ("Phường Phan Đình Phùng", "Phường Phan Đình Phùng"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(inert(cell), shown, "{cell:?}");
        }
    }
}

//! What the Zalo relay says: Alertmanager's webhook (one group of alerts, e.g. every
//! offline site of one former district) turned into one Vietnamese message within the
//! Zalo Bot API's 2,000 characters. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::core::time::local_time;

/// Zalo's `sendMessage` takes 1 to 2,000 characters.
pub const ZALO_MAX_CHARS: usize = 2000;

/// Alertmanager's webhook body (version 4), the parts the message needs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertGroup {
    pub status: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub alerts: Vec<GroupAlert>,
    #[serde(default)]
    pub truncated_alerts: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
}

impl GroupAlert {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `Xã Kha Sơn (05443) từ 10:41:07 — Lan đang xử lý`, or the alert's summary.
    fn line(&self, firing: bool) -> String {
        let Some(site) = self.label("site") else {
            return self
                .annotation("summary")
                .unwrap_or("(cảnh báo không tên)")
                .to_string();
        };
        let who = match self.label("name") {
            Some(name) => format!("{name} ({site})"),
            None => site.to_string(),
        };
        if !firing {
            return who;
        }
        let since = self.annotation("since").map(str::to_string).or_else(|| {
            chrono::DateTime::parse_from_rfc3339(&self.starts_at)
                .ok()
                .map(|t| local_time(t.timestamp_millis()))
        });
        let since = since.map(|t| format!(" từ {t}")).unwrap_or_default();
        let taken = match self.annotation("taken_by") {
            Some(name) if name != NOBODY => format!(" — {name} đang xử lý"),
            _ => format!(" — {NOBODY}"),
        };
        format!("{who}{since}{taken}")
    }
}

/// What the rules say when nobody has taken a site's incident.
pub const NOBODY: &str = "chưa ai nhận";

/// The heading's words for the alerts diemcau ships (`config/prometheus/alerts.yml`).
fn what(alertname: &str, firing: bool) -> &'static str {
    match (alertname, firing) {
        ("DiemcauSiteOffline", true) => "mất kết nối",
        ("DiemcauSiteOffline", false) => "đã kết nối lại",
        ("DiemcauPresenterOffline", true) => "ĐANG TRÌNH BÀY thì mất kết nối",
        ("DiemcauPresenterOffline", false) => "đang trình bày đã kết nối lại",
        ("DiemcauIncidentUntaken", true) => "mất kết nối mà CHƯA AI NHẬN XỬ LÝ",
        ("DiemcauIncidentUntaken", false) => "đã có người nhận hoặc đã trở lại",
        (_, true) => "cảnh báo",
        (_, false) => "hết cảnh báo",
    }
}

/// One message for the whole group: a heading (the district, how many, what), a line
/// per alert, and the wall's link; cut to Zalo's limit with how many were left out.
pub fn zalo_text(group: &AlertGroup) -> String {
    let firing = group.status == "firing";
    let alerts: Vec<&GroupAlert> = group
        .alerts
        .iter()
        .filter(|a| (a.status == "firing") == firing)
        .collect();
    let alertname = group
        .common_labels
        .get("alertname")
        .or_else(|| group.group_labels.get("alertname"))
        .map(String::as_str)
        .unwrap_or("");
    let count = alerts.len() as u64 + group.truncated_alerts;
    let place = group
        .group_labels
        .get("district")
        .filter(|d| !d.is_empty())
        .map(|d| format!("{d}: "))
        .unwrap_or_default();
    let sites = alerts.iter().any(|a| a.label("site").is_some());
    let heading = if sites {
        format!(
            "{} {place}{count} điểm cầu {}",
            if firing { "🔴" } else { "✅" },
            what(alertname, firing)
        )
    } else {
        format!(
            "{} {place}{}",
            if firing { "🔴" } else { "✅" },
            what(alertname, firing)
        )
    };
    let wall = alerts
        .iter()
        .find_map(|a| a.annotation("wall"))
        .map(|url| format!("\nTường điểm cầu: {url}"))
        .unwrap_or_default();
    let mut text = heading;
    let mut left_out = group.truncated_alerts as usize;
    for (n, alert) in alerts.iter().enumerate() {
        let line = format!("\n• {}", alert.line(firing));
        let rest = alerts.len() - n;
        // Room for this line, the "and N more" line and the link.
        let reserve = 40 + wall.chars().count();
        if text.chars().count() + line.chars().count() + reserve > ZALO_MAX_CHARS {
            left_out += rest;
            break;
        }
        text.push_str(&line);
    }
    if left_out > 0 {
        text.push_str(&format!("\n… và {left_out} điểm cầu khác"));
    }
    text.push_str(&wall);
    text.chars().take(ZALO_MAX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(status: &str, alerts: Vec<(&str, &str, Option<&str>)>) -> AlertGroup {
        AlertGroup {
            status: status.into(),
            group_labels: [
                ("alertname".into(), "DiemcauSiteOffline".into()),
                ("district".into(), "Huyện Phú Bình".into()),
            ]
            .into(),
            common_labels: [("alertname".into(), "DiemcauSiteOffline".into())].into(),
            truncated_alerts: 0,
            alerts: alerts
                .into_iter()
                .map(|(site, name, taken)| GroupAlert {
                    status: status.into(),
                    labels: [("site".into(), site.into()), ("name".into(), name.into())].into(),
                    annotations: [
                        ("since".to_string(), "10:41:07".to_string()),
                        ("taken_by".to_string(), taken.unwrap_or(NOBODY).to_string()),
                        (
                            "wall".to_string(),
                            "https://diemcau.thainguyen.gov.vn/wall".to_string(),
                        ),
                    ]
                    .into(),
                    starts_at: "2026-12-20T03:41:07Z".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_district_group_is_one_message_naming_each_site_since_when_and_who_is_on_it() {
        let text = zalo_text(&group(
            "firing",
            vec![
                ("05443", "Xã Kha Sơn", Some("Lan")),
                ("05444", "Xã Tân Thành", None),
            ],
        ));
        assert_eq!(
            text,
            "🔴 Huyện Phú Bình: 2 điểm cầu mất kết nối\n\
             • Xã Kha Sơn (05443) từ 10:41:07 — Lan đang xử lý\n\
             • Xã Tân Thành (05444) từ 10:41:07 — chưa ai nhận\n\
             Tường điểm cầu: https://diemcau.thainguyen.gov.vn/wall"
        );
        let back = zalo_text(&group("resolved", vec![("05443", "Xã Kha Sơn", None)]));
        assert!(
            back.starts_with("✅ Huyện Phú Bình: 1 điểm cầu đã kết nối lại\n• Xã Kha Sơn (05443)"),
            "{back}"
        );
    }

    #[test]
    fn a_group_too_long_for_zalo_is_cut_saying_how_many_were_left_out() {
        let many: Vec<(String, String)> = (0..300)
            .map(|n| (format!("{:05}", n), format!("Xã Số {n} có tên khá dài")))
            .collect();
        let text = zalo_text(&group(
            "firing",
            many.iter()
                .map(|(s, n)| (s.as_str(), n.as_str(), None))
                .collect(),
        ));
        assert!(text.chars().count() <= ZALO_MAX_CHARS);
        let shown = text.matches("\n• ").count();
        assert!(
            text.contains(&format!("… và {} điểm cầu khác", 300 - shown)),
            "{text}"
        );
        assert!(text.ends_with("/wall"), "the link is kept");
    }

    #[test]
    fn without_its_annotations_the_start_is_shown_in_vietnam_time() {
        let mut g = group("firing", vec![("05443", "Xã Kha Sơn", None)]);
        g.alerts[0].annotations.clear();
        assert!(
            zalo_text(&g).contains("Xã Kha Sơn (05443) từ 10:41:07 — chưa ai nhận"),
            "{}",
            zalo_text(&g)
        );
    }
}

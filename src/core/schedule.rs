//! The rehearsal schedule: a time slot per site to run its connection check, generated
//! over chosen days or imported from a spreadsheet; who missed it or failed. Pure.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Asia::Ho_Chi_Minh;
use serde::Serialize;

use crate::core::sites::{Roster, SiteId};
use crate::core::table::{Table, TableError};
use crate::core::time::EpochMs;

/// One site's rehearsal slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RehearsalSlot {
    pub site: SiteId,
    pub starts_ms: EpochMs,
    pub ends_ms: EpochMs,
}

/// Why a rehearsal schedule cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("give at least one day, a day_end after day_start and minutes above 0")]
    Empty,
    #[error(
        "{days} days of {per_day} slots hold {capacity} sites, not {sites}: add days, widen the hours or shorten the slots"
    )]
    TooFewSlots {
        days: usize,
        per_day: usize,
        capacity: usize,
        sites: usize,
    },
    #[error("{0} is not a valid time in Vietnam")]
    NoSuchTime(NaiveDateTime),
}

fn local_ms(date: NaiveDate, time: NaiveTime) -> Result<EpochMs, ScheduleError> {
    let at = date.and_time(time);
    Ho_Chi_Minh
        .from_local_datetime(&at)
        .single()
        .map(|t| t.timestamp_millis())
        .ok_or(ScheduleError::NoSuchTime(at))
}

/// Slots of `minutes` for every site in roster order, day after day from `day_start`
/// to `day_end` (Vietnam time). Refuses when the days cannot hold them all.
pub fn generate(
    roster: &Roster,
    days: &[NaiveDate],
    day_start: NaiveTime,
    day_end: NaiveTime,
    minutes: u32,
) -> Result<Vec<RehearsalSlot>, ScheduleError> {
    if minutes == 0 || day_end <= day_start || days.is_empty() {
        return Err(ScheduleError::Empty);
    }
    let per_day = ((day_end - day_start).num_minutes() / minutes as i64) as usize;
    let capacity = per_day * days.len();
    if capacity < roster.len() {
        return Err(ScheduleError::TooFewSlots {
            days: days.len(),
            per_day,
            capacity,
            sites: roster.len(),
        });
    }
    let length = minutes as i64 * 60_000;
    roster
        .sites()
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let day = days[i / per_day];
            let starts_ms = local_ms(day, day_start)? + (i % per_day) as i64 * length;
            Ok(RehearsalSlot {
                site: site.id,
                starts_ms,
                ends_ms: starts_ms + length,
            })
        })
        .collect()
}

/// Reads `code,start,minutes` (start as `dd/mm/yyyy HH:MM`, Vietnam time); any bad row
/// rejects the file.
pub fn import(file: &str, bytes: &[u8], roster: &Roster) -> Result<Vec<RehearsalSlot>, TableError> {
    let table = Table::parse(file, bytes, &["code", "start", "minutes"], &["name"])?;
    let mut slots: Vec<RehearsalSlot> = Vec::new();
    for row in table.rows() {
        let line = row.line;
        let code = row.get("code").unwrap_or("");
        let site: SiteId = code
            .parse()
            .map_err(|e: crate::core::sites::BadSiteId| table.error(line, e.to_string()))?;
        if roster.index_of(site).is_none() {
            return Err(table.error(line, format!("site {site} is not in the roster")));
        }
        if slots.iter().any(|s| s.site == site) {
            return Err(table.error(line, format!("site {site} has two slots")));
        }
        let start_text = row.get("start").unwrap_or("");
        let start = NaiveDateTime::parse_from_str(start_text, "%d/%m/%Y %H:%M").map_err(|_| {
            table.error(
                line,
                format!("start `{start_text}` must look like 25/11/2026 08:30"),
            )
        })?;
        let starts_ms =
            local_ms(start.date(), start.time()).map_err(|e| table.error(line, e.to_string()))?;
        let minutes_text = row.get("minutes").unwrap_or("");
        let minutes: i64 = minutes_text
            .parse()
            .ok()
            .filter(|m| (1..=240).contains(m))
            .ok_or_else(|| {
                table.error(
                    line,
                    format!("minutes `{minutes_text}` must be a whole number from 1 to 240"),
                )
            })?;
        slots.push(RehearsalSlot {
            site,
            starts_ms,
            ends_ms: starts_ms + minutes * 60_000,
        });
    }
    Ok(slots)
}

/// A site to check again: its slot is over and it has no check since the slot began,
/// or its latest check failed. `attempts` are (started, verdict), newest first.
pub fn needs_retest(
    slot: Option<&RehearsalSlot>,
    attempts: &[(EpochMs, &str)],
    now: EpochMs,
) -> bool {
    if attempts
        .first()
        .is_some_and(|(_, verdict)| *verdict == "fail")
    {
        return true;
    }
    match slot {
        Some(slot) if now >= slot.ends_ms => !attempts
            .iter()
            .any(|(started, _)| *started >= slot.starts_ms),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster::parse("s.csv", include_bytes!("../../config/sites.csv")).unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn time(text: &str) -> NaiveTime {
        NaiveTime::parse_from_str(text, "%H:%M").unwrap()
    }

    #[test]
    fn ten_minute_slots_fill_the_days_in_vietnam_time() {
        let slots = generate(
            &roster(),
            &[day("2026-11-24"), day("2026-11-25")],
            time("08:00"),
            time("16:00"),
            10,
        )
        .unwrap();
        assert_eq!(slots.len(), 92);
        // 08:00 in Hà Nội is 01:00 UTC.
        assert_eq!(
            crate::core::time::local_date_time(slots[0].starts_ms),
            "24/11/2026 08:00:00"
        );
        assert_eq!(slots[1].starts_ms - slots[0].starts_ms, 600_000);
        assert_eq!(
            crate::core::time::local_date_time(slots[47].starts_ms),
            "24/11/2026 15:50:00"
        );
        assert_eq!(
            crate::core::time::local_date_time(slots[48].starts_ms),
            "25/11/2026 08:00:00"
        );
    }

    #[test]
    fn too_little_time_is_refused_with_what_to_change() {
        let err = generate(
            &roster(),
            &[day("2026-11-24")],
            time("08:00"),
            time("12:00"),
            10,
        )
        .unwrap_err();
        assert!(err.to_string().contains("hold 24 sites, not 92"), "{err}");
    }

    #[test]
    fn an_imported_schedule_is_checked_row_by_row() {
        let ok = "code,start,minutes\n05443,25/11/2026 08:30,15\n";
        let slots = import("lich.csv", ok.as_bytes(), &roster()).unwrap();
        assert_eq!(slots[0].ends_ms - slots[0].starts_ms, 15 * 60_000);
        for (row, expected) in [
            ("99999,25/11/2026 08:30,15", "not in the roster"),
            ("05443,2026-11-25 08:30,15", "must look like"),
            ("05443,25/11/2026 08:30,0", "minutes `0`"),
        ] {
            let err = import(
                "lich.csv",
                format!("code,start,minutes\n{row}\n").as_bytes(),
                &roster(),
            )
            .unwrap_err();
            assert_eq!(err.line, 2);
            assert!(err.reason.contains(expected), "{row}: {err}");
        }
        let twice = "code,start,minutes\n05443,25/11/2026 08:30,15\n05443,25/11/2026 09:30,15\n";
        assert!(
            import("lich.csv", twice.as_bytes(), &roster())
                .unwrap_err()
                .reason
                .contains("two slots")
        );
    }

    #[test]
    fn missed_slots_and_failures_are_listed_for_a_retest() {
        let slot = RehearsalSlot {
            site: "05443".parse().unwrap(),
            starts_ms: 1000,
            ends_ms: 2000,
        };
        assert!(
            !needs_retest(Some(&slot), &[], 1500),
            "the slot is not over yet"
        );
        assert!(needs_retest(Some(&slot), &[], 2000), "missed");
        assert!(
            needs_retest(Some(&slot), &[(500, "pass")], 2500),
            "checked only before the slot"
        );
        assert!(!needs_retest(Some(&slot), &[(1200, "warn")], 2500));
        assert!(needs_retest(None, &[(1200, "fail")], 2500), "failed");
        assert!(
            !needs_retest(None, &[], 2500),
            "no slot, no check: nothing to retest yet"
        );
    }
}

//! Server time as the core sees it: epoch milliseconds, and how a person reads them
//! (Vietnam's wall clock, durations as m:ss). The clock itself is read in the shell
//! (`crate::clock`); here `now` is always an argument.

use chrono::DateTime;
use chrono_tz::Asia::Ho_Chi_Minh;

/// Milliseconds since the Unix epoch, as the server sees them.
pub type EpochMs = i64;

/// Wall-clock time in Vietnam, `HH:MM:SS`.
pub fn local_time(ms: EpochMs) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&Ho_Chi_Minh).format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Date and time in Vietnam, `dd/mm/yyyy HH:MM:SS`.
pub fn local_date_time(ms: EpochMs) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&Ho_Chi_Minh)
                .format("%d/%m/%Y %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// `minutes` after midnight, in Vietnam, on the day (in Vietnam) of `day`: a row's
/// `start` ("13:30") on the conference day.
pub fn same_day_at(day: EpochMs, minutes: u32) -> EpochMs {
    use chrono::TimeZone;
    let Some(local) = DateTime::from_timestamp_millis(day).map(|t| t.with_timezone(&Ho_Chi_Minh))
    else {
        return day;
    };
    let midnight = Ho_Chi_Minh
        .from_local_datetime(
            &local
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists"),
        )
        .single()
        .map_or(day, |t| t.timestamp_millis());
    midnight + minutes as i64 * 60_000
}

/// `ms` rounded to the nearest whole second (7:00.6 is 7:01 in the minutes, not 7:00).
pub fn nearest_second(ms: i64) -> i64 {
    (ms + 500).div_euclid(1000) * 1000
}

/// A duration as `m:ss` (whole seconds, rounded down; negative with a minus sign).
pub fn minutes_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let seconds = ms.abs() / 1000;
    format!("{sign}{}:{:02}", seconds / 60, seconds % 60)
}

//! The conference agenda (`config/agenda.csv`): the presentations in order.

use serde::Serialize;

use crate::core::sites::{Roster, SiteId};
use crate::core::table::{Table, TableError};

/// Where a presenter speaks from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Venue {
    /// The provincial hall.
    Hall,
    /// A commune presenting from its own bridge.
    Site(SiteId),
}

impl Serialize for Venue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Venue::Hall => s.serialize_str("hall"),
            Venue::Site(id) => id.serialize(s),
        }
    }
}

/// One presentation (tham luận).
#[derive(Clone, Debug, Serialize)]
pub struct Presentation {
    /// The row's stable name: its `id` column, else its order as first loaded; a slot
    /// inserted on the day is `them-1`, `them-2`, …
    pub id: String,
    pub order: u32,
    pub unit: String,
    pub unit_kind: String,
    pub topic: String,
    pub venue: Venue,
    /// Allowed length; the row's `slot_seconds`, else the configured default.
    pub slot_seconds: u32,
    /// The row's own planned start (`start`, "13:30": minutes after midnight, Vietnam
    /// time, on the conference day); else it follows the row before.
    pub start_minutes: Option<u32>,
}

/// A slot whose stored results belong to another unit than the agenda now says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedResult {
    pub order: u32,
    /// The unit the agenda has at that order now (`None`: no such row any more).
    pub now: Option<String>,
    /// The unit the stored results are for.
    pub stored: String,
}

impl std::fmt::Display for MovedResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.now {
            Some(now) if *now == self.stored => write!(
                f,
                "the stored timings of “{now}” (row {}) would be replayed onto another row",
                self.order
            ),
            Some(now) => write!(
                f,
                "row {} is now “{now}” but its stored timings are “{}”'s",
                self.order, self.stored
            ),
            None => write!(
                f,
                "row {} is gone but “{}” has stored timings under it",
                self.order, self.stored
            ),
        }
    }
}

/// The presentations, sorted by `order`.
#[derive(Clone, Debug, Default)]
pub struct Agenda {
    pub presentations: Vec<Presentation>,
}

const REQUIRED: &[&str] = &["order", "unit", "unit_kind", "topic"];
const OPTIONAL: &[&str] = &["venue", "slot_seconds", "start", "id"];
/// A slot longer than an hour is a typo (minutes typed as seconds are caught below it).
const MAX_SLOT_SECONDS: u32 = 3600;

/// "8:05" or "13:30" → minutes after midnight.
fn parse_hh_mm(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60 && text.len() <= 5).then_some(hours * 60 + minutes)
}

impl Agenda {
    /// Parses the agenda; `venue` ids must be in `roster`. An empty venue means the
    /// hall, except for a commune (`unit_kind = xa_phuong`) named in the roster,
    /// which presents from its own bridge.
    pub fn parse(
        file: &str,
        bytes: &[u8],
        roster: &Roster,
        default_slot_seconds: u32,
    ) -> Result<Agenda, TableError> {
        let table = Table::parse(file, bytes, REQUIRED, OPTIONAL)?;
        let mut presentations: Vec<Presentation> = Vec::new();
        for row in table.rows() {
            let line = row.line;
            let order_text = row.get("order").unwrap_or("");
            let order: u32 = order_text.parse().ok().filter(|o| *o > 0).ok_or_else(|| {
                table.error(
                    line,
                    format!("order `{order_text}` is not a whole number ≥ 1"),
                )
            })?;
            if presentations.iter().any(|p| p.order == order) {
                return Err(table.error(line, format!("duplicate order {order}")));
            }
            let unit = row.get("unit").ok_or_else(|| {
                table.error(line, format!("presentation {order} has an empty unit"))
            })?;
            let unit_kind = row.get("unit_kind").unwrap_or("").to_string();
            let topic = row.get("topic").unwrap_or("").to_string();
            let venue = match row.get("venue") {
                None | Some("hall") => match roster.find_by_name(unit) {
                    Some(site) if row.get("venue").is_none() && unit_kind == "xa_phuong" => {
                        Venue::Site(site.id)
                    }
                    _ => Venue::Hall,
                },
                Some(code) => {
                    let id: SiteId = code.parse().map_err(|e: crate::core::sites::BadSiteId| {
                        table.error(line, format!("venue: {e}, or `hall`"))
                    })?;
                    if roster.index_of(id).is_none() {
                        return Err(table.error(line, format!("venue {id} is not in the roster")));
                    }
                    Venue::Site(id)
                }
            };
            let slot_seconds = match row.get("slot_seconds") {
                None => default_slot_seconds,
                Some(text) => text
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_SLOT_SECONDS).contains(s))
                    .ok_or_else(|| {
                        table.error(
                            line,
                            format!("slot_seconds `{text}` must be a whole number from 1 to {MAX_SLOT_SECONDS}"),
                        )
                    })?,
            };
            let start_minutes = match row.get("start") {
                None => None,
                Some(text) => Some(parse_hh_mm(text).ok_or_else(|| {
                    table.error(
                        line,
                        format!("start `{text}` must be a time of day like 13:30"),
                    )
                })?),
            };
            let id = match row.get("id") {
                None => order.to_string(),
                Some(id)
                    if id.len() <= 32
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) =>
                {
                    id.to_string()
                }
                Some(id) => {
                    return Err(
                        table.error(line, format!("id `{id}`: up to 32 letters, digits, - or _"))
                    );
                }
            };
            if presentations.iter().any(|p| p.id == id) {
                return Err(table.error(line, format!("duplicate id {id}")));
            }
            presentations.push(Presentation {
                id,
                order,
                unit: unit.to_string(),
                unit_kind,
                topic,
                venue,
                slot_seconds,
                start_minutes,
            });
        }
        if presentations.is_empty() {
            return Err(table.error(0, "no presentations: the agenda needs at least one row"));
        }
        presentations.sort_by_key(|p| p.order);
        Ok(Agenda { presentations })
    }

    pub fn len(&self) -> usize {
        self.presentations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.presentations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster::parse("sites.csv", include_bytes!("../../config/sites.csv")).unwrap()
    }

    #[test]
    fn shipped_agenda_has_26_slots_of_7_minutes_and_communes_present_from_home() {
        let agenda = Agenda::parse(
            "agenda.csv",
            include_bytes!("../../config/agenda.csv"),
            &roster(),
            420,
        )
        .unwrap();
        assert_eq!(agenda.len(), 26);
        assert!(agenda.presentations.iter().all(|p| p.slot_seconds == 420));
        let from_sites = agenda
            .presentations
            .iter()
            .filter(|p| matches!(p.venue, Venue::Site(_)))
            .count();
        assert_eq!(from_sites, 10);
        assert_eq!(
            agenda.presentations[16].venue,
            Venue::Site("05443".parse().unwrap())
        );
        assert_eq!(agenda.presentations[0].venue, Venue::Hall);
    }

    #[test]
    fn empty_venue_of_a_commune_defaults_to_its_site_and_slot_to_config() {
        let text = "order,unit,unit_kind,topic\n1,Xã Chợ Rã,xa_phuong,T\n2,Sở Y tế,so_nganh,T\n";
        let agenda = Agenda::parse("a.csv", text.as_bytes(), &roster(), 300).unwrap();
        assert!(matches!(agenda.presentations[0].venue, Venue::Site(_)));
        assert_eq!(agenda.presentations[1].venue, Venue::Hall);
        assert_eq!(agenda.presentations[1].slot_seconds, 300);
    }

    #[test]
    fn bad_numbers_duplicates_and_unknown_venues_are_refused() {
        let cases = [
            ("x,U,k,T,hall,420", "order `x`"),
            ("1,U,k,T,hall,7p", "slot_seconds `7p`"),
            ("1,U,k,T,hall,0", "slot_seconds `0`"),
            ("1,U,k,T,99999,420", "not in the roster"),
            ("1,,k,T,hall,420", "empty unit"),
        ];
        for (row, expected) in cases {
            let text = format!("order,unit,unit_kind,topic,venue,slot_seconds\n{row}\n");
            let err = Agenda::parse("a.csv", text.as_bytes(), &roster(), 420)
                .err()
                .unwrap();
            assert_eq!(err.line, 2, "{row}");
            assert!(err.reason.contains(expected), "{row}: {err}");
        }
        let text = "order,unit,unit_kind,topic\n1,A,k,T\n1,B,k,T\n";
        let err = Agenda::parse("a.csv", text.as_bytes(), &roster(), 420)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "a.csv:3: duplicate order 1");
    }

    #[test]
    fn the_shipped_agenda_keeps_every_topic_whole() {
        let agenda = Agenda::parse(
            "agenda.csv",
            include_bytes!("../../config/agenda.csv"),
            &roster(),
            420,
        )
        .unwrap();
        assert_eq!(agenda.len(), 26);
        let last = &agenda.presentations[25];
        assert_eq!(
            last.topic,
            "Phát huy vai trò “chính quyền gần dân, sát dân” trong mô hình chính quyền địa phương 02 cấp"
        );
    }

    #[test]
    fn a_row_cut_by_an_unquoted_comma_is_refused_naming_its_line() {
        let csv = "order,unit,unit_kind,topic,venue,slot_seconds\n1,Sở A,so_nganh,x,hall,420\n2,Xã Chợ Rã,xa_phuong,Phát huy vai trò “gần dân, sát dân”,01912,420\n";
        let err = Agenda::parse("agenda.csv", csv.as_bytes(), &roster(), 420).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(
            err.to_string()
                .contains("wrong number of columns: 7 instead of 6"),
            "{err}"
        );
    }
}

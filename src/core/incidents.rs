//! Incidents: a site in trouble during the event gets one record that a person takes
//! ("Tôi xử lý"), annotates and sees closed. Pure: the book is changed only by applying
//! `IncidentEvent`s, the same way live and when the stored events are replayed at start,
//! so what the wall showed is what the report says.
//!
//! Rules (times from `IncidentPolicy`): an incident opens, inside the event window, when
//! a site goes offline, stays degraded longer than `degraded_after_ms`, or its
//! equipment check goes down; it closes once the site has been well for
//! `resolve_after_ms` (a problem again before that is the same incident: a flap). One
//! nobody has taken after `raise_after_ms` is raised again, once. An excused site opens
//! none, and an open one closes as excused; the window's end closes the rest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::liveness::SiteState;
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

/// Longest name of the person taking an incident, note, and excuse reason; most notes an
/// incident keeps (each is stored).
pub const MAX_NAME_CHARS: usize = 80;
pub const MAX_NOTE_CHARS: usize = 500;
pub const MAX_REASON_CHARS: usize = 300;
pub const MAX_NOTES: usize = 100;

/// What opened an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Offline,
    Degraded,
    Equipment,
}

impl Cause {
    pub fn as_str(&self) -> &'static str {
        match self {
            Cause::Offline => "offline",
            Cause::Degraded => "degraded",
            Cause::Equipment => "equipment",
        }
    }

    /// The words the wall, the report and the notifications use.
    pub fn words(&self) -> &'static str {
        match self {
            Cause::Offline => "mất kết nối",
            Cause::Degraded => "kết nối kém kéo dài",
            Cause::Equipment => "thiết bị cầu không phản hồi",
        }
    }
}

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closing {
    /// The site was well for the resolve time.
    Back,
    /// The organisers excused the site.
    Excused,
    /// The event window ended.
    WindowEnd,
}

/// When incidents are opened and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncidentPolicy {
    pub degraded_after_ms: i64,
    pub resolve_after_ms: i64,
    pub raise_after_ms: i64,
    /// The event window; unset ends leave it open on that side.
    pub window_start_ms: Option<EpochMs>,
    pub window_end_ms: Option<EpochMs>,
}

/// A person's act on an incident: who (the typed name and the key's role) and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub name: String,
    pub role: String,
    pub at_ms: EpochMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentNote {
    pub name: String,
    pub role: String,
    pub at_ms: EpochMs,
    pub text: String,
}

/// One stored fact about an incident; the book is what they add up to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IncidentEvent {
    Opened {
        incident: Uuid,
        site: SiteId,
        cause: Cause,
        at_ms: EpochMs,
    },
    /// The site is well again (the incident closes if it stays so).
    Back { incident: Uuid, at_ms: EpochMs },
    /// In trouble again before the incident closed (a flap: no new incident).
    Again {
        incident: Uuid,
        cause: Cause,
        at_ms: EpochMs,
    },
    Taken {
        incident: Uuid,
        #[serde(flatten)]
        by: Act,
    },
    Noted {
        incident: Uuid,
        #[serde(flatten)]
        note: IncidentNote,
    },
    /// Nobody took it in time: the wall and the notifier say it again.
    RaisedAgain { incident: Uuid, at_ms: EpochMs },
    Resolved {
        incident: Uuid,
        how: Closing,
        at_ms: EpochMs,
    },
}

impl IncidentEvent {
    pub fn incident(&self) -> Uuid {
        match self {
            IncidentEvent::Opened { incident, .. }
            | IncidentEvent::Back { incident, .. }
            | IncidentEvent::Again { incident, .. }
            | IncidentEvent::Taken { incident, .. }
            | IncidentEvent::Noted { incident, .. }
            | IncidentEvent::RaisedAgain { incident, .. }
            | IncidentEvent::Resolved { incident, .. } => *incident,
        }
    }

    pub fn at_ms(&self) -> EpochMs {
        match self {
            IncidentEvent::Opened { at_ms, .. }
            | IncidentEvent::Back { at_ms, .. }
            | IncidentEvent::Again { at_ms, .. }
            | IncidentEvent::RaisedAgain { at_ms, .. }
            | IncidentEvent::Resolved { at_ms, .. } => *at_ms,
            IncidentEvent::Taken { by, .. } => by.at_ms,
            IncidentEvent::Noted { note, .. } => note.at_ms,
        }
    }

    /// The stored kind word (a column beside the event's JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            IncidentEvent::Opened { .. } => "opened",
            IncidentEvent::Back { .. } => "back",
            IncidentEvent::Again { .. } => "again",
            IncidentEvent::Taken { .. } => "taken",
            IncidentEvent::Noted { .. } => "noted",
            IncidentEvent::RaisedAgain { .. } => "raised_again",
            IncidentEvent::Resolved { .. } => "resolved",
        }
    }
}

/// An incident as the wall and the report show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub id: Uuid,
    pub site: SiteId,
    pub cause: Cause,
    pub opened_ms: EpochMs,
    /// Everyone who took it, first first (a hand-over is another take).
    pub takers: Vec<Act>,
    pub notes: Vec<IncidentNote>,
    pub raised_again_ms: Option<EpochMs>,
    /// Well again since, while it waits to close.
    pub back_ms: Option<EpochMs>,
    /// Times it was in trouble again inside the incident.
    pub flaps: u32,
    /// The last time the site came back (its outage's end, for the report's duration).
    pub last_back_ms: Option<EpochMs>,
    pub resolved_ms: Option<EpochMs>,
    pub closing: Option<Closing>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.resolved_ms.is_none()
    }

    /// Who is on it now.
    pub fn taken_by(&self) -> Option<&Act> {
        self.takers.last()
    }

    /// From opening to the first take.
    pub fn time_to_take_ms(&self) -> Option<i64> {
        self.takers.first().map(|t| t.at_ms - self.opened_ms)
    }

    /// From opening until the site was back for good (or the incident was closed
    /// otherwise): how long the site was in trouble.
    pub fn duration_ms(&self) -> Option<i64> {
        let end = match self.closing? {
            Closing::Back => self.last_back_ms.or(self.resolved_ms)?,
            Closing::Excused | Closing::WindowEnd => self.resolved_ms?,
        };
        Some(end - self.opened_ms)
    }
}

/// Why a person's act on an incident is refused (nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAct {
    #[error("no incident {0}")]
    Unknown(Uuid),
    #[error(
        "the incident is closed: a closed incident cannot be taken (a note can still be added)"
    )]
    Closed,
    #[error("`name` must be 1 to {MAX_NAME_CHARS} characters: who takes it")]
    Name,
    #[error("`text` must be 1 to {MAX_NOTE_CHARS} characters")]
    Text,
    #[error("this incident already has {MAX_NOTES} notes")]
    TooManyNotes,
}

/// What the book knows of one site now.
#[derive(Clone, Copy, Debug)]
struct Condition {
    state: SiteState,
    state_since_ms: EpochMs,
    device_down: bool,
    device_since_ms: EpochMs,
    excused_since_ms: Option<EpochMs>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition {
            state: SiteState::NeverSeen,
            state_since_ms: 0,
            device_down: false,
            device_since_ms: 0,
            excused_since_ms: None,
        }
    }
}

/// Every incident so far and each site's condition.
#[derive(Clone, Debug)]
pub struct IncidentBook {
    policy: IncidentPolicy,
    incidents: Vec<Incident>,
    /// The open incident of a site, as an index into `incidents`.
    open: BTreeMap<SiteId, usize>,
    conditions: BTreeMap<SiteId, Condition>,
}

impl IncidentBook {
    pub fn new(policy: IncidentPolicy) -> IncidentBook {
        IncidentBook {
            policy,
            incidents: Vec::new(),
            open: BTreeMap::new(),
            conditions: BTreeMap::new(),
        }
    }

    pub fn policy(&self) -> &IncidentPolicy {
        &self.policy
    }

    pub fn all(&self) -> &[Incident] {
        &self.incidents
    }

    pub fn get(&self, id: Uuid) -> Option<&Incident> {
        self.incidents.iter().find(|i| i.id == id)
    }

    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.open.values().map(|&i| &self.incidents[i])
    }

    pub fn open_of(&self, site: SiteId) -> Option<&Incident> {
        self.open.get(&site).map(|&i| &self.incidents[i])
    }

    /// The site's liveness state changed (at the transition's time).
    pub fn site_state(&mut self, site: SiteId, state: SiteState, at_ms: EpochMs) {
        let c = self.conditions.entry(site).or_default();
        c.state = state;
        c.state_since_ms = at_ms;
    }

    /// The site's equipment check went down or came back.
    pub fn device_state(&mut self, site: SiteId, down: bool, at_ms: EpochMs) {
        let c = self.conditions.entry(site).or_default();
        c.device_down = down;
        c.device_since_ms = at_ms;
    }

    /// The organisers excused the site (or took it back).
    pub fn excused(&mut self, site: SiteId, excused: bool, at_ms: EpochMs) {
        self.conditions.entry(site).or_default().excused_since_ms = excused.then_some(at_ms);
    }

    pub fn is_excused(&self, site: SiteId) -> bool {
        self.conditions
            .get(&site)
            .is_some_and(|c| c.excused_since_ms.is_some())
    }

    /// Applies what the rules say at `now`, returning the new events (already applied:
    /// the shell stores and announces them).
    pub fn tick(&mut self, now: EpochMs) -> Vec<IncidentEvent> {
        self.rounds(now, None)
    }

    /// The same rules for one site only (after its own change: a burst of thousands
    /// of sites coming back costs one site's rules each, not every site's).
    pub fn tick_site(&mut self, site: SiteId, now: EpochMs) -> Vec<IncidentEvent> {
        self.rounds(now, Some(site))
    }

    fn rounds(&mut self, now: EpochMs, only: Option<SiteId>) -> Vec<IncidentEvent> {
        // A late tick catches up: back, then closed, in one call (a rule per round).
        let mut events = Vec::new();
        for _ in 0..3 {
            let round = self.round(now, only);
            if round.is_empty() {
                break;
            }
            events.extend(round);
        }
        events
    }

    fn round(&mut self, now: EpochMs, only: Option<SiteId>) -> Vec<IncidentEvent> {
        let mut events = Vec::new();
        if let Some(end) = self.policy.window_end_ms.filter(|end| now >= *end) {
            for &i in self.open.values() {
                events.push(IncidentEvent::Resolved {
                    incident: self.incidents[i].id,
                    how: Closing::WindowEnd,
                    at_ms: end,
                });
            }
        } else {
            let in_window = self.policy.window_start_ms.is_none_or(|start| now >= start);
            let sites = self
                .conditions
                .iter()
                .filter(|(site, _)| only.is_none_or(|one| one == **site));
            for (&site, condition) in sites {
                let open = self.open.get(&site).map(|&i| &self.incidents[i]);
                if let Some(event) = self.decide(site, condition, open, now, in_window) {
                    events.push(event);
                }
            }
        }
        for event in &events {
            self.apply(event);
        }
        events
    }

    /// The one rule that applies to a site now, if any.
    fn decide(
        &self,
        site: SiteId,
        c: &Condition,
        open: Option<&Incident>,
        now: EpochMs,
        in_window: bool,
    ) -> Option<IncidentEvent> {
        if let Some(excused_at) = c.excused_since_ms {
            return open.map(|i| IncidentEvent::Resolved {
                incident: i.id,
                how: Closing::Excused,
                at_ms: excused_at.max(i.opened_ms),
            });
        }
        let trouble = self.trouble(c, now);
        match (open, trouble) {
            (None, Some((cause, since))) if in_window => Some(IncidentEvent::Opened {
                incident: Uuid::new_v4(),
                site,
                cause,
                at_ms: self.policy.window_start_ms.map_or(since, |s| since.max(s)),
            }),
            (Some(i), Some((cause, since))) if i.back_ms.is_some() => Some(IncidentEvent::Again {
                incident: i.id,
                cause,
                at_ms: since.max(i.back_ms.unwrap_or(since)),
            }),
            (Some(i), None) => match i.back_ms {
                None => Self::well_since(c, i.cause).map(|at| IncidentEvent::Back {
                    incident: i.id,
                    at_ms: at.max(i.opened_ms),
                }),
                Some(back) if now - back >= self.policy.resolve_after_ms => {
                    Some(IncidentEvent::Resolved {
                        incident: i.id,
                        how: Closing::Back,
                        at_ms: back + self.policy.resolve_after_ms,
                    })
                }
                Some(_) => None,
            },
            (Some(i), Some(_))
                if i.takers.is_empty()
                    && i.raised_again_ms.is_none()
                    && now - i.opened_ms >= self.policy.raise_after_ms =>
            {
                Some(IncidentEvent::RaisedAgain {
                    incident: i.id,
                    at_ms: i.opened_ms + self.policy.raise_after_ms,
                })
            }
            _ => None,
        }
    }

    /// The site's trouble now, and since when it counts: offline first, then its
    /// equipment, then a degraded link once it has lasted.
    fn trouble(&self, c: &Condition, now: EpochMs) -> Option<(Cause, EpochMs)> {
        if c.state == SiteState::Offline {
            return Some((Cause::Offline, c.state_since_ms));
        }
        if c.device_down {
            return Some((Cause::Equipment, c.device_since_ms));
        }
        let lasted = c.state_since_ms + self.policy.degraded_after_ms;
        (c.state == SiteState::Degraded && now >= lasted).then_some((Cause::Degraded, lasted))
    }

    /// Since when the site is well, if it is: connected (a short degraded spell is well)
    /// and its equipment answering. A site not yet back after a restart is not well; an
    /// equipment incident needs only the equipment.
    fn well_since(c: &Condition, cause: Cause) -> Option<EpochMs> {
        let connected = matches!(c.state, SiteState::Online | SiteState::Degraded);
        if c.device_down || !(connected || cause == Cause::Equipment) {
            return None;
        }
        Some(if connected {
            c.state_since_ms.max(c.device_since_ms)
        } else {
            c.device_since_ms
        })
    }

    /// A person takes an incident ("Tôi xử lý"); taking it again hands it over.
    pub fn take(
        &self,
        id: Uuid,
        name: &str,
        role: &str,
        at_ms: EpochMs,
    ) -> Result<IncidentEvent, BadAct> {
        let incident = self.get(id).ok_or(BadAct::Unknown(id))?;
        if !incident.is_open() {
            return Err(BadAct::Closed);
        }
        Ok(IncidentEvent::Taken {
            incident: id,
            by: Act {
                name: checked(name, MAX_NAME_CHARS).ok_or(BadAct::Name)?,
                role: role.to_string(),
                at_ms,
            },
        })
    }

    /// A person notes what happened ("đã gọi anh Hùng: mất điện, 5 phút").
    pub fn note(
        &self,
        id: Uuid,
        name: &str,
        role: &str,
        text: &str,
        at_ms: EpochMs,
    ) -> Result<IncidentEvent, BadAct> {
        let incident = self.get(id).ok_or(BadAct::Unknown(id))?;
        if incident.notes.len() >= MAX_NOTES {
            return Err(BadAct::TooManyNotes);
        }
        Ok(IncidentEvent::Noted {
            incident: id,
            note: IncidentNote {
                name: checked(name, MAX_NAME_CHARS).ok_or(BadAct::Name)?,
                role: role.to_string(),
                at_ms,
                text: checked(text, MAX_NOTE_CHARS).ok_or(BadAct::Text)?,
            },
        })
    }

    /// The one way the book changes: live, and when stored events are replayed.
    pub fn apply(&mut self, event: &IncidentEvent) {
        if let IncidentEvent::Opened {
            incident,
            site,
            cause,
            at_ms,
        } = event
        {
            if self.open.contains_key(site) || self.get(*incident).is_some() {
                return; // a replayed duplicate
            }
            self.open.insert(*site, self.incidents.len());
            self.incidents.push(Incident {
                id: *incident,
                site: *site,
                cause: *cause,
                opened_ms: *at_ms,
                takers: Vec::new(),
                notes: Vec::new(),
                raised_again_ms: None,
                back_ms: None,
                flaps: 0,
                last_back_ms: None,
                resolved_ms: None,
                closing: None,
            });
            return;
        }
        let Some(index) = self.incidents.iter().position(|i| i.id == event.incident()) else {
            return;
        };
        let incident = &mut self.incidents[index];
        match event {
            IncidentEvent::Opened { .. } => {}
            IncidentEvent::Back { at_ms, .. } => {
                incident.back_ms = Some(*at_ms);
                incident.last_back_ms = Some(*at_ms);
            }
            IncidentEvent::Again { .. } => {
                incident.back_ms = None;
                incident.flaps += 1;
            }
            IncidentEvent::Taken { by, .. } => incident.takers.push(by.clone()),
            IncidentEvent::Noted { note, .. } => incident.notes.push(note.clone()),
            IncidentEvent::RaisedAgain { at_ms, .. } => incident.raised_again_ms = Some(*at_ms),
            IncidentEvent::Resolved { how, at_ms, .. } => {
                incident.resolved_ms = Some(*at_ms);
                incident.closing = Some(*how);
                incident.back_ms = None;
                let site = incident.site;
                if self.open.get(&site) == Some(&index) {
                    self.open.remove(&site);
                }
            }
        }
    }
}

/// The text trimmed, if it is 1 to `max` characters.
fn checked(text: &str, max: usize) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text.chars().count() <= max).then(|| text.to_string())
}

/// The organisers' word that a site does not take part today (or, later, that it does
/// after all): an append-only record; a site's latest one is in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excusal {
    pub site: SiteId,
    pub excused: bool,
    pub name: String,
    pub role: String,
    pub reason: String,
    pub at_ms: EpochMs,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadExcusal {
    #[error("`name` must be 1 to {MAX_NAME_CHARS} characters: who excuses the site")]
    Name,
    #[error(
        "`reason` must be 1 to {MAX_REASON_CHARS} characters (why the site does not take part)"
    )]
    Reason,
}

impl Excusal {
    /// Checks what the page sent. Excusing needs a reason; taking it back may say why.
    pub fn new(
        site: SiteId,
        excused: bool,
        name: &str,
        role: String,
        reason: &str,
        at_ms: EpochMs,
    ) -> Result<Excusal, BadExcusal> {
        let name = checked(name, MAX_NAME_CHARS).ok_or(BadExcusal::Name)?;
        let reason = match checked(reason, MAX_REASON_CHARS) {
            Some(reason) => reason,
            None if !excused && reason.trim().is_empty() => String::new(),
            None => return Err(BadExcusal::Reason),
        };
        Ok(Excusal {
            site,
            excused,
            name,
            role,
            reason,
            at_ms,
        })
    }
}

/// The report's totals over incidents: how many, and the medians of the time to take
/// and the time to resolve (closed ones only).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentTotals {
    pub incidents: usize,
    pub open: usize,
    pub never_taken: usize,
    pub median_time_to_take_ms: Option<i64>,
    pub median_duration_ms: Option<i64>,
}

pub fn totals(incidents: &[&Incident]) -> IncidentTotals {
    let mut to_take: Vec<i64> = incidents
        .iter()
        .filter_map(|i| i.time_to_take_ms())
        .collect();
    let mut durations: Vec<i64> = incidents.iter().filter_map(|i| i.duration_ms()).collect();
    IncidentTotals {
        incidents: incidents.len(),
        open: incidents.iter().filter(|i| i.is_open()).count(),
        never_taken: incidents.iter().filter(|i| i.takers.is_empty()).count(),
        median_time_to_take_ms: median(&mut to_take),
        median_duration_ms: median(&mut durations),
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn policy() -> IncidentPolicy {
        IncidentPolicy {
            degraded_after_ms: 60 * S,
            resolve_after_ms: 60 * S,
            raise_after_ms: 120 * S,
            window_start_ms: None,
            window_end_ms: None,
        }
    }

    fn site(code: &str) -> SiteId {
        code.parse().unwrap()
    }

    fn kinds(events: &[IncidentEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind()).collect()
    }

    #[test]
    fn an_offline_site_opens_one_incident_dated_at_its_drop_and_a_flap_inside_it_opens_none() {
        let mut book = IncidentBook::new(policy());
        let a = site("05443");
        book.site_state(a, SiteState::Online, 0);
        assert!(
            book.tick(1 * S).is_empty(),
            "an online site has no incident"
        );
        book.site_state(a, SiteState::Offline, 10 * S);
        let events = book.tick(10 * S + 300);
        assert_eq!(kinds(&events), ["opened"]);
        assert_eq!(
            book.open_of(a).unwrap().opened_ms,
            10 * S,
            "dated at the drop, not the tick"
        );

        // Back at 20 s, down again at 50 s (inside the minute), back at 55 s.
        book.site_state(a, SiteState::Online, 20 * S);
        assert_eq!(kinds(&book.tick(20 * S)), ["back"]);
        book.site_state(a, SiteState::Offline, 50 * S);
        assert_eq!(kinds(&book.tick(50 * S)), ["again"]);
        book.site_state(a, SiteState::Online, 55 * S);
        assert_eq!(kinds(&book.tick(55 * S)), ["back"]);
        assert!(
            book.tick(55 * S + 59_999).is_empty(),
            "not yet a minute back"
        );
        let closed = book.tick(55 * S + 60 * S);
        assert_eq!(kinds(&closed), ["resolved"]);
        assert_eq!(
            book.all().len(),
            1,
            "the flap did not open a second incident"
        );
        let incident = &book.all()[0];
        assert_eq!(incident.flaps, 1);
        assert_eq!(incident.resolved_ms, Some(115 * S));
        assert_eq!(
            incident.duration_ms(),
            Some(45 * S),
            "from the drop to the last return"
        );

        // A drop after it closed is a new incident.
        book.site_state(a, SiteState::Offline, 200 * S);
        assert_eq!(kinds(&book.tick(200 * S)), ["opened"]);
        assert_eq!(book.all().len(), 2);
    }

    #[test]
    fn a_sites_own_change_runs_its_rules_alone() {
        let mut book = IncidentBook::new(policy());
        let (a, b) = (site("05443"), site("05710"));
        book.site_state(a, SiteState::Offline, 0);
        book.site_state(b, SiteState::Offline, 0);
        let events = book.tick_site(a, 0);
        assert_eq!(events.len(), 1);
        assert_eq!(book.all()[0].site, a);
        assert_eq!(
            kinds(&book.tick(0)),
            ["opened"],
            "b waits for the next tick"
        );
    }

    #[test]
    fn a_degraded_site_opens_an_incident_only_once_it_has_lasted() {
        let mut book = IncidentBook::new(policy());
        let a = site("05443");
        book.site_state(a, SiteState::Degraded, 0);
        assert!(book.tick(59_999).is_empty());
        let events = book.tick(61 * S);
        assert_eq!(kinds(&events), ["opened"]);
        let incident = book.open_of(a).unwrap();
        assert_eq!(
            (incident.cause, incident.opened_ms),
            (Cause::Degraded, 60 * S)
        );
        // A short degraded spell after it is "well": the incident goes on closing.
        book.site_state(a, SiteState::Online, 70 * S);
        assert_eq!(kinds(&book.tick(70 * S)), ["back"]);
    }

    #[test]
    fn equipment_down_opens_an_incident_and_equipment_back_closes_it() {
        let mut book = IncidentBook::new(policy());
        let a = site("05443");
        book.site_state(a, SiteState::Online, 0);
        book.device_state(a, true, 5 * S);
        assert_eq!(kinds(&book.tick(5 * S)), ["opened"]);
        assert_eq!(book.open_of(a).unwrap().cause, Cause::Equipment);
        book.device_state(a, false, 30 * S);
        let back = book.tick(30 * S);
        assert_eq!(
            back,
            vec![IncidentEvent::Back {
                incident: book.all()[0].id,
                at_ms: 30 * S
            }]
        );
    }

    #[test]
    fn a_site_not_yet_back_after_a_restart_keeps_its_incident_open() {
        let mut book = IncidentBook::new(policy());
        let a = site("05443");
        book.site_state(a, SiteState::Offline, 0);
        let opened = book.tick(0);
        // A restart: the book is rebuilt from the stored events; the site is not seen yet.
        let mut after = IncidentBook::new(policy());
        for event in &opened {
            after.apply(event);
        }
        after.site_state(a, SiteState::NeverSeen, 100 * S);
        assert!(
            after
                .tick(500 * S)
                .iter()
                .all(|e| e.kind() == "raised_again"),
            "not back, not closed"
        );
        assert!(after.open_of(a).is_some());
    }

    #[test]
    fn nobody_taking_it_raises_it_again_once_and_a_take_stops_that() {
        let mut book = IncidentBook::new(policy());
        let (a, b) = (site("05443"), site("05710"));
        book.site_state(a, SiteState::Offline, 0);
        book.site_state(b, SiteState::Offline, 0);
        book.tick(0);
        let taken = book
            .take(book.open_of(b).unwrap().id, "  Lan ", "operator", 30 * S)
            .unwrap();
        book.apply(&taken);
        assert!(book.tick(119 * S).is_empty());
        let raised = book.tick(121 * S);
        assert_eq!(
            kinds(&raised),
            ["raised_again"],
            "only the untaken one: {raised:?}"
        );
        assert_eq!(raised[0].incident(), book.open_of(a).unwrap().id);
        assert_eq!(raised[0].at_ms(), 120 * S);
        assert!(book.tick(400 * S).is_empty(), "raised again once");
        let b_incident = book.open_of(b).unwrap();
        assert_eq!(b_incident.taken_by().unwrap().name, "Lan");
        assert_eq!(b_incident.time_to_take_ms(), Some(30 * S));
    }

    #[test]
    fn takes_and_notes_are_checked_and_a_closed_incident_takes_notes_only() {
        let mut book = IncidentBook::new(policy());
        let a = site("05443");
        book.site_state(a, SiteState::Offline, 0);
        book.tick(0);
        let id = book.open_of(a).unwrap().id;
        assert_eq!(book.take(id, " ", "operator", 1), Err(BadAct::Name));
        assert_eq!(
            book.take(id, &"x".repeat(81), "operator", 1),
            Err(BadAct::Name)
        );
        assert_eq!(book.note(id, "Lan", "operator", "", 1), Err(BadAct::Text));
        assert_eq!(
            book.note(id, "Lan", "operator", &"x".repeat(501), 1),
            Err(BadAct::Text)
        );
        let other = Uuid::new_v4();
        assert_eq!(
            book.take(other, "Lan", "operator", 1),
            Err(BadAct::Unknown(other))
        );
        let note = book
            .note(
                id,
                "Lan",
                "operator",
                "đã gọi anh Hùng: mất điện, 5 phút",
                2,
            )
            .unwrap();
        book.apply(&note);
        book.site_state(a, SiteState::Online, 10 * S);
        book.tick(10 * S);
        book.tick(70 * S);
        assert!(!book.all()[0].is_open());
        assert_eq!(
            book.take(id, "Lan", "operator", 80 * S),
            Err(BadAct::Closed)
        );
        assert!(
            book.note(id, "Lan", "operator", "điện đã có lại", 80 * S)
                .is_ok()
        );
        assert_eq!(
            book.all()[0].notes[0].text,
            "đã gọi anh Hùng: mất điện, 5 phút"
        );
    }

    #[test]
    fn an_excused_site_opens_none_and_excusing_closes_an_open_one() {
        let mut book = IncidentBook::new(policy());
        let (a, b) = (site("05443"), site("05710"));
        book.excused(a, true, 0);
        book.site_state(a, SiteState::Offline, 5 * S);
        book.site_state(b, SiteState::Offline, 5 * S);
        assert_eq!(kinds(&book.tick(5 * S)), ["opened"]);
        assert!(book.open_of(a).is_none(), "excused: no incident");
        book.excused(b, true, 40 * S);
        let closed = book.tick(41 * S);
        assert_eq!(
            closed,
            vec![IncidentEvent::Resolved {
                incident: book.all()[0].id,
                how: Closing::Excused,
                at_ms: 40 * S
            }]
        );
        // Taken back: its trouble opens an incident again.
        book.excused(a, false, 60 * S);
        assert_eq!(kinds(&book.tick(60 * S)), ["opened"]);
    }

    #[test]
    fn only_inside_the_event_window_and_its_end_closes_what_is_open() {
        let mut book = IncidentBook::new(IncidentPolicy {
            window_start_ms: Some(100 * S),
            window_end_ms: Some(1000 * S),
            ..policy()
        });
        let a = site("05443");
        book.site_state(a, SiteState::Offline, 10 * S);
        assert!(book.tick(50 * S).is_empty(), "before the window");
        assert_eq!(kinds(&book.tick(100 * S)), ["opened"]);
        assert_eq!(
            book.open_of(a).unwrap().opened_ms,
            100 * S,
            "counted from the window's start"
        );
        let end = book.tick(1000 * S);
        assert_eq!(
            end,
            vec![IncidentEvent::Resolved {
                incident: book.all()[0].id,
                how: Closing::WindowEnd,
                at_ms: 1000 * S
            }]
        );
        book.site_state(a, SiteState::Offline, 1100 * S);
        assert!(book.tick(1100 * S).is_empty(), "after the window");
    }

    #[test]
    fn replaying_the_stored_events_rebuilds_the_same_book() {
        let mut book = IncidentBook::new(policy());
        let a = site("05443");
        let mut stored = Vec::new();
        book.site_state(a, SiteState::Offline, 0);
        stored.extend(book.tick(0));
        let id = book.open_of(a).unwrap().id;
        let take = book.take(id, "Lan", "operator", 5 * S).unwrap();
        book.apply(&take);
        stored.push(take);
        book.site_state(a, SiteState::Online, 30 * S);
        stored.extend(book.tick(30 * S));
        stored.extend(book.tick(90 * S));
        // Stored as JSON and read back.
        let text: Vec<String> = stored
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        let mut replayed = IncidentBook::new(policy());
        for line in &text {
            replayed.apply(&serde_json::from_str(line).unwrap());
        }
        assert_eq!(replayed.all(), book.all());
        assert!(
            text[1].contains(r#""kind":"taken""#) && text[1].contains(r#""name":"Lan""#),
            "{}",
            text[1]
        );
    }

    #[test]
    fn excusals_need_a_name_and_a_reason_to_excuse() {
        let a = site("05443");
        assert_eq!(
            Excusal::new(a, true, "Lan", "admin".into(), " ", 0),
            Err(BadExcusal::Reason)
        );
        assert_eq!(
            Excusal::new(a, true, "", "admin".into(), "mất điện cả xã", 0),
            Err(BadExcusal::Name)
        );
        assert!(
            Excusal::new(a, false, "Lan", "admin".into(), "", 0).is_ok(),
            "taking it back needs no reason"
        );
        let e = Excusal::new(a, true, " Lan ", "admin".into(), " sáp nhập ", 0).unwrap();
        assert_eq!((e.name.as_str(), e.reason.as_str()), ("Lan", "sáp nhập"));
    }

    #[test]
    fn totals_are_medians_of_the_time_to_take_and_the_duration() {
        let mut book = IncidentBook::new(policy());
        for (n, code) in ["00001", "00002", "00003"].iter().enumerate() {
            let s = site(code);
            book.site_state(s, SiteState::Offline, 0);
            book.tick(0);
            let id = book.open_of(s).unwrap().id;
            if n < 2 {
                let take = book
                    .take(id, "Lan", "operator", (n as i64 + 1) * 10 * S)
                    .unwrap();
                book.apply(&take);
            }
            book.site_state(s, SiteState::Online, (n as i64 + 1) * 100 * S);
        }
        book.tick(1000 * S);
        let all: Vec<&Incident> = book.all().iter().collect();
        let t = totals(&all);
        assert_eq!((t.incidents, t.open, t.never_taken), (3, 0, 1));
        assert_eq!(t.median_time_to_take_ms, Some(15 * S), "10 s and 20 s");
        assert_eq!(t.median_duration_ms, Some(200 * S), "100, 200, 300 s");
    }
}

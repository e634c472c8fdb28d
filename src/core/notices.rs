//! Roll call (điểm danh) and messages (thông báo) to bridge sites, with who has
//! confirmed. Pure: the shell delivers, stores and broadcasts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::core::sites::{Roster, SiteId, SiteIdx, SiteKind};
use crate::core::time::EpochMs;

/// Who a message is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    All,
    Xa,
    Phuong,
    /// Every site of one former district.
    District(String),
    Site(SiteId),
}

/// A `to` that names no recipients the service knows how to reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTarget {
    #[error(transparent)]
    Site(#[from] crate::core::sites::BadSiteId),
    #[error("`to` must be all, xa, phuong, district:NAME or site:CODE (got `{0}`)")]
    Unknown(String),
}

impl Target {
    /// `all`, `xa`, `phuong`, `district:NAME` or `site:CODE`.
    pub fn parse(text: &str) -> Result<Target, BadTarget> {
        match text {
            "all" => Ok(Target::All),
            "xa" => Ok(Target::Xa),
            "phuong" => Ok(Target::Phuong),
            _ => {
                if let Some(name) = text.strip_prefix("district:") {
                    Ok(Target::District(name.trim().to_string()))
                } else if let Some(code) = text.strip_prefix("site:") {
                    Ok(Target::Site(code.parse()?))
                } else {
                    Err(BadTarget::Unknown(text.to_string()))
                }
            }
        }
    }

    /// The sites this reaches.
    pub fn recipients(&self, roster: &Roster) -> Vec<SiteIdx> {
        roster
            .sites()
            .iter()
            .enumerate()
            .filter(|(_, site)| match self {
                Target::All => true,
                Target::Xa => site.kind == SiteKind::Xa,
                Target::Phuong => site.kind == SiteKind::Phuong,
                Target::District(name) => &site.former_district == name,
                Target::Site(id) => site.id == *id,
            })
            .map(|(i, _)| i)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    RollCall,
    Message,
}

/// A roll call or a message, and the sites that confirmed it.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub id: Uuid,
    pub kind: NoticeKind,
    pub text: String,
    /// `info`, `warning` or `urgent` for messages; `roll_call` for a roll call.
    pub level: String,
    pub target: Target,
    pub sent_ms: EpochMs,
    /// Roll calls: confirmations after this are late.
    pub deadline_ms: Option<EpochMs>,
    pub sender: String,
    #[serde(skip)]
    pub recipients: Vec<SiteIdx>,
    /// Site index → when it confirmed.
    #[serde(skip)]
    pub acks: BTreeMap<SiteIdx, EpochMs>,
}

impl Notice {
    pub fn is_recipient(&self, site: SiteIdx) -> bool {
        self.recipients.contains(&site)
    }
}

/// All notices so far, newest last.
#[derive(Clone, Debug, Default)]
pub struct Notices {
    notices: Vec<Notice>,
}

impl Notices {
    pub fn add(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    pub fn all(&self) -> &[Notice] {
        &self.notices
    }

    /// The latest roll call, if any.
    pub fn roll_call(&self) -> Option<&Notice> {
        self.notices
            .iter()
            .rev()
            .find(|n| n.kind == NoticeKind::RollCall)
    }

    /// Records a site's confirmation; `Some` the first time, `None` for a repeat or a
    /// notice that was not for this site.
    pub fn ack(&mut self, id: Uuid, site: SiteIdx, now: EpochMs) -> Option<&Notice> {
        let notice = self.notices.iter_mut().find(|n| n.id == id)?;
        if !notice.is_recipient(site) || notice.acks.contains_key(&site) {
            return None;
        }
        notice.acks.insert(site, now);
        Some(notice)
    }

    /// What a site still has to confirm: the latest roll call and unconfirmed messages.
    pub fn pending_for(&self, site: SiteIdx) -> Vec<&Notice> {
        let latest_roll_call = self.roll_call().map(|n| n.id);
        self.notices
            .iter()
            .filter(|n| n.is_recipient(site) && !n.acks.contains_key(&site))
            .filter(|n| n.kind == NoticeKind::Message || Some(n.id) == latest_roll_call)
            .collect()
    }
}

/// A wall alert someone marked "Đã biết" (acknowledged): an append-only record of who
/// and when. The alert itself is the wall's (a site offline since a time, its
/// equipment down); its key names it, e.g. `offline:05443:1764650000000`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dismissal {
    pub alert: String,
    pub site: Option<SiteId>,
    /// The alert's words as the person saw them.
    pub text: String,
    /// The name the person typed on the wall.
    pub name: String,
    /// The key's role (`operator`, `admin`, …).
    pub by: String,
    pub at_ms: EpochMs,
}

/// Longest alert key, alert text and staff name a dismissal may carry.
pub const MAX_ALERT_KEY_CHARS: usize = 120;
pub const MAX_ALERT_TEXT_CHARS: usize = 300;
pub const MAX_STAFF_NAME_CHARS: usize = 80;

/// Why a dismissal is refused (nothing is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDismissal {
    #[error("`alert` must be 1 to {MAX_ALERT_KEY_CHARS} letters, digits or `:_.-`")]
    Key,
    #[error("`text` must be at most {MAX_ALERT_TEXT_CHARS} characters")]
    Text,
    #[error("`name` must be 1 to {MAX_STAFF_NAME_CHARS} characters: who marks it")]
    Name,
}

impl Dismissal {
    /// Checks what the page sent; trims the text and the name.
    pub fn new(
        alert: &str,
        site: Option<SiteId>,
        text: &str,
        name: &str,
        by: String,
        at_ms: EpochMs,
    ) -> Result<Dismissal, BadDismissal> {
        let key_ok = !alert.is_empty()
            && alert.chars().count() <= MAX_ALERT_KEY_CHARS
            && alert
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":_.-".contains(c));
        if !key_ok {
            return Err(BadDismissal::Key);
        }
        let (text, name) = (text.trim(), name.trim());
        if text.chars().count() > MAX_ALERT_TEXT_CHARS {
            return Err(BadDismissal::Text);
        }
        if name.is_empty() || name.chars().count() > MAX_STAFF_NAME_CHARS {
            return Err(BadDismissal::Name);
        }
        Ok(Dismissal {
            alert: alert.to_string(),
            site,
            text: text.to_string(),
            name: name.to_string(),
            by,
            at_ms,
        })
    }
}

/// A site's outage that has ended: a wall alert that cleared itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndedOutage {
    pub site: String,
    pub from_ms: EpochMs,
    pub to_ms: EpochMs,
}

/// The outages that ended at or after `since_ms`, newest first, at most `limit`: from
/// each site's transitions (state, time), oldest first.
pub fn ended_outages(
    by_site: &std::collections::HashMap<String, Vec<(crate::core::liveness::SiteState, EpochMs)>>,
    since_ms: EpochMs,
    limit: usize,
) -> Vec<EndedOutage> {
    use crate::core::liveness::SiteState;
    let mut ended = Vec::new();
    for (site, transitions) in by_site {
        let mut down_since = None;
        for (state, at) in transitions {
            match (down_since, *state == SiteState::Offline) {
                (None, true) => down_since = Some(*at),
                (Some(from), false) => {
                    if *at >= since_ms {
                        ended.push(EndedOutage {
                            site: site.clone(),
                            from_ms: from,
                            to_ms: *at,
                        });
                    }
                    down_since = None;
                }
                _ => {}
            }
        }
    }
    ended.sort_by(|a, b| b.to_ms.cmp(&a.to_ms).then_with(|| a.site.cmp(&b.site)));
    ended.truncate(limit);
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster::parse("s.csv", include_bytes!("../../config/sites.csv")).unwrap()
    }

    fn notice(kind: NoticeKind, target: Target, roster: &Roster) -> Notice {
        Notice {
            id: Uuid::new_v4(),
            kind,
            text: "t".into(),
            level: "info".into(),
            recipients: target.recipients(roster),
            target,
            sent_ms: 0,
            deadline_ms: None,
            sender: "operator".into(),
            acks: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_reach_the_right_sites() {
        let roster = roster();
        assert_eq!(Target::All.recipients(&roster).len(), 92);
        assert_eq!(Target::Xa.recipients(&roster).len(), 77);
        assert_eq!(Target::Phuong.recipients(&roster).len(), 15);
        assert_eq!(
            Target::parse("district:Huyện Ba Bể")
                .unwrap()
                .recipients(&roster)
                .len(),
            5
        );
        assert_eq!(
            Target::parse("site:05443")
                .unwrap()
                .recipients(&roster)
                .len(),
            1
        );
        assert!(Target::parse("everyone").is_err());
        assert!(Target::parse("site:abc").is_err());
    }

    #[test]
    fn a_site_confirms_once_and_only_what_was_for_it() {
        let roster = roster();
        let mut notices = Notices::default();
        let message = notice(
            NoticeKind::Message,
            Target::Site("05443".parse().unwrap()),
            &roster,
        );
        let id = message.id;
        notices.add(message);
        let own = roster.index_of("05443".parse().unwrap()).unwrap();
        let other = roster.index_of("05710".parse().unwrap()).unwrap();
        assert_eq!(notices.pending_for(own).len(), 1);
        assert!(notices.ack(id, other, 5).is_none(), "not for that site");
        assert!(notices.ack(id, own, 5).is_some());
        assert!(
            notices.ack(id, own, 6).is_none(),
            "a repeat changes nothing"
        );
        assert!(notices.pending_for(own).is_empty());
    }

    #[test]
    fn only_the_latest_roll_call_is_pending() {
        let roster = roster();
        let mut notices = Notices::default();
        notices.add(notice(NoticeKind::RollCall, Target::All, &roster));
        let latest = notice(NoticeKind::RollCall, Target::All, &roster);
        let latest_id = latest.id;
        notices.add(latest);
        let pending = notices.pending_for(0);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, latest_id);
    }

    #[test]
    fn a_dismissal_needs_a_plain_key_and_a_name_and_bounded_text() {
        let ok = Dismissal::new(
            "offline:05443:1764650000000",
            None,
            " Mất kết nối ",
            " Lan ",
            "operator".into(),
            5,
        );
        let ok = ok.unwrap();
        assert_eq!((ok.text.as_str(), ok.name.as_str()), ("Mất kết nối", "Lan"));
        let long = "x".repeat(MAX_ALERT_KEY_CHARS + 1);
        for key in ["", "offline 05443", "<script>", long.as_str()] {
            assert_eq!(
                Dismissal::new(key, None, "", "Lan", "operator".into(), 5),
                Err(BadDismissal::Key),
                "{key}"
            );
        }
        assert_eq!(
            Dismissal::new("a", None, "", "  ", "operator".into(), 5),
            Err(BadDismissal::Name)
        );
        let text = "á".repeat(MAX_ALERT_TEXT_CHARS + 1);
        assert_eq!(
            Dismissal::new("a", None, &text, "Lan", "operator".into(), 5),
            Err(BadDismissal::Text)
        );
    }

    #[test]
    fn an_outage_that_ended_is_a_past_alert_and_one_going_on_is_not() {
        use crate::core::liveness::SiteState::*;
        let by_site = std::collections::HashMap::from([
            (
                "05443".to_string(),
                vec![(Online, 0), (Offline, 10), (Online, 20), (Offline, 30)],
            ),
            (
                "05710".to_string(),
                vec![(Online, 0), (Degraded, 5), (Offline, 8), (NeverSeen, 25)],
            ),
        ]);
        let ended = ended_outages(&by_site, 0, 10);
        assert_eq!(
            ended,
            vec![
                EndedOutage {
                    site: "05710".into(),
                    from_ms: 8,
                    to_ms: 25
                },
                EndedOutage {
                    site: "05443".into(),
                    from_ms: 10,
                    to_ms: 20
                },
            ]
        );
        assert_eq!(
            ended_outages(&by_site, 21, 10).len(),
            1,
            "only those ended since"
        );
        assert_eq!(ended_outages(&by_site, 0, 1).len(), 1, "at most the limit");
    }
}

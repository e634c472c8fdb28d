//! Delivers roll calls and messages to bridge sites, records confirmations (stored:
//! they are evidence for the report) and tells the wall.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::params;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::Clock;
use crate::core::notices::{Notice, NoticeKind, Notices, Target};
use crate::core::sites::{Roster, SiteIdx};
use crate::core::time::EpochMs;
use crate::protocol::ServerMsg;
use crate::services::hub::{Hub, Topic};
use crate::store::{Store, StoreError};

pub struct Noticeboard {
    notices: Mutex<Notices>,
    store: Store,
    hub: Arc<Hub>,
    roster: Arc<Roster>,
    clock: Arc<dyn Clock>,
}

impl Noticeboard {
    /// Reloads every notice and confirmation from the store.
    pub fn restore(
        store: Store,
        hub: Arc<Hub>,
        roster: Arc<Roster>,
        clock: Arc<dyn Clock>,
    ) -> Result<Noticeboard, StoreError> {
        let mut notices = Notices::default();
        for (mut notice, acks) in store.load_notices()? {
            notice.recipients = notice.target.recipients(&roster);
            notice.acks = acks
                .into_iter()
                .filter_map(|(site, at)| Some((roster.index_of(site.parse().ok()?)?, at)))
                .collect();
            notices.add(notice);
        }
        Ok(Noticeboard {
            notices: Mutex::new(notices),
            store,
            hub,
            roster,
            clock,
        })
    }

    fn notices(&self) -> MutexGuard<'_, Notices> {
        self.notices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a roll call of every site; confirmations after `deadline_seconds` are late.
    pub async fn roll_call(
        &self,
        deadline_seconds: u64,
        sender: &str,
    ) -> Result<Value, StoreError> {
        let now = self.clock.now_ms();
        self.publish(Notice {
            id: Uuid::new_v4(),
            kind: NoticeKind::RollCall,
            text: "Điểm danh: xác nhận có mặt".into(),
            level: "roll_call".into(),
            recipients: Target::All.recipients(&self.roster),
            target: Target::All,
            sent_ms: now,
            deadline_ms: Some(now + deadline_seconds as i64 * 1000),
            sender: sender.to_string(),
            acks: BTreeMap::new(),
        })
        .await
    }

    /// Sends a message to the sites of `target`.
    pub async fn message(
        &self,
        text: String,
        level: String,
        target: Target,
        sender: &str,
    ) -> Result<Value, StoreError> {
        self.publish(Notice {
            id: Uuid::new_v4(),
            kind: NoticeKind::Message,
            text,
            level,
            recipients: target.recipients(&self.roster),
            target,
            sent_ms: self.clock.now_ms(),
            deadline_ms: None,
            sender: sender.to_string(),
            acks: BTreeMap::new(),
        })
        .await
    }

    /// Stores, then delivers to the connected recipients and tells the wall.
    async fn publish(&self, notice: Notice) -> Result<Value, StoreError> {
        let row = notice.clone();
        let stored = self
            .store
            .write_durable(move |tx| {
                tx.execute(
                    "INSERT INTO notices (id, kind, text, level, target, sent_ms, deadline_ms, sender)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        row.id.to_string(),
                        serde_json::to_string(&row.kind).expect("serializes"),
                        row.text,
                        row.level,
                        serde_json::to_string(&row.target).expect("serializes"),
                        row.sent_ms,
                        row.deadline_ms,
                        row.sender,
                    ],
                )
                .map(drop)
            })
            .await;
        crate::store::keep_going_unless_rejected(stored)?;
        let frame = frame_for(&notice).to_json();
        let delivered = self.hub.send_to_sites(&notice.recipients, &frame.into());
        let summary = self.summary_of(&notice);
        self.notices().add(notice);
        let event = json!({"type": "notice", "notice": summary.clone()});
        self.hub.publish(Topic::Sites, |seq| with_seq(event, seq));
        Ok(json!({"notice": summary, "delivered_now": delivered}))
    }

    /// A site confirmed a notice (its `ack`).
    pub fn ack(&self, site: SiteIdx, id: Uuid) {
        let now = self.clock.now_ms();
        if self.notices().ack(id, site, now).is_none() {
            return;
        }
        let site_id = self.roster.site(site).id;
        self.store.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO notice_acks (notice, site, at_ms) VALUES (?1, ?2, ?3)",
                params![id.to_string(), site_id.as_str(), now],
            )
            .map(drop)
        });
        let event = json!({"type": "ack", "notice": id, "site": site_id, "at_ms": now});
        self.hub.publish(Topic::Sites, |seq| with_seq(event, seq));
    }

    /// Frames a site that just connected has still to confirm.
    pub fn pending_frames(&self, site: SiteIdx) -> Vec<ServerMsg> {
        self.notices()
            .pending_for(site)
            .into_iter()
            .map(frame_for)
            .collect()
    }

    /// Every notice with who confirmed and who has not.
    pub fn summaries(&self) -> Vec<Value> {
        self.notices()
            .all()
            .iter()
            .map(|n| self.summary_of(n))
            .collect()
    }

    /// The latest roll call's summary.
    pub fn roll_call_summary(&self) -> Option<Value> {
        self.notices().roll_call().map(|n| self.summary_of(n))
    }

    /// When a site confirmed the latest roll call, if it did.
    pub fn roll_call_confirmed(&self, site: SiteIdx) -> Option<EpochMs> {
        self.notices()
            .roll_call()
            .and_then(|n| n.acks.get(&site).copied())
    }

    fn summary_of(&self, notice: &Notice) -> Value {
        let confirmed: Vec<Value> = notice
            .acks
            .iter()
            .map(|(site, at)| json!({"site": self.roster.site(*site).id, "at_ms": at}))
            .collect();
        let missing: Vec<_> = notice
            .recipients
            .iter()
            .filter(|site| !notice.acks.contains_key(site))
            .map(|site| self.roster.site(*site).id)
            .collect();
        let mut value = json!(notice);
        value["recipients"] = json!(notice.recipients.len());
        value["confirmed"] = json!(confirmed);
        value["missing"] = json!(missing);
        value
    }
}

fn frame_for(notice: &Notice) -> ServerMsg {
    match notice.kind {
        NoticeKind::RollCall => ServerMsg::RollCall {
            id: notice.id,
            deadline_ms: notice.deadline_ms.unwrap_or(notice.sent_ms),
        },
        NoticeKind::Message => ServerMsg::Message {
            id: notice.id,
            text: notice.text.clone(),
            level: notice.level.clone(),
        },
    }
}

fn with_seq(mut event: Value, seq: u64) -> String {
    event["seq"] = json!(seq);
    event.to_string()
}

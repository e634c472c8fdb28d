//! Delivers roll calls and messages to bridge sites, records confirmations (stored:
//! they are evidence for the report) and tells the wall.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::Clock;
use crate::core::notices::{Dismissal, Notice, NoticeKind, Notices, Target};
use crate::core::sites::{Roster, SiteIdx};
use crate::core::time::EpochMs;
use crate::protocol::{Confirmation, Frame, LiveMsg, NoticeSummary, ServerMsg};
use crate::services::hub::Hub;
use crate::store::{Store, StoreError};

pub struct Noticeboard {
    /// Guards every notice and its confirmations. A std `Mutex` held for one core
    /// call (add, ack, a summary); the notice is stored before it is added, with the
    /// lock released; never across an await.
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
        let stored = self.store.record_notice(&notice).await;
        crate::store::keep_going_unless_rejected(stored)?;
        let frame = Frame::from(&frame_for(&notice));
        let delivered = self.hub.send_to_sites(&notice.recipients, &frame);
        let summary = self.summary_of(&notice);
        self.notices().add(notice);
        self.hub.publish(LiveMsg::Notice {
            notice: summary.clone(),
        });
        Ok(json!({"notice": summary, "delivered_now": delivered}))
    }

    /// Records that `dismissal`'s alert was seen and handled, then tells every wall.
    pub async fn dismiss(&self, dismissal: Dismissal) -> Result<Dismissal, StoreError> {
        let stored = self.store.record_dismissal(&dismissal).await;
        crate::store::keep_going_unless_rejected(stored)?;
        self.hub.publish(LiveMsg::Dismissal(dismissal.clone()));
        Ok(dismissal)
    }

    /// The latest alerts marked "Đã biết", oldest first.
    pub async fn dismissals(&self) -> Result<Vec<Dismissal>, StoreError> {
        self.store.recent_dismissals().await
    }

    /// A site confirmed a notice (its `ack`).
    pub fn ack(&self, site: SiteIdx, id: Uuid) {
        let now = self.clock.now_ms();
        if self.notices().ack(id, site, now).is_none() {
            return;
        }
        let site_id = self.roster.site(site).id;
        self.store.record_ack(id, site_id, now);
        self.hub.publish(LiveMsg::Ack {
            notice: id,
            site: site_id,
            at_ms: now,
        });
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
    pub fn summaries(&self) -> Vec<NoticeSummary> {
        self.notices()
            .all()
            .iter()
            .map(|n| self.summary_of(n))
            .collect()
    }

    /// The latest roll call's summary.
    pub fn roll_call_summary(&self) -> Option<NoticeSummary> {
        self.notices().roll_call().map(|n| self.summary_of(n))
    }

    /// When a site confirmed the latest roll call, if it did.
    pub fn roll_call_confirmed(&self, site: SiteIdx) -> Option<EpochMs> {
        self.notices()
            .roll_call()
            .and_then(|n| n.acks.get(&site).copied())
    }

    fn summary_of(&self, notice: &Notice) -> NoticeSummary {
        let confirmed = notice
            .acks
            .iter()
            .map(|(site, at)| Confirmation {
                site: self.roster.site(*site).id,
                at_ms: *at,
            })
            .collect();
        let missing = notice
            .recipients
            .iter()
            .filter(|site| !notice.acks.contains_key(site))
            .map(|site| self.roster.site(*site).id)
            .collect();
        NoticeSummary {
            notice: notice.clone(),
            recipients: notice.recipients.len(),
            confirmed,
            missing,
        }
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

//! Roll calls and messages, and the sites' confirmations.

use std::collections::HashMap;

use rusqlite::params;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::core::notices::Notice;
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

impl Store {
    /// Stores a notice before it is sent (awaits the disk).
    pub async fn record_notice(&self, notice: &Notice) -> Result<(), StoreError> {
        let row = notice.clone();
        self.write_durable(move |tx| {
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
        .await
    }

    /// Queues a site's confirmation of a notice (the first one counts).
    pub fn record_ack(&self, notice: Uuid, site: SiteId, at_ms: EpochMs) {
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO notice_acks (notice, site, at_ms) VALUES (?1, ?2, ?3)",
                params![notice.to_string(), site.as_str(), at_ms],
            )
            .map(drop)
        });
    }

    /// Every notice (oldest first) with its confirmations (site code, time).
    #[allow(clippy::type_complexity)]
    pub fn load_notices(&self) -> Result<Vec<(Notice, Vec<(String, EpochMs)>)>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut acks: HashMap<String, Vec<(String, EpochMs)>> = HashMap::new();
        let mut stmt = conn.prepare("SELECT notice, site, at_ms FROM notice_acks")?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (notice, site, at) = row?;
            acks.entry(notice).or_default().push((site, at));
        }
        let mut stmt = conn.prepare(
            "SELECT id, kind, text, level, target, sent_ms, deadline_ms, sender FROM notices ORDER BY sent_ms, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut notices = Vec::new();
        for row in rows {
            let (id, kind, text, level, target, sent_ms, deadline_ms, sender) = row?;
            let (Ok(parsed_id), Ok(kind), Ok(target)) = (
                id.parse(),
                serde_json::from_str(&kind),
                serde_json::from_str(&target),
            ) else {
                continue; // written by this program: cannot happen short of manual edits
            };
            let notice = Notice {
                id: parsed_id,
                kind,
                text,
                level,
                target,
                sent_ms,
                deadline_ms,
                sender,
                recipients: Vec::new(),
                acks: Default::default(),
            };
            notices.push((notice, acks.remove(&id).unwrap_or_default()));
        }
        Ok(notices)
    }
}

//! The timer's commands, each stored with who gave it and the snapshot it answered.

use rusqlite::params;

use super::{Store, StoreError};
use crate::core::time::EpochMs;

/// A stored timer command.
#[derive(Clone, Debug)]
pub struct StoredCommand {
    pub id: i64,
    pub at_ms: EpochMs,
    /// The command as JSON.
    pub command: String,
    pub command_id: Option<String>,
    /// The snapshot answered, as JSON.
    pub result: String,
    /// The id of the slot the command named (`Timer::named_slot_id`).
    pub slot_id: Option<String>,
}

/// A timer command about to be stored: it is applied only once it is on disk.
#[derive(Clone, Debug)]
pub struct NewCommand {
    pub at_ms: EpochMs,
    pub actor: String,
    /// The command as JSON.
    pub command: String,
    pub command_id: Option<String>,
    pub rev: i64,
    /// The snapshot answered, as JSON.
    pub result: String,
    /// The id of the slot the command named (`Timer::named_slot_id`).
    pub slot_id: Option<String>,
}

impl Store {
    /// Stores a timer command (awaits the disk).
    pub async fn record_timer_command(&self, row: NewCommand) -> Result<(), StoreError> {
        self.write_durable(move |tx| {
            tx.execute(
                "INSERT INTO timer_commands (at_ms, actor, command, command_id, rev, result, slot_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.at_ms,
                    row.actor,
                    row.command,
                    row.command_id,
                    row.rev,
                    row.result,
                    row.slot_id
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Every applied timer command, oldest first.
    pub fn load_timer_commands(&self) -> Result<Vec<StoredCommand>, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn.prepare(
            "SELECT id, at_ms, command, command_id, result, slot_id FROM timer_commands ORDER BY id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredCommand {
                id: row.get(0)?,
                at_ms: row.get(1)?,
                command: row.get(2)?,
                command_id: row.get(3)?,
                result: row.get(4)?,
                slot_id: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

//! What one key may make the service do and store, per window of time (README
//! "Security"): bridge connects per site, rehearsal attempts per site, notices and
//! alert dismissals, incident takes and notes per staff key. Each is refused before anything is stored.

use std::sync::Mutex;

use crate::auth::Caller;
use crate::config::Config;
use crate::core::budget::{Budget, Ledger, Spent};
use crate::core::sites::SiteIdx;
use crate::core::time::EpochMs;

/// The ledgers. Each a std `Mutex` held for one map update, never across an await.
pub struct Limits {
    connects: Mutex<Ledger<SiteIdx>>,
    attempts: Mutex<Ledger<SiteIdx>>,
    notices: Mutex<Ledger<Caller>>,
    dismissals: Mutex<Ledger<Caller>>,
    incident_acts: Mutex<Ledger<Caller>>,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        fn per<K: std::hash::Hash + Eq>(limit: u32, window_ms: EpochMs) -> Mutex<Ledger<K>> {
            Mutex::new(Ledger::new(Budget { limit, window_ms }))
        }
        Limits {
            connects: per(config.protocol.max_connects_per_minute, 60_000),
            attempts: per(config.rehearsal.max_attempts_per_hour, 3_600_000),
            notices: per(config.protocol.max_notices_per_minute, 60_000),
            dismissals: per(config.protocol.max_dismissals_per_minute, 60_000),
            incident_acts: per(config.incidents.max_acts_per_minute, 60_000),
        }
    }

    /// One more bridge connection of `site`.
    pub fn connect(&self, site: SiteIdx, now: EpochMs) -> Result<(), Spent> {
        spend(&self.connects, site, now)
    }

    /// One more rehearsal check of `site`.
    pub fn rehearsal_attempt(&self, site: SiteIdx, now: EpochMs) -> Result<(), Spent> {
        spend(&self.attempts, site, now)
    }

    /// One more roll call or message from `sender`.
    pub fn notice(&self, sender: Caller, now: EpochMs) -> Result<(), Spent> {
        spend(&self.notices, sender, now)
    }

    /// One more wall alert marked "Đã biết" by `caller`.
    pub fn dismissal(&self, caller: Caller, now: EpochMs) -> Result<(), Spent> {
        spend(&self.dismissals, caller, now)
    }
}

impl Limits {
    /// One more incident take, note or excusal by `caller`.
    pub fn incident_act(&self, caller: Caller, now: EpochMs) -> Result<(), Spent> {
        spend(&self.incident_acts, caller, now)
    }
}

fn spend<K: std::hash::Hash + Eq>(
    ledger: &Mutex<Ledger<K>>,
    holder: K,
    now: EpochMs,
) -> Result<(), Spent> {
    ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .spend(holder, now)
}

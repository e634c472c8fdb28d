//! How much one peer may do in a window of time: connects per site per minute,
//! rehearsal attempts per site per hour, messages per key, resyncs per page. A fixed
//! window per holder: simple, and the most it lets through is twice the limit at a
//! window's edge, which is the bound README states.

use std::collections::HashMap;
use std::hash::Hash;

use crate::core::time::EpochMs;

/// `limit` per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub window_ms: EpochMs,
}

/// Over the budget: when the holder may try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spent {
    pub retry_after_ms: EpochMs,
}

impl Spent {
    /// Whole seconds to wait, at least one: what an error message says.
    pub fn retry_after_seconds(&self) -> i64 {
        (self.retry_after_ms + 999).max(1000) / 1000
    }
}

/// Each holder's use of one budget.
#[derive(Debug)]
pub struct Ledger<K> {
    budget: Budget,
    used: HashMap<K, (EpochMs, u32)>,
}

impl<K: Hash + Eq> Ledger<K> {
    pub fn new(budget: Budget) -> Ledger<K> {
        Ledger {
            budget,
            used: HashMap::new(),
        }
    }

    /// Counts one more use by `holder` at `now`, or says it is over the budget (and
    /// then counts nothing).
    pub fn spend(&mut self, holder: K, now: EpochMs) -> Result<(), Spent> {
        let window_ms = self.budget.window_ms;
        let (started, count) = self.used.entry(holder).or_insert((now, 0));
        if now - *started >= window_ms || now < *started {
            (*started, *count) = (now, 0);
        }
        if *count >= self.budget.limit {
            return Err(Spent {
                retry_after_ms: *started + window_ms - now,
            });
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_has_its_own_window_and_a_refusal_says_when_to_retry() {
        let mut ledger = Ledger::new(Budget {
            limit: 2,
            window_ms: 60_000,
        });
        assert_eq!(ledger.spend("a", 0), Ok(()));
        assert_eq!(ledger.spend("a", 10_000), Ok(()));
        let refused = ledger.spend("a", 20_000).unwrap_err();
        assert_eq!(refused.retry_after_ms, 40_000);
        assert_eq!(refused.retry_after_seconds(), 40);
        assert_eq!(ledger.spend("b", 20_000), Ok(()), "another holder");
        assert!(ledger.spend("a", 59_999).is_err());
        assert_eq!(ledger.spend("a", 60_000), Ok(()), "a new window");
        assert_eq!(
            Spent { retry_after_ms: 1 }.retry_after_seconds(),
            1,
            "never 0 s"
        );
    }

    #[test]
    fn a_clock_stepped_back_starts_a_new_window_rather_than_locking_out() {
        let mut ledger = Ledger::new(Budget {
            limit: 1,
            window_ms: 60_000,
        });
        ledger.spend((), 100_000).unwrap();
        assert!(ledger.spend((), 100_001).is_err());
        assert_eq!(ledger.spend((), 50_000), Ok(()));
    }
}

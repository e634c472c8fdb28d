//! Active checks of a site's video codec or MCU endpoint (the `probe` host:port of
//! its roster row): is the hall's equipment answering, not only the PC? Pure.

use serde::Serialize;

use crate::core::time::EpochMs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Unknown,
    Up,
    Down,
}

impl DeviceState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceState::Unknown => "unknown",
            DeviceState::Up => "up",
            DeviceState::Down => "down",
        }
    }
}

/// A change of the device's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceTransition {
    pub from: DeviceState,
    pub to: DeviceState,
    pub at_ms: EpochMs,
    pub reason: String,
}

/// The checks of one device so far.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceCheck {
    pub state: DeviceState,
    pub consecutive_failures: u32,
    pub last_check_ms: Option<EpochMs>,
    /// TCP connect time of the last successful check.
    pub last_connect_ms: Option<f64>,
    pub last_error: Option<String>,
    /// When it entered its state (the wall's alert for a down device is named by it).
    pub since_ms: Option<EpochMs>,
}

impl Default for DeviceCheck {
    fn default() -> Self {
        Self {
            state: DeviceState::Unknown,
            consecutive_failures: 0,
            last_check_ms: None,
            last_connect_ms: None,
            last_error: None,
            since_ms: None,
        }
    }
}

impl DeviceCheck {
    /// Records one check; down after `failures_to_down` failures in a row, up at the
    /// first success.
    pub fn record(
        &mut self,
        result: Result<f64, String>,
        now: EpochMs,
        failures_to_down: u32,
    ) -> Option<DeviceTransition> {
        self.last_check_ms = Some(now);
        let (to, reason) = match result {
            Ok(connect_ms) => {
                self.consecutive_failures = 0;
                self.last_connect_ms = Some(connect_ms);
                self.last_error = None;
                (DeviceState::Up, format!("answered in {connect_ms:.0} ms"))
            }
            Err(error) => {
                self.consecutive_failures += 1;
                self.last_error = Some(error.clone());
                if self.consecutive_failures < failures_to_down {
                    return None;
                }
                (
                    DeviceState::Down,
                    format!(
                        "{} failed checks in a row: {error}",
                        self.consecutive_failures
                    ),
                )
            }
        };
        if to == self.state {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        self.since_ms = Some(now);
        Some(DeviceTransition {
            from,
            to,
            at_ms: now,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_are_down_and_one_success_is_up() {
        let mut device = DeviceCheck::default();
        let up = device.record(Ok(2.0), 1, 3).unwrap();
        assert_eq!((up.from, up.to), (DeviceState::Unknown, DeviceState::Up));
        assert!(device.record(Err("refused".into()), 2, 3).is_none());
        assert!(device.record(Err("refused".into()), 3, 3).is_none());
        let down = device.record(Err("refused".into()), 4, 3).unwrap();
        assert_eq!((down.to, down.at_ms), (DeviceState::Down, 4));
        assert_eq!(device.since_ms, Some(4), "down since its transition");
        assert!(down.reason.contains("3 failed checks"));
        assert!(
            device.record(Err("refused".into()), 5, 3).is_none(),
            "already down"
        );
        assert_eq!(device.record(Ok(1.0), 6, 3).unwrap().to, DeviceState::Up);
    }

    #[test]
    fn a_failure_between_successes_changes_nothing() {
        let mut device = DeviceCheck::default();
        device.record(Ok(1.0), 1, 3);
        assert!(device.record(Err("timeout".into()), 2, 3).is_none());
        assert!(device.record(Ok(1.0), 3, 3).is_none());
        assert_eq!(device.consecutive_failures, 0);
    }
}

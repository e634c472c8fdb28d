//! The shell around the speaker timer: one command at a time, stored before it is
//! answered, then sent to every bridge and the live feed. Also the two things the
//! timer does by itself: pause when the presenting site drops, and auto_stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::core::agenda::{Agenda, Venue};
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;
use crate::core::timer::{
    Command, SlotState, Timer, TimerError, TimerPolicy, TimerSnapshot, TimerState,
};
use crate::metrics::Metrics;
use crate::protocol::{Frame, LiveMsg, ServerMsg};
use crate::services::hub::Hub;
use crate::store::{NewCommand, Store, StoreError};

/// Who gave a command the service gave itself.
pub const SYSTEM: &str = "system";

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Refused(#[from] TimerError),
    /// Not stored, so not done: the answer must not claim otherwise.
    #[error("the command could not be stored, nothing changed: {0}")]
    NotStored(#[from] StoreError),
}

pub struct Timekeeper {
    /// Guards the timer itself. A std `Mutex`: held only to compute the next state or
    /// a snapshot (pure core code, microseconds); never across an await — the durable
    /// store write happens with it released, under `lane`.
    timer: Mutex<Timer>,
    /// Commands run one at a time, in the order they are stored. A tokio `Mutex`
    /// because it *is* held across the await of the durable store write: a second
    /// command waits for the first to be on disk. Take `timer` inside it, never the
    /// other way round.
    lane: tokio::sync::Mutex<()>,
    /// Overtime already added to `diemcau_timer_overtime_seconds_total`: a counter only
    /// grows, so an undone stop is not counted twice when the slot ends again.
    overtime_counted_ms: AtomicI64,
    /// Guards the answer given to each `command_id`, so a retry changes nothing. A std
    /// `Mutex` held for one map look-up or insert; never across an await.
    answered: Mutex<HashMap<String, Value>>,
    /// Wakes the auto_stop task when the deadline may have moved.
    changed: Notify,
    pause_on_site_loss: bool,
    store: Store,
    hub: Arc<Hub>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

/// Why the timer cannot be rebuilt from the store at start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The agenda was edited so that stored timings would show under other units.
    #[error(
        "the agenda would move stored timings onto other units: {0}. Put those rows back as \
         they were when the timings were taken (or start on a new --data-dir; the old one keeps \
         its record)"
    )]
    ResultsWouldMove(String),
}

impl Timekeeper {
    /// Rebuilds the timer by replaying the stored commands at their stored times.
    pub fn restore(
        agenda: &Agenda,
        policy: TimerPolicy,
        pause_on_site_loss: bool,
        store: Store,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Timekeeper, RestoreError> {
        let mut timer = Timer::new(agenda, policy);
        let mut answered = HashMap::new();
        let stored_commands = store.load_timer_commands()?;
        // Each answer names the slot it left current, with its unit: replayed on the
        // agenda as loaded now, every command must leave the same unit there, or an
        // edited CSV would move that timing onto another unit.
        let mut moved: Vec<crate::core::agenda::MovedResult> = Vec::new();
        for stored in stored_commands {
            let answer: Option<Value> = serde_json::from_str(&stored.result).ok();
            let slot = answer.as_ref().map(|a| &a["slot"]);
            let answered_id = slot.and_then(|s| s["id"].as_str());
            let replayed = serde_json::from_str::<Command>(&stored.command)
                .map_err(|e| e.to_string())
                .and_then(|command| {
                    timer
                        .replay(
                            &command,
                            stored.slot_id.as_deref(),
                            answered_id,
                            stored.at_ms,
                        )
                        .map_err(|e| e.to_string())
                });
            if let Err(reason) = replayed {
                // Only an agenda edited between runs can make a stored command fail.
                tracing::warn!(id = stored.id, %reason, "stored timer command no longer applies; skipped");
                continue;
            }
            let named = slot.and_then(|s| Some((s["order"].as_u64()?, s["unit"].as_str()?)));
            if let Some(m) =
                named.and_then(|(order, unit)| timer.moved_result(order as u32, answered_id, unit))
                && !moved.iter().any(|seen| seen.order == m.order)
            {
                moved.push(m);
            }
            if let (Some(id), Some(answer)) = (stored.command_id, answer) {
                answered.insert(id, answer);
            }
        }
        if !moved.is_empty() {
            moved.sort_by_key(|m| m.order);
            return Err(RestoreError::ResultsWouldMove(
                moved
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        let overtime_counted_ms = timer.overtime_total_ms();
        metrics.timer_overtime(overtime_counted_ms);
        Ok(Timekeeper {
            timer: Mutex::new(timer),
            lane: tokio::sync::Mutex::new(()),
            overtime_counted_ms: AtomicI64::new(overtime_counted_ms),
            answered: Mutex::new(answered),
            changed: Notify::new(),
            pause_on_site_loss,
            store,
            hub,
            clock,
            metrics,
        })
    }

    fn timer(&self) -> MutexGuard<'_, Timer> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> TimerSnapshot {
        self.timer().snapshot(self.clock.now_ms())
    }

    /// The `timer` frame for a bridge that just connected.
    pub fn bridge_frame(&self) -> ServerMsg {
        ServerMsg::Timer(self.snapshot())
    }

    pub fn reports(&self) -> Vec<crate::core::timer::SlotReport> {
        self.timer().reports(self.clock.now_ms())
    }

    /// Overtime of every finished run, reset ones too (`diemcau_timer_overtime_seconds_total`).
    pub fn overtime_total_ms(&self) -> i64 {
        self.timer().overtime_total_ms()
    }

    /// Applies, stores, then broadcasts a command; the answer is the new snapshot. When
    /// the disk refuses, the command still applies and is stored once the disk is back.
    /// A repeated `command_id` gets the first answer and changes nothing.
    pub async fn command(
        &self,
        command: Command,
        command_id: Option<String>,
        actor: &str,
    ) -> Result<Value, CommandError> {
        let _turn = self.lane.lock().await;
        if let Some(answer) = command_id
            .as_ref()
            .and_then(|id| self.answered.lock().unwrap().get(id).cloned())
        {
            return Ok(answer);
        }
        let now = self.clock.now_ms();
        let (next, snapshot, finished, named_id) = {
            let current = self.timer();
            let mut next = current.clone();
            let named_id = current.named_slot_id(&command);
            next.apply(&command, now)?;
            let snapshot = next.snapshot(now);
            let overtime = next.overtime_total_ms();
            (next, snapshot, overtime, named_id)
        };
        let answer = serde_json::to_value(&snapshot).expect("snapshot serializes");
        let row = NewCommand {
            at_ms: now,
            actor: actor.to_string(),
            command: serde_json::to_string(&command).expect("command serializes"),
            command_id: command_id.clone(),
            rev: snapshot.rev as i64,
            result: answer.to_string(),
            slot_id: named_id,
        };
        let stored = self.store.record_timer_command(row).await;
        crate::store::keep_going_unless_rejected(stored)?;
        *self.timer() = next;
        if let Some(id) = command_id {
            self.answered.lock().unwrap().insert(id, answer.clone());
        }
        self.count_overtime(finished);
        tracing::info!(actor, command = ?command, rev = snapshot.rev, state = snapshot.state.as_str(), "timer command");
        self.broadcast(&snapshot);
        self.changed.notify_one();
        Ok(answer)
    }

    /// Adds to the overtime counter what the record's total has grown by.
    fn count_overtime(&self, total_ms: i64) {
        let before = self
            .overtime_counted_ms
            .fetch_max(total_ms, Ordering::SeqCst);
        self.metrics.timer_overtime(total_ms - before);
    }

    /// Sends the snapshot to every bridge (encoded once) and to the live feed.
    fn broadcast(&self, snapshot: &TimerSnapshot) {
        let frame = Frame::from(&ServerMsg::Timer(snapshot.clone()));
        let metrics = self.metrics.clone();
        let delivery = crate::services::hub::Delivery::new(move |took| metrics.timer_fanout(took));
        self.hub.send_to_all_tracked(&frame, Some(delivery));
        self.hub.publish(LiveMsg::Timer(snapshot.clone()));
    }

    /// While no slot runs, the programme's projection moves with the clock (the next
    /// slot cannot start before now): the pages (console, display) are sent a fresh
    /// snapshot; the bridges do not show it.
    pub fn refresh_programme(&self) {
        let snapshot = self.snapshot();
        if snapshot.programme.is_some() && snapshot.state != TimerState::Running {
            self.hub.publish(LiveMsg::Timer(snapshot));
        }
    }

    /// The presenting site went offline: pause its slot if it is running.
    pub async fn site_offline(&self, site: SiteId, lost_at_ms: EpochMs) {
        if !self.pause_on_site_loss {
            return;
        }
        let presenting = self.timer().current().and_then(|slot| {
            (slot.state == SlotState::Running && slot.plan.venue == Venue::Site(site))
                .then_some(slot.plan.order)
        });
        let Some(order) = presenting else { return };
        match self
            .command(Command::SiteLost { site, lost_at_ms }, None, SYSTEM)
            .await
        {
            Ok(_) => {
                let name = self
                    .hub
                    .roster()
                    .index_of(site)
                    .map(|i| self.hub.roster().site(i).name.clone())
                    .unwrap_or_default();
                let message = format!(
                    "{name} mất kết nối khi đang trình bày (phần {order}) — đồng hồ đã tự tạm dừng; bấm “Tiếp tục” khi điểm cầu trở lại. \
                     The presenting site dropped: the timer paused itself."
                );
                tracing::warn!(%site, order, "presenting site offline: timer paused");
                self.hub.publish(LiveMsg::Alert {
                    kind: "presenter_offline",
                    site,
                    slot: order,
                    at_ms: lost_at_ms,
                    message,
                });
            }
            Err(e) => tracing::debug!(error = %e, "site loss did not pause the timer"),
        }
    }

    /// Service time stepped forward with the wall clock: the running slot keeps the
    /// time it used (a stored command, so a replay after a restart agrees).
    pub async fn clock_stepped(&self, by_ms: i64) {
        if let Err(e) = self
            .command(Command::ClockStep { by_ms }, None, SYSTEM)
            .await
        {
            tracing::warn!(error = %e, "the timer could not follow the clock step");
        }
    }

    /// Runs forever: applies auto_stop when its time comes.
    pub async fn run_auto_stop(self: Arc<Self>) {
        loop {
            let due = self.timer().auto_stop_at();
            match due {
                None => self.changed.notified().await,
                Some(at) => {
                    let wait = (at - self.clock.now_ms()).max(0) as u64;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(wait)) => {
                            match self.command(Command::AutoStop, None, SYSTEM).await {
                                Ok(_) | Err(CommandError::Refused(TimerError::NotDue)) => {}
                                Err(e) => {
                                    tracing::error!(error = %e, "auto_stop failed; retrying in 1 s");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                        _ = self.changed.notified() => {}
                    }
                }
            }
        }
    }

    /// Sets the timer gauges as of now (called when metrics are scraped).
    pub fn refresh_metrics(&self) {
        let now = self.clock.now_ms();
        let timer = self.timer();
        let current = timer.current();
        let remaining = current
            .filter(|s| s.state != SlotState::Done)
            .map(|s| s.remaining_ms(now));
        self.metrics.timer_state(
            TimerState::of(current.map(|s| s.state)),
            remaining,
            current.map(|s| &s.plan),
        );
    }
}

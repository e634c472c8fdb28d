//! The speaker timer: the agenda's slots, one at a time, exact to the millisecond.
//!
//! Pure: every command carries `now`. The shell stores each applied command with its
//! time, so replaying the stored commands rebuilds exactly the same timer after a
//! crash — a running slot keeps its original deadline.

use serde::{Deserialize, Serialize};

use crate::core::agenda::{Agenda, MovedResult, Presentation, Venue};
use crate::core::sites::SiteId;
use crate::core::time::EpochMs;

/// State of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    Pending,
    /// Selected, not started.
    Ready,
    Running,
    Paused,
    Done,
}

impl SlotState {
    pub const ALL: [SlotState; 5] = [
        SlotState::Pending,
        SlotState::Ready,
        SlotState::Running,
        SlotState::Paused,
        SlotState::Done,
    ];

    /// The state as the minutes and the agent say it.
    pub fn words_vi(&self) -> &'static str {
        match self {
            SlotState::Pending => "chưa trình bày",
            SlotState::Ready => "chuẩn bị",
            SlotState::Running => "đang trình bày",
            SlotState::Paused => "tạm dừng",
            SlotState::Done => "đã xong",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SlotState::Pending => "pending",
            SlotState::Ready => "ready",
            SlotState::Running => "running",
            SlotState::Paused => "paused",
            SlotState::Done => "done",
        }
    }

    fn is_active(&self) -> bool {
        matches!(self, SlotState::Running | SlotState::Paused)
    }
}

/// What the timer shows as a whole: the current slot's state, or `idle` when no slot
/// is selected (the `state` of the broadcast snapshot and of `diemcau_timer_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerState {
    Idle,
    Pending,
    Ready,
    Running,
    Paused,
    Done,
}

impl TimerState {
    pub const ALL: [TimerState; 6] = [
        TimerState::Idle,
        TimerState::Pending,
        TimerState::Ready,
        TimerState::Running,
        TimerState::Paused,
        TimerState::Done,
    ];

    pub fn of(current: Option<SlotState>) -> TimerState {
        match current {
            None => TimerState::Idle,
            Some(SlotState::Pending) => TimerState::Pending,
            Some(SlotState::Ready) => TimerState::Ready,
            Some(SlotState::Running) => TimerState::Running,
            Some(SlotState::Paused) => TimerState::Paused,
            Some(SlotState::Done) => TimerState::Done,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TimerState::Idle => "idle",
            TimerState::Pending => "pending",
            TimerState::Ready => "ready",
            TimerState::Running => "running",
            TimerState::Paused => "paused",
            TimerState::Done => "done",
        }
    }
}

/// How close the speaker is to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Normal,
    /// At most `warning_ms` left.
    Warning,
    /// At most `danger_ms` left.
    Danger,
    /// Below zero: counting up.
    Overtime,
}

/// What the timer does when a slot reaches 0:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtZero {
    /// Keep running into overtime, counting up.
    Signal,
    /// Stop the slot after the grace period.
    AutoStop,
}

/// Thresholds and the policy at 0:00, from `[timer]`.
#[derive(Clone, Copy, Debug)]
pub struct TimerPolicy {
    pub warning_ms: i64,
    pub danger_ms: i64,
    pub at_zero: AtZero,
    pub auto_stop_grace_ms: i64,
    /// When the programme begins; `None`: no planned times of day.
    pub programme_start_ms: Option<EpochMs>,
}

impl TimerPolicy {
    pub fn phase(&self, remaining_ms: i64) -> Phase {
        if remaining_ms < 0 {
            Phase::Overtime
        } else if remaining_ms <= self.danger_ms {
            Phase::Danger
        } else if remaining_ms <= self.warning_ms {
            Phase::Warning
        } else {
            Phase::Normal
        }
    }
}

/// The presenting site dropped while its slot ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interruption {
    pub site: SiteId,
    /// When the site went offline.
    pub lost_at_ms: EpochMs,
    /// When the timer paused itself.
    pub paused_at_ms: EpochMs,
    /// When the secretary resumed, if yet.
    pub resumed_at_ms: Option<EpochMs>,
}

/// A run of a slot that was reset: kept whole, as evidence (a reset starts a new
/// attempt, it never erases one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1 for the first run of the slot.
    pub number: u32,
    pub started_ms: Option<EpochMs>,
    pub ended_ms: Option<EpochMs>,
    /// When the secretary reset it.
    pub reset_ms: EpochMs,
    pub added_ms: i64,
    pub actual_ms: i64,
    pub overtime_ms: i64,
    pub pauses: u32,
    pub interruptions: Vec<Interruption>,
    pub auto_stopped: bool,
}

/// One presentation's slot and what happened in it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub plan: Presentation,
    pub state: SlotState,
    /// Time added (or taken, negative) by the secretary.
    pub added_ms: i64,
    pub started_ms: Option<EpochMs>,
    pub ended_ms: Option<EpochMs>,
    /// Speaking time of finished runs (between start/resume and pause/stop).
    elapsed_ms: i64,
    /// Start of the current run, while running.
    running_since_ms: Option<EpochMs>,
    pub pauses: u32,
    pub interruptions: Vec<Interruption>,
    /// Set when the slot was ended by the auto_stop policy.
    pub auto_stopped: bool,
    /// Earlier runs, reset by the secretary, oldest first.
    pub earlier: Vec<Attempt>,
}

impl Slot {
    fn new(plan: Presentation) -> Self {
        Slot {
            plan,
            state: SlotState::Pending,
            added_ms: 0,
            started_ms: None,
            ended_ms: None,
            elapsed_ms: 0,
            running_since_ms: None,
            pauses: 0,
            interruptions: Vec::new(),
            auto_stopped: false,
            earlier: Vec::new(),
        }
    }

    /// This run's number: 1, or 2 after one reset, …
    pub fn attempt(&self) -> u32 {
        self.earlier.len() as u32 + 1
    }

    pub fn planned_ms(&self) -> i64 {
        self.plan.slot_seconds as i64 * 1000
    }

    /// The slot's length with the secretary's adjustments.
    pub fn allowed_ms(&self) -> i64 {
        self.planned_ms() + self.added_ms
    }

    /// Speaking time so far.
    pub fn used_ms(&self, now: EpochMs) -> i64 {
        self.elapsed_ms
            + self
                .running_since_ms
                .map_or(0, |since| (now - since).max(0))
    }

    pub fn remaining_ms(&self, now: EpochMs) -> i64 {
        self.allowed_ms() - self.used_ms(now)
    }

    pub fn overtime_ms(&self, now: EpochMs) -> i64 {
        (-self.remaining_ms(now)).max(0)
    }

    /// When the slot reaches 0:00, while running.
    pub fn deadline_ms(&self) -> Option<EpochMs> {
        self.running_since_ms
            .map(|since| since + self.allowed_ms() - self.elapsed_ms)
    }

    /// Starts a new attempt at `now`; a run that had begun is kept as an earlier one.
    fn reset(&mut self, now: EpochMs) {
        let mut earlier = std::mem::take(&mut self.earlier);
        if self.started_ms.is_some() {
            earlier.push(Attempt {
                number: earlier.len() as u32 + 1,
                started_ms: self.started_ms,
                ended_ms: self.ended_ms,
                reset_ms: now,
                added_ms: self.added_ms,
                actual_ms: self.used_ms(now),
                overtime_ms: self.overtime_ms(now),
                pauses: self.pauses,
                interruptions: std::mem::take(&mut self.interruptions),
                auto_stopped: self.auto_stopped,
            });
        }
        *self = Slot {
            earlier,
            ..Slot::new(self.plan.clone())
        };
    }
}

/// One `adjust` moves a slot's length by at most an hour, up or down.
pub const MAX_ADJUST_SECONDS: u64 = 3600;
/// No adjustment makes a slot longer than four hours.
pub const MAX_SLOT_MS: i64 = 4 * 3600 * 1000;

/// What the hall display shows (the secretary's choice; a slot that starts brings the
/// countdown back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Screen {
    /// The speaker, the countdown: the display as it always was.
    #[default]
    Timer,
    /// The time of day, large (between slots).
    Clock,
    /// Who speaks next, large.
    Next,
    /// Nothing: a black screen (a presenter's clicker `B`).
    Black,
}

impl Screen {
    pub fn parse(text: &str) -> Option<Screen> {
        match text {
            "timer" => Some(Screen::Timer),
            "clock" => Some(Screen::Clock),
            "next" => Some(Screen::Next),
            "black" => Some(Screen::Black),
            _ => None,
        }
    }
}

/// How long after ending a slot (next, stop) or resetting one `undo` brings it back.
pub const UNDO_MS: i64 = 10_000;

/// The longest note to the speaker ("Còn 1 phút", "Xin kết thúc", a short sentence).
pub const MAX_NOTE_CHARS: usize = 120;

/// What the secretary (or the service itself) asks of the timer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Select {
        slot: u32,
    },
    Start {
        slot: Option<u32>,
    },
    Pause,
    Resume,
    Stop,
    Next,
    Previous,
    Adjust {
        seconds: i64,
    },
    Reset {
        slot: Option<u32>,
    },
    /// The presenting site went offline (pause_on_site_loss).
    SiteLost {
        site: SiteId,
        lost_at_ms: EpochMs,
    },
    /// The auto_stop policy's grace ran out.
    AutoStop,
    /// Changes a slot on the day (not one that is done): its unit, topic, planned
    /// length or venue (`hall` or a site code the caller checked in the roster).
    Edit {
        slot: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        venue: Option<String>,
    },
    /// Moves slot `slot` to position `to` (1 = first); the others close up.
    Move {
        slot: u32,
        to: u32,
    },
    /// Adds a slot after position `after` (0: first), e.g. a late addition to the
    /// programme.
    Insert {
        after: u32,
        unit: String,
        #[serde(default)]
        topic: String,
        seconds: u32,
        venue: String,
    },
    /// Takes out a slot that never ran (one with a record stays).
    Withdraw {
        slot: u32,
    },
    /// Puts back the state before the last `next`, `stop` or `reset`, exactly (a
    /// running slot runs on as if never stopped), within `UNDO_MS`.
    Undo,
    /// What the hall display shows.
    Screen {
        show: Screen,
    },
    /// A note for the speaker, shown large on the display and the presenting bridge
    /// until cleared (empty text clears it).
    Note {
        text: String,
    },
    /// Service time stepped forward with the wall clock by `by_ms`: a running slot
    /// keeps the time it has used (stored, so a replay after a restart agrees).
    ClockStep {
        by_ms: i64,
    },
}

/// Why a command cannot be done now; every message is Vietnamese first, then English.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error("Không có phần tham luận số {0} — there is no slot {0}")]
    UnknownSlot(u32),
    #[error("Chưa chọn phần tham luận nào — no slot is selected")]
    NothingSelected,
    #[error("Không có phần nào đang chạy — nothing is running")]
    NothingRunning,
    #[error("Đồng hồ không tạm dừng — the timer is not paused")]
    NotPaused,
    #[error("Phần {0} đang chạy — slot {0} is already running")]
    AlreadyRunning(u32),
    #[error("Phần {0} đang tạm dừng, hãy bấm “Tiếp tục” — slot {0} is paused: resume it")]
    PausedUseResume(u32),
    #[error(
        "Phần {0} đang diễn ra, hãy bấm “Kết thúc” trước — slot {0} is in progress: stop it first"
    )]
    StopFirst(u32),
    #[error(
        "Phần {0} đã kết thúc; bấm “Chạy lại (lượt mới)” để chạy lại — slot {0} is done: reset it first (a new attempt)"
    )]
    SlotDone(u32),
    #[error(
        "Thời lượng không thể nhỏ hơn hoặc bằng 0 — the slot cannot be shortened to zero or less"
    )]
    AdjustBelowZero,
    #[error(
        "Mỗi lần điều chỉnh từ 1 đến 3600 giây, thời lượng không quá 4 giờ — adjust by 1 to 3600 seconds, up or down, to at most 4 hours in all"
    )]
    AdjustOutOfRange,
    #[error("Đây là phần cuối — there is no next slot")]
    NoNext,
    #[error("Đây là phần đầu — there is no earlier slot to go back to")]
    NoPrevious,
    #[error("Điểm cầu {0} không đang trình bày — site {0} is not presenting")]
    NotPresenting(SiteId),
    #[error("Chưa đến lúc tự dừng — not time to stop yet")]
    NotDue,
    #[error("Lời nhắc tối đa 120 ký tự — a note to the speaker is at most 120 characters")]
    NoteTooLong,
    #[error(
        "Không còn gì để hoàn tác (chỉ trong 10 giây sau Phần tiếp, Kết thúc hoặc Chạy lại) — nothing to undo: undo works for 10 s after next, stop or reset"
    )]
    NothingToUndo,
    #[error(
        "Đơn vị không để trống, đơn vị và chủ đề tối đa 300 ký tự, thời lượng từ 1 đến 3600 giây, địa điểm là hall hoặc mã điểm cầu — unit must not be empty; unit and topic at most 300 characters; seconds 1 to 3600; venue hall or a site code"
    )]
    BadEdit,
    #[error(
        "Phần {0} đã xong: kết quả của nó không đổi sang đơn vị khác được — slot {0} is done: its record stays as it is"
    )]
    EditDone(u32),
    #[error("Vị trí {0} không có trong chương trình — there is no position {0}")]
    NoPosition(u32),
    #[error(
        "Phần {0} đã chạy, không rút khỏi chương trình được (kết quả được giữ) — slot {0} has run: it cannot be withdrawn"
    )]
    WithdrawHasRecord(u32),
}

impl TimerError {
    /// 400 for a request that can never work, 409 for one the current state refuses.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            TimerError::UnknownSlot(_)
                | TimerError::AdjustOutOfRange
                | TimerError::NoteTooLong
                | TimerError::BadEdit
                | TimerError::NoPosition(_)
        )
    }
}

/// A slot as the snapshot names it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlotBrief {
    pub id: String,
    pub order: u32,
    pub unit: String,
    pub topic: String,
    pub venue: Venue,
}

/// What every screen is sent (DESIGN.md "Speaker timer").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimerSnapshot {
    pub rev: u64,
    /// The current slot's state, or `idle` when none is selected.
    pub state: TimerState,
    pub slot: Option<SlotBrief>,
    /// The next slot not yet done: its site is "on deck".
    pub next: Option<SlotBrief>,
    pub duration_ms: Option<i64>,
    pub added_ms: i64,
    /// Server epoch ms at which the slot reaches 0:00, while running.
    pub deadline_ms: Option<EpochMs>,
    /// Time left while not running (negative: overtime).
    pub remaining_ms: Option<i64>,
    pub phase: Option<Phase>,
    pub warning_ms: i64,
    pub danger_ms: i64,
    pub server_ms: EpochMs,
    /// Where the programme stands against its plan (a start time is configured).
    pub programme: Option<ProgrammeNow>,
    /// What the hall display shows.
    pub screen: Screen,
    /// Until when `undo` can bring back the state before the last next, stop or reset.
    pub undo_until_ms: Option<EpochMs>,
    /// The note to the speaker, while one is shown, and since when (a flash at first).
    pub note: Option<String>,
    pub note_ms: Option<EpochMs>,
}

/// The programme against its plan, live: how late it runs and when it will end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProgrammeNow {
    /// How much later than planned the slot in focus (the current one, else the one on
    /// deck) ends, as things go now; negative: ahead of the plan.
    pub delay_ms: i64,
    pub planned_end_ms: EpochMs,
    /// When the last slot will end, as things go now.
    pub projected_end_ms: EpochMs,
}

/// One slot for the agenda and the minutes.
#[derive(Clone, Debug, Serialize)]
pub struct SlotReport {
    pub id: String,
    pub order: u32,
    pub unit: String,
    pub unit_kind: String,
    pub topic: String,
    pub venue: Venue,
    pub state: SlotState,
    pub planned_ms: i64,
    pub added_ms: i64,
    pub actual_ms: Option<i64>,
    pub overtime_ms: Option<i64>,
    pub started_ms: Option<EpochMs>,
    pub ended_ms: Option<EpochMs>,
    pub pauses: u32,
    pub interruptions: Vec<Interruption>,
    pub auto_stopped: bool,
    /// Planned start, time of day (a start time is configured).
    pub planned_start_ms: Option<EpochMs>,
    /// This run's number (2 after one reset).
    pub attempt: u32,
    /// Earlier runs that were reset, oldest first.
    pub earlier_attempts: Vec<Attempt>,
}

/// The timer over the whole agenda.
#[derive(Clone, Debug)]
pub struct Timer {
    slots: Vec<Slot>,
    current: Option<usize>,
    rev: u64,
    policy: TimerPolicy,
    screen: Screen,
    note: Option<(String, EpochMs)>,
    /// Each slot's planned start: the row's own `start`, else the end of the one before.
    planned_starts: Vec<Option<EpochMs>>,
    /// The state before the last next, stop or reset, and when that was.
    undo: Option<Box<(Timer, EpochMs)>>,
    /// Slots inserted on the day so far (their ids: `them-1`, …).
    inserted: u32,
}

impl Timer {
    pub fn new(agenda: &Agenda, policy: TimerPolicy) -> Timer {
        Timer {
            slots: agenda
                .presentations
                .iter()
                .cloned()
                .map(Slot::new)
                .collect(),
            current: None,
            rev: 0,
            policy,
            screen: Screen::Timer,
            note: None,
            planned_starts: planned_starts(agenda.presentations.iter(), policy.programme_start_ms),
            undo: None,
            inserted: 0,
        }
    }

    pub fn rev(&self) -> u64 {
        self.rev
    }

    pub fn policy(&self) -> &TimerPolicy {
        &self.policy
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn current(&self) -> Option<&Slot> {
        self.current.map(|i| &self.slots[i])
    }

    /// Applies a command at `now`; on error nothing changes.
    pub fn apply(&mut self, command: &Command, now: EpochMs) -> Result<(), TimerError> {
        if *command == Command::Undo {
            return self.undo(now);
        }
        let before = Timer {
            undo: None,
            ..self.clone()
        };
        self.apply_one(command, now)?;
        // Only the slot-ending commands can be undone, and only as the latest change
        // (the screen and the note are not slot changes: they keep the chance).
        match command {
            Command::Next | Command::Stop | Command::Reset { .. } => {
                self.undo = Some(Box::new((before, now)));
            }
            Command::Screen { .. } | Command::Note { .. } => {}
            _ => self.undo = None,
        }
        Ok(())
    }

    fn undo(&mut self, now: EpochMs) -> Result<(), TimerError> {
        let (before, _) = *self
            .undo
            .take()
            .filter(|u| now - u.1 <= UNDO_MS)
            .ok_or(TimerError::NothingToUndo)?;
        let (screen, note, rev) = (self.screen, self.note.take(), self.rev);
        *self = before;
        (self.screen, self.note, self.rev) = (screen, note, rev + 1);
        Ok(())
    }

    fn apply_one(&mut self, command: &Command, now: EpochMs) -> Result<(), TimerError> {
        match command {
            Command::Select { slot } => {
                let i = self.index(*slot)?;
                self.ensure_idle()?;
                self.select(i)?;
            }
            Command::Start { slot } => {
                if let Some(order) = slot {
                    let i = self.index(*order)?;
                    if self.current != Some(i) || self.slots[i].state == SlotState::Pending {
                        self.ensure_idle()?;
                        self.select(i)?;
                    }
                } else if self.current().is_none_or(|s| s.state == SlotState::Done) {
                    // Nothing chosen (or the chosen one is over): the slot on deck, the
                    // one every screen shows as "Tiếp theo".
                    let on_deck = self.on_deck().ok_or(TimerError::NothingSelected)?;
                    self.select(on_deck)?;
                }
                let i = self.current.ok_or(TimerError::NothingSelected)?;
                let slot = &mut self.slots[i];
                match slot.state {
                    SlotState::Ready | SlotState::Pending => {
                        slot.state = SlotState::Running;
                        slot.started_ms = Some(now);
                        slot.running_since_ms = Some(now);
                        self.screen = Screen::Timer; // the speaker must see the time
                    }
                    SlotState::Running => return Err(TimerError::AlreadyRunning(slot.plan.order)),
                    SlotState::Paused => return Err(TimerError::PausedUseResume(slot.plan.order)),
                    SlotState::Done => return Err(TimerError::SlotDone(slot.plan.order)),
                }
            }
            Command::Pause => {
                let slot = self.running_slot()?;
                slot.elapsed_ms = slot.used_ms(now);
                slot.running_since_ms = None;
                slot.state = SlotState::Paused;
                slot.pauses += 1;
            }
            Command::Resume => {
                let slot = self.current_slot_mut()?;
                if slot.state != SlotState::Paused {
                    return Err(TimerError::NotPaused);
                }
                slot.state = SlotState::Running;
                slot.running_since_ms = Some(now);
                for interruption in slot
                    .interruptions
                    .iter_mut()
                    .filter(|i| i.resumed_at_ms.is_none())
                {
                    interruption.resumed_at_ms = Some(now);
                }
            }
            Command::Stop => self.stop(now, false)?,
            Command::Next => {
                let from = self.current;
                let after = from.map_or(0, |i| i + 1);
                let next = (after..self.slots.len())
                    .find(|i| self.slots[*i].state != SlotState::Done)
                    .ok_or(TimerError::NoNext)?;
                if from.is_some_and(|i| self.slots[i].state.is_active()) {
                    self.stop(now, false)?;
                }
                self.select(next)?;
            }
            Command::Previous => {
                // The slot before in the order, finished or not (a finished one is shown
                // as it ended; running it again is a reset, a new attempt).
                self.ensure_idle()?;
                let before = self.current.ok_or(TimerError::NoPrevious)?;
                let previous = before.checked_sub(1).ok_or(TimerError::NoPrevious)?;
                if self.slots[previous].state == SlotState::Done {
                    if let Some(ready) = self
                        .current
                        .filter(|c| self.slots[*c].state == SlotState::Ready)
                    {
                        self.slots[ready].state = SlotState::Pending;
                    }
                    self.current = Some(previous);
                } else {
                    self.select(previous)?;
                }
            }
            Command::Adjust { seconds } => {
                // `unsigned_abs`: `i64::MIN.abs()` has no value (it wraps in a release build).
                if !(1..=MAX_ADJUST_SECONDS).contains(&seconds.unsigned_abs()) {
                    return Err(TimerError::AdjustOutOfRange);
                }
                let slot = self.current_slot_mut()?;
                if slot.state == SlotState::Done {
                    return Err(TimerError::SlotDone(slot.plan.order));
                }
                let added_ms = slot.added_ms + seconds * 1000;
                let allowed_ms = slot.planned_ms() + added_ms;
                if allowed_ms <= 0 {
                    return Err(TimerError::AdjustBelowZero);
                }
                if allowed_ms > MAX_SLOT_MS {
                    return Err(TimerError::AdjustOutOfRange);
                }
                slot.added_ms = added_ms;
            }
            Command::Reset { slot } => {
                let i = match slot {
                    Some(order) => self.index(*order)?,
                    None => self.current.ok_or(TimerError::NothingSelected)?,
                };
                if self.slots[i].state.is_active() {
                    return Err(TimerError::StopFirst(self.slots[i].plan.order));
                }
                self.slots[i].reset(now);
                if self.current == Some(i) {
                    self.slots[i].state = SlotState::Ready;
                }
            }
            Command::SiteLost { site, lost_at_ms } => {
                let slot = self
                    .running_slot()
                    .map_err(|_| TimerError::NotPresenting(*site))?;
                if slot.plan.venue != Venue::Site(*site) {
                    return Err(TimerError::NotPresenting(*site));
                }
                slot.elapsed_ms = slot.used_ms(now);
                slot.running_since_ms = None;
                slot.state = SlotState::Paused;
                slot.pauses += 1;
                slot.interruptions.push(Interruption {
                    site: *site,
                    lost_at_ms: *lost_at_ms,
                    paused_at_ms: now,
                    resumed_at_ms: None,
                });
            }
            Command::Undo => return self.undo(now),
            Command::Move { slot, to } => {
                let from = self.index(*slot)?;
                let to = (*to as usize)
                    .checked_sub(1)
                    .filter(|t| *t < self.slots.len())
                    .ok_or(TimerError::NoPosition(*to))?;
                let current = self.current.map(|c| self.slots[c].plan.id.clone());
                let moved = self.slots.remove(from);
                self.slots.insert(to, moved);
                self.renumber(current);
            }
            Command::Insert {
                after,
                unit,
                topic,
                seconds,
                venue,
            } => {
                let at = *after as usize;
                if at > self.slots.len() {
                    return Err(TimerError::NoPosition(*after));
                }
                let plan = Presentation {
                    id: format!("them-{}", self.inserted + 1),
                    order: 0,
                    unit: checked_text(unit, false)?,
                    unit_kind: String::new(),
                    topic: checked_text(topic, true)?,
                    venue: checked_venue(venue)?,
                    slot_seconds: checked_seconds(*seconds)?,
                    start_minutes: None,
                };
                self.inserted += 1;
                let current = self.current.map(|c| self.slots[c].plan.id.clone());
                self.slots.insert(at, Slot::new(plan));
                self.renumber(current);
            }
            Command::Withdraw { slot } => {
                let i = self.index(*slot)?;
                let s = &self.slots[i];
                if s.started_ms.is_some() || !s.earlier.is_empty() {
                    return Err(TimerError::WithdrawHasRecord(*slot));
                }
                let current = self
                    .current
                    .filter(|c| *c != i)
                    .map(|c| self.slots[c].plan.id.clone());
                self.slots.remove(i);
                self.renumber(current);
            }
            Command::Edit {
                slot,
                unit,
                topic,
                seconds,
                venue,
            } => {
                let i = self.index(*slot)?;
                if self.slots[i].state == SlotState::Done {
                    return Err(TimerError::EditDone(*slot));
                }
                // Every field checked before any changes: an edit applies whole or not at all.
                let unit = unit
                    .as_deref()
                    .map(|t| checked_text(t, false))
                    .transpose()?;
                let topic = topic
                    .as_deref()
                    .map(|t| checked_text(t, true))
                    .transpose()?;
                let seconds = seconds.map(checked_seconds).transpose()?;
                let venue = venue.as_deref().map(checked_venue).transpose()?;
                let plan = &mut self.slots[i].plan;
                plan.unit = unit.unwrap_or(std::mem::take(&mut plan.unit));
                plan.topic = topic.unwrap_or(std::mem::take(&mut plan.topic));
                plan.slot_seconds = seconds.unwrap_or(plan.slot_seconds);
                plan.venue = venue.unwrap_or(plan.venue);
                self.planned_starts = planned_starts(
                    self.slots.iter().map(|s| &s.plan),
                    self.policy.programme_start_ms,
                );
            }
            Command::Screen { show } => self.screen = *show,
            Command::Note { text } => {
                let text = text.trim();
                if text.chars().count() > MAX_NOTE_CHARS {
                    return Err(TimerError::NoteTooLong);
                }
                self.note = (!text.is_empty()).then(|| (text.to_string(), now));
            }
            Command::ClockStep { by_ms } => {
                if let Some(since) = self
                    .current
                    .and_then(|i| self.slots[i].running_since_ms.as_mut())
                {
                    *since += by_ms;
                }
            }
            Command::AutoStop => {
                if self.auto_stop_at() > Some(now) || self.auto_stop_at().is_none() {
                    return Err(TimerError::NotDue);
                }
                self.stop(now, true)?;
            }
        }
        self.rev += 1;
        Ok(())
    }

    /// When the auto_stop policy will end the running slot, if it applies.
    pub fn auto_stop_at(&self) -> Option<EpochMs> {
        if self.policy.at_zero != AtZero::AutoStop {
            return None;
        }
        Some(self.current()?.deadline_ms()? + self.policy.auto_stop_grace_ms)
    }

    pub fn snapshot(&self, now: EpochMs) -> TimerSnapshot {
        let current = self.current();
        let running = current.is_some_and(|s| s.state == SlotState::Running);
        let next = self.on_deck().map(|i| brief(&self.slots[i]));
        TimerSnapshot {
            rev: self.rev,
            state: TimerState::of(current.map(|s| s.state)),
            slot: current.map(brief),
            next,
            duration_ms: current.map(Slot::planned_ms),
            added_ms: current.map_or(0, |s| s.added_ms),
            deadline_ms: current.and_then(Slot::deadline_ms),
            remaining_ms: current.filter(|_| !running).map(|s| s.remaining_ms(now)),
            phase: current
                .filter(|s| s.state.is_active())
                .map(|s| self.policy.phase(s.remaining_ms(now))),
            warning_ms: self.policy.warning_ms,
            danger_ms: self.policy.danger_ms,
            server_ms: now,
            programme: self.programme(now),
            undo_until_ms: self
                .undo
                .as_ref()
                .map(|u| u.1 + UNDO_MS)
                .filter(|until| *until >= now),
            screen: self.screen,
            note: self.note.as_ref().map(|(text, _)| text.clone()),
            note_ms: self.note.as_ref().map(|(_, at)| *at),
        }
    }

    pub fn reports(&self, now: EpochMs) -> Vec<SlotReport> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let begun = slot.started_ms.is_some();
                SlotReport {
                    id: slot.plan.id.clone(),
                    order: slot.plan.order,
                    unit: slot.plan.unit.clone(),
                    unit_kind: slot.plan.unit_kind.clone(),
                    topic: slot.plan.topic.clone(),
                    venue: slot.plan.venue,
                    state: slot.state,
                    planned_ms: slot.planned_ms(),
                    added_ms: slot.added_ms,
                    actual_ms: begun.then(|| slot.used_ms(now)),
                    overtime_ms: begun.then(|| slot.overtime_ms(now)),
                    started_ms: slot.started_ms,
                    ended_ms: slot.ended_ms,
                    pauses: slot.pauses,
                    interruptions: slot.interruptions.clone(),
                    auto_stopped: slot.auto_stopped,
                    planned_start_ms: self.planned_starts.get(i).copied().flatten(),
                    attempt: slot.attempt(),
                    earlier_attempts: slot.earlier.clone(),
                }
            })
            .collect()
    }

    /// The id of the slot `command` names by its order (for `insert`, the slot it goes
    /// after), before it applies: stored with the command, so that a replay on an agenda
    /// whose rows were reordered (ids kept) acts on the same slot.
    pub fn named_slot_id(&self, command: &Command) -> Option<String> {
        let order = match command {
            Command::Select { slot }
            | Command::Start { slot: Some(slot) }
            | Command::Reset { slot: Some(slot) }
            | Command::Edit { slot, .. }
            | Command::Move { slot, .. }
            | Command::Withdraw { slot } => *slot,
            Command::Insert { after, .. } => *after,
            _ => return None,
        };
        let i = self.index(order).ok()?;
        Some(self.slots[i].plan.id.clone())
    }

    /// Applies a stored command again at start. `named` is the id it named when it was
    /// given (`named_slot_id`), `answered` the id of the slot its answer left current:
    /// orders are looked up by id, so the results land on the same slots whatever order
    /// the rows have now.
    pub fn replay(
        &mut self,
        command: &Command,
        named: Option<&str>,
        answered: Option<&str>,
        at: EpochMs,
    ) -> Result<(), TimerError> {
        let order_of = |timer: &Timer, id: &str| {
            timer
                .slots
                .iter()
                .find(|s| s.plan.id == id)
                .map(|s| s.plan.order)
                .ok_or(TimerError::UnknownSlot(0))
        };
        let mut command = command.clone();
        if let Some(id) = named {
            let order = order_of(self, id)?;
            match &mut command {
                Command::Select { slot }
                | Command::Start { slot: Some(slot) }
                | Command::Reset { slot: Some(slot) }
                | Command::Edit { slot, .. }
                | Command::Move { slot, .. }
                | Command::Withdraw { slot } => *slot = order,
                Command::Insert { after, .. } => *after = order,
                _ => {}
            }
        }
        if let (Command::Start { slot: None }, Some(id)) = (&command, answered) {
            command = Command::Start {
                slot: Some(order_of(self, id)?),
            };
        }
        self.apply(&command, at)?;
        // "Next" and "previous" go by position: if the rows were reordered, bring the
        // slot the answer named back into focus (it is only selected, not started).
        let positional = matches!(command, Command::Next | Command::Previous);
        if let (true, Some(id)) = (positional, answered)
            && self.current().is_some_and(|c| c.plan.id != id)
        {
            let i = self.index(order_of(self, id)?)?;
            if let Some(ready) = self
                .current
                .filter(|c| self.slots[*c].state == SlotState::Ready)
            {
                self.slots[ready].state = SlotState::Pending;
            }
            self.current = Some(i);
            if self.slots[i].state == SlotState::Pending {
                self.slots[i].state = SlotState::Ready;
            }
        }
        Ok(())
    }

    /// Orders 1, 2, … in the new arrangement; `current` found again by its id; the
    /// planned times follow.
    fn renumber(&mut self, current: Option<String>) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.plan.order = i as u32 + 1;
        }
        self.current = current.and_then(|id| self.slots.iter().position(|s| s.plan.id == id));
        self.planned_starts = planned_starts(
            self.slots.iter().map(|s| &s.plan),
            self.policy.programme_start_ms,
        );
    }

    /// A stored answer left slot `order` (and `id`) of `unit` current: `Some` when this
    /// timer (the agenda as loaded now, the stored commands replayed so far) has another
    /// slot current, or another unit in it — an edited CSV would move that timing onto
    /// another unit.
    pub fn moved_result(&self, order: u32, id: Option<&str>, unit: &str) -> Option<MovedResult> {
        let same = |s: &Slot| id.map_or(s.plan.order == order, |id| s.plan.id == id);
        if self
            .current()
            .is_some_and(|c| same(c) && c.plan.unit == unit)
        {
            return None;
        }
        let now = self
            .slots
            .iter()
            .find(|s| same(s))
            .map(|s| s.plan.unit.clone());
        Some(MovedResult {
            order,
            now,
            stored: unit.to_string(),
        })
    }

    /// Where the programme stands: each slot ends when it did, when it will at this pace
    /// (running, paused), or its length after the later of its planned start, the end of
    /// the one before and now.
    pub fn programme(&self, now: EpochMs) -> Option<ProgrammeNow> {
        let focus = self.current.or_else(|| self.on_deck())?;
        let mut previous_end: Option<EpochMs> = None;
        let mut focus_end = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let planned = self.planned_starts[i]?;
            let end = match slot.state {
                SlotState::Done => slot.ended_ms.unwrap_or(now),
                SlotState::Running | SlotState::Paused => now + slot.remaining_ms(now).max(0),
                SlotState::Pending | SlotState::Ready => {
                    planned.max(previous_end.unwrap_or(planned)).max(now) + slot.allowed_ms()
                }
            };
            if i == focus {
                focus_end = Some(end);
            }
            previous_end = Some(end);
        }
        let planned_end = self.planned_starts[focus]? + self.slots[focus].planned_ms();
        Some(ProgrammeNow {
            delay_ms: focus_end? - planned_end,
            planned_end_ms: planned_end,
            projected_end_ms: previous_end?,
        })
    }

    /// Overtime of every finished run, earlier attempts included (what the metric counts).
    pub fn overtime_total_ms(&self) -> i64 {
        self.slots
            .iter()
            .map(|slot| {
                let earlier: i64 = slot.earlier.iter().map(|a| a.overtime_ms).sum();
                let this = if slot.state == SlotState::Done {
                    slot.overtime_ms(0)
                } else {
                    0
                };
                earlier + this
            })
            .sum()
    }

    fn index(&self, order: u32) -> Result<usize, TimerError> {
        self.slots
            .iter()
            .position(|s| s.plan.order == order)
            .ok_or(TimerError::UnknownSlot(order))
    }

    /// Refuses while the current slot is running or paused.
    /// The slot every screen shows as next: the first not done after the current one.
    fn on_deck(&self) -> Option<usize> {
        let after = self.current.map_or(0, |i| i + 1);
        (after..self.slots.len()).find(|i| self.slots[*i].state != SlotState::Done)
    }

    fn ensure_idle(&self) -> Result<(), TimerError> {
        match self.current() {
            Some(slot) if slot.state.is_active() => Err(TimerError::StopFirst(slot.plan.order)),
            _ => Ok(()),
        }
    }

    fn select(&mut self, i: usize) -> Result<(), TimerError> {
        if self.slots[i].state == SlotState::Done {
            return Err(TimerError::SlotDone(self.slots[i].plan.order));
        }
        if let Some(previous) = self
            .current
            .filter(|p| self.slots[*p].state == SlotState::Ready)
        {
            self.slots[previous].state = SlotState::Pending;
        }
        self.current = Some(i);
        self.slots[i].state = SlotState::Ready;
        Ok(())
    }

    fn current_slot_mut(&mut self) -> Result<&mut Slot, TimerError> {
        let i = self.current.ok_or(TimerError::NothingSelected)?;
        Ok(&mut self.slots[i])
    }

    fn running_slot(&mut self) -> Result<&mut Slot, TimerError> {
        match self.current {
            Some(i) if self.slots[i].state == SlotState::Running => Ok(&mut self.slots[i]),
            _ => Err(TimerError::NothingRunning),
        }
    }

    fn stop(&mut self, now: EpochMs, auto: bool) -> Result<(), TimerError> {
        let i = self.current.ok_or(TimerError::NothingRunning)?;
        let slot = &mut self.slots[i];
        if !slot.state.is_active() {
            return Err(TimerError::NothingRunning);
        }
        slot.elapsed_ms = slot.used_ms(now);
        slot.running_since_ms = None;
        slot.state = SlotState::Done;
        slot.ended_ms = Some(now);
        slot.auto_stopped = auto;
        Ok(())
    }
}

/// A unit or topic typed on the day: trimmed, at most a CSV cell's length.
fn checked_text(text: &str, may_be_empty: bool) -> Result<String, TimerError> {
    let text = text.trim();
    let ok = (may_be_empty || !text.is_empty())
        && text.chars().count() <= crate::core::table::MAX_CELL_CHARS;
    ok.then(|| text.to_string()).ok_or(TimerError::BadEdit)
}

/// A slot's length typed on the day: 1 s to an hour, as in the agenda.
fn checked_seconds(seconds: u32) -> Result<u32, TimerError> {
    (1..=3600)
        .contains(&seconds)
        .then_some(seconds)
        .ok_or(TimerError::BadEdit)
}

/// `hall` (or nothing) or a site code; the shell checks the code is in the roster.
fn checked_venue(text: &str) -> Result<Venue, TimerError> {
    match text.trim() {
        "hall" | "" => Ok(Venue::Hall),
        code => code
            .parse()
            .map(Venue::Site)
            .map_err(|_| TimerError::BadEdit),
    }
}

/// Each row's own start, else the end of the row before (from the programme's start).
fn planned_starts<'a>(
    presentations: impl ExactSizeIterator<Item = &'a Presentation>,
    start: Option<EpochMs>,
) -> Vec<Option<EpochMs>> {
    let Some(day) = start else {
        return vec![None; presentations.len()];
    };
    let mut next = day;
    presentations
        .map(|p| {
            let begins = p
                .start_minutes
                .map_or(next, |minutes| crate::core::time::same_day_at(day, minutes));
            next = begins + p.slot_seconds as i64 * 1000;
            Some(begins)
        })
        .collect()
}

fn brief(slot: &Slot) -> SlotBrief {
    SlotBrief {
        id: slot.plan.id.clone(),
        order: slot.plan.order,
        unit: slot.plan.unit.clone(),
        topic: slot.plan.topic.clone(),
        venue: slot.plan.venue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sites::Roster;

    const T0: EpochMs = 1_777_000_000_000;
    const SEVEN_MIN: i64 = 420_000;

    fn policy(at_zero: AtZero) -> TimerPolicy {
        TimerPolicy {
            warning_ms: 60_000,
            danger_ms: 30_000,
            at_zero,
            auto_stop_grace_ms: 30_000,
            programme_start_ms: None,
        }
    }

    fn timer() -> Timer {
        timer_with(AtZero::Signal)
    }

    fn timer_with(at_zero: AtZero) -> Timer {
        let roster = Roster::parse("s.csv", include_bytes!("../../config/sites.csv")).unwrap();
        let agenda = Agenda::parse(
            "a.csv",
            include_bytes!("../../config/agenda.csv"),
            &roster,
            420,
        )
        .unwrap();
        Timer::new(&agenda, policy(at_zero))
    }

    fn started(order: u32) -> Timer {
        let mut timer = timer();
        timer
            .apply(&Command::Start { slot: Some(order) }, T0)
            .unwrap();
        timer
    }

    #[test]
    fn start_runs_the_slot_against_a_deadline_seven_minutes_out() {
        let timer = started(4);
        let snap = timer.snapshot(T0 + 1000);
        assert_eq!(snap.state, TimerState::Running);
        assert_eq!(snap.slot.as_ref().unwrap().unit, "Sở Khoa học và Công nghệ");
        assert_eq!(snap.next.as_ref().unwrap().order, 5);
        assert_eq!(snap.deadline_ms, Some(T0 + SEVEN_MIN));
        assert_eq!(
            snap.remaining_ms, None,
            "clients compute it from the deadline"
        );
        assert_eq!(snap.duration_ms, Some(SEVEN_MIN));
        assert_eq!(snap.rev, 1);
    }

    #[test]
    fn phases_change_at_each_boundary_to_the_millisecond() {
        let timer = started(1);
        let phase = |ms_after_start: i64| {
            let mut t = timer.clone();
            t.apply(&Command::Pause, T0 + ms_after_start).unwrap();
            t.snapshot(T0 + ms_after_start).phase.unwrap()
        };
        assert_eq!(phase(SEVEN_MIN - 60_001), Phase::Normal);
        assert_eq!(phase(SEVEN_MIN - 60_000), Phase::Warning);
        assert_eq!(phase(SEVEN_MIN - 30_001), Phase::Warning);
        assert_eq!(phase(SEVEN_MIN - 30_000), Phase::Danger);
        assert_eq!(phase(SEVEN_MIN), Phase::Danger);
        assert_eq!(phase(SEVEN_MIN + 1), Phase::Overtime);
        assert_eq!(
            timer.snapshot(T0 + SEVEN_MIN + 1).phase,
            Some(Phase::Overtime)
        );
    }

    #[test]
    fn pause_keeps_the_remaining_time_and_resume_moves_the_deadline() {
        let mut timer = started(1);
        timer.apply(&Command::Pause, T0 + 100_000).unwrap();
        let snap = timer.snapshot(T0 + 500_000);
        assert_eq!(
            (snap.state, snap.remaining_ms, snap.deadline_ms),
            (TimerState::Paused, Some(320_000), None)
        );
        timer.apply(&Command::Resume, T0 + 200_000).unwrap();
        assert_eq!(
            timer.snapshot(T0 + 200_000).deadline_ms,
            Some(T0 + 200_000 + 320_000)
        );
        assert_eq!(timer.current().unwrap().pauses, 1);
    }

    #[test]
    fn adjust_adds_and_takes_time_but_never_below_zero_length() {
        let mut timer = started(1);
        timer
            .apply(&Command::Adjust { seconds: 60 }, T0 + 1)
            .unwrap();
        assert_eq!(
            timer.snapshot(T0 + 1).deadline_ms,
            Some(T0 + SEVEN_MIN + 60_000)
        );
        timer
            .apply(&Command::Adjust { seconds: -120 }, T0 + 2)
            .unwrap();
        assert_eq!(timer.snapshot(T0 + 2).added_ms, -60_000);
        assert_eq!(
            timer.apply(&Command::Adjust { seconds: -360 }, T0 + 3),
            Err(TimerError::AdjustBelowZero)
        );
        for extreme in [i64::MIN, i64::MAX, -3601, 3601] {
            assert_eq!(
                timer.apply(&Command::Adjust { seconds: extreme }, T0 + 3),
                Err(TimerError::AdjustOutOfRange),
                "{extreme}"
            );
        }
        assert_eq!(
            timer.apply(&Command::Adjust { seconds: 0 }, T0 + 3),
            Err(TimerError::AdjustOutOfRange)
        );
        assert_eq!(
            timer.snapshot(T0 + 3).added_ms,
            -60_000,
            "a refused command changes nothing"
        );
        for _ in 0..3 {
            timer
                .apply(&Command::Adjust { seconds: 3600 }, T0 + 3)
                .unwrap();
        }
        assert_eq!(
            timer.apply(&Command::Adjust { seconds: 3600 }, T0 + 3),
            Err(TimerError::AdjustOutOfRange),
            "no slot longer than four hours"
        );
    }

    #[test]
    fn overtime_counts_up_under_the_signal_policy_and_is_recorded_at_stop() {
        let mut timer = started(1);
        assert_eq!(timer.auto_stop_at(), None);
        timer
            .apply(&Command::Stop, T0 + SEVEN_MIN + 45_000)
            .unwrap();
        let report = &timer.reports(T0 + 10_000_000)[0];
        assert_eq!(report.state, SlotState::Done);
        assert_eq!(report.actual_ms, Some(SEVEN_MIN + 45_000));
        assert_eq!(report.overtime_ms, Some(45_000));
        assert!(!report.auto_stopped);
    }

    #[test]
    fn auto_stop_ends_the_slot_after_the_grace_and_records_the_overtime() {
        let mut timer = timer_with(AtZero::AutoStop);
        timer.apply(&Command::Start { slot: Some(2) }, T0).unwrap();
        let due = T0 + SEVEN_MIN + 30_000;
        assert_eq!(timer.auto_stop_at(), Some(due));
        assert_eq!(
            timer.apply(&Command::AutoStop, due - 1),
            Err(TimerError::NotDue)
        );
        timer.apply(&Command::AutoStop, due).unwrap();
        let report = &timer.reports(due)[1];
        assert_eq!(
            (report.state, report.overtime_ms, report.auto_stopped),
            (SlotState::Done, Some(30_000), true)
        );
    }

    #[test]
    fn impossible_commands_say_why() {
        let mut timer = timer();
        assert_eq!(
            timer.apply(&Command::Pause, T0),
            Err(TimerError::NothingRunning)
        );
        assert_eq!(
            timer.apply(&Command::Resume, T0),
            Err(TimerError::NothingSelected)
        );
        assert_eq!(
            timer.apply(&Command::Select { slot: 27 }, T0),
            Err(TimerError::UnknownSlot(27))
        );
        timer.apply(&Command::Start { slot: Some(1) }, T0).unwrap();
        assert_eq!(
            timer.apply(&Command::Start { slot: Some(1) }, T0),
            Err(TimerError::AlreadyRunning(1))
        );
        assert_eq!(
            timer.apply(&Command::Start { slot: Some(2) }, T0),
            Err(TimerError::StopFirst(1))
        );
        assert_eq!(
            timer.apply(&Command::Select { slot: 3 }, T0),
            Err(TimerError::StopFirst(1))
        );
        assert_eq!(
            timer.apply(&Command::Reset { slot: None }, T0),
            Err(TimerError::StopFirst(1))
        );
        timer.apply(&Command::Stop, T0 + 1000).unwrap();
        assert_eq!(
            timer.apply(&Command::Start { slot: Some(1) }, T0),
            Err(TimerError::SlotDone(1))
        );
        let message = TimerError::SlotDone(1).to_string();
        assert!(
            message.contains("đã kết thúc") && message.contains("reset it first"),
            "{message}"
        );
        assert_eq!(timer.rev(), 2, "only the two commands that worked count");
    }

    #[test]
    fn reset_makes_a_done_slot_startable_again() {
        let mut timer = started(1);
        timer.apply(&Command::Stop, T0 + 5000).unwrap();
        timer
            .apply(&Command::Reset { slot: Some(1) }, T0 + 6000)
            .unwrap();
        let snap = timer.snapshot(T0 + 6000);
        assert_eq!(
            (snap.state, snap.remaining_ms),
            (TimerState::Ready, Some(SEVEN_MIN))
        );
        timer
            .apply(&Command::Start { slot: None }, T0 + 7000)
            .unwrap();
        assert_eq!(
            timer.snapshot(T0 + 7000).deadline_ms,
            Some(T0 + 7000 + SEVEN_MIN)
        );
    }

    #[test]
    fn next_stops_the_running_slot_and_selects_the_following_one() {
        let mut timer = started(1);
        timer.apply(&Command::Next, T0 + 400_000).unwrap();
        let snap = timer.snapshot(T0 + 400_000);
        assert_eq!(
            (snap.state, snap.slot.unwrap().order),
            (TimerState::Ready, 2)
        );
        assert_eq!(timer.slots()[0].state, SlotState::Done);
        // "Previous" goes to slot 1 even though it is done: shown as it ended.
        timer.apply(&Command::Previous, T0 + 400_001).unwrap();
        let back = timer.snapshot(T0 + 400_001);
        assert_eq!(
            (back.state, back.slot.unwrap().order),
            (TimerState::Done, 1)
        );
        assert_eq!(timer.slots()[1].state, SlotState::Pending, "2 is let go");
        assert_eq!(
            timer.apply(&Command::Start { slot: None }, T0 + 400_001),
            Ok(()),
            "start with the current slot done: the one on deck"
        );
        assert_eq!(timer.current().unwrap().plan.order, 2);
        timer.apply(&Command::Stop, T0 + 400_002).unwrap();
        timer
            .apply(&Command::Select { slot: 3 }, T0 + 400_002)
            .unwrap();
        timer
            .apply(&Command::Select { slot: 26 }, T0 + 400_002)
            .unwrap();
        assert_eq!(
            timer.slots()[2].state,
            SlotState::Pending,
            "an unstarted selection is let go"
        );
        assert_eq!(
            timer.apply(&Command::Next, T0 + 400_003),
            Err(TimerError::NoNext)
        );
        timer.apply(&Command::Previous, T0 + 400_004).unwrap();
        assert_eq!(timer.current().unwrap().plan.order, 25);
    }

    #[test]
    fn start_with_nothing_chosen_starts_the_slot_on_deck() {
        let mut timer = timer();
        assert_eq!(timer.snapshot(T0).next.unwrap().order, 1);
        timer.apply(&Command::Start { slot: None }, T0).unwrap();
        let snap = timer.snapshot(T0);
        assert_eq!(
            (snap.state, snap.slot.unwrap().order),
            (TimerState::Running, 1)
        );
    }

    #[test]
    fn a_reset_starts_a_new_attempt_and_keeps_the_earlier_one() {
        let mut timer = started(3);
        timer
            .apply(&Command::Adjust { seconds: 60 }, T0 + 1_000)
            .unwrap();
        timer.apply(&Command::Stop, T0 + 507_000).unwrap(); // 8:27 used of 8:00: 27 s over
        assert_eq!(timer.overtime_total_ms(), 27_000);
        timer
            .apply(&Command::Reset { slot: Some(3) }, T0 + 600_000)
            .unwrap();
        let report = &timer.reports(T0 + 600_000)[2];
        assert_eq!(
            (report.attempt, report.state, report.actual_ms),
            (2, SlotState::Ready, None)
        );
        assert_eq!(
            report.earlier_attempts,
            vec![Attempt {
                number: 1,
                started_ms: Some(T0),
                ended_ms: Some(T0 + 507_000),
                reset_ms: T0 + 600_000,
                added_ms: 60_000,
                actual_ms: 507_000,
                overtime_ms: 27_000,
                pauses: 0,
                interruptions: vec![],
                auto_stopped: false,
            }]
        );
        assert_eq!(
            timer.overtime_total_ms(),
            27_000,
            "the reset erased nothing"
        );
        // A second run is attempt 2; its overtime adds to the first's.
        timer
            .apply(&Command::Start { slot: None }, T0 + 700_000)
            .unwrap();
        timer.apply(&Command::Stop, T0 + 700_000 + 430_000).unwrap();
        assert_eq!(timer.overtime_total_ms(), 37_000);
        timer
            .apply(&Command::Reset { slot: Some(3) }, T0 + 1_200_000)
            .unwrap();
        assert_eq!(timer.reports(T0)[2].earlier_attempts[1].number, 2);
    }

    #[test]
    fn the_presenting_site_going_offline_pauses_and_records_the_interruption() {
        let mut timer = timer();
        timer.apply(&Command::Start { slot: Some(26) }, T0).unwrap();
        let site: SiteId = "01912".parse().unwrap(); // Xã Chợ Rã presents from its own bridge
        assert_eq!(timer.current().unwrap().plan.venue, Venue::Site(site));
        let other: SiteId = "05443".parse().unwrap();
        assert_eq!(
            timer.apply(
                &Command::SiteLost {
                    site: other,
                    lost_at_ms: T0
                },
                T0 + 10
            ),
            Err(TimerError::NotPresenting(other))
        );
        timer
            .apply(
                &Command::SiteLost {
                    site,
                    lost_at_ms: T0 + 59_000,
                },
                T0 + 60_000,
            )
            .unwrap();
        let snap = timer.snapshot(T0 + 90_000);
        assert_eq!(
            (snap.state, snap.remaining_ms),
            (TimerState::Paused, Some(SEVEN_MIN - 60_000))
        );
        timer.apply(&Command::Resume, T0 + 120_000).unwrap();
        let interruption = &timer.current().unwrap().interruptions[0];
        assert_eq!(
            (
                interruption.lost_at_ms,
                interruption.paused_at_ms,
                interruption.resumed_at_ms
            ),
            (T0 + 59_000, T0 + 60_000, Some(T0 + 120_000))
        );
    }

    #[test]
    fn replaying_the_same_commands_rebuilds_the_same_timer() {
        let commands = [
            (Command::Start { slot: Some(3) }, T0),
            (Command::Adjust { seconds: 30 }, T0 + 10_000),
            (Command::Pause, T0 + 20_000),
            (Command::Resume, T0 + 25_000),
        ];
        let mut a = timer();
        let mut b = timer();
        for (command, at) in &commands {
            a.apply(command, *at).unwrap();
        }
        for (command, at) in &commands {
            let json = serde_json::to_string(command).unwrap();
            b.apply(&serde_json::from_str(&json).unwrap(), *at).unwrap();
        }
        assert_eq!(a.snapshot(T0 + 30_000), b.snapshot(T0 + 30_000));
    }

    #[test]
    fn a_clock_step_keeps_the_running_slots_time_used_and_deadline_distance() {
        let mut running = started(4);
        let before = running.snapshot(T0 + 10_000);
        // The wall clock jumped 3 minutes forward at T0 + 10 s; service time with it.
        let stepped = T0 + 10_000 + 180_000;
        running
            .apply(&Command::ClockStep { by_ms: 180_000 }, stepped)
            .unwrap();
        let after = running.snapshot(stepped);
        assert_eq!(after.remaining_ms, before.remaining_ms, "no countdown jump");
        assert_eq!(after.deadline_ms, before.deadline_ms.map(|d| d + 180_000));
        assert_eq!(running.current().unwrap().used_ms(stepped), 10_000);
        // Nothing running: a step changes no slot.
        let mut idle = timer();
        idle.apply(&Command::ClockStep { by_ms: 5_000 }, T0)
            .unwrap();
        assert_eq!(idle.snapshot(T0).deadline_ms, None);
    }

    #[test]
    fn the_display_shows_what_the_secretary_chose_until_a_slot_starts() {
        let mut timer = timer();
        assert_eq!(timer.snapshot(T0).screen, Screen::Timer);
        timer
            .apply(
                &Command::Screen {
                    show: Screen::Black,
                },
                T0,
            )
            .unwrap();
        assert_eq!(timer.snapshot(T0).screen, Screen::Black);
        timer
            .apply(&Command::Start { slot: Some(1) }, T0 + 1)
            .unwrap();
        assert_eq!(
            timer.snapshot(T0 + 1).screen,
            Screen::Timer,
            "a speaker sees the time"
        );
        timer
            .apply(
                &Command::Note {
                    text: "  Còn 1 phút ".into(),
                },
                T0 + 2,
            )
            .unwrap();
        let snap = timer.snapshot(T0 + 3);
        assert_eq!(
            (snap.note.as_deref(), snap.note_ms),
            (Some("Còn 1 phút"), Some(T0 + 2))
        );
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert_eq!(
            timer.apply(&Command::Note { text: long }, T0),
            Err(TimerError::NoteTooLong)
        );
        timer
            .apply(&Command::Note { text: " ".into() }, T0 + 4)
            .unwrap();
        assert_eq!(timer.snapshot(T0 + 4).note, None, "an empty note clears it");
        assert_eq!(Screen::parse("clock"), Some(Screen::Clock));
        assert_eq!(Screen::parse("blank"), None);
    }

    #[test]
    fn the_programme_knows_each_planned_start_how_late_it_runs_and_when_it_will_end() {
        // 2026-12-20 08:00 in Vietnam.
        let eight = 1_797_728_400_000;
        assert_eq!(crate::core::time::local_time(eight), "08:00:00");
        let roster = Roster::parse("s.csv", include_bytes!("../../config/sites.csv")).unwrap();
        let csv = "order,unit,unit_kind,topic,start\n1,A,so_nganh,x,\n2,B,so_nganh,y,\n3,C,so_nganh,z,10:00\n";
        let agenda = Agenda::parse("a.csv", csv.as_bytes(), &roster, 420).unwrap();
        let mut timer = Timer::new(
            &agenda,
            TimerPolicy {
                programme_start_ms: Some(eight),
                ..policy(AtZero::Signal)
            },
        );
        let starts: Vec<_> = timer
            .reports(eight)
            .iter()
            .map(|r| r.planned_start_ms.map(crate::core::time::local_time))
            .collect();
        assert_eq!(
            starts,
            [
                Some("08:00:00".into()),
                Some("08:07:00".into()),
                Some("10:00:00".into())
            ]
        );

        // Before the start, on time; the last slot ends at its own start plus 7 minutes.
        let early = timer.snapshot(eight - 60_000).programme.unwrap();
        assert_eq!(
            (early.delay_ms, early.projected_end_ms),
            (0, eight + 2 * 3_600_000 + 420_000)
        );
        // Slot 1 starts 4 minutes late: "Chậm 4 phút"; slot 3 still starts at 10:00.
        timer
            .apply(&Command::Start { slot: None }, eight + 240_000)
            .unwrap();
        let late = timer.snapshot(eight + 240_000).programme.unwrap();
        assert_eq!(late.delay_ms, 240_000);
        assert_eq!(late.projected_end_ms, eight + 2 * 3_600_000 + 420_000);
        // Slot 1 ends early, slot 2 is on deck: it can start now, ahead of its plan.
        timer.apply(&Command::Stop, eight + 300_000).unwrap();
        let ahead = timer.snapshot(eight + 300_000).programme.unwrap();
        assert_eq!(
            ahead.delay_ms,
            300_000 - 420_000,
            "slot 1 ended 2 minutes before its planned end"
        );
        // Without a start time there is no programme to be late against.
        assert_eq!(timer_with(AtZero::Signal).snapshot(eight).programme, None);
    }

    #[test]
    fn undo_puts_back_the_state_before_a_stop_exactly_within_ten_seconds() {
        let mut timer = started(5);
        let running = timer.snapshot(T0 + 60_000);
        timer.apply(&Command::Stop, T0 + 60_000).unwrap();
        timer
            .apply(
                &Command::Note {
                    text: "Xin kết thúc".into(),
                },
                T0 + 61_000,
            )
            .unwrap();
        assert_eq!(timer.snapshot(T0 + 62_000).undo_until_ms, Some(T0 + 70_000));
        timer.apply(&Command::Undo, T0 + 65_000).unwrap();
        let back = timer.snapshot(T0 + 65_000);
        assert_eq!(
            (back.state, back.deadline_ms),
            (TimerState::Running, running.deadline_ms),
            "as if never stopped"
        );
        assert_eq!(
            back.note.as_deref(),
            Some("Xin kết thúc"),
            "the note is not part of the undo"
        );
        assert!(back.rev > running.rev);
        assert_eq!(
            timer.apply(&Command::Undo, T0 + 66_000),
            Err(TimerError::NothingToUndo),
            "once"
        );
        // After ten seconds, or after another change, there is nothing to undo.
        timer.apply(&Command::Next, T0 + 100_000).unwrap();
        assert_eq!(
            timer.apply(&Command::Undo, T0 + 110_001),
            Err(TimerError::NothingToUndo)
        );
        timer
            .apply(&Command::Start { slot: None }, T0 + 120_000)
            .unwrap();
        timer.apply(&Command::Stop, T0 + 130_000).unwrap();
        timer
            .apply(&Command::Adjust { seconds: 60 }, T0 + 130_000)
            .unwrap_err();
        timer
            .apply(&Command::Reset { slot: None }, T0 + 131_000)
            .unwrap();
        timer.apply(&Command::Undo, T0 + 132_000).unwrap();
        assert_eq!(
            timer.current().unwrap().state,
            SlotState::Done,
            "the reset is undone"
        );
        assert!(timer.current().unwrap().earlier.is_empty());
    }

    #[test]
    fn a_slot_is_changed_on_the_day_but_never_a_finished_one() {
        let mut timer = timer();
        let edit = |slot, unit: Option<&str>, seconds| Command::Edit {
            slot,
            unit: unit.map(str::to_string),
            topic: Some("Chủ đề mới".into()),
            seconds,
            venue: Some("hall".into()),
        };
        timer
            .apply(&edit(5, Some(" Sở Nội vụ (thay) "), Some(300)), T0)
            .unwrap();
        let five = &timer.reports(T0)[4];
        assert_eq!(
            (five.unit.as_str(), five.topic.as_str(), five.planned_ms),
            ("Sở Nội vụ (thay)", "Chủ đề mới", 300_000)
        );
        timer.apply(&Command::Start { slot: Some(5) }, T0).unwrap();
        assert_eq!(timer.snapshot(T0).slot.unwrap().unit, "Sở Nội vụ (thay)");
        assert_eq!(timer.snapshot(T0).duration_ms, Some(300_000));
        timer.apply(&Command::Stop, T0 + 1_000).unwrap();
        assert_eq!(
            timer.apply(&edit(5, Some("Sở khác"), None), T0),
            Err(TimerError::EditDone(5))
        );
        for bad in [
            edit(6, Some("  "), None),
            edit(6, None, Some(0)),
            edit(6, Some(&"x".repeat(301)), None),
        ] {
            assert_eq!(timer.apply(&bad, T0), Err(TimerError::BadEdit), "{bad:?}");
        }
        assert_eq!(
            timer.apply(&edit(99, None, None), T0),
            Err(TimerError::UnknownSlot(99))
        );
    }

    #[test]
    fn a_stored_timing_is_checked_against_the_unit_now_at_its_row() {
        let timer = started(3);
        let three = timer.slots()[2].plan.unit.clone();
        assert_eq!(timer.moved_result(3, None, &three), None);
        assert_eq!(timer.moved_result(3, Some("3"), &three), None);
        let moved = timer.moved_result(3, Some("3"), "Sở X").unwrap();
        assert_eq!(
            moved.to_string(),
            format!("row 3 is now “{three}” but its stored timings are “Sở X”'s")
        );
        assert!(
            timer.moved_result(4, Some("4"), &three).is_some(),
            "another slot is current"
        );
        assert_eq!(
            timer.moved_result(27, None, "Sở X").unwrap().to_string(),
            "row 27 is gone but “Sở X” has stored timings under it"
        );
    }

    #[test]
    fn slots_are_moved_inserted_and_withdrawn_and_each_keeps_its_record_and_id() {
        let mut timer = started(1);
        timer.apply(&Command::Stop, T0 + 1_000).unwrap();
        let unit_of = |t: &Timer, order: u32| t.reports(T0)[order as usize - 1].unit.clone();
        let four = unit_of(&timer, 4);
        // Slot 4 first: slot 1 (done) is now 2, its record with it.
        timer
            .apply(&Command::Move { slot: 4, to: 1 }, T0 + 2_000)
            .unwrap();
        assert_eq!(unit_of(&timer, 1), four);
        let two = &timer.reports(T0)[1];
        assert_eq!((two.id.as_str(), two.state), ("1", SlotState::Done));
        assert_eq!(
            timer.current().unwrap().plan.order,
            2,
            "the current slot followed its row"
        );
        // A late addition after position 3.
        let insert = Command::Insert {
            after: 3,
            unit: "Sở Y tế (bổ sung)".into(),
            topic: String::new(),
            seconds: 300,
            venue: "hall".into(),
        };
        timer.apply(&insert, T0 + 3_000).unwrap();
        let new = &timer.reports(T0)[3];
        assert_eq!(
            (
                new.id.as_str(),
                new.unit.as_str(),
                new.planned_ms,
                new.order
            ),
            ("them-1", "Sở Y tế (bổ sung)", 300_000, 4)
        );
        assert_eq!(timer.reports(T0).len(), 27);
        // Withdraw the inserted one; a slot that ran cannot be.
        timer
            .apply(&Command::Withdraw { slot: 4 }, T0 + 4_000)
            .unwrap();
        assert_eq!(timer.reports(T0).len(), 26);
        assert_eq!(
            timer.apply(&Command::Withdraw { slot: 2 }, T0),
            Err(TimerError::WithdrawHasRecord(2))
        );
        assert_eq!(
            timer.apply(&Command::Move { slot: 3, to: 27 }, T0),
            Err(TimerError::NoPosition(27))
        );
        let orders: Vec<u32> = timer.reports(T0).iter().map(|r| r.order).collect();
        assert_eq!(orders, (1..=26).collect::<Vec<_>>());
    }
}

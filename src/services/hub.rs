//! The live state of all sites, shared by every socket task and the HTTP handlers.
//!
//! Each method takes the lock once, calls the pure core (liveness, link, clocksync),
//! and does the non-blocking side effects the result asks for (store queue, metrics
//! atomics, live-feed broadcast) before letting go, so the live feed's sequence
//! numbers follow the order in which things happened.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::LivenessConfig;
use crate::core::clocksync::{Exchange, OffsetEstimator, OffsetSample, SyncEstimate};
use crate::core::link::LinkStats;
use crate::core::liveness::{Liveness, SiteState, Thresholds, Transition, Uptime};
use crate::core::sites::{Roster, SiteId, SiteIdx};
use crate::core::time::EpochMs;
use crate::metrics::Metrics;
use crate::protocol::{
    AgentKind, Frame, LinkEntry, LiveMsg, Sequenced, ServerMsg, SiteView, StateCounts,
};
use crate::store::{History, Store};

/// What a socket task is asked to send. Every variant is one pointer wide: each site's
/// queue allocates its first block of 32 slots when it opens.
#[derive(Debug)]
pub enum Outbound {
    Text(Frame),
    /// Throughput test data (rehearsal check).
    Binary(Arc<bytes::Bytes>),
    /// A frame sent to every site whose fan-out is timed: the writer lets go of it once
    /// the frame is written, and the last to let go ends the `Delivery`.
    Tracked(Arc<Tracked>),
}

/// A timed fan-out's frame, shared by every site it goes to.
#[derive(Debug)]
pub struct Tracked {
    pub frame: Frame,
    pub delivery: Delivery,
}

/// One frame on its way to every site. Dropped when the last site's writer has handed
/// it to the kernel (or let it go): the time until then is the fan-out.
pub struct Delivery {
    started: std::time::Instant,
    done: Box<dyn Fn(std::time::Duration) + Send + Sync>,
}

impl Delivery {
    pub fn new(done: impl Fn(std::time::Duration) + Send + Sync + 'static) -> Delivery {
        Delivery {
            started: std::time::Instant::now(),
            done: Box::new(done),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        (self.done)(self.started.elapsed());
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery")
    }
}

/// One frame of the live feed, encoded once for every subscriber.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    pub seq: u64,
    pub topic: Topic,
    pub frame: Frame,
}

/// What a live frame is about, so a display key sees only the timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    Sites,
    Timer,
}

/// The open connection of a site.
struct Connection {
    session: Uuid,
    agent: AgentKind,
    out: mpsc::Sender<Outbound>,
    /// Tells the socket task to close with this code (4409 when replaced).
    kick: Option<oneshot::Sender<u16>>,
}

struct SiteRuntime {
    liveness: Liveness,
    link: LinkStats,
    uptime: Uptime,
    offset: OffsetEstimator,
    conn: Option<Connection>,
    /// Whether the site was ever connected (this run or before): later hellos are reconnects.
    seen_before: bool,
    /// It was up when the service last stopped and has not reconnected since.
    awaiting_return: bool,
}

/// What the previous run left: when it was last alive, and the service's downtime so
/// far (left out of every site's live uptime).
#[derive(Clone, Copy, Debug, Default)]
pub struct Restart {
    pub last_alive_ms: Option<EpochMs>,
    pub downtime_ms: i64,
}

struct Inner {
    sites: Vec<SiteRuntime>,
    seq: u64,
    /// Sites per state, in `SiteState::ALL` order; kept up to date by `after_change`
    /// rather than counted over every site at each transition.
    counts: [usize; 4],
}

/// What an echo produced.
pub struct EchoOutcome {
    pub sync: Option<SyncEstimate>,
    pub next_deadline: Option<EpochMs>,
    pub rtt_ms: f64,
    /// Answered in time and not a stall.
    pub timely: bool,
}

pub struct Hub {
    roster: Arc<Roster>,
    limits: Thresholds,
    /// An echo later than this is a stalled probe.
    echo_timeout_ms: i64,
    clock: Arc<dyn Clock>,
    store: Store,
    metrics: Arc<Metrics>,
    /// Guards every site's liveness, link, clock offset and connection, the live feed's
    /// `seq` and the state counts, so that a change and its numbered live frame happen
    /// together. A std `Mutex`, not tokio's: each holder runs a few microseconds of core
    /// code plus non-blocking side effects (a store queue push, metric atomics, a
    /// broadcast send, `try_send` into each site's queue) and never awaits. A fan-out
    /// to every site holds it for its `try_send`s (no copy of 3,321 senders); never
    /// await, take another service's lock, or do I/O while holding it.
    inner: Mutex<Inner>,
    live: broadcast::Sender<LiveFrame>,
    /// Every state change (site, new state, when), for the incident desk and the
    /// timekeeper (a presenting site that drops).
    changes: mpsc::UnboundedSender<(SiteId, SiteState, EpochMs)>,
    /// Set when the service begins to stop: closing sockets are not the sites' drops.
    stopping: std::sync::atomic::AtomicBool,
}

/// Live frames a slow page may fall behind by before it is sent a fresh snapshot.
const LIVE_BUFFER: usize = 1024;

impl Hub {
    /// Builds the hub from the roster and what history says. Sites start `never_seen`;
    /// a site history shows up when the server stopped gets a restart transition, so
    /// uptime does not count the time the server was down.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        roster: Arc<Roster>,
        liveness: &LivenessConfig,
        clock: Arc<dyn Clock>,
        store: Store,
        metrics: Arc<Metrics>,
        history: &History,
        restart: Restart,
        changes: mpsc::UnboundedSender<(SiteId, SiteState, EpochMs)>,
    ) -> Hub {
        let now = clock.now_ms();
        // The sites' "server restarted" goes back to when the service was last alive.
        let stopped_at = restart.last_alive_ms.unwrap_or(now).min(now);
        let tracking_since = if history.tracking_since_ms > 0 {
            history.tracking_since_ms
        } else {
            now
        };
        let mut sites: Vec<SiteRuntime> = roster
            .sites()
            .iter()
            .map(|site| {
                let sessions = history
                    .sessions_per_site
                    .get(site.id.as_str())
                    .copied()
                    .unwrap_or(0);
                let mut link = LinkStats::default();
                link.set_reconnects(sessions.saturating_sub(1));
                let mut uptime = Uptime::new(tracking_since);
                uptime.exclude(restart.downtime_ms);
                SiteRuntime {
                    liveness: Liveness::default(),
                    link,
                    uptime,
                    offset: OffsetEstimator::default(),
                    conn: None,
                    seen_before: sessions > 0,
                    awaiting_return: false,
                }
            })
            .collect();
        let mut last_state = vec![SiteState::NeverSeen; sites.len()];
        for stored in &history.transitions {
            let Some(idx) = stored.site.parse().ok().and_then(|id| roster.index_of(id)) else {
                continue; // a site no longer in the roster
            };
            let t = &stored.transition;
            sites[idx].uptime.apply(t.to, t.at_ms);
            if t.to == SiteState::Offline {
                sites[idx].liveness.remember_offline(t.at_ms);
            }
            last_state[idx] = t.to;
        }
        for (idx, state) in last_state.into_iter().enumerate() {
            if state.is_up() {
                let t = Transition {
                    from: state,
                    to: SiteState::NeverSeen,
                    at_ms: stopped_at,
                    detected_at_ms: now,
                    reason: "server restarted; waiting for the site to reconnect".into(),
                };
                sites[idx].uptime.apply(t.to, t.at_ms);
                sites[idx].liveness.remember_last_seen(stopped_at);
                sites[idx].awaiting_return = true;
                store.record_transition(roster.site(idx).id, &t);
            }
        }
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let hub = Hub {
            roster,
            limits: liveness.into(),
            echo_timeout_ms: liveness.echo_timeout_ms as i64,
            clock,
            store,
            metrics,
            inner: Mutex::new(Inner {
                counts: [sites.len(), 0, 0, 0],
                sites,
                seq: 0,
            }),
            live,
            changes,
            stopping: std::sync::atomic::AtomicBool::new(false),
        };
        hub.metrics.set_state_counts(&hub.lock().counts);
        hub
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The service begins to stop: from now on a closing socket is not a transition.
    pub fn stop_watching(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The offline threshold has passed since the start: each site that was up before
    /// the restart and has not come back is offline now (its last seen kept).
    pub fn restart_grace_over(&self) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        for site in 0..inner.sites.len() {
            let rt = &mut inner.sites[site];
            if !std::mem::take(&mut rt.awaiting_return) {
                continue;
            }
            let transition = rt.liveness.not_back_after_restart(now);
            self.after_change(&mut inner, site, transition.into_iter().collect(), now);
        }
    }

    pub fn now_ms(&self) -> EpochMs {
        self.clock.now_ms()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the wall down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A site said a valid hello: it becomes the site's connection (replacing any
    /// older one, which is told to close with 4409) and goes online.
    pub fn connect(
        &self,
        site: SiteIdx,
        agent: AgentKind,
        version: &str,
        out: mpsc::Sender<Outbound>,
        kick: oneshot::Sender<u16>,
    ) -> (Uuid, Option<EpochMs>) {
        let now = self.clock.now_ms();
        let session = Uuid::new_v4();
        let mut inner = self.lock();
        let rt = &mut inner.sites[site];
        if let Some(old) = rt.conn.take() {
            if let Some(kick) = old.kick {
                let _ = kick.send(crate::protocol::close::REPLACED);
            }
            self.store
                .record_session_closed(old.session, now, "replaced by a newer connection");
        }
        if rt.seen_before {
            rt.link.reconnected();
        }
        rt.seen_before = true;
        rt.awaiting_return = false;
        rt.offset.clear();
        rt.conn = Some(Connection {
            session,
            agent,
            out,
            kick: Some(kick),
        });
        let transition = rt.liveness.connected(now);
        self.metrics.site_seen(site, now);
        let deadline = rt.liveness.next_deadline(&self.limits);
        self.store.record_session_opened(
            session,
            self.roster.site(site).id,
            agent.as_str(),
            version,
            now,
        );
        self.after_change(&mut inner, site, transition.into_iter().collect(), now);
        (session, deadline)
    }

    /// Tells the site's open connection, if any, to close with `code`.
    pub fn kick(&self, site: SiteIdx, code: u16) {
        let mut inner = self.lock();
        if let Some(kick) = inner.sites[site].conn.as_mut().and_then(|c| c.kick.take()) {
            let _ = kick.send(code);
        }
    }

    /// Any valid frame from the site; returns the new deadline.
    pub fn heard(&self, site: SiteIdx, session: Uuid) -> Option<EpochMs> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let rt = inner.current(site, session)?;
        rt.liveness.heard(now);
        self.metrics.site_seen(site, now);
        rt.liveness.next_deadline(&self.limits)
    }

    pub fn probe_sent(&self, site: SiteIdx, session: Uuid) {
        if let Some(rt) = self.lock().current(site, session) {
            rt.link.probe_sent();
        }
    }

    /// A probe got no echo within the echo timeout.
    pub fn probe_missed(&self, site: SiteIdx, session: Uuid) {
        if let Some(rt) = self.lock().current(site, session) {
            rt.link.probe_missed();
            rt.liveness.probe_missed();
        }
    }

    /// An echo came back for a probe this connection sent.
    pub fn echo(&self, site: SiteIdx, session: Uuid, exchange: Exchange) -> EchoOutcome {
        let now = exchange.server_received_ms;
        let mut inner = self.lock();
        let Some(rt) = inner.current(site, session) else {
            return EchoOutcome {
                sync: None,
                next_deadline: None,
                rtt_ms: exchange.raw_round_trip_ms(),
                timely: false,
            };
        };
        let sample = OffsetSample::from_exchange(&exchange);
        // A client that reports impossible times still gave us the round trip.
        let rtt_ms = sample.map_or(exchange.raw_round_trip_ms(), |s| s.rtt_ms);
        if let Some(sample) = sample {
            rt.offset.add(sample);
        }
        let stalled = rtt_ms > self.echo_timeout_ms as f64 || rt.link.record_rtt(rtt_ms);
        let transition = rt.liveness.echo(now, !stalled, &self.limits);
        let (median, jitter) = (rt.link.median_ms(), rt.link.jitter_ms());
        let sync = rt.offset.best();
        let next_deadline = rt.liveness.next_deadline(&self.limits);
        self.metrics.site_seen(site, now);
        self.metrics.probe_rtt(rtt_ms);
        self.metrics.site_link(site, median, jitter);
        self.after_change(&mut inner, site, transition.into_iter().collect(), now);
        EchoOutcome {
            sync,
            next_deadline,
            rtt_ms,
            timely: !stalled,
        }
    }

    /// The site's deadline passed: applies silence. Returns whether it is now offline
    /// (the socket should close) and the next deadline.
    pub fn tick(&self, site: SiteIdx, session: Uuid) -> (bool, Option<EpochMs>) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let Some(rt) = inner.current(site, session) else {
            return (true, None);
        };
        let transitions = rt.liveness.tick(now, &self.limits);
        let offline = rt.liveness.state() == SiteState::Offline;
        let deadline = rt.liveness.next_deadline(&self.limits);
        self.after_change(&mut inner, site, transitions, now);
        (offline, deadline)
    }

    /// The site's socket closed or failed; ignored for a connection already replaced.
    pub fn disconnected(&self, site: SiteIdx, session: Uuid, reason: &str) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if inner.current(site, session).is_none() {
            return;
        }
        let rt = &mut inner.sites[site];
        rt.conn = None;
        // The service is stopping: the sites did not drop, the service did. Their
        // state at the stop is what the next start finds (and dates the stop by).
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            self.store.record_session_closed(session, now, reason);
            return;
        }
        let transition = rt.liveness.disconnected(now, reason);
        self.store.record_session_closed(session, now, reason);
        self.after_change(&mut inner, site, transition.into_iter().collect(), now);
    }

    /// Sends a frame to every connected site without waiting for any of them. A site
    /// whose queue is full is told to close (it is not reading). Returns how many got it.
    pub fn send_to_all_sites(&self, frame: &Frame) -> usize {
        self.send_to_all_tracked(frame, None)
    }

    /// The same, timing the fan-out with `delivery` (see `Delivery`).
    pub fn send_to_all_tracked(&self, frame: &Frame, delivery: Option<Delivery>) -> usize {
        let tracked = delivery.map(|delivery| {
            Arc::new(Tracked {
                frame: frame.clone(),
                delivery,
            })
        });
        let mut inner = self.lock();
        inner
            .sites
            .iter_mut()
            .map(|rt| deliver(rt, frame, tracked.as_ref()))
            .filter(|sent| *sent)
            .count()
    }

    /// The same for some sites only.
    pub fn send_to_sites(&self, sites: &[SiteIdx], frame: &Frame) -> usize {
        let mut inner = self.lock();
        sites
            .iter()
            .map(|i| deliver(&mut inner.sites[*i], frame, None))
            .filter(|sent| *sent)
            .count()
    }

    /// Service time stepped forward by `by_ms` with the wall clock: silences count from
    /// where they did (no site "goes quiet" for the skipped minutes) and the interval is
    /// nobody's uptime. At once, before anything can judge a silence by the new time.
    pub fn clock_stepped_silences(&self, by_ms: i64) {
        let mut inner = self.lock();
        for rt in inner.sites.iter_mut() {
            rt.liveness.shift(by_ms);
            rt.uptime.skip(by_ms);
        }
    }

    /// Then, once the running slot has moved with the step: every site's clock offset
    /// is that much smaller (each connected bridge is told at once, so its countdown does
    /// not jump), and the pages hear it.
    pub fn clock_stepped(&self, by_ms: i64, at_ms: EpochMs) {
        let mut inner = self.lock();
        for rt in inner.sites.iter_mut() {
            rt.offset.shift(by_ms);
            if let Some(sync) = rt.offset.best() {
                deliver(rt, &Frame::from(&ServerMsg::from(sync)), None);
            }
        }
        self.publish_locked(&mut inner, LiveMsg::ClockStep { by_ms, at_ms });
    }

    /// Publishes a change on the live feed under the next sequence number: the one
    /// place where live frames are numbered.
    pub fn publish(&self, message: LiveMsg) {
        let mut inner = self.lock();
        self.publish_locked(&mut inner, message);
    }

    fn publish_locked(&self, inner: &mut Inner, message: LiveMsg) {
        inner.seq += 1;
        let seq = inner.seq;
        let topic = if message.is_timer() {
            Topic::Timer
        } else {
            Topic::Sites
        };
        // No subscriber is fine: nobody is watching.
        let _ = self.live.send(LiveFrame {
            seq,
            topic,
            frame: Frame::encode(&Sequenced {
                seq,
                message: &message,
            }),
        });
    }

    /// A receiver of live frames and a snapshot consistent with it: every frame after
    /// the snapshot's `seq` arrives on the receiver.
    /// `snapshot` is built under the hub's lock from the sites' views, their counts and
    /// `now` (`None` for a timer-only page), so no change falls between it and the
    /// receiver; it is sent already encoded under the feed's current `seq`.
    pub fn subscribe(
        &self,
        sites_too: bool,
        snapshot: impl FnOnce(Option<(StateCounts, Vec<SiteView>)>, EpochMs) -> LiveMsg,
    ) -> (broadcast::Receiver<LiveFrame>, u64, Frame) {
        let now = self.clock.now_ms();
        let inner = self.lock();
        let receiver = self.live.subscribe();
        let sites = sites_too.then(|| {
            let views = (0..inner.sites.len())
                .map(|i| self.view(&inner, i, now))
                .collect();
            (inner.state_counts(), views)
        });
        let message = snapshot(sites, now);
        let frame = Frame::encode(&Sequenced {
            seq: inner.seq,
            message: &message,
        });
        (receiver, inner.seq, frame)
    }

    /// Link figures of connected sites, as one live frame (sent every probe interval).
    pub fn publish_links(&self) {
        // Nobody watching: no need to build a frame of every connected site.
        if self.live.receiver_count() == 0 {
            return;
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let links: Vec<_> = inner
            .sites
            .iter()
            .enumerate()
            .filter(|(_, rt)| rt.conn.is_some())
            .map(|(i, rt)| LinkEntry {
                id: self.roster.site(i).id,
                link: rt.link.summary(),
                last_seen_ms: rt.liveness.last_seen_ms(),
            })
            .collect();
        if links.is_empty() {
            return;
        }
        self.publish_locked(
            &mut inner,
            LiveMsg::Links {
                server_ms: now,
                links,
            },
        );
    }

    pub fn site_view(&self, site: SiteIdx) -> SiteView {
        let now = self.clock.now_ms();
        self.view(&self.lock(), site, now)
    }

    pub fn site_views(&self) -> Vec<SiteView> {
        let now = self.clock.now_ms();
        let inner = self.lock();
        (0..inner.sites.len())
            .map(|i| self.view(&inner, i, now))
            .collect()
    }

    /// Each connected site's median RTT over its last probes (sites without one are left out).
    pub fn connected_rtt_medians(&self) -> Vec<(crate::core::sites::SiteId, f64)> {
        let inner = self.lock();
        inner
            .sites
            .iter()
            .enumerate()
            .filter(|(_, rt)| rt.conn.is_some())
            .filter_map(|(i, rt)| Some((self.roster.site(i).id, rt.link.median_ms()?)))
            .collect()
    }

    pub fn state_counts(&self) -> StateCounts {
        self.lock().state_counts()
    }

    pub fn state_of(&self, site: SiteIdx) -> SiteState {
        self.lock().sites[site].liveness.state()
    }

    fn view(&self, inner: &Inner, idx: SiteIdx, now: EpochMs) -> SiteView {
        let site = self.roster.site(idx);
        let rt = &inner.sites[idx];
        let sync = rt.offset.best();
        SiteView {
            id: site.id.to_string(),
            name: site.name.clone(),
            kind: site.kind.as_str(),
            former_district: site.former_district.clone(),
            state: rt.liveness.state(),
            since_ms: rt.liveness.since_ms(),
            last_seen_ms: rt.liveness.last_seen_ms(),
            connected: rt.conn.is_some(),
            agent: rt.conn.as_ref().map(|c| c.agent),
            link: rt.link.summary(),
            uptime: rt.uptime.ratio(now),
            flapping: rt.liveness.is_flapping(now, &self.limits),
            clock_offset_ms: sync.map(|s| s.offset_ms),
            clock_uncertainty_ms: sync.map(|s| s.uncertainty_ms),
        }
    }

    /// Records transitions (store, metrics, uptime) and tells the live feed.
    fn after_change(
        &self,
        inner: &mut Inner,
        site: SiteIdx,
        transitions: Vec<Transition>,
        now: EpochMs,
    ) {
        if transitions.is_empty() {
            return;
        }
        let id = self.roster.site(site).id;
        for t in &transitions {
            inner.counts[state_index(t.from)] -= 1;
            inner.counts[state_index(t.to)] += 1;
            inner.sites[site].uptime.apply(t.to, t.at_ms);
            self.store.record_transition(id, t);
            self.metrics.site_transition(site, t.to);
            let _ = self.changes.send((id, t.to, t.at_ms));
            tracing::info!(site = %id, from = %t.from, to = %t.to, reason = %t.reason, "site state changed");
        }
        self.metrics.set_state_counts(&inner.counts);
        let view = self.view(inner, site, now);
        let last = transitions.last().cloned();
        self.publish_locked(
            inner,
            LiveMsg::Site {
                site: view,
                transition: last,
            },
        );
    }
}

/// Position of a state in `SiteState::ALL` (and in `Inner::counts`).
fn state_index(state: SiteState) -> usize {
    SiteState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("every state is listed")
}

/// Queues a frame for a connected site; a full queue tells it to close instead.
fn deliver(rt: &mut SiteRuntime, frame: &Frame, tracked: Option<&Arc<Tracked>>) -> bool {
    let Some(conn) = rt.conn.as_mut() else {
        return false;
    };
    let outbound = match tracked {
        Some(tracked) => Outbound::Tracked(tracked.clone()),
        None => Outbound::Text(frame.clone()),
    };
    match conn.out.try_send(outbound) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            if let Some(kick) = conn.kick.take() {
                let _ = kick.send(crate::protocol::close::NOT_READING);
            }
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

impl Inner {
    /// The site's runtime if `session` is still its connection.
    fn current(&mut self, site: SiteIdx, session: Uuid) -> Option<&mut SiteRuntime> {
        let rt = &mut self.sites[site];
        (rt.conn.as_ref()?.session == session).then_some(rt)
    }

    fn state_counts(&self) -> StateCounts {
        let [never_seen, online, degraded, offline] = self.counts;
        StateCounts {
            total: self.sites.len(),
            online,
            degraded,
            offline,
            never_seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::LivenessConfig;
    use crate::core::agenda::Agenda;

    fn hub(dir: &std::path::Path) -> Hub {
        let roster = Arc::new(Roster::synthetic(2));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Store::open(dir, 0).unwrap();
        let metrics = Arc::new(Metrics::new(&roster, &Agenda::default()));
        let (offline, _) = mpsc::unbounded_channel();
        Hub::new(
            roster,
            &LivenessConfig::default(),
            clock,
            store,
            metrics,
            &History::default(),
            Restart::default(),
            offline,
        )
    }

    #[tokio::test]
    async fn a_site_whose_queue_is_full_is_told_to_close_and_the_others_still_get_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path());
        let (stuck_out, _stuck_queue) = mpsc::channel(2); // never drained
        let (stuck_kick, mut stuck_kicked) = oneshot::channel();
        hub.connect(0, AgentKind::Agent, "t", stuck_out, stuck_kick);
        let (healthy_out, mut healthy_queue) = mpsc::channel(2);
        let (healthy_kick, mut healthy_kicked) = oneshot::channel();
        hub.connect(1, AgentKind::Agent, "t", healthy_out, healthy_kick);

        for n in 0..5 {
            let delivered = hub.send_to_all_sites(&Frame::encode(&format!("frame {n}")));
            let Some(Outbound::Text(frame)) = healthy_queue.recv().await else {
                panic!("healthy queue closed")
            };
            assert_eq!(frame.as_str(), format!("\"frame {n}\""));
            assert_eq!(delivered, if n < 2 { 2 } else { 1 }, "frame {n}");
        }
        assert_eq!(
            stuck_kicked.try_recv(),
            Ok(crate::protocol::close::NOT_READING)
        );
        assert!(
            healthy_kicked.try_recv().is_err(),
            "the healthy site is left alone"
        );
    }

    #[tokio::test]
    async fn a_replaced_connection_is_told_4409_and_its_late_close_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(dir.path());
        let (out, _queue) = mpsc::channel(4);
        let (kick, mut kicked) = oneshot::channel();
        let (first, _) = hub.connect(0, AgentKind::Agent, "t", out.clone(), kick);
        let (kick, _kicked) = oneshot::channel();
        hub.connect(0, AgentKind::Agent, "t", out, kick);
        assert_eq!(kicked.try_recv(), Ok(crate::protocol::close::REPLACED));
        hub.disconnected(0, first, "socket closed");
        assert_eq!(hub.state_of(0), SiteState::Online);
    }
}

//! Prometheus metrics, in the app's own registry (parallel test servers never mix).
//!
//! Per-site series are created at start for every roster site, and their handles are
//! kept by site index so the hot path updates an atomic, not a labelled lookup.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::core::agenda::Agenda;
use crate::core::liveness::SiteState;
use crate::core::sites::{Roster, SiteIdx};
use crate::core::timer::TimerState;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteInfoLabels {
    site: String,
    name: String,
    kind: &'static str,
    district: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    site: String,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    order: String,
    unit: String,
}

fn slot_labels_of(p: &crate::core::agenda::Presentation) -> CurrentSlotLabels {
    let venue = match p.venue {
        crate::core::agenda::Venue::Hall => "hall".to_string(),
        crate::core::agenda::Venue::Site(id) => id.to_string(),
    };
    CurrentSlotLabels {
        order: p.order.to_string(),
        unit: p.unit.clone(),
        venue,
    }
}

/// A slot with where it is presented from: `hall`, or the site's id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CurrentSlotLabels {
    order: String,
    unit: String,
    venue: String,
}

/// An open incident: its site and what opened it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    site: String,
    cause: &'static str,
    /// When it opened, in Vietnam (`10:41:07`): the notifications say it.
    since: String,
}

/// Who has taken a site's open incident (the name typed on the wall, at most 80 characters).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TakerLabels {
    site: String,
    name: String,
}

/// Series of the open incidents, rebuilt at every change (at most one per site).
struct IncidentSeries {
    open: Gauge,
    untaken: Gauge,
    by_site: Family<IncidentLabels, Gauge>,
    taken_by: Family<TakerLabels, Gauge>,
    raised: Family<SiteLabels, Gauge>,
    excused: Family<SiteLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The series of one site.
struct SiteSeries {
    up: Gauge,
    last_seen: FloatGauge,
    rtt: FloatGauge,
    jitter: FloatGauge,
    /// Indexed like `TRANSITION_TARGETS`.
    transitions: [Counter; 3],
}

const TRANSITION_TARGETS: [SiteState; 3] =
    [SiteState::Online, SiteState::Degraded, SiteState::Offline];

impl IncidentSeries {
    fn register(registry: &mut Registry, roster: &Roster) -> IncidentSeries {
        let series = IncidentSeries {
            open: Gauge::default(),
            untaken: Gauge::default(),
            by_site: Family::default(),
            taken_by: Family::default(),
            raised: Family::default(),
            excused: Family::default(),
        };
        registry.register("incidents_open", "Incidents open now", series.open.clone());
        registry.register(
            "incidents_untaken",
            "Open incidents nobody has taken (\"Tôi xử lý\")",
            series.untaken.clone(),
        );
        registry.register(
            "site_incident",
            "1 while the site has an open incident, labelled with what opened it",
            series.by_site.clone(),
        );
        registry.register(
            "incident_taken",
            "1 for who has taken the site's open incident",
            series.taken_by.clone(),
        );
        registry.register(
            "incident_raised_again",
            "1 while the site's open incident is untaken past incidents.raise_after_seconds",
            series.raised.clone(),
        );
        registry.register(
            "site_excused",
            "1 when the organisers marked the site as not taking part today (no incident, no alert)",
            series.excused.clone(),
        );
        for site in roster.sites() {
            series
                .excused
                .get_or_create(&SiteLabels {
                    site: site.id.to_string(),
                })
                .set(0);
        }
        series
    }
}

/// Which websocket endpoint a connection is on.
#[derive(Clone, Copy, Debug)]
pub enum SocketKind {
    Bridge,
    Live,
}

pub struct Metrics {
    registry: Registry,
    sites_by_state: Family<StateLabels, Gauge>,
    per_site: Vec<SiteSeries>,
    probe_rtt: Histogram,
    timer_fanout: Histogram,
    ws_connections: Family<KindLabels, Gauge>,
    store_errors: Counter,
    store_writable: Gauge,
    event_started: Gauge,
    store_pending: Gauge,
    connections_refused: Counter,
    clock_steps: Counter,
    clock_stepped: Counter<f64, AtomicU64>,
    timer_remaining: FloatGauge,
    timer_overtime: Counter<f64, AtomicU64>,
    timer_state: Family<StateLabels, Gauge>,
    /// Each slot's "is the current one" gauge, by order.
    current_slot: Family<CurrentSlotLabels, Gauge>,
    /// Every slot label set created so far (a slot changed on the day gets new labels;
    /// the old ones stay at 0). A std `Mutex` held for one update.
    slot_labels: std::sync::Mutex<Vec<CurrentSlotLabels>>,
    /// By site index; only sites with a probe address have them.
    devices: std::collections::HashMap<SiteIdx, (Gauge, FloatGauge)>,
    incidents: IncidentSeries,
    notify: NotifySeries,
    public_url: Family<UrlLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UrlLabels {
    url: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

/// What the relays did with the notifications they took.
struct NotifySeries {
    sent: Family<ChannelLabels, Counter>,
    retries: Family<ChannelLabels, Counter>,
    failed: Family<ChannelLabels, Counter>,
}

impl Metrics {
    pub fn new(roster: &Roster, agenda: &Agenda) -> Metrics {
        let mut registry = Registry::with_prefix("diemcau");
        let sites_by_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sites",
            "Bridge sites by liveness state",
            sites_by_state.clone(),
        );
        for state in SiteState::ALL {
            drop(sites_by_state.get_or_create(&StateLabels {
                state: state.as_str(),
            }));
        }
        let up = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "site_up",
            "1 when the site is online or degraded",
            up.clone(),
        );
        let info = Family::<SiteInfoLabels, Gauge>::default();
        registry.register(
            "site_info",
            "Site names and kinds, value 1 (join on `site`)",
            info.clone(),
        );
        let last_seen = Family::<SiteLabels, FloatGauge>::default();
        registry.register(
            "site_last_seen_timestamp_seconds",
            "When the site last sent a valid frame (Unix time)",
            last_seen.clone(),
        );
        let rtt = Family::<SiteLabels, FloatGauge>::default();
        registry.register(
            "site_rtt_seconds",
            "Median probe round trip of the site",
            rtt.clone(),
        );
        let jitter = Family::<SiteLabels, FloatGauge>::default();
        registry.register(
            "site_jitter_seconds",
            "Smoothed RTT jitter of the site (RFC 3550 style)",
            jitter.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "site_transitions",
            "Liveness transitions of the site, by new state",
            transitions.clone(),
        );

        let per_site = roster
            .sites()
            .iter()
            .map(|site| {
                let label = SiteLabels {
                    site: site.id.to_string(),
                };
                info.get_or_create(&SiteInfoLabels {
                    site: site.id.to_string(),
                    name: site.name.clone(),
                    kind: site.kind.as_str(),
                    district: site.former_district.clone(),
                })
                .set(1);
                SiteSeries {
                    up: up.get_or_create_owned(&label),
                    last_seen: last_seen.get_or_create_owned(&label),
                    rtt: rtt.get_or_create_owned(&label),
                    jitter: jitter.get_or_create_owned(&label),
                    transitions: TRANSITION_TARGETS.map(|to| {
                        transitions.get_or_create_owned(&TransitionLabels {
                            site: site.id.to_string(),
                            to: to.as_str(),
                        })
                    }),
                }
            })
            .collect();

        // Fine at the low end: the budgets speak of a few milliseconds on a LAN.
        let probe_rtt = Histogram::new([
            0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5,
            1.0, 2.5,
        ]);
        registry.register(
            "probe_rtt_seconds",
            "Round trip of every answered probe",
            probe_rtt.clone(),
        );
        let timer_fanout = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
            2.5,
        ]);
        registry.register(
            "timer_fanout_seconds",
            "Timer change applied → the last connected site's frame handed to the kernel",
            timer_fanout.clone(),
        );
        let ws_connections = Family::<KindLabels, Gauge>::default();
        registry.register(
            "ws_connections",
            "Open websocket connections by endpoint",
            ws_connections.clone(),
        );
        for kind in ["bridge", "live"] {
            drop(ws_connections.get_or_create(&KindLabels { kind }));
        }
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 when the disk takes the store's writes; 0 while they are kept in memory",
            store_writable.clone(),
        );
        store_writable.set(1);
        let event_started = Gauge::default();
        registry.register(
            "event_started",
            "1 once the conference has begun ([report] start, or no start configured); before it, sites not yet seen are not losing",
            event_started.clone(),
        );
        let store_pending = Gauge::default();
        registry.register(
            "store_pending_writes",
            "Writes kept in memory because the disk refused them",
            store_pending.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "New TCP connections refused (503) because max_connections were open",
            connections_refused.clone(),
        );
        let clock_steps = Counter::default();
        registry.register(
            "clock_steps",
            "Times the wall clock stepped forward and service time followed (NTP, a resumed VM)",
            clock_steps.clone(),
        );
        let clock_stepped = Counter::<f64, AtomicU64>::default();
        registry.register(
            "clock_stepped_seconds",
            "Seconds the service time jumped forward with the wall clock, all steps together",
            clock_stepped.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_write_errors",
            "Store transactions that failed",
            store_errors.clone(),
        );

        let timer_remaining = FloatGauge::default();
        registry.register(
            "timer_remaining_seconds",
            "Time left in the current slot (negative in overtime; NaN when none is under way)",
            timer_remaining.clone(),
        );
        timer_remaining.set(f64::NAN);
        let timer_overtime = Counter::<f64, AtomicU64>::default();
        registry.register(
            "timer_overtime_seconds",
            "Overtime of finished slots",
            timer_overtime.clone(),
        );
        let timer_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "timer_state",
            "1 for the state of the current slot (idle: none selected)",
            timer_state.clone(),
        );
        for state in TimerState::ALL {
            timer_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set((state == TimerState::Idle) as i64);
        }
        let slot_info = Family::<SlotLabels, Gauge>::default();
        registry.register(
            "timer_slot_info",
            "The agenda's slots, value 1",
            slot_info.clone(),
        );
        for p in &agenda.presentations {
            slot_info
                .get_or_create(&SlotLabels {
                    order: p.order.to_string(),
                    unit: p.unit.clone(),
                })
                .set(1);
        }
        let current_family = Family::<CurrentSlotLabels, Gauge>::default();
        registry.register(
            "timer_current_slot",
            "1 for the slot the timer is on now (its order, unit and venue: hall or a site id), 0 for the others",
            current_family.clone(),
        );
        let slot_labels: Vec<CurrentSlotLabels> =
            agenda.presentations.iter().map(slot_labels_of).collect();
        for labels in &slot_labels {
            current_family.get_or_create(labels).set(0);
        }

        let probe_success = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "probe_success",
            "1 when the last active check of the site's equipment succeeded",
            probe_success.clone(),
        );
        let probe_duration = Family::<SiteLabels, FloatGauge>::default();
        registry.register(
            "probe_duration_seconds",
            "How long the last active check took",
            probe_duration.clone(),
        );
        let devices = roster
            .sites()
            .iter()
            .enumerate()
            .filter(|(_, site)| site.probe.is_some())
            .map(|(idx, site)| {
                let label = SiteLabels {
                    site: site.id.to_string(),
                };
                (
                    idx,
                    (
                        probe_success.get_or_create_owned(&label),
                        probe_duration.get_or_create_owned(&label),
                    ),
                )
            })
            .collect();

        let incidents = IncidentSeries::register(&mut registry, roster);
        let notify = NotifySeries {
            sent: Family::default(),
            retries: Family::default(),
            failed: Family::default(),
        };
        registry.register(
            "notify_sent",
            "Notifications the relay delivered",
            notify.sent.clone(),
        );
        registry.register(
            "notify_retries",
            "Tries the relay made again",
            notify.retries.clone(),
        );
        registry.register(
            "notify_failed",
            "Notifications the relay gave up on (logged with their text)",
            notify.failed.clone(),
        );
        for series in [&notify.sent, &notify.retries, &notify.failed] {
            drop(series.get_or_create(&ChannelLabels { channel: "zalo" }));
        }
        let public_url = Family::<UrlLabels, Gauge>::default();
        registry.register(
            "public_url_info",
            "The address people open (public_url, else the listen address), value 1",
            public_url.clone(),
        );
        Metrics {
            devices,
            incidents,
            notify,
            public_url,
            registry,
            sites_by_state,
            per_site,
            probe_rtt,
            timer_fanout,
            ws_connections,
            store_errors,
            store_writable,
            event_started,
            store_pending,
            connections_refused,
            clock_steps,
            clock_stepped,
            timer_remaining,
            timer_overtime,
            timer_state,
            current_slot: current_family,
            slot_labels: std::sync::Mutex::new(slot_labels),
        }
    }

    /// The wall's address, for the notifications' link (`public_url`, else the listen
    /// address).
    pub fn public_url(&self, url: &str) {
        self.public_url
            .get_or_create(&UrlLabels {
                url: url.trim_end_matches('/').to_string(),
            })
            .set(1);
    }

    pub fn notify_sent(&self, channel: &'static str) {
        self.notify
            .sent
            .get_or_create(&ChannelLabels { channel })
            .inc();
    }

    pub fn notify_retry(&self, channel: &'static str) {
        self.notify
            .retries
            .get_or_create(&ChannelLabels { channel })
            .inc();
    }

    pub fn notify_failed(&self, channel: &'static str) {
        self.notify
            .failed
            .get_or_create(&ChannelLabels { channel })
            .inc();
    }

    /// The open incidents and the excused sites, as they are now.
    pub fn incidents(
        &self,
        open: &[&crate::core::incidents::Incident],
        excused: &[crate::core::sites::SiteId],
        roster: &Roster,
    ) {
        let m = &self.incidents;
        m.open.set(open.len() as i64);
        m.untaken
            .set(open.iter().filter(|i| i.takers.is_empty()).count() as i64);
        m.by_site.clear();
        m.taken_by.clear();
        m.raised.clear();
        for incident in open {
            let site = incident.site.to_string();
            m.by_site
                .get_or_create(&IncidentLabels {
                    site: site.clone(),
                    cause: incident.cause.as_str(),
                    since: crate::core::time::local_time(incident.opened_ms),
                })
                .set(1);
            match incident.taken_by() {
                Some(taker) => {
                    m.taken_by
                        .get_or_create(&TakerLabels {
                            site,
                            name: taker.name.clone(),
                        })
                        .set(1);
                }
                None if incident.raised_again_ms.is_some() => {
                    m.raised.get_or_create(&SiteLabels { site }).set(1);
                }
                None => {}
            }
        }
        for site in roster.sites() {
            m.excused
                .get_or_create(&SiteLabels {
                    site: site.id.to_string(),
                })
                .set(excused.contains(&site.id) as i64);
        }
    }

    /// Registers more metrics (timer, checks) in the same registry.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn set_state_counts(&self, counts: &[usize; 4]) {
        for (state, count) in SiteState::ALL.iter().zip(counts) {
            self.sites_by_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(*count as i64);
        }
    }

    pub fn site_transition(&self, site: SiteIdx, to: SiteState) {
        let series = &self.per_site[site];
        series.up.set(to.is_up() as i64);
        if let Some(i) = TRANSITION_TARGETS.iter().position(|s| *s == to) {
            series.transitions[i].inc();
        }
    }

    pub fn site_seen(&self, site: SiteIdx, at_ms: i64) {
        self.per_site[site].last_seen.set(at_ms as f64 / 1000.0);
    }

    pub fn site_link(&self, site: SiteIdx, rtt_ms: Option<f64>, jitter_ms: Option<f64>) {
        let series = &self.per_site[site];
        series.rtt.set(rtt_ms.unwrap_or(f64::NAN) / 1000.0);
        series.jitter.set(jitter_ms.unwrap_or(f64::NAN) / 1000.0);
    }

    pub fn timer_fanout(&self, took: std::time::Duration) {
        self.timer_fanout.observe(took.as_secs_f64());
    }

    pub fn probe_rtt(&self, rtt_ms: f64) {
        self.probe_rtt.observe(rtt_ms / 1000.0);
    }

    pub fn connection_opened(&self, kind: SocketKind) {
        self.ws_gauge(kind).inc();
    }

    pub fn connection_closed(&self, kind: SocketKind) {
        self.ws_gauge(kind).dec();
    }

    /// Whether the conference has begun (the alert rules leave never-seen sites alone
    /// before it).
    pub fn event_started(&self, started: bool) {
        self.event_started.set(i64::from(started));
    }

    /// The store's health: whether writes reach the disk, how many wait in memory, and
    /// how many transactions have failed since start.
    pub fn store_health(&self, writable: bool, pending_writes: usize, failed_transactions: u64) {
        self.store_writable.set(i64::from(writable));
        self.store_pending.set(pending_writes as i64);
        let (total, counted) = (failed_transactions, self.store_errors.get());
        if total > counted {
            self.store_errors.inc_by(total - counted);
        }
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Service time followed a forward step of the wall clock by `by_ms`.
    pub fn clock_step(&self, by_ms: i64) {
        self.clock_steps.inc();
        self.clock_stepped.inc_by(by_ms as f64 / 1000.0);
    }

    /// Adds a finished slot's overtime.
    pub fn timer_overtime(&self, overtime_ms: i64) {
        if overtime_ms > 0 {
            self.timer_overtime.inc_by(overtime_ms as f64 / 1000.0);
        }
    }

    pub fn timer_state(
        &self,
        state: TimerState,
        remaining_ms: Option<i64>,
        current: Option<&crate::core::agenda::Presentation>,
    ) {
        let mut known = self.slot_labels.lock().unwrap_or_else(|e| e.into_inner());
        let now = current.map(slot_labels_of);
        if let Some(labels) = now.as_ref().filter(|l| !known.contains(l)) {
            known.push(labels.clone());
        }
        for labels in known.iter() {
            let on = now.as_ref() == Some(labels);
            self.current_slot.get_or_create(labels).set(i64::from(on));
        }
        for s in TimerState::ALL {
            self.timer_state
                .get_or_create(&StateLabels { state: s.as_str() })
                .set((s == state) as i64);
        }
        self.timer_remaining
            .set(remaining_ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0));
    }

    /// One active check: its success and how long it took.
    pub fn device_check(&self, site: SiteIdx, connect_ms: Option<f64>, took_seconds: f64) {
        if let Some((success, duration)) = self.devices.get(&site) {
            success.set(connect_ms.is_some() as i64);
            duration.set(took_seconds);
        }
    }

    fn ws_gauge(&self, kind: SocketKind) -> Gauge {
        let kind = match kind {
            SocketKind::Bridge => "bridge",
            SocketKind::Live => "live",
        };
        self.ws_connections
            .get_or_create_owned(&KindLabels { kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_has_its_series_before_anything_happens() {
        let roster = Roster::parse("s.csv", include_bytes!("../config/sites.csv")).unwrap();
        let metrics = Metrics::new(&roster, &Agenda::default());
        let text = metrics.encode();
        assert_eq!(text.matches("\ndiemcau_site_up{").count(), 92);
        assert_eq!(
            text.matches("\ndiemcau_site_transitions_total{").count(),
            92 * 3
        );
        assert!(text.contains(
            "diemcau_site_info{site=\"05443\",name=\"Phường Phan Đình Phùng\",kind=\"phuong\""
        ));
        assert!(text.contains("diemcau_sites{state=\"never_seen\"} 0"));
    }

    #[test]
    fn transitions_move_up_and_the_counters() {
        let roster = Roster::synthetic(2);
        let metrics = Metrics::new(&roster, &Agenda::default());
        metrics.site_transition(1, SiteState::Online);
        metrics.site_transition(1, SiteState::Offline);
        metrics.site_transition(1, SiteState::Online);
        let text = metrics.encode();
        assert!(text.contains("diemcau_site_up{site=\"00002\"} 1"), "{text}");
        assert!(text.contains("diemcau_site_transitions_total{site=\"00002\",to=\"online\"} 2"));
        assert!(text.contains("diemcau_site_transitions_total{site=\"00002\",to=\"offline\"} 1"));
    }
}

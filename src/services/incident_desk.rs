//! The incident desk: follows every site's state and equipment, opens and closes
//! incidents by the book's rules, stores each fact (`incident_events`), takes the
//! staff's "Tôi xử lý" and notes, keeps the organisers' excused sites, and tells the
//! walls and the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use crate::clock::Clock;
use crate::core::incidents::{
    BadAct, Excusal, Incident, IncidentBook, IncidentEvent, IncidentPolicy,
};
use crate::core::liveness::SiteState;
use crate::core::sites::{Roster, SiteId};
use crate::metrics::Metrics;
use crate::protocol::LiveMsg;
use crate::services::hub::Hub;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Bad(#[from] BadAct),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Inner {
    book: IncidentBook,
    /// Each site's latest excusal (in force when `excused`).
    excusals: BTreeMap<SiteId, Excusal>,
}

pub struct IncidentDesk {
    /// Guards the book and the excusals. A std `Mutex` held for one core call (observe
    /// and tick, build an act, apply it) and to copy views out; never across an await,
    /// and never while publishing: the live snapshot reads the desk under the hub's
    /// lock, so the desk must not take the hub's lock while holding its own.
    inner: Mutex<Inner>,
    store: Store,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    roster: Arc<Roster>,
    clock: Arc<dyn Clock>,
}

impl IncidentDesk {
    /// Rebuilds the book from every stored event and excusal.
    pub fn restore(
        policy: IncidentPolicy,
        store: Store,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        roster: Arc<Roster>,
        clock: Arc<dyn Clock>,
    ) -> Result<IncidentDesk, StoreError> {
        let mut book = IncidentBook::new(policy);
        for event in store.load_incident_events()? {
            book.apply(&event);
        }
        let mut excusals = BTreeMap::new();
        for excusal in store.load_excusals()? {
            if roster.index_of(excusal.site).is_some() {
                book.excused(excusal.site, excusal.excused, excusal.at_ms);
                excusals.insert(excusal.site, excusal);
            }
        }
        let desk = IncidentDesk {
            inner: Mutex::new(Inner { book, excusals }),
            store,
            hub,
            metrics,
            roster,
            clock,
        };
        desk.update_metrics(&desk.lock());
        Ok(desk)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A site's liveness changed (from the hub's transitions).
    pub fn site_changed(&self, site: SiteId, state: SiteState, at_ms: i64) {
        self.observe(Some(site), |book| book.site_state(site, state, at_ms));
    }

    /// A site's equipment check changed.
    pub fn device_changed(&self, site: SiteId, down: bool, at_ms: i64) {
        self.observe(Some(site), |book| book.device_state(site, down, at_ms));
    }

    /// The time-based rules (degraded too long, back long enough, nobody took it).
    pub fn tick(&self) {
        self.observe(None, |_| {});
    }

    /// Applies `change`, then the rules (for `site` alone when it is that site's change).
    fn observe(&self, site: Option<SiteId>, change: impl FnOnce(&mut IncidentBook)) {
        let now = self.clock.now_ms();
        let changed = {
            let mut inner = self.lock();
            change(&mut inner.book);
            let events = match site {
                Some(site) => inner.book.tick_site(site, now),
                None => inner.book.tick(now),
            };
            for event in &events {
                self.store.record_incident_event(event);
            }
            if !events.is_empty() {
                self.update_metrics(&inner);
            }
            views_of(&inner.book, &events)
        };
        for incident in changed {
            self.announce(incident);
        }
    }

    /// A person's take ("Tôi xử lý"; taking it again hands it over), checked, not yet
    /// stored: the caller spends its budget, then `record`s it.
    pub fn taking(&self, id: Uuid, name: &str, role: &str) -> Result<IncidentEvent, BadAct> {
        let now = self.clock.now_ms();
        self.lock().book.take(id, name, role, now)
    }

    /// A person's note on an incident, checked, not yet stored.
    pub fn noting(
        &self,
        id: Uuid,
        name: &str,
        role: &str,
        text: &str,
    ) -> Result<IncidentEvent, BadAct> {
        let now = self.clock.now_ms();
        self.lock().book.note(id, name, role, text, now)
    }

    /// Stores a person's act, then applies it and tells every wall.
    pub async fn record(&self, event: IncidentEvent) -> Result<Incident, DeskError> {
        crate::store::keep_going_unless_rejected(self.store.record_incident_act(&event).await)?;
        let incident = {
            let mut inner = self.lock();
            inner.book.apply(&event);
            self.update_metrics(&inner);
            inner.book.get(event.incident()).cloned()
        }
        .ok_or(BadAct::Unknown(event.incident()))?;
        self.announce(incident.clone());
        Ok(incident)
    }

    /// The organisers excuse a site (or take it back): stored, then applied at once.
    pub async fn excuse(&self, excusal: Excusal) -> Result<Excusal, StoreError> {
        crate::store::keep_going_unless_rejected(self.store.record_excusal(&excusal).await)?;
        {
            let mut inner = self.lock();
            inner
                .book
                .excused(excusal.site, excusal.excused, excusal.at_ms);
            inner.excusals.insert(excusal.site, excusal.clone());
            self.update_metrics(&inner);
        }
        self.hub.publish(LiveMsg::Excusal(excusal.clone()));
        self.tick();
        Ok(excusal)
    }

    /// Every incident so far, oldest first.
    pub fn incidents(&self) -> Vec<Incident> {
        self.lock().book.all().to_vec()
    }

    /// The open ones and those closed since `since_ms` (what a wall shows).
    pub fn recent(&self, since_ms: i64) -> Vec<Incident> {
        self.lock()
            .book
            .all()
            .iter()
            .filter(|i| i.resolved_ms.is_none_or(|at| at >= since_ms))
            .cloned()
            .collect()
    }

    /// The sites excused now, with who, when and why.
    pub fn excused(&self) -> Vec<Excusal> {
        self.lock()
            .excusals
            .values()
            .filter(|e| e.excused)
            .cloned()
            .collect()
    }

    pub fn is_excused(&self, site: SiteId) -> bool {
        self.lock().book.is_excused(site)
    }

    fn announce(&self, incident: Incident) {
        if incident.raised_again_ms.is_some() && incident.takers.is_empty() && incident.is_open() {
            tracing::warn!(site = %incident.site, incident = %incident.id, "nobody has taken this incident: raised again");
        }
        self.hub.publish(LiveMsg::Incident(Box::new(incident)));
    }

    fn update_metrics(&self, inner: &Inner) {
        let open: Vec<&Incident> = inner.book.open_incidents().collect();
        let excused: Vec<SiteId> = inner
            .excusals
            .values()
            .filter(|e| e.excused)
            .map(|e| e.site)
            .collect();
        self.metrics.incidents(&open, &excused, &self.roster);
    }
}

/// The incidents the events touched, once each, as they are now.
fn views_of(book: &IncidentBook, events: &[IncidentEvent]) -> Vec<Incident> {
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.incident()).collect();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| book.get(id).cloned())
        .collect()
}

//! `tactful.v1.Events`: applies each event on its own; bad events are listed with the field at
//! fault and the rest are applied, so one bad record never costs the good ones. The response
//! is sent only once every explicit event in it is durable; if the state store cannot make
//! them durable the call fails with UNAVAILABLE (retrying it is safe: explicit feedback is
//! idempotent).
//!
//! A behavioural event (impression, click, cart, favourite, purchase) that names an item the
//! catalog holds gets the attributes it leaves unset from there, as a Rank candidate does, so
//! that a platform sending ids only still builds category and brand fatigue, learned
//! interests and cooling-off windows. Explicit feedback is recorded exactly as sent: the
//! user's words are not widened (an item's brand added to a "fewer like this" would mute the
//! brand as well).

use std::sync::{Arc, OnceLock};

use prometheus::IntCounter;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{ApiError, convert};
use crate::catalog::Catalog;
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::pb;
use crate::state::{Event, EventKind, RecordError, Ticket, UserStore};
use crate::time::now_ms;

/// Rejections reported per response; the total is always reported.
const MAX_REJECTIONS_LISTED: usize = 1000;

pub struct EventsService {
    store: Arc<UserStore>,
    /// Completes behavioural events that name an item it holds.
    catalog: Arc<Catalog>,
    /// Where `tactful_events_total` is counted.
    metrics: Arc<Metrics>,
    limits: Limits,
    counters: Counters,
}

impl EventsService {
    pub fn new(
        store: Arc<UserStore>,
        catalog: Arc<Catalog>,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            catalog,
            metrics,
            limits,
            counters: Counters::default(),
        }
    }
}

/// What became of an event, as `tactful_events_total` labels it.
#[derive(Clone, Copy)]
enum Outcome {
    Applied,
    Rejected,
    Unavailable,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
            Self::Unavailable => "unavailable",
        }
    }
}

/// `EventType` numbers 0..=12 (unspecified included), then one slot for numbers no
/// `EventType` has.
const TYPE_SLOTS: usize = 14;

/// The `tactful_events_total` counter of each type and outcome, looked up on its first event
/// (so a series appears when it first counts, as with a lookup per event) and then counted with
/// one atomic add: a label string and a hashed lookup per event took some 3.5% of the server's
/// CPU under Events.Stream load.
#[derive(Default)]
struct Counters([[OnceLock<IntCounter>; 3]; TYPE_SLOTS]);

impl Counters {
    fn count(&self, metrics: &Metrics, event_type: i32, outcome: Outcome) {
        let slot = usize::try_from(event_type)
            .ok()
            .filter(|&t| t < TYPE_SLOTS - 1)
            .unwrap_or(TYPE_SLOTS - 1);
        self.0[slot][outcome as usize]
            .get_or_init(|| metrics.event_counter(&type_label(event_type), outcome.label()))
            .inc();
    }
}

/// Counts what happened to a sequence of events.
#[derive(Default)]
struct Tally {
    response: pb::RecordResponse,
    /// What the acknowledgement waits for.
    ticket: Ticket,
}

impl Tally {
    async fn apply(
        &mut self,
        index: usize,
        e: &pb::Event,
        service: &EventsService,
    ) -> Result<(), ApiError> {
        let (store, limits) = (&service.store, &service.limits);
        let now = now_ms();
        let result = match convert::event(e, now, limits) {
            Ok(mut event) => {
                fill_from_catalog(&mut event, &service.catalog);
                store.record(store.key(&e.user_id), &event, now).await
            }
            Err(invalid) => Err(RecordError::Invalid(invalid)),
        };
        let r = &mut self.response;
        let count = |outcome| service.counters.count(&service.metrics, e.r#type, outcome);
        match result {
            Ok(ticket) => {
                count(Outcome::Applied);
                r.applied += 1;
                self.ticket = self.ticket.join(ticket);
            }
            Err(RecordError::Unavailable(e)) => {
                count(Outcome::Unavailable);
                return Err(e.into());
            }
            Err(RecordError::Invalid(err)) => {
                count(Outcome::Rejected);
                r.rejected_total += 1;
                if r.rejected.len() < MAX_REJECTIONS_LISTED {
                    r.rejected.push(pb::RejectedEvent {
                        index: index as u32,
                        reason: err.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Waits until the applied events are durable, then gives the response.
    async fn finish(self, store: &UserStore) -> Result<pb::RecordResponse, ApiError> {
        store.durable(self.ticket).await?;
        Ok(self.response)
    }
}

/// Takes from the catalog what a behavioural event about an item leaves at its zero value
/// (category, brand, shop, price; a purchase's title). One lookup, none while the catalog is
/// empty.
fn fill_from_catalog(event: &mut Event, catalog: &Catalog) {
    use EventKind as K;
    let behavioural = matches!(
        event.kind,
        K::Impression | K::Click | K::Cart | K::Favorite | K::Purchase
    );
    if !behavioural || event.item_id == 0 || catalog.is_empty() {
        return;
    }
    let Some(item) = catalog.get(event.item_id) else {
        return;
    };
    item.fill_unset(
        &mut event.category_id,
        &mut event.brand_id,
        &mut event.shop_id,
        &mut event.price,
    );
    if event.kind == K::Purchase && event.title.is_empty() {
        event.title = item.title.to_string();
    }
}

/// The `type` label of an event: its `EventType` name without the prefix, in lower case
/// (`impression`, `block_brand`); `unknown` for a number no `EventType` has.
fn type_label(t: i32) -> String {
    pb::EventType::try_from(t).map_or_else(
        |_| "unknown".to_owned(),
        |t| {
            let name = t.as_str_name();
            name.strip_prefix("EVENT_TYPE_")
                .unwrap_or(name)
                .to_ascii_lowercase()
        },
    )
}

#[tonic::async_trait]
impl pb::events_server::Events for EventsService {
    async fn record(
        &self,
        request: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let events = request.into_inner().events;
        if events.len() > self.limits.max_events_per_batch {
            return Err(ApiError::invalid(
                "events",
                format!(
                    "{} events, the maximum per Record is {}; use Events.Stream for more",
                    events.len(),
                    self.limits.max_events_per_batch
                ),
            )
            .into());
        }
        let mut tally = Tally::default();
        for (i, e) in events.iter().enumerate() {
            tally.apply(i, e, self).await?;
        }
        Ok(Response::new(tally.finish(&self.store).await?))
    }

    async fn stream(
        &self,
        request: Request<Streaming<pb::Event>>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let mut stream = request.into_inner();
        let mut tally = Tally::default();
        let mut index = 0;
        while let Some(e) = stream.next().await {
            tally.apply(index, &e?, self).await?;
            index += 1;
        }
        Ok(Response::new(tally.finish(&self.store).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ItemFields;

    #[test]
    fn behavioural_events_are_filled_and_explicit_ones_kept_as_sent() {
        let catalog = Catalog::new(10, 0);
        let phone = ItemFields {
            item_id: 9,
            category_id: 12,
            brand_id: 7,
            shop_id: 70,
            price: 699.0,
            title: "Nova X phone".into(),
            ..Default::default()
        };
        catalog.apply(vec![catalog.check(phone).unwrap()]).unwrap();
        let about = |kind: EventKind| Event {
            item_id: 9,
            ..Event::new(kind, 1)
        };
        let mut buy = about(EventKind::Purchase);
        buy.brand_id = 8;
        fill_from_catalog(&mut buy, &catalog);
        assert_eq!(
            (buy.category_id, buy.brand_id, buy.shop_id, buy.price),
            (12, 8, 70, 699.0)
        );
        assert_eq!(buy.title, "Nova X phone");
        let mut seen = about(EventKind::Impression);
        fill_from_catalog(&mut seen, &catalog);
        assert_eq!((seen.category_id, seen.title.as_str()), (12, ""));
        for kind in [EventKind::FewerLikeThis, EventKind::NotInterested] {
            let mut words = about(kind);
            fill_from_catalog(&mut words, &catalog);
            assert_eq!((words.category_id, words.brand_id), (0, 0), "{kind:?}");
        }
        let mut unknown = Event {
            item_id: 10,
            ..Event::new(EventKind::Click, 1)
        };
        fill_from_catalog(&mut unknown, &catalog);
        assert_eq!(unknown.category_id, 0);
        // A catalog title always fits in an event.
        assert_eq!(
            crate::catalog::MAX_TITLE_BYTES,
            crate::state::event::MAX_TITLE_BYTES
        );
    }
}

//! `tactful.v1.Ranker`: validate → convert (filling candidates from the item catalog) → rank
//! (engine) → convert; then, when the request says what was shown, its items are recorded as
//! impressions off the answer's path.

use std::sync::Arc;

use prometheus::IntCounter;
use tonic::{Request, Response, Status};

use super::in_place::InPlace;
use super::{convert, timeout};
use crate::catalog::Catalog;
use crate::config::Limits;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::pb;
use crate::pseudonym::Pseudonyms;
use crate::state::{Event, EventKind, RecordError, UserStore};
use crate::time::now_ms;

pub struct RankerService {
    engine: Arc<Engine>,
    /// Fills what candidates leave unset.
    catalog: Arc<Catalog>,
    /// Names the caller's user in the call's span.
    pseudonyms: Arc<Pseudonyms>,
    limits: Limits,
    /// Where the impressions of answers the host reports as shown go.
    shown: Arc<ShownRecorder>,
    /// Requests decoded where they arrived.
    in_place: IntCounter,
}

/// Records answers' shown items as impressions, counted in `tactful_events_total` as
/// impressions are.
struct ShownRecorder {
    store: Arc<UserStore>,
    applied: IntCounter,
    rejected: IntCounter,
    unavailable: IntCounter,
}

impl ShownRecorder {
    async fn record(&self, user_id: &str, impressions: Vec<Event>, now_ms: i64) {
        let key = self.store.key(user_id);
        for e in &impressions {
            match self.store.record(key, e, now_ms).await {
                Ok(_) => self.applied.inc(),
                Err(RecordError::Invalid(err)) => {
                    self.rejected.inc();
                    tracing::debug!(%err, "a shown item was not recorded");
                }
                Err(RecordError::Unavailable(err)) => {
                    self.unavailable.inc();
                    tracing::warn!(%err, "the shown items of an answer were not recorded");
                    return;
                }
            }
        }
    }
}

impl RankerService {
    pub fn new(
        engine: Arc<Engine>,
        store: Arc<UserStore>,
        catalog: Arc<Catalog>,
        pseudonyms: Arc<Pseudonyms>,
        metrics: &Metrics,
        limits: Limits,
    ) -> Self {
        let counter = |outcome| metrics.event_counter("impression", outcome);
        Self {
            engine,
            catalog,
            pseudonyms,
            limits,
            in_place: metrics.rank_in_place_counter(),
            shown: Arc::new(ShownRecorder {
                store,
                applied: counter("applied"),
                rejected: counter("rejected"),
                unavailable: counter("unavailable"),
            }),
        }
    }
}

#[tonic::async_trait]
impl pb::ranker_server::Ranker for RankerService {
    async fn rank(
        &self,
        request: Request<pb::RankRequest>,
    ) -> Result<Response<pb::RankResponse>, Status> {
        let caller_timeout = timeout::caller_timeout(request.metadata());
        let arrived = request.extensions().get::<timeout::Arrived>().copied();
        // Decoded where it arrived (`in_place`), else by tonic.
        let in_place = request
            .extensions()
            .get::<InPlace>()
            .and_then(InPlace::take);
        if in_place.is_some() {
            self.in_place.inc();
        }
        let mut req = in_place.unwrap_or_else(|| request.into_inner());
        super::note_user(&self.pseudonyms, &req.user_id);
        let request_id = std::mem::take(&mut req.request_id);
        convert::request_id(&request_id)?;
        let record = convert::shown_to_record(&req)?;
        let mut call = convert::rank_call_with_catalog(
            req,
            &self.limits,
            Some(&self.catalog),
            now_ms(),
            caller_timeout,
        )?;
        // The caller's deadline counts from the arrival, not from here (see `timeout`).
        call.caller_timeout = timeout::left(caller_timeout, arrived);
        // What an impression needs of each candidate, kept only when there is one to record.
        let shown = (record > 0).then(|| {
            let tags: Vec<(u64, u64)> = call
                .input
                .candidates
                .iter()
                .map(|c| (c.category_id, c.brand_id))
                .collect();
            (call.user_id.clone(), call.input.now_ms, tags)
        });
        let outcome = self
            .engine
            .rank(call)
            .await
            .map_err(super::ApiError::from)?;
        if let Some((user_id, at_ms, tags)) = shown {
            let impressions = outcome
                .ranking
                .items
                .iter()
                .take(record)
                .map(|item| {
                    let (category_id, brand_id) = tags[item.index];
                    Event {
                        item_id: item.item_id,
                        category_id,
                        brand_id,
                        ..Event::new(EventKind::Impression, at_ms)
                    }
                })
                .collect();
            let recorder = self.shown.clone();
            tokio::spawn(async move { recorder.record(&user_id, impressions, now_ms()).await });
        }
        let degraded = outcome.degraded;
        let mut response = Response::new(convert::rank_response(outcome, request_id));
        // For the metrics layer, which counts fail-open answers apart.
        if let Some(why) = degraded {
            response.extensions_mut().insert(why);
        }
        Ok(response)
    }
}

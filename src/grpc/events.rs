//! `tactful.v1.Events`: applies each event on its own; bad events are listed with the field at
//! fault and the rest are applied, so one bad record never costs the good ones.

use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{ApiError, convert};
use crate::config::Limits;
use crate::engine::{Engine, now_ms};
use crate::pb;

/// Rejections reported per response; the total is always reported.
const MAX_REJECTIONS_LISTED: usize = 1000;

pub struct EventsService {
    pub engine: Arc<Engine>,
    pub limits: Limits,
}

/// Counts what happened to a sequence of events.
#[derive(Default)]
struct Tally {
    response: pb::RecordResponse,
}

impl Tally {
    fn apply(&mut self, index: usize, e: &pb::Event, engine: &Engine, limits: &Limits) {
        let now = now_ms();
        let result = convert::event(e, now, limits)
            .and_then(|event| engine.store().record(&e.user_id, &event, now));
        let r = &mut self.response;
        match result {
            Ok(()) => r.applied += 1,
            Err(err) => {
                r.rejected_total += 1;
                if r.rejected.len() < MAX_REJECTIONS_LISTED {
                    r.rejected.push(pb::RejectedEvent {
                        index: index as u32,
                        reason: err.to_string(),
                    });
                }
            }
        }
    }
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
            tally.apply(i, e, &self.engine, &self.limits);
        }
        Ok(Response::new(tally.response))
    }

    async fn stream(
        &self,
        request: Request<Streaming<pb::Event>>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let mut stream = request.into_inner();
        let mut tally = Tally::default();
        let mut index = 0;
        while let Some(e) = stream.next().await {
            tally.apply(index, &e?, &self.engine, &self.limits);
            index += 1;
        }
        Ok(Response::new(tally.response))
    }
}

//! `tactful.v1.Catalog`: an Upsert stream is checked item by item as it arrives and applied
//! whole when the client closes it, or not at all. The first bad item ends the call with
//! INVALID_ARGUMENT naming it (`items[3].embedding: ...`); a stream that would take the
//! catalog past `catalog.max_items` ends with RESOURCE_EXHAUSTED; a stream the client cuts
//! off (or that breaks) changes nothing. All-or-nothing was chosen over applying the good
//! items and counting the bad: a bulk upload is usually one file, and half of one would rank
//! some items with stale attributes unnoticed; the error names the item, and re-sending the
//! fixed stream is safe (an upsert is idempotent).
//!
//! A stream is held in memory until it is applied, so one stream carries at most
//! `catalog.max_items` items (more could not all be held anyway): split larger uploads.
//!
//! "Cut off" means: the client reset the stream (a cancel, its deadline: RST_STREAM), the
//! connection broke, or the caller's deadline (`grpc-timeout`, counted from the call's
//! arrival) passed before the stream ended. Only a stream the client ends itself (END_STREAM)
//! within its deadline is applied. The signals, since the transport blurs them: a reset with
//! CANCEL reaches the handler as an error of the stream ([`super::wire`] keeps tonic from
//! taking it for an end); a reset with NO_ERROR looks like an end to hyper, so the handler
//! yields once before applying, and hyper, which checks a pending call's stream for a reset
//! each time the call yields, drops the call first; the deadline is checked last, just
//! before applying. What a client cannot be protected from is its own library ending the
//! stream normally when it gives up: that is a finished stream on the wire.

use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{ApiError, convert};
use crate::catalog::Catalog;
use crate::pb;

pub struct CatalogService {
    catalog: Arc<Catalog>,
}

impl CatalogService {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogService {
    async fn upsert(
        &self,
        request: Request<Streaming<pb::CatalogItem>>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let catalog = &*self.catalog;
        let deadline = super::timeout::caller_timeout(request.metadata())
            .and_then(|t| std::time::Instant::now().checked_add(t));
        let mut stream = request.into_inner();
        let mut changes = Vec::new();
        let refuse = |received: usize, e: ApiError| {
            catalog.count_rejected(received);
            Err(Status::from(e))
        };
        while let Some(message) = stream.next().await {
            let index = changes.len();
            let item = match message {
                Ok(item) => item,
                Err(status) => {
                    catalog.count_rejected(index);
                    return Err(status);
                }
            };
            if index >= catalog.max_items() {
                return refuse(
                    index + 1,
                    ApiError::invalid(
                        "items",
                        format!(
                            "a stream carries at most catalog.max_items ({}) items; split it \
                             (nothing of this one was applied)",
                            catalog.max_items()
                        ),
                    ),
                );
            }
            match convert::catalog_item(item).and_then(|f| catalog.check(f)) {
                Ok(change) => changes.push(change),
                Err(invalid) => {
                    return refuse(
                        index + 1,
                        ApiError::invalid(
                            format!("items[{index}].{}", invalid.field),
                            format!("{} (nothing of this stream was applied)", invalid.message),
                        ),
                    );
                }
            }
        }
        // A reset that ended the body shows now, before anything is applied (see above).
        tokio::task::yield_now().await;
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            catalog.count_rejected(changes.len());
            return Err(Status::deadline_exceeded(
                "the caller's deadline passed before the stream ended; nothing of it was applied",
            ));
        }
        let applied = catalog.apply(changes).map_err(ApiError::from)?;
        tracing::debug!(
            upserted = applied.upserted,
            deleted = applied.deleted,
            items = applied.items,
            "catalog upsert applied"
        );
        Ok(Response::new(pb::UpsertResponse {
            upserted: applied.upserted as u64,
            deleted: applied.deleted as u64,
            items: applied.items as u64,
        }))
    }
}

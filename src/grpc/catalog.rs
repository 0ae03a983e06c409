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

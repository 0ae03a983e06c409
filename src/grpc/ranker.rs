//! `tactful.v1.Ranker`: validate → convert (filling candidates from the item catalog) → rank
//! (engine) → convert.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{convert, timeout};
use crate::catalog::Catalog;
use crate::config::Limits;
use crate::engine::Engine;
use crate::pb;
use crate::pseudonym::Pseudonyms;
use crate::time::now_ms;

pub struct RankerService {
    engine: Arc<Engine>,
    /// Fills what candidates leave unset.
    catalog: Arc<Catalog>,
    /// Names the caller's user in the call's span.
    pseudonyms: Arc<Pseudonyms>,
    limits: Limits,
}

impl RankerService {
    pub fn new(
        engine: Arc<Engine>,
        catalog: Arc<Catalog>,
        pseudonyms: Arc<Pseudonyms>,
        limits: Limits,
    ) -> Self {
        Self {
            engine,
            catalog,
            pseudonyms,
            limits,
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
        let mut req = request.into_inner();
        super::note_user(&self.pseudonyms, &req.user_id);
        let request_id = std::mem::take(&mut req.request_id);
        let call = convert::rank_call_with_catalog(
            req,
            &self.limits,
            Some(&self.catalog),
            now_ms(),
            caller_timeout,
        )?;
        let outcome = self
            .engine
            .rank(call)
            .await
            .map_err(super::ApiError::from)?;
        let degraded = outcome.degraded;
        let mut response = Response::new(convert::rank_response(outcome, request_id));
        // For the metrics layer, which counts fail-open answers apart.
        if let Some(why) = degraded {
            response.extensions_mut().insert(why);
        }
        Ok(response)
    }
}

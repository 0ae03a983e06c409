//! `tactful.v1.Profile`: the user's preference centre. Every change is validated, applied by
//! the store, and answered only once it is durable, with the fresh profile.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ApiError, convert};
use crate::config::Limits;
use crate::engine::{Engine, now_ms};
use crate::pb;
use crate::state::{RecordError, Ticket};

pub struct ProfileService {
    pub engine: Arc<Engine>,
    pub limits: Limits,
}

impl ProfileService {
    async fn profile(&self, user_id: String) -> Result<pb::UserProfile, ApiError> {
        let now = now_ms();
        let store = self.engine.store();
        let profile = store.profile(store.key(&user_id), now).await?;
        let stage = self.engine.lifecycle(&profile.view, now);
        let cooling_off = self.engine.cooling_off(&profile.view, now);
        Ok(convert::user_profile(user_id, profile, stage, cooling_off))
    }

    /// Waits until an accepted change is durable, then answers with the fresh profile.
    async fn changed(
        &self,
        user_id: String,
        ticket: Result<Ticket, RecordError>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let store = self.engine.store();
        store
            .durable(ticket.map_err(ApiError::from)?)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(self.profile(user_id).await?))
    }
}

#[tonic::async_trait]
impl pb::profile_server::Profile for ProfileService {
    async fn get(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        Ok(Response::new(self.profile(req.user_id).await?))
    }

    async fn update_interests(
        &self,
        request: Request<pb::UpdateInterestsRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let mut req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        let user_id = std::mem::take(&mut req.user_id);
        let changes = convert::interest_changes(req)?;
        let store = self.engine.store();
        let ticket = store
            .update_interests(store.key(&user_id), changes, now_ms())
            .await;
        self.changed(user_id, ticket).await
    }

    async fn set_consent(
        &self,
        request: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        let changes = convert::consent_changes(&req)?;
        let sensitive = convert::sensitive_changes(&req)?;
        let store = self.engine.store();
        let key = store.key(&req.user_id);
        let ticket = store
            .set_consent(key, &changes, req.personalization, &sensitive, now_ms())
            .await;
        self.changed(req.user_id, ticket).await
    }

    async fn undo(
        &self,
        request: Request<pb::UndoRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        let undo = convert::undo(&req)?;
        let store = self.engine.store();
        let ticket = store.undo(store.key(&req.user_id), undo, now_ms()).await;
        self.changed(req.user_id, ticket).await
    }

    async fn forget(
        &self,
        request: Request<pb::ForgetRequest>,
    ) -> Result<Response<pb::ForgetResponse>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        let store = self.engine.store();
        store
            .forget(store.key(&req.user_id))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ForgetResponse {}))
    }
}

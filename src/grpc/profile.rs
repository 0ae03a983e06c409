//! `tactful.v1.Profile`: the user's preference centre.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{ApiError, convert};
use crate::config::Limits;
use crate::engine::{Engine, now_ms};
use crate::pb;
use crate::state::RecordError;

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
        Ok(convert::user_profile(user_id, profile, stage))
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

    async fn set_consent(
        &self,
        request: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        let changes = convert::consent_changes(&req)?;
        let store = self.engine.store();
        let key = store.key(&req.user_id);
        let ticket = store
            .set_consent(key, &changes, req.personalization, now_ms())
            .await
            .map_err(|e| match e {
                RecordError::Invalid(e) => ApiError::invalid(e.field, e.message),
                RecordError::Unavailable(e) => e.into(),
            })?;
        store.durable(ticket).await.map_err(ApiError::from)?;
        Ok(Response::new(self.profile(req.user_id).await?))
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

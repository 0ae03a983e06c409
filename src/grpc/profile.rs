//! `tactful.v1.Profile`: the user's preference centre.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::config::Limits;
use crate::engine::{Engine, now_ms};
use crate::pb;

pub struct ProfileService {
    pub engine: Arc<Engine>,
    pub limits: Limits,
}

impl ProfileService {
    fn profile(&self, user_id: String) -> pb::UserProfile {
        let now = now_ms();
        let profile = self.engine.store().profile(&user_id, now);
        let stage = self.engine.lifecycle(&profile.view, now);
        convert::user_profile(user_id, profile, stage)
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
        Ok(Response::new(self.profile(req.user_id)))
    }

    async fn set_consent(
        &self,
        request: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        let changes = convert::consent_changes(&req)?;
        self.engine
            .store()
            .set_consent(&req.user_id, &changes, req.personalization, now_ms());
        Ok(Response::new(self.profile(req.user_id)))
    }
}

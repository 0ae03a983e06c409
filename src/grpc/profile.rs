//! `tactful.v1.Profile`: the user's preference centre. Every change is validated, applied by
//! the store, and answered only once it is durable, with the fresh profile. Consent changes and
//! erasures are audited (who, when, which user as a pseudonym, what, whether it took).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::{ApiError, convert};
use crate::audit::{Action, AuditLog, Entry};
use crate::config::Limits;
use crate::engine::Engine;
use crate::pb;
use crate::state::{RecordError, Ticket, UserStore};
use crate::time::now_ms;

/// The id of the token the call carried (see [`super::auth`]).
fn caller<T>(request: &Request<T>) -> std::sync::Arc<str> {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| Caller::ANONYMOUS.into(), |c| c.id.clone())
}

pub struct ProfileService {
    store: Arc<UserStore>,
    /// Consent changes and erasures are recorded here; its pseudonyms name the call's user.
    audit: Arc<AuditLog>,
    /// Only for the policy in force: the lifecycle stage and cooling-off windows it sees.
    engine: Arc<Engine>,
    limits: Limits,
}

impl ProfileService {
    pub fn new(
        store: Arc<UserStore>,
        audit: Arc<AuditLog>,
        engine: Arc<Engine>,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            audit,
            engine,
            limits,
        }
    }

    /// Names the call's user in its span (as a pseudonym).
    fn note_user(&self, user_id: &str) {
        super::note_user(self.audit.pseudonyms(), user_id);
    }

    /// Writes the audit record of `action` on `user_id` with its result.
    fn audit<T>(
        &self,
        action: Action,
        who: &str,
        user_id: &str,
        result: &Result<T, ApiError>,
        detail: serde_json::Value,
    ) {
        self.audit.record(Entry {
            action,
            who,
            user_id: Some(user_id),
            result: result.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            detail,
        });
    }

    async fn profile(&self, user_id: String) -> Result<pb::UserProfile, ApiError> {
        let now = now_ms();
        let store = &self.store;
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
        self.store
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
        self.note_user(&req.user_id);
        Ok(Response::new(self.profile(req.user_id).await?))
    }

    async fn update_interests(
        &self,
        request: Request<pb::UpdateInterestsRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let mut req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        self.note_user(&req.user_id);
        let user_id = std::mem::take(&mut req.user_id);
        let changes = convert::interest_changes(req)?;
        let store = &self.store;
        let ticket = store
            .update_interests(store.key(&user_id), changes, now_ms())
            .await;
        self.changed(user_id, ticket).await
    }

    async fn set_consent(
        &self,
        request: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let who = caller(&request);
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        self.note_user(&req.user_id);
        let changes = convert::consent_changes(&req)?;
        let sensitive = convert::sensitive_changes(&req)?;
        let store = &self.store;
        let key = store.key(&req.user_id);
        let ticket = store
            .set_consent(key, &changes, req.personalization, &sensitive, now_ms())
            .await;
        let durable = match ticket {
            Ok(ticket) => store.durable(ticket).await.map_err(ApiError::from),
            Err(e) => Err(e.into()),
        };
        let dimensions = |granted: bool| -> Vec<&str> {
            changes
                .iter()
                .filter(|(_, g)| *g == granted)
                .map(|(d, _)| d.name())
                .collect()
        };
        let categories = |granted: bool| -> Vec<u64> {
            sensitive
                .iter()
                .filter(|(_, g)| *g == granted)
                .map(|(c, _)| *c)
                .collect()
        };
        let detail = serde_json::json!({
            "granted": dimensions(true),
            "denied": dimensions(false),
            "personalization": req.personalization,
            "sensitive_opt_in": categories(true),
            "sensitive_opt_out": categories(false),
        });
        self.audit(Action::Consent, &who, &req.user_id, &durable, detail);
        durable?;
        Ok(Response::new(self.profile(req.user_id).await?))
    }

    async fn undo(
        &self,
        request: Request<pb::UndoRequest>,
    ) -> Result<Response<pb::UserProfile>, Status> {
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        self.note_user(&req.user_id);
        let undo = convert::undo(&req)?;
        let store = &self.store;
        let ticket = store.undo(store.key(&req.user_id), undo, now_ms()).await;
        self.changed(req.user_id, ticket).await
    }

    async fn forget(
        &self,
        request: Request<pb::ForgetRequest>,
    ) -> Result<Response<pb::ForgetResponse>, Status> {
        let who = caller(&request);
        let req = request.into_inner();
        convert::user_id(&req.user_id, "user_id", &self.limits)?;
        self.note_user(&req.user_id);
        let store = &self.store;
        let forgotten = store
            .forget(store.key(&req.user_id))
            .await
            .map_err(ApiError::from);
        let detail = serde_json::Value::Null;
        self.audit(Action::Forget, &who, &req.user_id, &forgotten, detail);
        forgotten?;
        Ok(Response::new(pb::ForgetResponse {}))
    }
}

//! Wire ↔ core: validates protobuf requests while turning them into core types, and turns core
//! results back into protobuf responses. Every rejection names the field at fault, in the
//! protobuf field path a client would fix (`candidates[3].score`).

use std::collections::HashMap;
use std::mem;

use ndarray::Array2;

use super::error::ApiError;
use crate::config::Limits;
use crate::engine::{Degraded, Outcome, RankCall};
use crate::pb;
use crate::rank::{
    Candidate, DataDimension, DimensionSet, DropRule, LifecycleStage, Locale, RankInput, ReasonCode,
};
use crate::state::{Event, EventError, EventKind, Profile};

/// The user id rules shared by every service.
pub fn user_id(id: &str, field: &str, limits: &Limits) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if id.len() > limits.max_user_id_bytes {
        return Err(ApiError::invalid(
            field,
            format!(
                "is {} bytes, the maximum is {}",
                id.len(),
                limits.max_user_id_bytes
            ),
        ));
    }
    Ok(())
}

fn dimension(n: i32, field: impl FnOnce() -> String) -> Result<DataDimension, ApiError> {
    DataDimension::from_number(n).ok_or_else(|| {
        ApiError::invalid(
            field(),
            if n == 0 {
                "DATA_DIMENSION_UNSPECIFIED is not a data dimension".to_owned()
            } else {
                format!("{n} is not a known data dimension")
            },
        )
    })
}

fn finite_non_negative(v: f32) -> bool {
    v.is_finite() && v >= 0.0
}

/// Validates a Rank request and builds the engine's call. `now_ms` is the server's clock, used
/// when the request's context carries none.
pub fn rank_call(
    mut req: pb::RankRequest,
    limits: &Limits,
    now_ms: i64,
    caller_timeout: Option<std::time::Duration>,
) -> Result<RankCall, ApiError> {
    user_id(&req.user_id, "user_id", limits)?;
    let n = req.candidates.len();
    if n > limits.max_candidates {
        return Err(ApiError::invalid(
            "candidates",
            format!("{n} candidates, the maximum is {}", limits.max_candidates),
        ));
    }
    if req.k as usize > limits.max_k {
        return Err(ApiError::invalid(
            "k",
            format!("{} is above the maximum of {}", req.k, limits.max_k),
        ));
    }
    let context = req.context.take().unwrap_or_default();
    if context.now_ms < 0 {
        return Err(ApiError::invalid("context.now_ms", "must not be negative"));
    }
    if let Some(loc) = &context.location {
        let ok =
            (-90.0..=90.0).contains(&loc.latitude) && (-180.0..=180.0).contains(&loc.longitude);
        if !ok {
            return Err(ApiError::invalid(
                "context.location",
                "latitude must be within ±90 and longitude within ±180",
            ));
        }
    }
    let consent = req.consent.take().unwrap_or_default();
    let mut denied = DimensionSet::EMPTY;
    for (i, &d) in consent.denied.iter().enumerate() {
        denied.insert(dimension(d, || format!("consent.denied[{i}]"))?);
    }

    let dim = req.candidates.first().map_or(0, |c| c.embedding.len());
    if dim > limits.max_embedding_dim {
        return Err(ApiError::invalid(
            "candidates[0].embedding",
            format!(
                "has {dim} values, the maximum is {}",
                limits.max_embedding_dim
            ),
        ));
    }
    let mut flat: Vec<f32> = Vec::with_capacity(n * dim);
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(n);
    let mut candidates = Vec::with_capacity(n);
    for (i, c) in req.candidates.iter_mut().enumerate() {
        let field = |name: &str| format!("candidates[{i}].{name}");
        if c.item_id == 0 {
            return Err(ApiError::invalid(
                field("item_id"),
                "is required (0 is not an item id)",
            ));
        }
        if let Some(first) = seen.insert(c.item_id, i) {
            return Err(ApiError::invalid(
                field("item_id"),
                format!("{} duplicates candidates[{first}]", c.item_id),
            ));
        }
        if !c.score.is_finite() {
            return Err(ApiError::invalid(field("score"), "must be a finite number"));
        }
        if !finite_non_negative(c.price) {
            return Err(ApiError::invalid(
                field("price"),
                "must be a finite number >= 0",
            ));
        }
        if !finite_non_negative(c.popularity) {
            return Err(ApiError::invalid(
                field("popularity"),
                "must be a finite number >= 0",
            ));
        }
        if c.embedding.len() != dim {
            return Err(ApiError::invalid(
                field("embedding"),
                format!(
                    "has {} values but candidates[0] has {dim}: all embeddings of a request \
                     have the same length, or none has one",
                    c.embedding.len()
                ),
            ));
        }
        if let Some(j) = c.embedding.iter().position(|v| !v.is_finite()) {
            return Err(ApiError::invalid(
                format!("candidates[{i}].embedding[{j}]"),
                "must be a finite number",
            ));
        }
        flat.extend_from_slice(&c.embedding);
        let mut evidence = DimensionSet::EMPTY;
        for (j, &d) in c.evidence.iter().enumerate() {
            evidence.insert(dimension(d, || format!("candidates[{i}].evidence[{j}]"))?);
        }
        candidates.push(Candidate {
            item_id: c.item_id,
            score: c.score,
            category_id: c.category_id,
            brand_id: c.brand_id,
            shop_id: c.shop_id,
            price: c.price,
            popularity: c.popularity,
            evidence,
            sponsored: c.sponsored,
            title: mem::take(&mut c.title),
            anchor_item_id: c.anchor_item_id,
            anchor_title: mem::take(&mut c.anchor_title),
        });
    }
    let embeddings = (dim > 0).then(|| {
        Array2::from_shape_vec((n, dim), flat).expect("n rows of dim values were collected")
    });
    Ok(RankCall {
        user_id: req.user_id,
        policy: req.policy,
        input: RankInput {
            candidates,
            embeddings,
            k: req.k as usize,
            explain: req.explain,
            locale: Locale::from_tag(&context.locale),
            now_ms: if context.now_ms > 0 {
                context.now_ms
            } else {
                now_ms
            },
        },
        denied,
        personalization_off: consent.personalization_off,
        caller_timeout,
        strict: req.strict,
    })
}

fn dimensions(set: DimensionSet) -> Vec<i32> {
    set.iter().map(DataDimension::number).collect()
}

fn reason_code(code: ReasonCode) -> pb::ReasonCode {
    use pb::ReasonCode as P;
    match code {
        ReasonCode::Relevant => P::Relevant,
        ReasonCode::BecauseYouViewed => P::BecauseYouViewed,
        ReasonCode::BecauseYouFavorited => P::BecauseYouFavorited,
        ReasonCode::BecauseYouCarted => P::BecauseYouCarted,
        ReasonCode::BecauseYouBought => P::BecauseYouBought,
        ReasonCode::BecauseYouSearched => P::BecauseYouSearched,
        ReasonCode::BasedOnActivity => P::BasedOnActivity,
        ReasonCode::Trending => P::Trending,
        ReasonCode::Editorial => P::Editorial,
        ReasonCode::Diversity => P::Diversity,
        ReasonCode::Upstream => P::Upstream,
        ReasonCode::Nearby => P::Nearby,
        ReasonCode::Social => P::Social,
    }
}

fn drop_rule(rule: DropRule) -> pb::DropRule {
    match rule {
        DropRule::NotInterested => pb::DropRule::NotInterested,
        DropRule::BlockedBrand => pb::DropRule::BlockedBrand,
        DropRule::BlockedShop => pb::DropRule::BlockedShop,
        DropRule::Consent => pb::DropRule::Consent,
    }
}

pub fn lifecycle(stage: LifecycleStage) -> pb::LifecycleStage {
    match stage {
        LifecycleStage::New => pb::LifecycleStage::New,
        LifecycleStage::Active => pb::LifecycleStage::Active,
        LifecycleStage::Silent => pb::LifecycleStage::Silent,
        LifecycleStage::Churned => pb::LifecycleStage::Churned,
    }
}

fn degraded_reason(d: Degraded) -> pb::DegradedReason {
    match d {
        Degraded::Deadline => pb::DegradedReason::Deadline,
        Degraded::Budget => pb::DegradedReason::Budget,
        Degraded::Overload => pb::DegradedReason::Overload,
        Degraded::Internal => pb::DegradedReason::Internal,
        Degraded::State => pb::DegradedReason::State,
    }
}

pub fn rank_response(outcome: Outcome, request_id: String) -> pb::RankResponse {
    let r = outcome.ranking;
    pb::RankResponse {
        items: r
            .items
            .into_iter()
            .map(|item| pb::RankedItem {
                item_id: item.item_id,
                score: item.score,
                upstream_position: item.index as u32,
                reason: Some(pb::Reason {
                    code: reason_code(item.reason.code).into(),
                    text: item.reason.text,
                    dimensions: dimensions(item.reason.dimensions),
                }),
                breakdown: item
                    .breakdown
                    .into_iter()
                    .map(|(c, value)| pb::ScoreComponent {
                        name: c.name().to_owned(),
                        value,
                    })
                    .collect(),
            })
            .collect(),
        dropped: r
            .dropped
            .into_iter()
            .map(|d| pb::DroppedItem {
                item_id: d.item_id,
                rule: drop_rule(d.rule).into(),
                detail: d.detail,
            })
            .collect(),
        degraded: outcome.degraded.is_some(),
        degraded_reason: outcome
            .degraded
            .map_or(pb::DegradedReason::Unspecified, degraded_reason)
            .into(),
        suggested_k: r.suggested_k as u32,
        lifecycle_stage: lifecycle(r.lifecycle).into(),
        policy_version: outcome.policy_version,
        request_id,
    }
}

fn event_kind(t: i32) -> Result<EventKind, EventError> {
    use pb::EventType as T;
    let kind = match T::try_from(t) {
        Ok(T::Impression) => EventKind::Impression,
        Ok(T::Click) => EventKind::Click,
        Ok(T::Cart) => EventKind::Cart,
        Ok(T::Favorite) => EventKind::Favorite,
        Ok(T::Purchase) => EventKind::Purchase,
        Ok(T::Search) => EventKind::Search,
        Ok(T::NotInterested) => EventKind::NotInterested,
        Ok(T::FewerLikeThis) => EventKind::FewerLikeThis,
        Ok(T::BlockBrand) => EventKind::BlockBrand,
        Ok(T::UnblockBrand) => EventKind::UnblockBrand,
        Ok(T::BlockShop) => EventKind::BlockShop,
        Ok(T::UnblockShop) => EventKind::UnblockShop,
        Ok(T::Unspecified) => return Err(EventError::new("type", "is required")),
        Err(_) => {
            return Err(EventError::new(
                "type",
                format!("{t} is not a known event type"),
            ));
        }
    };
    Ok(kind)
}

pub fn event_type(kind: EventKind) -> pb::EventType {
    use pb::EventType as T;
    match kind {
        EventKind::Impression => T::Impression,
        EventKind::Click => T::Click,
        EventKind::Cart => T::Cart,
        EventKind::Favorite => T::Favorite,
        EventKind::Purchase => T::Purchase,
        EventKind::Search => T::Search,
        EventKind::NotInterested => T::NotInterested,
        EventKind::FewerLikeThis => T::FewerLikeThis,
        EventKind::BlockBrand => T::BlockBrand,
        EventKind::UnblockBrand => T::UnblockBrand,
        EventKind::BlockShop => T::BlockShop,
        EventKind::UnblockShop => T::UnblockShop,
    }
}

/// A wire event as a core event. `now_ms` stands in for a missing timestamp.
pub fn event(e: &pb::Event, now_ms: i64, limits: &Limits) -> Result<Event, EventError> {
    if e.user_id.is_empty() {
        return Err(EventError::new("user_id", "is required"));
    }
    if e.user_id.len() > limits.max_user_id_bytes {
        return Err(EventError::new(
            "user_id",
            format!("is longer than {} bytes", limits.max_user_id_bytes),
        ));
    }
    let source = match e.source {
        0 => None,
        n => Some(DataDimension::from_number(n).ok_or_else(|| {
            EventError::new("source", format!("{n} is not a known data dimension"))
        })?),
    };
    Ok(Event {
        at_ms: if e.at_ms == 0 { now_ms } else { e.at_ms },
        kind: event_kind(e.r#type)?,
        item_id: e.item_id,
        category_id: e.category_id,
        brand_id: e.brand_id,
        shop_id: e.shop_id,
        price: e.price,
        source,
        expires_at_ms: e.expires_at_ms,
    })
}

pub fn user_profile(
    user_id: String,
    p: Profile,
    lifecycle_stage: LifecycleStage,
) -> pb::UserProfile {
    let v = p.view;
    let mut fatigue = v.ignored.clone();
    fatigue.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    pb::UserProfile {
        user_id,
        known: p.known,
        blocked_brands: v.blocked_brands,
        blocked_shops: v.blocked_shops,
        not_interested: p
            .not_interested_until
            .into_iter()
            .map(|(item_id, until_ms)| pb::NotInterested { item_id, until_ms })
            .collect(),
        consent: DataDimension::PERSONAL
            .into_iter()
            .map(|d| pb::DimensionConsent {
                dimension: d.number(),
                granted: v.consent.granted.contains(d),
            })
            .collect(),
        personalization: v.consent.personalization,
        lifecycle_stage: lifecycle(lifecycle_stage).into(),
        fatigue: fatigue
            .into_iter()
            .map(|(item_id, ignored_impressions)| pb::ItemFatigue {
                item_id,
                ignored_impressions,
            })
            .collect(),
        first_seen_ms: v.first_seen_ms.unwrap_or(0),
        last_active_ms: v.last_active_ms.unwrap_or(0),
    }
}

/// Consent changes from a SetConsent request.
pub fn consent_changes(
    req: &pb::SetConsentRequest,
) -> Result<Vec<(DataDimension, bool)>, ApiError> {
    req.dimensions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let d = dimension(c.dimension, || format!("dimensions[{i}].dimension"))?;
            if !d.is_personal() {
                return Err(ApiError::invalid(
                    format!("dimensions[{i}].dimension"),
                    format!("{} uses no personal data and needs no consent", d.name()),
                ));
            }
            Ok((d, c.granted))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(candidates: Vec<pb::Candidate>) -> pb::RankRequest {
        pb::RankRequest {
            user_id: "u".into(),
            candidates,
            ..Default::default()
        }
    }

    fn candidate(item_id: u64, score: f32) -> pb::Candidate {
        pb::Candidate {
            item_id,
            score,
            ..Default::default()
        }
    }

    fn field_of(req: pb::RankRequest) -> String {
        match rank_call(req, &Limits::default(), 1, None) {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn every_rule_names_its_field() {
        assert_eq!(field_of(pb::RankRequest::default()), "user_id");
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), candidate(2, f32::NAN)])),
            "candidates[1].score"
        );
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), candidate(1, 2.0)])),
            "candidates[1].item_id"
        );
        let mut c = candidate(1, 1.0);
        c.price = f32::INFINITY;
        assert_eq!(field_of(request(vec![c])), "candidates[0].price");
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 0.0];
        let mut b = candidate(2, 1.0);
        b.embedding = vec![1.0];
        assert_eq!(
            field_of(request(vec![a.clone(), b])),
            "candidates[1].embedding"
        );
        let mut nan = candidate(3, 1.0);
        nan.embedding = vec![0.0, f32::NAN];
        assert_eq!(
            field_of(request(vec![a, nan])),
            "candidates[1].embedding[1]"
        );
        let mut e = candidate(1, 1.0);
        e.evidence = vec![0];
        assert_eq!(field_of(request(vec![e])), "candidates[0].evidence[0]");
        let mut big = request(vec![]);
        big.k = 1001;
        assert_eq!(field_of(big), "k");
        let many = request((1..=5001).map(|i| candidate(i, 0.0)).collect());
        assert_eq!(field_of(many), "candidates");
    }

    #[test]
    fn a_valid_request_becomes_one_embedding_matrix() {
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 2.0];
        a.title = "phone".into();
        let mut b = candidate(2, 0.5);
        b.embedding = vec![3.0, 4.0];
        b.evidence = vec![pb::DataDimension::Browsing as i32];
        let call = rank_call(request(vec![a, b]), &Limits::default(), 77, None).unwrap();
        let e = call.input.embeddings.unwrap();
        assert_eq!(e.shape(), &[2, 2]);
        assert_eq!(e[[1, 0]], 3.0);
        assert_eq!(call.input.now_ms, 77);
        assert_eq!(call.input.candidates[0].title, "phone");
        assert!(
            call.input.candidates[1]
                .evidence
                .contains(DataDimension::Browsing)
        );
    }

    #[test]
    fn events_are_checked_for_type_and_user() {
        let limits = Limits::default();
        let e = pb::Event {
            user_id: "u".into(),
            ..Default::default()
        };
        assert_eq!(event(&e, 1, &limits).unwrap_err().field, "type");
        let e = pb::Event {
            r#type: pb::EventType::Click as i32,
            ..Default::default()
        };
        assert_eq!(event(&e, 1, &limits).unwrap_err().field, "user_id");
        let e = pb::Event {
            user_id: "u".into(),
            r#type: pb::EventType::Click as i32,
            item_id: 3,
            ..Default::default()
        };
        assert_eq!(event(&e, 9, &limits).unwrap().at_ms, 9);
    }
}

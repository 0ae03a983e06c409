//! Wire ↔ core: validates protobuf requests while turning them into core types, and turns core
//! results back into protobuf responses. Every rejection names the field at fault, in the
//! protobuf field path a client would fix (`candidates[3].score`).

use std::collections::HashMap;
use std::mem;

use ndarray::Array2;

use super::error::ApiError;
use crate::catalog::{Catalog, Item, ItemFields};
use crate::config::Limits;
use crate::engine::{Degraded, Outcome, RankCall};
use crate::pb;
use crate::rank::stages::cooling_off;
use crate::rank::user::{TagKind, TagSource};
use crate::rank::{
    Candidate, DataDimension, DimensionSet, DiversityRequest, DropRule, LifecycleStage, Locale,
    Method, RankInput, ReasonCode,
};
use crate::state::user::MAX_INTERESTS;
use crate::state::{Event, EventError, EventKind, InterestChange, Profile, Undo};

/// Bytes of a request's `surface` and `context.region`: names, not documents.
pub const MAX_NAME_BYTES: usize = 64;
/// Bytes of an interest tag's label: a few words.
pub const MAX_LABEL_BYTES: usize = 64;
/// The furthest a local time is from UTC (UTC+14 and UTC-12 are the extremes in use).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;
/// Sensitive-category changes per SetConsent.
pub const MAX_SENSITIVE_CHANGES: usize = 1000;

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

fn max_bytes(value: &str, max: usize, field: impl FnOnce() -> String) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::invalid(
            field(),
            format!("is {} bytes, the maximum is {max}", value.len()),
        ));
    }
    Ok(())
}

/// The embedding length of a Rank request, and the candidate that set it.
#[derive(Debug, Clone, Copy)]
struct Width {
    len: usize,
    index: usize,
    from_catalog: bool,
}

impl Width {
    /// Why an embedding of `len` values (the request's own, or else the catalog's for `item`)
    /// cannot join this request's.
    fn conflict(self, len: usize, from_catalog: bool, item: u64) -> String {
        let first = if self.from_catalog {
            format!("the catalog's embedding of candidates[{}]", self.index)
        } else {
            format!("candidates[{}]", self.index)
        };
        let this = if from_catalog {
            format!("is empty, and the catalog's embedding of item {item} has {len} values")
        } else {
            format!("has {len} values")
        };
        format!(
            "{this} but {first} has {}: the embeddings of a request, its own and the \
             catalog's (catalog.dim), have one length",
            self.len
        )
    }
}

/// Takes from the catalog's item every attribute the request left at its zero value.
fn fill_from_catalog(c: &mut Candidate, item: &Item) {
    item.fill_unset(
        &mut c.category_id,
        &mut c.brand_id,
        &mut c.shop_id,
        &mut c.price,
    );
    if c.popularity == 0.0 {
        c.popularity = item.popularity;
    }
}

/// Validates a Rank request and builds the engine's call, without a catalog. `now_ms` is the
/// server's clock, used when the request's context carries none.
pub fn rank_call(
    req: pb::RankRequest,
    limits: &Limits,
    now_ms: i64,
    caller_timeout: Option<std::time::Duration>,
) -> Result<RankCall, ApiError> {
    rank_call_with_catalog(req, limits, None, now_ms, caller_timeout)
}

/// [`rank_call`], filling candidates from the item catalog: each candidate is looked up once,
/// and every attribute the request leaves at its zero value (category, brand, shop, price,
/// popularity, embedding) is taken from the catalog's item, so what the request carries wins
/// field by field. (Protobuf cannot tell an unset field from a zero one, so a price of 0
/// cannot override a cached price.) An item the catalog does not hold is ranked with what the
/// request has. The core reads titles only as anchors ("because you viewed X"), so the
/// catalog's titles name the anchor of a candidate that gives `anchor_item_id` without
/// `anchor_title` (one more lookup, for those candidates only).
///
/// Embeddings: a request's candidates either all have one (inline or cached) and the request
/// is ranked with them, or the request is ranked without embeddings (similarity then comes
/// from category, brand and shop for every candidate; counted in
/// `tactful_catalog_partial_embeddings_total`). Treating the missing rows as zero vectors was
/// not chosen: a zero vector is "unlike everything", which would lift the items nobody
/// described above the others and give DPP a direction it can never pick. While the catalog
/// cannot supply embeddings (empty, or `catalog.dim` = 0), a request's embeddings must be all
/// or none, as they always had to be: a missing one can only be the client's mistake. Inline
/// and cached embeddings of different lengths in one request are INVALID_ARGUMENT.
pub fn rank_call_with_catalog(
    mut req: pb::RankRequest,
    limits: &Limits,
    catalog: Option<&Catalog>,
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
    max_bytes(&req.surface, MAX_NAME_BYTES, || "surface".into())?;
    let mut context = req.context.take().unwrap_or_default();
    if context.now_ms < 0 {
        return Err(ApiError::invalid("context.now_ms", "must not be negative"));
    }
    max_bytes(&context.region, MAX_NAME_BYTES, || "context.region".into())?;
    if !(-MAX_UTC_OFFSET_MINUTES..=MAX_UTC_OFFSET_MINUTES).contains(&context.utc_offset_minutes) {
        return Err(ApiError::invalid(
            "context.utc_offset_minutes",
            format!(
                "{} is not a UTC offset: it must be within ±{MAX_UTC_OFFSET_MINUTES} minutes",
                context.utc_offset_minutes
            ),
        ));
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

    // Lookups are skipped while the catalog is empty: a server without one pays nothing.
    let catalog = catalog.filter(|c| !c.is_empty());
    let cached_embeddings = catalog.is_some_and(Catalog::supplies_embeddings);
    // Without cached embeddings the old rule holds: every candidate has candidates[0]'s length.
    let first_len = req.candidates.first().map_or(0, |c| c.embedding.len());
    // The request's embedding length, from the first candidate that had one.
    let mut width: Option<Width> = None;
    // Rows of the leading candidates that all had an embedding; once one has none, the
    // request will be ranked without, and nothing more is copied.
    let mut flat: Vec<f32> = Vec::new();
    let mut rows = 0;
    let (mut hits, mut misses) = (0, 0);
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
        if c.cross_platform_seen_ms < 0 {
            return Err(ApiError::invalid(
                field("cross_platform_seen_ms"),
                "must not be negative (0 = unknown)",
            ));
        }
        let len = c.embedding.len();
        if len > limits.max_embedding_dim {
            return Err(ApiError::invalid(
                field("embedding"),
                format!(
                    "has {len} values, the maximum is {}",
                    limits.max_embedding_dim
                ),
            ));
        }
        if !cached_embeddings && len != first_len {
            return Err(ApiError::invalid(
                field("embedding"),
                format!(
                    "has {len} values but candidates[0] has {first_len}: all embeddings of a \
                     request have the same length, or none has one"
                ),
            ));
        }
        if let Some(j) = c.embedding.iter().position(|v| !v.is_finite()) {
            return Err(ApiError::invalid(
                format!("candidates[{i}].embedding[{j}]"),
                "must be a finite number",
            ));
        }
        let mut evidence = DimensionSet::EMPTY;
        for (j, &d) in c.evidence.iter().enumerate() {
            evidence.insert(dimension(d, || format!("candidates[{i}].evidence[{j}]"))?);
        }
        let mut candidate = Candidate {
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
            cross_platform_seen_ms: c.cross_platform_seen_ms,
        };
        {
            // Holds the item's shard for reading until the end of this block: no other
            // lookup may happen inside it.
            let cached = catalog.and_then(|catalog| catalog.get(c.item_id));
            match &cached {
                Some(item) => {
                    hits += 1;
                    fill_from_catalog(&mut candidate, item);
                }
                None if catalog.is_some() => misses += 1,
                None => {}
            }
            let row: &[f32] = match &cached {
                _ if len > 0 => &c.embedding,
                Some(item) => &item.embedding,
                None => &[],
            };
            if !row.is_empty() {
                let from_catalog = len == 0;
                match width {
                    None => {
                        width = Some(Width {
                            len: row.len(),
                            index: i,
                            from_catalog,
                        });
                        if i == 0 {
                            flat.reserve_exact(n * row.len());
                        }
                    }
                    Some(w) if w.len != row.len() => {
                        return Err(ApiError::invalid(
                            field("embedding"),
                            w.conflict(row.len(), from_catalog, c.item_id),
                        ));
                    }
                    Some(_) => {}
                }
                if rows == i {
                    flat.extend_from_slice(row);
                    rows += 1;
                }
            }
        }
        if candidate.anchor_item_id != 0
            && candidate.anchor_title.is_empty()
            && let Some(title) = catalog.and_then(|c| c.title_of(candidate.anchor_item_id))
        {
            candidate.anchor_title = title;
        }
        candidates.push(candidate);
    }
    let complete = width.is_some() && rows == n;
    if let Some(catalog) = catalog {
        catalog.count_lookups(hits, misses, width.is_some() && !complete);
    }
    let diversity = diversity_request(req.diversity.take().unwrap_or_default())?;
    let embeddings = match width {
        Some(w) if complete => Some(
            Array2::from_shape_vec((n, w.len), flat)
                .map_err(|e| ApiError::invalid("candidates", format!("embeddings: {e}")))?,
        ),
        _ => None,
    };
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
            surface: req.surface,
            region: mem::take(&mut context.region),
            utc_offset_minutes: context.utc_offset_minutes,
            diversity,
        },
        denied,
        personalization_off: consent.personalization_off,
        caller_timeout,
        strict: req.strict,
    })
}

/// How many of the answer's items a Rank request asks to record as shown (0: none).
pub fn shown_to_record(req: &pb::RankRequest) -> Result<usize, ApiError> {
    match (req.shown, req.all_shown) {
        (0, false) => Ok(0),
        (n, false) => Ok(n as usize),
        (0, true) => Ok(usize::MAX),
        (_, true) => Err(ApiError::invalid(
            "shown",
            "set shown or all_shown, not both",
        )),
    }
}

/// The request's diversity adjustments, checked against their bounds.
fn diversity_request(d: pb::DiversityOptions) -> Result<DiversityRequest, ApiError> {
    let method = match pb::DiversityMethod::try_from(d.method) {
        Ok(pb::DiversityMethod::Unspecified) => None,
        Ok(pb::DiversityMethod::Mmr) => Some(Method::Mmr),
        Ok(pb::DiversityMethod::Dpp) => Some(Method::Dpp),
        Ok(pb::DiversityMethod::Score) => Some(Method::Score),
        Err(_) => {
            return Err(ApiError::invalid(
                "diversity.method",
                format!("{} is not a DiversityMethod", d.method),
            ));
        }
    };
    let request = DiversityRequest {
        method,
        weight: d.weight,
        exploration_share: d.exploration_share,
        calibration: d.calibration,
        long_tail: d.long_tail,
    };
    request
        .check()
        .map_err(|(field, message)| ApiError::invalid(format!("diversity.{field}"), message))?;
    Ok(request)
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
        ReasonCode::Complement => P::Complement,
        ReasonCode::Interest => P::Interest,
        ReasonCode::Context => P::Context,
        ReasonCode::Exploration => P::Exploration,
    }
}

fn drop_rule(rule: DropRule) -> pb::DropRule {
    match rule {
        DropRule::NotInterested => pb::DropRule::NotInterested,
        DropRule::BlockedBrand => pb::DropRule::BlockedBrand,
        DropRule::BlockedShop => pb::DropRule::BlockedShop,
        DropRule::Consent => pb::DropRule::Consent,
        DropRule::FrequencyCap => pb::DropRule::FrequencyCap,
        DropRule::CoolingOff => pb::DropRule::CoolingOff,
        DropRule::Sensitive => pb::DropRule::Sensitive,
        DropRule::Overload => pb::DropRule::Overload,
    }
}

/// The stage on the wire; UNSPECIFIED when there is none (personalisation off).
pub fn lifecycle(stage: Option<LifecycleStage>) -> pb::LifecycleStage {
    match stage {
        None => pb::LifecycleStage::Unspecified,
        Some(LifecycleStage::New) => pb::LifecycleStage::New,
        Some(LifecycleStage::Active) => pb::LifecycleStage::Active,
        Some(LifecycleStage::Silent) => pb::LifecycleStage::Silent,
        Some(LifecycleStage::Churned) => pb::LifecycleStage::Churned,
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

/// A catalog item off the wire, to be checked by the catalog (its vectors are moved, not
/// copied).
pub fn catalog_item(item: pb::CatalogItem) -> ItemFields {
    ItemFields {
        item_id: item.item_id,
        category_id: item.category_id,
        brand_id: item.brand_id,
        shop_id: item.shop_id,
        price: item.price,
        popularity: item.popularity,
        embedding: item.embedding,
        title: item.title,
        complement_categories: item.complement_categories,
        deleted: item.deleted,
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
        title: e.title.clone(),
    })
}

fn tag_kind(kind: TagKind) -> pb::TagKind {
    match kind {
        TagKind::Category => pb::TagKind::Category,
        TagKind::Brand => pb::TagKind::Brand,
    }
}

fn muted(v: Vec<(u64, f32)>) -> Vec<pb::Muted> {
    v.into_iter()
        .map(|(id, strength)| pb::Muted { id, strength })
        .collect()
}

/// The profile on the wire. `lifecycle_stage` and `cooling_off` come from the engine (they
/// depend on the policy); the rest is the store's.
pub fn user_profile(
    user_id: String,
    p: Profile,
    lifecycle_stage: Option<LifecycleStage>,
    cooling_off: Vec<cooling_off::Window>,
) -> pb::UserProfile {
    let v = p.view;
    let mut fatigue = v.ignored;
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
        interests: v
            .tags
            .into_iter()
            .map(|t| {
                let (source, learned_from) = match t.source {
                    TagSource::User => (pb::TagSource::User, Vec::new()),
                    TagSource::Learned(dims) => (pb::TagSource::Learned, dimensions(dims)),
                };
                pb::InterestTag {
                    kind: tag_kind(t.kind).into(),
                    id: t.id,
                    label: t.label,
                    weight: t.weight,
                    source: source.into(),
                    learned_from,
                }
            })
            .collect(),
        muted_categories: muted(v.fewer_categories),
        muted_brands: muted(v.fewer_brands),
        cooling_off: cooling_off
            .into_iter()
            .map(|w| pb::CoolingOff {
                item_id: w.item_id,
                category_id: w.category_id,
                title: w.title,
                bought_at_ms: w.bought_at_ms,
                substitutes_until_ms: w.substitutes_until_ms,
                price_drops_until_ms: w.price_drops_until_ms,
            })
            .collect(),
        sensitive_categories: v.sensitive_opt_in,
        used_recently: dimensions(p.used_recently),
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

/// Sensitive-category opt-ins (true) and opt-outs (false) from a SetConsent request.
pub fn sensitive_changes(req: &pb::SetConsentRequest) -> Result<Vec<(u64, bool)>, ApiError> {
    let n = req.sensitive_categories.len();
    if n > MAX_SENSITIVE_CHANGES {
        return Err(ApiError::invalid(
            "sensitive_categories",
            format!("{n} changes, the maximum is {MAX_SENSITIVE_CHANGES}"),
        ));
    }
    req.sensitive_categories
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.category_id == 0 {
                return Err(ApiError::invalid(
                    format!("sensitive_categories[{i}].category_id"),
                    "is required (0 is not a category id)",
                ));
            }
            Ok((c.category_id, c.granted))
        })
        .collect()
}

/// Interest-tag changes from an UpdateInterests request.
pub fn interest_changes(req: pb::UpdateInterestsRequest) -> Result<Vec<InterestChange>, ApiError> {
    let n = req.updates.len();
    if n == 0 {
        return Err(ApiError::invalid("updates", "is required (at least one)"));
    }
    if n > MAX_INTERESTS {
        return Err(ApiError::invalid(
            "updates",
            format!("{n} updates, the maximum is {MAX_INTERESTS}"),
        ));
    }
    let mut seen: HashMap<(TagKind, u64), usize> = HashMap::with_capacity(n);
    let mut changes = Vec::with_capacity(n);
    for (i, u) in req.updates.into_iter().enumerate() {
        let field = |name: &str| format!("updates[{i}].{name}");
        let kind = match pb::TagKind::try_from(u.kind) {
            Ok(pb::TagKind::Category) => TagKind::Category,
            Ok(pb::TagKind::Brand) => TagKind::Brand,
            Ok(pb::TagKind::Unspecified) => {
                return Err(ApiError::invalid(
                    field("kind"),
                    "is required (TAG_KIND_CATEGORY or TAG_KIND_BRAND)",
                ));
            }
            Err(_) => {
                return Err(ApiError::invalid(
                    field("kind"),
                    format!("{} is not a known tag kind", u.kind),
                ));
            }
        };
        if u.id == 0 {
            return Err(ApiError::invalid(
                field("id"),
                "is required (0 is not a category or brand id)",
            ));
        }
        if let Some(first) = seen.insert((kind, u.id), i) {
            return Err(ApiError::invalid(
                field("id"),
                format!("{} duplicates updates[{first}]", u.id),
            ));
        }
        if !(u.weight.is_finite() && (0.0..=1.0).contains(&u.weight)) {
            return Err(ApiError::invalid(
                field("weight"),
                "must be a number in [0, 1] (0 removes the tag)",
            ));
        }
        if let Some(label) = &u.label {
            max_bytes(label, MAX_LABEL_BYTES, || field("label"))?;
        }
        changes.push(InterestChange {
            kind,
            id: u.id,
            weight: u.weight,
            label: u.label,
        });
    }
    Ok(changes)
}

/// What an Undo request takes back.
pub fn undo(req: &pb::UndoRequest) -> Result<Undo, ApiError> {
    use pb::UndoKind as K;
    let make: fn(u64) -> Undo = match K::try_from(req.kind) {
        Ok(K::BlockBrand) => Undo::BlockedBrand,
        Ok(K::BlockShop) => Undo::BlockedShop,
        Ok(K::NotInterested) => Undo::NotInterested,
        Ok(K::FewerLikeThisCategory) => Undo::FewerCategory,
        Ok(K::FewerLikeThisBrand) => Undo::FewerBrand,
        Ok(K::Unspecified) => return Err(ApiError::invalid("kind", "is required")),
        Err(_) => {
            return Err(ApiError::invalid(
                "kind",
                format!("{} is not a known undo kind", req.kind),
            ));
        }
    };
    if req.id == 0 {
        return Err(ApiError::invalid(
            "id",
            "is required: the brand, shop, item or category to take back",
        ));
    }
    Ok(make(req.id))
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
    fn every_avoidance_rule_names_its_field() {
        let mut r = request(vec![candidate(1, 1.0)]);
        r.surface = "s".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(field_of(r), "surface");
        let with_context = |context: pb::Context| pb::RankRequest {
            context: Some(context),
            ..request(vec![candidate(1, 1.0)])
        };
        assert_eq!(
            field_of(with_context(pb::Context {
                region: "r".repeat(MAX_NAME_BYTES + 1),
                ..Default::default()
            })),
            "context.region"
        );
        for offset in [841, -841, i32::MIN] {
            assert_eq!(
                field_of(with_context(pb::Context {
                    utc_offset_minutes: offset,
                    ..Default::default()
                })),
                "context.utc_offset_minutes"
            );
        }
        let mut c = candidate(2, 1.0);
        c.cross_platform_seen_ms = -1;
        assert_eq!(
            field_of(request(vec![candidate(1, 1.0), c])),
            "candidates[1].cross_platform_seen_ms"
        );
    }

    fn invalid_field<T: std::fmt::Debug>(r: Result<T, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn update(kind: pb::TagKind, id: u64, weight: f32) -> pb::InterestUpdate {
        pb::InterestUpdate {
            kind: kind.into(),
            id,
            weight,
            label: None,
        }
    }

    fn interests(updates: Vec<pb::InterestUpdate>) -> Result<Vec<InterestChange>, ApiError> {
        interest_changes(pb::UpdateInterestsRequest {
            user_id: "u".into(),
            updates,
        })
    }

    #[test]
    fn every_profile_rule_names_its_field() {
        use pb::TagKind as T;
        let consent = pb::SetConsentRequest {
            user_id: "u".into(),
            sensitive_categories: vec![
                pb::SensitiveConsent {
                    category_id: 40,
                    granted: true,
                },
                pb::SensitiveConsent {
                    category_id: 0,
                    granted: true,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            invalid_field(sensitive_changes(&consent)),
            "sensitive_categories[1].category_id"
        );
        let many = pb::SetConsentRequest {
            sensitive_categories: vec![
                pb::SensitiveConsent {
                    category_id: 1,
                    granted: false,
                };
                MAX_SENSITIVE_CHANGES + 1
            ],
            ..Default::default()
        };
        assert_eq!(
            invalid_field(sensitive_changes(&many)),
            "sensitive_categories"
        );

        let ok = update(T::Category, 5, 1.0);
        assert_eq!(invalid_field(interests(vec![])), "updates");
        let too_many = (1..=MAX_INTERESTS as u64 + 1)
            .map(|id| update(T::Brand, id, 0.5))
            .collect();
        assert_eq!(invalid_field(interests(too_many)), "updates");
        assert_eq!(
            invalid_field(interests(vec![ok.clone(), update(T::Unspecified, 5, 1.0)])),
            "updates[1].kind"
        );
        let mut unknown = ok.clone();
        unknown.kind = 9;
        assert_eq!(invalid_field(interests(vec![unknown])), "updates[0].kind");
        assert_eq!(
            invalid_field(interests(vec![ok.clone(), update(T::Brand, 0, 1.0)])),
            "updates[1].id"
        );
        assert_eq!(
            invalid_field(interests(vec![ok.clone(), ok.clone()])),
            "updates[1].id"
        );
        for weight in [f32::NAN, f32::INFINITY, -0.1, 1.01] {
            assert_eq!(
                invalid_field(interests(vec![
                    ok.clone(),
                    update(T::Brand, 3, 1.0),
                    update(T::Brand, 4, weight)
                ])),
                "updates[2].weight"
            );
        }
        let mut long = ok.clone();
        long.label = Some("x".repeat(MAX_LABEL_BYTES + 1));
        assert_eq!(invalid_field(interests(vec![long])), "updates[0].label");

        let undo_of = |kind: pb::UndoKind, id: u64| {
            undo(&pb::UndoRequest {
                user_id: "u".into(),
                kind: kind.into(),
                id,
            })
        };
        assert_eq!(invalid_field(undo_of(pb::UndoKind::Unspecified, 3)), "kind");
        assert_eq!(invalid_field(undo_of(pb::UndoKind::BlockShop, 0)), "id");
        let unknown = undo(&pb::UndoRequest {
            user_id: "u".into(),
            kind: 99,
            id: 3,
        });
        assert_eq!(invalid_field(unknown), "kind");
    }

    #[test]
    fn valid_profile_changes_become_core_changes() {
        let mut tea = update(pb::TagKind::Category, 5, 0.8);
        tea.label = Some("tea".into());
        let changes = interests(vec![tea, update(pb::TagKind::Brand, 5, 0.0)]).unwrap();
        assert_eq!(
            changes,
            vec![
                InterestChange {
                    kind: TagKind::Category,
                    id: 5,
                    weight: 0.8,
                    label: Some("tea".into()),
                },
                InterestChange {
                    kind: TagKind::Brand,
                    id: 5,
                    weight: 0.0,
                    label: None,
                },
            ]
        );
        let cases = [
            (pb::UndoKind::BlockBrand, Undo::BlockedBrand(7)),
            (pb::UndoKind::BlockShop, Undo::BlockedShop(7)),
            (pb::UndoKind::NotInterested, Undo::NotInterested(7)),
            (pb::UndoKind::FewerLikeThisCategory, Undo::FewerCategory(7)),
            (pb::UndoKind::FewerLikeThisBrand, Undo::FewerBrand(7)),
        ];
        for (kind, want) in cases {
            let req = pb::UndoRequest {
                user_id: "u".into(),
                kind: kind.into(),
                id: 7,
            };
            assert_eq!(undo(&req).unwrap(), want);
        }
        assert_eq!(lifecycle(None), pb::LifecycleStage::Unspecified);
        assert_eq!(
            lifecycle(Some(LifecycleStage::Churned)),
            pb::LifecycleStage::Churned
        );
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

    /// A catalog of 2-dim items: 1 a phone, 2 a case.
    fn shop_catalog() -> Catalog {
        let catalog = Catalog::new(10, 2);
        let phone = ItemFields {
            item_id: 1,
            category_id: 10,
            brand_id: 7,
            shop_id: 70,
            price: 699.0,
            popularity: 3.0,
            embedding: vec![1.0, 0.0],
            title: "Nova X phone".into(),
            ..Default::default()
        };
        let case = ItemFields {
            item_id: 2,
            category_id: 13,
            embedding: vec![0.0, 1.0],
            ..Default::default()
        };
        let changes = vec![catalog.check(phone).unwrap(), catalog.check(case).unwrap()];
        catalog.apply(changes).unwrap();
        catalog
    }

    fn call_with(catalog: &Catalog, candidates: Vec<pb::Candidate>) -> Result<RankCall, ApiError> {
        rank_call_with_catalog(
            request(candidates),
            &Limits::default(),
            Some(catalog),
            1,
            None,
        )
    }

    #[test]
    fn ids_and_scores_are_filled_from_the_catalog() {
        let catalog = shop_catalog();
        let call = call_with(&catalog, vec![candidate(1, 0.9), candidate(2, 0.8)]).unwrap();
        let phone = &call.input.candidates[0];
        assert_eq!(
            (phone.category_id, phone.brand_id, phone.shop_id),
            (10, 7, 70)
        );
        assert_eq!((phone.price, phone.popularity), (699.0, 3.0));
        let e = call.input.embeddings.unwrap();
        assert_eq!(e.shape(), &[2, 2]);
        assert_eq!(e.row(0).to_vec(), vec![1.0, 0.0]);
        assert_eq!(e.row(1).to_vec(), vec![0.0, 1.0]);
        let s = catalog.stats();
        assert_eq!((s.hits, s.misses, s.partial_embeddings), (2, 0, 0));
    }

    #[test]
    fn what_the_request_carries_wins_field_by_field() {
        let catalog = shop_catalog();
        let mut own = candidate(1, 0.9);
        own.brand_id = 5;
        own.price = 10.0;
        own.embedding = vec![0.6, 0.8];
        let call = call_with(&catalog, vec![own, candidate(2, 0.8)]).unwrap();
        let phone = &call.input.candidates[0];
        assert_eq!(
            (phone.category_id, phone.brand_id, phone.shop_id),
            (10, 5, 70)
        );
        assert_eq!((phone.price, phone.popularity), (10.0, 3.0));
        let e = call.input.embeddings.unwrap();
        assert_eq!(e.row(0).to_vec(), vec![0.6, 0.8]);
        assert_eq!(e.row(1).to_vec(), vec![0.0, 1.0]);
    }

    #[test]
    fn unknown_items_rank_with_what_the_request_has_and_without_embeddings() {
        let catalog = shop_catalog();
        for order in [[1, 3, 2], [3, 1, 2]] {
            let candidates = order.iter().map(|&i| candidate(i, 0.5)).collect();
            let call = call_with(&catalog, candidates).unwrap();
            assert!(call.input.embeddings.is_none(), "{order:?}");
            let unknown = call
                .input
                .candidates
                .iter()
                .find(|c| c.item_id == 3)
                .unwrap();
            assert_eq!((unknown.category_id, unknown.price), (0, 0.0));
            let phone = call
                .input
                .candidates
                .iter()
                .find(|c| c.item_id == 1)
                .unwrap();
            assert_eq!(
                phone.category_id, 10,
                "attributes still come from the catalog"
            );
        }
        let s = catalog.stats();
        assert_eq!((s.hits, s.misses, s.partial_embeddings), (4, 2, 2));
        // An unknown item with its own embedding completes the matrix.
        let mut own = candidate(3, 0.5);
        own.embedding = vec![0.0, -1.0];
        let call = call_with(&catalog, vec![candidate(1, 0.9), own]).unwrap();
        assert_eq!(
            call.input.embeddings.unwrap().row(1).to_vec(),
            vec![0.0, -1.0]
        );
    }

    #[test]
    fn embeddings_of_two_lengths_are_refused_naming_the_candidate() {
        let catalog = shop_catalog();
        let mut long = candidate(3, 0.5);
        long.embedding = vec![1.0, 2.0, 3.0];
        let err = call_with(&catalog, vec![candidate(1, 0.9), long.clone()]).unwrap_err();
        let ApiError::InvalidArgument { field, message } = err else {
            panic!("{err:?}");
        };
        assert_eq!(field, "candidates[1].embedding");
        assert!(
            message.contains("the catalog's embedding of candidates[0]"),
            "{message}"
        );
        let err = call_with(&catalog, vec![long, candidate(2, 0.9)]).unwrap_err();
        let ApiError::InvalidArgument { field, message } = err else {
            panic!("{err:?}");
        };
        assert_eq!(field, "candidates[1].embedding");
        assert!(
            message.contains("catalog's embedding of item 2 has 2"),
            "{message}"
        );
    }

    #[test]
    fn a_catalog_without_embeddings_keeps_them_all_or_none() {
        let catalog = Catalog::new(10, 0);
        let item = ItemFields {
            item_id: 1,
            category_id: 4,
            ..Default::default()
        };
        catalog.apply(vec![catalog.check(item).unwrap()]).unwrap();
        let mut a = candidate(1, 1.0);
        a.embedding = vec![1.0, 0.0];
        let err = call_with(&catalog, vec![a, candidate(2, 0.5)]).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidArgument { ref field, .. } if field == "candidates[1].embedding")
        );
        let call = call_with(&catalog, vec![candidate(1, 1.0), candidate(2, 0.5)]).unwrap();
        assert_eq!(call.input.candidates[0].category_id, 4);
        assert!(call.input.embeddings.is_none());
    }

    #[test]
    fn an_anchor_without_a_title_is_named_from_the_catalog() {
        let catalog = shop_catalog();
        let mut case = candidate(2, 0.8);
        case.anchor_item_id = 1;
        let mut titled = candidate(3, 0.7);
        titled.anchor_item_id = 1;
        titled.anchor_title = "my phone".into();
        let mut unknown_anchor = candidate(4, 0.6);
        unknown_anchor.anchor_item_id = 99;
        let call = call_with(&catalog, vec![case, titled, unknown_anchor]).unwrap();
        let titles: Vec<&str> = call
            .input
            .candidates
            .iter()
            .map(|c| c.anchor_title.as_str())
            .collect();
        assert_eq!(titles, ["Nova X phone", "my phone", ""]);
    }

    #[test]
    fn catalog_items_leave_the_wire_unchanged() {
        let wire = pb::CatalogItem {
            item_id: 1,
            category_id: 2,
            brand_id: 3,
            shop_id: 4,
            price: 5.0,
            popularity: 6.0,
            embedding: vec![7.0],
            title: "t".into(),
            complement_categories: vec![8],
            deleted: true,
        };
        let f = catalog_item(wire);
        assert_eq!(
            (
                f.item_id,
                f.category_id,
                f.brand_id,
                f.shop_id,
                f.price,
                f.popularity
            ),
            (1, 2, 3, 4, 5.0, 6.0)
        );
        assert_eq!((f.embedding, f.title.as_str()), (vec![7.0], "t"));
        assert_eq!((f.complement_categories, f.deleted), (vec![8], true));
    }

    #[test]
    fn surface_region_offset_and_cross_platform_time_reach_the_core() {
        let mut c = candidate(1, 1.0);
        c.cross_platform_seen_ms = 1234;
        let req = pb::RankRequest {
            surface: "post_purchase".into(),
            context: Some(pb::Context {
                region: "CN-31".into(),
                utc_offset_minutes: -840,
                ..Default::default()
            }),
            ..request(vec![c])
        };
        let call = rank_call(req, &Limits::default(), 1, None).unwrap();
        assert_eq!(call.input.surface, "post_purchase");
        assert_eq!(call.input.region, "CN-31");
        assert_eq!(call.input.utc_offset_minutes, -840);
        assert_eq!(call.input.candidates[0].cross_platform_seen_ms, 1234);
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
        let e = pb::Event {
            user_id: "u".into(),
            r#type: pb::EventType::Purchase as i32,
            item_id: 3,
            title: "Pixel 9".into(),
            ..Default::default()
        };
        assert_eq!(event(&e, 9, &limits).unwrap().title, "Pixel 9");
    }
}

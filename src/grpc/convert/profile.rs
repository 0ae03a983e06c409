//! The preference centre's requests into the store's changes, and a user's profile back onto
//! the wire.

use std::collections::HashMap;

use super::{dimension, dimensions, lifecycle, max_bytes};
use crate::grpc::error::ApiError;
use crate::pb;
use crate::rank::stages::cooling_off;
use crate::rank::user::{TagKind, TagSource};
use crate::rank::{DataDimension, LifecycleStage};
use crate::state::user::MAX_INTERESTS;
use crate::state::{InterestChange, Profile, Undo};

/// Bytes of an interest tag's label: a few words.
pub const MAX_LABEL_BYTES: usize = 64;
/// Sensitive-category changes per SetConsent.
pub const MAX_SENSITIVE_CHANGES: usize = 1000;

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
}

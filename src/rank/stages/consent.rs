//! Consent and privacy (stage 3 of the avoidance chain).
//!
//! - The gate: a candidate whose evidence comes only from data dimensions the user has not
//!   consented to is removed, because showing it would reveal that such data was used. A
//!   candidate that declares no evidence, or any consented evidence, passes.
//! - Sensitive categories (health, finance, adult...: a policy list) are removed unless the
//!   user opted in to that category.
//! - The discount: with mixed evidence, the share that is not consented lowers the item.
//! - "Too soon": cross-platform evidence younger than the policy's delay lowers the item, even
//!   with consent, because an item that follows the user from another app minutes later
//!   feels like surveillance.

use serde::Deserialize;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Candidate, Component, DataDimension, DropRule};
use crate::rank::user::UserView;
use crate::time::HOUR_MS;

pub fn rule_for(c: &Candidate, user: &UserView) -> Option<DropRule> {
    let allowed = user.consent.allowed(c.evidence);
    (!c.evidence.is_empty() && allowed.is_empty()).then_some(DropRule::Consent)
}

/// Removes a candidate of a sensitive category the user has not opted in to.
pub fn sensitive_rule(sensitive: &[u64], c: &Candidate, user: &UserView) -> Option<DropRule> {
    (c.category_id != 0
        && sensitive.binary_search(&c.category_id).is_ok()
        && !user.opted_in_sensitive(c.category_id))
    .then_some(DropRule::Sensitive)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentParams {
    /// Categories shown only to users who opted in to each (`Profile.SetConsent`). Empty by
    /// default because category ids are the platform's own: list health, finance, adult...
    pub sensitive_categories: Vec<u64>,
    /// The most a candidate with mixed evidence loses, when all but a sliver of its evidence
    /// is not consented. 0.3 keeps a well-supported item in play while an item resting mostly
    /// on forbidden data sinks.
    pub mixed_discount: f32,
    /// Cross-platform evidence younger than this is "too soon". A day separates "you looked at
    /// this elsewhere a minute ago" (creepy) from a lasting interest.
    pub too_soon_hours: f64,
    /// The "too soon" penalty for brand-new evidence, fading to 0 at the end of the delay.
    /// 0.5 moves a top item below the middle of the list.
    pub too_soon_weight: f32,
}

impl Default for ConsentParams {
    fn default() -> Self {
        Self {
            sensitive_categories: Vec::new(),
            mixed_discount: 0.3,
            too_soon_hours: 24.0,
            too_soon_weight: 0.5,
        }
    }
}

/// Removes what consent forbids: personal-only evidence without consent, sensitive
/// categories without opt-in.
pub struct ConsentGate {
    /// Sorted.
    pub sensitive_categories: Vec<u64>,
}

impl Stage for ConsentGate {
    fn name(&self) -> &'static str {
        "consent"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        slate.drop_by(rule_for);
        slate.drop_by(|c, u| sensitive_rule(&self.sensitive_categories, c, u));
        Ok(())
    }
}

/// Lowers candidates in proportion to the share of their personal evidence without consent.
pub struct ConsentDiscount(pub f32);

impl Stage for ConsentDiscount {
    fn name(&self) -> &'static str {
        "consent_discount"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let consent = slate.user.consent;
        let discount = slate.per_candidate(|c| {
            // Bit operations: this runs per candidate. Every denied member is personal.
            let personal = c.evidence.personal().len();
            let denied = c.evidence.difference(consent.allowed(c.evidence)).len();
            if personal == 0 {
                0.0
            } else {
                -self.0 * denied as f32 / personal as f32
            }
        });
        slate.add_component(Component::ConsentDiscount, discount);
        Ok(())
    }
}

/// Lowers candidates that rest on cross-platform evidence younger than the delay.
pub struct TooSoon {
    pub delay_ms: i64,
    pub weight: f32,
}

impl TooSoon {
    pub fn new(p: &ConsentParams) -> Self {
        Self {
            delay_ms: (p.too_soon_hours * HOUR_MS as f64) as i64,
            weight: p.too_soon_weight,
        }
    }
}

/// When the cross-platform evidence behind `c` was observed, the latest known: from the
/// candidate itself, or the user's sightings of the item, its anchor or its category.
pub fn cross_platform_seen_ms(c: &Candidate, user: &UserView) -> Option<i64> {
    let from_state = user
        .sightings
        .iter()
        .filter(|s| {
            (s.item_id != 0 && (s.item_id == c.item_id || s.item_id == c.anchor_item_id))
                || (s.category_id != 0 && s.category_id == c.category_id)
        })
        .map(|s| s.at_ms)
        .max();
    let declared = (c.cross_platform_seen_ms > 0).then_some(c.cross_platform_seen_ms);
    from_state.max(declared)
}

impl Stage for TooSoon {
    fn name(&self) -> &'static str {
        "too_soon"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (user, now) = (slate.user, slate.input.now_ms);
        if self.delay_ms <= 0 || !user.consent.allows(DataDimension::CrossPlatform) {
            // Without consent, cross-platform evidence is not used at all (see the gate).
            return Ok(());
        }
        let penalty = slate.per_candidate(|c| {
            if !c.evidence.contains(DataDimension::CrossPlatform) {
                return 0.0;
            }
            match cross_platform_seen_ms(c, user) {
                Some(seen) if now - seen < self.delay_ms => {
                    let age = (now - seen).max(0) as f32 / self.delay_ms as f32;
                    -self.weight * (1.0 - age)
                }
                _ => 0.0,
            }
        });
        slate.add_component(Component::TooSoon, penalty);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Consent, DataDimension as D, DimensionSet, RankInput};

    fn with_evidence(item_id: u64, dims: &[D]) -> Candidate {
        Candidate {
            item_id,
            evidence: DimensionSet::of(dims.iter().copied()),
            ..Default::default()
        }
    }

    #[test]
    fn only_candidates_with_no_consented_evidence_are_dropped() {
        let input = RankInput {
            candidates: vec![
                with_evidence(1, &[D::CrossPlatform]),
                with_evidence(2, &[D::CrossPlatform, D::Browsing]),
                with_evidence(3, &[]),
                with_evidence(4, &[D::Trending]),
                with_evidence(5, &[D::Location, D::Social]),
            ],
            ..Default::default()
        };
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        ConsentGate {
            sensitive_categories: Vec::new(),
        }
        .apply(&mut slate, &Deadline::none())
        .unwrap();
        let dropped: Vec<usize> = (0..5).filter(|&i| slate.is_dropped(i)).collect();
        assert_eq!(dropped, vec![0, 4]);
    }

    #[test]
    fn personalisation_off_drops_every_personal_only_candidate() {
        let user =
            UserView::unknown(Consent::privacy_default().restrict(DimensionSet::EMPTY, true));
        assert_eq!(
            rule_for(&with_evidence(1, &[D::Browsing, D::Search]), &user),
            Some(DropRule::Consent)
        );
        assert_eq!(
            rule_for(&with_evidence(2, &[D::Browsing, D::Editorial]), &user),
            None
        );
    }

    #[test]
    fn sensitive_categories_need_the_users_opt_in() {
        let c = Candidate {
            item_id: 1,
            category_id: 40,
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        assert_eq!(
            sensitive_rule(&[40, 41], &c, &user),
            Some(DropRule::Sensitive)
        );
        assert_eq!(sensitive_rule(&[41], &c, &user), None);
        user.sensitive_opt_in = vec![40];
        assert_eq!(sensitive_rule(&[40, 41], &c, &user), None);
    }

    #[test]
    fn mixed_evidence_is_discounted_by_its_unconsented_share() {
        let input = RankInput {
            candidates: vec![
                with_evidence(1, &[D::Browsing]),
                with_evidence(2, &[D::Browsing, D::CrossPlatform]),
                with_evidence(3, &[D::Trending]),
            ],
            ..Default::default()
        };
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        ConsentDiscount(0.3)
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.score.to_vec(), vec![0.0, -0.15, 0.0]);
        assert_eq!(slate.avoidance.penalised_by(Component::ConsentDiscount), 1);
    }

    #[test]
    fn young_cross_platform_evidence_is_too_soon_even_with_consent() {
        let now = 100 * HOUR_MS;
        let mut young = with_evidence(1, &[D::CrossPlatform]);
        young.cross_platform_seen_ms = now - HOUR_MS;
        let mut old = with_evidence(2, &[D::CrossPlatform]);
        old.cross_platform_seen_ms = now - 48 * HOUR_MS;
        let mut sighted = with_evidence(3, &[D::CrossPlatform, D::Browsing]);
        sighted.anchor_item_id = 77;
        let input = RankInput {
            candidates: vec![young, old, sighted],
            now_ms: now,
            ..Default::default()
        };
        let consent = Consent::privacy_default().grant(D::CrossPlatform);
        let mut user = UserView::unknown(consent);
        user.sightings = vec![crate::rank::user::Sighting {
            item_id: 77,
            category_id: 0,
            at_ms: now - 12 * HOUR_MS,
        }];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        TooSoon::new(&ConsentParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert!(slate.score[0] < -0.45);
        assert_eq!(slate.score[1], 0.0);
        assert!((slate.score[2] + 0.25).abs() < 1e-4);

        // Without consent the evidence is not used at all, so it is never "too soon" either.
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        TooSoon::new(&ConsentParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert!(slate.score.iter().all(|s| *s == 0.0));
    }
}

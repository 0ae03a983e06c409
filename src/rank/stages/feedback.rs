//! Explicit feedback: the user's own words. "Not interested" in an item, a blocked brand and a
//! blocked shop remove the candidate outright; "fewer like this" on a category or brand is a
//! decaying down-weight. Nothing here may be overridden by relevance.

use serde::Deserialize;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Candidate, Component, DropRule};
use crate::rank::user::UserView;

/// The hard rule from explicit feedback, if any, that removes this candidate.
pub fn rule_for(c: &Candidate, user: &UserView) -> Option<DropRule> {
    if user.is_not_interested(c.item_id) {
        Some(DropRule::NotInterested)
    } else if user.is_brand_blocked(c.brand_id) {
        Some(DropRule::BlockedBrand)
    } else if user.is_shop_blocked(c.shop_id) {
        Some(DropRule::BlockedShop)
    } else {
        None
    }
}

/// Drops candidates the user has said no to.
pub struct ExplicitFeedback;

impl Stage for ExplicitFeedback {
    fn name(&self) -> &'static str {
        "explicit_feedback"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        slate.drop_by(rule_for);
        Ok(())
    }
}

/// Knobs of the "fewer like this" down-weight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FewerLikeThisParams {
    pub enabled: bool,
    /// Penalty at full strength, on the [0, 1] relevance scale. 0.5 moves a fresh "fewer like
    /// this" item below every unaffected item of median relevance, without hiding it: the user
    /// asked for fewer, not none.
    pub weight: f32,
}

impl Default for FewerLikeThisParams {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 0.5,
        }
    }
}

/// Lowers candidates of categories or brands the user asked to see fewer of.
pub struct FewerLikeThis(pub FewerLikeThisParams);

impl Stage for FewerLikeThis {
    fn name(&self) -> &'static str {
        "fewer_like_this"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let user = slate.user;
        if user.fewer_categories.is_empty() && user.fewer_brands.is_empty() {
            return Ok(());
        }
        let penalty = slate
            .per_candidate(|c| -self.0.weight * user.fewer_like_this(c.category_id, c.brand_id));
        slate.add_component(Component::FewerLikeThis, penalty);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Consent, RankInput};

    fn candidate(item_id: u64, brand_id: u64, shop_id: u64) -> Candidate {
        Candidate {
            item_id,
            brand_id,
            shop_id,
            category_id: 1,
            score: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_of_explicit_feedback_drops_with_its_own_rule() {
        let input = RankInput {
            candidates: vec![
                candidate(1, 10, 100),
                candidate(2, 20, 200),
                candidate(3, 30, 300),
                candidate(4, 40, 400),
            ],
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.not_interested = vec![1];
        user.blocked_brands = vec![20];
        user.blocked_shops = vec![300];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        ExplicitFeedback
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(
            slate.dropped,
            vec![
                Some(DropRule::NotInterested),
                Some(DropRule::BlockedBrand),
                Some(DropRule::BlockedShop),
                None
            ]
        );
    }

    #[test]
    fn unknown_brand_zero_is_never_blocked() {
        let mut user = UserView::unknown(Consent::privacy_default());
        user.blocked_brands = vec![0];
        assert_eq!(rule_for(&candidate(1, 0, 0), &user), None);
    }

    #[test]
    fn fewer_like_this_penalises_in_proportion_to_strength() {
        let input = RankInput {
            candidates: vec![candidate(1, 10, 0), candidate(2, 20, 0)],
            explain: true,
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.fewer_brands = vec![(20, 0.5)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        FewerLikeThis(FewerLikeThisParams {
            enabled: true,
            weight: 0.4,
        })
        .apply(&mut slate, &Deadline::none())
        .unwrap();
        assert_eq!(slate.score.to_vec(), vec![0.0, -0.2]);
        assert_eq!(slate.components[0].0, Component::FewerLikeThis);
    }
}

//! Fatigue (stage 1 of the avoidance chain): an item the user was shown and ignored again and
//! again is pushed down, so the feed stops repeating what the user scrolls past; so, more
//! gently, is a whole category or brand the user keeps scrolling past. The counts of ignored
//! impressions decay with time in the state store, so an item recovers; engaging with the
//! item (or anything of the category or brand) resets them.
//!
//! Fatigue uses only tactful's own exposure log and can only lower an item, so it runs whenever
//! personalisation is on; with personalisation off it uses nothing.

use serde::Deserialize;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::Component;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FatigueParams {
    pub enabled: bool,
    /// The most an item can lose, on the [0, 1] relevance scale. 0.6 lets a worn-out top item
    /// fall below fresh items of middling relevance, yet a far better item is not buried.
    pub weight: f32,
    /// Ignored impressions at which the penalty reaches 63% (1 - 1/e) of `weight`. Three follows
    /// the advertising rule of thumb that a message is either noticed within about three
    /// exposures or tunes the viewer out.
    pub saturation: f32,
    /// The most an item can lose for its category's or brand's ignored exposure. 0.2: a
    /// category scrolled past is a weaker sign than an item scrolled past, and a category
    /// holds items the user has never seen.
    pub group_weight: f32,
    /// Ignored impressions of a category or brand at which its penalty reaches 63%: ten, a
    /// few screens of it.
    pub group_saturation: f32,
}

impl Default for FatigueParams {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 0.6,
            saturation: 3.0,
            group_weight: 0.2,
            group_saturation: 10.0,
        }
    }
}

impl FatigueParams {
    /// The (negative) score change for an item ignored `ignored` times, decayed.
    pub fn penalty(&self, ignored: f32) -> f32 {
        -self.weight * (1.0 - (-ignored / self.saturation).exp())
    }

    /// The (negative) score change for a category or brand ignored `ignored` times.
    pub fn group_penalty(&self, ignored: f32) -> f32 {
        -self.group_weight * (1.0 - (-ignored / self.group_saturation).exp())
    }
}

pub struct Fatigue(pub FatigueParams);

impl Stage for Fatigue {
    fn name(&self) -> &'static str {
        "fatigue"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let user = slate.user;
        if !user.consent.personalization
            || (user.ignored.is_empty()
                && user.ignored_categories.is_empty()
                && user.ignored_brands.is_empty())
        {
            return Ok(());
        }
        let penalty = slate.per_candidate(|c| {
            self.0.penalty(user.ignored_impressions(c.item_id))
                + self
                    .0
                    .group_penalty(user.ignored_group(c.category_id, c.brand_id))
        });
        slate.add_component(Component::Fatigue, penalty);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, DimensionSet, RankInput};
    use crate::rank::user::UserView;

    fn input() -> RankInput {
        RankInput {
            candidates: (1..=3)
                .map(|item_id| Candidate {
                    item_id,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn penalty_grows_with_ignored_exposure_and_saturates() {
        let p = FatigueParams::default();
        assert_eq!(p.penalty(0.0), 0.0);
        assert!(p.penalty(1.0) > p.penalty(3.0));
        assert!(p.penalty(3.0) > p.penalty(10.0));
        assert!(p.penalty(1000.0) >= -p.weight);
    }

    #[test]
    fn only_ignored_items_are_penalised() {
        let input = input();
        let mut user = UserView::unknown(Consent::privacy_default());
        user.ignored = vec![(2, 4.0)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Fatigue(FatigueParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.score[0], 0.0);
        assert!(slate.score[1] < -0.4);
        assert_eq!(slate.score[2], 0.0);
    }

    #[test]
    fn a_category_scrolled_past_weighs_gently_on_all_its_items() {
        let mut input = input();
        input.candidates[0].category_id = 7;
        input.candidates[1].brand_id = 70;
        let mut user = UserView::unknown(Consent::privacy_default());
        user.ignored_categories = vec![(7, 10.0)];
        user.ignored_brands = vec![(70, 10.0)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        let p = FatigueParams::default();
        Fatigue(p.clone())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert!((slate.score[0] - p.group_penalty(10.0)).abs() < 1e-6);
        assert!(slate.score[0] < -0.1 && slate.score[0] > -0.2);
        assert_eq!(slate.score[0], slate.score[1]);
        assert_eq!(slate.score[2], 0.0);
    }

    #[test]
    fn personalisation_off_uses_no_exposure_history() {
        let input = input();
        let mut user =
            UserView::unknown(Consent::privacy_default().restrict(DimensionSet::EMPTY, true));
        user.ignored = vec![(2, 4.0)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Fatigue(FatigueParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert!(slate.score.iter().all(|s| *s == 0.0));
    }
}

//! Overload ("browse-ignore", stage 1 of the avoidance chain): a user who has been shown many
//! items in the last minutes and engaged with almost none is skimming, not reading. For that
//! user tactful shows restraint: a lower `suggested_k`, sponsored items held back, and more
//! diversity, so that what is shown has a chance to be noticed.

use serde::Deserialize;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::DropRule;
use crate::rank::user::UserView;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadParams {
    pub enabled: bool,
    /// Recent impressions (decayed over the state's session half-life, 3 minutes) needed
    /// before a user can be called overloaded: 30 is two to three screens of a feed.
    pub min_impressions: f32,
    /// Engagements per impression at or below which the user is skimming: 3%, under half
    /// of a typical feed's click-through rate.
    pub max_engagement_rate: f32,
    /// `suggested_k` is scaled by this: half as many items.
    pub k_factor: f32,
    /// The diversity weight is scaled by this: a skimming user is shown a broader sample.
    pub diversity_factor: f32,
    /// Sponsored items are held back while the user is overloaded.
    pub hold_back_sponsored: bool,
}

impl Default for OverloadParams {
    fn default() -> Self {
        Self {
            enabled: true,
            min_impressions: 30.0,
            max_engagement_rate: 0.03,
            k_factor: 0.5,
            diversity_factor: 2.0,
            hold_back_sponsored: true,
        }
    }
}

impl OverloadParams {
    pub fn is_overloaded(&self, user: &UserView) -> bool {
        user.recent_impressions >= self.min_impressions
            && user.recent_engagements <= self.max_engagement_rate * user.recent_impressions
    }
}

pub struct Overload(pub OverloadParams);

impl Stage for Overload {
    fn name(&self) -> &'static str {
        "overload"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        if !self.0.is_overloaded(slate.user) {
            return Ok(());
        }
        slate.k_factor *= self.0.k_factor;
        slate.diversity_scale *= self.0.diversity_factor;
        if self.0.hold_back_sponsored {
            let input = slate.input;
            for (i, c) in input.candidates.iter().enumerate() {
                if c.sponsored {
                    slate.drop_candidate(i, DropRule::Overload);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, RankInput};

    fn slate_after(impressions: f32, engagements: f32) -> (Vec<Option<DropRule>>, f32, f32) {
        let input = RankInput {
            candidates: vec![
                Candidate {
                    item_id: 1,
                    sponsored: true,
                    ..Default::default()
                },
                Candidate {
                    item_id: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.recent_impressions = impressions;
        user.recent_engagements = engagements;
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Overload(OverloadParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        (slate.dropped, slate.k_factor, slate.diversity_scale)
    }

    #[test]
    fn skimming_lowers_k_holds_back_sponsored_and_raises_diversity() {
        let (dropped, k, div) = slate_after(40.0, 0.5);
        assert_eq!(dropped, vec![Some(DropRule::Overload), None]);
        assert_eq!((k, div), (0.5, 2.0));
    }

    #[test]
    fn engagement_or_few_impressions_is_not_overload() {
        assert_eq!(slate_after(40.0, 4.0), (vec![None, None], 1.0, 1.0));
        assert_eq!(slate_after(10.0, 0.0), (vec![None, None], 1.0, 1.0));
    }
}

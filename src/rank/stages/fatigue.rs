//! Fatigue (stage 1 of the avoidance chain): an item the user was shown and ignored again and
//! again is pushed down, so the feed stops repeating what the user scrolls past; so, more
//! gently, is a whole category or brand the user keeps scrolling past. The counts of ignored
//! impressions decay with time in the state store, so an item recovers; engaging with the
//! item (or anything of the category or brand) resets them.
//!
//! With a **learned discount** (`[fatigue.learned]`, written by `tactful fit` from a log's
//! fitting part) the item term follows the data instead of the hand-set curve: the item keeps
//! the share `d(n)` of its relevance that the log says is left after `n` ignored impressions,
//! with one curve for items the user never engaged with and two for items they engaged with
//! recently or earlier (people come back to what they looked at; they do not come back to
//! what they scrolled past). This is impression discounting as fitted from logs (Lee et al.,
//! KDD 2014).
//!
//! Fatigue uses only tactful's own exposure log and can only lower an item, so it runs whenever
//! personalisation is on; with personalisation off it uses nothing.

use serde::Deserialize;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::Component;
use crate::time::HOUR_MS;

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
    /// The fitted impression discount; when set it replaces `weight`/`saturation` for items.
    pub learned: Option<LearnedDiscount>,
}

/// Longest discount curve: ignored impressions past it use its last value.
pub const MAX_DISCOUNT_STEPS: usize = 16;

/// Relevance kept after `n` ignored impressions, fitted from a log (see `tactful fit`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedDiscount {
    /// For items the user never engaged with: the share of relevance kept after 0, 1, 2, …
    /// ignored impressions (the last value holds beyond), each in [0, 1].
    pub never: Vec<f32>,
    /// For items the user engaged with less than `recent_hours` ago.
    pub recent: Vec<f32>,
    /// For items the user engaged with longer ago.
    pub earlier: Vec<f32>,
    pub recent_hours: f64,
}

impl LearnedDiscount {
    /// The share kept after `ignored` (decayed, so fractional) impressions: linear between
    /// the fitted steps.
    pub fn kept(curve: &[f32], ignored: f32) -> f32 {
        let Some(last) = curve.last() else {
            return 1.0;
        };
        let n = ignored.max(0.0);
        let i = n.floor() as usize;
        if i + 1 >= curve.len() {
            return *last;
        }
        let f = n - i as f32;
        curve[i] * (1.0 - f) + curve[i + 1] * f
    }

    /// The curve for an item last engaged with at `engaged_at` (`None`: never), as of `now_ms`.
    pub fn curve(&self, engaged_at: Option<i64>, now_ms: i64) -> &[f32] {
        match engaged_at {
            None => &self.never,
            Some(t) if ((now_ms - t) as f64) < self.recent_hours * HOUR_MS as f64 => &self.recent,
            Some(_) => &self.earlier,
        }
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, curve) in [
            ("never", &self.never),
            ("recent", &self.recent),
            ("earlier", &self.earlier),
        ] {
            if curve.len() > MAX_DISCOUNT_STEPS {
                return Err((
                    format!("fatigue.learned.{name}"),
                    format!("must have at most {MAX_DISCOUNT_STEPS} values"),
                ));
            }
            if let Some(i) = curve
                .iter()
                .position(|v| !(v.is_finite() && (0.0..=1.0).contains(v)))
            {
                return Err((
                    format!("fatigue.learned.{name}[{i}]"),
                    "must be a number from 0 to 1".into(),
                ));
            }
        }
        if !(self.recent_hours.is_finite() && self.recent_hours > 0.0) {
            return Err((
                "fatigue.learned.recent_hours".into(),
                "must be a number above 0".into(),
            ));
        }
        Ok(())
    }
}

impl Default for FatigueParams {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 0.6,
            saturation: 3.0,
            group_weight: 0.2,
            group_saturation: 10.0,
            learned: None,
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
        let now_ms = slate.input.now_ms;
        let penalty = match &self.0.learned {
            // An exponential or two per candidate: worth splitting from short lists.
            None => slate.costly_per_candidate_at(|_, c| {
                self.0.penalty(user.ignored_impressions(c.item_id))
                    + self
                        .0
                        .group_penalty(user.ignored_group(c.category_id, c.brand_id))
            }),
            Some(learned) => {
                // On the relevance scale: an item keeps the fitted share of what it has so far.
                let relevance = &slate.score;
                slate.costly_per_candidate_at(|i, c| {
                    let group = self
                        .0
                        .group_penalty(user.ignored_group(c.category_id, c.brand_id));
                    let ignored = user.ignored_impressions(c.item_id);
                    let item = if ignored > 0.0 {
                        let curve = learned.curve(user.engaged_at(c.item_id), now_ms);
                        -relevance[i].max(0.0) * (1.0 - LearnedDiscount::kept(curve, ignored))
                    } else {
                        0.0
                    };
                    item + group
                })
            }
        };
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
    fn a_learned_discount_keeps_the_fitted_share_of_relevance() {
        let learned = LearnedDiscount {
            never: vec![1.0, 0.5, 0.25],
            recent: vec![1.0, 1.0, 0.9],
            earlier: vec![1.0, 0.8],
            recent_hours: 24.0,
        };
        assert_eq!(LearnedDiscount::kept(&learned.never, 0.0), 1.0);
        assert_eq!(LearnedDiscount::kept(&learned.never, 1.5), 0.375);
        assert_eq!(LearnedDiscount::kept(&learned.never, 9.0), 0.25);
        assert_eq!(LearnedDiscount::kept(&[], 3.0), 1.0);

        let mut input = input();
        input.now_ms = 100 * HOUR_MS;
        let mut user = UserView::unknown(Consent::privacy_default());
        // Items 1, 2, 3 each ignored twice: 1 never engaged, 2 engaged an hour ago, 3 a week ago.
        user.ignored = vec![(1, 2.0), (2, 2.0), (3, 2.0)];
        user.engaged = vec![(2, 99 * HOUR_MS), (3, 100 * HOUR_MS - 7 * 24 * HOUR_MS)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        slate.add_component(Component::Relevance, ndarray::arr1(&[0.8, 0.8, 0.8]));
        let p = FatigueParams {
            learned: Some(learned),
            ..FatigueParams::default()
        };
        Fatigue(p).apply(&mut slate, &Deadline::none()).unwrap();
        let kept: Vec<f32> = slate
            .score
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect();
        assert_eq!(kept, vec![0.2, 0.72, 0.64]);
    }

    #[test]
    fn learned_discounts_are_validated() {
        let mut learned = LearnedDiscount {
            never: vec![1.0, 1.5],
            recent: vec![],
            earlier: vec![],
            recent_hours: 24.0,
        };
        assert_eq!(
            learned.validate().unwrap_err().0,
            "fatigue.learned.never[1]"
        );
        learned.never = vec![1.0; MAX_DISCOUNT_STEPS + 1];
        assert_eq!(learned.validate().unwrap_err().0, "fatigue.learned.never");
        learned.never = vec![1.0];
        learned.recent_hours = 0.0;
        assert_eq!(
            learned.validate().unwrap_err().0,
            "fatigue.learned.recent_hours"
        );
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

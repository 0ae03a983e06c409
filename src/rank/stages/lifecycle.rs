//! Lifecycle: where the user is in their relationship with the platform (new, active, silent,
//! churned; from activity, thresholds in the policy) decides how much to show and how.
//! - new: more popular and more varied items, because nothing is known yet;
//! - silent: fewer items and no repeated pushes of what was already shown;
//! - churned: a gentle return, a short list of popular, varied items, no flood.
//!
//! The stage is learned from activity, so with personalisation off it does not run.

use ndarray::Array1;
use serde::Deserialize;

use super::relevance::normalize;
use crate::rank::stage::{Cause, Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{
    Component, DataDimension, DimensionSet, LifecycleStage, Locale, ReasonCode,
};
use crate::rank::user::LifecycleThresholds;
use crate::time::DAY_MS;

/// What one lifecycle stage changes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageRules {
    /// Scales `suggested_k`.
    pub k_factor: f32,
    /// Caps `suggested_k`; 0 = no cap.
    pub max_k: usize,
    /// Boost for popularity (min-max normalised within the request) on the [0, 1] scale.
    pub popularity: f32,
    /// Scales the diversity weight.
    pub diversity_factor: f32,
    /// Penalty for items already shown within `repeat_days`.
    pub repeat_penalty: f32,
    pub repeat_days: f64,
}

impl Default for StageRules {
    /// Neutral: changes nothing.
    fn default() -> Self {
        Self {
            k_factor: 1.0,
            max_k: 0,
            popularity: 0.0,
            diversity_factor: 1.0,
            repeat_penalty: 0.0,
            repeat_days: 7.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleParams {
    pub enabled: bool,
    /// See [`LifecycleThresholds`] for the reasons behind these.
    pub new_for_days: u32,
    pub silent_after_days: u32,
    pub churned_after_days: u32,
    /// New users: popularity 0.15 and diversity ×1.5 give a first visit a broad, proven
    /// sample to react to.
    pub new: StageRules,
    /// Active users: neutral; the rest of the policy is tuned for them.
    pub active: StageRules,
    /// Silent users: half the items (×0.5) and a 0.4 penalty on anything shown in the last
    /// week: a quiet user is reminded, not pushed.
    pub silent: StageRules,
    /// Churned users: at most 10 items (×0.3), popular and varied (0.1, ×1.3), nothing
    /// already shown in the last month: a gentle return, no flood.
    pub churned: StageRules,
}

impl Default for LifecycleParams {
    fn default() -> Self {
        let t = LifecycleThresholds::default();
        Self {
            enabled: true,
            new_for_days: t.new_for_days,
            silent_after_days: t.silent_after_days,
            churned_after_days: t.churned_after_days,
            new: StageRules {
                popularity: 0.15,
                diversity_factor: 1.5,
                ..Default::default()
            },
            active: StageRules::default(),
            silent: StageRules {
                k_factor: 0.5,
                repeat_penalty: 0.4,
                repeat_days: 7.0,
                ..Default::default()
            },
            churned: StageRules {
                k_factor: 0.3,
                max_k: 10,
                popularity: 0.1,
                diversity_factor: 1.3,
                repeat_penalty: 0.4,
                repeat_days: 7.0,
            },
        }
    }
}

impl LifecycleParams {
    pub fn thresholds(&self) -> LifecycleThresholds {
        LifecycleThresholds {
            new_for_days: self.new_for_days,
            silent_after_days: self.silent_after_days,
            churned_after_days: self.churned_after_days,
        }
    }

    pub fn rules(&self, stage: LifecycleStage) -> &StageRules {
        match stage {
            LifecycleStage::New => &self.new,
            LifecycleStage::Active => &self.active,
            LifecycleStage::Silent => &self.silent,
            LifecycleStage::Churned => &self.churned,
        }
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.silent_after_days >= self.churned_after_days {
            return Err((
                "lifecycle.silent_after_days".into(),
                "must be below lifecycle.churned_after_days".into(),
            ));
        }
        for (name, r) in [
            ("new", &self.new),
            ("active", &self.active),
            ("silent", &self.silent),
            ("churned", &self.churned),
        ] {
            let field = |f: &str| format!("lifecycle.{name}.{f}");
            if !(r.k_factor.is_finite() && r.k_factor > 0.0 && r.k_factor <= 1.0) {
                return Err((field("k_factor"), "must be above 0 and at most 1".into()));
            }
            for (f, v) in [
                ("popularity", r.popularity),
                ("repeat_penalty", r.repeat_penalty),
            ] {
                if !(v.is_finite() && (0.0..=10.0).contains(&v)) {
                    return Err((field(f), "must be a number from 0 to 10".into()));
                }
            }
            if !(r.diversity_factor.is_finite() && (0.0..=10.0).contains(&r.diversity_factor)) {
                return Err((field("diversity_factor"), "must be from 0 to 10".into()));
            }
            if !(r.repeat_days.is_finite() && r.repeat_days > 0.0 && r.repeat_days <= 7.0) {
                return Err((
                    field("repeat_days"),
                    "must be above 0 and at most 7 (impression times are kept a week)".into(),
                ));
            }
        }
        Ok(())
    }
}

pub struct Lifecycle(pub LifecycleParams);

impl Stage for Lifecycle {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (input, user) = (slate.input, slate.user);
        if !user.consent.personalization {
            return Ok(());
        }
        let rules = self
            .0
            .rules(user.lifecycle(input.now_ms, &self.0.thresholds()));
        slate.k_factor *= rules.k_factor;
        if rules.max_k > 0 {
            slate.k_max = Some(slate.k_max.map_or(rules.max_k, |k| k.min(rules.max_k)));
        }
        slate.diversity_scale *= rules.diversity_factor;
        if rules.popularity > 0.0 {
            let pop: Array1<f32> = input.candidates.iter().map(|c| c.popularity).collect();
            // Equal popularity says nothing: no boost (normalize would give everyone 1).
            if pop.iter().any(|p| *p != pop[0]) {
                let boost = normalize(&pop) * rules.popularity;
                for (i, b) in boost.iter().enumerate() {
                    if *b >= rules.popularity / 2.0 {
                        slate.offer_cause(i, popular(*b, input.locale));
                    }
                }
                slate.add_component(Component::Popularity, boost);
            }
        }
        if rules.repeat_penalty > 0.0 && !user.shown.is_empty() {
            let since = input.now_ms - (rules.repeat_days * DAY_MS as f64) as i64;
            let penalty = slate.per_candidate(|c| {
                if user.shown_since(c.item_id, since) > 0 {
                    -rules.repeat_penalty
                } else {
                    0.0
                }
            });
            slate.add_component(Component::Repeat, penalty);
        }
        Ok(())
    }
}

fn popular(strength: f32, locale: Locale) -> Cause {
    Cause {
        code: ReasonCode::Trending,
        text: match locale {
            Locale::En => "Popular right now",
            Locale::ZhCn => "当下热门",
        }
        .into(),
        dimensions: DimensionSet::of([DataDimension::Trending]),
        strength,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, RankInput};
    use crate::rank::user::{SHOWN_TIMES, UserView};

    const DAY: i64 = crate::time::DAY_MS;

    fn run(
        first_seen_days_ago: i64,
        last_active_days_ago: i64,
    ) -> (Vec<f32>, f32, Option<usize>, f32) {
        let now = 400 * DAY;
        let input = RankInput {
            candidates: [(1, 10.0), (2, 0.0)]
                .map(|(item_id, popularity)| Candidate {
                    item_id,
                    popularity,
                    ..Default::default()
                })
                .to_vec(),
            now_ms: now,
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.first_seen_ms = Some(now - first_seen_days_ago * DAY);
        user.last_active_ms = Some(now - last_active_days_ago * DAY);
        let mut shown = [0; SHOWN_TIMES];
        shown[0] = ((now - DAY) / 1000) as u32;
        user.shown = vec![(2, shown)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Lifecycle(LifecycleParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        (
            slate.score.to_vec(),
            slate.k_factor,
            slate.k_max,
            slate.diversity_scale,
        )
    }

    #[test]
    fn each_stage_gets_its_own_rules() {
        // New: popular items first, more diversity.
        assert_eq!(run(2, 1), (vec![0.15, 0.0], 1.0, None, 1.5));
        // Active: nothing changes.
        assert_eq!(run(100, 1), (vec![0.0, 0.0], 1.0, None, 1.0));
        // Silent: half as many, nothing pushed again.
        assert_eq!(run(100, 20), (vec![0.0, -0.4], 0.5, None, 1.0));
        // Churned: a short, gentle list.
        let (score, k, max_k, div) = run(300, 90);
        assert_eq!((k, max_k, div), (0.3, Some(10), 1.3));
        assert!(score[0] > 0.0 && score[1] < 0.0);
    }

    #[test]
    fn rules_are_validated() {
        let mut p = LifecycleParams::default();
        p.silent.k_factor = 0.0;
        assert_eq!(p.validate().unwrap_err().0, "lifecycle.silent.k_factor");
    }
}

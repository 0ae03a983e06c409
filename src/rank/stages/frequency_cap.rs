//! The frequency cap (stage 1 of the avoidance chain: restraint; a policy's `[caps]`). An
//! item shown to the user at least `max_impressions` times within the last `window_hours` is
//! held back on that surface, whatever its relevance: repetition past a few showings is what
//! users describe as being flooded. Not to be confused with the list caps
//! (`select/list_caps.rs`), which limit how many of one category, brand or shop one list holds.
//!
//! The cap is a ceiling for items the user never engaged with: an item they clicked, carted,
//! favourited or bought before is one users come back to (a quarter of next views in
//! e-commerce logs are items seen before), so it is never held back here; fatigue restrains
//! it instead.
//!
//! Impressions are counted across surfaces (the user saw the item, wherever it was); the cap
//! that applies is the one set for the request's surface, else the `"*"` cap.

use serde::Deserialize;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::DropRule;
use crate::rank::user::SHOWN_TIMES;
use crate::time::HOUR_MS;

/// The longest window a cap may count over: impression times are kept for a week.
pub const MAX_WINDOW_HOURS: f64 = 7.0 * 24.0;

/// One surface's cap.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurfaceCap {
    /// The request's `surface`, or `"*"` for every surface without a cap of its own.
    pub surface: String,
    /// Held back once shown this many times in the window; at most 8.
    pub max_impressions: u32,
    pub window_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrequencyCapParams {
    pub enabled: bool,
    /// By default: six showings a day on any surface. A feed refreshed through the day can
    /// show a strong item morning, noon and evening, twice each, before it is rested.
    pub caps: Vec<SurfaceCap>,
}

impl Default for FrequencyCapParams {
    fn default() -> Self {
        Self {
            enabled: true,
            caps: vec![SurfaceCap {
                surface: "*".into(),
                max_impressions: 6,
                window_hours: 24.0,
            }],
        }
    }
}

impl FrequencyCapParams {
    /// The cap for a surface: its own, else the `"*"` one.
    pub fn for_surface(&self, surface: &str) -> Option<&SurfaceCap> {
        self.caps
            .iter()
            .find(|c| c.surface == surface)
            .or_else(|| self.caps.iter().find(|c| c.surface == "*"))
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, cap) in self.caps.iter().enumerate() {
            if cap.max_impressions == 0 || cap.max_impressions as usize > SHOWN_TIMES {
                return Err((
                    format!("caps.caps[{i}].max_impressions"),
                    format!("must be from 1 to {SHOWN_TIMES}"),
                ));
            }
            if !(cap.window_hours.is_finite()
                && cap.window_hours > 0.0
                && cap.window_hours <= MAX_WINDOW_HOURS)
            {
                return Err((
                    format!("caps.caps[{i}].window_hours"),
                    format!("must be above 0 and at most {MAX_WINDOW_HOURS}"),
                ));
            }
            if cap.surface.is_empty() {
                return Err((
                    format!("caps.caps[{i}].surface"),
                    "must name a surface or be \"*\"".into(),
                ));
            }
        }
        Ok(())
    }
}

pub struct FrequencyCap(pub FrequencyCapParams);

impl Stage for FrequencyCap {
    fn name(&self) -> &'static str {
        "frequency_cap"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (input, user) = (slate.input, slate.user);
        if user.shown.is_empty() {
            return Ok(());
        }
        let Some(cap) = self.0.for_surface(&input.surface) else {
            return Ok(());
        };
        let since = input.now_ms - (cap.window_hours * HOUR_MS as f64) as i64;
        let max = cap.max_impressions as usize;
        for (i, c) in input.candidates.iter().enumerate() {
            // A ceiling for what the user never responded to: an item they engaged with
            // before is one they come back to, restrained by fatigue's learned discount
            // instead.
            if user.engaged_at(c.item_id).is_none() && user.shown_since(c.item_id, since) >= max {
                slate.drop_candidate(i, DropRule::FrequencyCap);
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
    use crate::rank::user::UserView;

    const NOW_S: u32 = 1_800_000_000;

    fn times(ago_hours: &[u32]) -> [u32; SHOWN_TIMES] {
        let mut t = [0; SHOWN_TIMES];
        for (slot, h) in t.iter_mut().zip(ago_hours) {
            *slot = NOW_S - h * 3600;
        }
        t
    }

    fn run(params: FrequencyCapParams, surface: &str) -> Vec<Option<DropRule>> {
        let input = RankInput {
            candidates: (1..=3)
                .map(|item_id| Candidate {
                    item_id,
                    ..Default::default()
                })
                .collect(),
            now_ms: i64::from(NOW_S) * 1000,
            surface: surface.into(),
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        // Item 1: six times today. Item 2: six times, but half of them two days ago.
        user.shown = vec![
            (1, times(&[0, 1, 2, 3, 4, 5])),
            (2, times(&[0, 1, 2, 48, 49, 50])),
        ];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        FrequencyCap(params)
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        slate.dropped
    }

    #[test]
    fn an_item_shown_up_to_the_cap_within_the_window_is_held_back() {
        assert_eq!(
            run(FrequencyCapParams::default(), "home_feed"),
            vec![Some(DropRule::FrequencyCap), None, None]
        );
    }

    #[test]
    fn an_item_the_user_engaged_with_before_is_never_capped() {
        let input = RankInput {
            candidates: vec![Candidate {
                item_id: 1,
                ..Default::default()
            }],
            now_ms: i64::from(NOW_S) * 1000,
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.shown = vec![(1, times(&[0, 1, 2, 3, 4, 5, 6, 7]))];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        FrequencyCap(FrequencyCapParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.dropped, vec![Some(DropRule::FrequencyCap)]);
        user.engaged = vec![(1, i64::from(NOW_S - 9 * 3600) * 1000)];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        FrequencyCap(FrequencyCapParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.dropped, vec![None]);
    }

    #[test]
    fn a_surface_can_have_its_own_cap() {
        let mut p = FrequencyCapParams::default();
        p.caps.push(SurfaceCap {
            surface: "cart".into(),
            max_impressions: 3,
            window_hours: 72.0,
        });
        assert_eq!(
            run(p.clone(), "cart"),
            vec![
                Some(DropRule::FrequencyCap),
                Some(DropRule::FrequencyCap),
                None
            ]
        );
        assert_eq!(run(p, "home_feed")[1], None);
    }

    #[test]
    fn caps_are_validated() {
        let mut p = FrequencyCapParams::default();
        p.caps[0].max_impressions = 9;
        assert_eq!(p.validate().unwrap_err().0, "caps.caps[0].max_impressions");
        p.caps[0].max_impressions = 2;
        p.caps[0].window_hours = 24.0 * 8.0;
        assert_eq!(p.validate().unwrap_err().0, "caps.caps[0].window_hours");
    }
}

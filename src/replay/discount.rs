//! The fit of fatigue's impression discount (`[fatigue.learned]`): how the chance that a user
//! engages with a shown item changes with the impressions it already got without engagement,
//! separately for items the user never engaged with and for items engaged with recently or
//! earlier: impression discounting fitted from logs, as in Lee et al., KDD 2014 (LinkedIn).
//!
//! The fitting part is replayed through the same candidate generator and the same state code
//! as [`super::run`], showing the generator's own top-k (the identity arm: the exposure the
//! host already produces). At each decision, every shown item is one trial: its class (never
//! engaged, engaged within [`RECENT_HOURS`], earlier), its ignored impressions `n` as the
//! state counts them (rounded), and whether the user's next view is that item. The share kept
//! after `n` is the class's engagement rate at `n` over its rate at 0, with each rate shrunk
//! toward the previous step by [`PRIOR_TRIALS`] pseudo-trials (so thin evidence keeps the
//! curve flat rather than inventing a drop), and never rising with `n` (more ignoring never
//! makes an item more welcome). A class with fewer than [`MIN_BASE_TRIALS`] trials at 0 is
//! left unfitted (no discount).
//!
//! Nothing here looks past the events it is given: the caller passes the fitting part only.

use std::collections::HashMap;

use super::candidates::{Generator, Params as GeneratorParams};
use super::{Action, LogEvent, impression, state_event};
use crate::rank::stages::fatigue::{LearnedDiscount, MAX_DISCOUNT_STEPS};
use crate::state::{StateConfig, UserState};

/// An item engaged with less than this long ago is "recent": a day, one shopping errand.
pub const RECENT_HOURS: f64 = 24.0;
/// Pseudo-trials that pull each step's rate toward the step before.
pub const PRIOR_TRIALS: f64 = 50.0;
/// Trials a class needs at 0 ignored impressions before its curve is fitted.
pub const MIN_BASE_TRIALS: u64 = 200;
/// Steps fitted: 0 to 7 ignored impressions; the last holds beyond.
const STEPS: usize = 8;
const _: () = assert!(STEPS <= MAX_DISCOUNT_STEPS);

/// The counts behind one class's curve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trials {
    /// Per ignored-impression step: shown slots, and of them the ones viewed next.
    pub shown: [u64; STEPS],
    pub hits: [u64; STEPS],
}

impl Trials {
    /// The share kept after each step (empty when the evidence is too thin).
    pub fn curve(&self) -> Vec<f32> {
        if self.shown[0] < MIN_BASE_TRIALS || self.hits[0] == 0 {
            return Vec::new();
        }
        let base = self.hits[0] as f64 / self.shown[0] as f64;
        let mut rate = base;
        let mut kept = vec![1.0f32];
        for n in 1..STEPS {
            rate =
                (self.hits[n] as f64 + PRIOR_TRIALS * rate) / (self.shown[n] as f64 + PRIOR_TRIALS);
            let share = (rate / base).min(f64::from(*kept.last().expect("starts with 1")));
            kept.push(((share * 1000.0).round() / 1000.0) as f32);
        }
        // Trailing equal steps say nothing the last value does not.
        while kept.len() > 1 && kept[kept.len() - 1] == kept[kept.len() - 2] {
            kept.pop();
        }
        kept
    }
}

/// What the discount fit saw and learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiscountFit {
    pub never: Trials,
    pub recent: Trials,
    pub earlier: Trials,
}

impl DiscountFit {
    /// The learned discount, or `None` when no class had enough evidence.
    pub fn learned(&self) -> Option<LearnedDiscount> {
        let d = LearnedDiscount {
            never: self.never.curve(),
            recent: self.recent.curve(),
            earlier: self.earlier.curve(),
            recent_hours: RECENT_HOURS,
        };
        let learned_something = [&d.never, &d.recent, &d.earlier]
            .iter()
            .any(|c| c.len() > 1);
        learned_something.then_some(d)
    }
}

/// Replays `events` (time-ordered, the fitting part only) with the generator's own order and
/// counts the trials. `warmup` and `k` as in the replay.
pub fn fit(
    events: &[LogEvent],
    generator: &GeneratorParams,
    k: usize,
    warmup: usize,
) -> DiscountFit {
    let cfg = StateConfig::default();
    let recent_ms = (RECENT_HOURS * 3_600_000.0) as i64;
    let mut generator = Generator::new(generator.clone());
    let mut states: HashMap<u64, UserState> = HashMap::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut out = DiscountFit::default();
    for e in events {
        let history = seen.entry(e.user).or_default();
        let decide = e.action == Action::View && *history >= warmup;
        *history += 1;
        let state = states.entry(e.user).or_default();
        if decide {
            let proposals = generator.candidates(e.user);
            let view = state.view(e.at_ms, state.consent().apply_to(cfg.consent_default), &cfg);
            for p in proposals.iter().take(k) {
                let n = (view.ignored_impressions(p.item_id).round() as usize).min(STEPS - 1);
                let class = match view.engaged_at(p.item_id) {
                    None => &mut out.never,
                    Some(t) if e.at_ms - t < recent_ms => &mut out.recent,
                    Some(_) => &mut out.earlier,
                };
                class.shown[n] += 1;
                class.hits[n] += u64::from(p.item_id == e.item);
            }
            for p in proposals.iter().take(k) {
                // Impressions of the generator's own proposals are always well-formed.
                let _ = state.apply(&impression(&p.candidate(), e.at_ms), &cfg);
            }
        }
        let _ = state.apply(&state_event(e), &cfg);
        generator.observe(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_follows_the_rates_shrinks_thin_steps_and_never_rises() {
        let t = Trials {
            shown: [1000, 1000, 1000, 10, 1000, 0, 0, 0],
            hits: [100, 50, 60, 10, 80, 0, 0, 0],
        };
        let c = t.curve();
        let kept = |n: f32| LearnedDiscount::kept(&c, n);
        // Step 1: (50 + 50 · 0.1) / 1050 = 0.0524 → 0.524 of the base rate.
        assert_eq!(kept(0.0), 1.0);
        assert!((kept(1.0) - 0.524).abs() < 1e-3, "{c:?}");
        // Step 2 has a higher rate than step 1, but more ignoring never helps; step 3's ten
        // trials, all hits, cannot raise it either; step 4 (0.08) is above step 1 too.
        assert_eq!(kept(2.0), kept(1.0));
        assert_eq!(kept(3.0), kept(1.0));
        assert_eq!(kept(7.0), kept(1.0));
        // Trailing repeats say nothing: the curve stops at its last change.
        assert_eq!(c.len(), 2, "{c:?}");
    }

    #[test]
    fn thin_evidence_learns_nothing() {
        let mut t = Trials::default();
        t.shown[0] = MIN_BASE_TRIALS - 1;
        t.hits[0] = 10;
        assert!(t.curve().is_empty());
        let fit = DiscountFit {
            never: t,
            ..DiscountFit::default()
        };
        assert_eq!(fit.learned(), None);
    }

    #[test]
    fn items_shown_again_and_again_but_never_viewed_are_discounted() {
        // Ten users browse the same eleven items in turn, each viewing a new item every minute;
        // the generator keeps proposing what they viewed before, which they never view again.
        let mut events = Vec::new();
        for user in 1..=40u64 {
            for step in 0..30i64 {
                events.push(LogEvent {
                    user,
                    item: 1000 + (step as u64 * 7 + user) % 60,
                    category: 1,
                    action: Action::View,
                    at_ms: 1_700_000_000_000 + step * 60_000 + user as i64,
                    ..LogEvent::default()
                });
            }
        }
        events.sort_by_key(|e| e.at_ms);
        let fit = fit(&events, &GeneratorParams::default(), 10, 3);
        assert!(fit.never.shown[0] > 0);
        assert!(
            fit.never.shown[1..].iter().sum::<u64>() > 0,
            "items were shown again: {fit:?}"
        );
    }
}

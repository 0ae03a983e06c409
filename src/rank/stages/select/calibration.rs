//! Calibration (Steck, "Calibrated Recommendations", RecSys 2018): the list's category mix
//! follows the user's interest distribution instead of collapsing onto their top category.
//! A user who is 70% into running shoes and 30% into cookware should not get ten pairs of
//! shoes.
//!
//! The user's distribution `p` is their category interest tags, weights normalised (the same
//! tags the user sees and edits in their profile). The list's distribution `q` counts its
//! categories; `q̃ = (1 − α)·q + α·p` keeps the divergence finite. Each position adds
//! `−weight · ΔKL(p ‖ q̃)` to a candidate's objective: the change in divergence its category
//! would cause. This is Steck's greedy objective, made additive so it combines with MMR, DPP or
//! plain score order. Per position the cost is one pass over the user's tags; candidates only
//! look up their category's term.

use serde::Deserialize;

use crate::rank::user::{TagKind, UserView};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalibrationParams {
    /// λ: how much a change in divergence weighs against relevance. 0 (the default) turns
    /// calibration off: it is an option for platforms that want the mix to follow the user.
    pub weight: f32,
    /// α of `q̃`: Steck's 0.01 keeps the divergence finite without moving it noticeably.
    pub alpha: f32,
}

impl Default for CalibrationParams {
    fn default() -> Self {
        Self {
            weight: 0.0,
            alpha: 0.01,
        }
    }
}

impl CalibrationParams {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(self.weight.is_finite() && (0.0..=10.0).contains(&self.weight)) {
            return Err((
                "calibration.weight".into(),
                "must be a number from 0 to 10".into(),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha < 1.0) {
            return Err((
                "calibration.alpha".into(),
                "must be above 0 and below 1".into(),
            ));
        }
        Ok(())
    }
}

/// The user's category distribution, normalised, sorted by category; empty when the user has
/// no category tags.
pub fn interest_distribution(user: &UserView) -> Vec<(u64, f64)> {
    let mut p: Vec<(u64, f64)> = user
        .tags
        .iter()
        .filter(|t| t.kind == TagKind::Category && t.weight > 0.0 && t.id != 0)
        .map(|t| (t.id, t.weight as f64))
        .collect();
    p.sort_by_key(|t| t.0);
    p.dedup_by_key(|t| t.0);
    let total: f64 = p.iter().map(|t| t.1).sum();
    p.iter_mut().for_each(|t| t.1 /= total);
    p
}

/// The list's category counts against the user's distribution, position by position.
pub struct Calibrator {
    /// The user's distribution, sorted by category.
    p: Vec<(u64, f64)>,
    /// Items placed per category of `p`.
    placed: Vec<u32>,
    /// Items placed in all.
    total: u32,
    alpha: f64,
    weight: f32,
}

impl Calibrator {
    /// `None` when there is nothing to calibrate to, or no weight.
    pub fn new(user: &UserView, weight: f32, alpha: f32) -> Option<Self> {
        if weight <= 0.0 {
            return None;
        }
        let p = interest_distribution(user);
        (!p.is_empty()).then(|| Self {
            placed: vec![0; p.len()],
            p,
            total: 0,
            alpha: alpha as f64,
            weight,
        })
    }

    /// The slot a category's term is found at in [`Calibrator::terms`]: its place in `p`, or
    /// the last slot for every category outside it.
    pub fn slot(&self, category: u64) -> usize {
        self.p
            .binary_search_by_key(&category, |t| t.0)
            .unwrap_or(self.p.len())
    }

    /// How many slots [`Calibrator::terms`] fills.
    pub fn slots(&self) -> usize {
        self.p.len() + 1
    }

    /// `Σ p_c · ln q̃_c` for a list of `total` items with `placed` per category, plus `extra`
    /// item in category slot `extra` (none when `extra` is past `p`).
    fn log_fit(&self, total: u32, extra: usize) -> f64 {
        let (a, m) = (self.alpha, total as f64);
        self.p
            .iter()
            .zip(&self.placed)
            .enumerate()
            .map(|(slot, ((_, p), n))| {
                let n = *n as f64 + if slot == extra { 1.0 } else { 0.0 };
                let q = if m > 0.0 { n / m } else { 0.0 };
                p * ((1.0 - a) * q + a * p).ln()
            })
            .sum()
    }

    /// Per slot: the term a candidate of that slot's category gets at the next position,
    /// `−weight · ΔKL`, on the relevance scale.
    pub fn terms(&self, out: &mut Vec<f32>) {
        out.clear();
        // KL(p ‖ q̃) = Σ p ln p − Σ p ln q̃, so ΔKL = fit(now) − fit(after).
        let now = self.log_fit(self.total, usize::MAX);
        for slot in 0..self.slots() {
            let after = self.log_fit(self.total + 1, slot);
            out.push((-(self.weight as f64) * (now - after)) as f32);
        }
    }

    /// Records an item of this slot's category at the next position.
    pub fn place(&mut self, slot: usize) {
        if let Some(n) = self.placed.get_mut(slot) {
            *n += 1;
        }
        self.total += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::metrics::calibration_kl as kl;
    use crate::rank::types::Consent;
    use crate::rank::user::{Tag, TagSource};

    fn user(tags: &[(u64, f32)]) -> UserView {
        let mut u = UserView::unknown(Consent::privacy_default());
        u.tags = tags
            .iter()
            .map(|&(id, weight)| Tag {
                kind: TagKind::Category,
                id,
                label: String::new(),
                weight,
                source: TagSource::User,
            })
            .collect();
        u
    }

    #[test]
    fn terms_are_minus_the_change_in_divergence_the_metric_measures() {
        let u = user(&[(1, 0.7), (2, 0.3)]);
        let mut c = Calibrator::new(&u, 1.0, 0.01).unwrap();
        let p = interest_distribution(&u);
        let mut list = vec![];
        let mut terms = vec![];
        for category in [1, 1, 3, 2] {
            c.terms(&mut terms);
            for (slot, candidate) in [(0, 1u64), (1, 2), (2, 3)] {
                let mut after = list.clone();
                after.push(candidate);
                let expected = -(kl(&p, &after, 0.01) - kl(&p, &list, 0.01));
                assert!(
                    (terms[slot] as f64 - expected).abs() < 1e-5,
                    "{list:?}+{candidate}"
                );
            }
            c.place(c.slot(category));
            list.push(category);
        }
    }

    #[test]
    fn the_mix_is_pulled_toward_the_users_distribution() {
        let u = user(&[(1, 0.7), (2, 0.3)]);
        let mut c = Calibrator::new(&u, 1.0, 0.01).unwrap();
        let mut terms = vec![];
        for _ in 0..3 {
            c.place(c.slot(1));
        }
        c.terms(&mut terms);
        assert!(
            terms[1] > terms[0],
            "after three of category 1, category 2 is wanted"
        );
        assert!(
            terms[0] > terms[2],
            "category 1 still beats one the user never chose"
        );
        assert!(Calibrator::new(&user(&[]), 1.0, 0.01).is_none());
        assert!(Calibrator::new(&u, 0.0, 0.01).is_none());
    }
}

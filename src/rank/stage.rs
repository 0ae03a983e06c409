//! The stage contract: what every step of a ranking implements ([`Stage`]) and what it works
//! on ([`Slate`]), under a shared [`Deadline`]; what the selection places ([`Pick`]) and what
//! a boosting stage offers the explain stage ([`Cause`]).
//!
//! Stages depend on this module, never on the driver (`pipeline.rs`) that runs them: a stage
//! sees only the request, the user's view and the slate, so it can be unit-tested alone.

use std::borrow::Cow;
use std::time::Instant;

use ndarray::Array1;
use rayon::prelude::*;

use super::kernel::Parallelism;
use super::types::{
    Avoidance, Candidate, Component, DimensionSet, DropRule, RankInput, Reason, ReasonCode,
};
use super::user::UserView;

/// One step of a ranking.
///
/// Contract:
/// - `apply` reads the input and the user view, and writes only to the slate: a stage that
///   scores adds a component with [`Slate::add_component`]; a stage that filters calls
///   [`Slate::drop_candidate`]; a selecting stage fills [`Slate::picks`]; the explaining stage
///   fills [`Slate::reasons`].
/// - It never panics on valid input (the edge validates before the core runs).
/// - A stage whose work grows faster than linearly calls [`Deadline::check`] inside its loop, so
///   an expired deadline interrupts it promptly; the pipeline checks between stages.
pub trait Stage: Send + Sync {
    /// Stable name used in logs, traces and metrics.
    fn name(&self) -> &'static str;

    fn apply(&self, slate: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted>;
}

/// Which limit a deadline stands for, so a fail-open answer can say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The caller's `grpc-timeout`.
    Caller,
    /// The server's own per-request budget.
    Budget,
}

/// The moment by which a ranking must be done.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
    limit: Limit,
}

impl Deadline {
    /// No deadline: offline replay, benches, tests.
    pub fn none() -> Self {
        Self {
            at: None,
            limit: Limit::Budget,
        }
    }

    pub fn at(at: Instant, limit: Limit) -> Self {
        Self {
            at: Some(at),
            limit,
        }
    }

    pub fn instant(&self) -> Option<Instant> {
        self.at
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    pub fn expired(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    /// `Err` once the deadline has passed, naming the stage that noticed.
    pub fn check(&self, stage: &'static str) -> Result<(), Interrupted> {
        if self.at.is_none() {
            return Ok(());
        }
        self.check_at(stage, Instant::now())
    }

    /// [`Deadline::check`] against a time the caller has just read (one clock read serves
    /// the stage's timing and its deadline check).
    pub fn check_at(&self, stage: &'static str, now: Instant) -> Result<(), Interrupted> {
        if self.at.is_some_and(|at| now >= at) {
            Err(Interrupted {
                limit: self.limit,
                stage,
            })
        } else {
            Ok(())
        }
    }
}

/// A ranking stopped because its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline ({limit:?}) passed during stage {stage}")]
pub struct Interrupted {
    pub limit: Limit,
    pub stage: &'static str,
}

/// A candidate placed in the answer by the selection stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Position in the request's candidates.
    pub index: usize,
    /// The value the selector ordered by.
    pub score: f32,
    /// The selector's diversity term, already in `score`: MMR's or DPP's similarity term plus
    /// the repetition decay (`select/repetition.rs`).
    pub diversity: f32,
    /// The calibration term (the list's category mix against the user's), already in `score`.
    pub calibration: f32,
    /// How far the score was lowered so that scores never increase down the list (a list cap
    /// or an exploration slot placed a weaker item above), already in `score`.
    pub placement: f32,
    /// True when a candidate with a higher pre-selection score was passed over for this one.
    pub promoted: bool,
    /// Placed in an exploration slot: outside the user's usual categories.
    pub explored: bool,
}

impl Pick {
    /// A pick ordered by `score` alone, with no selector terms.
    pub fn plain(index: usize, score: f32) -> Self {
        Self {
            index,
            score,
            diversity: 0.0,
            calibration: 0.0,
            placement: 0.0,
            promoted: false,
            explored: false,
        }
    }
}

/// A boost's cause, offered to the explain stage: the strongest one names the item's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub code: ReasonCode,
    /// Borrowed when the words are fixed (most causes): a stage may offer a cause for
    /// thousands of candidates, and only the picks' causes ever become reasons.
    pub text: Cow<'static, str>,
    /// The data dimensions the cause relied on (all consented).
    pub dimensions: DimensionSet,
    /// The boost it gave; a stronger cause replaces a weaker one.
    pub strength: f32,
}

/// Candidates per task when a per-candidate rule is split: enough to amortise scheduling.
const PAR_MIN_CANDIDATES: usize = 512;

/// The working state of one ranking, shared by its stages.
pub struct Slate<'a> {
    pub input: &'a RankInput,
    pub user: &'a UserView,
    /// Per candidate: the hard rule that removed it, if any.
    pub dropped: Vec<Option<DropRule>>,
    /// Per candidate: the sum of the components added so far.
    pub score: Array1<f32>,
    /// Each component's column, kept only when the input asks to explain.
    pub components: Vec<(Component, Array1<f32>)>,
    /// The answer's order, filled by the selection stage.
    pub picks: Vec<Pick>,
    /// One reason per pick, filled by the explain stage.
    pub reasons: Vec<Reason>,
    /// Per candidate: the strongest boost's cause, if a boosting stage gave one.
    pub causes: Vec<Option<Cause>>,
    /// Scales `suggested_k` (overload and lifecycle rules lower it).
    pub k_factor: f32,
    /// Caps `suggested_k` (lifecycle rules: no flood for returning users).
    pub k_max: Option<usize>,
    /// Scales the diversity weight for this user (overload and lifecycle rules raise it).
    pub diversity_scale: f32,
    /// What the avoidance rules did, counted as they do it.
    pub avoidance: Avoidance,
    pub parallelism: Parallelism,
}

impl<'a> Slate<'a> {
    pub fn new(input: &'a RankInput, user: &'a UserView, parallelism: Parallelism) -> Self {
        let n = input.candidates.len();
        Self {
            input,
            user,
            dropped: vec![None; n],
            score: Array1::zeros(n),
            components: Vec::new(),
            picks: Vec::new(),
            reasons: Vec::new(),
            causes: vec![None; n],
            k_factor: 1.0,
            k_max: None,
            diversity_scale: 1.0,
            avoidance: Avoidance::default(),
            parallelism,
        }
    }

    pub fn len(&self) -> usize {
        self.input.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input.candidates.is_empty()
    }

    /// Adds a column to every candidate's score. An all-zero column is not recorded. A
    /// penalty is counted (in [`Slate::avoidance`]) for every surviving candidate it lowers.
    pub fn add_component(&mut self, component: Component, values: Array1<f32>) {
        debug_assert_eq!(values.len(), self.len());
        if values.iter().all(|v| *v == 0.0) {
            return;
        }
        if let Some(k) = Component::PENALTIES.iter().position(|c| *c == component) {
            let lowered = values
                .iter()
                .zip(&self.dropped)
                .filter(|(v, d)| **v < 0.0 && d.is_none())
                .count();
            self.avoidance.penalised[k] += lowered as u32;
        }
        self.score += &values;
        if self.input.explain {
            self.components.push((component, values));
        }
    }

    /// Removes a candidate by a hard rule; the first rule to remove it is the one reported
    /// (and counted).
    pub fn drop_candidate(&mut self, index: usize, rule: DropRule) {
        if self.dropped[index].is_none() {
            self.dropped[index] = Some(rule);
            if let Some(k) = DropRule::ALL.iter().position(|r| *r == rule) {
                self.avoidance.dropped[k] += 1;
            }
        }
    }

    /// Offers a cause for a candidate's boost; the strongest offered wins.
    pub fn offer_cause(&mut self, index: usize, cause: Cause) {
        let slot = &mut self.causes[index];
        if slot.as_ref().is_none_or(|c| cause.strength > c.strength) {
            *slot = Some(cause);
        }
    }

    /// One value per candidate from a few lookups, computed across the pool's threads when the
    /// list is long enough to pay for it ([`Parallelism::splits_lookups`]).
    pub fn per_candidate(&self, value: impl Fn(&Candidate) -> f32 + Sync) -> Array1<f32> {
        self.column(self.parallelism.splits_lookups(self.len()), |_, c| value(c))
    }

    /// One value per candidate that costs real arithmetic (a curve, an exponential), computed
    /// across the pool's threads from far shorter lists ([`Parallelism::splits_candidates`]);
    /// the value may also read the candidate's place in the slate's columns (its score so
    /// far, say).
    pub fn costly_per_candidate_at(
        &self,
        value: impl Fn(usize, &Candidate) -> f32 + Sync,
    ) -> Array1<f32> {
        self.column(self.parallelism.splits_candidates(self.len()), value)
    }

    fn column(&self, split: bool, value: impl Fn(usize, &Candidate) -> f32 + Sync) -> Array1<f32> {
        let candidates = &self.input.candidates;
        if split {
            let values: Vec<f32> = candidates
                .par_iter()
                .enumerate()
                .with_min_len(PAR_MIN_CANDIDATES)
                .map(|(i, c)| value(i, c))
                .collect();
            Array1::from(values)
        } else {
            candidates
                .iter()
                .enumerate()
                .map(|(i, c)| value(i, c))
                .collect()
        }
    }

    /// Drops every candidate for which `rule` names a hard rule. The rule (a few lookups) is
    /// evaluated across threads for long lists ([`Parallelism::splits_lookups`]); the drops
    /// are applied in upstream order either way.
    pub fn drop_by(&mut self, rule: impl Fn(&Candidate, &UserView) -> Option<DropRule> + Sync) {
        let (input, user) = (self.input, self.user);
        if self.parallelism.splits_lookups(input.candidates.len()) {
            // Only the drops come back, in upstream order: a pass over every candidate's
            // answer on this thread would cost about what the split saved.
            let drops: Vec<(usize, DropRule)> = input
                .candidates
                .par_iter()
                .enumerate()
                .with_min_len(PAR_MIN_CANDIDATES)
                .filter_map(|(i, c)| rule(c, user).map(|r| (i, r)))
                .collect();
            for (i, r) in drops {
                self.drop_candidate(i, r);
            }
            return;
        }
        for (i, c) in input.candidates.iter().enumerate() {
            if let Some(r) = rule(c, user) {
                self.drop_candidate(i, r);
            }
        }
    }

    pub fn is_dropped(&self, index: usize) -> bool {
        self.dropped[index].is_some()
    }

    /// Indices of the candidates no hard rule removed, in upstream order.
    pub fn survivors(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&i| self.dropped[i].is_none())
    }

    /// [`Slate::survivors`] collected, in one allocation of the slate's length (a filter's
    /// `collect` grows from nothing, reallocating as it goes).
    pub fn survivor_list(&self) -> Vec<usize> {
        let mut list = Vec::with_capacity(self.len());
        list.extend(self.survivors());
        list
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::rank::types::Consent;

    #[test]
    fn zero_components_are_not_recorded() {
        let input = RankInput {
            candidates: vec![Candidate::default(); 2],
            explain: true,
            ..Default::default()
        };
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        slate.add_component(Component::Fatigue, array![0.0, 0.0]);
        slate.add_component(Component::Relevance, array![1.0, 0.5]);
        assert_eq!(slate.components.len(), 1);
        assert_eq!(slate.score, array![1.0, 0.5]);
    }
}

//! The pipeline: a request runs through ordered [`Stage`]s that share one [`Slate`] and one
//! [`Deadline`].
//!
//! Scoring stages work on whole columns (one value per candidate) so that each is a single
//! vectorised pass; the selection stage then picks the final order; the explain stage writes
//! reasons. Every stage records what it did (a score component, a drop rule, a pick), and that
//! record becomes the response's breakdown, dropped list and reasons. This module must not
//! know any particular rule: rules live in `stages/`.

use std::time::{Duration, Instant};

use ndarray::Array1;
use rayon::prelude::*;

use super::stages::HardRules;
use super::types::{
    Avoidance, Candidate, Component, DimensionSet, DropRule, Dropped, LifecycleStage, RankInput,
    RankedItem, Ranking, Reason, ReasonCode,
};
use super::user::{LifecycleThresholds, UserView};

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
        if self.expired() {
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

/// Decides when a batch of vector work is split across the rayon pool's threads.
///
/// Splitting costs a few microseconds of coordination; it pays only when a pass does enough
/// multiply-adds. Below `min_work` the pass runs on the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub min_work: usize,
}

impl Parallelism {
    /// Never split: benches of the sequential path and small deployments.
    pub const SEQUENTIAL: Parallelism = Parallelism {
        min_work: usize::MAX,
    };

    /// What one candidate's pass through a per-candidate rule (a few lookups in the user's
    /// state) counts as, in multiply-adds, when deciding to split: with the default
    /// `min_work`, lists from 2048 candidates are scored across threads.
    pub const PER_CANDIDATE: usize = 32;

    pub fn splits(self, work: usize) -> bool {
        work >= self.min_work
    }

    /// Whether per-candidate rules over `n` candidates are split across threads.
    pub fn splits_candidates(self, n: usize) -> bool {
        self.splits(n.saturating_mul(Self::PER_CANDIDATE))
    }

    /// `out[i] = rows[i] · v` for every `d`-long row of `rows`.
    pub fn rows_dot(self, rows: &[f32], d: usize, v: &[f32], out: &mut [f32]) {
        if self.splits(rows.len()) && d > 0 {
            // Blocks of rows, so each task amortises its scheduling over real work.
            const BLOCK_ROWS: usize = 64;
            rows.par_chunks(d * BLOCK_ROWS)
                .zip(out.par_chunks_mut(BLOCK_ROWS))
                .for_each(|(rows, o)| dot_rows(rows, d, v, o));
        } else {
            dot_rows(rows, d, v, out);
        }
    }

    /// Scales every `d`-long row of `rows` to unit length (rows of zeros stay zero).
    pub fn normalize_rows(self, rows: &mut [f32], d: usize) {
        if d == 0 {
            return;
        }
        let unit = |row: &mut [f32]| {
            let mut norm = [0.0];
            dot_rows(row, row.len(), row, &mut norm);
            let norm = norm[0].sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|x| *x /= norm);
            }
        };
        if self.splits(rows.len()) {
            rows.par_chunks_mut(d).for_each(unit);
        } else {
            rows.chunks_mut(d).for_each(unit);
        }
    }
}

/// `out[i] = rows[i] · v` for each `d`-long row of `flat`: the inner loop of every
/// similarity pass.
///
/// Written with independent accumulators so that the compiler turns it into SIMD
/// multiply-adds with no serial dependency chain (a plain iterator sum stays scalar). On x86-64
/// CPUs with AVX2 and FMA (detected at run time, once per pass) a copy compiled for them is
/// used.
pub fn dot_rows(flat: &[f32], d: usize, v: &[f32], out: &mut [f32]) {
    debug_assert_eq!(v.len(), d);
    if d == 0 {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has just been checked for the features `dot_rows_avx2` needs.
        unsafe { dot_rows_avx2(flat, d, v, out) };
        return;
    }
    for (row, o) in flat.chunks_exact(d).zip(out.iter_mut()) {
        *o = dot_lanes::<8>(row, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_rows_avx2(flat: &[f32], d: usize, v: &[f32], out: &mut [f32]) {
    for (row, o) in flat.chunks_exact(d).zip(out.iter_mut()) {
        *o = dot_avx2(row, v);
    }
}

/// Four 8-wide fused multiply-add chains: enough to hide FMA latency on current x86 cores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (every load below): offsets stay below `n`, the length of both slices.
    let load = |p: *const f32, i: usize| unsafe { _mm256_loadu_ps(p.add(i)) };
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(load(pa, i + 8 * j), load(pb, i + 8 * j), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(pa, i), load(pb, i), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0_f32; 8];
    // SAFETY: `lanes` holds exactly eight f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum::<f32>()
        + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

/// The portable version: independent accumulators the compiler vectorises for the baseline
/// target.
fn dot_lanes<const LANES: usize>(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0_f32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A candidate placed in the answer by the selection stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Position in the request's candidates.
    pub index: usize,
    /// The value the selector ordered by.
    pub score: f32,
    /// The selector's similarity term (MMR's or DPP's), already in `score`.
    pub diversity: f32,
    /// The calibration term (the list's category mix against the user's), already in `score`.
    pub calibration: f32,
    /// How far the score was lowered so that scores never increase down the list (a hard cap
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
    pub text: String,
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

    /// One value per candidate, computed across the pool's threads when the list is long
    /// enough to pay for it.
    pub fn per_candidate(&self, value: impl Fn(&Candidate) -> f32 + Sync) -> Array1<f32> {
        let candidates = &self.input.candidates;
        if self.parallelism.splits_candidates(candidates.len()) {
            let values: Vec<f32> = candidates
                .par_iter()
                .with_min_len(PAR_MIN_CANDIDATES)
                .map(&value)
                .collect();
            Array1::from(values)
        } else {
            candidates.iter().map(value).collect()
        }
    }

    /// Drops every candidate for which `rule` names a hard rule. The rule is evaluated across
    /// threads for long lists; the drops are applied in upstream order either way.
    pub fn drop_by(&mut self, rule: impl Fn(&Candidate, &UserView) -> Option<DropRule> + Sync) {
        let (input, user) = (self.input, self.user);
        if self.parallelism.splits_candidates(input.candidates.len()) {
            let rules: Vec<Option<DropRule>> = input
                .candidates
                .par_iter()
                .with_min_len(PAR_MIN_CANDIDATES)
                .map(|c| rule(c, user))
                .collect();
            for (i, r) in rules.into_iter().enumerate() {
                if let Some(r) = r {
                    self.drop_candidate(i, r);
                }
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
}

/// A policy turned into an ordered list of stages, ready to run many requests.
pub struct Pipeline {
    /// e.g. "default@1": reported in every response.
    version: String,
    stages: Vec<Box<dyn Stage>>,
    /// The rules that remove candidates whatever else happens (explicit feedback, consent,
    /// sensitive categories); a fail-open answer applies them too, because they are the
    /// user's own words. `None` for the identity baseline.
    hard_rules: Option<HardRules>,
    lifecycle: LifecycleThresholds,
    parallelism: Parallelism,
}

impl Pipeline {
    pub fn new(
        version: String,
        stages: Vec<Box<dyn Stage>>,
        hard_rules: Option<HardRules>,
        lifecycle: LifecycleThresholds,
        parallelism: Parallelism,
    ) -> Self {
        Self {
            version,
            stages,
            hard_rules,
            lifecycle,
            parallelism,
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The user's lifecycle stage under this policy's thresholds; `None` when
    /// personalisation is off (the stage is learned from activity).
    pub fn lifecycle_of(&self, user: &UserView, now_ms: i64) -> Option<LifecycleStage> {
        user.consent
            .personalization
            .then(|| user.lifecycle(now_ms, &self.lifecycle))
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// Runs the stages. With personalisation off, the stages see only the user's explicit
    /// words and consent: whatever else the state holds cannot change the answer.
    pub fn run(
        &self,
        input: &RankInput,
        user: &UserView,
        deadline: &Deadline,
    ) -> Result<Ranking, Interrupted> {
        self.run_observed(input, user, deadline, None)
    }

    /// [`Pipeline::run`], telling `observe` how long each stage took (for metrics). A stage
    /// the deadline interrupts is not reported. Without an observer no clock is read.
    pub fn run_observed(
        &self,
        input: &RankInput,
        user: &UserView,
        deadline: &Deadline,
        mut observe: Option<&mut dyn FnMut(&'static str, Duration)>,
    ) -> Result<Ranking, Interrupted> {
        let explicit_only;
        let user = if user.consent.personalization {
            user
        } else {
            explicit_only = user.explicit_only();
            &explicit_only
        };
        let mut slate = Slate::new(input, user, self.parallelism);
        for stage in &self.stages {
            deadline.check(stage.name())?;
            let started = observe.is_some().then(Instant::now);
            stage.apply(&mut slate, deadline)?;
            if let (Some(observe), Some(started)) = (observe.as_mut(), started) {
                observe(stage.name(), started.elapsed());
            }
        }
        Ok(self.finish(slate))
    }

    /// The answer when the ranking cannot run in time: the upstream order, minus what the
    /// user's explicit feedback and consent remove. Linear in the candidates and never
    /// interrupted, so it is safe to compute after a deadline has passed.
    pub fn fail_open(&self, input: &RankInput, user: &UserView) -> Ranking {
        let mut slate = Slate::new(input, user, Parallelism::SEQUENTIAL);
        if let Some(rules) = &self.hard_rules {
            slate.drop_by(|c, u| rules.rule_for(c, u));
        }
        // Upstream selection has no deadline checks, so it cannot be interrupted.
        let _ = super::stages::order::Upstream.apply(&mut slate, &Deadline::none());
        self.finish(slate)
    }

    fn finish(&self, slate: Slate<'_>) -> Ranking {
        let input = slate.input;
        let items = slate
            .picks
            .iter()
            .enumerate()
            .map(|(n, pick)| {
                let candidate = &input.candidates[pick.index];
                let reason = slate.reasons.get(n).cloned().unwrap_or(Reason {
                    code: ReasonCode::Relevant,
                    text: String::new(),
                    dimensions: Default::default(),
                });
                let breakdown = if input.explain {
                    slate
                        .components
                        .iter()
                        .map(|(c, col)| (*c, col[pick.index]))
                        .chain(
                            [
                                (Component::Diversity, pick.diversity),
                                (Component::Calibration, pick.calibration),
                                (Component::Placement, pick.placement),
                            ]
                            .into_iter()
                            .filter(|(_, v)| *v != 0.0),
                        )
                        .collect()
                } else {
                    Vec::new()
                };
                RankedItem {
                    index: pick.index,
                    item_id: candidate.item_id,
                    score: pick.score,
                    reason,
                    breakdown,
                }
            })
            .collect::<Vec<_>>();
        let dropped = if input.explain {
            slate
                .dropped
                .iter()
                .enumerate()
                .filter_map(|(i, rule)| {
                    rule.map(|rule| {
                        let c = &input.candidates[i];
                        Dropped {
                            item_id: c.item_id,
                            rule,
                            detail: super::stages::drop_detail(rule, c, slate.user, input),
                        }
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut suggested_k = items.len();
        if suggested_k > 0 {
            let scaled = (suggested_k as f32 * slate.k_factor.clamp(0.0, 1.0)).round() as usize;
            suggested_k = scaled
                .max(1)
                .min(slate.k_max.unwrap_or(usize::MAX).max(1))
                .min(suggested_k);
        }
        Ranking {
            suggested_k,
            items,
            dropped,
            lifecycle: self.lifecycle_of(slate.user, input.now_ms),
            avoidance: slate.avoidance,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ndarray::array;

    use super::*;
    use crate::rank::types::Consent;

    struct Stall;
    impl Stage for Stall {
        fn name(&self) -> &'static str {
            "stall"
        }
        fn apply(&self, _: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
            while !deadline.expired() {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
    }

    struct Never;
    impl Stage for Never {
        fn name(&self) -> &'static str {
            "never"
        }
        fn apply(&self, _: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
            panic!("a stage after an expired deadline must not run")
        }
    }

    #[test]
    fn an_expired_deadline_stops_before_the_next_stage() {
        let p = Pipeline::new(
            "t@1".into(),
            vec![Box::new(Stall), Box::new(Never)],
            Some(HardRules::default()),
            LifecycleThresholds::default(),
            Parallelism::SEQUENTIAL,
        );
        let input = RankInput {
            candidates: vec![Candidate::default()],
            ..Default::default()
        };
        let user = UserView::unknown(Consent::privacy_default());
        let deadline = Deadline::at(Instant::now() + Duration::from_millis(5), Limit::Caller);
        let err = p.run(&input, &user, &deadline).unwrap_err();
        assert_eq!(
            err,
            Interrupted {
                limit: Limit::Caller,
                stage: "never"
            }
        );
    }

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

    #[test]
    fn dot_matches_the_textbook_sum_for_every_length() {
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 64, 130] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 - i as f32 * 0.25).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let close = |v: f32| (v - plain).abs() <= 1e-3 * plain.abs().max(1.0);
            let mut out = [f32::NAN];
            dot_rows(&a, len, &b, &mut out);
            assert!(close(out[0]), "{len}");
            assert!(close(dot_lanes::<8>(&a, &b)), "{len}");
        }
    }

    #[test]
    fn a_long_list_split_across_threads_ranks_exactly_as_on_one_thread() {
        // Long enough that every per-candidate rule and vector pass splits at min_work 1.
        let mut input = crate::workload::rank_input(3000, 16, 50);
        input.explain = true;
        // Every candidate in the answer, so that every score is compared.
        input.k = input.candidates.len();
        let user = crate::workload::user_with_history(&input);
        let policies = |p| crate::rank::Policies::build(&Default::default(), p).unwrap();
        let (one, split) = (
            policies(Parallelism::SEQUENTIAL),
            policies(Parallelism { min_work: 1 }),
        );
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let run = |p: &crate::rank::Policies| {
            pool.install(|| {
                p.get("default")
                    .unwrap()
                    .run(&input, &user, &Deadline::none())
                    .unwrap()
            })
        };
        assert_eq!(run(&one), run(&split));
    }

    #[test]
    fn parallel_and_sequential_vector_passes_agree() {
        let (n, d) = (300, 8);
        let rows: Vec<f32> = (0..n * d).map(|i| i as f32 * 0.01 - 1.0).collect();
        let v: Vec<f32> = (0..d).map(|j| j as f32 - 3.0).collect();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        Parallelism::SEQUENTIAL.rows_dot(&rows, d, &v, &mut a);
        Parallelism { min_work: 1 }.rows_dot(&rows, d, &v, &mut b);
        assert_eq!(a, b);
        let (mut x, mut y) = (rows.clone(), rows);
        Parallelism::SEQUENTIAL.normalize_rows(&mut x, d);
        Parallelism { min_work: 1 }.normalize_rows(&mut y, d);
        assert_eq!(x, y);
        for row in x.chunks(d) {
            let norm: f32 = row.iter().map(|v| v * v).sum();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }
}

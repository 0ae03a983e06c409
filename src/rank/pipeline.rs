//! The driver: a policy's ordered [`Stage`]s run over one [`Slate`] under one [`Deadline`],
//! and the slate becomes the [`Ranking`].
//!
//! Scoring stages work on whole columns (one value per candidate) so that each is a single
//! vectorised pass; the selection stage then picks the final order; the explain stage writes
//! reasons. Every stage records what it did (a score component, a drop rule, a pick), and that
//! record becomes the response's breakdown, dropped list and reasons.
//!
//! This module sits above the stages and knows no particular rule: the policy
//! (`policy.rs`) gives it the stages to run, the stages of a fail-open answer, and the words
//! for a dropped candidate. The pipeline only runs what it is given.

use std::time::{Duration, Instant};

use super::kernel::Parallelism;
use super::stage::{Deadline, Interrupted, Slate, Stage};
use super::types::{
    Candidate, Component, DropRule, Dropped, LifecycleStage, RankInput, RankedItem, Ranking,
    Reason, ReasonCode,
};
use super::user::{LifecycleThresholds, UserView};

/// Plain words for why a candidate was dropped, shown only when a request asks to explain.
pub type DropDetail = fn(DropRule, &Candidate, &UserView, &RankInput) -> String;

/// A policy turned into an ordered list of stages, ready to run many requests.
pub struct Pipeline {
    /// e.g. "default@1": reported in every response.
    version: String,
    stages: Vec<Box<dyn Stage>>,
    /// The stages of a fail-open answer, run with no deadline: each must be linear in the
    /// candidates and never check the deadline (for a policy: the rules that hold whatever
    /// happens, then the upstream order).
    fallback: Vec<Box<dyn Stage>>,
    /// Words for a dropped candidate; without it, the detail is empty.
    drop_detail: Option<DropDetail>,
    lifecycle: LifecycleThresholds,
    parallelism: Parallelism,
    /// Every stage's cost is bounded by the request's size: no stage waits for a lock, I/O or
    /// another thread. The built-in stages are; a stage added in code may not be, so a
    /// pipeline is taken as bounded only when its builder says so ([`Pipeline::bounded`]).
    bounded: bool,
}

impl Pipeline {
    pub fn new(
        version: String,
        stages: Vec<Box<dyn Stage>>,
        fallback: Vec<Box<dyn Stage>>,
        lifecycle: LifecycleThresholds,
        parallelism: Parallelism,
    ) -> Self {
        Self {
            version,
            stages,
            fallback,
            drop_detail: None,
            lifecycle,
            parallelism,
            bounded: false,
        }
    }

    /// Declares that every stage's cost is bounded by the request's size (it never waits for
    /// a lock, I/O or another thread): the policies built from the built-in stages are. The
    /// engine may then run a small ranking where the call is instead of on the ranking pool,
    /// since it will finish soon after its deadline however it goes.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Whether every stage's cost is bounded by the request's size ([`Pipeline::bounded`]).
    pub fn is_bounded(&self) -> bool {
        self.bounded
    }

    /// Says why each dropped candidate was dropped, in these words, when a request asks to
    /// explain.
    pub fn with_drop_detail(mut self, detail: DropDetail) -> Self {
        self.drop_detail = Some(detail);
        self
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
        observe: Option<&mut dyn FnMut(&'static str, Duration)>,
    ) -> Result<Ranking, Interrupted> {
        let explicit_only;
        let user = if user.consent.personalization {
            user
        } else {
            explicit_only = user.explicit_only();
            &explicit_only
        };
        let mut slate = Slate::new(input, user, self.parallelism);
        let Some(observe) = observe else {
            for stage in &self.stages {
                deadline.check(stage.name())?;
                stage.apply(&mut slate, deadline)?;
            }
            return Ok(self.finish(slate));
        };
        // One clock read per boundary between stages: the end of one stage's time is the
        // start of the next one's, and the deadline is checked against it.
        let mut started = Instant::now();
        for stage in &self.stages {
            deadline.check_at(stage.name(), started)?;
            stage.apply(&mut slate, deadline)?;
            let ended = Instant::now();
            observe(stage.name(), ended - started);
            started = ended;
        }
        Ok(self.finish(slate))
    }

    /// The answer when the ranking cannot run in time: the fallback stages' (for a policy,
    /// the upstream order minus what the user's explicit feedback and consent remove). Linear
    /// in the candidates and never interrupted, so it is safe to compute after a deadline has
    /// passed.
    pub fn fail_open(&self, input: &RankInput, user: &UserView) -> Ranking {
        let mut slate = Slate::new(input, user, Parallelism::SEQUENTIAL);
        for stage in &self.fallback {
            // No deadline, so no fallback stage can be interrupted.
            let _ = stage.apply(&mut slate, &Deadline::none());
        }
        self.finish(slate)
    }

    fn finish(&self, mut slate: Slate<'_>) -> Ranking {
        let input = slate.input;
        // The reasons move into the items (one per pick, in order), not copied.
        let mut reasons = std::mem::take(&mut slate.reasons).into_iter();
        let items = slate
            .picks
            .iter()
            .map(|pick| {
                let candidate = &input.candidates[pick.index];
                let reason = reasons.next().unwrap_or(Reason {
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
                            detail: self
                                .drop_detail
                                .map(|words| words(rule, c, slate.user, input))
                                .unwrap_or_default(),
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

    use super::*;
    use crate::rank::stage::Limit;
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
            Vec::new(),
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

    /// The ranking of `input` by the default policy on one thread without splitting, and on a
    /// two-thread pool splitting above `min_work`.
    fn one_and_split(input: &RankInput, min_work: usize) -> (Ranking, Ranking) {
        let user = crate::workload::user_with_history(input);
        let run = |parallelism, threads| {
            let policies = crate::rank::Policies::build(&Default::default(), parallelism).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                policies
                    .get("default")
                    .unwrap()
                    .run(input, &user, &Deadline::none())
                    .unwrap()
            })
        };
        (
            run(Parallelism::SEQUENTIAL, 1),
            run(Parallelism { min_work }, 2),
        )
    }

    /// Same order, same reasons, and every score and breakdown value the same to the bit
    /// (`==` would let -0.0 pass for 0.0).
    fn assert_identical(one: &Ranking, split: &Ranking) {
        assert_eq!(one, split);
        let bits = |r: &Ranking| -> Vec<Vec<u32>> {
            r.items
                .iter()
                .map(|i| {
                    std::iter::once(i.score.to_bits())
                        .chain(i.breakdown.iter().map(|(_, v)| v.to_bits()))
                        .collect()
                })
                .collect()
        };
        assert_eq!(bits(one), bits(split));
    }

    #[test]
    fn a_long_list_split_across_threads_ranks_exactly_as_on_one_thread() {
        // Long enough that every per-candidate rule and vector pass splits at min_work 1.
        let mut input = crate::workload::rank_input(3000, 16, 50);
        input.explain = true;
        // Every candidate in the answer, so that every score is compared.
        input.k = input.candidates.len();
        let (one, split) = one_and_split(&input, 1);
        assert_identical(&one, &split);
    }

    #[test]
    fn twenty_thousand_candidates_split_at_the_default_threshold_rank_as_on_one_thread() {
        let min_work = crate::config::RankSettings::default().parallel_min_work;
        // The answer's k at most 1,000: the greedy head and a long tail.
        for k in [20, 1000] {
            let mut input = crate::workload::rank_input(20_000, 64, k);
            input.explain = true;
            let (one, split) = one_and_split(&input, min_work);
            assert_eq!(one.items.len(), (k as usize).min(one.items.len()));
            assert_identical(&one, &split);
        }
    }

    #[test]
    fn short_lists_forced_to_split_rank_as_on_one_thread() {
        for n in [1, 2, 5, 100, 700] {
            let mut input = crate::workload::rank_input(n, 8, 20);
            input.explain = true;
            let (one, split) = one_and_split(&input, 1);
            assert_identical(&one, &split);
        }
    }
}

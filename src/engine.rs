//! The engine runs rankings: it picks the policy's pipeline, fixes the deadline (the caller's or
//! the server's budget, whichever is sooner), admits the call against the in-flight limit, and
//! runs the ranking where its size says: a typical one (tens of µs, below the size at which
//! anything would split across threads) of a built-in policy right on the calling task, since a
//! hand-off to another thread costs more than the work; a large one, or one of a pipeline with
//! stages added in code, on the rayon pool through a oneshot channel, so that nothing that can
//! take milliseconds runs on a tokio worker. When the answer cannot come in time, or the
//! in-flight limit is reached, or a stage fails, it fails open: the upstream order, minus what
//! the user's explicit feedback and consent remove, marked degraded. Strict callers get an error instead.
//!
//! It holds only what ranking needs: the policies in force (swapped whole on a reload), the
//! pool, the in-flight limit and budget, the store it reads the user's view from, the catalog
//! it reads the complement categories of purchases from, and the metrics it records. It
//! builds none of them ([`crate::app`] does, and hands the same store, catalog and audit log
//! to the services that need them directly), and it audits nothing: an audited reload is
//! `app::Reloader`.
//!
//! Knows tokio and rayon; must not know tonic or prost (the edge converts). Depends on `rank`,
//! `state`, `catalog`, `metrics` and `config`; nothing below it imports it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, oneshot};

use crate::catalog::Catalog;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::rank::policy::DEFAULT_POLICY;
use crate::rank::stages::cooling_off;
use crate::rank::{
    Avoidance, Component, Deadline, DimensionSet, DropRule, Interrupted, LifecycleStage, Limit,
    Parallelism, Pipeline, Policies, Policy, RankInput, Ranking, UserView,
};
use crate::state::{StateError, UserKey, UserStore};

/// One ranking to run.
#[derive(Debug, Clone)]
pub struct RankCall {
    pub user_id: String,
    /// Empty = default.
    pub policy: String,
    pub input: RankInput,
    /// The request's consent override.
    pub denied: DimensionSet,
    pub personalization_off: bool,
    /// Time left on the caller's deadline (`grpc-timeout`), if it set one.
    pub caller_timeout: Option<Duration>,
    /// Errors instead of fail-open answers.
    pub strict: bool,
}

/// Why an answer is the upstream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    Deadline,
    Budget,
    Overload,
    Internal,
    /// The user's state could not be read (its backend is down): no personal rule can be
    /// trusted, so the answer is the upstream order.
    State,
}

impl Degraded {
    fn from_limit(limit: Limit) -> Self {
        match limit {
            Limit::Caller => Degraded::Deadline,
            Limit::Budget => Degraded::Budget,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Budget => "budget",
            Self::Overload => "overload",
            Self::Internal => "internal",
            Self::State => "state",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ranking: Ranking,
    /// `name@version` of the policy.
    pub policy_version: String,
    pub degraded: Option<Degraded>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RankError {
    #[error("unknown policy {name:?}; known: {known}")]
    UnknownPolicy { name: String, known: String },
    /// Only for strict calls: the deadline or budget passed.
    #[error("ranking did not finish within the {0:?} limit")]
    DeadlineExceeded(Degraded),
    /// Only for strict calls: too many rankings in flight.
    #[error("too many rankings in flight")]
    Overloaded,
    /// Only for strict calls: a stage failed.
    #[error("ranking failed: {0}")]
    Internal(String),
    /// Only for strict calls: the user's state could not be read.
    #[error("{0}")]
    State(String),
}

/// Running totals of what the avoidance rules did, for metrics: candidates removed per hard
/// rule and lowered per penalty, over every ranking (fail-open answers included: their hard
/// rules count too).
#[derive(Debug, Default)]
pub struct AvoidanceTotals {
    pub rankings: AtomicU64,
    dropped: [AtomicU64; DropRule::ALL.len()],
    penalised: [AtomicU64; Component::PENALTIES.len()],
}

impl AvoidanceTotals {
    fn add(&self, a: &Avoidance) {
        self.rankings.fetch_add(1, Ordering::Relaxed);
        for (total, n) in self.dropped.iter().zip(a.dropped) {
            if n > 0 {
                total.fetch_add(u64::from(n), Ordering::Relaxed);
            }
        }
        for (total, n) in self.penalised.iter().zip(a.penalised) {
            if n > 0 {
                total.fetch_add(u64::from(n), Ordering::Relaxed);
            }
        }
    }

    pub fn dropped_by(&self, rule: DropRule) -> u64 {
        DropRule::ALL
            .iter()
            .position(|r| *r == rule)
            .map_or(0, |i| self.dropped[i].load(Ordering::Relaxed))
    }

    pub fn penalised_by(&self, component: Component) -> u64 {
        Component::PENALTIES
            .iter()
            .position(|c| *c == component)
            .map_or(0, |i| self.penalised[i].load(Ordering::Relaxed))
    }
}

pub struct Engine {
    /// Swapped whole on a reload: a ranking keeps the pipeline it started with, the next one
    /// takes the new set; nobody waits.
    policies: ArcSwap<Policies>,
    /// How reloaded policies split vector work (a setting that needs a restart).
    parallelism: Parallelism,
    avoidance: AvoidanceTotals,
    pool: Arc<rayon::ThreadPool>,
    inflight: Arc<Semaphore>,
    /// The semaphore's size, to report how many permits are taken.
    max_inflight: usize,
    budget: Duration,
    /// Where rankings report their size, stage timings and fail-open reasons.
    metrics: Arc<Metrics>,
    /// Where a ranking reads the user's view (and notes the data dimensions it used).
    store: Arc<UserStore>,
    /// Where a ranking reads the complement categories of what the user bought.
    catalog: Arc<Catalog>,
}

/// Below this much work (candidates × embedding width, each candidate counting at least
/// [`Parallelism::PER_CANDIDATE`]) a ranking of a bounded pipeline runs where the call is. It is
/// a quarter of the default `rank.parallel_min_work` (under which no pass splits across
/// threads anyway), so that no ranking run there takes a millisecond: the largest, 512
/// candidates at 32 dimensions with DPP and k = 100, took about 0.7 ms in the scaling bench.
/// N = 100 with 64-dim embeddings is 6,400; N = 1,000 with any embedding goes to the pool.
pub const INLINE_MAX_WORK: usize = 16_384;

/// What the pool sends back.
type JobResult = Result<Result<Ranking, Interrupted>, String>;

/// What an engine works with, built by the composition root ([`crate::app`]): the engine
/// builds none of it.
pub struct Parts {
    /// The policies to start with (built from the configuration, plus any added in code).
    pub policies: Policies,
    pub store: Arc<UserStore>,
    pub catalog: Arc<Catalog>,
    /// Where rankings run.
    pub pool: Arc<rayon::ThreadPool>,
    pub metrics: Arc<Metrics>,
}

/// The built-in policies plus those `configured`, or the setting at fault.
pub fn build_policies(
    configured: &std::collections::BTreeMap<String, Policy>,
    parallelism: Parallelism,
) -> Result<Policies, ConfigError> {
    Policies::build(configured, parallelism).map_err(|e| ConfigError {
        setting: e.field,
        message: e.message,
    })
}

impl Engine {
    /// An engine over `parts`, with the deadline, in-flight limit and parallelism of
    /// `config.rank`.
    pub fn new(config: &Config, parts: Parts) -> Self {
        Self {
            policies: ArcSwap::from_pointee(parts.policies),
            parallelism: config.parallelism(),
            avoidance: AvoidanceTotals::default(),
            store: parts.store,
            pool: parts.pool,
            inflight: Arc::new(Semaphore::new(config.rank.max_inflight)),
            max_inflight: config.rank.max_inflight,
            budget: Duration::from_millis(config.rank.budget_ms),
            metrics: parts.metrics,
            catalog: parts.catalog,
        }
    }

    /// Rankings in flight now (queued or running), and the most allowed (`rank.max_inflight`).
    pub fn inflight(&self) -> (usize, usize) {
        let taken = self
            .max_inflight
            .saturating_sub(self.inflight.available_permits());
        (taken, self.max_inflight)
    }

    /// `(name, name@version)` of each policy in force.
    pub fn policy_versions(&self) -> Vec<(String, String)> {
        let policies = self.policies.load();
        policies
            .names()
            .filter_map(|name| {
                let version = policies.get(name)?.version().to_owned();
                Some((name.to_owned(), version))
            })
            .collect()
    }

    /// Replaces the policies with those `configured` (plus the built-in ones) for every
    /// ranking that starts from now on, and returns the versions now in force; rankings in
    /// flight finish with the pipelines they started with. On an invalid policy nothing
    /// changes. Policies added in code ([`Policies::insert`]) are not kept. (Auditing the
    /// reload is the caller's: see `app::Reloader`.)
    pub fn replace_policies(
        &self,
        configured: &std::collections::BTreeMap<String, Policy>,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        // Built before the swap, so a ranking never waits for a reload.
        let policies = build_policies(configured, self.parallelism)?;
        self.policies.store(Arc::new(policies));
        Ok(self.policy_versions())
    }

    /// The policies in force now (a reload may replace them at any time).
    pub fn policies(&self) -> Arc<Policies> {
        self.policies.load_full()
    }

    /// The user's lifecycle stage under the default policy's thresholds (for the profile);
    /// `None` with personalisation off.
    pub fn lifecycle(&self, user: &UserView, now_ms: i64) -> Option<LifecycleStage> {
        self.policies
            .load()
            .get(DEFAULT_POLICY)
            .and_then(|p| p.lifecycle_of(user, now_ms))
    }

    /// The cooling-off windows in force for the user under the default policy (for the
    /// profile).
    pub fn cooling_off(&self, user: &UserView, now_ms: i64) -> Vec<cooling_off::Window> {
        self.policies
            .load()
            .settings(DEFAULT_POLICY)
            .map_or_else(Vec::new, |p| {
                cooling_off::windows(&p.cooling_off, user, now_ms)
            })
    }

    /// What the avoidance rules have done since the engine started.
    pub fn avoidance(&self) -> &AvoidanceTotals {
        &self.avoidance
    }

    /// The deadline of a call starting at `start`: the sooner of the caller's and the
    /// server's budget. From the caller's, a reserve is kept to build and send the fail-open
    /// answer so that it arrives before the caller (and tonic's own grpc-timeout handling)
    /// gives up: a tenth of the time, at least 1 ms and at most 20 ms, never over half.
    fn deadline(&self, start: Instant, caller: Option<Duration>) -> Deadline {
        match caller {
            Some(t) if t < self.budget => {
                Deadline::at(start + (t - fail_open_reserve(t)), Limit::Caller)
            }
            _ => Deadline::at(start + self.budget, Limit::Budget),
        }
    }

    pub async fn rank(&self, call: RankCall) -> Result<Outcome, RankError> {
        let key = self.store.key(&call.user_id);
        self.metrics.rank_candidates(call.input.candidates.len());
        let outcome = self.rank_inner(call, key).await;
        if let Ok(o) = &outcome {
            if let Some(why) = o.degraded {
                self.metrics.degraded(why.name());
            }
            self.avoidance.add(&o.ranking.avoidance);
            let used = o.ranking.items.iter().fold(DimensionSet::EMPTY, |d, item| {
                d.union(item.reason.dimensions)
            });
            if !used.is_empty() {
                self.store.note_used(key, used);
            }
        }
        outcome
    }

    async fn rank_inner(&self, call: RankCall, key: UserKey) -> Result<Outcome, RankError> {
        let policies = self.policies.load();
        let pipeline = policies
            .get(&call.policy)
            .ok_or_else(|| RankError::UnknownPolicy {
                name: call.policy.clone(),
                known: policies.names().collect::<Vec<_>>().join(", "),
            })?
            .clone();
        drop(policies);
        let deadline = self.deadline(Instant::now(), call.caller_timeout);
        // The user's view is read before scoring (from memory, or the backend if the user is
        // not in memory), within the deadline: without it no personal rule can be trusted.
        let read = self.store.view(
            key,
            call.input.now_ms,
            call.denied,
            call.personalization_off,
        );
        let user = match deadline.instant() {
            Some(at) => tokio::time::timeout_at(at.into(), read)
                .await
                .unwrap_or_else(|_| Err(StateError::Unavailable("reading state timed out".into()))),
            None => read.await,
        };
        let user = match user {
            Ok(mut user) => {
                self.complements_of_purchases(&mut user);
                Arc::new(user)
            }
            Err(e) => {
                tracing::warn!(error = %e, "user state unavailable; failing open");
                let unknown = UserView::unknown(self.store.config().consent_default);
                return self.fail_open(&pipeline, &call, Degraded::State, &unknown);
            }
        };
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            return self.fail_open(&pipeline, &call, Degraded::Overload, &user);
        };

        if self.runs_inline(&pipeline, &call.input) {
            // Where the call is: a hand-off would cost more than the ranking (see
            // `runs_inline`). The result is the same as the pool's, caught panics included.
            let (result, stages) = run_ranking(&pipeline, &call, &user, &deadline);
            drop(permit);
            let outcome = self.settle(&pipeline, &call, &user, &deadline, Some(Ok(result)));
            self.metrics.stages(&stages);
            return outcome;
        }

        let call = Arc::new(call);
        let (tx, rx) = oneshot::channel::<JobResult>();
        let (job_call, job_pipeline, job_user) = (call.clone(), pipeline.clone(), user.clone());
        let metrics = self.metrics.clone();
        let queued_at = Instant::now();
        self.pool.spawn(move || {
            let queued = queued_at.elapsed();
            let (result, stages) = run_ranking(&job_pipeline, &job_call, &job_user, &deadline);
            // The work is done: the slot is free before the answer leaves, so a client that
            // sends its next request as soon as it hears back never finds it still taken.
            drop(permit);
            // The receiver is gone when the caller gave up; nothing to do then.
            let _ = tx.send(result);
            // After the answer has left: metrics never delay it.
            metrics.rank_queued(queued);
            metrics.stages(&stages);
        });

        let outcome = match deadline.instant() {
            Some(at) => tokio::time::timeout_at(at.into(), rx).await.ok(),
            None => Some(rx.await),
        };
        self.settle(&pipeline, &call, &user, &deadline, outcome)
    }

    /// Whether a ranking runs where the call is rather than on the ranking pool: when its
    /// pipeline is bounded (every stage's cost follows the request's size: the built-in
    /// policies) and the request is small ([`INLINE_MAX_WORK`], below the size at which any
    /// pass would split across threads), so the pool would bring nothing but the hand-off. That hand-off was measured
    /// at 37 µs per call at saturation and 130-170 µs at 300 calls/s (wake-ups, and idle pool
    /// threads spinning before they sleep), for a ranking of N = 100 that costs about 20 µs.
    ///
    /// What it gives up: the caller's task cannot answer while the ranking runs. A bounded
    /// ranking checks the deadline between stages, so one that overruns still fails open, a
    /// stage's time late at most (tens of µs at these sizes), and a panic is caught here as
    /// on the pool. A pipeline with stages added in code (which may wait on anything) always
    /// goes to the pool, where the deadline is answered whatever the stage does.
    fn runs_inline(&self, pipeline: &Pipeline, input: &RankInput) -> bool {
        let d = input.embeddings.as_ref().map_or(0, |e| e.ncols());
        let work = input
            .candidates
            .len()
            .saturating_mul(d.max(Parallelism::PER_CANDIDATE));
        pipeline.is_bounded() && work < self.parallelism.min_work.min(INLINE_MAX_WORK)
    }

    /// The answer from what the ranking gave: `None` when the deadline passed first.
    fn settle(
        &self,
        pipeline: &Pipeline,
        call: &RankCall,
        user: &UserView,
        deadline: &Deadline,
        outcome: Option<Result<JobResult, oneshot::error::RecvError>>,
    ) -> Result<Outcome, RankError> {
        match outcome {
            Some(Ok(Ok(Ok(ranking)))) => Ok(Outcome {
                ranking,
                policy_version: pipeline.version().to_owned(),
                degraded: None,
            }),
            Some(Ok(Ok(Err(interrupted)))) => self.fail_open(
                pipeline,
                call,
                Degraded::from_limit(interrupted.limit),
                user,
            ),
            None => self.fail_open(pipeline, call, Degraded::from_limit(deadline.limit()), user),
            Some(Ok(Err(panic))) => {
                tracing::error!(policy = pipeline.version(), %panic, "ranking stage panicked");
                self.fail_open(pipeline, call, Degraded::Internal, user)
            }
            Some(Err(_)) => {
                tracing::error!("ranking job was dropped without an answer");
                self.fail_open(pipeline, call, Degraded::Internal, user)
            }
        }
    }

    /// Looks up the catalog's complement categories of the items the user bought (at most
    /// the store's last purchases, so a few lookups), for the complements stage.
    fn complements_of_purchases(&self, user: &mut UserView) {
        if self.catalog.is_empty() || user.purchases.is_empty() {
            return;
        }
        let mut found: Vec<(u64, Vec<u64>)> = user
            .purchases
            .iter()
            .filter_map(|p| Some((p.item_id, self.catalog.complements_of(p.item_id)?)))
            .collect();
        found.sort_unstable_by_key(|(item, _)| *item);
        found.dedup_by_key(|(item, _)| *item);
        user.catalog_complements = found;
    }

    /// The upstream order with the hard rules of `user` applied, or the strict caller's
    /// error.
    fn fail_open(
        &self,
        pipeline: &Pipeline,
        call: &RankCall,
        why: Degraded,
        user: &UserView,
    ) -> Result<Outcome, RankError> {
        if call.strict {
            return Err(match why {
                Degraded::Overload => RankError::Overloaded,
                Degraded::Internal => RankError::Internal("ranking failed".into()),
                Degraded::State => RankError::State("user state is unavailable".into()),
                other => RankError::DeadlineExceeded(other),
            });
        }
        // Overload is expected under bursts and would flood the log; the rest is unusual.
        if why == Degraded::Overload {
            tracing::debug!(
                reason = why.name(),
                policy = pipeline.version(),
                "failing open"
            );
        } else {
            tracing::warn!(
                reason = why.name(),
                policy = pipeline.version(),
                "failing open"
            );
        }
        Ok(Outcome {
            ranking: pipeline.fail_open(&call.input, user),
            policy_version: pipeline.version().to_owned(),
            degraded: Some(why),
        })
    }
}

/// What is kept of a caller's timeout `t` to build and send a fail-open answer (see
/// `Engine::deadline`): a tenth of it, at least 1 ms and at most 20 ms, never over half.
pub fn fail_open_reserve(t: Duration) -> Duration {
    (t / 10)
        .clamp(Duration::from_millis(1), Duration::from_millis(20))
        .min(t / 2)
}

/// Runs one ranking, catching a panic, and the time each stage took (recorded by the caller
/// once the answer has left).
fn run_ranking(
    pipeline: &Pipeline,
    call: &RankCall,
    user: &UserView,
    deadline: &Deadline,
) -> (JobResult, Vec<(&'static str, Duration)>) {
    let mut stages = Vec::with_capacity(16);
    let result = catch_unwind(AssertUnwindSafe(|| {
        deadline.check("queue")?;
        let mut observe = |stage, took| stages.push((stage, took));
        pipeline.run_observed(&call.input, user, deadline, Some(&mut observe))
    }))
    .map_err(|panic| panic_message(&panic));
    (result, stages)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

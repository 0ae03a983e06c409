//! Offline replay: real interaction logs played through tactful in time order, to compare a
//! policy against the upstream order (`identity`) on relevance and on avoidance, and to fit a
//! policy's platform knowledge (durable categories, complements) from a log's earlier part.
//!
//! How a replay runs (`run`):
//! 1. The log is split by time at `fit_until`: the policy is fitted on the part before
//!    ([`fit`]); decisions are evaluated on the part after only, so nothing is tuned on what
//!    is measured. Every event of both parts still flows into the user state and the
//!    candidate generator, in time order, as a live system would have seen them.
//! 2. A **decision point** is each page view (Taobao `pv`, a MovieLens rating) in the
//!    evaluation part by a user with at least `warmup` earlier events: the moment just before
//!    that event. The upstream generator ([`candidates`]), fed only with the events before
//!    it, proposes up to 100 candidates with scores.
//! 3. Each arm ranks the same candidates with its own pipeline and its own user states
//!    (`state::UserState`, the store's own per-user state and event rules), at the event's
//!    timestamp as `now_ms` (never the wall clock). Its top `k` are recorded in its state as
//!    impressions at that time.
//! 4. Then the event itself is applied to every arm's state: a page view is a click on the
//!    item (so a shown item the user opens next counts as clicked, and one not shown is
//!    still engagement, as it would be in production), cart, favourite and purchase are
//!    themselves. Only then does the generator learn from it.
//!
//! Metrics per arm are in [`report`].
//!
//! Must not: read the wall clock, or let an event influence anything ranked before it.

pub mod candidates;
pub mod discount;
pub mod fit;
pub mod prepared;
pub mod report;
pub mod tune;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::datasets::movielens::{LoadError, MovieLens};
use crate::datasets::taobao::{self, Behavior};
use crate::rank::policy::Policy;
use crate::rank::{
    Candidate, DataDimension, Deadline, DimensionSet, Parallelism, Pipeline, Policies, RankInput,
    UserView, metrics,
};
use crate::state::{Event, EventKind, StateConfig, UserState};

use candidates::{Generator, Params as GeneratorParams};
use fit::{FitParams, Fitted};
use report::{ArmMetrics, Report, Slate};

/// What a user did, in the replay's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Opened an item (Taobao `pv`, a MovieLens rating): the interaction decisions predict.
    View,
    Cart,
    Favorite,
    Buy,
}

/// One event of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEvent {
    pub user: u64,
    pub item: u64,
    /// Never 0 (unknown).
    pub category: u64,
    pub action: Action,
    pub at_ms: i64,
}

/// A log in time order (ties keep the file's order).
#[derive(Debug, Clone)]
pub struct Log {
    /// What it is, for reports: "taobao-users/UserBehavior.csv".
    pub name: String,
    pub events: Vec<LogEvent>,
    /// The platform's offset from UTC, for requests' local time.
    pub utc_offset_minutes: i32,
}

impl Log {
    pub fn new(
        name: impl Into<String>,
        mut events: Vec<LogEvent>,
        utc_offset_minutes: i32,
    ) -> Self {
        events.sort_by_key(|e| e.at_ms);
        Self {
            name: name.into(),
            events,
            utc_offset_minutes,
        }
    }

    /// From Taobao rows.
    pub fn from_taobao(name: impl Into<String>, rows: &[taobao::Row]) -> Self {
        let events = rows
            .iter()
            .map(|r| LogEvent {
                user: r.user_id,
                item: r.item_id,
                category: r.category_id,
                action: match r.behavior {
                    Behavior::PageView => Action::View,
                    Behavior::Cart => Action::Cart,
                    Behavior::Favorite => Action::Favorite,
                    Behavior::Buy => Action::Buy,
                },
                at_ms: r.timestamp * 1000,
            })
            .collect();
        Self::new(name, events, (taobao::UTC_OFFSET_SECONDS / 60) as i32)
    }

    /// Reads a Taobao UserBehavior file.
    pub fn taobao(path: &Path) -> Result<Self, LoadError> {
        Ok(Self::from_taobao(
            path.display().to_string(),
            &taobao::load(path)?,
        ))
    }

    /// Reads MovieLens 100K (`u.data`, `u.item`, `u.genre`): each rating is a view of the
    /// movie, its category its first genre (ids from 1: genre index + 1). MovieLens has no
    /// purchases, so purchase metrics, cooling-off and complements stay empty.
    pub fn movielens(dir: &Path) -> Result<Self, LoadError> {
        let ml = MovieLens::load(dir)?;
        let events = ml
            .ratings
            .iter()
            .map(|r| LogEvent {
                user: u64::from(r.user_id),
                item: u64::from(r.item_id),
                category: ml
                    .movie(r.item_id)
                    .and_then(|m| m.genres.first())
                    .map_or(1, |g| g as u64 + 1),
                action: Action::View,
                at_ms: r.timestamp * 1000,
            })
            .collect();
        Ok(Self::new(dir.display().to_string(), events, 0))
    }

    /// Index of the first event at or after `at_ms`.
    pub fn split(&self, at_ms: i64) -> usize {
        self.events.partition_point(|e| e.at_ms < at_ms)
    }
}

/// How to run a replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Events before this time fit the policy; decisions are evaluated from it on.
    pub fit_until_ms: i64,
    /// Earlier events a user needs before their views become decision points: 3, enough
    /// history for a personal candidate list.
    pub warmup: usize,
    /// Items shown per decision: 10, one screen.
    pub k: usize,
    pub generator: GeneratorParams,
    pub fit: FitParams,
    /// Print progress to stderr every 10% of the events.
    pub progress: bool,
    /// The fit and candidates, computed once for many runs ([`prepared`]); `None` computes them.
    pub prepared: Option<Arc<prepared::Prepared>>,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            fit_until_ms: 0,
            warmup: 3,
            k: 10,
            generator: GeneratorParams::default(),
            fit: FitParams::default(),
            progress: false,
            prepared: None,
        }
    }
}

/// A policy under test, named for the report. [`run`] takes `None` for the built-in default
/// plus what the fit learned.
#[derive(Debug, Clone)]
pub struct Arm {
    /// The column title in the report.
    pub name: String,
    pub policy: Policy,
}

struct Running {
    name: String,
    pipeline: Arc<Pipeline>,
    states: HashMap<u64, UserState>,
    /// Per (user, item): times shown since the user last interacted with it.
    unclicked: HashMap<(u64, u64), u32>,
    metrics: ArmMetrics,
}

/// Replays the log with the identity baseline and `tested` (the fitted policy when `None`).
pub fn run(log: &Log, tested: Option<Arm>, cfg: &ReplayConfig) -> Report {
    run_observed(log, tested, cfg, &mut |_, _| {})
}

/// [`run`], calling `observe` with each decision's event index and candidates.
pub fn run_observed(
    log: &Log,
    tested: Option<Arm>,
    cfg: &ReplayConfig,
    observe: &mut dyn FnMut(usize, &[candidates::Proposal]),
) -> Report {
    let started = Instant::now();
    let split = log.split(cfg.fit_until_ms);
    let fitted = match &cfg.prepared {
        Some(p) => {
            p.check(log, cfg);
            p.fitted.clone()
        }
        None => fit_part(&log.events[..split], cfg),
    };
    let tested = tested.unwrap_or_else(|| Arm {
        name: "fitted".into(),
        policy: fitted.policy(),
    });
    let mut configured = std::collections::BTreeMap::new();
    configured.insert("tested".to_owned(), tested.policy.clone());
    let policies = Policies::build(&configured, Parallelism::SEQUENTIAL)
        .unwrap_or_else(|e| panic!("the tested policy is invalid: {e}"));
    let mut arms: Vec<Running> = [
        ("identity".to_owned(), "identity"),
        (tested.name.clone(), "tested"),
    ]
    .into_iter()
    .map(|(name, key)| Running {
        name,
        pipeline: policies.get(key).expect("built above").clone(),
        states: HashMap::new(),
        unclicked: HashMap::new(),
        metrics: ArmMetrics::default(),
    })
    .collect();
    let state_cfg = StateConfig::default();
    let windows = fitted.windows_ms();

    // Long tail: the head is the 20% most popular items of the fitting part; items first
    // seen later are tail.
    let mut fit_popularity: HashMap<u64, u32> = HashMap::new();
    for e in &log.events[..split] {
        *fit_popularity.entry(e.item).or_default() += 1;
    }
    let counts: Vec<u32> = fit_popularity.values().copied().collect();
    let head = metrics::head_threshold(&counts, metrics::DEFAULT_HEAD_SHARE);

    // The user's next purchase after each event.
    let mut next_buy = vec![None; log.events.len()];
    let mut pending: HashMap<u64, u64> = HashMap::new();
    for (i, e) in log.events.iter().enumerate().rev() {
        next_buy[i] = pending.get(&e.user).copied();
        if e.action == Action::Buy {
            pending.insert(e.user, e.item);
        }
    }

    let mut generator = Generator::new(cfg.generator.clone());
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut purchases: HashMap<u64, Vec<(u64, i64)>> = HashMap::new();
    let mut decisions = 0usize;
    let step = (log.events.len() / 10).max(1);
    for (i, e) in log.events.iter().enumerate() {
        if cfg.progress && i > 0 && i % step == 0 {
            eprintln!(
                "replay: {}% of {} events, {decisions} decisions, {:.1} s",
                i * 100 / log.events.len(),
                log.events.len(),
                started.elapsed().as_secs_f64()
            );
        }
        let history = seen.entry(e.user).or_default();
        let decide = i >= split && e.action == Action::View && *history >= cfg.warmup;
        *history += 1;
        if decide {
            let proposals = match &cfg.prepared {
                Some(p) => p.proposals(i),
                None => generator.candidates(e.user),
            };
            if !proposals.is_empty() {
                decisions += 1;
                observe(i, &proposals);
                let input = RankInput {
                    candidates: proposals
                        .iter()
                        .map(|p| Candidate {
                            item_id: p.item_id,
                            score: p.score,
                            category_id: p.category_id,
                            popularity: p.popularity as f32,
                            evidence: if p.personal {
                                DimensionSet::of([DataDimension::Browsing])
                            } else {
                                DimensionSet::of([DataDimension::Trending])
                            },
                            ..Candidate::default()
                        })
                        .collect(),
                    k: cfg.k,
                    now_ms: e.at_ms,
                    surface: "home_feed".into(),
                    utc_offset_minutes: log.utc_offset_minutes,
                    ..RankInput::default()
                };
                let bought = purchases.get(&e.user).map_or(&[][..], Vec::as_slice);
                for arm in &mut arms {
                    let view = view_of(arm.states.get(&e.user), e.at_ms, &state_cfg);
                    let (ranking, degraded) =
                        match arm.pipeline.run(&input, &view, &Deadline::none()) {
                            Ok(r) => (r, false),
                            Err(_) => (arm.pipeline.fail_open(&input, &view), true),
                        };
                    let shown: Vec<&Candidate> = ranking
                        .items
                        .iter()
                        .take(cfg.k)
                        .map(|r| &input.candidates[r.index])
                        .collect();
                    let slate = Slate {
                        items: shown.iter().map(|c| c.item_id).collect(),
                        categories: shown.iter().map(|c| c.category_id).collect(),
                        popularity: shown
                            .iter()
                            .map(|c| fit_popularity.get(&c.item_id).copied().unwrap_or(0))
                            .collect(),
                        repeated_ignored: shown
                            .iter()
                            .filter(|c| {
                                arm.unclicked
                                    .get(&(e.user, c.item_id))
                                    .copied()
                                    .unwrap_or(0)
                                    >= 3
                            })
                            .count(),
                        substitutes: shown
                            .iter()
                            .filter(|c| {
                                bought.iter().any(|(cat, at)| {
                                    *cat == c.category_id
                                        && windows.get(cat).is_some_and(|w| e.at_ms - at < *w)
                                })
                            })
                            .count(),
                        violations: shown
                            .iter()
                            .filter(|c| view.not_interested.binary_search(&c.item_id).is_ok())
                            .count(),
                        degraded,
                    };
                    arm.metrics.add(&slate, e.item, next_buy[i], head);
                    let state = arm.states.entry(e.user).or_default();
                    for c in &shown {
                        let mut imp = Event::new(EventKind::Impression, e.at_ms);
                        imp.item_id = c.item_id;
                        imp.category_id = c.category_id;
                        apply(state, &imp, &state_cfg);
                        *arm.unclicked.entry((e.user, c.item_id)).or_default() += 1;
                    }
                }
            }
        }
        let kind = match e.action {
            Action::View => EventKind::Click,
            Action::Cart => EventKind::Cart,
            Action::Favorite => EventKind::Favorite,
            Action::Buy => EventKind::Purchase,
        };
        let mut event = Event::new(kind, e.at_ms);
        event.item_id = e.item;
        event.category_id = e.category;
        for arm in &mut arms {
            apply(arm.states.entry(e.user).or_default(), &event, &state_cfg);
            arm.unclicked.remove(&(e.user, e.item));
        }
        if e.action == Action::Buy {
            purchases
                .entry(e.user)
                .or_default()
                .push((e.category, e.at_ms));
        }
        if cfg.prepared.is_none() {
            generator.observe(e.user, e.item, e.category, e.at_ms);
        }
    }
    Report {
        log: log.name.clone(),
        events: log.events.len(),
        fit_events: split,
        fit_until_ms: cfg.fit_until_ms,
        utc_offset_minutes: log.utc_offset_minutes,
        fitted,
        arms: arms.into_iter().map(|a| (a.name, a.metrics)).collect(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn view_of(state: Option<&UserState>, now_ms: i64, cfg: &StateConfig) -> UserView {
    match state {
        Some(s) => s.view(now_ms, s.consent.apply_to(cfg.consent_default), cfg),
        None => UserView::unknown(cfg.consent_default),
    }
}

fn apply(state: &mut UserState, e: &Event, cfg: &StateConfig) {
    // Log events carry what the state needs; one the state refuses is a bug in the mapping
    // above, not in the log.
    if let Err(err) = e.check(e.at_ms).and_then(|_| state.apply(e, cfg)) {
        panic!("replay event refused by the state: {err}");
    }
}

/// Runs the fit alone on the events before `cfg.fit_until_ms`.
pub fn fit_log(log: &Log, cfg: &ReplayConfig) -> Fitted {
    fit_part(&log.events[..log.split(cfg.fit_until_ms)], cfg)
}

/// The whole fit of the fitting part: purchases ([`fit`]) and fatigue's discount
/// ([`discount`], which replays the part through the generator).
fn fit_part(events: &[LogEvent], cfg: &ReplayConfig) -> Fitted {
    let mut fitted = fit::fit(events, &cfg.fit);
    fitted.discount = discount::fit(events, &cfg.generator, cfg.k, cfg.warmup);
    fitted
}

/// Unix milliseconds of local midnight starting `date` (YYYY-MM-DD) at the offset.
pub fn local_midnight_ms(date: &str, utc_offset_minutes: i32) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d) = (
        parts.next()?.parse::<i64>().ok()?,
        parts.next()?.parse::<i64>().ok()?,
        parts.next()?.parse::<i64>().ok()?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 - i64::from(utc_offset_minutes) * 60) * 1000)
}

#[cfg(test)]
mod tests;

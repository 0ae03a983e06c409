//! Offline replay: real interaction logs played through tactful in time order, to compare a
//! policy against the upstream order (`identity`) on relevance and on avoidance, and to fit a
//! policy's platform knowledge (durable categories, complements) from a log's earlier part.
//!
//! How a replay runs (`run`):
//! 1. The log is split by time at `fit_until`: the policy is fitted on the part before
//!    ([`fit`]); decisions are evaluated on the part after only, so nothing is tuned on what
//!    is measured. By default the split is the time two thirds of the events precede
//!    ([`DEFAULT_FIT_SHARE`], a quantile of the timestamps, robust to stray rows). Every event of both parts still flows into the user state and the
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
//! 5. With simulated feedback ([`feedback`]), a third arm runs the policy under test again
//!    and, after each of its lists, receives the simulated user's explicit words about items
//!    the user ignores, as the events the server accepts, at that moment.
//!
//! Metrics per arm are in [`report`].
//!
//! Must not: read the wall clock, or let an event influence anything ranked before it.

pub mod candidates;
pub mod discount;
pub mod feedback;
pub mod fit;
pub mod prepared;
pub mod report;
pub mod tune;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::datasets::generic::Mapping;
use crate::datasets::{self, Format, LoadError, taobao};
use crate::rank::policy::Policy;
use crate::rank::{
    Candidate, Deadline, Parallelism, Pipeline, Policies, RankInput, UserView, metrics,
};
use crate::state::{Event, EventKind, StateConfig, UserState};

use candidates::{Generator, Params as GeneratorParams, Proposal};
use feedback::{Ledger, Simulation};
use fit::{FitParams, Fitted};
use report::{ArmMetrics, FeedbackReport, Report, Slate};

pub use crate::datasets::{Action, LogEvent};

/// A log in time order (ties keep the file's order).
#[derive(Debug, Clone)]
pub struct Log {
    /// What it is, for reports: "taobao-users/UserBehavior.csv".
    pub name: String,
    /// The format it was read in; `None` for a log built in code.
    pub format: Option<Format>,
    pub events: Vec<LogEvent>,
    /// The platform's offset from UTC, for requests' local time.
    pub utc_offset_minutes: i32,
    /// Whether any event names a brand (brand walls are measured only then).
    pub has_brands: bool,
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
            format: None,
            has_brands: events.iter().any(|e| e.brand != 0),
            events,
            utc_offset_minutes,
        }
    }

    /// From Taobao rows.
    pub fn from_taobao(name: impl Into<String>, rows: &[taobao::Row]) -> Self {
        Self::new(
            name,
            taobao::events(rows),
            (taobao::UTC_OFFSET_SECONDS / 60) as i32,
        )
    }

    /// Reads the log at `path` (a file or a folder) in `format`, or in the format
    /// `datasets::detect` tells; a generic CSV through its `mapping`.
    pub fn open(
        path: &Path,
        format: Option<Format>,
        mapping: Option<&Mapping>,
    ) -> Result<Self, LoadError> {
        let loaded = datasets::load(path, format, mapping)?;
        let mut log = Self::new(loaded.name, loaded.events, loaded.utc_offset_minutes);
        log.format = Some(loaded.format);
        Ok(log)
    }

    /// Index of the first event at or after `at_ms`.
    pub fn split(&self, at_ms: i64) -> usize {
        self.events.partition_point(|e| e.at_ms < at_ms)
    }

    /// The time of the event at the `share` quantile of the events in time order (the event
    /// at index ⌊share · n⌋), so that `share` of the events, up to ties at that instant, come
    /// before it; `None` for an empty log. A quantile of the events' times, not a point
    /// between the first and the last: a stray row far from the rest moves it by at most one
    /// event.
    pub fn quantile_ms(&self, share: f64) -> Option<i64> {
        let n = self.events.len();
        let i = ((n as f64 * share.clamp(0.0, 1.0)) as usize).min(n.checked_sub(1)?);
        Some(self.events[i].at_ms)
    }
}

/// The share of a log's events before the default end of the fitting part: two thirds fit
/// the policy, the last third is measured ([`Log::quantile_ms`]).
pub const DEFAULT_FIT_SHARE: f64 = 2.0 / 3.0;

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
    /// Simulate explicit feedback in a third arm (the policy under test again): see
    /// [`feedback`].
    pub feedback: Option<Simulation>,
    /// The user state's limits and time constants: the store's defaults.
    pub state: StateConfig,
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
            feedback: None,
            state: StateConfig::default(),
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
    /// Per (user, item): times shown in all.
    shown: HashMap<(u64, u64), u32>,
    metrics: ArmMetrics,
    /// Whether the simulated user speaks to this arm.
    speaks: bool,
    /// What the user said to this arm.
    ledger: Ledger,
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
    let windows = fitted.windows_ms();
    let mut arms: Vec<Running> = [
        ("identity".to_owned(), "identity", false),
        (tested.name.clone(), "tested", false),
        (format!("{} + feedback", tested.name), "tested", true),
    ]
    .into_iter()
    .filter(|(_, _, speaks)| !speaks || cfg.feedback.is_some())
    .map(|(name, key, speaks)| Running {
        name,
        pipeline: policies.get(key).expect("built above").clone(),
        states: HashMap::new(),
        unclicked: HashMap::new(),
        shown: HashMap::new(),
        metrics: ArmMetrics::new(log.has_brands, !windows.is_empty()),
        speaks,
        ledger: Ledger::default(),
    })
    .collect();
    let state_cfg = &cfg.state;

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

    // The index of each (user, item)'s last event: a showing after it is never engaged with.
    let mut last_touch: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, e) in log.events.iter().enumerate() {
        last_touch.insert((e.user, e.item), i);
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
                    candidates: proposals.iter().map(Proposal::candidate).collect(),
                    k: cfg.k,
                    now_ms: e.at_ms,
                    surface: "home_feed".into(),
                    utc_offset_minutes: log.utc_offset_minutes,
                    ..RankInput::default()
                };
                let bought = purchases.get(&e.user).map_or(&[][..], Vec::as_slice);
                for arm in &mut arms {
                    let view = view_of(arm.states.get(&e.user), e.at_ms, state_cfg);
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
                        brands: shown.iter().map(|c| c.brand_id).collect(),
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
                        repeated_unwanted: shown
                            .iter()
                            .filter(|c| {
                                let key = (e.user, c.item_id);
                                arm.shown.get(&key).copied().unwrap_or(0) >= 2
                                    && last_touch.get(&key).is_none_or(|&j| j < i)
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
                            .filter(|c| arm.ledger.violates(e.user, c.item_id, c.brand_id, e.at_ms))
                            .count(),
                        degraded,
                    };
                    arm.metrics.add(&slate, e.item, next_buy[i], head);
                    let state = arm.states.entry(e.user).or_default();
                    for c in &shown {
                        apply(state, &impression(c, e.at_ms), state_cfg);
                        *arm.unclicked.entry((e.user, c.item_id)).or_default() += 1;
                        *arm.shown.entry((e.user, c.item_id)).or_default() += 1;
                    }
                    if let Some(sim) = cfg.feedback.filter(|_| arm.speaks) {
                        for c in &shown {
                            let ignored = c.item_id != e.item
                                && last_touch.get(&(e.user, c.item_id)).is_none_or(|&j| j < i);
                            let Some(word) = ignored
                                .then(|| sim.word(i, c.item_id, c.category_id, c.brand_id))
                                .flatten()
                            else {
                                continue;
                            };
                            let event = word.event(e.at_ms);
                            match event
                                .check(e.at_ms)
                                .and_then(|_| state.apply(&event, state_cfg))
                            {
                                Ok(()) => arm.ledger.record(
                                    e.user,
                                    word,
                                    e.at_ms,
                                    state_cfg.not_interested_ms,
                                ),
                                Err(_) => arm.ledger.refused += 1,
                            }
                        }
                    }
                }
            }
        }
        let event = state_event(e);
        for arm in &mut arms {
            apply(arm.states.entry(e.user).or_default(), &event, state_cfg);
            arm.unclicked.remove(&(e.user, e.item));
        }
        if e.action == Action::Buy {
            purchases
                .entry(e.user)
                .or_default()
                .push((e.category, e.at_ms));
        }
        if cfg.prepared.is_none() {
            generator.observe(e);
        }
    }
    Report {
        log: log.name.clone(),
        events: log.events.len(),
        fit_events: split,
        fit_until_ms: cfg.fit_until_ms,
        utc_offset_minutes: log.utc_offset_minutes,
        fitted,
        feedback: cfg.feedback.map(|sim| {
            let ledger = arms
                .iter()
                .find(|a| a.speaks)
                .map(|a| a.ledger.clone())
                .unwrap_or_default();
            FeedbackReport { sim, ledger }
        }),
        arms: arms.into_iter().map(|a| (a.name, a.metrics)).collect(),
        source: log
            .format
            .map_or("the log given", |f| f.source())
            .to_owned(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The state event a log event is: a page view is a click on the item (so a shown item the
/// user opens next counts as clicked), cart, favourite and purchase are themselves.
pub(crate) fn state_event(e: &LogEvent) -> Event {
    let kind = match e.action {
        Action::View => EventKind::Click,
        Action::Cart => EventKind::Cart,
        Action::Favorite => EventKind::Favorite,
        Action::Buy => EventKind::Purchase,
    };
    Event {
        item_id: e.item,
        category_id: e.category,
        brand_id: e.brand,
        shop_id: e.shop,
        price: e.price,
        ..Event::new(kind, e.at_ms)
    }
}

/// The impression of a shown candidate at `at_ms`.
pub(crate) fn impression(c: &Candidate, at_ms: i64) -> Event {
    Event {
        item_id: c.item_id,
        category_id: c.category_id,
        brand_id: c.brand_id,
        shop_id: c.shop_id,
        price: c.price,
        ..Event::new(EventKind::Impression, at_ms)
    }
}

fn view_of(state: Option<&UserState>, now_ms: i64, cfg: &StateConfig) -> UserView {
    match state {
        Some(s) => s.view(now_ms, s.consent().apply_to(cfg.consent_default), cfg),
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
    let ymd = (
        parts.next()?.parse::<i64>().ok()?,
        parts.next()?.parse::<u32>().ok()?,
        parts.next()?.parse::<u32>().ok()?,
    );
    if parts.next().is_some() {
        return None;
    }
    datasets::text::civil_ms(ymd, (0, 0, 0, 0), utc_offset_minutes)
}

#[cfg(test)]
mod tests;

//! `tactful tune`: chooses a policy's main knobs on a log's fitting part, so that a replay of
//! the evaluation part judges a choice that never saw it.
//!
//! How a tune runs ([`tune`]):
//! 1. **Inner split.** The fitting part (the events before `fit_until`) is split again in
//!    time at the [`INNER_SHARE`] (70%) **time quantile of its events**: the timestamp of the
//!    event at that rank. The inner fit part is the events before it, the inner evaluation
//!    part the rest. A quantile of the events, not a share of the span from the first to the
//!    last timestamp: one stray row days before the others (Taobao has a few outside the
//!    official window) moves the split by at most one event, not by days.
//! 2. **Variants.** Around the policy fitted on the inner fit part (exactly as `tactful fit`
//!    fits it: cooling-off cycles, complements, the learned impression discount), the grid
//!    ([`Grid`]) varies the main knobs: `diversity.weight` (MMR), the frequency cap's
//!    `max_impressions` within 24 h (or no cap), fatigue (the learned discount, off, or the hand-set
//!    curve at a few weights) and the cooling-off mode (hard or penalty; only when the inner
//!    fit found a durable category with full support, since without cycles both modes do
//!    nothing and a thinly supported cycle is a fading penalty in both). Beside them,
//!    **single-rule baselines** with every other rule off ([`single_rule_base`]): the
//!    frequency cap alone over the upstream order, fatigue alone, MMR alone and DPP alone.
//! 3. **Evaluation.** Each variant is replayed on the fitting part split at the inner split
//!    with [`super::run`], unchanged and as a black box: identity against the variant, on the
//!    inner evaluation part. Variants run in parallel on the rayon pool; the results keep the
//!    grid's order, so a tune is deterministic.
//! 4. **Measures** ([`Measures`]): relevance kept (the variant's HitRate@10 over identity's),
//!    repeated ignored exposure removed (`1 −` the variant's share over identity's) and the
//!    change in distinct categories per list.
//! 5. **Pick** ([`pick`]): of the variants around the fitted policy, the one that removes the
//!    most repeated ignored exposure while keeping at least `min_kept` of identity's HitRate;
//!    ties (differences under a percentage point, [`TIE`]) go to more categories per list,
//!    then to more relevance, then to the earlier grid entry. When none keeps enough, the one that keeps the most, marked as a miss. Single-rule
//!    baselines are drawn for comparison and never picked: the written policy is the fitted
//!    policy plus knobs, with every other rule of the product still in force.
//! 6. **Output**: the [`frontier`] of each family (kept against each avoidance measure), a
//!    Markdown table of its points, an SVG chart (`svg.rs`) and the picked policy as TOML:
//!    the chosen knobs over the platform knowledge refitted on the *whole* fitting part (as
//!    `tactful fit` writes it), so that `tactful replay --policy` measures it on the
//!    evaluation part.
//!
//! Must not: read anything at or after `fit_until`, or depend on thread timing.

pub mod dominance;
mod svg;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use super::fit::Fitted;
use super::prepared::prepare;
use super::report::ArmMetrics;
use super::{Arm, Log, LogEvent, ReplayConfig};
use crate::rank::Policy;
use crate::rank::policy::Selection;
use crate::rank::stages::cooling_off::Mode;
use crate::rank::stages::fatigue::LearnedDiscount;
use crate::rank::stages::frequency_cap::SurfaceCap;

/// Where the inner split falls: the 70% time quantile of the fitting part's events, so that
/// knobs are judged on the last 30%, the part nearest the evaluation.
pub const INNER_SHARE: f64 = 0.7;
/// The frequency cap's window in every variant: a day.
pub const CAP_WINDOW_HOURS: f64 = 24.0;
/// The least share of identity's HitRate@10 the pick keeps, unless told otherwise: 95%.
pub const DEFAULT_MIN_KEPT: f64 = 0.95;

/// The timestamp of the event at the `share` quantile of `events` (time-ordered): the events
/// before it are the inner fit part. `None` for no events.
pub fn inner_split_ms(events: &[LogEvent], share: f64) -> Option<i64> {
    let last = events.len().checked_sub(1)?;
    let rank = ((events.len() as f64 * share.clamp(0.0, 1.0)).floor() as usize).min(last);
    Some(events[rank].at_ms)
}

/// A family of variants on the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// The fitted policy with its main knobs varied: the only family picked from.
    Tuned,
    /// The frequency cap alone over the upstream order.
    FrequencyCap,
    /// Fatigue alone (score order).
    Fatigue,
    /// MMR alone.
    Mmr,
    /// DPP alone.
    Dpp,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Tuned,
        Family::FrequencyCap,
        Family::Fatigue,
        Family::Mmr,
        Family::Dpp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Tuned => "fitted policy, knobs varied",
            Self::FrequencyCap => "frequency cap only",
            Self::Fatigue => "fatigue only",
            Self::Mmr => "MMR only",
            Self::Dpp => "DPP only",
        }
    }
}

/// Fatigue's setting in a variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FatigueKnob {
    Off,
    /// The impression discount the fit learned (`[fatigue.learned]`).
    Learned,
    /// The hand-set curve (`fatigue.weight`, saturation 3) at this weight.
    HandSet(f32),
}

/// The knobs a variant sets over its base policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    pub selection: Selection,
    pub diversity_weight: f32,
    /// `diversity.repeat_decay`: how fast each repeat of a category, brand or shop loses
    /// score (1: no decay, plain MMR).
    pub repeat_decay: f32,
    /// The frequency cap's `max_impressions` within [`CAP_WINDOW_HOURS`]; `None`: no cap.
    pub max_impressions: Option<u32>,
    pub fatigue: FatigueKnob,
    /// `None`: cooling-off off.
    pub cooling_off: Option<Mode>,
    /// Discovery: the exploration slots and the long-tail lift at the base policy's settings
    /// (`true`), or both off. Each costs relevance a single rule does not pay.
    pub discovery: bool,
}

impl Knobs {
    /// What a policy sets, in these terms (the cap of the `"*"` surface).
    pub fn of(p: &Policy) -> Self {
        Self {
            selection: p.selection,
            diversity_weight: p.diversity.weight,
            repeat_decay: p.diversity.repeat_decay,
            max_impressions: p
                .frequency_cap
                .enabled
                .then(|| p.frequency_cap.for_surface("*").map(|c| c.max_impressions))
                .flatten(),
            fatigue: match (&p.fatigue.enabled, &p.fatigue.learned) {
                (false, _) => FatigueKnob::Off,
                (true, Some(_)) => FatigueKnob::Learned,
                (true, None) => FatigueKnob::HandSet(p.fatigue.weight),
            },
            cooling_off: p.cooling_off.enabled.then_some(p.cooling_off.mode),
            discovery: p.exploration.share > 0.0 || p.long_tail.weight > 0.0,
        }
    }

    /// These knobs over `base`; `learned` is the discount [`FatigueKnob::Learned`] uses.
    pub fn apply(&self, base: &Policy, learned: Option<&LearnedDiscount>) -> Policy {
        let mut p = base.clone();
        p.selection = self.selection;
        p.diversity.weight = self.diversity_weight;
        p.diversity.repeat_decay = self.repeat_decay;
        match self.max_impressions {
            Some(max_impressions) => {
                p.frequency_cap.enabled = true;
                p.frequency_cap.caps = vec![SurfaceCap {
                    surface: "*".into(),
                    max_impressions,
                    window_hours: CAP_WINDOW_HOURS,
                }];
            }
            None => p.frequency_cap.enabled = false,
        }
        match self.fatigue {
            // The fitted discount stays in the file, unused, as the fit wrote it.
            FatigueKnob::Off => p.fatigue.enabled = false,
            FatigueKnob::Learned => {
                p.fatigue.enabled = true;
                p.fatigue.learned = learned.cloned();
            }
            FatigueKnob::HandSet(weight) => {
                p.fatigue.enabled = true;
                p.fatigue.learned = None;
                p.fatigue.weight = weight;
            }
        }
        match self.cooling_off {
            Some(mode) => {
                p.cooling_off.enabled = true;
                p.cooling_off.mode = mode;
            }
            None => p.cooling_off.enabled = false,
        }
        if !self.discovery {
            p.exploration.share = 0.0;
            p.long_tail.weight = 0.0;
        }
        p
    }

    /// A short description: every knob for the tuned family, the one rule for a baseline.
    pub fn label(&self, family: Family) -> String {
        // The decay acts only with a diversity weight; 1 is none.
        let decay = if self.diversity_weight > 0.0 && self.repeat_decay < 1.0 {
            format!(" decay {}", self.repeat_decay)
        } else {
            String::new()
        };
        let selection = match self.selection {
            Selection::Mmr => format!("MMR {}{decay}", self.diversity_weight),
            Selection::Dpp => format!("DPP {}{decay}", self.diversity_weight),
            Selection::Score => "score order".into(),
            Selection::Upstream => "upstream order".into(),
        };
        let cap = self
            .max_impressions
            .map_or("no cap".into(), |m| format!("cap {m}/{CAP_WINDOW_HOURS} h"));
        let fatigue = match self.fatigue {
            FatigueKnob::Off => "no fatigue".into(),
            FatigueKnob::Learned => "fatigue learned".into(),
            FatigueKnob::HandSet(w) => format!("fatigue {w}"),
        };
        let cooling = match self.cooling_off {
            None => "no cooling-off",
            Some(Mode::Hard) => "cooling-off hard",
            Some(Mode::Penalty) => "cooling-off penalty",
        };
        let discovery = if self.discovery { "" } else { ", no discovery" };
        match family {
            Family::Tuned => format!("{selection}, {cap}, {fatigue}, {cooling}{discovery}"),
            Family::FrequencyCap => cap,
            Family::Fatigue => fatigue,
            Family::Mmr | Family::Dpp => selection,
        }
    }
}

/// The base of the single-rule baselines: identity's rules (none but validation), ranked by
/// score with no exploration slots, long-tail boost or calibration; a baseline turns one rule
/// on over it. Ranked by score with nothing on, it is the upstream order.
pub fn single_rule_base() -> Policy {
    let mut p = Policy::identity();
    p.selection = Selection::Score;
    p.diversity.weight = 0.0;
    p.exploration.share = 0.0;
    p.long_tail.weight = 0.0;
    p.calibration.weight = 0.0;
    p
}

/// The values tried.
#[derive(Debug, Clone)]
pub struct Grid {
    /// `diversity.weight` (MMR) of the tuned family.
    pub diversity_weights: Vec<f32>,
    /// `diversity.repeat_decay` tried with every weight above 0: the built-in 0.5, a gentler
    /// 0.8 and 1 (no decay: each repeat is penalised by similarity alone, as plain MMR does).
    pub repeat_decays: Vec<f32>,
    /// The frequency cap's `max_impressions` per 24 h of the tuned family; `None`: no cap.
    pub max_impressions: Vec<Option<u32>>,
    /// Hand-set `fatigue.weight`s of the tuned family (besides learned and off): the built-in
    /// 0.6 and gentler ones.
    pub fatigue_weights: Vec<f32>,
    /// Discovery (exploration slots and long-tail lift) on, off, or both tried.
    pub discovery: Vec<bool>,
    /// Baselines: the cap's `max_impressions`, fatigue's hand-set weights (learned is added
    /// when the fit learned one), MMR's and DPP's weights.
    pub cap_only: Vec<u32>,
    pub fatigue_only: Vec<f32>,
    pub mmr_only: Vec<f32>,
    pub dpp_only: Vec<f32>,
}

impl Default for Grid {
    /// 11 selection settings (no diversity, or 5 weights × 2 decays) × 3 caps (2 or 3 a day,
    /// or none: 6 a day came close to none on every shared log) × 5 fatigue settings
    /// (learned, off, 3 hand-set) × discovery on or off × 2 cooling-off modes = at most 660
    /// variants around the fitted policy, and 21 baselines; 264 on MovieLens 100K (no learned
    /// discount, no purchases), about two minutes on two cores. The hand-set weights are the
    /// fatigue-only baseline's, and discovery off lets the family do what a single rule does
    /// without the relevance the exploration slot and long-tail lift cost (see
    /// `dominance.rs`).
    fn default() -> Self {
        Self {
            diversity_weights: vec![0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
            repeat_decays: vec![0.5, 1.0],
            max_impressions: vec![Some(2), Some(3), None],
            fatigue_weights: vec![0.2, 0.4, 0.6],
            discovery: vec![true, false],
            cap_only: vec![1, 2, 3, 4, 5, 6],
            fatigue_only: vec![0.2, 0.4, 0.6, 1.0],
            mmr_only: vec![0.05, 0.1, 0.2, 0.3, 0.5],
            dpp_only: vec![0.05, 0.1, 0.2, 0.3, 0.5],
        }
    }
}

/// One policy tried.
#[derive(Debug, Clone)]
pub struct Variant {
    pub family: Family,
    pub knobs: Knobs,
    pub policy: Policy,
}

impl Grid {
    /// The variants, tuned family first, in a fixed order. `fitted` is the policy fitted on
    /// the inner fit part, `learned` its discount (fatigue's learned variants need it),
    /// `durables` whether it has a cooling-off cycle the mode acts on (else only the hard
    /// mode is tried).
    pub fn variants(
        &self,
        fitted: &Policy,
        learned: Option<&LearnedDiscount>,
        durables: bool,
    ) -> Vec<Variant> {
        let mut fatigue = Vec::new();
        if learned.is_some() {
            fatigue.push(FatigueKnob::Learned);
        }
        fatigue.push(FatigueKnob::Off);
        fatigue.extend(
            self.fatigue_weights
                .iter()
                .map(|w| FatigueKnob::HandSet(*w)),
        );
        let modes: &[Mode] = if durables {
            &[Mode::Hard, Mode::Penalty]
        } else {
            &[Mode::Hard]
        };
        let mut out = Vec::new();
        // Without a diversity weight the decay does nothing: one selection setting, not one
        // per decay.
        let fitted_decay = fitted.diversity.repeat_decay;
        let selections: Vec<(f32, f32)> = self
            .diversity_weights
            .iter()
            .flat_map(|&w| {
                let decays = if w > 0.0 {
                    self.repeat_decays.clone()
                } else {
                    vec![fitted_decay]
                };
                decays.into_iter().map(move |d| (w, d))
            })
            .collect();
        for &(w, decay) in &selections {
            for &m in &self.max_impressions {
                for &f in &fatigue {
                    for &discovery in &self.discovery {
                        for &mode in modes {
                            let knobs = Knobs {
                                selection: Selection::Mmr,
                                diversity_weight: w,
                                repeat_decay: decay,
                                max_impressions: m,
                                fatigue: f,
                                cooling_off: Some(mode),
                                discovery,
                            };
                            out.push(Variant {
                                family: Family::Tuned,
                                policy: knobs.apply(fitted, learned),
                                knobs,
                            });
                        }
                    }
                }
            }
        }
        let base = single_rule_base();
        let none = Knobs::of(&base);
        let mut baseline = |family, knobs: Knobs| {
            out.push(Variant {
                family,
                policy: knobs.apply(&base, learned),
                knobs,
            });
        };
        for &m in &self.cap_only {
            let knobs = Knobs {
                selection: Selection::Upstream,
                max_impressions: Some(m),
                ..none.clone()
            };
            baseline(Family::FrequencyCap, knobs);
        }
        let mut fatigue_only: Vec<FatigueKnob> = self
            .fatigue_only
            .iter()
            .map(|w| FatigueKnob::HandSet(*w))
            .collect();
        if learned.is_some() {
            fatigue_only.push(FatigueKnob::Learned);
        }
        for f in fatigue_only {
            let knobs = Knobs {
                fatigue: f,
                ..none.clone()
            };
            baseline(Family::Fatigue, knobs);
        }
        for (family, selection, weights) in [
            (Family::Mmr, Selection::Mmr, &self.mmr_only),
            (Family::Dpp, Selection::Dpp, &self.dpp_only),
        ] {
            for &w in weights {
                let knobs = Knobs {
                    selection,
                    diversity_weight: w,
                    ..none.clone()
                };
                baseline(family, knobs);
            }
        }
        out
    }
}

/// How a variant compares with identity on the inner evaluation part.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measures {
    /// HitRate@10 of the next view, as a share of identity's (1 when identity has none).
    pub kept: f64,
    pub ndcg_kept: f64,
    /// `1 −` the share of repeated ignored slots over identity's (0 when identity has none).
    pub ignored_removed: f64,
    /// Distinct categories per list over identity's, minus 1.
    pub categories_gain: f64,
    /// Substitute slots within cooling-off, relative change (0 when identity has none).
    pub substitutes_change: f64,
}

impl Measures {
    pub fn of(identity: &ArmMetrics, tested: &ArmMetrics) -> Self {
        let share = |b: f64, t: f64| if b == 0.0 { 1.0 } else { t / b };
        let change = |b: f64, t: f64| if b == 0.0 { 0.0 } else { t / b - 1.0 };
        Self {
            kept: share(identity.hit_rate(), tested.hit_rate()),
            ndcg_kept: share(identity.ndcg(), tested.ndcg()),
            ignored_removed: -change(
                identity.repeated_ignored_share(),
                tested.repeated_ignored_share(),
            ),
            categories_gain: change(identity.categories_per_list(), tested.categories_per_list()),
            substitutes_change: change(
                identity.substitute_share().unwrap_or(0.0),
                tested.substitute_share().unwrap_or(0.0),
            ),
        }
    }
}

/// One of the measures, as a chart axis or a sort key.
pub type Axis = fn(&Measures) -> f64;

/// Indices of the points `(x, y)` no other point beats on both (at least as high on each,
/// higher on one), by ascending `x`; of identical points only the first.
pub fn frontier(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Highest x first, then highest y, then the earlier index.
    order.sort_by(|&a, &b| {
        let (pa, pb) = (points[a], points[b]);
        pb.0.total_cmp(&pa.0)
            .then(pb.1.total_cmp(&pa.1))
            .then(a.cmp(&b))
    });
    let mut best_y = f64::NEG_INFINITY;
    let mut out = Vec::new();
    for i in order {
        if points[i].1 > best_y {
            best_y = points[i].1;
            out.push(i);
        }
    }
    out.reverse();
    out
}

/// What [`pick`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    /// Whether it keeps at least `min_kept`.
    pub met: bool,
}

/// Differences under this (one percentage point) in the exposure removed or in the
/// categories gain are ties in [`pick`]: the inner evaluation part is a few thousand lists,
/// and a pick should not give up ten points of categories for a tenth of a point of exposure.
pub const TIE: f64 = 0.01;

/// The variant that removes the most repeated ignored exposure among those keeping at least
/// `min_kept`; ties (within [`TIE`]): more categories per list (within [`TIE`]), then more
/// kept, then the earlier one. When none keeps enough: the one that keeps the most (ties:
/// more removed, then more categories), marked as a miss. `None` for no points.
pub fn pick(points: &[Measures], min_kept: f64) -> Option<Pick> {
    let removed: Axis = |m| m.ignored_removed;
    let categories: Axis = |m| m.categories_gain;
    let kept: Axis = |m| m.kept;
    let within: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].kept >= min_kept)
        .collect();
    let met = !within.is_empty();
    let (mut left, keys) = if met {
        (within, [(removed, TIE), (categories, TIE), (kept, 0.0)])
    } else {
        (
            (0..points.len()).collect(),
            [(kept, 0.0), (removed, TIE), (categories, TIE)],
        )
    };
    for (key, tolerance) in keys {
        let best = left
            .iter()
            .map(|&i| key(&points[i]))
            .fold(f64::NEG_INFINITY, f64::max);
        left.retain(|&i| key(&points[i]) >= best - tolerance);
    }
    left.first().map(|&index| Pick { index, met })
}

/// How to tune.
#[derive(Debug, Clone)]
pub struct TuneConfig {
    /// The replay's settings; `fit_until_ms` ends the fitting part, the only part used.
    pub replay: ReplayConfig,
    pub inner_share: f64,
    pub min_kept: f64,
    pub grid: Grid,
    /// Progress on stderr: variants done of all, elapsed time.
    pub progress: bool,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            replay: ReplayConfig::default(),
            inner_share: INNER_SHARE,
            min_kept: DEFAULT_MIN_KEPT,
            grid: Grid::default(),
            progress: false,
        }
    }
}

/// A tune that cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TuneError {
    #[error("the fitting part (before --fit-until) has no events")]
    NoFittingPart,
    #[error(
        "the inner evaluation part (the fitting part from {0}) has no decision point: the fitting part is too short to tune on"
    )]
    NoInnerDecisions(String),
}

/// One variant's outcome.
#[derive(Debug, Clone)]
pub struct Point {
    pub variant: Variant,
    pub tested: ArmMetrics,
    pub measures: Measures,
}

impl Point {
    pub fn label(&self) -> String {
        self.variant.knobs.label(self.variant.family)
    }
}

/// A tune's outcome.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub log: String,
    pub utc_offset_minutes: i32,
    pub fit_until_ms: i64,
    /// The inner split: the `inner_share` time quantile of the fitting part's events.
    pub inner_share: f64,
    pub inner_until_ms: i64,
    /// Events of the fitting part, and of its inner fit part.
    pub fit_events: usize,
    pub inner_fit_events: usize,
    pub min_kept: f64,
    pub grid: Grid,
    /// Identity on the inner evaluation part (the same in every replay).
    pub identity: ArmMetrics,
    /// In the grid's order: the tuned family first.
    pub points: Vec<Point>,
    /// Into `points`.
    pub picked: Pick,
    /// Into `points`: the fitted policy as `tactful fit` writes it, when the grid holds it.
    pub fitted_point: Option<usize>,
    /// The fit of the whole fitting part, under the picked knobs in [`Tuning::toml`].
    pub fitted: Fitted,
    pub seconds: f64,
}

/// Tunes on the part of `log` before `cfg.replay.fit_until_ms`.
pub fn tune(log: &Log, cfg: &TuneConfig) -> Result<Tuning, TuneError> {
    let started = Instant::now();
    let split = log.split(cfg.replay.fit_until_ms);
    let fitting = &log.events[..split];
    let inner_until_ms =
        inner_split_ms(fitting, cfg.inner_share).ok_or(TuneError::NoFittingPart)?;
    let inner_log = Log {
        name: format!("{} (fitting part)", log.name),
        events: fitting.to_vec(),
        utc_offset_minutes: log.utc_offset_minutes,
        format: log.format,
        has_brands: log.has_brands,
    };
    let mut inner_cfg = ReplayConfig {
        fit_until_ms: inner_until_ms,
        progress: false,
        prepared: None,
        ..cfg.replay.clone()
    };
    // The fit and the candidates are the same for every variant: computed once, while the
    // whole fitting part is fitted for the file written.
    let outer_cfg = ReplayConfig {
        prepared: None,
        ..cfg.replay.clone()
    };
    let (prepared, fitted) = rayon::join(
        || Arc::new(prepare(&inner_log, &inner_cfg)),
        || super::fit_log(log, &outer_cfg),
    );
    inner_cfg.prepared = Some(prepared.clone());
    let inner_fitted = &prepared.fitted;
    let learned = inner_fitted.discount.learned();
    let fitted_policy = inner_fitted.policy();
    let variants = cfg.grid.variants(
        &fitted_policy,
        learned.as_ref(),
        // A cycle with thin support is a fading penalty in either mode.
        inner_fitted
            .durables
            .iter()
            .any(|d| d.buyers >= fitted_policy.cooling_off.full_support as usize),
    );
    let fitted_point = variants
        .iter()
        .position(|v| v.family == Family::Tuned && v.policy == fitted_policy);

    let total = variants.len();
    let done = AtomicUsize::new(0);
    let step = (total / 20).max(1);
    if cfg.progress {
        eprintln!(
            "tune: {total} variants on the fitting part's {split} events (inner fit {}, inner evaluation {}: {} decisions), {:.1} s",
            inner_log.split(inner_until_ms),
            split - inner_log.split(inner_until_ms),
            prepared.decisions(),
            started.elapsed().as_secs_f64()
        );
    }
    let runs: Vec<(ArmMetrics, ArmMetrics)> = variants
        .par_iter()
        .map(|v| {
            let arm = Arm {
                name: v.knobs.label(v.family),
                policy: v.policy.clone(),
            };
            let mut report = super::run(&inner_log, Some(arm), &inner_cfg);
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if cfg.progress && (n.is_multiple_of(step) || n == total) {
                eprintln!(
                    "tune: {n}/{total} variants, {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            let tested = report.arms.pop().expect("two arms").1;
            let identity = report.arms.pop().expect("two arms").1;
            (identity, tested)
        })
        .collect();
    let identity = runs.first().map(|r| r.0.clone()).unwrap_or_default();
    for (i, _) in &runs {
        assert_eq!(
            *i, identity,
            "identity's replay must not depend on the variant"
        );
    }
    if identity.decisions == 0 {
        return Err(TuneError::NoInnerDecisions(crate::time::date_time_minutes(
            inner_until_ms,
            log.utc_offset_minutes,
        )));
    }
    let points: Vec<Point> = variants
        .into_iter()
        .zip(runs)
        .map(|(variant, (_, tested))| Point {
            measures: Measures::of(&identity, &tested),
            variant,
            tested,
        })
        .collect();
    let tuned: Vec<Measures> = points
        .iter()
        .take_while(|p| p.variant.family == Family::Tuned)
        .map(|p| p.measures)
        .collect();
    let picked = pick(&tuned, cfg.min_kept).expect("the grid has variants around the fit");
    Ok(Tuning {
        log: log.name.clone(),
        utc_offset_minutes: log.utc_offset_minutes,
        fit_until_ms: cfg.replay.fit_until_ms,
        inner_share: cfg.inner_share,
        inner_until_ms,
        fit_events: split,
        inner_fit_events: inner_log.split(inner_until_ms),
        min_kept: cfg.min_kept,
        grid: cfg.grid.clone(),
        identity,
        points,
        picked,
        fitted_point,
        fitted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub(super) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn signed_pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn list<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The policy file for `knobs` (of the tuned family) over `fitted`: `header` (comment lines),
/// the knobs, then the fit as `tactful fit` writes it. It reads back as
/// `knobs.apply(&fitted.policy(), fitted.discount.learned())`, except that a learned
/// fatigue falls back to the hand-set curve when `fitted` learned no discount.
pub fn policy_toml(fitted: &Fitted, knobs: &Knobs, header: &str) -> String {
    let mut s = String::new();
    for line in header.lines() {
        let _ = writeln!(s, "# {line}");
    }
    let selection = match knobs.selection {
        Selection::Mmr => "mmr",
        Selection::Dpp => "dpp",
        Selection::Score => "score",
        Selection::Upstream => "upstream",
    };
    let _ = writeln!(s, "\nselection = \"{selection}\"\n");
    let _ = writeln!(
        s,
        "[diversity]\nweight = {:?}\nrepeat_decay = {:?}\n",
        knobs.diversity_weight, knobs.repeat_decay
    );
    match knobs.max_impressions {
        Some(m) => {
            let _ = writeln!(
                s,
                "[caps]\nenabled = true\ncaps = [{{ surface = \"*\", max_impressions = {m}, window_hours = {CAP_WINDOW_HOURS:?} }}]\n"
            );
        }
        None => s.push_str("[caps]\nenabled = false\n\n"),
    }
    let mut fit = fitted.clone();
    match knobs.fatigue {
        FatigueKnob::Off => s.push_str("[fatigue]\nenabled = false\n\n"),
        FatigueKnob::Learned => s.push_str("[fatigue]\nenabled = true\n\n"),
        FatigueKnob::HandSet(w) => {
            fit.discount = Default::default();
            let _ = writeln!(s, "[fatigue]\nenabled = true\nweight = {w:?}\n");
        }
    }
    if !knobs.discovery {
        s.push_str("[exploration]\nshare = 0.0\n\n[long_tail]\nweight = 0.0\n\n");
    }
    let cooling = match knobs.cooling_off {
        None => "enabled = false\n",
        Some(Mode::Hard) => "enabled = true\nmode = \"hard\"\n",
        Some(Mode::Penalty) => "enabled = true\nmode = \"penalty\"\n",
    };
    let body = fit.to_toml("the whole fitting part");
    let (before, after) = body
        .split_once("[cooling_off]\n")
        .expect("the fit writes a [cooling_off] table");
    s.push_str(before);
    s.push_str("[cooling_off]\n");
    s.push_str(cooling);
    s.push_str(after);
    s
}

impl Tuning {
    fn date(&self, ms: i64) -> String {
        crate::time::date_time_minutes(ms, self.utc_offset_minutes)
    }

    pub fn picked_point(&self) -> &Point {
        &self.points[self.picked.index]
    }

    fn tuned_count(&self) -> usize {
        self.points
            .iter()
            .filter(|p| p.variant.family == Family::Tuned)
            .count()
    }

    /// The picked policy's file, with a header saying what was tried and why this one.
    pub fn toml(&self) -> String {
        let p = self.picked_point();
        let m = p.measures;
        let g = &self.grid;
        let modes = if self
            .points
            .iter()
            .any(|p| p.variant.knobs.cooling_off == Some(Mode::Penalty))
        {
            "{hard, penalty}"
        } else {
            "{hard} (no durable category in the inner fit: the mode would change nothing)"
        };
        let learned = if self
            .points
            .iter()
            .any(|p| p.variant.knobs.fatigue == FatigueKnob::Learned)
        {
            "learned, "
        } else {
            ""
        };
        let mut h = String::new();
        let _ = writeln!(
            h,
            "Tuned by `tactful tune` on {}, fitting part before {} ({} events) only.",
            self.log,
            self.date(self.fit_until_ms),
            self.fit_events
        );
        let _ = writeln!(
            h,
            "Inner split at the {:.0}% time quantile of the fitting part's events ({}): fitted on the {} events before it,\n\
             judged on the {} after it ({} decisions), identity against each variant.",
            self.inner_share * 100.0,
            self.date(self.inner_until_ms),
            self.inner_fit_events,
            self.fit_events - self.inner_fit_events,
            self.identity.decisions
        );
        let _ = writeln!(
            h,
            "Tried {} variants of the fitted policy: diversity.weight {{{}}} (MMR; above 0 with repeat_decay {{{}}}) x caps max_impressions {{{}}} per {} h\n\
             x fatigue {{{learned}off, hand-set weight {}}} x discovery (exploration slots, long-tail lift) {{{}}} x cooling_off.mode {modes};\n\
             and {} single-rule baselines for comparison (cap, fatigue, MMR, DPP alone).",
            self.tuned_count(),
            list(&g.diversity_weights),
            list(&g.repeat_decays),
            g.max_impressions
                .iter()
                .map(|m| m.map_or("off".into(), |m| m.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            CAP_WINDOW_HOURS,
            list(&g.fatigue_weights),
            g.discovery
                .iter()
                .map(|&d| if d { "on" } else { "off" })
                .collect::<Vec<_>>()
                .join(", "),
            self.points.len() - self.tuned_count(),
        );
        let picked = p.label();
        if self.picked.met {
            let _ = writeln!(
                h,
                "Picked: {picked}. It removes {} of the repeated ignored exposure (shown >= 3x unclicked) at {} of identity's\n\
                 HitRate@10, the most of the variants keeping >= {} (ties within a point: more categories per list, then more relevance);\n\
                 categories per top-10 {}.",
                pct(m.ignored_removed),
                pct(m.kept),
                pct(self.min_kept),
                signed_pct(m.categories_gain)
            );
        } else {
            let _ = writeln!(
                h,
                "MISSED: no variant kept >= {} of identity's HitRate@10. Picked the one that keeps the most: {picked}\n\
                 ({} kept, {} of the repeated ignored exposure removed, categories per top-10 {}).",
                pct(self.min_kept),
                pct(m.kept),
                pct(m.ignored_removed),
                signed_pct(m.categories_gain)
            );
        }
        if p.variant.knobs.fatigue == FatigueKnob::Learned
            && self.fitted.discount.learned().is_none()
        {
            let _ = writeln!(
                h,
                "The whole fitting part learned no impression discount: fatigue uses the hand-set curve."
            );
        }
        let _ = write!(
            h,
            "Below: the knobs, then the cooling-off cycles, complements and learned discount refitted on the whole fitting part."
        );
        policy_toml(&self.fitted, &p.variant.knobs, &h)
    }

    /// The frontier chart (SVG).
    pub fn svg(&self) -> String {
        svg::frontier_chart(self)
    }

    /// Per point: whether it is on its family's frontier of relevance kept against repeated
    /// ignored exposure removed, and against the categories-per-list gain.
    pub fn on_frontier(&self) -> Vec<[bool; 2]> {
        let mut on = vec![[false; 2]; self.points.len()];
        for family in Family::ALL {
            let members: Vec<usize> = (0..self.points.len())
                .filter(|&i| self.points[i].variant.family == family)
                .collect();
            let axes = [(|m: &Measures| m.ignored_removed) as Axis, |m| {
                m.categories_gain
            }];
            for (axis, y) in axes.into_iter().enumerate() {
                let xy: Vec<(f64, f64)> = members
                    .iter()
                    .map(|&i| (self.points[i].measures.kept, y(&self.points[i].measures)))
                    .collect();
                for f in frontier(&xy) {
                    on[members[f]][axis] = true;
                }
            }
        }
        on
    }

    /// The Markdown summary and the table of the frontier points (plus the pick and the
    /// fitted policy), by family and descending relevance kept.
    pub fn markdown(&self, command: &str) -> String {
        let id = &self.identity;
        let mut s = String::new();
        let _ = writeln!(s, "# Tuning the policy: {}\n", self.log);
        let _ = writeln!(s, "Reproduce with:\n\n```sh\n{command}\n```\n");
        let _ = writeln!(
            s,
            "Fitting part: {} events before {}. Inner fit: the {} events before {} (the {:.0}% time quantile of the fitting part's events); inner evaluation: the {} after, {} decisions. Identity there: HitRate@10 {}, repeated ignored exposure {}, {:.2} categories per top-10. {} variants in {:.1} s.\n",
            self.fit_events,
            self.date(self.fit_until_ms),
            self.inner_fit_events,
            self.date(self.inner_until_ms),
            self.inner_share * 100.0,
            self.fit_events - self.inner_fit_events,
            id.decisions,
            pct(id.hit_rate()),
            pct(id.repeated_ignored_share()),
            id.categories_per_list(),
            self.points.len(),
            self.seconds
        );
        let p = self.picked_point();
        let _ = writeln!(
            s,
            "{} **{}**: {} kept, repeated ignored exposure {}, categories per top-10 {}.\n",
            if self.picked.met {
                format!("Picked (HitRate kept ≥ {}):", pct(self.min_kept))
            } else {
                format!(
                    "MISSED: no variant keeps ≥ {}; picked the one that keeps the most:",
                    pct(self.min_kept)
                )
            },
            p.label(),
            pct(p.measures.kept),
            signed_pct(-p.measures.ignored_removed),
            signed_pct(p.measures.categories_gain)
        );
        s.push_str(
            "Rows: the points on their family's frontier of relevance kept against repeated ignored exposure removed (`ignored`), against the categories-per-list gain (`categories`), or both; the pick; the fitted policy. Measured on the inner evaluation part against identity.\n\n",
        );
        s.push_str(
            "| family | knobs | HitRate kept | NDCG kept | repeated ignored | removed | categories / top-10 | change | substitute slots | frontier of |\n",
        );
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        let on = self.on_frontier();
        let mut rows: Vec<usize> = (0..self.points.len())
            .filter(|&i| on[i].contains(&true))
            .collect();
        rows.push(self.picked.index);
        rows.extend(self.fitted_point);
        rows.sort_by(|&a, &b| {
            let (pa, pb) = (&self.points[a], &self.points[b]);
            pa.variant
                .family
                .cmp(&pb.variant.family)
                .then(pb.measures.kept.total_cmp(&pa.measures.kept))
                .then(a.cmp(&b))
        });
        rows.dedup();
        for i in rows {
            let pt = &self.points[i];
            let m = pt.measures;
            let mut knobs = pt.label();
            if i == self.picked.index {
                knobs = format!("**{knobs}** (picked)");
            }
            if Some(i) == self.fitted_point {
                knobs += " (fitted)";
            }
            let _ = writeln!(
                s,
                "| {} | {knobs} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
                pt.variant.family.name(),
                pct(m.kept),
                pct(m.ndcg_kept),
                pct(pt.tested.repeated_ignored_share()),
                pct(m.ignored_removed),
                pt.tested.categories_per_list(),
                signed_pct(m.categories_gain),
                if id.substitute_slots == 0 {
                    "—".into()
                } else {
                    signed_pct(m.substitutes_change)
                },
                match on[i] {
                    [true, true] => "both",
                    [true, false] => "ignored",
                    [false, true] => "categories",
                    [false, false] => "",
                }
            );
        }
        s.push('\n');
        s.push_str(&self.dominance_markdown());
        s
    }
}

#[cfg(test)]
mod tests;

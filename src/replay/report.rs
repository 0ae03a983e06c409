//! What a replay measures per arm, and how it is written: a Markdown table, an SVG chart and
//! a JSON document for machines ([`Report::json`], schema in `docs/logs.md`).
//!
//! Per decision (one top-k list):
//! - **HitRate@k / NDCG@k of the next interaction**: whether the item the user opens next is
//!   in the list, and `1 / log2(1 + rank)` if so (one relevant item, so the ideal DCG is 1);
//! - **the same for the next purchase**, over decisions of users who buy again later in the
//!   log (the purchased item, wherever it comes from); `n/a` when no user buys again;
//! - **substitute slots**: slots whose category is that of an item the user bought within the
//!   category's cooling-off window (the fitted cycles, the same for both arms), as a share of
//!   all slots; `n/a` when the fit found no cooling-off window, since there is then nothing
//!   the measure could count;
//! - **repeated ignored exposure**: slots showing an item this arm has already shown the user
//!   3 or more times since the user last interacted with it;
//! - **repeated unwanted exposure**: slots showing an item for the 3rd time or more (this
//!   arm, this user) that the user never engages with from that moment to the end of the log:
//!   repetition the log shows was not wanted, not merely not clicked yet;
//! - **distinct categories** per list;
//! - **walls**: lists with [`WALL`] or more items of one category, and of one brand where the
//!   log has brands (`n/a` otherwise), as a share of lists;
//! - **long-tail share**: slots whose item is outside the 20% most popular items of the
//!   fitting part (`rank::metrics`);
//! - **explicit-feedback violations**: slots showing an item the user said "not interested"
//!   in, or an item of a brand the user blocked, while the word is in force (`replay`
//!   keeps the record of what was said, apart from the user state it checks);
//! - **degraded answers**: lists that fell back to the upstream order.
//!
//! A target is judged only when it can be: a measure that is `n/a`, or whose baseline is 0,
//! is reported as such, never as met.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::feedback::{Ledger, Simulation};
use super::fit::Fitted;
use crate::rank::metrics;

/// Items of one category (or brand) in one list that make a wall.
pub const WALL: usize = 5;

/// One list an arm showed, as the metrics need it.
#[derive(Debug, Clone, Default)]
pub struct Slate {
    pub items: Vec<u64>,
    /// Per item; 0 = unknown.
    pub categories: Vec<u64>,
    /// Per item; 0 = unknown.
    pub brands: Vec<u64>,
    /// Interactions with each item in the fitting part.
    pub popularity: Vec<u32>,
    pub repeated_ignored: usize,
    pub repeated_unwanted: usize,
    pub substitutes: usize,
    pub violations: usize,
    pub degraded: bool,
}

/// Running sums of one arm's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmMetrics {
    /// Whether the log has brands: brand walls are measured only then.
    pub brands: bool,
    /// Whether the fit found cooling-off windows: substitute slots are measured only then.
    pub windows: bool,
    pub decisions: u64,
    pub hits: u64,
    pub ndcg: f64,
    pub buy_decisions: u64,
    pub buy_hits: u64,
    pub buy_ndcg: f64,
    pub slots: u64,
    pub substitute_slots: u64,
    pub repeated_ignored_slots: u64,
    pub repeated_unwanted_slots: u64,
    pub distinct_categories: u64,
    pub category_walls: u64,
    pub brand_walls: u64,
    pub long_tail: f64,
    pub violations: u64,
    pub degraded: u64,
}

/// `1 / log2(1 + rank)` for a 1-based rank, the gain of the single relevant item.
pub fn ndcg_gain(rank: usize) -> f64 {
    1.0 / (1.0 + rank as f64).log2()
}

/// Whether some known (non-zero) value occurs [`WALL`] times or more.
fn is_wall(values: &[u64]) -> bool {
    let mut known: Vec<u64> = values.iter().copied().filter(|v| *v != 0).collect();
    known.sort_unstable();
    known.chunk_by(|a, b| a == b).any(|run| run.len() >= WALL)
}

impl ArmMetrics {
    /// No lists yet, for a log with or without brands and a fit with or without cooling-off
    /// windows.
    pub fn new(brands: bool, windows: bool) -> Self {
        Self {
            brands,
            windows,
            ..Self::default()
        }
    }

    /// Adds one list: `next` is the item the user interacted with next, `next_buy` the item
    /// they buy next (if any), `head` the popularity threshold of the head.
    pub fn add(&mut self, slate: &Slate, next: u64, next_buy: Option<u64>, head: f64) {
        let rank = |item: u64| slate.items.iter().position(|i| *i == item).map(|p| p + 1);
        self.decisions += 1;
        if let Some(r) = rank(next) {
            self.hits += 1;
            self.ndcg += ndcg_gain(r);
        }
        if let Some(buy) = next_buy {
            self.buy_decisions += 1;
            if let Some(r) = rank(buy) {
                self.buy_hits += 1;
                self.buy_ndcg += ndcg_gain(r);
            }
        }
        let n = slate.items.len();
        self.slots += n as u64;
        self.substitute_slots += slate.substitutes as u64;
        self.repeated_ignored_slots += slate.repeated_ignored as u64;
        self.repeated_unwanted_slots += slate.repeated_unwanted as u64;
        let mut categories: Vec<u64> = slate
            .categories
            .iter()
            .copied()
            .filter(|c| *c != 0)
            .collect();
        categories.sort_unstable();
        categories.dedup();
        self.distinct_categories += categories.len() as u64;
        self.category_walls += u64::from(is_wall(&slate.categories));
        self.brand_walls += u64::from(is_wall(&slate.brands));
        self.long_tail += metrics::long_tail_share(&slate.popularity, head) * n as f64;
        self.violations += slate.violations as u64;
        self.degraded += u64::from(slate.degraded);
    }

    fn ratio(a: f64, b: u64) -> f64 {
        if b == 0 { 0.0 } else { a / b as f64 }
    }

    pub fn hit_rate(&self) -> f64 {
        Self::ratio(self.hits as f64, self.decisions)
    }
    pub fn ndcg(&self) -> f64 {
        Self::ratio(self.ndcg, self.decisions)
    }
    /// `None` when no decision had a later purchase by its user.
    pub fn buy_hit_rate(&self) -> Option<f64> {
        (self.buy_decisions > 0).then(|| Self::ratio(self.buy_hits as f64, self.buy_decisions))
    }
    pub fn buy_ndcg(&self) -> Option<f64> {
        (self.buy_decisions > 0).then(|| Self::ratio(self.buy_ndcg, self.buy_decisions))
    }
    /// `None` without cooling-off windows.
    pub fn substitute_share(&self) -> Option<f64> {
        self.windows
            .then(|| Self::ratio(self.substitute_slots as f64, self.slots))
    }
    pub fn repeated_ignored_share(&self) -> f64 {
        Self::ratio(self.repeated_ignored_slots as f64, self.slots)
    }
    pub fn repeated_unwanted_share(&self) -> f64 {
        Self::ratio(self.repeated_unwanted_slots as f64, self.slots)
    }
    pub fn categories_per_list(&self) -> f64 {
        Self::ratio(self.distinct_categories as f64, self.decisions)
    }
    pub fn category_wall_share(&self) -> f64 {
        Self::ratio(self.category_walls as f64, self.decisions)
    }
    /// `None` when the log has no brands.
    pub fn brand_wall_share(&self) -> Option<f64> {
        self.brands
            .then(|| Self::ratio(self.brand_walls as f64, self.decisions))
    }
    pub fn long_tail_share(&self) -> f64 {
        Self::ratio(self.long_tail, self.slots)
    }
}

/// What the simulated user said to the third arm.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackReport {
    pub sim: Simulation,
    pub ledger: Ledger,
}

/// A replay's outcome.
#[derive(Debug, Clone)]
pub struct Report {
    pub log: String,
    pub events: usize,
    /// Events before the split (the fitting part).
    pub fit_events: usize,
    pub fit_until_ms: i64,
    pub utc_offset_minutes: i32,
    pub fitted: Fitted,
    /// The baseline first, then the policy under test, then (with simulated feedback) the
    /// policy under test that heard the user's words.
    pub arms: Vec<(String, ArmMetrics)>,
    pub feedback: Option<FeedbackReport>,
    /// The source to cite with the results.
    pub source: String,
    pub seconds: f64,
}

/// How a metric is judged against its target.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Tested ≥ this share of the baseline.
    AtLeastShare(f64),
    /// Relative change ≤ this (e.g. −0.9).
    ChangeAtMost(f64),
    /// Relative change ≥ this.
    ChangeAtLeast(f64),
    /// Tested equal to this count.
    Exactly(f64),
    None,
}

/// How a target went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// The measure does not apply to this log, or the baseline gives nothing to compare with.
    NotApplicable,
}

/// (name, value or `None` for n/a, shown as a percentage, target).
type Row = (&'static str, fn(&ArmMetrics) -> Option<f64>, bool, Target);

const ROWS: &[Row] = &[
    (
        "HitRate@10, next interaction",
        |m| Some(m.hit_rate()),
        true,
        Target::AtLeastShare(0.95),
    ),
    (
        "NDCG@10, next interaction",
        |m| Some(m.ndcg()),
        false,
        Target::None,
    ),
    (
        "HitRate@10, next purchase",
        ArmMetrics::buy_hit_rate,
        true,
        Target::None,
    ),
    (
        "NDCG@10, next purchase",
        ArmMetrics::buy_ndcg,
        false,
        Target::None,
    ),
    (
        "substitute slots within cooling-off",
        ArmMetrics::substitute_share,
        true,
        Target::ChangeAtMost(-0.9),
    ),
    (
        "repeated ignored exposure (shown ≥ 3× unclicked)",
        |m| Some(m.repeated_ignored_share()),
        true,
        Target::ChangeAtMost(-0.8),
    ),
    (
        "repeated unwanted exposure (3rd+ showing, never engaged later)",
        |m| Some(m.repeated_unwanted_share()),
        true,
        Target::None,
    ),
    (
        "distinct categories per top-10",
        |m| Some(m.categories_per_list()),
        false,
        Target::ChangeAtLeast(0.5),
    ),
    (
        "category walls (lists with ≥ 5 of one category)",
        |m| Some(m.category_wall_share()),
        true,
        Target::None,
    ),
    (
        "brand walls (lists with ≥ 5 of one brand)",
        ArmMetrics::brand_wall_share,
        true,
        Target::None,
    ),
    (
        "long-tail share (outside top 20%)",
        |m| Some(m.long_tail_share()),
        true,
        Target::None,
    ),
    (
        "explicit-feedback violations",
        |m| Some(m.violations as f64),
        false,
        Target::Exactly(0.0),
    ),
    (
        "degraded answers",
        |m| Some(m.degraded as f64),
        false,
        Target::None,
    ),
];

/// Rows left out of the chart: counts, not shares.
const NOT_CHARTED: [&str; 2] = ["explicit-feedback violations", "degraded answers"];

fn show(v: Option<f64>, percent: bool) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if percent => format!("{:.2}%", v * 100.0),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn change(base: Option<f64>, tested: Option<f64>) -> Option<f64> {
    match (base, tested) {
        (Some(b), Some(t)) if b != 0.0 => Some(t / b - 1.0),
        _ => None,
    }
}

impl Report {
    fn pair(&self) -> (&ArmMetrics, &ArmMetrics) {
        (&self.arms[0].1, &self.arms[1].1)
    }

    /// Whether any explicit word reached an arm.
    fn words_given(&self) -> bool {
        self.feedback.as_ref().is_some_and(|f| f.ledger.words() > 0)
    }

    /// Each target: (metric, verdict, how it went). The violations target is judged on
    /// every arm under test, the one that heard simulated feedback included, and only when a
    /// word was given: a log without any cannot show a violation.
    pub fn targets(&self) -> Vec<(&'static str, Verdict, String)> {
        let (a, b) = self.pair();
        let mut out = Vec::new();
        for (name, value, _, target) in ROWS {
            if matches!(target, Target::None) {
                continue;
            }
            if let Target::Exactly(t) = *target {
                let worst = self.arms[1..]
                    .iter()
                    .filter_map(|(_, m)| value(m))
                    .fold(0.0, f64::max);
                out.push(if !self.words_given() {
                    (
                        *name,
                        Verdict::NotApplicable,
                        "n/a: no explicit feedback in this replay (--simulate-feedback)".into(),
                    )
                } else {
                    (
                        *name,
                        if worst == t {
                            Verdict::Met
                        } else {
                            Verdict::Missed
                        },
                        format!("{worst:.0} with simulated feedback (target {t:.0})"),
                    )
                });
                continue;
            }
            let (Some(va), Some(vb)) = (value(a), value(b)) else {
                out.push((
                    *name,
                    Verdict::NotApplicable,
                    "n/a: not measured on this log".into(),
                ));
                continue;
            };
            let pct = |x: f64| format!("{:+.1}%", x * 100.0);
            let judged =
                |met: bool, text: String| (if met { Verdict::Met } else { Verdict::Missed }, text);
            let (verdict, text) = match (*target, change(Some(va), Some(vb))) {
                (Target::None | Target::Exactly(_), _) => unreachable!("judged above"),
                (_, None) => (
                    Verdict::NotApplicable,
                    "n/a: the baseline is 0, nothing to compare with".into(),
                ),
                (Target::AtLeastShare(s), Some(_)) => judged(
                    vb >= s * va,
                    format!(
                        "{:.1}% of the baseline (target ≥ {:.0}%)",
                        vb / va * 100.0,
                        s * 100.0
                    ),
                ),
                (Target::ChangeAtMost(t), Some(c)) => {
                    judged(c <= t, format!("{} (target {} or better)", pct(c), pct(t)))
                }
                (Target::ChangeAtLeast(t), Some(c)) => {
                    judged(c >= t, format!("{} (target {} or better)", pct(c), pct(t)))
                }
            };
            out.push((*name, verdict, text));
        }
        out
    }

    /// The machine-readable report: the log, the split, what the fit learned, and per arm
    /// (`identity`; `policy`, the policy under test; `policy_with_feedback` when feedback is
    /// simulated) every measure, shares as fractions in [0, 1] and `null` where a measure does
    /// not apply.
    pub fn json(&self) -> Value {
        let (a, b) = self.pair();
        let mut arms = serde_json::Map::new();
        for (key, (name, m)) in ["identity", "policy", "policy_with_feedback"]
            .into_iter()
            .zip(&self.arms)
        {
            arms.insert(key.into(), arm_json(name, m));
        }
        json!({
            "log": self.log,
            "events": self.events,
            "fit_events": self.fit_events,
            "fit_until_ms": self.fit_until_ms,
            "decisions": a.decisions,
            "purchase_decisions": a.buy_decisions,
            "fitted": {
                "purchases": self.fitted.purchases,
                "buyers": self.fitted.buyers,
                "durable_categories": self.fitted.durables.len(),
                "complement_pairs": self.fitted.complements.len(),
            },
            "arms": arms,
            "hit_rate_kept": (a.hit_rate() > 0.0).then(|| b.hit_rate() / a.hit_rate()),
            "feedback": self.feedback.as_ref().map(|f| {
                let heard = &self.arms[2].1;
                json!({
                    "share": f.sim.share,
                    "seed": f.sim.seed,
                    "words": {
                        "not_interested": f.ledger.not_interested_words,
                        "fewer_like_this": f.ledger.fewer_like_this_words,
                        "block_brand": f.ledger.block_brand_words,
                    },
                    "refused": f.ledger.refused,
                    "violations": heard.violations,
                    "hit_rate_without": b.hit_rate(),
                    "hit_rate_with": heard.hit_rate(),
                    "hit_rate_change": change(Some(b.hit_rate()), Some(heard.hit_rate())),
                })
            }),
            "seconds": self.seconds,
        })
    }

    /// The Markdown report.
    pub fn markdown(&self, command: &str) -> String {
        let (a, b) = self.pair();
        let mut s = String::new();
        let _ = writeln!(s, "# Offline replay: {}\n", self.log);
        let _ = writeln!(s, "Reproduce with:\n\n```sh\n{command}\n```\n");
        let _ = writeln!(
            s,
            "{} events; the first {} (before {} at UTC{:+}) fit the policy, decisions are measured on the remaining {}. {} decisions ({} with a later purchase by the user). Run time {:.1} s.\n",
            self.events,
            self.fit_events,
            local_time(self.fit_until_ms, self.utc_offset_minutes),
            self.utc_offset_minutes / 60,
            self.events - self.fit_events,
            a.decisions,
            a.buy_decisions,
            self.seconds
        );
        let f = &self.fitted;
        let _ = writeln!(
            s,
            "Fitted on the first part: {} purchases by {} users in {} categories → {} durable categories (cooling-off cycles), {} complement pairs.{}\n",
            f.purchases,
            f.buyers,
            f.categories_bought,
            f.durables.len(),
            f.complements.len(),
            if f.learned_nothing() {
                " The fit learned nothing: a fitted policy is the built-in default."
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "| metric | {} | {} | change | target |",
            self.arms[0].0, self.arms[1].0
        );
        s.push_str("|---|---:|---:|---:|---|\n");
        let targets = self.targets();
        for (name, value, percent, _) in ROWS {
            let (va, vb) = (value(a), value(b));
            let c = change(va, vb).map_or("—".into(), |c| format!("{:+.1}%", c * 100.0));
            let t = targets
                .iter()
                .find(|t| t.0 == *name)
                .map_or(String::new(), |t| match t.1 {
                    Verdict::Met => format!("met: {}", t.2),
                    Verdict::Missed => format!("MISSED: {}", t.2),
                    Verdict::NotApplicable => t.2.clone(),
                });
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {c} | {t} |",
                show(va, *percent),
                show(vb, *percent)
            );
        }
        s.push('\n');
        if let Some(f) = &self.feedback {
            self.feedback_markdown(f, &mut s);
        }
        s
    }

    /// The section on simulated feedback: what was said, and the policy with and without it.
    fn feedback_markdown(&self, f: &FeedbackReport, s: &mut String) {
        let (b, heard) = (&self.arms[1], &self.arms[2]);
        let l = &f.ledger;
        let _ = writeln!(
            s,
            "## Simulated explicit feedback\n\nOn {:.1}% of the shown items the user ignored (not opened then, never engaged with later in the log), the simulated user (seed {}) said \"not interested\" ({}), \"fewer like this\" on the category ({}) or blocked the brand ({}); {} words were refused by the user state's cap. The words reached the `{}` arm, as the events the server accepts, at the moment of the list.\n",
            f.sim.share * 100.0,
            f.sim.seed,
            l.not_interested_words,
            l.fewer_like_this_words,
            l.block_brand_words,
            l.refused,
            heard.0
        );
        let _ = writeln!(s, "| metric | {} | {} | change |", b.0, heard.0);
        s.push_str("|---|---:|---:|---:|\n");
        for (name, value, percent, _) in ROWS {
            let (vb, vh) = (value(&b.1), value(&heard.1));
            let c = change(vb, vh).map_or("—".into(), |c| format!("{:+.1}%", c * 100.0));
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {c} |",
                show(vb, *percent),
                show(vh, *percent)
            );
        }
        s.push('\n');
    }

    /// A grouped bar chart: per metric that applies to the log, both arms' values scaled to
    /// the larger of the two.
    pub fn svg(&self) -> String {
        const W: f64 = 860.0;
        const LABEL: f64 = 370.0;
        const BAR: f64 = 370.0;
        const ROW: f64 = 54.0;
        const TOP: f64 = 92.0;
        let (a, b) = self.pair();
        let rows: Vec<(&Row, f64, f64)> = ROWS
            .iter()
            .filter(|r| !NOT_CHARTED.contains(&r.0))
            .filter_map(|r| Some((r, r.1(a)?, r.1(b)?)))
            .collect();
        let h = TOP + ROW * rows.len() as f64 + 40.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="Helvetica, Arial, sans-serif">"#
        );
        let _ = writeln!(s, r##"<rect width="{W}" height="{h}" fill="#ffffff"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="20" y="32" font-size="19" font-weight="bold" fill="#1a1a1a">Offline replay: {}</text>"##,
            escape(&self.log)
        );
        let _ = writeln!(
            s,
            r##"<text x="20" y="54" font-size="12.5" fill="#555555">{} decisions on the evaluation part; bars scaled per metric to the larger arm</text>"##,
            a.decisions
        );
        for (i, (name, color)) in [(&self.arms[0].0, "#9e9e9e"), (&self.arms[1].0, "#2b6cb0")]
            .into_iter()
            .enumerate()
        {
            let x = LABEL + i as f64 * 160.0;
            let _ = writeln!(
                s,
                r##"<rect x="{x}" y="64" width="14" height="14" fill="{color}"/><text x="{}" y="76" font-size="13" fill="#1a1a1a">{}</text>"##,
                x + 20.0,
                escape(name)
            );
        }
        for (r, ((name, _, percent, _), va, vb)) in rows.iter().enumerate() {
            let y = TOP + r as f64 * ROW;
            let max = va.max(*vb);
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" font-size="13" text-anchor="end" fill="#1a1a1a">{}</text>"##,
                LABEL - 12.0,
                y + 26.0,
                escape(name)
            );
            for (i, (v, color)) in [(*va, "#9e9e9e"), (*vb, "#2b6cb0")].into_iter().enumerate() {
                let by = y + 6.0 + i as f64 * 20.0;
                let w = if max > 0.0 { v / max * BAR } else { 0.0 };
                let _ = writeln!(
                    s,
                    r##"<rect x="{LABEL}" y="{by}" width="{w:.1}" height="17" fill="{color}"/><text x="{:.1}" y="{}" font-size="12" fill="#333333">{}</text>"##,
                    LABEL + w + 6.0,
                    by + 13.0,
                    show(Some(v), *percent)
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="20" y="{}" font-size="12" fill="#666666">Explicit-feedback violations: {} / {}; degraded answers: {} / {}. Data: {}.</text>"##,
            h - 16.0,
            a.violations,
            b.violations,
            a.degraded,
            b.degraded,
            escape(&self.source)
        );
        s.push_str("</svg>\n");
        s
    }
}

/// One arm's measures as JSON; `null` where a measure does not apply.
fn arm_json(name: &str, m: &ArmMetrics) -> Value {
    json!({
        "name": name,
        "decisions": m.decisions,
        "hit_rate": m.hit_rate(),
        "ndcg": m.ndcg(),
        "purchase_hit_rate": m.buy_hit_rate(),
        "purchase_ndcg": m.buy_ndcg(),
        "repeated_ignored_exposure": m.repeated_ignored_share(),
        "repeated_unwanted_exposure": m.repeated_unwanted_share(),
        "categories_per_list": m.categories_per_list(),
        "walls_category": m.category_wall_share(),
        "walls_brand": m.brand_wall_share(),
        "long_tail_share": m.long_tail_share(),
        "substitute_slots": m.substitute_share(),
        "feedback_violations": m.violations,
        "degraded": m.degraded,
    })
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// "2017-12-01 00:00" in local time at the offset.
fn local_time(ms: i64, utc_offset_minutes: i32) -> String {
    crate::time::date_time_minutes(ms, utc_offset_minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_counts_every_metric() {
        let mut m = ArmMetrics::new(true, true);
        let slate = Slate {
            items: vec![1, 2, 3, 4],
            categories: vec![10, 10, 20, 0],
            brands: vec![0; 4],
            popularity: vec![9, 9, 1, 0],
            repeated_ignored: 1,
            repeated_unwanted: 1,
            substitutes: 2,
            violations: 0,
            degraded: false,
        };
        // Next interaction at rank 2, next purchase not shown; head = popularity ≥ 9.
        m.add(&slate, 2, Some(7), 9.0);
        assert_eq!(m.hit_rate(), 1.0);
        assert!((m.ndcg() - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!((m.buy_decisions, m.buy_hit_rate()), (1, Some(0.0)));
        assert_eq!(m.substitute_share(), Some(0.5));
        assert_eq!(m.repeated_ignored_share(), 0.25);
        assert_eq!(m.repeated_unwanted_share(), 0.25);
        assert_eq!(
            m.categories_per_list(),
            2.0,
            "unknown (0) is not a category"
        );
        assert_eq!(m.long_tail_share(), 0.5);
        assert_eq!(
            (m.category_wall_share(), m.brand_wall_share()),
            (0.0, Some(0.0)),
            "four items are no wall, and unknown brands are none"
        );
        // A miss and no later purchase.
        m.add(&slate, 99, None, 9.0);
        assert_eq!((m.hit_rate(), m.buy_decisions), (0.5, 1));
        assert_eq!(ndcg_gain(1), 1.0);
    }

    #[test]
    fn walls_are_five_of_one_category_or_brand() {
        let mut m = ArmMetrics::new(true, false);
        let mut slate = Slate {
            items: (1..=10).collect(),
            categories: vec![1, 1, 2, 1, 3, 1, 4, 1, 5, 6],
            brands: vec![7, 7, 7, 7, 8, 8, 0, 0, 0, 0],
            popularity: vec![0; 10],
            ..Slate::default()
        };
        m.add(&slate, 0, None, 1.0);
        slate.categories = vec![1, 1, 1, 1, 2, 2, 2, 2, 3, 3];
        slate.brands = vec![7, 7, 7, 7, 7, 8, 8, 8, 8, 8];
        m.add(&slate, 0, None, 1.0);
        assert_eq!((m.category_walls, m.brand_walls), (1, 1));
        assert_eq!(m.category_wall_share(), 0.5);
        assert_eq!(m.brand_wall_share(), Some(0.5));
        assert_eq!(m.substitute_share(), None, "no cooling-off window: n/a");
        assert_eq!(m.buy_hit_rate(), None, "no later purchase: n/a");
        assert_eq!(ArmMetrics::new(false, false).brand_wall_share(), None);
    }

    #[test]
    fn a_target_that_cannot_be_judged_is_never_met() {
        let arm = |substitutes: u64, ignored: u64| ArmMetrics {
            decisions: 10,
            hits: 1,
            slots: 100,
            substitute_slots: substitutes,
            repeated_ignored_slots: ignored,
            ..ArmMetrics::new(false, false)
        };
        let report = |a: ArmMetrics, b: ArmMetrics| Report {
            log: "l".into(),
            events: 0,
            fit_events: 0,
            fit_until_ms: 0,
            utc_offset_minutes: 0,
            fitted: Fitted::default(),
            arms: vec![("identity".into(), a), ("p".into(), b)],
            feedback: None,
            source: String::new(),
            seconds: 0.0,
        };
        let r = report(arm(5, 0), arm(0, 0));
        let verdict = |r: &Report, name: &str| {
            r.targets()
                .into_iter()
                .find(|t| t.0.starts_with(name))
                .map(|t| (t.1, t.2))
                .unwrap()
        };
        assert_eq!(
            verdict(&r, "substitute slots").0,
            Verdict::NotApplicable,
            "without windows"
        );
        let (v, text) = verdict(&r, "repeated ignored");
        assert_eq!(v, Verdict::NotApplicable, "the baseline has none");
        assert!(text.contains("baseline is 0"), "{text}");
        let md = r.markdown("x");
        assert!(
            md.contains("| substitute slots within cooling-off | n/a | n/a | — | n/a: not measured on this log |"),
            "{md}"
        );
        assert!(md.contains("| brand walls (lists with ≥ 5 of one brand) | n/a | n/a |"));
        assert!(
            md.contains("| explicit-feedback violations | 0 | 0 | — | n/a: no explicit feedback"),
            "no word, no vacuous met: {md}"
        );
        let json = r.json();
        assert!(json["arms"]["policy"]["substitute_slots"].is_null());
        assert!(json["arms"]["policy"]["walls_brand"].is_null());
        assert!(json["arms"]["policy"]["purchase_hit_rate"].is_null());
        assert!(r.svg().contains("Offline replay"));
    }

    #[test]
    fn local_time_is_printed_at_the_offset() {
        let ms = super::super::local_midnight_ms("2017-12-01", 480).unwrap();
        assert_eq!(ms, 1_512_057_600_000);
        assert_eq!(local_time(ms, 480), "2017-12-01 00:00");
    }
}

//! What a replay measures per arm, and how it is written: a Markdown table and an SVG chart.
//!
//! Per decision (one top-k list):
//! - **HitRate@k / NDCG@k of the next interaction**: whether the item the user opens next is
//!   in the list, and `1 / log2(1 + rank)` if so (one relevant item, so the ideal DCG is 1);
//! - **the same for the next purchase**, over decisions of users who buy again later in the
//!   log (the purchased item, wherever it comes from);
//! - **substitute slots**: slots whose category is that of an item the user bought within the
//!   category's cooling-off window (the fitted cycles, the same for both arms), as a share of
//!   all slots;
//! - **repeated ignored exposure**: slots showing an item this arm has already shown the user
//!   3 or more times since the user last interacted with it;
//! - **distinct categories** per list;
//! - **long-tail share**: slots whose item is outside the 20% most popular items of the
//!   fitting part (`rank::metrics`);
//! - **explicit-feedback violations**: slots showing an item the user said "not interested"
//!   in (blocked brands and shops cannot occur without brands or shops in the log);
//! - **degraded answers**: lists that fell back to the upstream order.

use std::fmt::Write as _;

use super::fit::Fitted;
use crate::rank::metrics;

/// One list an arm showed, as the metrics need it.
#[derive(Debug, Clone, Default)]
pub struct Slate {
    pub items: Vec<u64>,
    pub categories: Vec<u64>,
    /// Interactions with each item in the fitting part.
    pub popularity: Vec<u32>,
    pub repeated_ignored: usize,
    pub substitutes: usize,
    pub violations: usize,
    pub degraded: bool,
}

/// Running sums of one arm's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmMetrics {
    pub decisions: u64,
    pub hits: u64,
    pub ndcg: f64,
    pub buy_decisions: u64,
    pub buy_hits: u64,
    pub buy_ndcg: f64,
    pub slots: u64,
    pub substitute_slots: u64,
    pub repeated_ignored_slots: u64,
    pub distinct_categories: u64,
    pub long_tail: f64,
    pub violations: u64,
    pub degraded: u64,
}

/// `1 / log2(1 + rank)` for a 1-based rank, the gain of the single relevant item.
pub fn ndcg_gain(rank: usize) -> f64 {
    1.0 / (1.0 + rank as f64).log2()
}

impl ArmMetrics {
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
        let mut categories: Vec<u64> = slate
            .categories
            .iter()
            .copied()
            .filter(|c| *c != 0)
            .collect();
        categories.sort_unstable();
        categories.dedup();
        self.distinct_categories += categories.len() as u64;
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
    pub fn buy_hit_rate(&self) -> f64 {
        Self::ratio(self.buy_hits as f64, self.buy_decisions)
    }
    pub fn buy_ndcg(&self) -> f64 {
        Self::ratio(self.buy_ndcg, self.buy_decisions)
    }
    pub fn substitute_share(&self) -> f64 {
        Self::ratio(self.substitute_slots as f64, self.slots)
    }
    pub fn repeated_ignored_share(&self) -> f64 {
        Self::ratio(self.repeated_ignored_slots as f64, self.slots)
    }
    pub fn categories_per_list(&self) -> f64 {
        Self::ratio(self.distinct_categories as f64, self.decisions)
    }
    pub fn long_tail_share(&self) -> f64 {
        Self::ratio(self.long_tail, self.slots)
    }
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
    /// The baseline first, then the policy under test.
    pub arms: Vec<(String, ArmMetrics)>,
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

/// (name, value, shown as a percentage, target).
type Row = (&'static str, fn(&ArmMetrics) -> f64, bool, Target);

const ROWS: &[Row] = &[
    (
        "HitRate@10, next interaction",
        ArmMetrics::hit_rate,
        true,
        Target::AtLeastShare(0.95),
    ),
    (
        "NDCG@10, next interaction",
        ArmMetrics::ndcg,
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
        ArmMetrics::repeated_ignored_share,
        true,
        Target::ChangeAtMost(-0.8),
    ),
    (
        "distinct categories per top-10",
        ArmMetrics::categories_per_list,
        false,
        Target::ChangeAtLeast(0.5),
    ),
    (
        "long-tail share (outside top 20%)",
        ArmMetrics::long_tail_share,
        true,
        Target::None,
    ),
    (
        "explicit-feedback violations",
        |m| m.violations as f64,
        false,
        Target::Exactly(0.0),
    ),
    (
        "degraded answers",
        |m| m.degraded as f64,
        false,
        Target::None,
    ),
];

fn show(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.2}%", v * 100.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn change(base: f64, tested: f64) -> Option<f64> {
    (base != 0.0).then(|| tested / base - 1.0)
}

impl Report {
    fn pair(&self) -> (&ArmMetrics, &ArmMetrics) {
        (&self.arms[0].1, &self.arms[1].1)
    }

    /// Each target: (metric, met, how it went).
    pub fn targets(&self) -> Vec<(&'static str, bool, String)> {
        let (a, b) = self.pair();
        let mut out = Vec::new();
        for (name, value, _, target) in ROWS {
            let (va, vb) = (value(a), value(b));
            let c = change(va, vb);
            let pct = |x: f64| format!("{:+.1}%", x * 100.0);
            let (met, text) = match *target {
                Target::None => continue,
                Target::AtLeastShare(s) => (
                    va == 0.0 || vb >= s * va,
                    format!(
                        "{:.1}% of the baseline (target ≥ {:.0}%)",
                        if va == 0.0 { 100.0 } else { vb / va * 100.0 },
                        s * 100.0
                    ),
                ),
                Target::ChangeAtMost(t) => match c {
                    Some(c) => (c <= t, format!("{} (target {} or better)", pct(c), pct(t))),
                    None => (true, "the baseline has none: nothing to remove".into()),
                },
                Target::ChangeAtLeast(t) => match c {
                    Some(c) => (c >= t, format!("{} (target {} or better)", pct(c), pct(t))),
                    None => (false, "the baseline is 0".into()),
                },
                Target::Exactly(t) => (vb == t, format!("{vb:.0} (target {t:.0})")),
            };
            out.push((*name, met, text));
        }
        out
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
            "Fitted on the first part: {} purchases by {} users in {} categories → {} durable categories (cooling-off cycles), {} complement pairs.\n",
            f.purchases,
            f.buyers,
            f.categories_bought,
            f.durables.len(),
            f.complements.len()
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
                .map_or(String::new(), |t| {
                    format!("{} {}", if t.1 { "met:" } else { "MISSED:" }, t.2)
                });
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {c} | {t} |",
                show(va, *percent),
                show(vb, *percent)
            );
        }
        s.push('\n');
        s
    }

    /// A grouped bar chart: per metric, both arms' values scaled to the larger of the two.
    pub fn svg(&self) -> String {
        const W: f64 = 860.0;
        const LABEL: f64 = 370.0;
        const BAR: f64 = 370.0;
        const ROW: f64 = 54.0;
        const TOP: f64 = 92.0;
        let (a, b) = self.pair();
        let rows: Vec<&Row> = ROWS.iter().take(8).collect();
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
        for (r, (name, value, percent, _)) in rows.iter().enumerate() {
            let y = TOP + r as f64 * ROW;
            let (va, vb) = (value(a), value(b));
            let max = va.max(vb);
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" font-size="13" text-anchor="end" fill="#1a1a1a">{}</text>"##,
                LABEL - 12.0,
                y + 26.0,
                escape(name)
            );
            for (i, (v, color)) in [(va, "#9e9e9e"), (vb, "#2b6cb0")].into_iter().enumerate() {
                let by = y + 6.0 + i as f64 * 20.0;
                let w = if max > 0.0 { v / max * BAR } else { 0.0 };
                let _ = writeln!(
                    s,
                    r##"<rect x="{LABEL}" y="{by}" width="{w:.1}" height="17" fill="{color}"/><text x="{:.1}" y="{}" font-size="12" fill="#333333">{}</text>"##,
                    LABEL + w + 6.0,
                    by + 13.0,
                    show(v, *percent)
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
            if self.log.to_ascii_lowercase().contains("movielens") {
                "MovieLens 100K (Harper &amp; Konstan, ACM TiiS 2015)"
            } else {
                "Taobao UserBehavior (Zhu et al., KDD 2018)"
            }
        );
        s.push_str("</svg>\n");
        s
    }
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
        let mut m = ArmMetrics::default();
        let slate = Slate {
            items: vec![1, 2, 3, 4],
            categories: vec![10, 10, 20, 0],
            popularity: vec![9, 9, 1, 0],
            repeated_ignored: 1,
            substitutes: 2,
            violations: 0,
            degraded: false,
        };
        // Next interaction at rank 2, next purchase not shown; head = popularity ≥ 9.
        m.add(&slate, 2, Some(7), 9.0);
        assert_eq!(m.hit_rate(), 1.0);
        assert!((m.ndcg() - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!((m.buy_decisions, m.buy_hit_rate()), (1, 0.0));
        assert_eq!(m.substitute_share(), 0.5);
        assert_eq!(m.repeated_ignored_share(), 0.25);
        assert_eq!(
            m.categories_per_list(),
            2.0,
            "unknown (0) is not a category"
        );
        assert_eq!(m.long_tail_share(), 0.5);
        // A miss and no later purchase.
        m.add(&slate, 99, None, 9.0);
        assert_eq!((m.hit_rate(), m.buy_decisions), (0.5, 1));
        assert_eq!(ndcg_gain(1), 1.0);
    }

    #[test]
    fn local_time_is_printed_at_the_offset() {
        let ms = super::super::local_midnight_ms("2017-12-01", 480).unwrap();
        assert_eq!(ms, 1_512_057_600_000);
        assert_eq!(local_time(ms, 480), "2017-12-01 00:00");
    }
}

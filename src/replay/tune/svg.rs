//! The frontier chart of a tune, written by hand like the replay's own chart (`report.rs`):
//! two panels sharing the x axis, relevance kept (the variant's HitRate@10 over identity's),
//! against repeated ignored exposure removed (left) and the change in distinct categories per
//! list (right). Per family, every variant is a dot and the family's frontier a line; identity
//! sits at (100%, 0), the fitted policy and the pick are marked, and the `min_kept` bound is
//! a dashed line. The x axis reaches at most [`SPAN_BELOW_BOUND`] below the bound: variants
//! that keep less are far from any choice and would squeeze the rest; they are clipped, and
//! the subtitle counts them.

use std::fmt::Write as _;

use super::{Axis, Family, Tuning, frontier};
use crate::replay::report::escape;

const W: f64 = 1200.0;
const H: f64 = 640.0;
const TOP: f64 = 96.0;
const PLOT_W: f64 = 470.0;
const PLOT_H: f64 = 380.0;
const LEFT: [f64; 2] = [90.0, 690.0];
/// How far below the `min_kept` bound the x axis reaches, at most.
pub const SPAN_BELOW_BOUND: f64 = 0.25;

fn color(f: Family) -> &'static str {
    match f {
        Family::Tuned => "#2b6cb0",
        Family::FrequencyCap => "#d69e2e",
        Family::Fatigue => "#38a169",
        Family::Mmr => "#805ad5",
        Family::Dpp => "#e53e3e",
    }
}

/// A tick step giving at most 8 ticks over `span`.
fn step(span: f64) -> f64 {
    [0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0]
        .into_iter()
        .find(|s| span / s <= 8.0)
        .unwrap_or(10.0)
}

/// `[lo, hi]` widened to whole steps, containing `must`.
fn domain(values: impl Iterator<Item = f64>, must: &[f64]) -> (f64, f64, f64) {
    let (mut lo, mut hi) = must
        .iter()
        .copied()
        .chain(values)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi - lo < 0.05 {
        hi = lo + 0.05;
    }
    let s = step(hi - lo);
    lo = (lo / s - 1e-9).floor() * s;
    hi = (hi / s + 1e-9).ceil() * s;
    (lo, hi, s)
}

struct Panel {
    left: f64,
    x: (f64, f64, f64),
    y: (f64, f64, f64),
}

impl Panel {
    fn px(&self, v: f64) -> f64 {
        self.left + (v - self.x.0) / (self.x.1 - self.x.0) * PLOT_W
    }
    fn py(&self, v: f64) -> f64 {
        TOP + PLOT_H - (v - self.y.0) / (self.y.1 - self.y.0) * PLOT_H
    }
}

fn ticks((lo, hi, s): (f64, f64, f64)) -> Vec<f64> {
    let n = ((hi - lo) / s).round() as i64;
    (0..=n).map(|i| lo + i as f64 * s).collect()
}

pub fn frontier_chart(t: &Tuning) -> String {
    let measures: [(&str, Axis); 2] = [
        (
            "repeated ignored exposure removed (shown ≥ 3× unclicked)",
            |m| m.ignored_removed,
        ),
        ("distinct categories per top-10, change", |m| {
            m.categories_gain
        }),
    ];
    let floor = t.min_kept - SPAN_BELOW_BOUND;
    let shown = |kept: f64| kept >= floor;
    let x = domain(
        t.points
            .iter()
            .map(|p| p.measures.kept)
            .filter(|&k| shown(k)),
        // Room right of identity (100%) for its label.
        &[1.01, t.min_kept],
    );
    let off_chart = t.points.iter().filter(|p| !shown(p.measures.kept)).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="20" y="32" font-size="19" font-weight="bold" fill="#1a1a1a">Relevance kept against avoidance removed: {}</text>"##,
        escape(&t.log)
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="54" font-size="12.5" fill="#555555">Inner evaluation part: the fitting part's last {:.0}% of events, from {} ({} decisions), each of {} variants against identity.{}</text>"##,
        (1.0 - t.inner_share) * 100.0,
        crate::time::date_time_minutes(t.inner_until_ms, t.utc_offset_minutes),
        t.identity.decisions,
        t.points.len(),
        if off_chart > 0 {
            format!(
                " {off_chart} keeping under {:.0}% are off the chart.",
                floor * 100.0
            )
        } else {
            String::new()
        }
    );
    for (panel_index, (title, y_of)) in measures.iter().enumerate() {
        let y = domain(
            t.points
                .iter()
                .filter(|p| shown(p.measures.kept))
                .map(|p| y_of(&p.measures)),
            &[0.0],
        );
        let p = Panel {
            left: LEFT[panel_index],
            x,
            y,
        };
        let (x0, x1, y0, y1) = (p.left, p.left + PLOT_W, TOP, TOP + PLOT_H);
        // Grid and ticks.
        for v in ticks(p.y) {
            let py = p.py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="{}" stroke-width="1"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#555555">{:+.0}%</text>"##,
                if v.abs() < 1e-9 { "#999999" } else { "#eeeeee" },
                x0 - 6.0,
                py + 4.0,
                v * 100.0
            );
        }
        for v in ticks(p.x) {
            let px = p.px(v);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{y1}" stroke="#eeeeee" stroke-width="1"/><text x="{px:.1}" y="{}" font-size="11" text-anchor="middle" fill="#555555">{:.0}%</text>"##,
                y1 + 16.0,
                v * 100.0
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#999999"/>"##
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="12.5" text-anchor="middle" fill="#1a1a1a">HitRate@10 kept (share of identity's)</text>"##,
            x0 + PLOT_W / 2.0,
            y1 + 36.0
        );
        let _ = writeln!(
            s,
            r##"<text transform="translate({},{:.1}) rotate(-90)" font-size="12.5" text-anchor="middle" fill="#1a1a1a">{}</text>"##,
            x0 - 48.0,
            y0 + PLOT_H / 2.0,
            escape(title)
        );
        // The bound.
        let bx = p.px(t.min_kept);
        let _ = writeln!(
            s,
            r##"<line x1="{bx:.1}" y1="{y0}" x2="{bx:.1}" y2="{y1}" stroke="#1a1a1a" stroke-width="1.2" stroke-dasharray="5,4"/><text x="{:.1}" y="{}" font-size="11" fill="#1a1a1a">≥ {:.0}% kept</text>"##,
            bx + 4.0,
            y0 + 14.0,
            t.min_kept * 100.0
        );
        // Families: the tuned grid's cloud under everything, then each frontier, clipped to
        // the plot.
        let _ = writeln!(
            s,
            r##"<clipPath id="plot{panel_index}"><rect x="{x0}" y="{y0}" width="{PLOT_W}" height="{PLOT_H}"/></clipPath><g clip-path="url(#plot{panel_index})">"##
        );
        for family in Family::ALL {
            let members: Vec<usize> = (0..t.points.len())
                .filter(|&i| t.points[i].variant.family == family)
                .collect();
            let xy: Vec<(f64, f64)> = members
                .iter()
                .map(|&i| (t.points[i].measures.kept, y_of(&t.points[i].measures)))
                .collect();
            let (r, opacity) = if family == Family::Tuned {
                (2.5, 0.3)
            } else {
                (3.0, 0.55)
            };
            for &(a, b) in &xy {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{}" fill-opacity="{opacity}"/>"##,
                    p.px(a),
                    p.py(b),
                    color(family)
                );
            }
            let line: Vec<String> = frontier(&xy)
                .into_iter()
                .map(|f| format!("{:.1},{:.1}", p.px(xy[f].0), p.py(xy[f].1)))
                .collect();
            let width = if family == Family::Tuned { 2.5 } else { 1.8 };
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="{width}" stroke-linejoin="round"/>"##,
                line.join(" "),
                color(family)
            );
            for point in &line {
                let (cx, cy) = point.split_once(',').expect("x,y");
                let _ = writeln!(
                    s,
                    r##"<circle cx="{cx}" cy="{cy}" r="3.5" fill="{}" stroke="#ffffff" stroke-width="1"/>"##,
                    color(family)
                );
            }
        }
        // Identity, the fitted policy, the pick.
        let (ix, iy) = (p.px(1.0), p.py(0.0));
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="9" height="9" fill="#9e9e9e" stroke="#1a1a1a"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555555">identity</text>"##,
            ix - 4.5,
            iy - 4.5,
            ix + 8.0,
            iy + 15.0
        );
        if let Some(f) = t.fitted_point {
            let m = &t.points[f].measures;
            let (fx, fy) = (p.px(m.kept), p.py(y_of(m)));
            let _ = writeln!(
                s,
                r##"<path d="M {fx:.1} {:.1} L {:.1} {fy:.1} L {fx:.1} {:.1} L {:.1} {fy:.1} Z" fill="#ffffff" stroke="#1a1a1a" stroke-width="1.5"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#1a1a1a">fitted</text>"##,
                fy - 6.0,
                fx + 6.0,
                fy + 6.0,
                fx - 6.0,
                fx + 8.0,
                fy + 14.0
            );
        }
        let m = &t.picked_point().measures;
        let (px, py) = (p.px(m.kept), p.py(y_of(m)));
        let _ = writeln!(
            s,
            r##"<circle cx="{px:.1}" cy="{py:.1}" r="7.5" fill="none" stroke="#1a1a1a" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold" fill="#1a1a1a">{}</text>"##,
            px + 10.0,
            py - 8.0,
            if t.picked.met {
                "picked"
            } else {
                "picked (missed)"
            }
        );
        s.push_str("</g>\n");
    }
    // Legend.
    let legend_y = TOP + PLOT_H + 64.0;
    let mut lx = LEFT[0];
    for family in Family::ALL {
        let name = escape(family.name());
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="2.5"/><circle cx="{}" cy="{legend_y}" r="3.5" fill="{}"/><text x="{}" y="{}" font-size="12.5" fill="#1a1a1a">{name}</text>"##,
            lx + 24.0,
            color(family),
            lx + 12.0,
            color(family),
            lx + 30.0,
            legend_y + 4.5
        );
        lx += 42.0 + 7.0 * family.name().chars().count() as f64;
    }
    let picked = t.picked_point();
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="12.5" fill="#1a1a1a">Picked: {} ({:.1}% kept, {:.1}% of repeated ignored exposure removed, categories {:+.1}%).</text>"##,
        LEFT[0],
        legend_y + 28.0,
        escape(&picked.label()),
        picked.measures.kept * 100.0,
        picked.measures.ignored_removed * 100.0,
        picked.measures.categories_gain * 100.0
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" font-size="12" fill="#666666">Lines: each family's frontier (no variant of the family keeps more and removes more). Baselines turn every other rule off. Data: {}.</text>"##,
        H - 16.0,
        if t.log.to_ascii_lowercase().contains("movielens") {
            "MovieLens 100K (Harper &amp; Konstan, ACM TiiS 2015)"
        } else {
            "Taobao UserBehavior (Zhu et al., KDD 2018)"
        }
    );
    s.push_str("</svg>\n");
    s
}

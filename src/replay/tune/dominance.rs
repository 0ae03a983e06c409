//! Whether the combination buys anything: the tuned family's frontier against each
//! single-rule baseline's. A baseline is dominated on an avoidance measure when, for every
//! baseline variant keeping at least [`FLOOR`] of identity's HitRate, some variant of the
//! tuned family keeps as much relevance and removes as much of that avoidance, each within
//! [`super::TIE`] (a point: the tune's own tolerance for noise). Identity (every rule off:
//! all of the relevance, none of the avoidance removed) counts as a point of the tuned
//! family, as of every family: a baseline variant that removes nothing is beaten by doing
//! nothing.

use std::fmt::Write as _;

use super::{Axis, Family, Measures, TIE, Tuning, pct};

/// The relevance kept from which baselines are compared: 90%, the region a platform would
/// consider (the pick itself needs `--min-kept`, 95% by default).
pub const FLOOR: f64 = 0.9;

/// The avoidance measures compared, with their names in the report.
pub const MEASURES: [(&str, Axis); 2] = [
    ("repeated ignored exposure removed", |m| m.ignored_removed),
    ("categories per top-10 gained", |m| m.categories_gain),
];

/// Where the tuned family falls short of a baseline variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shortfall {
    /// The baseline variant's measures.
    pub baseline: Measures,
    /// The most the tuned family removes (or gains) while keeping at least as much relevance;
    /// `None` when no tuned variant keeps that much.
    pub best_tuned: Option<f64>,
}

/// The baseline variant (keeping ≥ [`FLOOR`]) the tuned family falls furthest short of on
/// `axis`, or `None` when the tuned family dominates.
pub fn shortfall(tuned: &[Measures], baseline: &[Measures], axis: Axis) -> Option<Shortfall> {
    baseline
        .iter()
        .filter(|b| b.kept >= FLOOR)
        .filter_map(|b| {
            let best_tuned = tuned
                .iter()
                .filter(|t| t.kept >= b.kept - TIE)
                .map(axis)
                .fold(None, |acc: Option<f64>, y| {
                    Some(acc.map_or(y, |a| a.max(y)))
                });
            let gap = axis(b) - best_tuned.unwrap_or(f64::NEG_INFINITY);
            (gap > TIE).then_some((
                gap,
                Shortfall {
                    baseline: *b,
                    best_tuned,
                },
            ))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, s)| s)
}

impl Tuning {
    fn family_measures(&self, family: Family) -> Vec<Measures> {
        self.points
            .iter()
            .filter(|p| p.variant.family == family)
            .map(|p| p.measures)
            .collect()
    }

    /// Per baseline family and measure: `None` when the tuned family dominates it.
    pub fn dominance(&self) -> Vec<(Family, &'static str, Option<Shortfall>)> {
        let mut tuned = self.family_measures(Family::Tuned);
        tuned.push(Measures {
            kept: 1.0,
            ndcg_kept: 1.0,
            ..Default::default()
        });
        let mut out = Vec::new();
        for family in Family::ALL.into_iter().filter(|f| *f != Family::Tuned) {
            let baseline = self.family_measures(family);
            if baseline.is_empty() {
                continue;
            }
            for (name, axis) in MEASURES {
                out.push((family, name, shortfall(&tuned, &baseline, axis)));
            }
        }
        out
    }

    /// The dominance section of the Markdown report.
    pub fn dominance_markdown(&self) -> String {
        let mut s = format!(
            "Dominance over the single-rule baselines (every baseline variant keeping ≥ {} of the HitRate, against the tuned family's variants keeping at least as much; a point of tolerance):\n\n",
            pct(FLOOR)
        );
        for (family, measure, short) in self.dominance() {
            let _ = match short {
                None => writeln!(s, "- {}, {measure}: dominated.", family.name()),
                Some(f) => writeln!(
                    s,
                    "- {}, {measure}: **not dominated**: at {} kept the baseline reaches {}, the tuned family {}.",
                    family.name(),
                    pct(f.baseline.kept),
                    pct(MEASURES
                        .iter()
                        .find(|(n, _)| *n == measure)
                        .map_or(0.0, |(_, a)| a(&f.baseline))),
                    f.best_tuned.map_or("keeps less everywhere".into(), pct)
                ),
            };
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kept: f64, ignored_removed: f64) -> Measures {
        Measures {
            kept,
            ignored_removed,
            ..Default::default()
        }
    }

    const IGNORED: Axis = |m| m.ignored_removed;

    #[test]
    fn a_tuned_point_at_least_as_good_everywhere_dominates() {
        let tuned = [m(0.99, 0.30), m(0.95, 0.40), m(0.90, 0.50)];
        let baseline = [m(0.98, 0.25), m(0.95, 0.405), m(0.85, 0.9)];
        assert_eq!(
            shortfall(&tuned, &baseline, IGNORED),
            None,
            "0.405 is within a point, 0.85 kept is below the floor"
        );
    }

    #[test]
    fn the_worst_shortfall_is_reported() {
        let tuned = [m(0.99, 0.30), m(0.95, 0.36)];
        let baseline = [m(0.95, 0.373), m(0.92, 0.50), m(0.999, 0.25)];
        let s = shortfall(&tuned, &baseline, IGNORED).unwrap();
        assert_eq!(s.baseline, m(0.92, 0.50));
        assert_eq!(s.best_tuned, Some(0.36));
        assert_eq!(
            shortfall(&tuned, &[m(0.999, 0.2)], IGNORED),
            None,
            "99% kept is within a point of 99.9%"
        );
        let s = shortfall(&tuned[1..], &[m(0.999, 0.2)], IGNORED).unwrap();
        assert_eq!(s.best_tuned, None, "no tuned variant keeps 98.9%");
    }
}

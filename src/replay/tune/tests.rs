//! Properties of a tune:
//! 1. the inner split is the 70% time quantile of the fitting part's events, and one stray row
//!    days before the others moves it by at most one event;
//! 2. the frontier keeps exactly the points no other point beats on both axes;
//! 3. the pick removes the most repeated ignored exposure within the bound, breaks ties
//!    (within a percentage point) by categories then relevance then grid order, and, when nothing is within the bound, keeps
//!    the most relevance and says it missed;
//! 4. every variant around the fitted policy is written as a file that reads back as exactly
//!    the policy that was evaluated;
//! 5. end to end on a generated log: the written policy is valid, the pick keeps at least
//!    `min_kept` on the inner evaluation part, a plain replay of the picked policy reproduces
//!    its numbers, the same inputs give the same output, and the chart draws every family;
//! 6. a replay with prepared parts (fit and candidates computed once) is the same replay, and
//!    parts prepared for another split are refused.

use super::*;
use crate::replay::discount::{DiscountFit, Trials};
use crate::replay::fit::{Complement, Durable};
use crate::replay::{Action, run};
use crate::time::{DAY_MS, MINUTE_MS};

fn view(user: u64, item: u64, at_ms: i64) -> LogEvent {
    LogEvent {
        user,
        item,
        category: 1 + item % 5,
        action: Action::View,
        at_ms,
        ..LogEvent::default()
    }
}

#[test]
fn the_inner_split_is_a_quantile_of_the_events_and_ignores_a_stray_row() {
    let t0 = 1_700_000_000_000;
    // One event a minute for 1,000 minutes.
    let events: Vec<LogEvent> = (0..1000)
        .map(|i| view(1, i, t0 + i as i64 * MINUTE_MS))
        .collect();
    assert_eq!(inner_split_ms(&events, 0.7), Some(t0 + 700 * MINUTE_MS));
    assert_eq!(inner_split_ms(&events, 1.0), Some(t0 + 999 * MINUTE_MS));
    assert_eq!(inner_split_ms(&[], 0.7), None);
    // A stray row 30 days earlier: a split at 70% of the time span would move by 21 days.
    let mut stray = vec![view(2, 5, t0 - 30 * DAY_MS)];
    stray.extend_from_slice(&events);
    let moved = inner_split_ms(&stray, 0.7).unwrap() - inner_split_ms(&events, 0.7).unwrap();
    assert!(
        (-MINUTE_MS..=MINUTE_MS).contains(&moved),
        "moved {moved} ms"
    );
    // Ties: the inner fit part is the events strictly before the quantile's timestamp.
    let tied: Vec<LogEvent> = (0..10).map(|i| view(1, i, t0 + (i / 5) as i64)).collect();
    assert_eq!(inner_split_ms(&tied, 0.7), Some(t0 + 1));
}

#[test]
fn the_frontier_keeps_the_undominated_points() {
    let points = [
        (0.99, 0.10), // 0: frontier (most kept)
        (0.95, 0.30), // 1: frontier
        (0.94, 0.20), // 2: beaten by 1
        (0.90, 0.50), // 3: frontier
        (0.90, 0.40), // 4: beaten by 3 (same kept, less removed)
        (0.95, 0.30), // 5: identical to 1: only the first is kept
        (0.80, 0.50), // 6: beaten by 3 (same removed, less kept)
        (0.70, 0.60), // 7: frontier
    ];
    assert_eq!(frontier(&points), vec![7, 3, 1, 0]);
    assert_eq!(frontier(&[]), Vec::<usize>::new());
    assert_eq!(frontier(&[(0.5, -0.1)]), vec![0]);
}

fn m(kept: f64, removed: f64, categories: f64) -> Measures {
    Measures {
        kept,
        ignored_removed: removed,
        categories_gain: categories,
        ..Measures::default()
    }
}

#[test]
fn the_pick_removes_the_most_within_the_bound_and_breaks_ties_in_order() {
    let points = [
        m(1.00, 0.10, 0.0),
        m(0.96, 0.40, 0.1),
        m(0.94, 0.90, 0.9),   // outside the bound
        m(0.95, 0.395, 0.3),  // ties 1 on removed (within a point), more categories
        m(0.97, 0.40, 0.295), // ties 3 on both, more relevance
        m(0.97, 0.40, 0.295), // identical to 4: the earlier wins
        m(0.99, 0.385, 0.5),  // more than a point less removed: no tie, whatever else
    ];
    assert_eq!(
        pick(&points, 0.95),
        Some(Pick {
            index: 4,
            met: true
        })
    );
    // Exactly at the bound counts; a point of categories more is no tie.
    assert_eq!(
        pick(&points[..4], 0.95),
        Some(Pick {
            index: 3,
            met: true
        })
    );
    // Nothing within the bound: the most relevance, then the most removed; a miss.
    let short = [m(0.90, 0.2, 0.0), m(0.93, 0.1, 0.0), m(0.93, 0.3, 0.0)];
    assert_eq!(
        pick(&short, 0.95),
        Some(Pick {
            index: 2,
            met: false
        })
    );
    assert_eq!(pick(&[], 0.95), None);
}

#[test]
fn measures_compare_with_identity() {
    let identity = ArmMetrics {
        decisions: 10,
        hits: 4,
        ndcg: 2.0,
        slots: 100,
        repeated_ignored_slots: 40,
        distinct_categories: 50,
        ..ArmMetrics::default()
    };
    let tested = ArmMetrics {
        hits: 3,
        ndcg: 2.0,
        repeated_ignored_slots: 10,
        distinct_categories: 60,
        ..identity.clone()
    };
    let got = Measures::of(&identity, &tested);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(got.kept, 0.75), "{got:?}");
    assert!(close(got.ndcg_kept, 1.0), "{got:?}");
    assert!(close(got.ignored_removed, 0.75), "{got:?}");
    assert!(close(got.categories_gain, 0.2), "{got:?}");
    assert_eq!(got.substitutes_change, 0.0, "identity has none to change");
    // Nothing to lose or remove: all kept, nothing removed.
    let empty = ArmMetrics::default();
    assert_eq!(Measures::of(&empty, &empty).kept, 1.0);
    assert_eq!(Measures::of(&empty, &tested).ignored_removed, 0.0);
}

/// A fit with everything a policy file can carry: a durable category, a complement pair
/// and a learned discount.
fn full_fit() -> Fitted {
    let never = Trials {
        shown: [1000; 8],
        hits: [100, 60, 20, 10, 5, 5, 5, 5],
    };
    let fitted = Fitted {
        durables: vec![Durable {
            category_id: 7,
            days: 4.5,
            buyers: 3,
            occasions: 3,
            repeats: 0,
        }],
        complements: vec![Complement {
            bought: 7,
            then: 8,
            users: 2,
            lift: 3.0,
        }],
        purchases: 9,
        buyers: 5,
        categories_bought: 4,
        discount: DiscountFit {
            never,
            ..DiscountFit::default()
        },
    };
    assert!(fitted.discount.learned().is_some());
    fitted
}

#[test]
fn every_variant_is_written_as_the_policy_that_was_evaluated() {
    for fitted in [full_fit(), Fitted::default()] {
        let learned = fitted.discount.learned();
        let base = fitted.policy();
        let variants = Grid::default().variants(&base, learned.as_ref(), true);
        assert!(
            variants
                .iter()
                .all(|v| v.policy.validate("variant").is_ok())
        );
        let tuned: Vec<&Variant> = variants
            .iter()
            .filter(|v| v.family == Family::Tuned)
            .collect();
        let fatigue_settings = if learned.is_some() { 5 } else { 4 };
        // 11 selection settings: no diversity, or 5 weights × 2 decays; discovery on or off;
        // two cooling-off modes.
        assert_eq!(tuned.len(), 11 * 3 * fatigue_settings * 2 * 2);
        for v in tuned {
            let text = policy_toml(&fitted, &v.knobs, "a header\nover two lines");
            let read: Policy = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}\n{text}", v.knobs.label(v.family)));
            assert_eq!(read, v.policy, "{}\n{text}", v.knobs.label(v.family));
            assert_eq!(Knobs::of(&read), v.knobs);
            assert!(text.starts_with("# a header\n# over two lines\n"));
        }
    }
}

#[test]
fn baselines_turn_everything_else_off() {
    let fitted = full_fit();
    let learned = fitted.discount.learned();
    let variants = Grid::default().variants(&fitted.policy(), learned.as_ref(), false);
    let count = |f| variants.iter().filter(|v| v.family == f).count();
    // Without durables, only the hard cooling-off mode is tried.
    assert_eq!(count(Family::Tuned), 11 * 3 * 5 * 2);
    assert_eq!(
        (
            count(Family::FrequencyCap),
            count(Family::Fatigue),
            count(Family::Mmr),
            count(Family::Dpp)
        ),
        (6, 5, 5, 5)
    );
    let stages = |v: &Variant| {
        v.policy
            .pipeline("x", crate::rank::Parallelism::SEQUENTIAL)
            .stage_names()
    };
    for v in variants.iter().filter(|v| v.family != Family::Tuned) {
        let names = stages(v);
        let rule = match v.family {
            Family::FrequencyCap => "frequency_cap",
            Family::Fatigue => "fatigue",
            Family::Mmr => "mmr",
            Family::Dpp => "dpp",
            Family::Tuned => unreachable!(),
        };
        assert!(names.contains(&rule), "{names:?}");
        for other in [
            "explicit_feedback",
            "cooling_off",
            "overload",
            "lifecycle",
            "fewer_like_this",
            "complements",
            "interests",
        ] {
            assert!(
                !names.contains(&other),
                "{}: {names:?}",
                v.knobs.label(v.family)
            );
        }
        for other in ["frequency_cap", "fatigue", "mmr", "dpp"] {
            assert!(other == rule || !names.contains(&other), "{names:?}");
        }
        assert_eq!(v.policy.exploration.share, 0.0);
        assert_eq!(v.policy.long_tail.weight, 0.0);
    }
}

/// A few hundred events over ten days: 24 users, each browsing the items of two favourite
/// categories (and sometimes others) in bursts, coming back to items seen before, and buying
/// now and then.
fn generated_log() -> Log {
    let t0 = 1_700_000_000_000i64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut events = Vec::new();
    for user in 1..=24u64 {
        let favourite = [1 + user % 6, 1 + (user + 2) % 6];
        let mut seen: Vec<u64> = Vec::new();
        for session in 0..5i64 {
            let start = t0 + session * 2 * DAY_MS + next(DAY_MS as u64) as i64;
            for step in 0..4i64 {
                let category = if next(5) == 0 {
                    1 + next(6)
                } else {
                    favourite[next(2) as usize]
                };
                let item = if !seen.is_empty() && next(3) == 0 {
                    seen[next(seen.len() as u64) as usize]
                } else {
                    category * 100 + next(12)
                };
                seen.push(item);
                let at_ms = start + step * 3 * MINUTE_MS;
                events.push(LogEvent {
                    user,
                    item,
                    category: item / 100,
                    action: Action::View,
                    at_ms,
                    ..LogEvent::default()
                });
                if next(12) == 0 {
                    events.push(LogEvent {
                        user,
                        item,
                        category: item / 100,
                        action: Action::Buy,
                        at_ms: at_ms + MINUTE_MS,
                        ..LogEvent::default()
                    });
                }
            }
        }
    }
    Log::new("generated", events, 0)
}

fn small_grid() -> Grid {
    Grid {
        diversity_weights: vec![0.0, 0.3],
        repeat_decays: vec![0.5],
        max_impressions: vec![Some(3), Some(6)],
        fatigue_weights: vec![0.6],
        discovery: vec![true],
        cap_only: vec![2],
        fatigue_only: vec![0.6],
        mmr_only: vec![0.3],
        dpp_only: vec![0.3],
    }
}

#[test]
fn a_tune_of_a_generated_log_writes_a_valid_policy_within_the_bound() {
    let log = generated_log();
    assert!(
        (300..=600).contains(&log.events.len()),
        "{}",
        log.events.len()
    );
    let first = log.events[0].at_ms;
    let cfg = TuneConfig {
        replay: ReplayConfig {
            fit_until_ms: first + 8 * DAY_MS,
            ..ReplayConfig::default()
        },
        grid: small_grid(),
        ..TuneConfig::default()
    };
    let t = tune(&log, &cfg).unwrap();
    assert!(t.identity.decisions >= 20, "{:?}", t.identity);
    assert!(t.inner_until_ms < cfg.replay.fit_until_ms);
    assert!(
        t.fitted_point.is_some(),
        "the fitted policy is one of the variants"
    );
    let picked = t.picked_point();
    assert_eq!(picked.variant.family, Family::Tuned);
    assert!(t.picked.met, "{}", t.markdown("tune"));
    assert!(picked.measures.kept >= cfg.min_kept);
    // Nothing within the bound removes more.
    for p in t
        .points
        .iter()
        .filter(|p| p.variant.family == Family::Tuned)
    {
        assert!(
            p.measures.kept < cfg.min_kept
                || p.measures.ignored_removed <= picked.measures.ignored_removed
        );
    }
    // The written policy is valid and is the picked knobs over the whole fitting part's fit.
    let text = t.toml();
    let read: Policy = toml::from_str(&text).unwrap();
    read.validate("tuned").unwrap();
    assert_eq!(Knobs::of(&read), picked.variant.knobs);
    assert!(text.contains("# Tuned by `tactful tune`"));
    // A plain replay of the picked policy on the fitting part, split at the inner split,
    // gives the same numbers: the tune used the replay as it is.
    let inner = Log::new(
        "inner",
        log.events[..log.split(cfg.replay.fit_until_ms)].to_vec(),
        0,
    );
    let inner_cfg = ReplayConfig {
        fit_until_ms: t.inner_until_ms,
        ..cfg.replay.clone()
    };
    let arm = Arm {
        name: "picked".into(),
        policy: picked.variant.policy.clone(),
    };
    let report = run(&inner, Some(arm), &inner_cfg);
    assert_eq!(report.arms[0].1, t.identity);
    assert_eq!(report.arms[1].1, picked.tested);
    // Deterministic (but for the run time in the summary).
    let again = tune(&log, &cfg).unwrap();
    assert_eq!(again.toml(), text);
    let table = |t: &Tuning| {
        t.markdown("tune")
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(table(&again), table(&t));
    // A table of the frontier, the pick and the fitted policy.
    let md = t.markdown("tune");
    assert!(md.contains("(picked)") && md.contains("(fitted)"), "{md}");
    // The chart: per panel, a frontier line per family, the pick and the bound.
    let svg = t.svg();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    assert_eq!(svg.matches("<polyline").count(), 2 * Family::ALL.len());
    assert_eq!(svg.matches(">picked<").count(), 2);
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
}

#[test]
fn a_tune_without_a_fitting_part_says_so() {
    let log = generated_log();
    let cfg = TuneConfig {
        replay: ReplayConfig {
            fit_until_ms: log.events[0].at_ms,
            ..ReplayConfig::default()
        },
        grid: small_grid(),
        ..TuneConfig::default()
    };
    assert_eq!(tune(&log, &cfg).unwrap_err(), TuneError::NoFittingPart);
}

#[test]
fn a_run_with_prepared_parts_is_the_same_replay() {
    let log = generated_log();
    let cfg = ReplayConfig {
        fit_until_ms: log.events[0].at_ms + 6 * DAY_MS,
        ..ReplayConfig::default()
    };
    let prepared = Arc::new(crate::replay::prepared::prepare(&log, &cfg));
    assert!(prepared.decisions() > 0);
    let with = ReplayConfig {
        prepared: Some(prepared),
        ..cfg.clone()
    };
    for tested in [
        None,
        Some(Arm {
            name: "dpp".into(),
            policy: Knobs {
                selection: Selection::Dpp,
                diversity_weight: 0.3,
                ..Knobs::of(&single_rule_base())
            }
            .apply(&single_rule_base(), None),
        }),
    ] {
        let (a, b) = (run(&log, tested.clone(), &cfg), run(&log, tested, &with));
        assert_eq!(a.arms, b.arms);
        assert_eq!(a.fitted, b.fitted);
    }
}

#[test]
#[should_panic(expected = "another replay")]
fn prepared_parts_of_another_split_are_refused() {
    let log = generated_log();
    let cfg = ReplayConfig {
        fit_until_ms: log.events[0].at_ms + 6 * DAY_MS,
        ..ReplayConfig::default()
    };
    let prepared = Arc::new(crate::replay::prepared::prepare(&log, &cfg));
    let other = ReplayConfig {
        fit_until_ms: cfg.fit_until_ms + DAY_MS,
        prepared: Some(prepared),
        ..cfg
    };
    run(&log, None, &other);
}

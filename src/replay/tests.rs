//! Properties of a whole replay:
//! 1. an event after a decision point cannot change that decision's candidates;
//! 2. on a tiny log, the policy under test keeps substitutes of a durable purchase out of the
//!    lists and stops repeating ignored items, while the baseline does neither; both arms see
//!    the same decisions.

use super::*;

const DAY_S: i64 = 86_400;

/// A tiny Taobao-format log: users 1..=3 buy a phone (category 5) on day 0 and a case
/// (category 6) on day 1, and never another phone; user 4 browses other things on day 1.5.
/// After the split (day 2), on day 3, user 4 buys a phone and keeps browsing phones and cases,
/// one view every ten minutes.
fn tiny() -> String {
    let mut s = String::new();
    let t0 = T0;
    for u in 1..=3u64 {
        let t = t0 + u as i64 * 60;
        s += &format!("{u},{},5,pv,{t}\n", 100 + u);
        s += &format!("{u},{},5,buy,{}\n", 100 + u, t + 10);
        s += &format!("{u},{},6,pv,{}\n", 200 + u, t + DAY_S);
        s += &format!("{u},{},6,buy,{}\n", 200 + u, t + DAY_S + 10);
        s += &format!("{u},{},7,pv,{}\n", 300 + u, t + DAY_S + 20);
    }
    for n in 1..=3 {
        s += &format!("4,{},7,pv,{}\n", 300 + n, t0 + DAY_S * 3 / 2 + n as i64);
    }
    let t = t0 + 3 * DAY_S;
    s += &format!("4,101,5,pv,{t}\n4,101,5,buy,{}\n", t + 60);
    for n in 1..=20i64 {
        let (item, cat) = if n % 2 == 0 {
            (101 + n as u64 % 3, 5)
        } else {
            (201 + n as u64 % 3, 6)
        };
        s += &format!("4,{item},{cat},pv,{}\n", t + n * 600);
    }
    s
}

const T0: i64 = 1_511_000_000;

fn log_of(text: &str) -> Log {
    Log::from_taobao("tiny", &taobao::parse(text.as_bytes(), "tiny").unwrap())
}

fn cfg() -> ReplayConfig {
    ReplayConfig {
        fit_until_ms: (T0 + 2 * DAY_S) * 1000,
        ..ReplayConfig::default()
    }
}

#[test]
fn later_events_cannot_change_earlier_candidates() {
    let base = log_of(&tiny());
    let mut changed = tiny();
    // A burst of late activity on new items, after every decision of the base log.
    let late = T0 + 3 * DAY_S + 21 * 600;
    for n in 0..30 {
        changed += &format!("2,{},9,pv,{}\n", 900 + n % 4, late + n);
    }
    // And an event of user 3 in the middle of the evaluation.
    let middle = T0 + 3 * DAY_S + 10 * 600 + 1;
    changed += &format!("3,777,9,pv,{middle}\n");
    let changed = log_of(&changed);
    let collect = |log: &Log| {
        let mut seen = Vec::new();
        run_observed(log, None, &cfg(), &mut |i, c| {
            let e = log.events[i];
            if e.user == 4 {
                seen.push((e.at_ms, e.user, c.to_vec()));
            }
        });
        seen
    };
    let (a, b) = (collect(&base), collect(&changed));
    assert!(a.len() >= 10, "{} decisions", a.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        if x.0 < middle * 1000 {
            assert_eq!(x, y, "a decision before the change saw it");
        }
    }
    assert_eq!(a.len(), b.len());
    // The decisions after the middle event do see it (item 777 is now popular): the
    // comparison above is not vacuous.
    assert!(
        b.iter()
            .any(|d| d.0 > middle * 1000 && d.2.iter().any(|p| p.item_id == 777))
    );
}

#[test]
fn a_tiny_replay_measures_both_arms() {
    let report = run(&log_of(&tiny()), None, &cfg());
    let (a, b) = (&report.arms[0].1, &report.arms[1].1);
    assert_eq!(report.arms[0].0, "identity");
    assert_eq!(a.decisions, b.decisions);
    assert_eq!(a.decisions, 21, "{a:?}");
    assert!(
        report.fitted.durables.iter().any(|d| d.category_id == 5),
        "{:?}",
        report.fitted
    );
    assert!(a.substitute_slots > 0, "the baseline shows other phones");
    // The tiny log's cycle has 3 buyers: too few to filter on, so its substitutes are only
    // lowered, and lists this short still show them ...
    assert!(b.substitute_slots <= a.substitute_slots, "{a:?} {b:?}");
    // ... while a platform that trusts 3 buyers keeps them out.
    let mut trusting = report.fitted.policy();
    trusting.cooling_off.full_support = 3;
    let arm = Arm {
        name: "trusting".into(),
        policy: trusting,
    };
    let strict = run(&log_of(&tiny()), Some(arm), &cfg());
    let s = &strict.arms[1].1;
    assert_eq!(s.substitute_slots, 0, "cooling-off keeps them out");
    assert_eq!(
        (a.violations, b.violations, a.degraded, b.degraded),
        (0, 0, 0, 0)
    );
    // With the room the substitutes leave, the lists stop repeating what was passed over.
    assert!(
        s.repeated_ignored_slots < a.repeated_ignored_slots,
        "{a:?} {s:?}"
    );
    assert!(
        a.repeated_unwanted_slots > 0 && s.repeated_unwanted_slots < a.repeated_unwanted_slots,
        "{a:?} {s:?}"
    );
    assert_eq!(a.brand_wall_share(), None, "Taobao has no brands");
    assert!(a.substitute_share().is_some(), "the fit found a window");
    let md = report.markdown("tactful replay ...");
    assert!(md.contains("| HitRate@10, next interaction |"));
    assert!(report.svg().starts_with("<svg"));

    let json = report.json();
    assert_eq!(json["log"], "tiny");
    assert_eq!(json["decisions"], 21);
    for (arm, m) in [("identity", a), ("policy", b)] {
        let o = &json["arms"][arm];
        assert_eq!(o["hit_rate"], m.hit_rate(), "{arm}");
        for share in [
            "hit_rate",
            "ndcg",
            "purchase_hit_rate",
            "repeated_ignored_exposure",
            "long_tail_share",
            "substitute_slots",
            "repeated_unwanted_exposure",
            "walls_category",
        ] {
            let v = o[share].as_f64().unwrap_or_else(|| panic!("{arm}.{share}"));
            assert!((0.0..=1.0).contains(&v), "{arm}.{share} = {v}");
        }
        assert!(o["walls_brand"].is_null());
        assert_eq!(o["feedback_violations"], 0);
        assert_eq!(o["degraded"], 0);
    }
    assert_eq!(json["arms"]["policy"]["name"], "fitted");
}

/// A Tmall-format log (detected from its header) with brands and shops: two users browse the
/// same items of one brand and shop over several days, a third follows them.
fn tmall_log() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = String::from("user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type\n");
    for day in 1..=9u32 {
        for u in 1..=3u64 {
            for item in (1..=4u64).map(|i| i + u64::from(day)) {
                // Three brands of four items are one brand's.
                let brand = if item % 4 == 0 { 901 } else { 900 };
                let (category, shop) = (50 + item % 2, 700 + item % 4);
                s += &format!("{u},{item},{category},{shop},{brand},10{day:02},0\n");
            }
        }
    }
    let path = dir.path().join("user_log_format1.csv");
    std::fs::write(&path, s).unwrap();
    let log = Log::open(dir.path(), None, None).unwrap();
    (dir, log)
}

#[test]
fn brands_shops_and_prices_reach_the_candidates() {
    let (_dir, log) = tmall_log();
    assert_eq!(log.format, Some(Format::Tmall));
    assert!(log.has_brands);
    let attributes: std::collections::HashMap<u64, (u64, u64)> = log
        .events
        .iter()
        .map(|e| (e.item, (e.brand, e.shop)))
        .collect();
    let mut proposals = 0;
    let cfg = ReplayConfig {
        fit_until_ms: log.events[log.events.len() / 2].at_ms,
        ..ReplayConfig::default()
    };
    run_observed(&log, None, &cfg, &mut |_, candidates| {
        for c in candidates {
            assert_eq!(attributes[&c.item_id], (c.brand_id, c.shop_id));
            assert!(c.brand_id != 0 && c.shop_id != 0);
            proposals += 1;
        }
    });
    assert!(proposals > 100, "{proposals}");
    let report = run(&log, None, &cfg);
    let (a, b) = (&report.arms[0].1, &report.arms[1].1);
    assert!(a.brand_wall_share().is_some(), "brands are measured");
    assert!(b.brand_walls <= a.brand_walls, "{a:?} {b:?}");
}

#[test]
fn a_brand_cap_in_the_policy_takes_effect_in_the_replay() {
    let (_dir, log) = tmall_log();
    let cfg = ReplayConfig {
        fit_until_ms: log.events[log.events.len() / 2].at_ms,
        ..ReplayConfig::default()
    };
    let mut policy = Policy::default();
    policy.list_caps.brand.max = 2;
    let capped = Arm {
        name: "capped".into(),
        policy,
    };
    let report = run(&log, Some(capped), &cfg);
    let (a, b) = (&report.arms[0].1, &report.arms[1].1);
    assert!(a.brand_walls > 0, "the upstream order stacks brands: {a:?}");
    assert_eq!(b.brand_walls, 0, "at most 2 of a brand per list");
    assert_eq!(a.decisions, b.decisions);
}

#[test]
fn simulated_feedback_is_honoured_and_deterministic_for_a_seed() {
    let (_dir, log) = tmall_log();
    let cfg = |seed| ReplayConfig {
        fit_until_ms: log.events[log.events.len() / 3].at_ms,
        feedback: Some(feedback::Simulation { share: 0.3, seed }),
        ..ReplayConfig::default()
    };
    let report = run(&log, None, &cfg(7));
    assert_eq!(report.arms.len(), 3);
    assert_eq!(report.arms[2].0, "fitted + feedback");
    let f = report.feedback.as_ref().unwrap();
    let l = &f.ledger;
    assert!(
        l.not_interested_words > 0 && l.fewer_like_this_words > 0 && l.block_brand_words > 0,
        "{l:?}"
    );
    assert_eq!(l.refused, 0);
    for (name, m) in &report.arms {
        assert_eq!(m.violations, 0, "{name} showed what the user refused");
    }
    let (policy, heard) = (&report.arms[1].1, &report.arms[2].1);
    assert_eq!(policy.decisions, heard.decisions);
    assert_ne!(policy, heard, "the words changed the lists");
    // The same seed replays the same words and the same lists; another seed does not.
    let again = run(&log, None, &cfg(7));
    assert_eq!(again.feedback, report.feedback);
    assert_eq!(again.arms, report.arms);
    let other = run(&log, None, &cfg(8));
    assert_ne!(other.feedback, report.feedback);
    // The two arms without feedback do not hear it.
    assert_eq!(other.arms[..2], report.arms[..2]);

    let json = report.json();
    assert_eq!(
        json["arms"]["policy_with_feedback"]["feedback_violations"],
        0
    );
    assert_eq!(json["feedback"]["violations"], 0);
    assert_eq!(json["feedback"]["seed"], 7);
    assert_eq!(json["feedback"]["hit_rate_with"], heard.hit_rate());
    let md = report.markdown("x");
    assert!(md.contains("## Simulated explicit feedback"), "{md}");
    assert!(md.contains("| explicit-feedback violations | 0 | 0 | — | met: 0 with simulated feedback (target 0) |"), "{md}");
}

#[test]
fn words_against_a_state_at_its_cap_are_refused_not_recorded() {
    // Every ignored item draws a word; the tiny log's user 4 ignores many.
    let mut cfg = ReplayConfig {
        feedback: Some(feedback::Simulation {
            share: 1.0,
            seed: 1,
        }),
        ..cfg()
    };
    let report = run(&log_of(&tiny()), None, &cfg);
    let l = &report.feedback.as_ref().unwrap().ledger;
    assert!(l.words() > 10 && l.refused == 0, "{l:?}");
    assert_eq!(report.arms[2].1.violations, 0);

    cfg.state.max_explicit_per_kind = 2;
    let report = run(&log_of(&tiny()), None, &cfg);
    let l = &report.feedback.as_ref().unwrap().ledger;
    assert!(l.refused > 0, "{l:?}");
    assert!(l.not_interested_words <= 2, "two items at most: {l:?}");
    assert_eq!(
        report.arms[2].1.violations, 0,
        "a refused word promised nothing"
    );
}

//! The selection methods against textbook reference implementations, on random small inputs
//! (proptest, no server):
//! 1. MMR places, at every position, the candidate the naive definition picks (every
//!    max-similarity and every repeat count recomputed against every placed item), with
//!    embeddings and with category/brand/shop similarity; each item's diversity term is the
//!    naive one, and past the greedy depth the rest follow their objective against the whole
//!    head; with the repetition decay off (decay or floor at 1) that is plain MMR, the order
//!    before the decay existed;
//! 2. with the repetition decay off, DPP places, at every position, the candidate with the
//!    best gain under the paper's Algorithm 1 on the full N×N kernel (Chen, Zhang & Zhou
//!    2018), and that is the candidate whose addition gives the largest log-determinant
//!    computed from scratch (brute-force greedy); each item's diversity term is `w·ln` of its
//!    residual;
//! 3. hard caps are never broken, whatever the method, and the list ends only when every
//!    remaining candidate would break one;
//! 4. calibration makes the list's category mix follow the user's interest tags, with any
//!    method;
//! 5. past the rank of the embeddings (k > d), DPP's window keeps it selecting and
//!    diversifying;
//! 6. the default policy breaks a wall: one category and brand scoring far above ten others
//!    fills at most a few of the top ten, by MMR and by DPP, for a new user and an active one,
//!    and the best item still leads.
//!
//! "Places the same candidate" allows for floating-point ties: where the reference's two best
//! gains are closer than its precision, either is accepted.

use std::collections::HashSet;

use ndarray::{Array1, Array2};
use proptest::prelude::*;
use tactful::rank::stage::Pick;
use tactful::rank::stages::select::Select;
use tactful::rank::stages::select::list_caps::{GroupCap, ListCapParams};
use tactful::rank::stages::select::mmr::{DiversityParams, attributes};
use tactful::rank::{
    Candidate, Consent, Deadline, Method, Parallelism, RankInput, Slate, Stage, UserView,
};

/// Runs the selection stage alone on these pre-selection scores.
fn select(input: &RankInput, score: &[f32], method: Method, params: &DiversityParams) -> Vec<Pick> {
    select_with(input, score, method, params, ListCapParams::default())
}

fn select_with(
    input: &RankInput,
    score: &[f32],
    method: Method,
    params: &DiversityParams,
    caps: ListCapParams,
) -> Vec<Pick> {
    let user = UserView::unknown(Consent::privacy_default());
    let mut slate = Slate::new(input, &user, Parallelism::SEQUENTIAL);
    slate.score = Array1::from(score.to_vec());
    let stage = Select {
        method,
        diversity: params.clone(),
        list_caps: caps,
        exploration: Default::default(),
        calibration: Default::default(),
    };
    stage.apply(&mut slate, &Deadline::none()).unwrap();
    slate.picks
}

fn case() -> impl Strategy<Value = (RankInput, Vec<f32>, f32)> {
    (2usize..12, 2usize..6, any::<bool>(), 0.05f32..1.0).prop_flat_map(|(n, d, embed, w)| {
        (
            proptest::collection::vec(-1.0f32..1.0, n * d),
            proptest::collection::vec((0u64..4, 0u64..3, 0u64..3), n),
            proptest::collection::vec(0.0f32..1.0, n),
            1usize..=n,
        )
            .prop_map(move |(flat, attrs, score, k)| {
                let input = RankInput {
                    candidates: attrs
                        .into_iter()
                        .enumerate()
                        .map(|(i, (category_id, brand_id, shop_id))| Candidate {
                            item_id: i as u64 + 1,
                            category_id,
                            brand_id,
                            shop_id,
                            ..Default::default()
                        })
                        .collect(),
                    embeddings: embed.then(|| Array2::from_shape_vec((n, d), flat).unwrap()),
                    k,
                    ..Default::default()
                };
                (input, score, w)
            })
    })
}

/// Cosine of the embeddings, else the attribute similarity.
fn mmr_similarity(input: &RankInput, p: &DiversityParams, a: usize, b: usize) -> f64 {
    match &input.embeddings {
        Some(e) => {
            let (x, y) = (e.row(a), e.row(b));
            let (nx, ny) = (x.dot(&x).sqrt(), y.dot(&y).sqrt());
            if nx == 0.0 || ny == 0.0 {
                return 0.0;
            }
            (x.dot(&y) / (nx * ny)).max(0.0) as f64
        }
        None => p.attribute_similarity(
            attributes(&input.candidates[a]),
            attributes(&input.candidates[b]),
        ) as f64,
    }
}

/// The repetition decay drawn for a case: on (the defaults, or a random decay and floor), or
/// off by either knob at 1.
fn repeats() -> impl Strategy<Value = (f32, f32)> {
    prop_oneof![
        Just((0.5f32, 0.25f32)),
        (0.0f32..1.0, 0.0f32..1.0),
        Just((1.0, 0.25)),
        (0.0f32..1.0).prop_map(|d| (d, 1.0)),
    ]
}

/// The share of its score candidate `i` keeps with the repeats `placed` hold, from scratch:
/// per placed item, the attribute weights of what it shares with `i` (known ids only).
fn naive_repetition(input: &RankInput, p: &DiversityParams, i: usize, placed: &[usize]) -> f64 {
    if p.repeat_decay >= 1.0 || p.repeat_floor >= 1.0 {
        return 1.0;
    }
    let w = [p.same_category, p.same_brand, p.same_shop].map(f64::from);
    let shrink = 1.0 / w.iter().sum::<f64>().max(1.0);
    let a = &input.candidates[i];
    let same = |x: u64, y: u64| x != 0 && x == y;
    let n: f64 = placed
        .iter()
        .map(|&j| {
            let b = &input.candidates[j];
            shrink
                * (w[0] * f64::from(same(a.category_id, b.category_id) as u8)
                    + w[1] * f64::from(same(a.brand_id, b.brand_id) as u8)
                    + w[2] * f64::from(same(a.shop_id, b.shop_id) as u8))
        })
        .sum();
    let (decay, floor) = (f64::from(p.repeat_decay), f64::from(p.repeat_floor));
    floor + (1.0 - floor) * decay.powf(n)
}

/// The DPP's similarity kernel S (unit diagonal) in f64.
fn dpp_kernel(input: &RankInput, p: &DiversityParams) -> Array2<f64> {
    let n = input.candidates.len();
    match &input.embeddings {
        Some(e) => {
            let rows: Vec<Array1<f64>> = (0..n)
                .map(|i| {
                    let r = e.row(i).mapv(f64::from);
                    let norm = r.dot(&r).sqrt();
                    if norm > 0.0 { r / norm } else { r }
                })
                .collect();
            Array2::from_shape_fn((n, n), |(i, j)| rows[i].dot(&rows[j]))
        }
        None => {
            let w = [p.same_category, p.same_brand, p.same_shop].map(f64::from);
            let shrink = 1.0 / w.iter().sum::<f64>().max(1.0);
            Array2::from_shape_fn((n, n), |(i, j)| {
                if i == j {
                    return 1.0;
                }
                let (a, b) = (&input.candidates[i], &input.candidates[j]);
                let same = |x: u64, y: u64| x != 0 && x == y;
                shrink
                    * (w[0] * f64::from(same(a.category_id, b.category_id) as u8)
                        + w[1] * f64::from(same(a.brand_id, b.brand_id) as u8)
                        + w[2] * f64::from(same(a.shop_id, b.shop_id) as u8))
            })
        }
    }
}

/// log det of a symmetric positive semi-definite matrix by Cholesky; −∞ when singular.
fn log_det(m: &Array2<f64>) -> f64 {
    let n = m.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    let mut sum = 0.0;
    for j in 0..n {
        let mut d = m[(j, j)];
        for k in 0..j {
            d -= l[(j, k)] * l[(j, k)];
        }
        if d <= 1e-12 {
            return f64::NEG_INFINITY;
        }
        l[(j, j)] = d.sqrt();
        sum += d.ln();
        for i in j + 1..n {
            let mut s = m[(i, j)];
            for k in 0..j {
                s -= l[(i, k)] * l[(j, k)];
            }
            l[(i, j)] = s / l[(j, j)];
        }
    }
    sum
}

/// The kernel's submatrix on `set`.
fn sub(l: &Array2<f64>, set: &[usize]) -> Array2<f64> {
    Array2::from_shape_fn((set.len(), set.len()), |(a, b)| l[(set[a], set[b])])
}

/// Checks that each of `ours` is a best choice of `gains` given the picks before it; `gains`
/// returns the reference's gain of every candidate not yet placed (`None` for placed ones).
fn check_greedy(
    ours: &[usize],
    n: usize,
    tolerance: f64,
    gains: impl Fn(&[usize]) -> Vec<Option<f64>>,
) -> Result<(), TestCaseError> {
    for t in 0..ours.len() {
        let g = gains(&ours[..t]);
        let best = g
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let mine = g[ours[t]].expect("a candidate is placed once");
        prop_assert!(
            mine >= best - tolerance,
            "position {t}: placed {} with gain {mine}, the reference's best is {best} (n = {n})",
            ours[t]
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    // 1
    #[test]
    fn mmr_matches_the_naive_definition(
        (input, score, w) in case(),
        depth in 1usize..24,
        (repeat_decay, repeat_floor) in repeats(),
    ) {
        let params = DiversityParams { weight: w, depth, repeat_decay, repeat_floor, ..Default::default() };
        let picks = select(&input, &score, Method::Mmr, &params);
        let ours: Vec<usize> = picks.iter().map(|p| p.index).collect();
        prop_assert_eq!(ours.len(), input.limit());
        let n = input.candidates.len();
        let head = depth.min(ours.len());
        let max_sim = |i: usize, placed: &[usize]| {
            placed
                .iter()
                .map(|&p| mmr_similarity(&input, &params, i, p))
                .fold(0.0, f64::max)
        };
        // The score a candidate loses to its repeats (scores here are never negative).
        let repetition = |i: usize, placed: &[usize]| {
            -(1.0 - naive_repetition(&input, &params, i, placed)) * score[i] as f64
        };
        check_greedy(&ours[..head], n, 1e-5, |placed| {
            (0..n)
                .map(|i| {
                    (!placed.contains(&i)).then(|| {
                        score[i] as f64 - w as f64 * max_sim(i, placed) + repetition(i, placed)
                    })
                })
                .collect()
        })?;
        // Each item's diversity term is against what was placed before it, or, past the
        // greedy depth, against the whole head; the tail follows its objective.
        for (t, p) in picks.iter().enumerate() {
            let against = &ours[..t.min(head)];
            let expected = -(w as f64) * max_sim(p.index, against) + repetition(p.index, against);
            prop_assert!(
                (p.diversity as f64 - expected).abs() < 1e-5,
                "position {t} (depth {depth}): diversity {} against the naive {expected}",
                p.diversity
            );
        }
        let objective = |p: &Pick| p.score - p.placement;
        for pair in picks[head..].windows(2) {
            prop_assert!(objective(&pair[0]) >= objective(&pair[1]), "the tail is out of order");
        }
    }

    // 2
    #[test]
    fn dpp_matches_the_paper_and_the_brute_force_log_det(
        (mut input, score, w) in case(),
        off in prop_oneof![Just((1.0f32, 0.25f32)), Just((0.5, 1.0))],
    ) {
        let n = input.candidates.len();
        // Within the kernel's rank (the embedding length), where the greedy MAP is exact.
        if let Some(e) = &input.embeddings {
            input.k = input.k.min(e.ncols());
        }
        // With the repetition decay off by either knob: the paper's DPP.
        let params = DiversityParams {
            weight: w,
            window: 64,
            repeat_decay: off.0,
            repeat_floor: off.1,
            ..Default::default()
        };
        let picks = select(&input, &score, Method::Dpp, &params);
        let ours: Vec<usize> = picks.iter().map(|p| p.index).collect();
        prop_assert_eq!(ours.len(), input.limit());

        let s = dpp_kernel(&input, &params);
        let q: Vec<f64> = score.iter().map(|&x| (f64::from(x) / (2.0 * f64::from(w))).exp()).collect();
        let l = Array2::from_shape_fn((n, n), |(i, j)| q[i] * s[(i, j)] * q[j]);
        // Skip cases where the reference itself runs out of volume (a duplicate row), where
        // only the floor orders candidates.
        let full = sub(&l, &ours);
        prop_assume!(log_det(&full).is_finite());

        // The paper's Algorithm 1: incremental Cholesky rows c_i and d_i² on the full kernel.
        let mut c: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut d2: Vec<f64> = (0..n).map(|i| l[(i, i)]).collect();
        for (t, &j) in ours.iter().enumerate() {
            let best = (0..n).filter(|i| !ours[..t].contains(i)).map(|i| d2[i].ln()).fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(d2[j].ln() >= best - 1e-3, "Algorithm 1, position {t}: {} < {best}", d2[j].ln());
            let dj = d2[j].sqrt();
            let cj = c[j].clone();
            for i in 0..n {
                if ours[..=t].contains(&i) {
                    continue;
                }
                let e = (l[(j, i)] - cj.iter().zip(&c[i]).map(|(a, b)| a * b).sum::<f64>()) / dj;
                c[i].push(e);
                d2[i] -= e * e;
            }
        }

        // Brute force: the log-det gain of every candidate, from scratch.
        check_greedy(&ours, n, 1e-3, |placed| {
            let base = log_det(&sub(&l, placed));
            (0..n)
                .map(|i| {
                    (!placed.contains(&i)).then(|| {
                        let mut set = placed.to_vec();
                        set.push(i);
                        log_det(&sub(&l, &set)) - base
                    })
                })
                .collect()
        })?;

        // Each diversity term is w·ln(residual²) = w·(gain − ln q²).
        for (t, pick) in picks.iter().enumerate() {
            let set = &ours[..=t];
            let gain = log_det(&sub(&l, set)) - log_det(&sub(&l, &ours[..t]));
            let residual = gain - 2.0 * q[pick.index].ln();
            let expected = f64::from(w) * residual.max(1e-6_f64.ln());
            // The core works in f32 and the reference here in f64: the log of a small
            // residual amplifies rounding (d ln r² = 2 dr / r), so the band is relative too.
            prop_assert!(
                (f64::from(pick.diversity) - expected).abs() < 2e-3 + 1e-3 * expected.abs(),
                "position {t}: diversity {} vs {expected}", pick.diversity);
        }
    }

    // 3
    #[test]
    fn hard_caps_are_never_broken(
        (input, score, w) in case(),
        method in prop_oneof![Just(Method::Mmr), Just(Method::Dpp), Just(Method::Score)],
        (max, window, in_window) in (0usize..4, prop_oneof![Just(0usize), 2usize..5], 1usize..4),
        depth in 1usize..12,
    ) {
        let window_cap = if window > 0 { GroupCap { window, max_in_window: in_window.min(window - 1), max: 0 } } else { GroupCap::default() };
        let caps = ListCapParams {
            category: GroupCap { max, ..Default::default() },
            brand: window_cap,
            shop: GroupCap::default(),
        };
        let params = DiversityParams { weight: w, depth, ..Default::default() };
        let picks = select_with(&input, &score, method, &params, caps.clone());
        let cat = |i: usize| input.candidates[i].category_id;
        let brand = |i: usize| input.candidates[i].brand_id;
        let placed: Vec<usize> = picks.iter().map(|p| p.index).collect();
        prop_assert_eq!(placed.iter().collect::<HashSet<_>>().len(), placed.len());
        prop_assert!(placed.len() <= input.limit());
        for &i in &placed {
            let same = placed.iter().filter(|&&j| cat(j) == cat(i)).count();
            prop_assert!(max == 0 || cat(i) == 0 || same <= max, "{same} of category {}", cat(i));
        }
        if window > 0 {
            for w in placed.windows(window) {
                for &i in w {
                    let same = w.iter().filter(|&&j| brand(j) == brand(i)).count();
                    prop_assert!(brand(i) == 0 || same <= window_cap.max_in_window);
                }
            }
        }
        // Short only when nothing left could take the next place.
        if placed.len() < input.limit() {
            let next = placed.len();
            for i in (0..input.candidates.len()).filter(|i| !placed.contains(i)) {
                let category_full = max > 0 && cat(i) != 0
                    && placed.iter().filter(|&&j| cat(j) == cat(i)).count() >= max;
                let window_full = window > 0 && brand(i) != 0 && {
                    let from = (next + 1).saturating_sub(window);
                    placed[from..].iter().filter(|&&j| brand(j) == brand(i)).count() >= window_cap.max_in_window
                };
                prop_assert!(category_full || window_full, "candidate {i} could have taken place {next}");
            }
        }
        for w in picks.windows(2) {
            prop_assert!(w[0].score >= w[1].score);
        }
    }
}

/// A user 70% into category 1 and 30% into category 2, shown a list where every item of
/// category 1 scores a little above every item of category 2.
fn calibration_case() -> (RankInput, Vec<f32>, UserView) {
    use tactful::rank::user::{Tag, TagKind, TagSource};
    let candidates: Vec<Candidate> = (0..20)
        .map(|i| Candidate {
            item_id: i + 1,
            category_id: if i < 10 { 1 } else { 2 },
            ..Default::default()
        })
        .collect();
    let score: Vec<f32> = (0..20).map(|i| 1.0 - i as f32 * 0.01).collect();
    let mut user = UserView::unknown(Consent::privacy_default());
    user.tags = [(1, 0.7), (2, 0.3)]
        .map(|(id, weight)| Tag {
            kind: TagKind::Category,
            id,
            label: String::new(),
            weight,
            source: TagSource::User,
        })
        .to_vec();
    let input = RankInput {
        candidates,
        k: 10,
        ..Default::default()
    };
    (input, score, user)
}

#[test]
fn calibration_makes_the_category_mix_follow_the_users() {
    use tactful::rank::stages::select::calibration::CalibrationParams;
    let (input, score, user) = calibration_case();
    for method in [Method::Score, Method::Mmr, Method::Dpp] {
        let run = |weight: f32| {
            let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
            slate.score = Array1::from(score.clone());
            let stage = Select {
                method,
                // Similarity off: only calibration moves items.
                diversity: DiversityParams {
                    weight: 0.0,
                    ..Default::default()
                },
                list_caps: Default::default(),
                exploration: Default::default(),
                calibration: CalibrationParams {
                    weight,
                    ..Default::default()
                },
            };
            stage.apply(&mut slate, &Deadline::none()).unwrap();
            let second = slate
                .picks
                .iter()
                .filter(|p| input.candidates[p.index].category_id == 2)
                .count();
            (second, slate.picks)
        };
        assert_eq!(run(0.0).0, 0, "{method:?}: by score, all of category 1");
        assert!(run(1.0).0 >= 2, "{method:?}: pulled toward 30%");
        let (second, picks) = run(5.0);
        assert_eq!(
            second, 3,
            "{method:?}: 30% of ten once calibration dominates"
        );
        assert!(picks.iter().any(|p| p.calibration != 0.0));
        for w in picks.windows(2) {
            assert!(w[0].score >= w[1].score);
        }
    }
}

#[test]
fn past_the_kernels_rank_dpp_keeps_selecting_and_diversifying() {
    // 3-dim embeddings, 60 candidates, k = 40: far more picks than directions.
    let n = 60;
    let mut state = 7_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let input = RankInput {
        candidates: (0..n)
            .map(|i| Candidate {
                item_id: i as u64 + 1,
                ..Default::default()
            })
            .collect(),
        embeddings: Some(Array2::from_shape_fn((n, 3), |_| next())),
        k: 40,
        ..Default::default()
    };
    let score: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 / n as f32).collect();
    let params = DiversityParams {
        weight: 0.3,
        ..Default::default()
    };
    let picks = select(&input, &score, Method::Dpp, &params);
    assert_eq!(picks.len(), 40);
    let distinct: HashSet<usize> = picks.iter().map(|p| p.index).collect();
    assert_eq!(distinct.len(), 40);
    // Still diversifying late in the list: some later picks skipped a better-scored one
    // because it repeated the recent stretch.
    assert!(picks[10..].iter().any(|p| p.promoted), "{picks:?}");
    assert!(
        picks[10..].iter().any(|p| p.diversity > -0.3 * 13.0),
        "not all at the floor"
    );
}

// 6
#[test]
fn the_default_policy_breaks_a_wall_of_one_category_and_brand() {
    use std::collections::BTreeMap;
    use tactful::rank::{LifecycleStage, Policies, Policy, ReasonCode};
    const NOW_MS: i64 = 1_800_000_000_000;
    const DAY_MS: i64 = 86_400_000;
    // 20 of category 1, brand 7, scored 0.99 down to 0.80; then one each of ten other
    // categories and brands, scored 0.59 down to 0.50.
    let candidates: Vec<Candidate> = (0..30u64)
        .map(|i| {
            let wall = i < 20;
            Candidate {
                item_id: i + 1,
                category_id: if wall { 1 } else { i - 18 },
                brand_id: if wall { 7 } else { 100 + i },
                score: if wall {
                    0.99 - i as f32 * 0.01
                } else {
                    0.59 - (i - 20) as f32 * 0.01
                },
                ..Default::default()
            }
        })
        .collect();
    let input = RankInput {
        candidates,
        k: 10,
        now_ms: NOW_MS,
        explain: true,
        ..Default::default()
    };
    let dpp: Policy = toml::from_str("selection = \"dpp\"").unwrap();
    let policies = Policies::build(
        &BTreeMap::from([("dpp".to_owned(), dpp)]),
        Parallelism::SEQUENTIAL,
    )
    .unwrap();
    let new = UserView::unknown(Consent::privacy_default());
    let mut active = new.clone();
    active.first_seen_ms = Some(NOW_MS - 90 * DAY_MS);
    active.last_active_ms = Some(NOW_MS - DAY_MS);
    for policy in ["default", "dpp"] {
        for (user, stage) in [
            (&new, LifecycleStage::New),
            (&active, LifecycleStage::Active),
        ] {
            let ranking = policies
                .get(policy)
                .unwrap()
                .run(&input, user, &Deadline::none())
                .unwrap();
            assert_eq!(ranking.lifecycle, Some(stage));
            let shown: Vec<&Candidate> = ranking
                .items
                .iter()
                .take(10)
                .map(|r| &input.candidates[r.index])
                .collect();
            assert_eq!(shown.len(), 10);
            let categories: HashSet<u64> = shown.iter().map(|c| c.category_id).collect();
            assert!(
                categories.len() >= 4,
                "{policy}, {stage:?}: {} categories in {:?}",
                categories.len(),
                shown.iter().map(|c| c.item_id).collect::<Vec<_>>()
            );
            assert_eq!(
                shown[0].item_id, 1,
                "{policy}, {stage:?}: the best item leads"
            );
            // What the decay brought up says so, as every diversity promotion does.
            for item in ranking.items.iter().take(10) {
                if input.candidates[item.index].category_id != 1 {
                    assert_eq!(
                        item.reason.code,
                        ReasonCode::Diversity,
                        "{policy}, {stage:?}"
                    );
                }
            }
            // The breakdown still explains every score.
            for item in &ranking.items {
                let sum: f32 = item.breakdown.iter().map(|(_, v)| v).sum();
                assert!((sum - item.score).abs() < 1e-4, "{item:?}");
            }
        }
    }
}

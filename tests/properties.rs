//! Properties of the core pipeline over random requests and random user states (proptest, no
//! server). For the default policy, for a policy with every avoidance rule configured
//! (cooling-off cycles, complements, sensitive categories, context rules), and for a DPP policy
//! with every diversity rule (hard caps, exploration, calibration, long tail), whatever the
//! input:
//! 1. no returned item is not-interested, of a blocked brand or of a blocked shop, or of a
//!    sensitive category the user has not opted in to;
//! 2. no returned item's evidence is only non-consented dimensions, and no reason cites a
//!    dimension the user has not consented to;
//! 3. the list holds min(k, survivors) distinct candidates of the request (fewer only under
//!    hard caps, which are never broken), scores never increase down the list, and each
//!    breakdown sums to the item's score;
//! 4. every dropped candidate is listed exactly once with `explain`, survivors + dropped
//!    account for every candidate, and the avoidance counters count exactly the drops;
//! 5. the fail-open answer keeps the upstream order of the survivors of the hard rules;
//! 6. with personalisation off, the answer is the same whatever the user's behavioural state
//!    (exposure, purchases, sightings, interests, activity): only the user's explicit words
//!    (blocks, "not interested", "fewer like this", sensitive opt-ins) and consent change it;
//! 7. split across two threads with every pass forced to split, each policy gives the same
//!    answer as on one thread: order, reasons, dropped list, and every score's bits.

use std::collections::{BTreeMap, HashSet};

use ndarray::Array2;
use proptest::prelude::*;
use tactful::rank::stages::hard_rules::HardRules;
use tactful::rank::user::{Purchase, SHOWN_TIMES, Sighting, Tag, TagKind, TagSource};
use tactful::rank::{
    Candidate, Consent, DataDimension, Deadline, DimensionSet, Parallelism, Policies, Policy,
    RankInput, UserView,
};

const NOW_MS: i64 = 1_800_000_000_000;
use tactful::time::DAY_MS;
/// The sensitive category of the full policy.
const SENSITIVE: u64 = 4;

fn dimension_set() -> impl Strategy<Value = DimensionSet> {
    proptest::collection::vec(0usize..DataDimension::ALL.len(), 0..3)
        .prop_map(|ix| ix.into_iter().map(|i| DataDimension::ALL[i]).collect())
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(
        (
            (-5.0f32..5.0, 0u64..6, 0u64..5, 0u64..4),
            dimension_set(),
            (any::<bool>(), any::<bool>(), 0.0f32..100.0, 0.0f32..50.0),
            prop_oneof![Just(0i64), 0i64..3 * DAY_MS],
        ),
        0..40,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(
                |(
                    i,
                    (
                        (score, category_id, brand_id, shop_id),
                        evidence,
                        (anchored, sponsored, price, popularity),
                        seen_ago,
                    ),
                )| Candidate {
                    item_id: i as u64 + 1,
                    score,
                    category_id,
                    brand_id,
                    shop_id,
                    evidence,
                    sponsored,
                    price,
                    popularity,
                    anchor_item_id: if anchored { 999 } else { 0 },
                    anchor_title: if anchored {
                        "thing".into()
                    } else {
                        String::new()
                    },
                    cross_platform_seen_ms: if seen_ago > 0 { NOW_MS - seen_ago } else { 0 },
                    ..Default::default()
                },
            )
            .collect()
    })
}

/// The user's explicit words and consent.
fn explicit() -> impl Strategy<Value = UserView> {
    (
        proptest::collection::btree_set(1u64..40, 0..6),
        proptest::collection::btree_set(1u64..5, 0..3),
        proptest::collection::btree_set(1u64..4, 0..2),
        dimension_set(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::btree_map(1u64..6, 0.0f32..1.0, 0..3),
    )
        .prop_map(
            |(ni, brands, shops, denied, personalization_off, cross_platform, opt_in, fewer)| {
                let mut consent = Consent::privacy_default();
                if cross_platform {
                    consent = consent.grant(DataDimension::CrossPlatform);
                }
                let mut u = UserView::unknown(consent.restrict(denied, personalization_off));
                u.not_interested = ni.into_iter().collect();
                u.blocked_brands = brands.into_iter().collect();
                u.blocked_shops = shops.into_iter().collect();
                u.sensitive_opt_in = if opt_in { vec![SENSITIVE] } else { Vec::new() };
                u.fewer_categories = fewer.into_iter().collect();
                u
            },
        )
}

/// Everything learned from behaviour, laid over `base`.
fn with_behaviour(base: UserView) -> impl Strategy<Value = UserView> {
    (
        (
            proptest::collection::btree_map(1u64..40, 0.0f32..10.0, 0..10),
            proptest::collection::btree_map(
                1u64..40,
                proptest::collection::vec(0u32..200, 1..8),
                0..10,
            ),
            proptest::collection::btree_map(1u64..6, 0.0f32..20.0, 0..4),
        ),
        (
            proptest::collection::vec((1u64..40, 0u64..6, 0.0f32..100.0, 0i64..40), 0..4),
            proptest::collection::vec((0u64..40, 0u64..6, 0i64..48), 0..4),
            proptest::collection::btree_map(
                (any::<bool>(), 1u64..6),
                (0.01f32..1.0, any::<bool>()),
                0..4,
            ),
            (0.0f32..100.0, 0.0f32..5.0),
            prop_oneof![Just(None), (0i64..400, 0i64..400).prop_map(Some)],
        ),
    )
        .prop_map(
            move |(
                (ignored, shown, ignored_categories),
                (purchases, sightings, tags, (impressions, engagements), activity),
            )| {
                let mut u = base.clone();
                u.ignored = ignored.into_iter().collect();
                u.shown = shown
                    .into_iter()
                    .map(|(item, hours_ago)| {
                        let mut t = [0u32; SHOWN_TIMES];
                        let mut ago: Vec<u32> = hours_ago;
                        ago.sort_unstable();
                        for (slot, h) in t.iter_mut().zip(ago) {
                            *slot = ((NOW_MS - i64::from(h) * 3_600_000) / 1000) as u32;
                        }
                        (item, t)
                    })
                    .collect();
                u.ignored_categories = ignored_categories.into_iter().collect();
                u.purchases = purchases
                    .into_iter()
                    .map(|(item_id, category_id, price, days_ago)| Purchase {
                        item_id,
                        category_id,
                        price,
                        at_ms: NOW_MS - days_ago * DAY_MS,
                        title: "phone".into(),
                        ..Default::default()
                    })
                    .collect();
                u.purchases.sort_by_key(|p| p.at_ms);
                u.sightings = sightings
                    .into_iter()
                    .map(|(item_id, category_id, hours_ago)| Sighting {
                        item_id,
                        category_id,
                        at_ms: NOW_MS - hours_ago * 3_600_000,
                    })
                    .collect();
                u.sightings.sort_by_key(|s| s.at_ms);
                u.tags = tags
                    .into_iter()
                    .map(|((brand, id), (weight, learned))| Tag {
                        kind: if brand {
                            TagKind::Brand
                        } else {
                            TagKind::Category
                        },
                        id,
                        label: "tag".into(),
                        weight,
                        source: if learned {
                            TagSource::Learned(DimensionSet::of([DataDimension::Browsing]))
                        } else {
                            TagSource::User
                        },
                    })
                    .collect();
                u.recent_impressions = impressions;
                u.recent_engagements = engagements;
                if let Some((first, quiet)) = activity {
                    u.first_seen_ms = Some(NOW_MS - (first + quiet) * DAY_MS);
                    u.last_active_ms = Some(NOW_MS - quiet * DAY_MS);
                }
                u
            },
        )
}

fn user() -> impl Strategy<Value = UserView> {
    explicit().prop_flat_map(with_behaviour)
}

/// Every rule configured, over the categories the strategies draw from.
fn full_policy() -> Policy {
    let toml = r#"
        [consent]
        sensitive_categories = [4]
        [cooling_off]
        mode = "hard"
        cycles = [{ category_id = 1, days = 14 }, { category_id = 2, days = 3 }]
        [complements]
        graph = [{ category_id = 1, complements = [3, 5] }]
        [context]
        holidays = ["2027-01-15"]
        rules = [{ categories = [5], boost = 0.2, hours = [0, 24] },
                 { categories = [3], boost = 0.1, regions = ["CN-31"] }]
    "#;
    toml::from_str(toml).unwrap()
}

/// DPP with every diversity rule: hard caps, exploration, calibration, the long tail.
fn diverse_policy() -> Policy {
    let toml = r#"
        selection = "dpp"
        [diversity]
        depth = 6
        window = 3
        [hard_caps]
        category = { max = 3 }
        brand = { window = 3, max_in_window = 1 }
        [exploration]
        share = 0.3
        first_slot = 2
        min_score = 0.0
        [calibration]
        weight = 0.5
        [long_tail]
        weight = 0.2
    "#;
    toml::from_str(toml).unwrap()
}

/// The caps of [`diverse_policy`].
const MAX_PER_CATEGORY: usize = 3;
const BRAND_WINDOW: usize = 3;

fn policies() -> Policies {
    policies_with(Parallelism::SEQUENTIAL)
}

fn policies_with(parallelism: Parallelism) -> Policies {
    Policies::build(
        &BTreeMap::from([
            ("full".to_owned(), full_policy()),
            ("diverse".to_owned(), diverse_policy()),
        ]),
        parallelism,
    )
    .unwrap()
}

fn input(candidates: Vec<Candidate>, k: usize, dim: usize, seed: u64) -> RankInput {
    let n = candidates.len();
    let mut state = seed | 1;
    let embeddings = (dim > 0).then(|| {
        Array2::from_shape_fn((n, dim), |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f32 / 500.0 - 1.0
        })
    });
    RankInput {
        candidates,
        embeddings,
        k,
        explain: true,
        now_ms: NOW_MS,
        region: "CN-31".into(),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_policy_keeps_its_promises(
        candidates in candidates(),
        user in user(),
        k in 0usize..12,
        dim in prop_oneof![Just(0usize), Just(4usize)],
        seed in any::<u64>(),
        policy in prop_oneof![Just("default"), Just("full"), Just("diverse")],
    ) {
        let n = candidates.len();
        let input = input(candidates, k, dim, seed);
        let policies = policies();
        let pipeline = policies.get(policy).unwrap();
        let hard = HardRules {
            sensitive_categories: policies.settings(policy).unwrap().consent.sensitive_categories.clone(),
        };
        let ranking = pipeline.run(&input, &user, &Deadline::none()).unwrap();

        // 1 and 2
        for item in &ranking.items {
            let c = &input.candidates[item.index];
            prop_assert!(!user.is_not_interested(c.item_id));
            prop_assert!(!user.is_brand_blocked(c.brand_id));
            prop_assert!(!user.is_shop_blocked(c.shop_id));
            prop_assert!(policy != "full" || c.category_id != SENSITIVE || user.opted_in_sensitive(SENSITIVE));
            prop_assert!(c.evidence.is_empty() || !user.consent.allowed(c.evidence).is_empty());
            for d in item.reason.dimensions.iter() {
                prop_assert!(user.consent.allows(d), "reason cites {d} without consent");
            }
            // 3: the breakdown explains the score
            let sum: f32 = item.breakdown.iter().map(|(_, v)| v).sum();
            prop_assert!((sum - item.score).abs() < 1e-4, "{sum} vs {}", item.score);
        }
        // 3
        let survivors = n - ranking.dropped.len();
        let expected = if k == 0 { survivors } else { k.min(survivors) };
        if policy == "diverse" {
            // Hard caps may end the list early, and are never broken.
            prop_assert!(ranking.items.len() <= expected);
            let of = |i: &tactful::rank::RankedItem| &input.candidates[i.index];
            for item in &ranking.items {
                let category = of(item).category_id;
                let same = ranking.items.iter().filter(|i| of(i).category_id == category).count();
                prop_assert!(category == 0 || same <= MAX_PER_CATEGORY);
            }
            for w in ranking.items.windows(BRAND_WINDOW) {
                let brands: Vec<u64> = w.iter().map(|i| of(i).brand_id).filter(|b| *b != 0).collect();
                let distinct: HashSet<&u64> = brands.iter().collect();
                prop_assert_eq!(distinct.len(), brands.len(), "two of one brand within {} places", BRAND_WINDOW);
            }
        } else {
            prop_assert_eq!(ranking.items.len(), expected);
        }
        prop_assert!(ranking.suggested_k <= ranking.items.len());
        let distinct: HashSet<usize> = ranking.items.iter().map(|i| i.index).collect();
        prop_assert_eq!(distinct.len(), ranking.items.len());
        for w in ranking.items.windows(2) {
            prop_assert!(w[0].score >= w[1].score);
        }
        // 4
        let dropped: HashSet<u64> = ranking.dropped.iter().map(|d| d.item_id).collect();
        prop_assert_eq!(dropped.len(), ranking.dropped.len());
        let counted: u32 = ranking.avoidance.dropped.iter().sum();
        prop_assert_eq!(counted as usize, ranking.dropped.len());
        for d in &ranking.dropped {
            prop_assert!(ranking.items.iter().all(|i| i.item_id != d.item_id));
        }
        // 5
        let hard_survivors: Vec<usize> =
            (0..n).filter(|&i| hard.rule_for(&input.candidates[i], &user).is_none()).collect();
        let open = pipeline.fail_open(&input, &user);
        let open_order: Vec<usize> = open.items.iter().map(|i| i.index).collect();
        let limit = if k == 0 { hard_survivors.len() } else { k.min(hard_survivors.len()) };
        prop_assert_eq!(open_order, hard_survivors[..limit].to_vec());
    }

    #[test]
    fn personalisation_off_ignores_every_behavioural_state(
        candidates in candidates(),
        seed in any::<u64>(),
        k in 0usize..12,
        policy in prop_oneof![Just("default"), Just("full"), Just("diverse")],
        (a, b) in explicit().prop_flat_map(|base| {
            // Two users with the same explicit words and different behaviour.
            (with_behaviour(base.clone()), with_behaviour(base))
        }),
    ) {
        let off = |u: &UserView| {
            let mut u = u.clone();
            u.consent = u.consent.restrict(DimensionSet::EMPTY, true);
            u
        };
        let (a, b) = (off(&a), off(&b));
        let input = input(candidates, k, 4, seed);
        let policies = policies();
        let pipeline = policies.get(policy).unwrap();
        let ra = pipeline.run(&input, &a, &Deadline::none()).unwrap();
        let rb = pipeline.run(&input, &b, &Deadline::none()).unwrap();
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(ra.lifecycle, None);
        // And it is the answer for a user tactful knows nothing about but their words.
        let bare = pipeline.run(&input, &a.explicit_only(), &Deadline::none()).unwrap();
        prop_assert_eq!(&ra, &bare);
    }

    #[test]
    fn a_split_ranking_is_the_sequential_one_to_the_bit(
        candidates in candidates(),
        user in user(),
        k in 0usize..12,
        dim in prop_oneof![Just(0usize), Just(4usize)],
        seed in any::<u64>(),
        policy in prop_oneof![Just("default"), Just("full"), Just("diverse")],
    ) {
        let input = input(candidates, k, dim, seed);
        let one = policies().get(policy).unwrap().run(&input, &user, &Deadline::none()).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let split = policies_with(Parallelism { min_work: 1 });
        let two = pool
            .install(|| split.get(policy).unwrap().run(&input, &user, &Deadline::none()))
            .unwrap();
        prop_assert_eq!(&one, &two);
        let bits = |r: &tactful::rank::Ranking| -> Vec<u32> {
            r.items
                .iter()
                .flat_map(|i| {
                    std::iter::once(i.score.to_bits()).chain(i.breakdown.iter().map(|(_, v)| v.to_bits()))
                })
                .collect()
        };
        prop_assert_eq!(bits(&one), bits(&two));
    }
}

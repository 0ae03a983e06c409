//! Properties of the core pipeline over random requests and random user states (proptest, no
//! server). For the default policy, whatever the input:
//! 1. no returned item is not-interested, of a blocked brand or of a blocked shop;
//! 2. no returned item's evidence is only non-consented dimensions, and no reason cites a
//!    dimension the user has not consented to;
//! 3. the list holds min(k, survivors) distinct candidates of the request, scores never
//!    increase down the list, and each breakdown sums to the item's score;
//! 4. every dropped candidate is listed exactly once with `explain`, and survivors + dropped
//!    account for every candidate;
//! 5. the fail-open answer keeps the upstream order of the survivors of the same hard rules.

use std::collections::HashSet;

use ndarray::Array2;
use proptest::prelude::*;
use tactful::rank::{
    Candidate, Consent, DataDimension, Deadline, DimensionSet, Parallelism, Policies, RankInput,
    UserView, stages::hard_rule,
};

fn dimension_set() -> impl Strategy<Value = DimensionSet> {
    proptest::collection::vec(0usize..DataDimension::ALL.len(), 0..3)
        .prop_map(|ix| ix.into_iter().map(|i| DataDimension::ALL[i]).collect())
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(
        (
            -5.0f32..5.0,
            0u64..5,
            0u64..5,
            0u64..4,
            dimension_set(),
            any::<bool>(),
        ),
        0..40,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(
                |(i, (score, category_id, brand_id, shop_id, evidence, anchored))| Candidate {
                    item_id: i as u64 + 1,
                    score,
                    category_id,
                    brand_id,
                    shop_id,
                    evidence,
                    anchor_item_id: if anchored { 999 } else { 0 },
                    anchor_title: if anchored {
                        "thing".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                },
            )
            .collect()
    })
}

fn user() -> impl Strategy<Value = UserView> {
    (
        proptest::collection::btree_set(1u64..40, 0..6),
        proptest::collection::btree_set(1u64..5, 0..3),
        proptest::collection::btree_set(1u64..4, 0..2),
        proptest::collection::btree_map(1u64..40, 0.0f32..10.0, 0..10),
        dimension_set(),
        any::<bool>(),
    )
        .prop_map(
            |(ni, brands, shops, ignored, denied, personalization_off)| {
                let mut u = UserView::unknown(
                    Consent::privacy_default().restrict(denied, personalization_off),
                );
                u.not_interested = ni.into_iter().collect();
                u.blocked_brands = brands.into_iter().collect();
                u.blocked_shops = shops.into_iter().collect();
                u.ignored = ignored.into_iter().collect();
                u
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_default_policy_keeps_its_promises(
        candidates in candidates(),
        user in user(),
        k in 0usize..12,
        dim in prop_oneof![Just(0usize), Just(4usize)],
        seed in any::<u64>(),
    ) {
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
        let input = RankInput { candidates, embeddings, k, explain: true, ..Default::default() };
        let policies = Policies::build(&Default::default(), Parallelism::SEQUENTIAL).unwrap();
        let pipeline = policies.get("default").unwrap();
        let ranking = pipeline.run(&input, &user, &Deadline::none()).unwrap();

        let survivors: Vec<usize> =
            (0..n).filter(|&i| hard_rule(&input.candidates[i], &user).is_none()).collect();
        // 1 and 2
        for item in &ranking.items {
            let c = &input.candidates[item.index];
            prop_assert!(!user.is_not_interested(c.item_id));
            prop_assert!(!user.is_brand_blocked(c.brand_id));
            prop_assert!(!user.is_shop_blocked(c.shop_id));
            prop_assert!(c.evidence.is_empty() || !user.consent.allowed(c.evidence).is_empty());
            for d in item.reason.dimensions.iter() {
                prop_assert!(user.consent.allows(d), "reason cites {d} without consent");
            }
            // 3: the breakdown explains the score
            let sum: f32 = item.breakdown.iter().map(|(_, v)| v).sum();
            prop_assert!((sum - item.score).abs() < 1e-4, "{sum} vs {}", item.score);
        }
        // 3
        let expected = if k == 0 { survivors.len() } else { k.min(survivors.len()) };
        prop_assert_eq!(ranking.items.len(), expected);
        let distinct: HashSet<usize> = ranking.items.iter().map(|i| i.index).collect();
        prop_assert_eq!(distinct.len(), ranking.items.len());
        for w in ranking.items.windows(2) {
            prop_assert!(w[0].score >= w[1].score);
        }
        // 4
        let dropped: HashSet<u64> = ranking.dropped.iter().map(|d| d.item_id).collect();
        prop_assert_eq!(dropped.len(), ranking.dropped.len());
        prop_assert_eq!(dropped.len() + survivors.len(), n);
        // 5
        let open = pipeline.fail_open(&input, &user);
        let open_order: Vec<usize> = open.items.iter().map(|i| i.index).collect();
        let limit = if k == 0 { survivors.len() } else { k.min(survivors.len()) };
        prop_assert_eq!(open_order, survivors[..limit].to_vec());
    }
}

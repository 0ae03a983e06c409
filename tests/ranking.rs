//! Ranking over the real gRPC server. Properties checked:
//! 1. The default policy returns k items with non-increasing scores, upstream positions and a
//!    reason with text for every item; the response names its policy version.
//! 2. The identity policy returns the upstream order unchanged, with upstream scores.
//! 3. A wall of one category is broken up by diversity (attributes, and embeddings).
//! 4. `explain` adds a score breakdown that sums to the score, and lists dropped items.
//! 5. Reasons follow the request's locale (en, zh-CN).
//! 6. An unknown policy is INVALID_ARGUMENT naming `policy`.
//! 7. A request adjusts diversity within bounds (method, weight, exploration), and an
//!    exploration slot carries the reason "something new for you".

mod common;

use common::*;
use tactful::config::Config;
use tactful::pb;
use tonic::Code;

#[tokio::test]
async fn default_policy_returns_k_items_with_reasons_and_falling_scores() {
    let server = TestServer::start(Config::default()).await;
    let mut req = request("ana", catalogue());
    req.k = 5;
    req.request_id = "req-1".into();
    let r = server.rank(req).await;
    assert_eq!(r.items.len(), 5);
    assert_eq!(r.policy_version, "default@4");
    assert_eq!(r.request_id, "req-1");
    assert!(!r.degraded);
    for w in r.items.windows(2) {
        assert!(w[0].score >= w[1].score, "{:?}", r.items);
    }
    for item in &r.items {
        let reason = item.reason.as_ref().unwrap();
        assert!(!reason.text.is_empty());
        assert_eq!(item.upstream_position as u64, item.item_id - 1);
    }
    server.stop().await;
}

#[tokio::test]
async fn identity_returns_the_upstream_order() {
    let server = TestServer::start(Config::default()).await;
    let mut candidates = catalogue();
    candidates.reverse();
    let mut req = request("ana", candidates.clone());
    req.policy = "identity".into();
    let r = server.rank(req).await;
    let upstream: Vec<u64> = candidates.iter().map(|c| c.item_id).collect();
    assert_eq!(ids(&r), upstream);
    assert_eq!(r.items[0].score, candidates[0].score);
    assert_eq!(r.policy_version, "identity@2");
    let code = r.items[0].reason.as_ref().unwrap().code;
    assert_eq!(code, pb::ReasonCode::Upstream as i32);
    server.stop().await;
}

#[tokio::test]
async fn a_wall_of_one_category_is_broken_up() {
    let server = TestServer::start(Config::default()).await;
    let mut ranker = server.ranker().await;
    // The upstream top is a wall of five near-identical phones of one brand, closely followed
    // by other things, then a long tail of weaker candidates.
    let mut candidates: Vec<pb::Candidate> = (1..=5)
        .map(|i| candidate(i, 1.0 - i as f32 * 0.01, 10, 7))
        .collect();
    candidates.extend((6..=8).map(|i| candidate(i, 1.0 - i as f32 * 0.01, i, i)));
    candidates.extend((9..=20).map(|i| candidate(i, 0.6 - i as f32 * 0.02, i, i)));
    let mut req = request("ana", candidates.clone());
    req.k = 4;
    let r = ranker.rank(req).await.unwrap().into_inner();
    let phones = r.items.iter().filter(|i| i.item_id <= 5).count();
    assert!(phones <= 2, "attribute diversity: {:?}", ids(&r));

    // The same with embeddings: phones share a direction, every other item has its own.
    for c in &mut candidates {
        c.category_id = 0;
        c.brand_id = 0;
        c.shop_id = 0;
        let mut e = vec![0.0; 24];
        if c.item_id <= 5 {
            e[0] = 1.0;
            e[1] = 0.05 * c.item_id as f32;
        } else {
            e[c.item_id as usize] = 1.0;
        }
        c.embedding = e;
    }
    let mut req = request("ana", candidates);
    req.k = 4;
    let r = ranker.rank(req).await.unwrap().into_inner();
    let phones = r.items.iter().filter(|i| i.item_id <= 5).count();
    assert!(phones <= 2, "embedding diversity: {:?}", ids(&r));
    server.stop().await;
}

#[tokio::test]
async fn explain_adds_breakdowns_and_dropped_items() {
    let server = TestServer::start(Config::default()).await;
    let mut events = server.events().await;
    let mut block = event("ana", pb::EventType::BlockBrand);
    block.brand_id = 102;
    events
        .record(pb::RecordRequest {
            events: vec![block],
        })
        .await
        .unwrap();

    let mut req = request("ana", catalogue());
    req.explain = true;
    let r = server.rank(req).await;
    for item in &r.items {
        let sum: f32 = item.breakdown.iter().map(|c| c.value).sum();
        assert!((sum - item.score).abs() < 1e-5, "{item:?}");
        assert!(item.breakdown.iter().any(|c| c.name == "relevance"));
    }
    let dropped: Vec<(u64, i32)> = r.dropped.iter().map(|d| (d.item_id, d.rule)).collect();
    assert_eq!(
        dropped,
        vec![
            (2, pb::DropRule::BlockedBrand as i32),
            (7, pb::DropRule::BlockedBrand as i32)
        ]
    );
    assert!(r.dropped[0].detail.contains("102"));

    let plain = server.rank(request("ana", catalogue())).await;
    assert!(plain.dropped.is_empty() && plain.items.iter().all(|i| i.breakdown.is_empty()));
    server.stop().await;
}

#[tokio::test]
async fn reasons_follow_the_locale() {
    let server = TestServer::start(Config::default()).await;
    let mut c = candidate(1, 1.0, 1, 1);
    c.evidence = vec![pb::DataDimension::Favorites as i32];
    c.anchor_item_id = 99;
    c.anchor_title = "robot vacuum".into();
    let mut req = request("ana", vec![c]);
    let en = server.rank(req.clone()).await;
    let reason = en.items[0].reason.clone().unwrap();
    assert_eq!(reason.text, "Because you favourited robot vacuum");
    assert_eq!(reason.code, pb::ReasonCode::BecauseYouFavorited as i32);
    assert_eq!(reason.dimensions, vec![pb::DataDimension::Favorites as i32]);
    req.context = Some(pb::Context {
        locale: "zh-CN".into(),
        ..Default::default()
    });
    let zh = server.rank(req).await;
    assert_eq!(
        zh.items[0].reason.as_ref().unwrap().text,
        "因为你收藏了robot vacuum"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_policy_is_refused_by_name() {
    let server = TestServer::start(Config::default()).await;
    let mut req = request("ana", catalogue());
    req.policy = "nope".into();
    let status = server.ranker().await.rank(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("policy:"),
        "{}",
        status.message()
    );
    assert!(status.message().contains("identity"));
    server.stop().await;
}

#[tokio::test]
async fn diversity_is_adjusted_per_request_and_exploration_says_something_new() {
    let server = TestServer::start(Config::default()).await;
    // jo only ever clicks phones (category 10): phones become jo's dominant interest.
    let mut events = server.events().await;
    let clicks = (1..=6)
        .map(|i| {
            let mut e = event("jo", pb::EventType::Click);
            e.item_id = 900 + i;
            e.category_id = 10;
            e.brand_id = 7;
            e
        })
        .collect();
    events
        .record(pb::RecordRequest { events: clicks })
        .await
        .unwrap();
    // Upstream: eight phones of eight brands on top, then good items of other categories.
    let mut candidates: Vec<pb::Candidate> = (1..=8)
        .map(|i| candidate(i, 1.0 - i as f32 * 0.01, 10, i))
        .collect();
    candidates.extend((9..=12).map(|i| candidate(i, 0.9 - i as f32 * 0.01, i, i)));
    candidates.push(candidate(13, 0.0, 13, 13));
    let rank = |diversity: Option<pb::DiversityOptions>| {
        let mut req = request("jo", candidates.clone());
        req.k = 8;
        req.explain = true;
        req.diversity = diversity;
        server.rank(req)
    };

    // Position 5 is an exploration slot: the best item outside phones, with its reason (no
    // similarity weight, so nothing else moves).
    let r = rank(Some(pb::DiversityOptions {
        weight: Some(0.0),
        ..Default::default()
    }))
    .await;
    let fifth = &r.items[4];
    let reason = fifth.reason.as_ref().unwrap();
    assert_eq!(reason.code, pb::ReasonCode::Exploration as i32, "{r:?}");
    assert_eq!(reason.text, "Something new for you");
    assert_eq!(ids(&r), vec![1, 2, 3, 4, 9, 5, 6, 7]);

    // No exploration and no similarity weight: the upstream order by score.
    let plain = pb::DiversityOptions {
        weight: Some(0.0),
        exploration_share: Some(0.0),
        long_tail: Some(0.0),
        ..Default::default()
    };
    let r = rank(Some(plain)).await;
    assert_eq!(ids(&r), (1..=8).collect::<Vec<u64>>());

    // DPP with a strong weight breaks the wall of phones.
    let r = rank(Some(pb::DiversityOptions {
        method: pb::DiversityMethod::Dpp.into(),
        weight: Some(1.0),
        ..plain
    }))
    .await;
    let phones = r.items.iter().filter(|i| i.item_id <= 8).count();
    assert!(phones < 8, "dpp: {:?}", ids(&r));
    for w in r.items.windows(2) {
        assert!(w[0].score >= w[1].score);
    }
    server.stop().await;
}

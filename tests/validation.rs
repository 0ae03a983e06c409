//! Bad Rank input gets INVALID_ARGUMENT naming the field, over the wire, and changes nothing.
//! Properties checked, one case each:
//! 1. empty or oversized `user_id`;
//! 2. NaN or infinite `score`, `price`, `popularity`, embedding values;
//! 3. duplicate or zero `item_id`;
//! 4. embeddings of differing lengths within one request;
//! 5. more candidates than the configured maximum; `k` above the configured maximum;
//! 6. unknown enum values in `evidence` and `consent.denied`.
//! 7. A request at exactly the limits is accepted.

mod common;

use common::*;
use tactful::config::{Config, Limits};
use tactful::pb;
use tonic::Code;

fn small_limits() -> Config {
    Config {
        limits: Limits {
            max_candidates: 20,
            max_k: 5,
            ..Limits::default()
        },
        ..Config::default()
    }
}

#[tokio::test]
async fn every_bad_field_is_named() {
    let server = TestServer::start(small_limits()).await;
    let mut ranker = server.ranker().await;
    let base = request("jo", catalogue());

    let mut cases: Vec<(&str, pb::RankRequest)> = Vec::new();
    let mut r = base.clone();
    r.user_id.clear();
    cases.push(("user_id", r));
    let mut r = base.clone();
    r.user_id = "x".repeat(300);
    cases.push(("user_id", r));
    let mut r = base.clone();
    r.candidates[3].score = f32::NAN;
    cases.push(("candidates[3].score", r));
    let mut r = base.clone();
    r.candidates[2].score = f32::NEG_INFINITY;
    cases.push(("candidates[2].score", r));
    let mut r = base.clone();
    r.candidates[4].price = f32::INFINITY;
    cases.push(("candidates[4].price", r));
    let mut r = base.clone();
    r.candidates[1].popularity = f32::NAN;
    cases.push(("candidates[1].popularity", r));
    let mut r = base.clone();
    r.candidates[5].item_id = r.candidates[2].item_id;
    cases.push(("candidates[5].item_id", r));
    let mut r = base.clone();
    r.candidates[0].item_id = 0;
    cases.push(("candidates[0].item_id", r));
    let mut r = base.clone();
    for c in &mut r.candidates {
        c.embedding = vec![0.1, 0.2, 0.3];
    }
    r.candidates[6].embedding.pop();
    cases.push(("candidates[6].embedding", r));
    let mut r = base.clone();
    for c in &mut r.candidates {
        c.embedding = vec![0.1, 0.2];
    }
    r.candidates[7].embedding[1] = f32::NAN;
    cases.push(("candidates[7].embedding[1]", r));
    let mut r = base.clone();
    r.candidates = (1..=21).map(|i| candidate(i, 0.5, 1, 1)).collect();
    cases.push(("candidates", r));
    let mut r = base.clone();
    r.k = 6;
    cases.push(("k", r));
    let mut r = base.clone();
    r.candidates[0].evidence = vec![77];
    cases.push(("candidates[0].evidence[0]", r));
    let mut r = base.clone();
    r.consent = Some(pb::ConsentOverride {
        denied: vec![0],
        personalization_off: false,
    });
    cases.push(("consent.denied[0]", r));
    let diversity = |d: pb::DiversityOptions| {
        let mut r = base.clone();
        r.diversity = Some(d);
        r
    };
    cases.push((
        "diversity.weight",
        diversity(pb::DiversityOptions {
            weight: Some(2.5),
            ..Default::default()
        }),
    ));
    cases.push((
        "diversity.exploration_share",
        diversity(pb::DiversityOptions {
            exploration_share: Some(-0.1),
            ..Default::default()
        }),
    ));
    cases.push((
        "diversity.calibration",
        diversity(pb::DiversityOptions {
            calibration: Some(f32::NAN),
            ..Default::default()
        }),
    ));
    cases.push((
        "diversity.long_tail",
        diversity(pb::DiversityOptions {
            long_tail: Some(0.9),
            ..Default::default()
        }),
    ));
    cases.push((
        "diversity.method",
        diversity(pb::DiversityOptions {
            method: 9,
            ..Default::default()
        }),
    ));

    for (field, req) in cases {
        let status = ranker.rank(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let prefix = format!("{field}: ");
        assert!(
            status.message().starts_with(&prefix),
            "expected {prefix:?}, got {:?}",
            status.message()
        );
    }

    // At the limits exactly: accepted.
    let mut ok = request("jo", (1..=20).map(|i| candidate(i, 0.5, 1, 1)).collect());
    ok.k = 5;
    assert_eq!(ranker.rank(ok).await.unwrap().into_inner().items.len(), 5);
    server.stop().await;
}

#[tokio::test]
async fn a_rejected_request_changes_nothing() {
    let server = TestServer::start(Config::default()).await;
    let mut bad = request("ka", catalogue());
    bad.candidates[0].score = f32::NAN;
    assert!(server.ranker().await.rank(bad).await.is_err());
    assert_eq!(server.store.len(), 0);
    server.stop().await;
}

//! tactful never makes the host worse off. Properties checked, each made deterministic with a
//! test stage rather than wall-clock luck:
//! 1. Past the caller's deadline (`grpc-timeout`): the upstream order, `degraded`, reason
//!    DEADLINE; with `strict`, DEADLINE_EXCEEDED.
//! 2. Past the server's own budget: reason BUDGET.
//! 3. Over the in-flight limit: an immediate upstream answer, reason OVERLOAD; with `strict`,
//!    RESOURCE_EXHAUSTED. The admitted call still completes normally.
//! 4. A stage that panics: reason INTERNAL, and the server keeps serving.
//! 5. A fail-open answer still honours the user's explicit feedback and consent.
//! 6. Where a ranking runs: a small one of a bounded pipeline (the built-in policies) on the
//!    calling task, a large one, or one of a pipeline with stages added in code, on the ranking
//!    pool; run where the call is, a panic still fails open with INTERNAL and a ranking that
//!    overruns its deadline still fails open with DEADLINE.

mod common;

use std::time::Duration;

use common::*;
use tactful::config::{Config, RankSettings};
use tactful::pb;
use tonic::Code;

/// These tests hold rankings until tight deadlines, and the reserve kept to send the
/// fail-open answer is a few milliseconds: run in parallel on a small machine, one test's
/// work can starve another's reserve. They take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(budget_ms: u64, max_inflight: usize) -> Config {
    Config {
        rank: RankSettings {
            budget_ms,
            max_inflight,
            ..RankSettings::default()
        },
        ..Config::default()
    }
}

fn with_timeout(req: pb::RankRequest, ms: u64) -> tonic::Request<pb::RankRequest> {
    let mut r = tonic::Request::new(req);
    r.set_timeout(Duration::from_millis(ms));
    r
}

fn upstream(candidates: &[pb::Candidate]) -> Vec<u64> {
    candidates.iter().map(|c| c.item_id).collect()
}

/// Candidates whose upstream order differs from their score order, so a degraded answer is
/// told apart from a ranked one.
fn shuffled() -> Vec<pb::Candidate> {
    let mut c = catalogue();
    c.swap(0, 9);
    c.swap(2, 5);
    c
}

#[tokio::test]
async fn past_the_callers_deadline_the_upstream_order_is_returned() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::with_pipelines(
        config(10_000, 64),
        vec![("stall", pipeline_with("stall", StallPastDeadline))],
    )
    .await;
    let mut ranker = server.ranker().await;
    let mut req = request("la", shuffled());
    req.policy = "stall".into();
    let r = ranker
        .rank(with_timeout(req.clone(), 200))
        .await
        .unwrap()
        .into_inner();
    assert!(r.degraded);
    assert_eq!(r.degraded_reason, pb::DegradedReason::Deadline as i32);
    assert_eq!(ids(&r), upstream(&req.candidates));
    assert_eq!(r.policy_version, "stall@1");

    req.strict = true;
    let status = ranker.rank(with_timeout(req, 200)).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    server.stop().await;
}

#[tokio::test]
async fn past_the_servers_budget_the_reason_is_budget() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::with_pipelines(
        config(30, 64),
        vec![("stall", pipeline_with("stall", StallPastDeadline))],
    )
    .await;
    let mut req = request("ma", shuffled());
    req.policy = "stall".into();
    req.k = 4;
    let r = server.rank(req.clone()).await;
    assert!(r.degraded);
    assert_eq!(r.degraded_reason, pb::DegradedReason::Budget as i32);
    assert_eq!(ids(&r), upstream(&req.candidates[..4]));
    server.stop().await;
}

#[tokio::test]
async fn over_the_inflight_limit_answers_at_once_and_the_admitted_call_completes() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let gate = Gate::default();
    let server = TestServer::with_pipelines(
        config(10_000, 1),
        vec![("gate", pipeline_with("gate", gate.clone()))],
    )
    .await;
    let mut held = request("na", shuffled());
    held.policy = "gate".into();
    let mut first = server.ranker().await;
    let admitted = tokio::spawn(async move { first.rank(held).await });
    gate.entered(1).await;

    let mut ranker = server.ranker().await;
    let mut req = request("na", shuffled());
    let r = ranker.rank(req.clone()).await.unwrap().into_inner();
    assert!(r.degraded);
    assert_eq!(r.degraded_reason, pb::DegradedReason::Overload as i32);
    assert_eq!(ids(&r), upstream(&req.candidates));
    req.strict = true;
    assert_eq!(
        ranker.rank(req).await.unwrap_err().code(),
        Code::ResourceExhausted
    );

    gate.open();
    let done = admitted.await.unwrap().unwrap().into_inner();
    assert!(!done.degraded);
    assert_eq!(done.items[0].item_id, 1, "ranked by score, not upstream");
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_stage_fails_open_and_the_server_keeps_serving() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::with_pipelines(
        config(10_000, 64),
        vec![("boom", pipeline_with("boom", Boom))],
    )
    .await;
    let mut ranker = server.ranker().await;
    let mut req = request("oz", shuffled());
    req.policy = "boom".into();
    for _ in 0..3 {
        let r = ranker.rank(req.clone()).await.unwrap().into_inner();
        assert!(r.degraded);
        assert_eq!(r.degraded_reason, pb::DegradedReason::Internal as i32);
    }
    req.strict = true;
    assert_eq!(ranker.rank(req).await.unwrap_err().code(), Code::Internal);
    let fine = ranker
        .rank(request("oz", shuffled()))
        .await
        .unwrap()
        .into_inner();
    assert!(!fine.degraded);
    server.stop().await;
}

#[tokio::test]
async fn a_fail_open_answer_still_honours_explicit_feedback_and_consent() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = TestServer::with_pipelines(
        config(10_000, 64),
        vec![("stall", pipeline_with("stall", StallPastDeadline))],
    )
    .await;
    let mut block = event("pa", pb::EventType::BlockBrand);
    block.brand_id = 103;
    server
        .events()
        .await
        .record(pb::RecordRequest {
            events: vec![block],
        })
        .await
        .unwrap();
    let mut candidates = shuffled();
    candidates[0].evidence = vec![pb::DataDimension::CrossPlatform as i32];
    let mut req = request("pa", candidates.clone());
    req.policy = "stall".into();
    let r = server.rank(with_timeout(req, 100)).await;
    assert!(r.degraded);
    let expected: Vec<u64> = candidates
        .iter()
        .skip(1) // cross-platform only: no consent
        .map(|c| c.item_id)
        .filter(|id| *id != 3 && *id != 8) // brand 103 blocked
        .collect();
    assert_eq!(ids(&r), expected);
    server.stop().await;
}

/// Notes the name of the thread each ranking runs on.
#[derive(Clone, Default)]
struct WhereRun(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl WhereRun {
    fn last(&self) -> String {
        self.0.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

impl tactful::rank::Stage for WhereRun {
    fn name(&self) -> &'static str {
        "where_run"
    }
    fn apply(
        &self,
        _: &mut tactful::rank::Slate<'_>,
        _: &tactful::rank::Deadline,
    ) -> Result<(), tactful::rank::Interrupted> {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        self.0.lock().unwrap().push(name);
        Ok(())
    }
}

#[tokio::test]
async fn small_bounded_rankings_run_where_the_call_is_and_still_fail_open() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (bounded, open) = (WhereRun::default(), WhereRun::default());
    let server = TestServer::with_pipelines(
        config(10_000, 64),
        vec![
            (
                "bounded",
                pipeline_with("bounded", bounded.clone()).bounded(),
            ),
            ("open", pipeline_with("open", open.clone())),
            ("boom", pipeline_with("boom", Boom).bounded()),
            ("stall", pipeline_with("stall", StallPastDeadline).bounded()),
        ],
    )
    .await;
    let mut ranker = server.ranker().await;
    let ranked = |policy: &str, candidates: Vec<pb::Candidate>| {
        let mut req = request("where", candidates);
        req.policy = policy.into();
        req
    };
    let r = ranker.rank(ranked("bounded", shuffled())).await.unwrap();
    assert!(!r.into_inner().degraded);
    assert!(
        !bounded.last().starts_with("tactful-rank"),
        "{}",
        bounded.last()
    );
    let r = ranker.rank(ranked("open", shuffled())).await.unwrap();
    assert!(!r.into_inner().degraded);
    assert!(open.last().starts_with("tactful-rank"), "{}", open.last());
    // 3,000 candidates with 32-dim embeddings: past the size at which passes split.
    let large: Vec<pb::Candidate> = (1..=3000u64)
        .map(|i| pb::Candidate {
            item_id: i,
            score: 1.0 / i as f32,
            embedding: vec![0.5; 32],
            ..Default::default()
        })
        .collect();
    let r = ranker.rank(ranked("bounded", large)).await.unwrap();
    assert!(!r.into_inner().degraded);
    assert!(
        bounded.last().starts_with("tactful-rank"),
        "{}",
        bounded.last()
    );

    let r = ranker
        .rank(ranked("boom", shuffled()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.degraded);
    assert_eq!(r.degraded_reason, pb::DegradedReason::Internal as i32);
    let req = ranked("stall", shuffled());
    let r = ranker
        .rank(with_timeout(req.clone(), 200))
        .await
        .unwrap()
        .into_inner();
    assert!(r.degraded);
    assert_eq!(r.degraded_reason, pb::DegradedReason::Deadline as i32);
    assert_eq!(ids(&r), upstream(&req.candidates));
    // And the server keeps ranking.
    let r = ranker.rank(ranked("bounded", shuffled())).await.unwrap();
    assert!(!r.into_inner().degraded);
    server.stop().await;
}

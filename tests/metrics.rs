//! The admin HTTP server as Prometheus and Kubernetes meet it. Properties checked:
//! 1. `/live` and `/ready` answer 200 while the server serves.
//! 2. After a few calls, `/metrics` (scraped over HTTP) counts them by method and outcome (ok,
//!    degraded, invalid_argument), with latency histograms; fail-open answers by reason;
//!    candidates and time per pipeline stage; events by type and outcome; candidates removed
//!    per hard rule (the trust KPIs); users in memory; the policy in force; readiness.
//! 3. Once a drain begins, `/ready` answers 503 while `/live` stays 200, and the call in
//!    flight still completes.

mod common;

use std::time::Duration;

use common::*;
use tactful::config::Config;
use tactful::pb;

/// Scrapes until `series` reaches `at_least` (stage timings are recorded just after the
/// answer leaves, so a scrape can come a moment early) or ten seconds pass; returns the page.
async fn scrape_until(admin: std::net::SocketAddr, series: &str, at_least: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = http_get(admin, "/metrics").await;
        assert_eq!(status, 200);
        let reached = metric(&page, series).is_some_and(|v| v >= at_least);
        if reached || tokio::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_calls_outcomes_stages_events_and_avoidance() {
    let mut config = Config::default();
    config.rank.budget_ms = 30;
    let server = TestServer::with_admin(
        config,
        vec![("stall", pipeline_with("stall", StallPastDeadline))],
    )
    .await;
    let admin = server.admin.unwrap();
    assert_eq!(http_get(admin, "/live").await, (200, "live\n".into()));
    assert_eq!(http_get(admin, "/ready").await, (200, "ready\n".into()));

    let mut block = event("mia", pb::EventType::BlockBrand);
    block.brand_id = 101;
    let no_brand = event("mia", pb::EventType::BlockBrand);
    let recorded = server
        .events()
        .await
        .record(pb::RecordRequest {
            events: vec![block, no_brand],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((recorded.applied, recorded.rejected_total), (1, 1));

    // Brand 101 is items 1 and 6 of the catalogue: two removed per ranking.
    for _ in 0..2 {
        let r = server.rank(request("mia", catalogue())).await;
        assert!(!r.degraded);
        assert_eq!(r.items.len(), 8);
    }
    let mut stalled = request("mia", catalogue());
    stalled.policy = "stall".into();
    assert!(server.rank(stalled).await.degraded);
    let invalid = server
        .ranker()
        .await
        .rank(request("", catalogue()))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // The stalled ranking answered at its deadline, but its job records its stages only when
    // the stall returns, on the pool: wait for that before reading the rest.
    scrape_until(
        admin,
        r#"tactful_rank_stage_duration_seconds_count{stage="stall_past_deadline"}"#,
        1.0,
    )
    .await;
    let page = scrape_until(
        admin,
        r#"tactful_rank_stage_duration_seconds_count{stage="explain"}"#,
        2.0,
    )
    .await;
    let m = |series: &str| {
        metric(&page, series).unwrap_or_else(|| panic!("{series} is missing from:\n{page}"))
    };
    let rank = r#"method="tactful.v1.Ranker/Rank""#;
    assert_eq!(
        m(&format!(
            r#"tactful_grpc_requests_total{{{rank},outcome="ok"}}"#
        )),
        2.0
    );
    assert_eq!(
        m(&format!(
            r#"tactful_grpc_requests_total{{{rank},outcome="degraded"}}"#
        )),
        1.0
    );
    assert_eq!(
        m(&format!(
            r#"tactful_grpc_requests_total{{{rank},outcome="invalid_argument"}}"#
        )),
        1.0
    );
    assert_eq!(
        m(&format!(
            r#"tactful_grpc_request_duration_seconds_count{{{rank},outcome="ok"}}"#
        )),
        2.0
    );
    assert_eq!(
        m(r#"tactful_grpc_requests_total{method="tactful.v1.Events/Record",outcome="ok"}"#),
        1.0
    );
    assert_eq!(m(r#"tactful_rank_degraded_total{reason="budget"}"#), 1.0);
    assert_eq!(m(r#"tactful_rank_degraded_total{reason="overload"}"#), 0.0);
    // The invalid request never reached the engine.
    assert_eq!(m("tactful_rank_candidates_count"), 3.0);
    assert_eq!(m("tactful_rank_candidates_sum"), 30.0);
    // The stalled ranking ran its first stage, then one that returns only once the deadline
    // has passed: the stages after it never ran.
    for (stage, runs) in [
        ("explicit_feedback", 3.0),
        ("relevance", 2.0),
        ("mmr", 2.0),
        ("explain", 2.0),
        ("stall_past_deadline", 1.0),
    ] {
        let series = format!(r#"tactful_rank_stage_duration_seconds_count{{stage="{stage}"}}"#);
        assert_eq!(metric(&page, &series).unwrap_or(0.0), runs, "{series}");
    }
    assert_eq!(
        m(r#"tactful_events_total{outcome="applied",type="block_brand"}"#),
        1.0
    );
    assert_eq!(
        m(r#"tactful_events_total{outcome="rejected",type="block_brand"}"#),
        1.0
    );
    // The fail-open answer applies the user's block too.
    assert_eq!(
        m(r#"tactful_avoidance_dropped_total{rule="blocked_brand"}"#),
        6.0
    );
    assert_eq!(m("tactful_avoidance_rankings_total"), 3.0);
    assert!(m(r#"tactful_avoidance_penalised_total{component="fatigue"}"#) >= 0.0);
    assert!(m("tactful_state_users") >= 1.0);
    assert!(m("tactful_state_bytes") > 0.0);
    assert_eq!(m("tactful_rank_inflight"), 0.0);
    assert_eq!(m("tactful_rank_max_inflight"), 1024.0);
    assert_eq!(
        m(r#"tactful_policy_info{policy="default",version="default@4"}"#),
        1.0
    );
    assert_eq!(m("tactful_ready"), 1.0);
    assert!(m("process_resident_memory_bytes") > 0.0);
    server.stop().await;
}

#[tokio::test]
async fn ready_turns_503_when_the_drain_begins_while_live_stays_200() {
    let mut config = Config::default();
    config.rank.budget_ms = 10_000;
    let mut server = TestServer::with_admin(
        config,
        vec![(
            "slow",
            pipeline_with("slow", Slow(Duration::from_millis(400))),
        )],
    )
    .await;
    let admin = server.admin.unwrap();
    let mut ranker = server.ranker().await;
    let mut req = request("qi", catalogue());
    req.policy = "slow".into();
    let in_flight = tokio::spawn(async move { ranker.rank(req).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(http_get(admin, "/ready").await.0, 200);
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(http_get(admin, "/ready").await, (503, "draining\n".into()));
    assert_eq!(http_get(admin, "/live").await.0, 200);
    // The admin server stops once the drain is over (as in `tactful serve`): scraped during it.
    let (_, page) = http_get(admin, "/metrics").await;
    assert_eq!(metric(&page, "tactful_ready"), Some(0.0));
    let r = in_flight.await.unwrap().unwrap().into_inner();
    assert!(!r.degraded);
    server.stopped().await.unwrap();
}

//! Request ids and log lines. Properties checked:
//! 1. Every response carries `x-request-id`: the caller's when it sent a sensible one, a fresh
//!    one otherwise (errors included).
//! 2. A log line written during a call carries the call's method, request id, trace id (from
//!    `traceparent`) and the user's pseudonym, and never the user id.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use tactful::config::{Config, Secret};
use tactful::pseudonym::Pseudonyms;

const KEY: &str = "a pseudonym key for the log test";

/// Collects what the test's subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn responses_echo_or_make_a_request_id() {
    let server = TestServer::start(Config::default()).await;
    let mut ranker = server.ranker().await;
    let r = ranker.rank(request("id", catalogue())).await.unwrap();
    let made = r.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(made.len(), 32, "{made}");

    let mut req = tonic::Request::new(request("id", catalogue()));
    req.metadata_mut()
        .insert("x-request-id", "checkout-7f3a".parse().unwrap());
    let r = ranker.rank(req).await.unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "checkout-7f3a");

    let mut req = tonic::Request::new(request("", catalogue()));
    req.metadata_mut()
        .insert("x-request-id", "bad-request-1".parse().unwrap());
    let status = ranker.rank(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "bad-request-1"
    );
    server.stop().await;
}

#[tokio::test]
async fn log_lines_of_a_call_carry_its_ids_and_a_pseudonym_never_the_user_id() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Global, not scoped to this thread: a scoped subscriber can miss callsites another test
    // thread registers at the same moment. The only test here that installs one.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut config = Config::default();
    config.rank.budget_ms = 20;
    config.user_hash_key = Some(Secret(KEY.into()));
    let server = TestServer::with_pipelines(
        config,
        vec![("stall", pipeline_with("stall", StallPastDeadline))],
    )
    .await;
    let user = "lena@example.com";
    let mut rank = request(user, catalogue());
    rank.policy = "stall".into();
    let mut req = tonic::Request::new(rank);
    req.metadata_mut()
        .insert("x-request-id", "feed-load-991".parse().unwrap());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let r = server.ranker().await.rank(req).await.unwrap().into_inner();
    assert!(
        r.degraded,
        "the stalled ranking fails open and says so in the log"
    );
    server.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("failing open"))
        .unwrap_or_else(|| panic!("no fail-open line in:\n{logs}"));
    let pseudonym = Pseudonyms::new(Some(KEY)).of(user);
    for expected in [
        "rpc{",
        r#"method="tactful.v1.Ranker/Rank""#,
        "request_id=feed-load-991",
        &format!(r#"trace_id="{trace}""#),
        &format!(r#"user="{pseudonym}""#),
    ] {
        assert!(line.contains(expected), "{expected:?} missing from {line}");
    }
    assert!(!logs.contains("lena"), "the user id was logged:\n{logs}");
}

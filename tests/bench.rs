//! The load generator (`tactful bench`, the real binary) against a real server on 127.0.0.1:0:
//! 1. `--events stream` and `--events record` deliver every event they count, spread over the
//!    users asked for, and report errors as none;
//! 2. `--payload` sends the ghz payload, spread over `--users` users (each one's profile shows
//!    the rankings relied on their data);
//! 3. the server's CPU time is found without being told the pid: the server here is this test
//!    process, the owner of the listening socket;
//! 4. flags that do not belong together are refused before anything is sent;
//! 5. the open loop keeps its schedule (never ahead of it) and reports how late each send
//!    was; requests with embeddings in the bytes form (`--embedding-bytes`) are all ranked;
//!    `--health` sends health checks instead, all answered;
//! 6. `--write-frame` writes the request it would send as one gRPC message, which decodes to
//!    the request asked for and is ranked, and sends nothing.
//!
//! Bounded: a few thousand events and a few dozen rankings, on 127.0.0.1.

mod common;

use std::process::{Command, Output};

use common::*;
use tactful::config::Config;
use tactful::pb;

fn run_bench(server: &TestServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(["bench", "--addr", &format!("http://{}", server.addr)])
        .args(["--max-seconds", "30", "--warmup", "0", "--json"])
        .args(args)
        .output()
        .unwrap()
}

/// The JSON report of a bench that must succeed.
fn bench(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let out = run_bench(server, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn assert_server_cpu_found(report: &serde_json::Value) {
    let server = &report["server"];
    assert_eq!(
        server["pid"].as_u64(),
        Some(u64::from(std::process::id())),
        "the listener's owner is this process: {report}"
    );
    assert!(server["cpu_s"].as_f64().unwrap() >= 0.0, "{report}");
    assert!(server["peak_rss_mib"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["client"]["cpu_s"].as_f64().is_some(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_through_stream_and_record_are_all_applied_over_many_users() {
    let server = TestServer::start(Config::default()).await;
    let streamed = tokio::task::block_in_place(|| {
        bench(
            &server,
            &[
                "--events",
                "stream",
                "--event-count",
                "3000",
                "--users",
                "50",
                "--concurrency",
                "2",
                "--per-stream",
                "1000",
                "--explicit-share",
                "0.05",
            ],
        )
    });
    eprintln!("stream: {streamed}");
    assert_eq!(streamed["via"], "stream");
    assert_eq!(streamed["sent"], 3000);
    assert_eq!(streamed["applied"], 3000, "{streamed}");
    assert_eq!(streamed["rejected"], 0);
    assert_eq!(streamed["errors"], serde_json::json!({}));
    // Two workers of 1500 events, in streams of at most 1000.
    assert_eq!(streamed["calls"], 4);
    assert!(streamed["events_per_s"].as_f64().unwrap() > 0.0);
    assert_server_cpu_found(&streamed);
    // Heavy and light users alike: all fifty are known now.
    assert_eq!(server.store.len(), 50);

    let recorded = tokio::task::block_in_place(|| {
        bench(
            &server,
            &[
                "--events",
                "record",
                "--event-count",
                "1000",
                "--batch",
                "16",
                "--users",
                "80",
            ],
        )
    });
    eprintln!("record: {recorded}");
    assert_eq!(recorded["applied"], 1000, "{recorded}");
    assert_eq!(recorded["errors"], serde_json::json!({}));
    // Four workers of 250 events in batches of 16: 15 full and one of 10 each.
    assert_eq!(recorded["calls"], 64);
    assert_eq!(server.store.len(), 80);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ghz_payload_is_ranked_for_each_of_the_users_asked_for() {
    // Every call ranked, however slow a debug build on a busy machine: this is about what is
    // sent, not how fast (the default 50 ms budget would fail some open).
    let mut config = Config::default();
    config.rank.budget_ms = 10_000;
    let server = TestServer::start(config).await;
    // Known users, so that each profile can show what rankings relied on.
    let mut events = server.events().await;
    let users: Vec<String> = (0..4).map(|j| format!("ghz-user-1-{j}")).collect();
    for u in users.iter().chain([&"ghz-user-1".to_owned()]) {
        let mut e = event(u, tactful::pb::EventType::Impression);
        e.item_id = 1;
        events
            .record(tactful::pb::RecordRequest { events: vec![e] })
            .await
            .unwrap();
    }
    let payload = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/ghz/data/rank-default.json"
    );
    let report = tokio::task::block_in_place(|| {
        bench(
            &server,
            &[
                "--payload",
                payload,
                "--users",
                "3",
                "--requests",
                "30",
                "--concurrency",
                "2",
                "--timeout-ms",
                "20000",
            ],
        )
    });
    eprintln!("payload: {report}");
    assert_eq!(report["sent"], 30);
    assert_eq!(report["ranked"]["count"], 30, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_server_cpu_found(&report);
    for (j, u) in users.iter().enumerate() {
        let used = server.get_profile(u).await.used_recently;
        assert_eq!(!used.is_empty(), j < 3, "{u}: used {used:?}");
    }
    let file_user = server.get_profile("ghz-user-1").await.used_recently;
    assert!(file_user.is_empty(), "the file's own user was replaced");

    let text = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(["bench", "--addr", &format!("http://{}", server.addr)])
            .args(["--payload", payload, "--requests", "5", "--warmup", "0"])
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with("Rank: 100 candidates, dim 64, k 20 from "),
        "{text}"
    );
    assert!(text.contains("server CPU (pid "), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_that_do_not_belong_together_are_refused_before_anything_is_sent() {
    let server = TestServer::start(Config::default()).await;
    for (args, says) in [
        (
            &["--events", "stream", "--batch", "8"][..],
            "--batch applies to --events record",
        ),
        (&["--events", "record", "--candidates", "5"], "--candidates"),
        (&["--payload", "x.json", "--k", "5"], "--k"),
        (&["--payload", "/nonexistent.json"], "cannot read"),
        (&["--users", "0"], "--users must be above 0"),
    ] {
        let out = tokio::task::block_in_place(|| run_bench(&server, args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(server.store.len(), 0, "nothing was sent");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frame_it_writes_is_one_grpc_message_of_the_request_asked_for() {
    use prost::Message;
    let server = TestServer::start(Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rank.bin");
    let args = ["--candidates", "30", "--dim", "8", "--k", "7"];
    let out = tokio::task::block_in_place(|| {
        let mut all = vec!["--write-frame", path.to_str().unwrap()];
        all.extend(args);
        run_bench(&server, &all)
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.store.len(), 0, "nothing was sent");

    let frame = std::fs::read(&path).unwrap();
    assert_eq!(frame[0], 0, "not compressed");
    let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(
        len,
        frame.len() - 5,
        "the header gives the message's length"
    );
    let request = pb::RankRequest::decode(&frame[5..]).unwrap();
    assert_eq!(request.candidates.len(), 30);
    assert_eq!(request.k, 7);
    assert!(request.candidates.iter().all(|c| c.embedding.len() == 8));
    let answer = server.rank(request).await;
    assert_eq!(answer.items.len(), 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_keeps_its_schedule_and_reports_its_pacing() {
    let mut config = Config::default();
    config.rank.budget_ms = 10_000;
    let server = TestServer::start(config).await;
    let report = tokio::task::block_in_place(|| {
        bench(
            &server,
            &[
                "--rate",
                "200",
                "--requests",
                "100",
                "--candidates",
                "20",
                "--dim",
                "8",
                "--embedding-bytes",
            ],
        )
    });
    assert_eq!(report["sent"], 100, "{report}");
    assert_eq!(report["pacing"]["count"], 100, "{report}");
    // The last request is due 99/200 s after the first: the run cannot be shorter.
    assert!(report["elapsed_s"].as_f64().unwrap() >= 0.495, "{report}");
    assert!(
        report["pacing"]["max_ms"].as_f64().unwrap() >= 0.0,
        "{report}"
    );
    assert_eq!(
        report["ranked"]["count"], 100,
        "every call ranked: {report}"
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    // Health checks instead, the transport's floor to compare a Rank call with.
    let health = tokio::task::block_in_place(|| {
        bench(
            &server,
            &["--health", "--requests", "50", "--concurrency", "2"],
        )
    });
    assert_eq!(health["sent"], 50, "{health}");
    assert_eq!(health["errors"], serde_json::json!({}), "{health}");
    server.stop().await;
}

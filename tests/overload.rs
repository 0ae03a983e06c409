//! Overload, driven by the project's load generator (`tactful bench`, open loop) against a
//! server whose rankings each hold a ranking thread for 20 ms (so the ranking pool, not the
//! shared CPU of the test machine, is what saturates). Properties checked:
//! 1. At about 3× the load it sustains, the server stays up and answers every call: what it
//!    can rank keeps its normal latency (p99 within 2× of the unloaded p99), and the excess
//!    gets an immediate fail-open answer marked degraded with reason overload.
//! 2. Strict callers get RESOURCE_EXHAUSTED for the excess instead, and nothing else fails.
//! 3. Memory stays bounded, and the server ranks normally afterwards.
//!
//! Bounded: about 15 s, on 127.0.0.1.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tactful::config::Config;

/// Runs `tactful bench` against `server` with `args`; its JSON report.
fn bench(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(["bench", "--addr", &format!("http://{}", server.addr)])
        .args([
            "--policy",
            "busy",
            "--candidates",
            "20",
            "--dim",
            "0",
            "--k",
            "10",
            "--json",
            "--max-seconds",
            "20",
        ])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_three_times_the_sustainable_load_the_excess_fails_open_and_the_rest_keeps_its_latency()
{
    let mut config = Config::default();
    config.rank.threads = 2;
    config.rank.max_inflight = 2;
    config.rank.budget_ms = 1000;
    let server = TestServer::with_pipelines(
        config,
        vec![(
            "busy",
            pipeline_with("busy", Slow(Duration::from_millis(20))),
        )],
    )
    .await;
    let before = resident_bytes();

    let normal = tokio::task::block_in_place(|| {
        bench(
            &server,
            &["--concurrency", "2", "--requests", "300", "--warmup", "20"],
        )
    });
    let sustained = normal["rps"].as_f64().unwrap();
    let normal_p99 = normal["ranked"]["p99_ms"].as_f64().unwrap();
    assert_eq!(normal["degraded"], serde_json::json!({}), "{normal}");
    assert!(sustained > 50.0, "{normal}");

    let rate = (3.0 * sustained).round() as u64;
    let requests = (rate * 5).to_string();
    let overloaded = tokio::task::block_in_place(|| {
        bench(
            &server,
            &[
                "--rate",
                &rate.to_string(),
                "--requests",
                &requests,
                "--warmup",
                "0",
            ],
        )
    });
    eprintln!("normal: {normal}\noverloaded at {rate} req/s: {overloaded}");
    assert_eq!(
        overloaded["errors"],
        serde_json::json!({}),
        "every call is answered"
    );
    assert_eq!(overloaded["skipped"], 0);
    let ranked = overloaded["ranked"]["count"].as_f64().unwrap();
    let shed = overloaded["degraded"]["overload"].as_f64().unwrap_or(0.0);
    assert!(
        shed > ranked / 2.0,
        "about two thirds of the calls are excess: {overloaded}"
    );
    let ranked_p99 = overloaded["ranked"]["p99_ms"].as_f64().unwrap();
    assert!(
        ranked_p99 <= 2.0 * normal_p99,
        "ranked p99 {ranked_p99} ms against {normal_p99} ms unloaded"
    );
    let shed_p99 = overloaded["fail_open"]["p99_ms"].as_f64().unwrap();
    assert!(
        shed_p99 < normal_p99,
        "a fail-open answer is immediate: p99 {shed_p99} ms"
    );

    let strict = tokio::task::block_in_place(|| {
        bench(
            &server,
            &[
                "--rate",
                &rate.to_string(),
                "--requests",
                &(rate * 2).to_string(),
                "--warmup",
                "0",
                "--strict",
            ],
        )
    });
    let errors = strict["errors"].as_object().unwrap();
    assert!(
        errors.keys().all(|code| code == "ResourceExhausted"),
        "{strict}"
    );
    assert!(
        errors["ResourceExhausted"].as_u64().unwrap() > 0,
        "{strict}"
    );
    assert_eq!(strict["degraded"], serde_json::json!({}), "{strict}");

    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    let after = server.rank(request("after", catalogue())).await;
    assert!(!after.degraded);
    server.stop().await;
}

//! The server as an operator meets it. Properties checked:
//! 1. `grpc.health.v1` reports SERVING for the server and each tactful service.
//! 2. Server reflection lists the tactful services (so grpcurl and ghz work without protos).
//! 3. Graceful shutdown: a call in flight when the drain starts completes normally; new
//!    connections are refused afterwards.
//! 4. The real binary: `tactful serve` starts with no configuration, the CLI client gets a
//!    re-ranked list with reasons from the sample file, SIGTERM stops it with exit code 0;
//!    restarted on the same data directory it still honours the user's block, and after
//!    `profile forget` it no longer does.
//! 5. A bad configuration exits with code 64 and names the setting.
//! 6. The binary's admin server answers `/ready` and counts its calls in `/metrics`.
//! 7. A message above `limits.max_message_bytes` is refused (OUT_OF_RANGE) before any work;
//!    with `grpc.max_connection_age_s`, connections are aged out without failing a call.
//! 8. `grpc.io_threads` sets the threads serving connections (by default one on two cores).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tactful::config::Config;
use tactful::pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn health_reports_every_service_serving() {
    let server = TestServer::start(Config::default()).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "tactful.v1.Ranker",
        "tactful.v1.Events",
        "tactful.v1.Profile",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_tactful_services() {
    let server = TestServer::start(Config::default()).await;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "tactful.v1.Ranker",
        "tactful.v1.Events",
        "tactful.v1.Profile",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_call_in_flight_finishes_during_a_graceful_shutdown() {
    let mut config = Config::default();
    config.rank.budget_ms = 10_000;
    let mut server = TestServer::with_pipelines(
        config,
        vec![(
            "slow",
            pipeline_with("slow", Slow(Duration::from_millis(300))),
        )],
    )
    .await;
    let mut ranker = server.ranker().await;
    let mut req = request("qi", catalogue());
    req.policy = "slow".into();
    let in_flight = tokio::spawn(async move { ranker.rank(req).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = server.addr;
    server.begin_shutdown();
    let r = in_flight.await.unwrap().unwrap().into_inner();
    assert!(!r.degraded);
    assert_eq!(r.items.len(), 10);
    server.stopped().await.unwrap();
    let refused = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    assert!(refused.is_err(), "the listener is closed after the drain");
}

#[tokio::test]
async fn a_message_above_the_limit_is_refused_and_aged_connections_fail_no_call() {
    let mut config = Config::default();
    config.limits.max_message_bytes = 16 * 1024;
    config.grpc.max_connection_age_s = 1;
    let server = TestServer::start(config).await;
    let mut ranker = server.ranker().await;
    let big = tactful::workload::rank_request("big", 300, 32, 10, 1);
    let refused = ranker.rank(big).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    // One channel for 2.5 s: its connection is asked to go away twice, and it reconnects.
    let start = std::time::Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let r = ranker.rank(request("aged", catalogue())).await;
        assert!(r.is_ok(), "call {calls} failed: {r:?}");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(calls > 20);
    server.stop().await;
}

fn tactful() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tactful"))
}

/// Runs the CLI client against `url` with `args` after the (space-separated) subcommand.
fn client(subcommand: &str, url: &str, args: &[&str]) -> std::process::Output {
    tactful()
        .args(subcommand.split(' '))
        .args(["--addr", url])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_binary_serves_the_cli_ranks_and_sigterm_stops_it() {
    let data = tempfile::tempdir().unwrap();
    let (child, url, drain, admin) = spawn_server(&data.path().join("data"), &[]);
    let mut child = KillOnDrop(child);
    // Readiness follows the port by a moment, as a probe would see.
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        http_get_blocking(admin, "/ready").0 == 200
    });
    assert!(ready, "/ready never said 200");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/candidates.json");
    let out = client(
        "rank",
        &url,
        &[
            "--user",
            "zoe",
            "--candidates",
            sample,
            "--k",
            "5",
            "--explain",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("policy default@4"), "{stdout}");
    assert!(
        stdout.contains("Because you viewed Nova X phone"),
        "{stdout}"
    );
    assert!(stdout.contains("dropped:"), "{stdout}");

    let out = client(
        "event",
        &url,
        &["--user", "zoe", "block-brand", "--brand", "7"],
    );
    assert!(out.status.success());
    let out = client("rank", &url, &["--user", "zoe", "--candidates", sample]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(ranks_item(&stdout, 2001), "{stdout}");
    assert!(!ranks_item(&stdout, 1001), "brand 7 is blocked: {stdout}");

    let out = client("event", &url, &["--user", "zoe", "block-brand"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("brand_id"));
    let (status, page) = http_get_blocking(admin, "/metrics");
    assert_eq!(status, 200);
    let ranked = r#"tactful_grpc_requests_total{method="tactful.v1.Ranker/Rank",outcome="ok"}"#;
    assert_eq!(metric(&page, ranked), Some(2.0), "{page}");
    let blocked = metric(
        &page,
        r#"tactful_avoidance_dropped_total{rule="blocked_brand"}"#,
    );
    assert!(blocked.is_some_and(|n| n >= 1.0), "{page}");

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.0.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    drain.join().unwrap().unwrap();

    let out = client("rank", &url, &["--user", "zoe", "--candidates", sample]);
    assert_eq!(out.status.code(), Some(69), "unreachable server");

    // Restarted on the same data directory, zoe's block still holds; after Forget it is gone.
    let (child, url, drain, _) = spawn_server(&data.path().join("data"), &[]);
    let mut child = KillOnDrop(child);
    let out = client("profile get", &url, &["--user", "zoe"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("blocked brands    7"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client("rank", &url, &["--user", "zoe", "--candidates", sample]);
    assert!(!ranks_item(&String::from_utf8_lossy(&out.stdout), 1001));
    let out = client("profile forget", &url, &["--user", "zoe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = client("rank", &url, &["--user", "zoe", "--candidates", sample]);
    assert!(ranks_item(&String::from_utf8_lossy(&out.stdout), 1001));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drain.join().unwrap().unwrap();
}

/// Whether the CLI's ranking table has a row for `item` (`#  item  score ...`).
fn ranks_item(table: &str, item: u64) -> bool {
    let item = item.to_string();
    table
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(item.as_str()))
}

#[test]
fn a_bad_configuration_exits_64_naming_the_setting() {
    let out = tactful()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TACTFUL_BUDGET_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TACTFUL_BUDGET_MS"));
}

/// The threads serving connections are the ones configured (`grpc.io_threads`), or by default
/// one on two cores or fewer: the start-up line reports the runtime's own count of workers.
#[test]
fn the_server_runs_the_configured_number_of_io_threads() {
    use std::io::BufRead;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let auto = tactful::config::GrpcSettings::default().io_threads_for(cores);
    for (setting, want) in [(None, auto), (Some("3"), 3)] {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = tactful();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .env("TACTFUL_LOG", "info")
            .env_remove("TACTFUL_IO_THREADS")
            .stderr(std::process::Stdio::piped());
        if let Some(n) = setting {
            cmd.env("TACTFUL_IO_THREADS", n);
        }
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
        let line = stderr
            .lines()
            .map(Result::unwrap)
            .find(|l| l.contains("listening on"))
            .expect("the server logs that it listens");
        assert!(
            line.contains(&format!("io_threads={want}")),
            "{setting:?}: {line}"
        );
    }
    assert!(cores > 2 || auto == 1, "one thread on {cores} core(s)");
}

#[test]
fn pb_types_are_usable_by_clients() {
    // The generated enum names are the public API (API.md): keep them.
    assert_eq!(
        pb::DataDimension::CrossPlatform.as_str_name(),
        "DATA_DIMENSION_CROSS_PLATFORM"
    );
    assert_eq!(
        pb::EventType::BlockBrand.as_str_name(),
        "EVENT_TYPE_BLOCK_BRAND"
    );
}

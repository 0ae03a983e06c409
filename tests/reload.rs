//! Configuration checks and policy reloads. Properties checked:
//! 1. Reloading the policies while rankings stream in fails none of them: each answer carries
//!    the old or the new version, and once the reload returns every answer carries the new
//!    one. A reload with an invalid policy changes nothing. Both are audited.
//! 2. The real binary reloads its policies on SIGHUP: after the file changes and the signal,
//!    responses carry the new policy version; a broken file leaves the running policies in
//!    force and is audited as failed.
//! 3. `tactful config check FILE` prints the effective configuration as TOML for a good file
//!    and exits 64 naming the setting for a bad one, including a state backend `tactful serve`
//!    could not open (`rediss://`: this build has no TLS to Redis).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tactful::config::Config;
use tactful::rank::Policy;

fn default_at(version: u32) -> BTreeMap<String, Policy> {
    BTreeMap::from([(
        "default".to_owned(),
        Policy {
            version,
            ..Policy::default()
        },
    )])
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_reload_swaps_the_policies_without_failing_a_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut config = Config {
        policies: default_at(3),
        ..Config::default()
    };
    config.audit.path = Some(audit.clone());
    let server = TestServer::start(config).await;
    let mut ranker = server.ranker().await;
    let stream = tokio::spawn(async move {
        let mut versions = Vec::new();
        for _ in 0..300 {
            let r = ranker.rank(request("rae", catalogue())).await.unwrap();
            let r = r.into_inner();
            assert!(!r.degraded);
            versions.push(r.policy_version);
        }
        versions
    });
    for version in 4..=13 {
        server
            .reloader
            .reload_policies(&default_at(version), "test")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let versions = stream.await.unwrap();
    assert!(
        versions
            .iter()
            .all(|v| (3..=13).any(|n| *v == format!("default@{n}"))),
        "{versions:?}"
    );
    assert_eq!(
        server
            .rank(request("rae", catalogue()))
            .await
            .policy_version,
        "default@13"
    );

    let mut broken = default_at(14);
    broken.get_mut("default").unwrap().diversity.same_brand = 2.0;
    let err = server
        .reloader
        .reload_policies(&broken, "test")
        .unwrap_err();
    assert_eq!(err.setting, "policies.default.diversity.same_brand");
    assert_eq!(
        server
            .rank(request("rae", catalogue()))
            .await
            .policy_version,
        "default@13"
    );

    let records = audit_lines(&audit);
    assert_eq!(records.len(), 11);
    assert!(records.iter().all(|r| r["action"] == "policy_reload"));
    assert_eq!(records[0]["who"], "test");
    assert_eq!(records[0]["detail"]["before"][0], "default@3");
    assert_eq!(records[0]["detail"]["after"][0], "default@4");
    assert_eq!(records[10]["outcome"], "failed");
    assert_eq!(records[10]["detail"]["after"][0], "default@13");
    server.stop().await;
}

/// The policy version a CLI Rank against `url` reports.
fn ranked_version(url: &str) -> String {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/candidates.json");
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args([
            "rank",
            "--addr",
            url,
            "--user",
            "ray",
            "--candidates",
            sample,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn config_file(audit: &Path, policy: &str) -> String {
    format!(
        "[audit]\npath = {:?}\n[policies.default]\n{policy}\n",
        audit.display().to_string()
    )
}

#[test]
fn sighup_reloads_the_policies_of_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tactful.toml");
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(&file, config_file(&audit, "version = 3")).unwrap();
    let data = dir.path().join("data");
    let (child, url, drain, _) = spawn_server(&data, &["--config", file.to_str().unwrap()]);
    let mut child = KillOnDrop(child);
    assert_eq!(ranked_version(&url), "default@3");

    let hangup = |pid: u32| {
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::fs::write(
        &file,
        config_file(&audit, "version = 4\nfatigue = { weight = 0.9 }"),
    )
    .unwrap();
    hangup(child.0.id());
    until("the new version is served", &|| {
        ranked_version(&url) == "default@4"
    });

    std::fs::write(
        &file,
        config_file(&audit, "version = 5\ndiversity = { same_brand = 2.0 }"),
    )
    .unwrap();
    hangup(child.0.id());
    until("the refused reload is audited", &|| {
        audit_lines(&audit).len() == 2
    });
    assert_eq!(ranked_version(&url), "default@4");
    let records = audit_lines(&audit);
    assert_eq!(
        (&records[0]["who"], &records[0]["outcome"]),
        (&"sighup".into(), &"ok".into())
    );
    assert_eq!(records[1]["outcome"], "failed");
    assert!(
        records[1]["error"]
            .as_str()
            .unwrap()
            .contains("policies.default.diversity.same_brand"),
        "{records:?}"
    );
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drain.join().unwrap().unwrap();
}

#[test]
fn config_check_prints_the_effective_configuration_or_names_the_bad_setting() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let file = dir.path().join("check.toml");
        std::fs::write(&file, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(["config", "check"])
            .arg(&file)
            .env_remove("TACTFUL_BUDGET_MS")
            .output()
            .unwrap()
    };
    let out = check("[rank]\nbudget_ms = 30\n[policies.default]\nversion = 3\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for expected in [
        "valid",
        "listen = \"127.0.0.1:50051\"",
        "admin_listen = \"127.0.0.1:9464\"",
        "budget_ms = 30",
        "max_inflight = 1024",
        "#   default@3: explicit_feedback",
        "[policies.default]\nversion = 3",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from\n{stdout}"
        );
    }
    // What was printed is itself a configuration that checks.
    let body: String = stdout.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(check(&body).status.code(), Some(0));

    for (bad, setting) in [
        ("[rank]\nbudget = 30\n", "unknown field `budget`"),
        (
            "[policies.soft.diversity]\nsame_brand = 2.0\n",
            "policies.soft.diversity.same_brand",
        ),
        ("admin_listen = \"9464\"\n", "not an address"),
        (
            "[state]\nbackend = \"rediss://default:s3cret@127.0.0.1:6380/0\"\nredis_ca_cert = \"/nonexistent/ca.pem\"\n",
            "state.redis_ca_cert: cannot read /nonexistent/ca.pem",
        ),
        (
            "[state]\nbackend = \"rediss://default:s3cret@127.0.0.1:6380/0\"\n",
            "state.master_key_file: the redis backend needs a master key",
        ),
        (
            "[state]\nbackend = \"redis://127.0.0.1:notaport/0\"\n",
            "state.backend",
        ),
    ] {
        let out = check(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bad}: {stderr}");
        assert!(stderr.contains(setting), "{bad}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{bad}: {stderr}");
    }

    // `serve` refuses what `config check` refuses, with the same words, through the same
    // check, before it opens anything.
    let out = Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--state", "rediss://127.0.0.1:6380/0"])
        .env_remove("TACTFUL_CONFIG")
        .env_remove("TACTFUL_MASTER_KEY")
        .env_remove("TACTFUL_MASTER_KEY_FILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("state.master_key_file: the redis backend needs a master key"),
        "{stderr}"
    );
}

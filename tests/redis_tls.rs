//! The shared backend over TLS (`rediss://`), against a redis-server with TLS on that the test
//! starts itself (with a CA, a server certificate and a client certificate generated for the
//! run, and `tls-auth-clients yes`). Properties checked:
//! 1. The store connects with the configured CA and client certificate, and the user's words
//!    go through and read back.
//! 2. Without the client certificate, or trusting another CA, it does not connect: it never
//!    falls back to clear text.
//! 3. The binary serves with `--state rediss://…` and the TLS settings, and `tactful config
//!    check` accepts exactly that configuration and refuses a client certificate without key.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tactful::config::Config;
use tactful::state::{RedisTls, StateConfig, UserStore};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The files of one run: the CA, the server's and the client's certificates.
struct Files {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

fn files(dir: &Path) -> Files {
    let ca = TestCa::new("tactful test CA");
    let (server_cert, server_key) = ca.sign(&["127.0.0.1", "localhost"], true);
    let (client_cert, client_key) = ca.sign(&["tactful"], false);
    Files {
        ca: write(dir, "ca.pem", &ca.pem),
        server_cert: write(dir, "redis.pem", &server_cert),
        server_key: write(dir, "redis.key", &server_key),
        client_cert: write(dir, "client.pem", &client_cert),
        client_key: write(dir, "client.key", &client_key),
        other_ca: write(dir, "other-ca.pem", &TestCa::new("another CA").pem),
    }
}

/// A redis-server speaking TLS only, killed on drop.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `None` (skipped with a note) when redis-server is not installed, outside CI.
fn start_redis(dir: &Path, f: &Files) -> Option<TlsRedis> {
    if !redis_server_installed() {
        return None;
    }
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .arg("--tls-cert-file")
        .arg(&f.server_cert)
        .arg("--tls-key-file")
        .arg(&f.server_key)
        .arg("--tls-ca-cert-file")
        .arg(&f.ca)
        .args([
            "--tls-auth-clients",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(TlsRedis { port, child })
}

fn tls(f: &Files, client: bool, ca: &Path) -> RedisTls {
    RedisTls {
        ca_cert: Some(ca.to_owned()),
        client_cert: client.then(|| f.client_cert.clone()),
        client_key: client.then(|| f.client_key.clone()),
    }
}

async fn open(url: &str, namespace: &str, tls: RedisTls) -> Result<UserStore, String> {
    let mut config: StateConfig = with_test_master_key(Config::default().state_config());
    config.redis_tls = tls;
    UserStore::open_redis(config, url, namespace)
        .await
        .map_err(|e| e.to_string())
}

fn block(brand: u64) -> tactful::state::Event {
    let mut e = tactful::state::Event::new(
        tactful::state::EventKind::BlockBrand,
        tactful::time::now_ms(),
    );
    e.brand_id = brand;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_backend_speaks_tls_to_redis_and_never_falls_back_to_clear_text() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let Some(redis) = start_redis(dir.path(), &f) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let namespace = fresh_namespace();

    // 1. Connects (once the server is up), writes and reads back.
    let start = Instant::now();
    let store = loop {
        match open(&url, &namespace, tls(&f, true, &f.ca)).await {
            Ok(store) => break store,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let user = store.key("tls-user");
    let t = store
        .record(user, &block(4242), tactful::time::now_ms())
        .await
        .unwrap();
    store.durable(t).await.unwrap();
    drop(store);
    let store = open(&url, &namespace, tls(&f, true, &f.ca)).await.unwrap();
    let view = store
        .view(
            user,
            tactful::time::now_ms(),
            tactful::rank::DimensionSet::EMPTY,
            false,
        )
        .await
        .unwrap();
    assert!(view.is_brand_blocked(4242), "read back over TLS");

    // 2. No client certificate, a CA that did not sign the server's, or clear text: refused.
    for (what, tls, url) in [
        ("no client certificate", tls(&f, false, &f.ca), url.clone()),
        ("another CA", tls(&f, true, &f.other_ca), url.clone()),
        (
            "clear text to the TLS port",
            RedisTls::default(),
            url.replace("rediss://", "redis://"),
        ),
    ] {
        let opened = tokio::time::timeout(Duration::from_secs(10), open(&url, &namespace, tls))
            .await
            .expect("gives up within its timeouts");
        assert!(opened.is_err(), "{what}: connected");
    }

    // 3. The binary: `config check` accepts the configuration `serve` then serves with.
    let master = write(dir.path(), "master.key", TEST_MASTER_KEY);
    let config = |extra: &str| {
        format!(
            "[state]\nbackend = {url:?}\nredis_ca_cert = {:?}\nmaster_key_file = {:?}\n{extra}",
            f.ca.display().to_string(),
            master.display().to_string(),
        )
    };
    let client_files = format!(
        "redis_client_cert = {:?}\nredis_client_key = {:?}\n",
        f.client_cert.display().to_string(),
        f.client_key.display().to_string()
    );
    let good = write(dir.path(), "good.toml", &config(&client_files));
    let check = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(["config", "check"])
            .arg(file)
            .env_remove("TACTFUL_CONFIG")
            .output()
            .unwrap()
    };
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let half = write(
        dir.path(),
        "half.toml",
        &config(&format!(
            "redis_client_cert = {:?}\n",
            f.client_cert.display().to_string()
        )),
    );
    let out = check(&half);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state.redis_client_key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (child, addr, _drain, _admin) = spawn_server(
        &dir.path().join("unused-data"),
        &["--config", good.to_str().unwrap()],
    );
    let _server = KillOnDrop(child);
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(args)
            .args(["--addr", &addr])
            .output()
            .unwrap()
    };
    let out = cli(&[
        "event",
        "--user",
        "cli-user",
        "block-brand",
        "--brand",
        "77",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["profile", "get", "--user", "cli-user"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("blocked brands    77"), "{shown}");
    // The server is the test's own and keeps nothing on disk: no clean-up needed.
}

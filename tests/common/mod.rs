//! A real tactful server on 127.0.0.1:0 for integration tests, with generated clients and
//! stages that make time-dependent behaviour deterministic.
//!
//! `TACTFUL_TEST_STATE` picks the state store every [`TestServer::start`] uses: `disk` (the
//! default, as in production: a write-ahead log and snapshots in a temporary directory of the
//! server's own), `memory`, or `redis` (the Redis at `TACTFUL_TEST_REDIS`, in a namespace of
//! the server's own, deleted when the server stops), so that the same tests check each.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tactful::app::{App, Given, Reloader};
use tactful::catalog::Catalog;
use tactful::config::Config;
use tactful::engine::Engine;
use tactful::grpc::ServeError;
use tactful::pb;
use tactful::rank::stages::{
    explain::{Explain, drop_detail},
    feedback::ExplicitFeedback,
    hard_rules::HardRules,
    order::{ByScore, Upstream},
    relevance::Relevance,
};
use tactful::rank::user::LifecycleThresholds;
use tactful::rank::{Deadline, Interrupted, Parallelism, Pipeline, Policies, Slate, Stage};
use tactful::state::{StateConfig, UserStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin HTTP server's address, when started with one. It stops once the gRPC
    /// server has drained, as in `tactful serve`.
    pub admin: Option<SocketAddr>,
    pub engine: Arc<Engine>,
    pub store: Arc<UserStore>,
    pub catalog: Arc<Catalog>,
    /// Reloads the policies, audited, as SIGHUP does.
    pub reloader: Reloader,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), ServeError>>,
    /// The Redis namespace to delete when the server stops, if it made one of its own.
    cleanup: Option<(String, String)>,
    /// The disk store's directory, removed when the server is dropped.
    data: Option<tempfile::TempDir>,
}

/// The Redis the tests may use (`TACTFUL_TEST_REDIS`, set by scripts/test.sh). Without it, in
/// CI (`CI` set) the test fails: Redis tests must never be skipped silently there; elsewhere
/// it says so and the caller skips.
pub fn test_redis(test: &str) -> Option<String> {
    match std::env::var("TACTFUL_TEST_REDIS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: TACTFUL_TEST_REDIS is not set, and CI must run the Redis tests \
             (scripts/test.sh starts Redis with scripts/redis.sh and sets it)"
        ),
        _ => {
            eprintln!(
                "{test}: skipped: TACTFUL_TEST_REDIS is not set (run scripts/redis.sh, or \
                 scripts/test.sh which does)"
            );
            None
        }
    }
}

/// The Redis Cluster the tests may use (`TACTFUL_TEST_REDIS_CLUSTER`, a `redis-cluster://`
/// URL set by scripts/test.sh from scripts/redis-cluster.sh). Without it, in CI (`CI` set) the
/// test fails; elsewhere it says so and the caller skips.
pub fn test_redis_cluster(test: &str) -> Option<String> {
    match std::env::var("TACTFUL_TEST_REDIS_CLUSTER") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{test}: TACTFUL_TEST_REDIS_CLUSTER is not set, and CI must run the Redis Cluster \
             tests (scripts/test.sh starts one with scripts/redis-cluster.sh and sets it)"
        ),
        _ => {
            eprintln!(
                "{test}: skipped: TACTFUL_TEST_REDIS_CLUSTER is not set (run \
                 scripts/redis-cluster.sh, or scripts/test.sh which does)"
            );
            None
        }
    }
}

/// A namespace nobody else uses: tests share one Redis and run in parallel.
/// The master key the tests' shared stores use: every replica of a test must have the same.
pub const TEST_MASTER_KEY: &str =
    "7e57a11c7e57a11c7e57a11c7e57a11c7e57a11c7e57a11c7e57a11c7e57a11c";

/// `config` with the tests' master key.
pub fn with_test_master_key(
    mut config: tactful::state::StateConfig,
) -> tactful::state::StateConfig {
    config.keys.master = Some(tactful::state::crypt::MasterKeySource::Inline(
        TEST_MASTER_KEY.to_owned(),
    ));
    config
}

pub fn fresh_namespace() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tactful-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Every key of `namespace` on one node (one Redis, or one master of a cluster), by SCAN.
pub async fn namespace_keys(
    conn: &mut impl redis::aio::ConnectionLike,
    namespace: &str,
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Waits until the list at `list` holds at most 64 ops, as the backend's compaction leaves a
/// long one; fails the test after 5 s.
pub async fn wait_until_compacted(conn: &mut impl redis::aio::ConnectionLike, list: &str) {
    let start = std::time::Instant::now();
    loop {
        let len: usize = redis::cmd("LLEN")
            .arg(list)
            .query_async(conn)
            .await
            .unwrap();
        if len <= 64 {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{len} ops, not compacted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Deletes every key of `namespace`.
pub async fn delete_namespace(url: &str, namespace: &str) {
    if url.starts_with("redis-cluster://") {
        return delete_cluster_namespace(url, namespace).await;
    }
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = namespace_keys(&mut conn, namespace).await;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .exec_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Deletes every key of `namespace` on a Redis Cluster (`redis-cluster://` URL): a SCAN of
/// each master, then one DEL per key (a DEL of several must stay within one slot).
pub async fn delete_cluster_namespace(url: &str, namespace: &str) {
    let tactful::state::RedisTarget::Cluster { seeds, .. } =
        tactful::state::RedisTarget::parse(url).unwrap()
    else {
        panic!("{url}: not a redis-cluster:// URL");
    };
    let mut cluster = redis::cluster::ClusterClient::new(seeds)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut cluster)
        .await
        .unwrap();
    let mut masters: Vec<String> = slots
        .iter()
        .map(|range| match &range[2] {
            redis::Value::Array(node) => {
                let host: String = redis::from_redis_value(node[0].clone()).unwrap();
                let port: i64 = redis::from_redis_value(node[1].clone()).unwrap();
                format!("{host}:{port}")
            }
            other => panic!("a node: {other:?}"),
        })
        .collect();
    masters.sort();
    masters.dedup();
    for master in masters {
        let client = redis::Client::open(format!("redis://{master}/0")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for key in namespace_keys(&mut conn, namespace).await {
            redis::cmd("DEL")
                .arg(&key)
                .exec_async(&mut cluster)
                .await
                .unwrap();
        }
    }
}

/// The store `TACTFUL_TEST_STATE` asks for, the namespace to delete afterwards, and the
/// directory to keep until then.
async fn test_store(
    config: StateConfig,
) -> (
    UserStore,
    Option<(String, String)>,
    Option<tempfile::TempDir>,
) {
    match std::env::var("TACTFUL_TEST_STATE").as_deref() {
        Err(_) | Ok("") | Ok("disk") => {
            // The key store goes beside the data, in the same temporary directory.
            let dir = tempfile::tempdir().unwrap();
            let backend = tactful::state::StateBackend::Disk(dir.path().join("data"));
            (UserStore::open(config, &backend).unwrap(), None, Some(dir))
        }
        Ok("memory") => (UserStore::in_memory(config), None, None),
        Ok("redis") => {
            let url = test_redis("TACTFUL_TEST_STATE=redis")
                .expect("TACTFUL_TEST_STATE=redis needs TACTFUL_TEST_REDIS (run scripts/redis.sh)");
            let namespace = fresh_namespace();
            let store = UserStore::open_redis(with_test_master_key(config), &url, &namespace)
                .await
                .unwrap();
            (store, Some((url, namespace)), None)
        }
        Ok(other) => panic!("TACTFUL_TEST_STATE={other:?}: expected disk, memory or redis"),
    }
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::with_pipelines(config, Vec::new()).await
    }

    /// Starts a server with its admin HTTP server (`/metrics`, `/live`, `/ready`) on a port
    /// of its own, and `extra` pipelines.
    pub async fn with_admin(config: Config, extra: Vec<(&str, Pipeline)>) -> Self {
        let mut policies = Policies::build(&config.policies, config.parallelism()).unwrap();
        for (name, pipeline) in extra {
            policies.insert(name, pipeline).unwrap();
        }
        let (store, cleanup, data) = test_store(config.state_config()).await;
        let mut server = Self::serve_inner(config, policies, store, true).await;
        server.cleanup = cleanup;
        server.data = data;
        server
    }

    /// Starts a server that also knows `extra` pipelines (e.g. with a test stage in them).
    pub async fn with_pipelines(config: Config, extra: Vec<(&str, Pipeline)>) -> Self {
        let mut policies = Policies::build(&config.policies, config.parallelism()).unwrap();
        for (name, pipeline) in extra {
            policies.insert(name, pipeline).unwrap();
        }
        let (store, cleanup, data) = test_store(config.state_config()).await;
        let mut server = Self::serve_inner(config, policies, store, false).await;
        server.cleanup = cleanup;
        server.data = data;
        server
    }

    /// Starts a server on a store the test made (e.g. two servers on one Redis namespace).
    pub async fn with_store(config: Config, store: UserStore) -> Self {
        let policies = Policies::build(&config.policies, config.parallelism()).unwrap();
        Self::serve_inner(config, policies, store, false).await
    }

    /// Starts the server as `tactful serve` does ([`App::start_with`], then [`App::serve`]),
    /// on ports of its own.
    async fn serve_inner(
        config: Config,
        policies: Policies,
        store: UserStore,
        with_admin: bool,
    ) -> Self {
        let admin_listener = if with_admin {
            Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        } else {
            None
        };
        let admin = admin_listener.as_ref().map(|l| l.local_addr().unwrap());
        let given = Given {
            policies: Some(policies),
            store: Some(store),
        };
        let app = App::start_with(config, admin_listener, given)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (engine, store, catalog) = (
            app.engine().clone(),
            app.store().clone(),
            app.catalog().clone(),
        );
        let reloader = app.reloader();
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        let handle = tokio::spawn(app.serve(listener, shutdown));
        Self {
            addr,
            admin,
            engine,
            store,
            catalog,
            reloader,
            shutdown: Some(tx),
            handle,
            cleanup: None,
            data: None,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn ranker(&self) -> pb::ranker_client::RankerClient<Channel> {
        pb::ranker_client::RankerClient::new(self.channel().await)
    }

    /// One successful Rank call.
    pub async fn rank(&self, req: impl tonic::IntoRequest<pb::RankRequest>) -> pb::RankResponse {
        self.ranker().await.rank(req).await.unwrap().into_inner()
    }

    pub async fn events(&self) -> pb::events_client::EventsClient<Channel> {
        pb::events_client::EventsClient::new(self.channel().await)
    }

    /// What `Profile.Get` shows for `user`.
    pub async fn get_profile(&self, user: &str) -> pb::UserProfile {
        self.profile()
            .await
            .get(pb::GetProfileRequest {
                user_id: user.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn profile(&self) -> pb::profile_client::ProfileClient<Channel> {
        pb::profile_client::ProfileClient::new(self.channel().await)
    }

    /// Starts the drain; the returned handle completes when the server has stopped.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_shutdown();
        self.handle.await.unwrap().unwrap();
        if let Some((url, namespace)) = self.cleanup.take() {
            delete_namespace(&url, &namespace).await;
        }
    }

    pub async fn stopped(self) -> Result<(), ServeError> {
        self.handle.await.unwrap()
    }
}

pub fn candidate(item_id: u64, score: f32, category_id: u64, brand_id: u64) -> pb::Candidate {
    pb::Candidate {
        item_id,
        score,
        category_id,
        brand_id,
        shop_id: brand_id * 10,
        title: format!("item {item_id}"),
        ..Default::default()
    }
}

/// Ten candidates over five categories and five brands, best score first.
pub fn catalogue() -> Vec<pb::Candidate> {
    (1..=10)
        .map(|i| candidate(i, 1.0 - i as f32 * 0.05, i % 5 + 1, i % 5 + 100))
        .collect()
}

pub fn request(user: &str, candidates: Vec<pb::Candidate>) -> pb::RankRequest {
    pb::RankRequest {
        user_id: user.into(),
        candidates,
        ..Default::default()
    }
}

pub fn ids(r: &pb::RankResponse) -> Vec<u64> {
    r.items.iter().map(|i| i.item_id).collect()
}

pub fn event(user: &str, t: pb::EventType) -> pb::Event {
    pb::Event {
        user_id: user.into(),
        r#type: t.into(),
        ..Default::default()
    }
}

/// A pipeline: explicit feedback, then `stage`, then relevance by score with reasons.
pub fn pipeline_with(name: &str, stage: impl Stage + 'static) -> Pipeline {
    Pipeline::new(
        format!("{name}@1"),
        vec![
            Box::new(ExplicitFeedback),
            Box::new(stage),
            Box::new(Relevance),
            Box::new(ByScore),
            Box::new(Explain),
        ],
        vec![Box::new(HardRules::default()), Box::new(Upstream)],
        LifecycleThresholds::default(),
        Parallelism::SEQUENTIAL,
    )
    .with_drop_detail(drop_detail)
}

/// Holds its thread until the ranking's deadline has passed: whatever the machine's speed,
/// the ranking cannot finish in time.
pub struct StallPastDeadline;

impl Stage for StallPastDeadline {
    fn name(&self) -> &'static str {
        "stall_past_deadline"
    }
    fn apply(&self, _: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
        while !deadline.expired() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Takes a fixed time, well inside any deadline the tests use.
pub struct Slow(pub Duration);

impl Stage for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn apply(&self, _: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

/// Panics, as a buggy stage would.
pub struct Boom;

impl Stage for Boom {
    fn name(&self) -> &'static str {
        "boom"
    }
    fn apply(&self, _: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        panic!("a stage bug")
    }
}

/// Blocks every ranking inside it until opened (or until its deadline), and reports when a
/// ranking has entered, so a test can hold the in-flight limit deterministically.
#[derive(Clone, Default)]
pub struct Gate {
    state: Arc<(Mutex<(bool, usize)>, Condvar)>,
}

impl Gate {
    pub fn open(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().0 = true;
        cv.notify_all();
    }

    /// Waits (off the async runtime) until `n` rankings have entered the gate.
    pub async fn entered(&self, n: usize) {
        let gate = self.clone();
        tokio::task::spawn_blocking(move || {
            let (lock, cv) = &*gate.state;
            let mut s = lock.lock().unwrap();
            while s.1 < n {
                s = cv.wait(s).unwrap();
            }
        })
        .await
        .unwrap();
    }
}

impl Stage for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn apply(&self, _: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.1 += 1;
        cv.notify_all();
        while !s.0 {
            if deadline.expired() {
                break;
            }
            s = cv.wait_timeout(s, Duration::from_millis(5)).unwrap().0;
        }
        Ok(())
    }
}

/// A plain HTTP/1.1 GET (the admin server's endpoints): the status code and the body.
pub fn http_get_blocking(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    (status, body.to_owned())
}

/// [`http_get_blocking`] off the test's runtime thread (which serves the admin server).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || http_get_blocking(addr, &path))
        .await
        .unwrap()
}

/// The value of one series in a Prometheus text page, e.g.
/// `tactful_rank_degraded_total{reason="budget"}`; `None` if absent.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A server process that a failing assertion does not leave running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server process, its URL, the thread draining its log, and its admin server's address.
pub type Spawned = (
    std::process::Child,
    String,
    std::thread::JoinHandle<std::io::Result<u64>>,
    std::net::SocketAddr,
);

/// Starts `tactful serve` on a free port (and an admin port) with state in `data` and `extra`
/// arguments; returns it, its URL, the thread draining its log, and the admin server's address.
pub fn spawn_server(data: &std::path::Path, extra: &[&str]) -> Spawned {
    spawn_server_env(data, extra, &[])
}

/// [`spawn_server`] with `env` set for the server.
pub fn spawn_server_with_env(data: &std::path::Path, env: &[(&str, &str)]) -> Spawned {
    spawn_server_env(data, &[], env)
}

fn spawn_server_env(data: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tactful"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("TACTFUL_LOG", "info")
        .env_remove("TACTFUL_CONFIG")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut admin = None;
    let addr = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0,
            "server exited early"
        );
        if let Some(rest) = line.split("admin server on http://").nth(1) {
            admin = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the server's log so it never blocks on a full pipe.
    let drain = std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let admin = admin.expect("the admin server's address is logged before the gRPC one");
    (child, format!("http://{addr}"), drain, admin)
}

/// Whether `redis-server` can be run here. Outside CI a test without it is skipped with a
/// note; CI must run the Redis tests, so there its absence fails.
pub fn redis_server_installed() -> bool {
    let installed = std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI must run the Redis tests"
        );
        eprintln!("skipped: redis-server is not installed (scripts/redis.sh installs it)");
    }
    installed
}

/// A CA made for one test run (rcgen), and the certificates it signs.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA's own certificate, PEM.
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate (PEM) and its key (PEM) for `names` (host names or IP addresses; the
    /// first is also its common name), for a server or a client.
    pub fn sign(&self, names: &[&str], server: bool) -> (String, String) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TCP port free on loopback right now, for a server the test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! User state shared through a Redis Cluster (`--state redis-cluster://seed,seed`), against
//! real clusters on loopback: the one at `TACTFUL_TEST_REDIS_CLUSTER` (scripts/test.sh starts
//! it with scripts/redis-cluster.sh: three masters, a replica each), and, for failovers, one of
//! the test's own that it can break. Without the variable the tests are skipped with a note,
//! except in CI, where they fail. Properties checked:
//! 1. The backend works on a cluster: users' lists spread over every master, each with its data
//!    key in the same slot; a BLOCK_BRAND on instance A is honoured by B's next Rank although B
//!    held the user (PUBLISH reaches B's subscription whatever node it is on); a third instance
//!    reads every user's words back; a long history is compacted; Profile.Forget removes the
//!    user's list and key; the master-key rotation re-wraps the data key of every user on every
//!    master (a SCAN of each), after which the new key reads them all and the old one is
//!    refused.
//! 2. Failover of a user's slot, on a cluster of the test's own (cluster-node-timeout 1 s):
//!    every word acknowledged before, during and after a graceful failover (CLUSTER FAILOVER on
//!    the replica) and the SIGKILL of a master (its replica promoted by the cluster) is honoured
//!    by a fresh instance; writes resume after each (the backend follows the promoted master),
//!    and the test reports how long they were refused.
//!    The promoted master has no replica left: with `state.redis_wait_replicas = 1` (the
//!    default on a cluster) its users' words are refused (UNAVAILABLE, naming the setting),
//!    never acknowledged unreplicated, until the dead node is back as a replica; with 0, they
//!    are accepted again once the cluster has promoted the replica.
//! 3. The binary: `config check` accepts a `redis-cluster://` backend and refuses a malformed
//!    one or a bad `state.redis_wait_replicas`, naming the setting (exit 64); `serve` on the
//!    cluster acknowledges a word that a second server then shows.
//! 4. Over TLS (`rediss-cluster://`, a cluster of the test's own speaking TLS only, between
//!    its nodes too, client certificates required): words written on every master read back
//!    on a second instance; without the client certificate, or in clear text, no connection.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tactful::config::Config;
use tactful::pb;
use tactful::rank::DimensionSet;
use tactful::state::crypt::MasterKeySource;
use tactful::state::{RedisTarget, StateConfig, UserStore};
use tonic::Code;

/// How long a change made on one instance may take to reach another's next Rank.
const INVALIDATION_BOUND: Duration = Duration::from_secs(1);
/// How long writes may be refused around a failover before the test fails: the cluster
/// needs its node timeout (1 s) and an election; the backend then finds the new master.
const RESUME_BOUND: Duration = Duration::from_secs(30);

/// The failover test runs alone: its cluster's elections are timed against a 1 s node
/// timeout, and the other tests of this file (one starts a cluster of six TLS nodes) would
/// share its two cores. They take this lock to read, the failover test to write.
static FAILOVER_ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn open_with(url: &str, namespace: &str, config: StateConfig) -> UserStore {
    UserStore::open_redis(config, url, namespace).await.unwrap()
}

async fn open(url: &str, namespace: &str) -> UserStore {
    open_with(
        url,
        namespace,
        with_test_master_key(Config::default().state_config()),
    )
    .await
}

fn block_brand(user: &str, brand: u64) -> pb::Event {
    let mut e = event(user, pb::EventType::BlockBrand);
    e.brand_id = brand;
    e
}

async fn record(
    server: &TestServer,
    events: Vec<pb::Event>,
) -> Result<pb::RecordResponse, tonic::Status> {
    server
        .events()
        .await
        .record(pb::RecordRequest { events })
        .await
        .map(|r| r.into_inner())
}

async fn blocked(store: &UserStore, user: &str, brand: u64) -> bool {
    store
        .view(
            store.key(user),
            tactful::time::now_ms(),
            DimensionSet::EMPTY,
            false,
        )
        .await
        .unwrap()
        .is_brand_blocked(brand)
}

fn seeds(url: &str) -> Vec<String> {
    match RedisTarget::parse(url).unwrap() {
        RedisTarget::Cluster { seeds, .. } => seeds,
        RedisTarget::Single(_) => panic!("{url}: not a redis-cluster:// URL"),
    }
}

/// A connection to the cluster that follows its slots, for looking at what the backend wrote.
async fn cluster_conn(url: &str) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(seeds(url))
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// A connection to one node.
async fn node(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/0"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Per range of slots: its first and last slot, its master and its replicas (`host:port`).
async fn slot_map(url: &str) -> Vec<(i64, i64, String, Vec<String>)> {
    let mut conn = cluster_conn(url).await;
    let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .unwrap();
    let addr = |v: &redis::Value| -> String {
        let (host, port): (String, i64) = match v {
            redis::Value::Array(f) => (
                redis::from_redis_value(f[0].clone()).unwrap(),
                redis::from_redis_value(f[1].clone()).unwrap(),
            ),
            other => panic!("a node: {other:?}"),
        };
        format!("{host}:{port}")
    };
    slots
        .iter()
        .map(|r| {
            let first: i64 = redis::from_redis_value(r[0].clone()).unwrap();
            let last: i64 = redis::from_redis_value(r[1].clone()).unwrap();
            (first, last, addr(&r[2]), r[3..].iter().map(addr).collect())
        })
        .collect()
}

/// The master and replicas serving `key` now.
async fn serving(url: &str, key: &str) -> (String, Vec<String>) {
    let mut conn = cluster_conn(url).await;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    slot_map(url)
        .await
        .into_iter()
        .find(|(first, last, ..)| (*first..=*last).contains(&slot))
        .map(|(_, _, master, replicas)| (master, replicas))
        .expect("every slot is served")
}

/// Every key of the namespace, per master.
async fn keys_per_master(url: &str, namespace: &str) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let mut masters: Vec<String> = slot_map(url).await.into_iter().map(|r| r.2).collect();
    masters.sort();
    masters.dedup();
    for master in masters {
        let mut conn = node(&master).await;
        let keys = namespace_keys(&mut conn, namespace).await;
        out.insert(master, keys);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_backend_works_on_a_cluster_across_every_master() {
    let _shared = FAILOVER_ALONE.read().await;
    let Some(url) = test_redis_cluster("cluster backend") else {
        return;
    };
    let namespace = fresh_namespace();
    let a = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let b = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;

    // A block on A, honoured by B's next Rank although B held the user.
    let user = "shared-user";
    b.store.warm(b.store.key(user)).await.unwrap();
    assert_eq!(b.store.len(), 1);
    record(&a, vec![block_brand(user, 103)]).await.unwrap(); // items 3 and 8
    let start = Instant::now();
    let mut at_once = true;
    loop {
        let items = ids(&b.rank(request(user, catalogue())).await);
        if !items.contains(&3) && !items.contains(&8) {
            break;
        }
        assert!(
            start.elapsed() < INVALIDATION_BOUND,
            "block on A not honoured by B within {INVALIDATION_BOUND:?}: {items:?}"
        );
        at_once = false;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("block on A honoured by B's very next Rank: {at_once}");

    // Many users in one Record: one write batch over every slot.
    let users: Vec<String> = (0..30).map(|i| format!("spread-{i}")).collect();
    let events = users
        .iter()
        .enumerate()
        .map(|(i, u)| block_brand(u, 200 + i as u64))
        .collect();
    record(&a, events).await.unwrap();
    let per_master = keys_per_master(&url, &namespace).await;
    assert_eq!(per_master.len(), 3, "three masters: {per_master:?}");
    for (master, keys) in &per_master {
        let lists: Vec<&String> = keys.iter().filter(|k| k.ends_with(":ops")).collect();
        assert!(!lists.is_empty(), "{master} holds no user: {per_master:?}");
        for list in lists {
            let key = list.replace(":ops", ":key");
            assert!(keys.contains(&key), "{list} without {key} on {master}");
        }
    }
    let lists = per_master
        .values()
        .flatten()
        .filter(|k| k.ends_with(":ops"))
        .count();
    assert_eq!(lists, users.len() + 1);

    // A third instance reads everyone back.
    let c = open(&url, &namespace).await;
    for (i, u) in users.iter().enumerate() {
        assert!(
            blocked(&c, u, 200 + i as u64).await,
            "{u}'s block read back"
        );
    }
    assert!(blocked(&c, user, 103).await);

    // Compaction on the cluster.
    let heavy = "heavy";
    let mut events: Vec<pb::Event> = (1..=100).map(|b| block_brand(heavy, b)).collect();
    for b in (2..=100).step_by(2) {
        let mut unblock = block_brand(heavy, b);
        unblock.r#type = pb::EventType::UnblockBrand.into();
        events.push(unblock);
    }
    record(&a, events).await.unwrap();
    let list = format!("{namespace}:{{{}}}:ops", a.store.key(heavy).to_hex());
    let mut conn = cluster_conn(&url).await;
    wait_until_compacted(&mut conn, &list).await;
    let expected: Vec<u64> = (1..=100).step_by(2).collect();
    assert_eq!(b.get_profile(heavy).await.blocked_brands, expected);

    // Forget removes the user's list and key, wherever their slot is.
    let gone = &users[0];
    let hex = a.store.key(gone).to_hex();
    a.profile()
        .await
        .forget(pb::ForgetRequest {
            user_id: gone.clone(),
        })
        .await
        .unwrap();
    for kind in ["ops", "key"] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("{namespace}:{{{hex}}}:{kind}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!exists, "{kind} of a forgotten user");
    }
    // What waiting for a replica costs an acknowledgement (reported, not asserted: the
    // machine may be busy).
    let mut costs = Vec::new();
    for wait in [0, 1] {
        let mut config = with_test_master_key(Config::default().state_config());
        config.redis_wait_replicas = Some(wait);
        let server =
            TestServer::with_store(Config::default(), open_with(&url, &namespace, config).await)
                .await;
        let start = Instant::now();
        for i in 0..100 {
            record(
                &server,
                vec![block_brand(&format!("cost-{wait}-{}", i % 10), i)],
            )
            .await
            .unwrap();
        }
        costs.push(start.elapsed() / 100);
        server.stop().await;
    }
    eprintln!(
        "one Record of one word: {:?} with redis_wait_replicas = 0, {:?} with 1",
        costs[0], costs[1]
    );
    a.stop().await;
    b.stop().await;
    drop(c);

    // The master-key rotation visits every master.
    let new_key = "ab".repeat(32);
    let config = with_test_master_key(Config::default().state_config());
    let rewrapped = tactful::state::rotate_redis_master_key(
        &config,
        &url,
        &namespace,
        &MasterKeySource::Inline(new_key.clone()),
    )
    .await
    .unwrap();
    // Everyone but the forgotten user: the 29 others, the shared user, the heavy one and the
    // 20 of the cost measurement.
    assert_eq!(rewrapped, users.len() - 1 + 2 + 20);
    let mut rotated = Config::default().state_config();
    rotated.keys.master = Some(MasterKeySource::Inline(new_key));
    let d = open_with(&url, &namespace, rotated).await;
    for (i, u) in users.iter().enumerate().skip(1) {
        assert!(
            blocked(&d, u, 200 + i as u64).await,
            "{u} under the new master key"
        );
    }
    drop(d);
    let old = UserStore::open_redis(
        with_test_master_key(Config::default().state_config()),
        &url,
        &namespace,
    )
    .await;
    assert!(old.is_err(), "the old master key is refused");
    delete_cluster_namespace(&url, &namespace).await;
}

/// A cluster of the test's own (three masters, a replica each, cluster-node-timeout 1 s),
/// whose nodes it can kill; killed with the test.
struct OwnCluster {
    dir: tempfile::TempDir,
    nodes: Vec<(u16, Option<Child>)>,
    /// TLS only, between nodes too, with client certificates required.
    tls: Option<ClusterTls>,
}

/// The files of a cluster over TLS: a CA made for the run, the nodes' certificate, and a
/// client certificate (for tactful, redis-cli and the nodes among themselves).
struct ClusterTls {
    ca: std::path::PathBuf,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

impl ClusterTls {
    fn new(dir: &Path) -> Self {
        let ca = TestCa::new("tactful cluster test CA");
        let (server_cert, server_key) = ca.sign(&["127.0.0.1", "localhost"], true);
        let (client_cert, client_key) = ca.sign(&["tactful"], false);
        Self {
            ca: write(dir, "ca.pem", &ca.pem),
            server_cert: write(dir, "node.pem", &server_cert),
            server_key: write(dir, "node.key", &server_key),
            client_cert: write(dir, "client.pem", &client_cert),
            client_key: write(dir, "client.key", &client_key),
        }
    }

    fn settings(&self, client: bool) -> tactful::state::RedisTls {
        tactful::state::RedisTls {
            ca_cert: Some(self.ca.clone()),
            client_cert: client.then(|| self.client_cert.clone()),
            client_key: client.then(|| self.client_key.clone()),
        }
    }
}

/// A port free on loopback whose cluster-bus port (+10000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    loop {
        let port = free_port();
        if port > 55_000 || taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl OwnCluster {
    async fn start() -> Option<Self> {
        Self::start_with(false).await
    }

    async fn start_with(tls: bool) -> Option<Self> {
        if !redis_server_installed() {
            return None;
        }
        // A port found free can be taken before its node binds it (another test's server
        // listening on port 0 gets the same ephemeral port): the node then exits at once, and
        // the cluster is started again on other ports.
        let mut attempts = 0;
        let (cluster, ports) = 'start: loop {
            attempts += 1;
            let dir = tempfile::tempdir().unwrap();
            let tls = tls.then(|| ClusterTls::new(dir.path()));
            let mut ports = Vec::new();
            for _ in 0..6 {
                ports.push(free_cluster_port(&ports));
            }
            let mut cluster = Self {
                dir,
                nodes: ports.iter().map(|&p| (p, None)).collect(),
                tls,
            };
            for &port in &ports {
                std::fs::create_dir(cluster.dir.path().join(port.to_string())).unwrap();
                if !cluster.run(port).await {
                    assert!(
                        attempts < 3,
                        "node {port} exited at start, {attempts} times"
                    );
                    eprintln!("node {port} exited at start (its port taken?): starting again");
                    continue 'start;
                }
            }
            break (cluster, ports);
        };
        let mut cli = Command::new("redis-cli");
        if let Some(tls) = &cluster.tls {
            cli.arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        let out = cli
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_healthy(Duration::from_secs(15)).await;
        Some(cluster)
    }

    /// Starts the node on `port` (on its data and cluster state, if it ran before) and waits
    /// until it answers; false if it exited first (its port was taken).
    async fn run(&mut self, port: u16) -> bool {
        let node_dir = self.dir.path().join(port.to_string());
        let mut server = Command::new("redis-server");
        match &self.tls {
            None => server.args(["--port", &port.to_string()]),
            Some(tls) => server
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .args(["--tls-auth-clients", "yes"])
                .arg("--tls-cert-file")
                .arg(&tls.server_cert)
                .arg("--tls-key-file")
                .arg(&tls.server_key)
                .arg("--tls-client-cert-file")
                .arg(&tls.client_cert)
                .arg("--tls-client-key-file")
                .arg(&tls.client_key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        let child = server
            .args(["--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .args(["--cluster-config-file", "nodes.conf"])
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let slot = self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap();
        slot.1 = Some(child);
        let start = Instant::now();
        while self
            .client(port)
            .get_multiplexed_async_connection()
            .await
            .is_err()
        {
            let slot = self.nodes.iter_mut().find(|(p, _)| *p == port).unwrap();
            if let Some(Ok(Some(_))) = slot.1.as_mut().map(Child::try_wait) {
                return false;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "node {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|(p, _)| format!("127.0.0.1:{p}"))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}-cluster://{}", seeds.join(","))
    }

    /// A client of the node on `port`, over TLS if the cluster speaks it.
    fn client(&self, port: u16) -> redis::Client {
        match &self.tls {
            None => redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap(),
            Some(tls) => redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{port}/0"),
                redis::TlsCertificates {
                    client_tls: Some(redis::ClientTlsConfig {
                        client_cert: std::fs::read(&tls.client_cert).unwrap(),
                        client_key: std::fs::read(&tls.client_key).unwrap(),
                    }),
                    root_cert: Some(std::fs::read(&tls.ca).unwrap()),
                },
            )
            .unwrap(),
        }
    }

    /// Until every live node sees every slot served and every live replica is in sync.
    async fn wait_healthy(&self, bound: Duration) {
        let start = Instant::now();
        'poll: loop {
            assert!(
                start.elapsed() < bound,
                "the cluster did not become healthy in {bound:?} ({})",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            for (port, child) in &self.nodes {
                if child.is_none() {
                    continue;
                }
                let mut conn = self
                    .client(*port)
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if !info.contains("cluster_state:ok")
                    || (replication.contains("role:slave")
                        && !replication.contains("master_link_status:up"))
                {
                    continue 'poll;
                }
            }
            return;
        }
    }

    /// Kills the node at `addr` at once, as a crash would; answers its port.
    fn kill(&mut self, addr: &str) -> u16 {
        for (port, child) in &mut self.nodes {
            if addr.ends_with(&format!(":{port}"))
                && let Some(mut c) = child.take()
            {
                let _ = c.kill();
                let _ = c.wait();
                return *port;
            }
        }
        panic!("{addr} is not a running node of this cluster");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Words recorded one per attempt, round-robin over some users, each a block of a brand of
/// its own; keeps every acknowledged (user, brand).
struct Words {
    acked: Vec<(String, u64)>,
    next: u64,
}

impl Words {
    /// One attempt: the word, acknowledged or not.
    async fn attempt(
        &mut self,
        server: &TestServer,
        users: &[String],
    ) -> Result<(), tonic::Status> {
        let user = &users[self.next as usize % users.len()];
        let brand = 10_000 + self.next;
        self.next += 1;
        record(server, vec![block_brand(user, brand)]).await?;
        self.acked.push((user.clone(), brand));
        Ok(())
    }

    /// Writes on until one is acknowledged; answers how long after `since` that was, and how
    /// many attempts were refused (UNAVAILABLE, nothing else) meanwhile.
    async fn until_accepted(
        &mut self,
        server: &TestServer,
        users: &[String],
        since: Instant,
    ) -> (Duration, usize) {
        let mut refused = 0;
        loop {
            let last = match self.attempt(server, users).await {
                Ok(()) => return (since.elapsed(), refused),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    refused += 1;
                    status.message().to_owned()
                }
            };
            assert!(
                since.elapsed() < RESUME_BOUND,
                "writes still refused {RESUME_BOUND:?} after the failover began; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_words_survive_a_failover_of_their_users_slot() {
    let _alone = FAILOVER_ALONE.write().await;
    if test_redis_cluster("cluster failover").is_none() {
        return;
    }
    let Some(mut cluster) = OwnCluster::start().await else {
        return;
    };
    let url = cluster.url();
    let namespace = fresh_namespace();
    let a = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let list = |user: &str| format!("{namespace}:{{{}}}:ops", a.store.key(user).to_hex());
    let everyone: Vec<String> = (0..24).map(|i| format!("failover-{i}")).collect();
    // The users whose slots the first user's master serves: the ones its failovers touch.
    // (Every node names every replica once the cluster has settled.)
    let start = Instant::now();
    let (master, replicas) = loop {
        let (master, replicas) = serving(&url, &list(&everyone[0])).await;
        if !replicas.is_empty() {
            break (master, replicas);
        }
        assert!(start.elapsed() < RESUME_BOUND, "{master} has no replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut touched = Vec::new();
    for user in &everyone {
        if serving(&url, &list(user)).await.0 == master {
            touched.push(user.clone());
        }
    }
    let mut words = Words {
        acked: Vec::new(),
        next: 0,
    };
    // Before: every user has words, each acknowledged once a replica holds it (the default
    // on a cluster: state.redis_wait_replicas = 1).
    let start = Instant::now();
    for _ in 0..everyone.len() * 2 {
        words.attempt(&a, &everyone).await.unwrap();
    }
    let per_write = start.elapsed() / (everyone.len() as u32 * 2);
    eprintln!("one Record (one word, WAIT 1) on the cluster: {per_write:?} on average");

    // 1. A graceful failover: the replica takes over the slots of the first user's master.
    let replica = replicas[0].clone();
    let mut conn = node(&replica).await;
    let since = Instant::now();
    redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .exec_async(&mut conn)
        .await
        .unwrap();
    let (resumed, refused) = words.until_accepted(&a, &touched, since).await;
    eprintln!(
        "graceful failover ({master} -> {replica}): the users' writes accepted again after \
         {resumed:?} ({refused} refused)"
    );
    cluster.wait_healthy(RESUME_BOUND).await;
    assert_eq!(serving(&url, &list(&touched[0])).await.0, replica);
    for _ in 0..everyone.len() {
        words.attempt(&a, &everyone).await.unwrap();
    }

    // 2. That master dies; the cluster promotes its replica (the old master).
    let dead = replica;
    let port = cluster.kill(&dead);
    let since = Instant::now();
    let promoted = loop {
        let (now, _) = serving(&url, &list(&touched[0])).await;
        if now != dead {
            break now;
        }
        assert!(since.elapsed() < RESUME_BOUND, "{dead} was never replaced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let promotion = since.elapsed();
    // The promoted master has no replica left: a word for its users cannot be held by one,
    // and is refused rather than acknowledged.
    let refusal = loop {
        let last = match words.attempt(&a, &touched).await {
            Ok(()) => panic!(
                "a word acknowledged with its only replica dead: {:?}",
                words.acked.last()
            ),
            Err(status) if status.message().contains("replicas") => break status,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                status.message().to_owned()
            }
        };
        assert!(
            since.elapsed() < RESUME_BOUND,
            "never refused for want of a replica; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    eprintln!("with no replica: {}", refusal.message());
    // The dead node comes back (as a replica of the promoted one): writes resume.
    assert!(cluster.run(port).await, "{dead} could not start again");
    let (resumed, refused) = words.until_accepted(&a, &touched, since).await;
    eprintln!(
        "master {dead} killed: {promoted} serves its slots after {promotion:?}; with the dead \
         node back as a replica, writes accepted again {resumed:?} after the kill ({refused} \
         refused)"
    );
    cluster.wait_healthy(RESUME_BOUND).await;
    for _ in 0..everyone.len() {
        words.attempt(&a, &everyone).await.unwrap();
    }

    // Every acknowledged word, on a fresh instance (and on A, which followed the cluster).
    let fresh = open(&url, &namespace).await;
    for (user, brand) in &words.acked {
        assert!(
            blocked(&fresh, user, *brand).await,
            "{user}: block of {brand} was acknowledged and is gone ({} acknowledged in all)",
            words.acked.len()
        );
        assert!(
            blocked(&a.store, user, *brand).await,
            "{user}: {brand} on A"
        );
    }
    eprintln!(
        "{} acknowledged words, all honoured after two failovers",
        words.acked.len()
    );

    // 3. Without waiting for replicas (state.redis_wait_replicas = 0), another master dies:
    // its users' writes resume as soon as the cluster has promoted its replica. (What such a
    // write risks is the replication lag before the kill; reported, not checked.)
    let mut config = with_test_master_key(Config::default().state_config());
    config.redis_wait_replicas = Some(0);
    let b =
        TestServer::with_store(Config::default(), open_with(&url, &namespace, config).await).await;
    let mut masters: Vec<String> = slot_map(&url).await.into_iter().map(|r| r.2).collect();
    masters.sort();
    masters.dedup();
    let other = masters
        .into_iter()
        .find(|m| *m != promoted)
        .expect("another master");
    let mut theirs = Vec::new();
    for user in &everyone {
        if serving(&url, &list(user)).await.0 == other {
            theirs.push(user.clone());
        }
    }
    let mut unwaited = Words {
        acked: Vec::new(),
        next: 1_000,
    };
    unwaited.attempt(&b, &theirs).await.unwrap();
    cluster.kill(&other);
    let since = Instant::now();
    // The first attempts may still be answered by nobody: wait for the node to be missed.
    let (resumed, refused) = loop {
        let (at, refused) = unwaited.until_accepted(&b, &theirs, since).await;
        if serving(&url, &list(&theirs[0])).await.0 != other {
            break (at, refused);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "master {other} killed, redis_wait_replicas = 0: its users' writes accepted again \
         after {resumed:?} ({refused} refused)"
    );
    b.stop().await;
    a.stop().await;
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_checks_and_serves_a_cluster_backend() {
    let _shared = FAILOVER_ALONE.read().await;
    let Some(url) = test_redis_cluster("cluster binary") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let master = write(dir.path(), "master.key", TEST_MASTER_KEY);
    let config = |backend: &str, extra: &str| {
        format!(
            "[state]\nbackend = {backend:?}\nmaster_key_file = {:?}\n{extra}",
            master.display().to_string()
        )
    };
    let check = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(["config", "check"])
            .arg(file)
            .env_remove("TACTFUL_CONFIG")
            .output()
            .unwrap()
    };
    let good = write(
        dir.path(),
        "good.toml",
        &config(&url, "redis_wait_replicas = 1\n"),
    );
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, backend, extra, setting) in [
        (
            "db.toml",
            "redis-cluster://127.0.0.1:7390/2",
            "",
            "state.backend",
        ),
        (
            "empty-seed.toml",
            "redis-cluster://127.0.0.1:7390,,127.0.0.1:7391",
            "",
            "state.backend",
        ),
        (
            "wait.toml",
            url.as_str(),
            "redis_wait_replicas = 100\n",
            "state.redis_wait_replicas",
        ),
        (
            "wait-disk.toml",
            "disk",
            "redis_wait_replicas = 1\n",
            "state.redis_wait_replicas",
        ),
    ] {
        let out = check(&write(dir.path(), name, &config(backend, extra)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        assert!(stderr.contains(setting), "{name}: {stderr}");
    }

    // Two servers on the cluster: a word acknowledged by one is shown by the other.
    let served = write(dir.path(), "serve.toml", &config(&url, ""));
    let serve = |data: &str| {
        let (child, addr, drain, _admin) = spawn_server(
            &dir.path().join(data),
            &["--config", served.to_str().unwrap()],
        );
        (KillOnDrop(child), addr, drain)
    };
    let (_one, one, _d1) = serve("one");
    let (_two, two, _d2) = serve("two");
    let cli = |addr: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tactful"))
            .args(args)
            .args(["--addr", addr])
            .output()
            .unwrap()
    };
    let user = format!("cluster-cli-{}", std::process::id());
    let out = cli(
        &one,
        &["event", "--user", &user, "block-brand", "--brand", "77"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&two, &["profile", "get", "--user", &user]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("blocked brands    77"), "{shown}");
    let out = cli(&one, &["profile", "forget", "--user", &user]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_backend_speaks_tls_to_a_cluster() {
    let _shared = FAILOVER_ALONE.read().await;
    if test_redis_cluster("cluster over TLS").is_none() {
        return;
    }
    let Some(cluster) = OwnCluster::start_with(true).await else {
        return;
    };
    let url = cluster.url();
    let tls = cluster.tls.as_ref().expect("a TLS cluster");
    let namespace = fresh_namespace();
    let config = |client: bool| {
        let mut config = with_test_master_key(Config::default().state_config());
        config.redis_tls = tls.settings(client);
        config
    };
    // Words for users on every master, each acknowledged once a replica holds it (which
    // the nodes replicate over TLS too); a second instance reads them back.
    let a = TestServer::with_store(
        Config::default(),
        open_with(&url, &namespace, config(true)).await,
    )
    .await;
    let users: Vec<String> = (0..12).map(|i| format!("tls-{i}")).collect();
    let events = users
        .iter()
        .enumerate()
        .map(|(i, u)| block_brand(u, 300 + i as u64))
        .collect();
    record(&a, events).await.unwrap();
    let b = open_with(&url, &namespace, config(true)).await;
    for (i, u) in users.iter().enumerate() {
        assert!(blocked(&b, u, 300 + i as u64).await, "{u} over TLS");
    }
    // Without the client certificate, or in clear text to the TLS ports: no connection.
    for (what, url, config) in [
        ("no client certificate", url.clone(), config(false)),
        (
            "clear text",
            url.replace("rediss-cluster://", "redis-cluster://"),
            with_test_master_key(Config::default().state_config()),
        ),
    ] {
        let opened = tokio::time::timeout(
            Duration::from_secs(20),
            UserStore::open_redis(config, &url, &namespace),
        )
        .await
        .expect("gives up within its timeouts");
        assert!(opened.is_err(), "{what}: connected");
    }
    a.stop().await;
}

//! User state shared through Redis (`--state redis://…`), against a real Redis: the one at
//! `TACTFUL_TEST_REDIS` (scripts/test.sh starts it with scripts/redis.sh), or one the test
//! starts and kills itself. Each test works in a namespace of its own, so tests run in
//! parallel on one Redis and never flush it. Properties checked:
//! 1. Two instances on one Redis: a BLOCK_BRAND recorded on A is honoured by B's next Rank,
//!    although B had the user in memory (A's announcement drops it there); an UNBLOCK and a
//!    consent change on B are honoured by A the same way. The bound: one pub/sub hop after
//!    the write is acknowledged; the test allows [`INVALIDATION_BOUND`] and reports whether
//!    the very next Rank already honoured it.
//! 2. Redis down: Rank for a user not in memory answers the upstream order, degraded with
//!    reason STATE; a user still in memory keeps being served from it; Events.Record,
//!    Events.Stream, Profile.SetConsent and Profile.Forget answer UNAVAILABLE. Once Redis is
//!    back, writes are accepted again and every acknowledged word is still there.
//! 3. Profile.Forget removes the user from Redis (a scan of every key and every value finds
//!    neither the user id nor the user's key) and from the other instance's memory; other
//!    users are untouched.
//! 4. A restart (a new store on the same Redis) keeps explicit feedback and consent.
//! 5. A long history is compacted into one op and reads back the same.
//! 6. Past the memory cap, the coldest users are evicted (nothing is held back: Redis has
//!    every explicit word) and read back from Redis with their words.
//!
//! The same integration tests as the in-memory mode run on Redis too, with
//! `TACTFUL_TEST_STATE=redis` (scripts/test.sh does).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tactful::config::Config;
use tactful::pb;
use tactful::state::{Op, UserKey, UserStore};
use tonic::Code;

/// How long a change made on one instance may take to reach another's next Rank. In
/// practice the announcement arrives before the writer's acknowledgement reaches the client.
const INVALIDATION_BOUND: Duration = Duration::from_secs(1);
/// The first byte of a sealed element in a user's list.
const SEALED: u8 = 0xE5;

async fn open(url: &str, namespace: &str) -> UserStore {
    UserStore::open_redis(
        with_test_master_key(Config::default().state_config()),
        url,
        namespace,
    )
    .await
    .unwrap()
}

async fn rank_ids(server: &TestServer, user: &str) -> Vec<u64> {
    ids(&server.rank(request(user, catalogue())).await)
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

fn block_brand(user: &str, brand: u64) -> pb::Event {
    let mut e = event(user, pb::EventType::BlockBrand);
    e.brand_id = brand;
    e
}

fn consent(user: &str, dimension: pb::DataDimension, granted: bool) -> pb::SetConsentRequest {
    pb::SetConsentRequest {
        user_id: user.into(),
        dimensions: vec![pb::DimensionConsent {
            dimension: dimension as i32,
            granted,
        }],
        personalization: None,
        ..Default::default()
    }
}

fn granted(p: &pb::UserProfile, d: pb::DataDimension) -> bool {
    p.consent
        .iter()
        .any(|c| c.dimension == d as i32 && c.granted)
}

/// Ranks on `server` until `honoured` holds for the items, at most [`INVALIDATION_BOUND`].
/// Returns whether the first Rank already honoured it.
async fn honoured_within_bound(
    server: &TestServer,
    user: &str,
    what: &str,
    honoured: impl Fn(&[u64]) -> bool,
) -> bool {
    let start = Instant::now();
    let mut first = true;
    loop {
        let items = rank_ids(server, user).await;
        if honoured(&items) {
            if !first {
                eprintln!(
                    "{what}: honoured after {:?}, not by the very next Rank",
                    start.elapsed()
                );
            }
            return first;
        }
        assert!(
            start.elapsed() < INVALIDATION_BOUND,
            "{what}: not honoured within {INVALIDATION_BOUND:?}: {items:?}"
        );
        first = false;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_is_honoured_by_the_others_next_rank() {
    let Some(url) = test_redis("two instances") else {
        return;
    };
    let namespace = fresh_namespace();
    let a = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let b = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let user = "shared-user";
    assert_eq!(
        a.store.key(user),
        b.store.key(user),
        "the replicas agree on the user-key secret"
    );

    // B holds the user in memory before A records anything (unknown users are cached too).
    let store_b = &b.store;
    store_b.warm(store_b.key(user)).await.unwrap();
    assert_eq!(store_b.len(), 1);
    assert!(rank_ids(&b, user).await.contains(&3));

    record(&a, vec![block_brand(user, 103)]).await.unwrap(); // items 3 and 8
    let at_once = honoured_within_bound(&b, user, "block on A, Rank on B", |items| {
        !items.contains(&3) && !items.contains(&8)
    })
    .await;

    let mut unblock = block_brand(user, 103);
    unblock.r#type = pb::EventType::UnblockBrand.into();
    record(&b, vec![unblock]).await.unwrap();
    honoured_within_bound(&a, user, "unblock on B, Rank on A", |items| {
        items.contains(&3)
    })
    .await;

    // Consent set on B is what A's preference centre shows and what its ranking applies.
    b.profile()
        .await
        .set_consent(consent(user, pb::DataDimension::CrossPlatform, true))
        .await
        .unwrap();
    let start = Instant::now();
    while !granted(&a.get_profile(user).await, pb::DataDimension::CrossPlatform) {
        assert!(
            start.elapsed() < INVALIDATION_BOUND,
            "consent did not reach A"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cross = candidate(11, 0.99, 1, 1);
    cross.evidence = vec![pb::DataDimension::CrossPlatform as i32];
    assert_eq!(ids(&a.rank(request(user, vec![cross])).await), vec![11]);

    eprintln!("block on A honoured by B's very next Rank: {at_once}");
    a.stop().await;
    b.stop().await;
    delete_namespace(&url, &namespace).await;
}

/// A redis-server of the test's own, on a free port, that the test can kill and restart.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRedis {
    /// `None` (skipped with a note) when no redis-server is installed, outside CI.
    async fn start() -> Option<Self> {
        if !redis_server_installed() {
            return None;
        }
        let port = free_port();
        let mut redis = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        redis.run().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (on the same data as before, if any) and waits until it answers.
    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if ping(&self.url()).await {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server at once, as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        Duration::from_millis(500),
        client.get_multiplexed_async_connection(),
    )
    .await
    else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_rank_fails_open_and_changes_are_refused() {
    if test_redis("redis down").is_none() {
        return;
    }
    let Some(mut redis) = OwnRedis::start().await else {
        return;
    };
    let server = TestServer::with_store(Config::default(), open(&redis.url(), "down").await).await;
    // `kept` is in memory and untouched while Redis is down; a write for `touched` fails.
    let (kept, touched, stranger) = ("kept", "touched", "stranger");
    record(
        &server,
        vec![block_brand(kept, 103), block_brand(touched, 103)],
    )
    .await
    .unwrap();
    assert!(!rank_ids(&server, kept).await.contains(&3));
    assert!(!rank_ids(&server, touched).await.contains(&3));

    redis.kill();

    // Most likely nobody has noticed yet: the write goes out and fails, and `touched` is
    // dropped from memory (what it held may not be what Redis holds).
    let status = record(&server, vec![block_brand(touched, 104)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        rank_ids(&server, touched).await.contains(&4),
        "a refused block is not applied"
    );

    let upstream: Vec<u64> = (1..=10).collect();
    let r = server.rank(request(stranger, catalogue())).await;
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.degraded_reason, pb::DegradedReason::State as i32);
    assert_eq!(ids(&r), upstream, "the upstream order");

    // (A fail-open for another reason, e.g. the budget on a busy machine, still applies the
    // user's words; only STATE means they could not be read.)
    let not_state = |r: &pb::RankResponse| r.degraded_reason != pb::DegradedReason::State as i32;
    let r = server.rank(request(kept, catalogue())).await;
    assert!(not_state(&r), "a user in memory is served from it: {r:?}");
    assert!(!ids(&r).contains(&3), "with their block");

    for user in [kept, stranger] {
        let status = record(&server, vec![block_brand(user, 104)])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let status = server
        .events()
        .await
        .stream(tokio_stream::iter(vec![block_brand(kept, 104)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let mut profiles = server.profile().await;
    let status = profiles
        .set_consent(consent(kept, pb::DataDimension::Location, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = profiles
        .forget(pb::ForgetRequest {
            user_id: kept.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Refused before anything was touched: the user in memory is as they were.
    let r = server.rank(request(kept, catalogue())).await;
    assert!(not_state(&r) && !ids(&r).contains(&3) && ids(&r).contains(&4));

    // Back on the same data: writes are taken again once the watchman sees it.
    redis.run().await;
    let start = Instant::now();
    while let Err(status) = record(&server, vec![block_brand(stranger, 104)]).await {
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "redis is back but writes are still refused: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!rank_ids(&server, stranger).await.contains(&4));
    for user in [kept, touched] {
        let r = server.rank(request(user, catalogue())).await;
        assert!(
            not_state(&r) && !ids(&r).contains(&3),
            "acknowledged words survive: {r:?}"
        );
        assert!(ids(&r).contains(&4), "the refused block was not applied");
    }
    assert!(redis.dir().join("appendonlydir").exists());
    server.stop().await;
}

/// Every key of the Redis and every value in it, as bytes.
async fn everything_in(url: &str) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            // Lists and strings by their elements (a DUMP may compress them); anything else
            // (none is expected) by its DUMP. A key gone meanwhile has nothing to show.
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect(),
                _ => redis::cmd("DUMP")
                    .arg(&key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect(),
            };
            out.push((key, values));
        }
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where the user id or the user's key (raw or hex) still appears in Redis.
async fn traces_of(url: &str, user: &str, key: UserKey) -> Vec<String> {
    let hex = key.to_hex();
    let needles: [&[u8]; 3] = [user.as_bytes(), &key.0, hex.as_bytes()];
    let mut found = Vec::new();
    for (name, values) in everything_in(url).await {
        for needle in needles {
            if contains(&name, needle) || values.iter().any(|v| contains(v, needle)) {
                found.push(String::from_utf8_lossy(&name).into_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_leaves_no_trace_in_redis_nor_in_the_other_instance() {
    let Some(url) = test_redis("forget") else {
        return;
    };
    let namespace = fresh_namespace();
    let a = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let b = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let (user, other) = ("erin.forget-me@example.com", "frank");
    let key = a.store.key(user);

    let mut not_interested = event(user, pb::EventType::NotInterested);
    not_interested.item_id = 5;
    let mut seen = event(user, pb::EventType::Impression);
    seen.item_id = 1;
    record(&a, vec![block_brand(user, 103), not_interested, seen])
        .await
        .unwrap();
    a.profile()
        .await
        .set_consent(consent(user, pb::DataDimension::Location, true))
        .await
        .unwrap();
    record(&b, vec![block_brand(other, 104)]).await.unwrap();
    assert!(!rank_ids(&b, user).await.contains(&3), "B holds the user");
    assert!(
        !traces_of(&url, user, key).await.is_empty(),
        "the scan sees the user's list before the erasure"
    );

    a.profile()
        .await
        .forget(pb::ForgetRequest {
            user_id: user.into(),
        })
        .await
        .unwrap();

    let traces = traces_of(&url, user, key).await;
    assert!(
        traces.is_empty(),
        "the user is still in redis at {traces:?}"
    );
    assert!(!a.get_profile(user).await.known);
    let start = Instant::now();
    while b.get_profile(user).await.known {
        assert!(
            start.elapsed() < INVALIDATION_BOUND,
            "B still holds the user"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(rank_ids(&b, user).await.contains(&3));
    assert_eq!(
        a.get_profile(other).await.blocked_brands,
        vec![104],
        "others untouched"
    );
    a.stop().await;
    b.stop().await;
    delete_namespace(&url, &namespace).await;
}

/// The ways an id may show in clear: its decimal text and its 8-byte forms.
fn forms(id: u64) -> [Vec<u8>; 3] {
    [
        id.to_string().into_bytes(),
        id.to_le_bytes().to_vec(),
        id.to_be_bytes().to_vec(),
    ]
}

/// Where any form of `ids` shows in the namespace's keys or values.
async fn clear_ids_in(url: &str, namespace: &str, ids: &[u64]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, values) in everything_in(url).await {
        if !name.starts_with(namespace.as_bytes()) {
            continue;
        }
        for id in ids {
            for form in forms(*id) {
                if contains(&name, &form) || values.iter().any(|v| contains(v, &form)) {
                    found.push(format!("{id} in {}", String::from_utf8_lossy(&name)));
                }
            }
        }
    }
    found
}

fn block(brand: u64) -> tactful::state::Event {
    let mut e = tactful::state::Event::new(
        tactful::state::EventKind::BlockBrand,
        tactful::time::now_ms(),
    );
    e.brand_id = brand;
    e
}

async fn is_blocked(store: &UserStore, user: &str, brand: u64) -> bool {
    store
        .view(
            store.key(user),
            tactful::time::now_ms(),
            tactful::rank::DimensionSet::EMPTY,
            false,
        )
        .await
        .unwrap()
        .is_brand_blocked(brand)
}

#[tokio::test]
async fn words_in_redis_are_sealed_and_another_master_key_is_refused() {
    let Some(url) = test_redis("sealed words") else {
        return;
    };
    let namespace = fresh_namespace();
    let ids = [424_242_u64, 31_337_313, 8_080_808];
    {
        let store = open(&url, &namespace).await;
        for (i, id) in ids.iter().enumerate() {
            let t = store
                .record(
                    store.key(&format!("user-{i}")),
                    &block(*id),
                    tactful::time::now_ms(),
                )
                .await
                .unwrap();
            store.durable(t).await.unwrap();
        }
        assert!(is_blocked(&store, "user-0", ids[0]).await);
    }
    let found = clear_ids_in(&url, &namespace, &ids).await;
    assert!(found.is_empty(), "in clear: {found:?}");
    // Another replica, another master key: refused, and nothing read as unknown.
    let mut config = Config::default().state_config();
    config.keys.master = Some(tactful::state::crypt::MasterKeySource::Inline(
        "0f".repeat(32),
    ));
    match UserStore::open_redis(config, &url, &namespace).await {
        Err(tactful::state::StateError::Key(m)) => assert!(m.contains("another key"), "{m}"),
        other => panic!("{:?}", other.map(|s| s.len())),
    }
    // And none at all: refused too.
    assert!(matches!(
        UserStore::open_redis(Config::default().state_config(), &url, &namespace).await,
        Err(tactful::state::StateError::Key(_))
    ));
    let store = open(&url, &namespace).await;
    assert!(is_blocked(&store, "user-2", ids[2]).await);
    delete_namespace(&url, &namespace).await;
}

#[tokio::test]
async fn a_namespace_of_format_2_is_read_at_once_and_migrated_to_sealed_words() {
    let Some(url) = test_redis("format 2") else {
        return;
    };
    let namespace = fresh_namespace();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // What the release before encryption at rest wrote: ops in clear.
    let secret = [7u8; 16];
    let user = tactful::state::key::Keyer::new(secret).key("old-user");
    let list = format!("{namespace}:{{{}}}:ops", user.to_hex());
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(format!("{namespace}:format"))
        .arg(2)
        .ignore()
        .cmd("SET")
        .arg(format!("{namespace}:secret"))
        .arg(&secret[..])
        .ignore()
        .cmd("RPUSH")
        .arg(&list)
        .arg(postcard::to_allocvec(&Op::Event(block(515_151))).unwrap())
        .arg(postcard::to_allocvec(&Op::Event(block(616_161))).unwrap())
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let store = open(&url, &namespace).await;
    assert!(
        is_blocked(&store, "old-user", 515_151).await,
        "read at once"
    );
    let start = Instant::now();
    loop {
        let format: Option<u32> = redis::cmd("GET")
            .arg(format!("{namespace}:format"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if format == Some(tactful::state::DATA_FORMAT) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not migrated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elements: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!elements.is_empty() && elements.iter().all(|e| e[0] == SEALED));
    let found = clear_ids_in(&url, &namespace, &[515_151, 616_161]).await;
    assert!(found.is_empty(), "in clear: {found:?}");
    drop(store);
    let store = open(&url, &namespace).await;
    assert!(is_blocked(&store, "old-user", 616_161).await);
    delete_namespace(&url, &namespace).await;
}

#[tokio::test]
async fn explicit_words_and_consent_survive_a_restart() {
    let Some(url) = test_redis("restart") else {
        return;
    };
    let namespace = fresh_namespace();
    let user = "grace";
    {
        let server = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
        let mut not_interested = event(user, pb::EventType::NotInterested);
        not_interested.item_id = 1;
        record(&server, vec![block_brand(user, 103), not_interested])
            .await
            .unwrap();
        server
            .profile()
            .await
            .set_consent(consent(user, pb::DataDimension::Location, true))
            .await
            .unwrap();
        server.stop().await;
    }
    let server = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let items = rank_ids(&server, user).await;
    assert!(
        !items.contains(&1) && !items.contains(&3) && !items.contains(&8),
        "{items:?}"
    );
    let p = server.get_profile(user).await;
    assert!(p.known && p.blocked_brands == vec![103], "{p:?}");
    assert!(granted(&p, pb::DataDimension::Location));
    server.stop().await;
    delete_namespace(&url, &namespace).await;
}

#[tokio::test]
async fn a_long_history_is_compacted_and_reads_back_the_same() {
    let Some(url) = test_redis("compaction") else {
        return;
    };
    let namespace = fresh_namespace();
    let user = "heidi";
    let server = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    let mut events: Vec<pb::Event> = (1..=100).map(|b| block_brand(user, b)).collect();
    for b in (2..=100).step_by(2) {
        let mut unblock = block_brand(user, b);
        unblock.r#type = pb::EventType::UnblockBrand.into();
        events.push(unblock);
    }
    record(&server, events).await.unwrap();
    let expected: Vec<u64> = (1..=100).step_by(2).collect();

    let list = format!("{namespace}:{{{}}}:ops", server.store.key(user).to_hex());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    wait_until_compacted(&mut conn, &list).await;
    let first: Vec<u8> = redis::cmd("LINDEX")
        .arg(&list)
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Sealed under the user's key: the compacted state is not in clear either.
    assert_eq!(first[0], SEALED, "{first:?}");
    assert!(postcard::from_bytes::<Op>(&first).is_err());
    server.stop().await;

    let server = TestServer::with_store(Config::default(), open(&url, &namespace).await).await;
    assert_eq!(server.get_profile(user).await.blocked_brands, expected);
    server.stop().await;
    delete_namespace(&url, &namespace).await;
}

#[tokio::test]
async fn evicted_users_are_read_back_from_redis_with_their_words() {
    let Some(url) = test_redis("eviction") else {
        return;
    };
    let namespace = fresh_namespace();
    let cap = 128 << 10;
    let mut config = with_test_master_key(Config::default().state_config());
    config.memory_cap_bytes = cap;
    let store = std::sync::Arc::new(
        UserStore::open_redis(config, &url, &namespace)
            .await
            .unwrap(),
    );
    let now = tactful::time::now_ms();
    let users = 2_000u64;
    // Concurrently: with `appendfsync always`, Redis answers a write only after an fsync, so
    // writes one after another would cost an fsync each.
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..users {
        let store = store.clone();
        writes.spawn(async move {
            let mut e = tactful::state::Event::new(tactful::state::EventKind::BlockBrand, now);
            e.brand_id = i + 1;
            store
                .record(store.key(&format!("user-{i}")), &e, now)
                .await
                .unwrap()
        });
    }
    let mut ticket = tactful::state::Ticket::NONE;
    while let Some(t) = writes.join_next().await {
        ticket = ticket.join(t.unwrap());
    }
    store.durable(ticket).await.unwrap();
    // The keeper evicts in the background; wait until it has.
    let start = Instant::now();
    while store.stats().evicted_total == 0 || store.stats().bytes > cap {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            store.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.len() < users as usize);
    for i in (0..users).step_by(97) {
        let key = store.key(&format!("user-{i}"));
        let view = store
            .view(key, now, Default::default(), false)
            .await
            .unwrap();
        assert!(view.is_brand_blocked(i + 1), "user-{i} lost their block");
    }
    drop(store);
    delete_namespace(&url, &namespace).await;
}

//! The shared backend: users' explicit words written through to Redis, so that every replica
//! of tactful honours them; the in-process map stays the hot cache that rankings read.
//!
//! Keys (everything about one user shares the hash tag `{<user key>}`, so on a Redis Cluster
//! it is in one slot, on one master; the other keys are single keys, read one at a time):
//! - `<ns>:{<user key hex>}:ops` — a LIST of the user's [`Op`]s, oldest first, each sealed under
//!   the user's data key (`[0xE5][key id u64][nonce ‖ ciphertext ‖ tag]`, bound to the user and
//!   the key id): the user's explicit ops only (blocks, "not interested", "fewer like this",
//!   purchases, consent). Elements written by data format 2 are postcard in clear; they are
//!   still read, and rewritten sealed by the migration ([`namespace`]) at the first start of
//!   this format.
//! - `<ns>:{<user key hex>}:key` — the user's data key: `[key id u64][the key wrapped by the
//!   master key]`. Made by whichever replica writes first for the user (`SET NX`, then every
//!   replica uses what Redis holds); an append lands only while the key it was sealed under is
//!   the user's key (a script checks it), so that nothing is ever sealed under a destroyed
//!   key. Erasure deletes the list and the key in one command: every copy of the elements
//!   (a replica, an AOF not yet rewritten, an RDB backup) is unreadable from then on.
//! - `<ns>:master-check` — a value sealed under the master key: a replica started with
//!   another master key is refused at start (exit code 64).
//!   Counters (impressions, clicks) stay in each replica's memory: they may be approximate, and
//!   writing every impression to Redis would cost more than it is worth. A long list is
//!   compacted into one [`Op::Restore`] by a script that replaces the elements it was given
//!   only while they are still the list's first ones (abandoned on a concurrent change).
//! - `<ns>:secret` — the 16-byte secret of the user keys, set once by whichever replica comes
//!   first (`SET NX`): every replica derives the same key for the same user, and Redis never
//!   holds a user id in clear.
//! - channel `<ns>:changed` — every write announces `<instance id><user key>`; each replica
//!   drops that user from its cache when another replica changed them (the next access reads
//!   Redis again). On a cluster, PUBLISH reaches every node whichever node takes it, and each
//!   replica subscribes on one node.
//!
//! Writes: [`Backend::append`] runs under the user's map lock, so it only queues the op (with a
//! ticket). One writer task sends everything queued in one pipeline (RPUSH per op, then one
//! PUBLISH per user) and then publishes the highest ticket it settled; [`Backend::durable`]
//! waits for it. On a Redis Cluster the same batch goes out as one pipeline per user (a
//! pipeline must stay within one slot), all at once, each followed by its PUBLISH through any
//! node (the client would route PUBLISH by its channel, another slot); a part fails alone, so a
//! master being failed over refuses only its own users' words. With
//! `state.redis_wait_replicas` (default 1 on a cluster, 0 on one Redis), each pipeline ends
//! with `WAIT n 1000`: a write is acknowledged only once that many replicas hold it, so that a
//! failover (a replica promoted when its master dies) does not lose it; fewer in time fails
//! the write without marking Redis down. A failed write drops its users from the cache (the
//! next access reads Redis' truth) and fails its tickets: the caller answers UNAVAILABLE and
//! the client retries (explicit words are idempotent). Users of a write that failed are
//! announced again once Redis answers, in case the write landed but its announcement did not.
//!
//! How stale can a replica be? While its subscription holds, a change made elsewhere is gone
//! from its cache as soon as the announcement arrives, and the announcement leaves Redis before
//! the acknowledgement of the write does (the PUBLISH follows the RPUSH in one pipeline, or
//! right after it on a cluster): in practice the next Rank anywhere already sees the change
//! (tests/redis.rs and tests/redis_cluster.rs allow 1 s). While
//! the subscription is lost, cached users may be stale; once it is back, the whole cache is
//! dropped, so the bound is then the time to reconnect (a few hundred milliseconds after Redis
//! answers again). Dropping a user also drops this replica's counters for them: counters are
//! per replica and approximate. Every removal from the map (an announcement, a failed write,
//! an erasure, eviction, a lost subscription) is told to the reads of the user in flight
//! first, so that none of them puts back what it read; a read that finds its user dropped
//! right after loading them loads again ([`Cold::Reload`]), so a ranking never sees a user
//! half-gone. The map is a cache of what Redis holds: any user may be evicted.
//!
//! One Redis or a cluster: [`conn`] holds the difference (the connection, the node the
//! subscription is on and the announcements go through, the masters a SCAN visits, how a
//! script is sent); everything here sends single-slot commands and pipelines, so the same
//! code runs on both. [`namespace`] holds the passes over every user (migration, master-key
//! rotation).
//!
//! Redis down: a known-down Redis refuses changes before anything is touched, users not in
//! memory cannot be read (rankings fail open with reason STATE), users already in memory are
//! still served from it. A watchman task pings Redis (on a cluster, any node: the cluster is
//! down when none answers; one master down fails its own users' reads and writes) and notices
//! when it is back.
//!
//! Must not: wait for Redis while holding a user's map lock, acknowledge a change before Redis
//! has it, put a user id (or anything else in clear about a user) into Redis, or let a read
//! that raced with a removal put an old state back into the cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio_stream::StreamExt;

use super::backend::{Backend, BoxFuture, Cold, DATA_FORMAT, Load, Opened, Ticket};
use super::crypt::{DataKey, KeyWrap, MasterKey, WRAPPED_LEN};
use super::key::{Keyer, PassThrough, UserKey, random_secret};
use super::legacy;
use super::map::{Loaded, UserMap};
use super::op::Op;
use super::settings::{check_redis_url, redact};
use super::snapshot::{FORMAT_V2, FORMAT_V3};
use super::user::UserState;
use super::vault::{KeyId, wrap_aad};
use super::{StateConfig, StateError};

mod conn;
mod namespace;

use conn::{Conn, Link};
pub(super) use namespace::rotate_master;

/// The namespace tactful uses unless told otherwise: `tactful:secret`, `tactful:{…}:ops`.
pub const DEFAULT_NAMESPACE: &str = "tactful";

/// A list longer than this is compacted: reading a user back stays one short LRANGE and one
/// replay of at most this many ops (tens of microseconds), whatever the user's history.
const COMPACT_AT: usize = 64;
/// Reads for a change or a profile give up after this (rankings have their own deadline).
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// A write pipeline that has no answer after this has failed: its callers get UNAVAILABLE
/// rather than hanging while Redis is unreachable.
const WRITE_TIMEOUT: Duration = conn::RESPONSE_TIMEOUT;
/// How long a write waits at most for the replicas `state.redis_wait_replicas` asks for
/// (`WAIT`): half the write timeout, so that a missing replica is reported as such.
const WAIT_TIMEOUT_MS: u64 = 1000;
/// How long an acknowledgement waits at most for the writer: a few write timeouts.
const DURABLE_WAIT: Duration = Duration::from_secs(10);
/// Ops sent in one pipeline at most: large enough to amortise a round trip under load, small
/// enough that one pipeline stays well inside the write timeout.
const MAX_BATCH: usize = 1024;
/// The watchman pings this often while Redis answers (a dead Redis is then noticed even when
/// nobody writes), and this often while it does not (recovery is noticed quickly).
const PING_WHILE_UP: Duration = Duration::from_millis(500);
const PING_WHILE_DOWN: Duration = Duration::from_millis(100);
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// The subscription is pinged this often: a silent connection is not a healthy one.
const SUBSCRIPTION_PING: Duration = Duration::from_secs(1);
/// Pause between attempts to subscribe again.
const RESUBSCRIBE_WAIT: Duration = Duration::from_millis(100);
/// Failures further apart than this are not one streak (see [`Redis::note_failure`]).
const STREAK_GAP_MS: u64 = 1000;
/// Failed ticket ranges are kept this long for waiters to find (they look within
/// microseconds of the failure; ranges are coalesced, so this costs a few bytes).
const FAILURES_KEPT: Duration = Duration::from_secs(600);
/// Users queued for compaction at most; more are skipped (the next write or read re-queues).
const COMPACT_QUEUE: usize = 1024;
/// A read that keeps racing with removals of its user gives up after this many attempts.
const LOAD_ATTEMPTS: usize = 4;
/// The first byte of a sealed element. An element of format 2 starts with its op's variant
/// index (below 8), so the two never mix up.
const SEALED: u8 = 0xE5;
/// A stored data key: its id and the wrapped key.
const KEY_VALUE_LEN: usize = 8 + WRAPPED_LEN;
/// Appends one sealed element, but only while the user's data key is the one it was sealed
/// under (KEYS: the list, the key; ARGV: the stored key, the element). Answers the list's new
/// length, or -1 when the key is gone (erased) or another: the writer then resolves the key
/// again and seals anew.
const APPEND_SCRIPT: &str = "local k = redis.call('GET', KEYS[2]) \
    if k ~= ARGV[1] then return -1 end \
    return redis.call('RPUSH', KEYS[1], ARGV[2])";
/// Reads a user: their list and their data key, as of one moment (KEYS: the list, the key).
/// A script rather than MULTI/EXEC: on a cluster, the client follows a MOVED answer to a single
/// command, not one given to a command queued in a transaction (a read sent to a node that no
/// longer serves the user would fail until something else refreshed the client's map).
const READ_SCRIPT: &str = "return {redis.call('LRANGE', KEYS[1], 0, -1), \
    redis.call('GET', KEYS[2])}";
/// How often a write is sealed anew when the user's key changed under it.
const RESEAL_ATTEMPTS: usize = 3;
/// Replaces the first elements of a user's list by a compacted history, but only while they
/// are still the ones that were read and the user's data key is still the one read (KEYS: the
/// list, the key; ARGV: n, the elements read; the key read, '' for none; the key to store, ''
/// to keep it; m, the new elements; then the m new elements, in list order; then the n
/// elements read). Elements appended since stay after the new ones. Answers 1 when done, 0
/// when something changed (try again later). A script, not WATCH/MULTI: it runs on the shared
/// connection, on one server or on a cluster node alike (both keys share the user's slot).
const COMPACT_SCRIPT: &str = "local n = tonumber(ARGV[1]) \
    local m = tonumber(ARGV[4]) \
    if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then return 0 end \
    local head = redis.call('LRANGE', KEYS[1], 0, n - 1) \
    if #head ~= n then return 0 end \
    for i = 1, n do if head[i] ~= ARGV[4 + m + i] then return 0 end end \
    if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3]) end \
    redis.call('LTRIM', KEYS[1], n, -1) \
    for i = m, 1, -1 do redis.call('LPUSH', KEYS[1], ARGV[4 + i]) end \
    return 1";

/// A user's data key as Redis holds it.
struct StoredKey {
    id: KeyId,
    key: DataKey,
    /// The value in Redis: what the append script compares.
    value: Vec<u8>,
}

/// What an element's seal is bound to: its user and key.
fn element_aad(user: UserKey, id: KeyId) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(b"tactfulO");
    a[8..24].copy_from_slice(&user.0);
    a[24..].copy_from_slice(&id.0.to_le_bytes());
    a
}

/// One queued write.
enum Write {
    Append {
        ticket: u64,
        key: UserKey,
        op: Vec<u8>,
    },
    Forget {
        ticket: u64,
        key: UserKey,
    },
}

impl Write {
    fn ticket(&self) -> u64 {
        match self {
            Write::Append { ticket, .. } | Write::Forget { ticket, .. } => *ticket,
        }
    }

    fn key(&self) -> UserKey {
        match self {
            Write::Append { key, .. } | Write::Forget { key, .. } => *key,
        }
    }
}

/// Why a part of a write batch failed.
struct Failed {
    why: String,
    /// Redis did not answer (or answered an error): changes are refused for everyone until
    /// the watchman hears from it. False when only the replicas were missing.
    down: bool,
}

impl Failed {
    fn down(why: impl std::fmt::Display) -> Self {
        Self {
            why: why.to_string(),
            down: true,
        }
    }
}

/// An append's user has no data key in the cache (evicted since it was resolved).
struct KeyMissing;

/// What a write pipeline came to: the length of each list after its write, or why not.
type Sent = Result<Vec<i64>, Failed>;

/// Tickets are handed out and queued under one lock, so the queue is in ticket order and the
/// writer's watermark means "every ticket up to here is settled".
struct Queue {
    next: u64,
    /// `None` once the store is closing.
    tx: Option<mpsc::UnboundedSender<Write>>,
}

/// Tickets `first..=last` failed at `at`.
struct Failure {
    first: u64,
    last: u64,
    at: Instant,
    why: String,
}

/// Reads of one user in flight, and how often the user was removed from the cache since.
#[derive(Default)]
struct Reading {
    readers: u32,
    removals: u64,
}

/// What the tasks take over once the store is assembled.
struct Startup {
    writes: mpsc::UnboundedReceiver<Write>,
    compactions: mpsc::Receiver<UserKey>,
    /// The namespace holds data of format 2: rewrite it sealed.
    migrate: bool,
    subscription: redis::aio::PubSub,
}

pub(super) struct Redis {
    /// Printable address (no password), for messages.
    addr: String,
    config: StateConfig,
    /// Where Redis is: one server or a cluster.
    link: Link,
    /// Replicas that must hold a write before it is acknowledged (`WAIT`; 0: none).
    wait_replicas: u32,
    /// [`APPEND_SCRIPT`], [`COMPACT_SCRIPT`], [`READ_SCRIPT`] as this Redis takes them
    /// ([`Link::script`]).
    append_script: String,
    compact_script: String,
    read_script: String,
    namespace: String,
    channel: String,
    /// Tells this replica's announcements from the others'.
    instance: [u8; 8],
    /// When the current streak of failed reads and writes began (ms since `started`; 0: none),
    /// and when the last of them was: the watchman makes a cluster connection anew when
    /// failures have gone on for [`conn::RECONNECT_EVERY`].
    failing_from: AtomicU64,
    last_failure: AtomicU64,
    started: Instant,
    /// False once a call failed, until the watchman's ping is answered: changes are refused
    /// at once instead of each waiting for a timeout.
    up: AtomicBool,
    queue: Mutex<Queue>,
    /// The highest ticket the writer has settled (written or failed).
    settled: watch::Sender<u64>,
    failures: Mutex<VecDeque<Failure>>,
    /// Per user, the highest ticket queued and not yet settled: a read of that user waits for
    /// it, so that it sees this replica's own writes.
    pending: DashMap<UserKey, u64, PassThrough>,
    /// Reads in flight, per user: a removal while one is in flight makes it read again.
    reading: Mutex<HashMap<UserKey, Reading>>,
    /// Bumped when the whole cache is dropped: every read in flight reads again.
    epoch: AtomicU64,
    /// Users whose write failed: announced again once Redis answers.
    unannounced: Mutex<HashSet<UserKey>>,
    compact: mpsc::Sender<UserKey>,
    startup: Mutex<Option<Startup>>,
    master: Arc<dyn KeyWrap>,
    /// The data keys of users this replica has read or written: dropped with the user.
    keys: DashMap<UserKey, Arc<StoredKey>, PassThrough>,
    tasks: Mutex<Vec<AbortHandle>>,
}

fn unavailable(what: &str, addr: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Unavailable(format!("redis at {addr}: {what}: {e}"))
}

/// Refuses a namespace written in another data layout (ops are not self-describing, so a
/// wrong layout would misread them); marks a new namespace with this build's. Answers true for
/// a namespace of format 2, which is read as it is and migrated in the background.
async fn check_format(
    conn: &mut Conn,
    namespace: &str,
    secret_key: &str,
    addr: &str,
) -> Result<bool, StateError> {
    let format_key = format!("{namespace}:format");
    // Two commands, not one pipeline: on a cluster the two keys are in different slots.
    let (stored, secret_exists): (Option<u32>, bool) = tokio::time::timeout(READ_TIMEOUT, async {
        let stored = redis::cmd("GET")
            .arg(&format_key)
            .query_async(&mut *conn)
            .await?;
        let exists = redis::cmd("EXISTS")
            .arg(secret_key)
            .query_async(&mut *conn)
            .await?;
        Ok::<_, redis::RedisError>((stored, exists))
    })
    .await
    .map_err(|_| unavailable("read the data format", addr, "timed out"))?
    .map_err(|e| unavailable("read the data format", addr, e))?;
    let format = DATA_FORMAT;
    match stored {
        Some(f) if f == format => Ok(false),
        // Format 2 (in clear) and 3 (rows of the wider layout) are migrated.
        Some(FORMAT_V2 | FORMAT_V3) => Ok(true),
        Some(f) => Err(StateError::Corrupt(format!(
            "redis namespace {namespace} holds data format {f}; this build reads format \
             {format}: flush it (or point tactful at another Redis database) or run the \
             release that wrote it"
        ))),
        None if secret_exists => Err(StateError::Corrupt(format!(
            "redis namespace {namespace} holds data from a release before format {format}: \
             flush it (or point tactful at another Redis database) or run the release that \
             wrote it"
        ))),
        None => {
            let set: Result<(), _> = tokio::time::timeout(READ_TIMEOUT, async {
                redis::cmd("SET")
                    .arg(&format_key)
                    .arg(format)
                    .arg("NX")
                    .exec_async(conn)
                    .await
            })
            .await
            .map_err(|_| unavailable("write the data format", addr, "timed out"))?;
            set.map_err(|e| unavailable("write the data format", addr, e))
                .map(|()| false)
        }
    }
}

/// One element of a user's list: sealed under `key`, or in clear (format 2).
fn decode(user: UserKey, key: Option<&StoredKey>, bytes: &[u8]) -> Result<Op, StateError> {
    let corrupt = |what: String| StateError::Corrupt(format!("an op in redis {what}"));
    if bytes.first() != Some(&SEALED) {
        return legacy::decode_op_v2(bytes).map_err(|e| corrupt(format!("does not decode: {e}")));
    }
    let id = bytes
        .get(1..9)
        .map(|b| KeyId(u64::from_le_bytes(b.try_into().expect("8 bytes"))))
        .ok_or_else(|| corrupt("is too short".into()))?;
    let Some(key) = key.filter(|k| k.id == id) else {
        return Err(corrupt(
            "is sealed under a key the user no longer has (written while being erased?)".into(),
        ));
    };
    let plain = key
        .key
        .open(&element_aad(user, id), &bytes[9..])
        .map_err(|e| corrupt(e.to_string()))?;
    postcard::from_bytes(&plain).map_err(|e| corrupt(format!("does not decode: {e}")))
}

/// `op` sealed under `key`, as an element of the user's list.
fn seal(user: UserKey, key: &StoredKey, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + plain.len() + super::crypt::SEAL_OVERHEAD);
    out.push(SEALED);
    out.extend_from_slice(&key.id.0.to_le_bytes());
    key.key.seal(&element_aad(user, key.id), plain, &mut out);
    out
}

/// A user's state from their ops, oldest first.
fn replay(
    user: UserKey,
    key: Option<&StoredKey>,
    ops: &[Vec<u8>],
    cfg: &StateConfig,
) -> Result<UserState, StateError> {
    let mut state = UserState::default();
    for bytes in ops {
        if let Err(err) = decode(user, key, bytes)?.apply(&mut state, cfg) {
            // Only applied ops are written; a refusal now means the limits were lowered
            // since. Keep going: the rest of the user's words still count.
            tracing::warn!(error = %err, "an op from redis no longer applies");
        }
    }
    Ok(state)
}

impl Redis {
    /// Connects, agrees on the user-key secret with the other replicas, subscribes to their
    /// announcements before anything is served (so that none is missed), and starts the tasks
    /// that keep the new, empty map a cache of what Redis holds.
    pub(super) async fn open(
        url: &str,
        namespace: &str,
        config: &StateConfig,
    ) -> Result<Opened, StateError> {
        let (redis, keyer) = Self::connect(url, namespace, config).await?;
        let map = Arc::new(UserMap::new());
        redis.start(Arc::downgrade(&map));
        Ok(Opened {
            backend: redis,
            keyer,
            map,
            snapshot_soon: false,
        })
    }

    async fn connect(
        url: &str,
        namespace: &str,
        config: &StateConfig,
    ) -> Result<(Arc<Self>, Keyer), StateError> {
        let addr = redact(url);
        if namespace.is_empty() || namespace.contains(['{', '}']) {
            return Err(StateError::Unavailable(format!(
                "redis namespace {namespace:?}: must be non-empty, without braces"
            )));
        }
        // The check `tactful config check` and the configuration make, for callers that
        // skip them.
        check_redis_url(url).map_err(StateError::Unavailable)?;
        let link = Link::connect(url, &config.redis_tls)
            .await
            .map_err(|e| StateError::Unavailable(format!("redis at {addr}: {e}")))?;
        let mut conn = link.conn();
        let wait_replicas =
            config
                .redis_wait_replicas
                .unwrap_or(if link.is_cluster() { 1 } else { 0 });

        let master = load_master(config)?;
        check_master(&mut conn, namespace, &*master, &addr).await?;
        let secret_key = format!("{namespace}:secret");
        let migrate = check_format(&mut conn, namespace, &secret_key, &addr).await?;
        let fresh = random_secret().map_err(|e| unavailable("secret", &addr, e))?;
        let stored: Option<Vec<u8>> = tokio::time::timeout(READ_TIMEOUT, async {
            redis::cmd("SET")
                .arg(&secret_key)
                .arg(&fresh[..])
                .arg("NX")
                .exec_async(&mut conn)
                .await?;
            redis::cmd("GET")
                .arg(&secret_key)
                .query_async(&mut conn)
                .await
        })
        .await
        .map_err(|_| unavailable("read the secret", &addr, "timed out"))?
        .map_err(|e| unavailable("read the secret", &addr, e))?;
        let secret: [u8; 16] = stored
            .as_deref()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| StateError::Corrupt(format!("{secret_key}: expected 16 bytes")))?;

        let channel = format!("{namespace}:changed");
        let subscription = link
            .subscribe(&channel)
            .await
            .map_err(|e| unavailable("subscribe", &addr, e))?;

        let mut instance = [0u8; 8];
        instance.copy_from_slice(
            &random_secret().map_err(|e| unavailable("instance id", &addr, e))?[..8],
        );
        let (tx, writes) = mpsc::unbounded_channel();
        let (compact, compactions) = mpsc::channel(COMPACT_QUEUE);
        let redis = Arc::new(Self {
            addr,
            config: config.clone(),
            namespace: namespace.to_owned(),
            channel,
            instance,
            append_script: link.script(APPEND_SCRIPT),
            compact_script: link.script(COMPACT_SCRIPT),
            read_script: link.read_only_script(READ_SCRIPT),
            link,
            wait_replicas,
            failing_from: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            started: Instant::now(),
            up: AtomicBool::new(true),
            queue: Mutex::new(Queue {
                next: 1,
                tx: Some(tx),
            }),
            settled: watch::channel(0).0,
            failures: Mutex::new(VecDeque::new()),
            pending: DashMap::default(),
            reading: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            unannounced: Mutex::new(HashSet::new()),
            compact,
            startup: Mutex::new(Some(Startup {
                writes,
                compactions,
                subscription,
                migrate,
            })),
            tasks: Mutex::new(Vec::new()),
            master,
            keys: DashMap::default(),
        });
        tracing::info!(
            redis = %redis.addr,
            namespace,
            cluster = redis.link.is_cluster(),
            wait_replicas,
            "user state is shared through redis"
        );
        Ok((redis, Keyer::new(secret)))
    }

    /// Starts the writer, the subscriber, the watchman and the compactor. They hold the map
    /// weakly (the store owns both); [`Backend::close`] stops them.
    fn start(self: &Arc<Self>, map: Weak<UserMap>) {
        let Some(startup) = self
            .startup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        // The writer is not aborted on close: it drains what was queued, then stops.
        tokio::spawn(self.clone().write_loop(startup.writes, map.clone()));
        let tasks = [
            tokio::spawn(self.clone().subscribe_loop(startup.subscription, map)),
            tokio::spawn(self.clone().watch_loop()),
            tokio::spawn(self.clone().compact_loop(startup.compactions)),
        ];
        if startup.migrate {
            let migration = tokio::spawn(self.clone().migrate());
            self.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(migration.abort_handle());
        }
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tasks.iter().map(|t| t.abort_handle()));
    }

    fn list_key(&self, key: UserKey) -> String {
        format!("{}:{{{}}}:ops", self.namespace, key.to_hex())
    }

    fn key_key(&self, key: UserKey) -> String {
        format!("{}:{{{}}}:key", self.namespace, key.to_hex())
    }

    /// A user's data key from its stored value.
    fn parse_key(&self, user: UserKey, value: &[u8]) -> Result<StoredKey, StateError> {
        let corrupt = || {
            StateError::Corrupt(format!(
                "{}: not a data key this master key unwraps",
                self.key_key(user)
            ))
        };
        if value.len() != KEY_VALUE_LEN {
            return Err(corrupt());
        }
        let id = KeyId(u64::from_le_bytes(value[..8].try_into().expect("8 bytes")));
        let key = self
            .master
            .unwrap(&value[8..], &wrap_aad(user, id))
            .map_err(|_| corrupt())?;
        Ok(StoredKey {
            id,
            key,
            value: value.to_vec(),
        })
    }

    /// A new data key for the user, not stored yet.
    fn new_key(&self, user: UserKey) -> Result<StoredKey, StateError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| StateError::Unavailable(e.to_string()))?;
        let id = KeyId(u64::from_le_bytes(id));
        let key = DataKey::random().map_err(|e| StateError::Unavailable(e.to_string()))?;
        let mut value = Vec::with_capacity(KEY_VALUE_LEN);
        value.extend_from_slice(&id.0.to_le_bytes());
        value.extend_from_slice(&self.master.wrap(&key, &wrap_aad(user, id)));
        Ok(StoredKey { id, key, value })
    }

    /// Notes what Redis holds as the user's key (`None`: no key).
    fn note_key(&self, user: UserKey, value: Option<&[u8]>) -> Result<(), StateError> {
        match value {
            Some(v) => {
                let stored = self.parse_key(user, v)?;
                self.keys.insert(user, Arc::new(stored));
            }
            None => {
                self.keys.remove(&user);
            }
        }
        Ok(())
    }

    /// Makes sure each user has a data key in Redis and in `self.keys`: the first replica to
    /// write makes it (`SET NX`), everyone uses what Redis then holds.
    async fn resolve_keys(&self, users: &[UserKey]) -> Result<(), String> {
        if users.is_empty() {
            return Ok(());
        }
        // One pipeline: on a cluster, `send` passes the users of one slot (one user) at a time.
        let mut pipe = redis::pipe();
        for &user in users {
            let fresh = self.new_key(user).map_err(|e| e.to_string())?;
            pipe.cmd("SET")
                .arg(self.key_key(user))
                .arg(fresh.value)
                .arg("NX")
                .ignore();
            pipe.cmd("GET").arg(self.key_key(user));
        }
        let mut conn = self.link.conn();
        let values: Vec<Option<Vec<u8>>> =
            match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("making data keys timed out".to_owned()),
            };
        for (&user, value) in users.iter().zip(values) {
            let value = value.ok_or("a data key vanished as it was made")?;
            self.note_key(user, Some(&value))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn announcement(&self, key: UserKey) -> [u8; 24] {
        let mut m = [0u8; 24];
        m[..8].copy_from_slice(&self.instance);
        m[8..].copy_from_slice(&key.0);
        m
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Refuses at once when Redis is known to be down.
    fn check_up(&self) -> Result<(), StateError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(StateError::Unavailable(format!(
                "redis at {} does not answer",
                self.addr
            )))
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(redis = %self.addr, "redis answers again");
        }
    }

    /// After MOVED or ASK (the cluster serves a user's slot elsewhere and the client's map of
    /// slots is behind it: a redirect inside a pipeline is not always followed), reads the
    /// map again at once rather than after a streak of failures (still at most once per
    /// [`conn::RECONNECT_EVERY`]). The caller's client retries.
    async fn follow_redirect(&self, e: &redis::RedisError) {
        if e.redirect_node().is_some() {
            self.link.reconnect().await;
        }
    }

    /// Notes a read or write that Redis did not take (not one that only lacked replicas).
    fn note_failure(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_failure.swap(now, Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) > STREAK_GAP_MS {
            self.failing_from.store(now, Ordering::Relaxed);
        }
    }

    /// Whether reads or writes have kept failing for [`conn::RECONNECT_EVERY`], up to now.
    fn failing_long(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_failure.load(Ordering::Relaxed);
        let from = self.failing_from.load(Ordering::Relaxed);
        last != 0
            && now.saturating_sub(last) <= STREAK_GAP_MS
            && now.saturating_sub(from) >= conn::RECONNECT_EVERY.as_millis() as u64
    }

    fn mark_down(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(redis = %self.addr, error = %why, "redis does not answer");
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    /// Makes sure the user is in the cache: read from Redis if not. A user Redis does not
    /// know gets an empty entry too, so that rankings for anonymous users do not ask Redis
    /// each time.
    async fn load_user(&self, map: &UserMap, key: UserKey) -> Result<Load, StateError> {
        for _ in 0..LOAD_ATTEMPTS {
            if map.contains(key) {
                return Ok(Load::Present);
            }
            self.check_up()?;
            match self.read(map, key).await? {
                Loaded::Inserted => return Ok(Load::Inserted),
                Loaded::Present => return Ok(Load::Present),
                Loaded::Raced => continue,
            }
        }
        Err(StateError::Unavailable(
            "the user kept changing while being read; retry".into(),
        ))
    }

    /// Reads the user and offers them to the map; `Raced` when they were removed meanwhile.
    async fn read(&self, map: &UserMap, key: UserKey) -> Result<Loaded, StateError> {
        let guard = ReadGuard::enter(self, key);
        // This replica's own writes for the user must be in Redis before it is read.
        let own = self.pending.get(&key).map(|t| *t);
        if let Some(ticket) = own {
            self.wait_settled(ticket).await?;
        }
        let mut conn = self.link.conn();
        // One script: the list and the key it is sealed under, as of one moment.
        let mut eval = redis::cmd("EVAL");
        eval.arg(&self.read_script)
            .arg(2)
            .arg(self.list_key(key))
            .arg(self.key_key(key));
        let read = eval.query_async::<(Vec<Vec<u8>>, Option<Vec<u8>>)>(&mut conn);
        // On a cluster, one user's read failing says nothing of the other masters' users.
        let cluster = self.link.is_cluster();
        let (ops, data_key) = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                self.note_failure();
                self.follow_redirect(&e).await;
                if !cluster {
                    self.mark_down(&e);
                }
                return Err(unavailable("read", &self.addr, e));
            }
            Err(_) => {
                self.note_failure();
                if !cluster {
                    self.mark_down(&"a read timed out");
                }
                return Err(unavailable("read", &self.addr, "timed out"));
            }
        };
        self.mark_up();
        if ops.len() > COMPACT_AT {
            let _ = self.compact.try_send(key);
        }
        self.note_key(key, data_key.as_deref())?;
        let stored = self.keys.get(&key).map(|k| k.clone());
        let state = replay(key, stored.as_deref(), &ops, &self.config)?;
        Ok(map.insert(key, state, false, || guard.current()))
    }

    /// Removes a user from the cache (with their data key); the next access reads Redis
    /// again.
    fn drop_user(&self, map: &UserMap, key: UserKey) {
        self.removing(key);
        map.remove(key);
        self.keys.remove(&key);
    }

    /// Called before a user is removed from the cache: a read of them in flight must not put
    /// what it read back afterwards.
    fn removing(&self, key: UserKey) {
        if let Some(r) = self
            .reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key)
        {
            r.removals += 1;
        }
    }

    /// Removes every user from the cache (after the subscription to changes was lost).
    fn drop_all(&self, map: &UserMap) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.clear();
        self.keys.clear();
    }

    // ---- writes ---------------------------------------------------------------------------

    fn enqueue(&self, make: impl FnOnce(u64) -> Write, key: UserKey) -> Result<u64, StateError> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = q.next;
        let Some(tx) = &q.tx else {
            return Err(StateError::Unavailable("the store is closing".into()));
        };
        tx.send(make(ticket))
            .map_err(|_| StateError::Unavailable("the redis writer has stopped".into()))?;
        q.next += 1;
        self.pending.insert(key, ticket);
        Ok(ticket)
    }

    /// Queues an explicit op of the user (called under the user's map lock: never waits).
    /// Wait for the returned ticket with [`Redis::wait_durable`].
    fn queue_op(&self, key: UserKey, op: &Op) -> Result<u64, StateError> {
        let bytes = op
            .encoded()
            .map_err(|e| StateError::Corrupt(format!("an op does not encode: {e}")))?;
        self.enqueue(
            |ticket| Write::Append {
                ticket,
                key,
                op: bytes,
            },
            key,
        )
    }

    /// Queues the erasure of the user's list, after every write queued before it.
    fn queue_forget(&self, key: UserKey) -> Result<u64, StateError> {
        self.enqueue(|ticket| Write::Forget { ticket, key }, key)
    }

    /// Waits until the writer has settled `last`, whatever the outcome.
    async fn wait_settled(&self, last: u64) -> Result<(), StateError> {
        let mut rx = self.settled.subscribe();
        match tokio::time::timeout(DURABLE_WAIT, rx.wait_for(|s| *s >= last)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StateError::Unavailable(
                "the redis writer has stopped".into(),
            )),
            Err(_) => Err(StateError::Unavailable(format!(
                "redis at {}: writes did not finish in time",
                self.addr
            ))),
        }
    }

    /// Waits until every ticket in `first..=last` is in Redis; fails if any of them failed.
    /// Conservative: another caller's failed ticket inside the range fails this one too (the
    /// client retries; explicit words are idempotent), never the other way round.
    async fn wait_durable(&self, first: u64, last: u64) -> Result<(), StateError> {
        self.wait_settled(last).await?;
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // The ranges are in ticket order and apart: the last one starting at or before `last`
        // is the only one that can reach into `first..=last`.
        let before = failures.partition_point(|f| f.first <= last);
        match before
            .checked_sub(1)
            .map(|i| &failures[i])
            .filter(|f| first <= f.last)
        {
            Some(f) => Err(StateError::Unavailable(format!(
                "redis at {}: {}",
                self.addr, f.why
            ))),
            None => Ok(()),
        }
    }

    fn record_failure(&self, first: u64, last: u64, why: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while failures
            .front()
            .is_some_and(|f| now.duration_since(f.at) > FAILURES_KEPT)
        {
            failures.pop_front();
        }
        match failures.back_mut() {
            // Consecutive failed batches (Redis stays down) make one range.
            Some(f) if f.last + 1 == first => {
                f.last = last;
                f.at = now;
            }
            _ => failures.push_back(Failure {
                first,
                last,
                at: now,
                why,
            }),
        }
    }

    /// The single writer: everything queued goes out in one pipeline, in ticket order.
    async fn write_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Write>,
        map: Weak<UserMap>,
    ) {
        let mut batch: Vec<Write> = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.clear();
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let hi = batch[batch.len() - 1].ticket();
            let mut users: Vec<UserKey> = batch.iter().map(Write::key).collect();
            users.sort_unstable();
            users.dedup();
            let outcomes = if self.is_up() {
                self.send_all(&mut batch).await
            } else {
                vec![(
                    std::mem::take(&mut batch),
                    Err(Failed::down("redis does not answer")),
                )]
            };
            let all_down = outcomes
                .iter()
                .all(|(_, r)| matches!(r, Err(Failed { down: true, .. })));
            let mut failed: Vec<(u64, String)> = Vec::new();
            let mut unsure: Vec<UserKey> = Vec::new();
            for (part, outcome) in &outcomes {
                match outcome {
                    Ok(lengths) => {
                        for (w, len) in part.iter().zip(lengths) {
                            if matches!(w, Write::Append { .. }) && *len > COMPACT_AT as i64 {
                                let _ = self.compact.try_send(w.key());
                            }
                        }
                    }
                    Err(f) => {
                        if f.down {
                            self.note_failure();
                        }
                        failed.extend(part.iter().map(|w| (w.ticket(), f.why.clone())));
                        unsure.extend(part.iter().map(Write::key));
                    }
                }
            }
            if all_down {
                if let Some((_, Err(f))) = outcomes.first() {
                    self.mark_down(&f.why);
                }
            } else {
                self.mark_up();
            }
            if !failed.is_empty() {
                failed.sort_unstable_by_key(|(t, _)| *t);
                tracing::warn!(tickets = failed.len(), error = %failed[0].1, "writes to redis failed");
                for (ticket, why) in failed {
                    self.record_failure(ticket, ticket, why);
                }
                unsure.sort_unstable();
                unsure.dedup();
                // What these users have in memory may not be what Redis has: read again.
                if let Some(map) = map.upgrade() {
                    for &key in &unsure {
                        self.drop_user(&map, key);
                    }
                }
                self.unannounced
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(unsure);
            }
            batch = outcomes.into_iter().flat_map(|(part, _)| part).collect();
            for key in &users {
                self.pending.remove_if(key, |_, t| *t <= hi);
            }
            self.settled.send_replace(hi);
        }
    }

    /// Sends a batch: as one pipeline to one server; to a cluster, one pipeline per user (a
    /// pipeline must stay within one slot), all at once, so that a master being failed over
    /// fails only its own users' writes. Answers each part with its outcome.
    async fn send_all(self: &Arc<Self>, batch: &mut Vec<Write>) -> Vec<(Vec<Write>, Sent)> {
        let batch = std::mem::take(batch);
        if !self.link.is_cluster() {
            let mut users: Vec<UserKey> = batch.iter().map(Write::key).collect();
            users.sort_unstable();
            users.dedup();
            let sent = self.send(&batch, &users).await;
            return vec![(batch, sent)];
        }
        let mut parts: HashMap<UserKey, Vec<Write>> = HashMap::new();
        for w in batch {
            parts.entry(w.key()).or_default().push(w);
        }
        let mut sending = JoinSet::new();
        for (user, part) in parts {
            let redis = self.clone();
            sending.spawn(async move {
                let sent = redis.send(&part, &[user]).await;
                (part, sent)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = sending.join_next().await {
            // `send` does not panic; a part lost to a panic would leave tickets unsettled.
            outcomes.push(done.expect("a write task panicked"));
        }
        outcomes
    }

    /// One pipeline: the writes in order, each op sealed under its user's data key (made
    /// first if the user has none), then WAIT for `state.redis_wait_replicas` replicas, then
    /// one announcement per user. Returns the length of
    /// each list after its write. A write whose key changed under it (the user was erased
    /// meanwhile, or another replica made their key first) is sealed anew under the key Redis
    /// now holds, and sent again after the others.
    async fn send(&self, batch: &[Write], users: &[UserKey]) -> Sent {
        let mut lengths = vec![0i64; batch.len()];
        let mut todo: Vec<usize> = (0..batch.len()).collect();
        for _ in 0..RESEAL_ATTEMPTS {
            let mut missing: Vec<UserKey> = todo
                .iter()
                .filter_map(|&i| match &batch[i] {
                    Write::Append { key, .. } if !self.keys.contains_key(key) => Some(*key),
                    _ => None,
                })
                .collect();
            missing.sort_unstable();
            missing.dedup();
            self.resolve_keys(&missing).await.map_err(Failed::down)?;
            let mut pipe = redis::pipe();
            // A user evicted from memory meanwhile takes their cached key with them (`evict`):
            // their writes, this one and every later one of theirs (they stay in order), wait
            // for the next attempt, which fetches the key again.
            let (mut sent, mut again) = (Vec::with_capacity(todo.len()), Vec::new());
            let mut deferred: Vec<UserKey> = Vec::new();
            for &i in &todo {
                let user = batch[i].key();
                if deferred.contains(&user) {
                    again.push(i);
                    continue;
                }
                match self.add_write(&mut pipe, &batch[i]) {
                    Ok(()) => sent.push(i),
                    Err(KeyMissing) => {
                        deferred.push(user);
                        again.push(i);
                    }
                }
            }
            if sent.is_empty() {
                todo = again;
                continue;
            }
            if self.wait_replicas > 0 {
                pipe.cmd("WAIT")
                    .arg(self.wait_replicas)
                    .arg(WAIT_TIMEOUT_MS);
            }
            let announcements: Vec<[u8; 24]> =
                users.iter().map(|&key| self.announcement(key)).collect();
            // On one server the announcements go in the same pipeline, after the writes. On a
            // cluster they cannot (the client routes PUBLISH by its channel, another slot):
            // they follow once the writes are in.
            let cluster = self.link.is_cluster();
            if !cluster {
                for announcement in &announcements {
                    pipe.cmd("PUBLISH")
                        .arg(&self.channel)
                        .arg(&announcement[..])
                        .ignore();
                }
            }
            let mut conn = self.link.conn();
            let mut answers =
                match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<Vec<i64>>(&mut conn))
                    .await
                {
                    Ok(Ok(answers)) => answers,
                    Ok(Err(e)) => {
                        self.follow_redirect(&e).await;
                        return Err(Failed::down(e));
                    }
                    Err(_) => return Err(Failed::down("a write timed out")),
                };
            if self.wait_replicas > 0 {
                let held = answers.pop().unwrap_or(0);
                if held < i64::from(self.wait_replicas) {
                    // Redis answers; its replicas do not: not a reason to refuse every user.
                    return Err(Failed {
                        why: format!(
                            "only {held} of the {} replicas state.redis_wait_replicas asks \
                             for acknowledged a write within {WAIT_TIMEOUT_MS} ms",
                            self.wait_replicas
                        ),
                        down: false,
                    });
                }
            }
            if cluster {
                let messages: Vec<&[u8]> = announcements.iter().map(|a| &a[..]).collect();
                self.link
                    .publish(&self.channel, &messages, WRITE_TIMEOUT)
                    .await
                    .map_err(|e| Failed::down(format!("announcing a write: {e}")))?;
            }
            for (&i, answer) in sent.iter().zip(answers) {
                if answer < 0 {
                    self.keys.remove(&batch[i].key());
                    again.push(i);
                } else {
                    lengths[i] = answer;
                }
            }
            if again.is_empty() {
                return Ok(lengths);
            }
            // In the batch's order, whatever sent each of them back.
            again.sort_unstable();
            todo = again;
        }
        Err(Failed::down(
            "a user's data key kept changing while their words were written",
        ))
    }

    /// Adds one write to a pipeline: the append (sealed under the user's key, only while it
    /// is theirs) or the erasure. An append whose user's key is no longer cached (evicted
    /// since it was resolved) is not added.
    fn add_write(&self, pipe: &mut redis::Pipeline, write: &Write) -> Result<(), KeyMissing> {
        match write {
            Write::Append { key, op, .. } => {
                let stored = self.keys.get(key).map(|k| k.clone()).ok_or(KeyMissing)?;
                pipe.cmd("EVAL")
                    .arg(&self.append_script)
                    .arg(2)
                    .arg(self.list_key(*key))
                    .arg(self.key_key(*key))
                    .arg(&stored.value)
                    .arg(seal(*key, &stored, op));
            }
            // The list and the key in one command: no reader sees one without the other.
            Write::Forget { key, .. } => {
                pipe.cmd("DEL")
                    .arg(self.list_key(*key))
                    .arg(self.key_key(*key));
            }
        }
        Ok(())
    }

    // ---- invalidation ---------------------------------------------------------------------

    /// Listens to the other replicas' announcements, and subscribes again when the
    /// subscription is lost (then drops the whole cache: anything may have changed meanwhile).
    async fn subscribe_loop(self: Arc<Self>, first: redis::aio::PubSub, map: Weak<UserMap>) {
        let mut subscription = Some(first);
        loop {
            let pubsub = match subscription.take() {
                Some(s) => s,
                None => match self.link.subscribe(&self.channel).await {
                    Ok(s) => {
                        let Some(map) = map.upgrade() else { return };
                        self.drop_all(&map);
                        tracing::info!(
                            redis = %self.addr,
                            "subscribed again to changes; dropped the cached users"
                        );
                        s
                    }
                    Err(_) => {
                        tokio::time::sleep(RESUBSCRIBE_WAIT).await;
                        continue;
                    }
                },
            };
            let (mut sink, mut stream) = pubsub.split();
            let mut ping = tokio::time::interval(SUBSCRIPTION_PING);
            ping.tick().await;
            loop {
                tokio::select! {
                    message = stream.next() => {
                        let Some(message) = message else { break };
                        let Some(map) = map.upgrade() else { return };
                        self.on_announcement(&map, message.get_payload_bytes());
                    }
                    _ = ping.tick() => {
                        let pong = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>());
                        if !matches!(pong.await, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            tracing::warn!(
                redis = %self.addr,
                "lost the subscription to changes; cached users may be stale until it is back"
            );
        }
    }

    fn on_announcement(&self, map: &UserMap, payload: &[u8]) {
        let Some((instance, key)) = payload.split_first_chunk::<8>() else {
            return;
        };
        let Ok(key) = <[u8; 16]>::try_from(key) else {
            return;
        };
        if *instance != self.instance {
            self.drop_user(map, UserKey(key));
        }
    }

    // ---- health ---------------------------------------------------------------------------

    /// Pings Redis: notices when it goes away and when it is back, and then announces the
    /// users whose writes failed.
    async fn watch_loop(self: Arc<Self>) {
        loop {
            let wait = if self.is_up() {
                PING_WHILE_UP
            } else {
                PING_WHILE_DOWN
            };
            tokio::time::sleep(wait).await;
            match self.link.ping(PING_TIMEOUT).await {
                Ok(()) => self.mark_up(),
                Err(e) => {
                    self.mark_down(&e);
                    continue;
                }
            }
            // Redis answers, yet reads or writes keep failing: on a cluster, the client's map
            // of slots may be stuck behind a failover; a connection made anew reads it again.
            if self.failing_long() {
                self.link.reconnect().await;
            }
            let users: Vec<UserKey> = self
                .unannounced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            if users.is_empty() {
                continue;
            }
            let announcements: Vec<[u8; 24]> =
                users.iter().map(|&key| self.announcement(key)).collect();
            let messages: Vec<&[u8]> = announcements.iter().map(|a| &a[..]).collect();
            let sent = self
                .link
                .publish(&self.channel, &messages, WRITE_TIMEOUT)
                .await;
            if sent.is_err() {
                self.unannounced
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(users);
            }
        }
    }

    // ---- compaction -----------------------------------------------------------------------

    /// Replaces long lists by one `Restore` each.
    async fn compact_loop(self: Arc<Self>, mut rx: mpsc::Receiver<UserKey>) {
        while let Some(key) = rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, self.compact(key, false)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "compaction abandoned"),
                Err(_) => tracing::debug!("compaction timed out"),
            }
        }
    }

    /// Replaces the user's list by one sealed `Restore` (and the word times) when it is long,
    /// or, with `migrate`, whenever it holds anything: a namespace of an older format is
    /// rewritten whole (elements of format 2 in clear get sealed; a `Restore` of format 3,
    /// read in either layout, is written again in format 4). Answers whether the
    /// list is now as wanted (false: it changed meanwhile, try again later).
    async fn compact(&self, key: UserKey, migrate: bool) -> Result<bool, String> {
        let config = &self.config;
        let mut conn = self.link.conn();
        let (list, key_key) = (self.list_key(key), self.key_key(key));
        let (ops, stored_value): (Vec<Vec<u8>>, Option<Vec<u8>>) = redis::pipe()
            .cmd("LRANGE")
            .arg(&list)
            .arg(0)
            .arg(-1)
            .cmd("GET")
            .arg(&key_key)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if !(ops.len() > COMPACT_AT || (migrate && !ops.is_empty())) {
            // Short and sealed already.
            return Ok(true);
        }
        let stored = stored_value
            .as_deref()
            .map(|v| self.parse_key(key, v))
            .transpose()
            .map_err(|e| e.to_string())?;
        // A history that does not decode is left as it is (reads report it).
        let mut state = replay(key, stored.as_ref(), &ops, config).map_err(|e| e.to_string())?;
        state.expire(crate::time::now_ms(), config);
        let mut new_key: Vec<u8> = Vec::new();
        let mut elements: Vec<Vec<u8>> = Vec::new();
        if !state.is_empty() {
            // The user's key, or a new one for a history written in clear.
            let sealing = match stored {
                Some(k) => k,
                None => {
                    let fresh = self.new_key(key).map_err(|e| e.to_string())?;
                    new_key.clone_from(&fresh.value);
                    fresh
                }
            };
            // A Restore does not carry the word times: they follow it as an op of their own.
            let words =
                postcard::to_allocvec(&Op::Words(state.words())).map_err(|e| e.to_string())?;
            let restore =
                postcard::to_allocvec(&Op::Restore(Box::new(state))).map_err(|e| e.to_string())?;
            elements.push(seal(key, &sealing, &restore));
            elements.push(seal(key, &sealing, &words));
        }
        let done: i64 = redis::cmd("EVAL")
            .arg(&self.compact_script)
            .arg(2)
            .arg(&list)
            .arg(&key_key)
            .arg(ops.len())
            .arg(stored_value.unwrap_or_default())
            .arg(new_key)
            .arg(elements.len())
            .arg(&elements)
            .arg(&ops)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if done == 0 {
            tracing::debug!("compaction met a concurrent change; left for later");
            return Ok(false);
        }
        // Another replica may hold the user with their old list: it reads again.
        self.keys.remove(&key);
        Ok(true)
    }
}

/// The master key the configuration names. The shared backend has no key store of its own on
/// disk, so the key must be given (`TACTFUL_MASTER_KEY_FILE` or `TACTFUL_MASTER_KEY`), the
/// same on every replica.
fn load_master(config: &StateConfig) -> Result<Arc<dyn KeyWrap>, StateError> {
    let source = config.keys.master.as_ref().ok_or_else(|| {
        StateError::Key(
            "the redis backend needs a master key, the same on every replica: set \
             TACTFUL_MASTER_KEY_FILE (or state.master_key_file) to a file holding 64 hex digits \
             (e.g. `openssl rand -hex 32`), mounted from a secret"
                .to_owned(),
        )
    })?;
    Ok(Arc::new(MasterKey::load(source).map_err(StateError::Key)?))
}

/// Agrees on the master key with the namespace: the first replica stores a value sealed
/// under its key; the others must open it.
async fn check_master(
    conn: &mut Conn,
    namespace: &str,
    master: &dyn KeyWrap,
    addr: &str,
) -> Result<(), StateError> {
    let check_key = format!("{namespace}:master-check");
    let stored: Option<Vec<u8>> = tokio::time::timeout(READ_TIMEOUT, async {
        redis::cmd("SET")
            .arg(&check_key)
            .arg(master.check_value())
            .arg("NX")
            .exec_async(&mut *conn)
            .await?;
        redis::cmd("GET").arg(&check_key).query_async(conn).await
    })
    .await
    .map_err(|_| unavailable("read the master key check", addr, "timed out"))?
    .map_err(|e| unavailable("read the master key check", addr, e))?;
    match stored {
        Some(check) if master.matches(&check) => Ok(()),
        _ => Err(StateError::Key(format!(
            "the master key does not open the data keys in redis namespace {namespace}: it was \
             made with another key. Give every replica the same master key (after a rotation, \
             the new one)"
        ))),
    }
}

impl Backend for Redis {
    /// Redis caches users it does not know too (`create` changes nothing).
    fn load<'a>(
        &'a self,
        map: &'a UserMap,
        key: UserKey,
        _create: bool,
    ) -> BoxFuture<'a, Result<Load, StateError>> {
        Box::pin(self.load_user(map, key))
    }

    /// A miss right after a load means the user was evicted or invalidated meanwhile: what
    /// the map would have held may be stale already, so the read loads again.
    fn read_cold(&self, _key: UserKey) -> Result<Cold, StateError> {
        Ok(Cold::Reload)
    }

    fn check_writable(&self) -> Result<(), StateError> {
        self.check_up()
    }

    /// Counters stay in this replica's memory; explicit words go to Redis.
    fn append(&self, key: UserKey, op: &Op) -> Result<Ticket, StateError> {
        if op.is_explicit() {
            self.queue_op(key, op).map(Ticket::at)
        } else {
            Ok(Ticket::NONE)
        }
    }

    fn durable(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.wait_durable(ticket.first, ticket.last))
    }

    /// The user's list is deleted after every write queued before (a read that starts after
    /// the removal waits for the deletion), and the other replicas are told to drop the user.
    fn forget(&self, map: &UserMap, key: UserKey) -> Result<Ticket, StateError> {
        self.check_up()?;
        let ticket = self.queue_forget(key)?;
        self.drop_user(map, key);
        Ok(Ticket::at(ticket))
    }

    /// Redis holds every explicit word already, so none is kept back (this replica's
    /// counters for the evicted are lost, as counters may be); each removal is told to the
    /// reads in flight, so that none can resurrect the user.
    fn evict(&self, map: &UserMap, want: usize) -> usize {
        map.evict_each(want, |key| {
            self.removing(key);
            self.keys.remove(&key);
        })
    }

    /// Stops taking writes (the writer finishes what is queued) and stops the other tasks.
    fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).tx = None;
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Registers a read of one user; tells whether a removal (or a drop of the whole cache)
/// happened since.
struct ReadGuard<'a> {
    redis: &'a Redis,
    key: UserKey,
    removals: u64,
    epoch: u64,
}

impl<'a> ReadGuard<'a> {
    fn enter(redis: &'a Redis, key: UserKey) -> Self {
        let epoch = redis.epoch.load(Ordering::SeqCst);
        let mut reading = redis.reading.lock().unwrap_or_else(|e| e.into_inner());
        let r = reading.entry(key).or_default();
        r.readers += 1;
        Self {
            redis,
            key,
            removals: r.removals,
            epoch,
        }
    }

    /// Called with the user's map shard locked, just before inserting what was read.
    fn current(&self) -> bool {
        self.redis.epoch.load(Ordering::SeqCst) == self.epoch
            && self
                .redis
                .reading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&self.key)
                .is_some_and(|r| r.removals == self.removals)
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let mut reading = self.redis.reading.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = reading.get_mut(&self.key) {
            r.readers -= 1;
            if r.readers == 0 {
                reading.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_history_is_the_state_it_built_sealed_or_in_clear() {
        use crate::state::{Event, EventKind};
        let cfg = StateConfig::default();
        let user = UserKey([3; 16]);
        let key = StoredKey {
            id: KeyId(77),
            key: DataKey::random().unwrap(),
            value: Vec::new(),
        };
        let mut state = UserState::default();
        let (mut sealed, mut clear) = (Vec::new(), Vec::new());
        for (kind, brand) in [
            (EventKind::BlockBrand, 1),
            (EventKind::BlockBrand, 2),
            (EventKind::UnblockBrand, 1),
        ] {
            let mut e = Event::new(kind, 10);
            e.brand_id = brand;
            let op = Op::Event(e);
            op.apply(&mut state, &cfg).unwrap();
            let plain = postcard::to_allocvec(&op).unwrap();
            sealed.push(seal(user, &key, &plain));
            clear.push(plain);
        }
        assert_eq!(replay(user, Some(&key), &sealed, &cfg).unwrap(), state);
        // Format 2's elements, in clear, still read (with or without a key).
        assert_eq!(replay(user, None, &clear, &cfg).unwrap(), state);
        let restore = postcard::to_allocvec(&Op::Restore(Box::new(state.clone()))).unwrap();
        let words = postcard::to_allocvec(&Op::Words(state.words())).unwrap();
        let compacted = [seal(user, &key, &restore), seal(user, &key, &words)];
        assert_eq!(replay(user, Some(&key), &compacted, &cfg).unwrap(), state);
        assert!(replay(user, Some(&key), &[vec![0xff; 3]], &cfg).is_err());
        // Without its key, under another, or moved to another user: refused, never misread.
        assert!(replay(user, None, &sealed, &cfg).is_err());
        let other = StoredKey {
            id: KeyId(77),
            key: DataKey::random().unwrap(),
            value: Vec::new(),
        };
        assert!(replay(user, Some(&other), &sealed, &cfg).is_err());
        assert!(replay(UserKey([4; 16]), Some(&key), &sealed, &cfg).is_err());
    }
}

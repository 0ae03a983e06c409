//! Per-user state: a concurrent map from user key to [`UserState`] (the hot cache every
//! ranking reads), kept durable by a backend and bounded by a memory cap.
//!
//! How it is built (arrows point to what a file uses; nothing below `store` uses it):
//! - `store` ([`UserStore`], the API the rest of the crate sees) → `map`, `backend`, `keeper`.
//! - `map`: the users in memory, their accounting and eviction order (fields private).
//! - `backend`: the [`Ticket`] and the `Backend` trait the store and the keeper reach every
//!   backend through; `memory`, `disk` (with `wal` and `snapshot`) and `redis` implement it,
//!   and this file opens the one the settings name (the only place naming them).
//! - `keeper`: the background thread that snapshots, expires and evicts → `map`, `backend`.
//!
//! - `crypt` (the AEAD, data keys, the master key and the `KeyWrap` seam for a KMS) and `vault`
//!   (the disk backend's key store, in a directory of its own): every record a backend writes
//!   about a user is sealed under that user's key, and erasure destroys the key. `migrate`
//!   (with `legacy`, the old decoders) turns a data directory of format 2 into the current one.
//!
//! The backends:
//! - `memory`: nothing leaves the process (tests, benchmarks, throwaway runs).
//! - `disk` (the default): every change goes to a write-ahead log before it is acknowledged
//!   (explicit words fsynced first, counters in batches); the keeper has it write snapshots
//!   and truncate the log, evicts the coldest users past the memory cap, and an evicted user
//!   is read back from the snapshot on next access.
//! - `redis`: the user's explicit words are written through to Redis, shared by replicas;
//!   counters stay per replica. The map is a cache: a change made on another replica drops
//!   the user from it (announced over pub/sub), and the next access reads Redis again.
//!
//! Writers lock one shard briefly; a ranking copies what it needs into a [`UserView`] and
//! scores with no lock held.
//!
//! Must not: wait for I/O while holding a shard (the log append only copies bytes), keep
//! anything that cannot be bounded per user (every list has a cap), or name a user in clear
//! outside the process (see [`key`]).

mod backend;
pub mod crypt;
pub mod decay;
mod disk;
pub mod event;
mod keeper;
pub mod key;
mod legacy;
pub mod lock;
mod map;
mod memory;
mod migrate;
pub mod op;
mod pack;
mod redis;
mod settings;
pub mod snapshot;
mod store;
pub mod user;
pub mod vault;
pub mod wal;

use std::path::Path;

pub use backend::{DATA_FORMAT, Ticket};
pub use disk::{DEFAULT_MASTER_KEY_FILE, default_key_dir, describe_key_store, rotate_master_key};
pub use event::{Event, EventError, EventKind};
pub use key::UserKey;
pub use op::Op;
pub use redis::DEFAULT_NAMESPACE as DEFAULT_REDIS_NAMESPACE;

/// Whether `keys` can hold the key store of the data directory `data`: apart from it, neither
/// inside the other. The message says why not.
pub fn check_key_dir(data: &Path, keys: &Path) -> Result<(), String> {
    disk::check_apart(data, keys).map_err(|e| match e {
        StateError::Key(m) => m,
        other => other.to_string(),
    })
}
pub use settings::{
    InvalidSetting, KeyConfig, RedisTarget, RedisTls, StateBackend, StateConfig, StateSettings,
};
pub use store::{Profile, RecordError, Stats, UserStore};
pub use user::{InterestChange, Undo, UserState};

use backend::Opened;

// The one place that names the concrete backends: the store opens them through these and
// knows them afterwards only as a `dyn Backend`.

fn open_memory() -> Opened {
    memory::Memory::open()
}

/// Opens the backend `at` names, blocking (the disk's recovery reads the whole log). Redis
/// needs the runtime: [`open_backend_async`].
fn open_backend(config: &StateConfig, at: &StateBackend) -> Result<Opened, StateError> {
    match at {
        StateBackend::Memory => Ok(open_memory()),
        StateBackend::Disk(dir) => disk::Disk::open(dir, config),
        StateBackend::Redis(url) => Err(StateError::Unavailable(format!(
            "{url}: the redis backend is opened with UserStore::open_async"
        ))),
    }
}

/// Opens any backend: Redis under the default namespace; the others on a blocking thread.
async fn open_backend_async(config: &StateConfig, at: &StateBackend) -> Result<Opened, StateError> {
    match at {
        StateBackend::Redis(url) => open_redis(config, url, DEFAULT_REDIS_NAMESPACE).await,
        other => {
            let (config, other) = (config.clone(), other.clone());
            tokio::task::spawn_blocking(move || open_backend(&config, &other))
                .await
                .map_err(|e| StateError::Unavailable(e.to_string()))?
        }
    }
}

async fn open_redis(
    config: &StateConfig,
    url: &str,
    namespace: &str,
) -> Result<Opened, StateError> {
    redis::Redis::open(url, namespace, config).await
}

/// Re-wraps every data key in the Redis namespace under `new` (see `redis.rs`): the shared
/// backend's rotation. The replicas must be stopped; an interrupted run can be run again.
pub async fn rotate_redis_master_key(
    config: &StateConfig,
    url: &str,
    namespace: &str,
    new: &crypt::MasterKeySource,
) -> Result<usize, StateError> {
    redis::rotate_master(url, namespace, config, new).await
}

/// Why the state store cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("damaged state: {0}")]
    Corrupt(String),
    #[error("user state is unavailable: {0}")]
    Unavailable(String),
    /// The key store or the master key cannot be used: missing, wrong, or in the wrong
    /// place. A configuration error: the server does not start (exit code 64).
    #[error("encryption keys: {0}")]
    Key(String),
    /// Another process holds the data directory ([`lock`]).
    #[error("{dir} is in use by another process ({}): one process at a time owns a data directory; stop it first, or give this one another --data-dir", holder.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}")))]
    Locked { dir: String, holder: Option<u32> },
}

impl StateError {
    pub fn io(path: impl AsRef<Path>, e: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::{DataDimension, DimensionSet};

    /// Snapshots expire counters by the wall clock, so tests live in the present.
    static NOW: std::sync::LazyLock<i64> = std::sync::LazyLock::new(crate::time::now_ms);

    fn block(brand: u64) -> Event {
        let mut e = Event::new(EventKind::BlockBrand, *NOW);
        e.brand_id = brand;
        e
    }

    async fn blocked(store: &UserStore, user: &str, brand: u64) -> bool {
        store
            .view(store.key(user), *NOW, DimensionSet::EMPTY, false)
            .await
            .unwrap()
            .is_brand_blocked(brand)
    }

    #[tokio::test]
    async fn a_recorded_event_is_visible_to_the_next_view() {
        let store = UserStore::in_memory(StateConfig::default());
        let t = store
            .record(store.key("u1"), &block(42), *NOW)
            .await
            .unwrap();
        store.durable(t).await.unwrap();
        assert!(blocked(&store, "u1", 42).await);
        assert!(!blocked(&store, "u2", 42).await);
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn invalid_events_change_nothing() {
        let store = UserStore::in_memory(StateConfig::default());
        let e = Event::new(EventKind::BlockBrand, 1);
        match store.record(store.key("u1"), &e, 1).await.unwrap_err() {
            RecordError::Invalid(err) => assert_eq!(err.field, "brand_id"),
            other => panic!("{other:?}"),
        }
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn stored_consent_and_request_override_combine_strictly() {
        let store = UserStore::in_memory(StateConfig::default());
        let u = store.key("u");
        store
            .set_consent(u, &[(DataDimension::Location, true)], None, &[], 5)
            .await
            .unwrap();
        let v = store.view(u, 5, DimensionSet::EMPTY, false).await.unwrap();
        assert!(v.consent.allows(DataDimension::Location));
        let v = store
            .view(u, 5, DimensionSet::of([DataDimension::Location]), false)
            .await
            .unwrap();
        assert!(!v.consent.allows(DataDimension::Location));
        let p = store.profile(u, 5).await.unwrap();
        assert!(p.known && p.view.consent.allows(DataDimension::Location));
        assert!(!store.profile(store.key("other"), 5).await.unwrap().known);
    }

    fn at(kind: EventKind, brand: u64, at_ms: i64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.brand_id = brand;
        e
    }

    #[tokio::test]
    async fn blocks_and_unblocks_resolve_by_when_the_user_said_them() {
        let dir = tempfile::tempdir().unwrap();
        let now = *NOW;
        {
            let store = disk(dir.path());
            let u = store.key("u");
            // BLOCK at t-1 s arrives first, a delayed UNBLOCK said at t-5 s arrives second.
            for e in [
                at(EventKind::BlockBrand, 8, now - 1000),
                at(EventKind::UnblockBrand, 8, now - 5000),
                // The other way round for brand 9: the newer unblock wins.
                at(EventKind::UnblockBrand, 9, now - 1000),
                at(EventKind::BlockBrand, 9, now - 5000),
                // Ties go to the later arrival.
                at(EventKind::BlockBrand, 10, now - 1000),
                at(EventKind::UnblockBrand, 10, now - 1000),
            ] {
                let t = store.record(u, &e, now).await.unwrap();
                store.durable(t).await.unwrap();
            }
            assert!(
                blocked(&store, "u", 8).await,
                "an older unblock lost to a newer block"
            );
            assert!(
                !blocked(&store, "u", 9).await,
                "an older block lost to a newer unblock"
            );
            assert!(
                !blocked(&store, "u", 10).await,
                "a tie goes to the later arrival"
            );
            // The times survive a snapshot: a block older than the unblock of 9 still loses.
            store.snapshot().unwrap();
            let t = store
                .record(u, &at(EventKind::BlockBrand, 9, now - 2000), now)
                .await
                .unwrap();
            store.durable(t).await.unwrap();
            assert!(!blocked(&store, "u", 9).await);
            // An unblock from the preference centre is the newest word.
            store.undo(u, Undo::BlockedBrand(8), now).await.unwrap();
            let t = store
                .record(u, &at(EventKind::BlockBrand, 8, now - 500), now)
                .await
                .unwrap();
            store.durable(t).await.unwrap();
            assert!(!blocked(&store, "u", 8).await);
        }
        // Restarted (snapshot and log), the same.
        let store = disk(dir.path());
        let u = store.key("u");
        assert!(!blocked(&store, "u", 8).await);
        assert!(!blocked(&store, "u", 9).await);
        let t = store
            .record(u, &at(EventKind::BlockBrand, 9, now - 3000), now)
            .await
            .unwrap();
        store.durable(t).await.unwrap();
        assert!(
            !blocked(&store, "u", 9).await,
            "the times survive a restart"
        );
    }

    #[tokio::test]
    async fn profile_changes_that_change_nothing_create_no_user() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = disk(dir.path());
            let u = store.key("nobody");
            store.undo(u, Undo::BlockedBrand(3), *NOW).await.unwrap();
            store.undo(u, Undo::NotInterested(3), *NOW).await.unwrap();
            store.set_consent(u, &[], None, &[], *NOW).await.unwrap();
            store
                .update_interests(
                    u,
                    vec![InterestChange {
                        kind: crate::rank::user::TagKind::Category,
                        id: 5,
                        weight: 0.0,
                        label: None,
                    }],
                    *NOW,
                )
                .await
                .unwrap();
            assert!(!store.profile(u, *NOW).await.unwrap().known);
            assert!(store.is_empty());
            // A refusal is still a refusal.
            let too_many: Vec<(u64, bool)> = (1..=65).map(|c| (c, true)).collect();
            let err = store
                .set_consent(u, &[], None, &too_many, *NOW)
                .await
                .unwrap_err();
            let RecordError::Invalid(err) = err else {
                panic!("{err:?}")
            };
            assert_eq!(err.field, "sensitive_categories");
            assert!(
                err.message.contains("65 sensitive categories"),
                "{}",
                err.message
            );
            assert!(err.message.contains("has 0 now"), "{}", err.message);
            // A real change does create the user.
            store
                .set_consent(u, &[(DataDimension::Location, true)], None, &[], *NOW)
                .await
                .unwrap();
            assert!(store.profile(u, *NOW).await.unwrap().known);
            store.forget(u).await.unwrap();
            store.undo(u, Undo::BlockedBrand(3), *NOW).await.unwrap();
        }
        let store = disk(dir.path());
        assert!(
            !store
                .profile(store.key("nobody"), *NOW)
                .await
                .unwrap()
                .known
        );
        assert!(store.is_empty());
    }

    /// The data directory of a test's `root`: its key store is beside it (`data-keys`), so
    /// both go with the root.
    fn data(root: &Path) -> std::path::PathBuf {
        root.join("data")
    }

    fn disk(root: &Path) -> UserStore {
        UserStore::open(StateConfig::default(), &StateBackend::Disk(data(root))).unwrap()
    }

    #[tokio::test]
    async fn explicit_words_survive_a_restart_with_and_without_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = disk(dir.path());
            for b in 1..=3 {
                let t = store
                    .record(store.key("alice"), &block(b), *NOW)
                    .await
                    .unwrap();
                store.durable(t).await.unwrap();
            }
            store.snapshot().unwrap();
            let mut unblock = block(2);
            unblock.kind = EventKind::UnblockBrand;
            let t = store
                .record(store.key("alice"), &unblock, *NOW)
                .await
                .unwrap();
            store.durable(t).await.unwrap();
            let t = store
                .record(store.key("bob"), &block(9), *NOW)
                .await
                .unwrap();
            store.durable(t).await.unwrap();
            // Dropped without a clean close: what a crash leaves (the log and a snapshot).
            store.abandon();
        }
        let store = disk(dir.path());
        assert!(blocked(&store, "alice", 1).await && blocked(&store, "alice", 3).await);
        assert!(
            !blocked(&store, "alice", 2).await,
            "the undo after the snapshot holds"
        );
        assert!(blocked(&store, "bob", 9).await);
    }

    #[tokio::test]
    async fn replay_after_a_snapshot_does_not_count_twice() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StateConfig::default();
        // Older than the ignore window, so each one counts as ignored at NOW; a second apart,
        // since one item shown twice in the same second is one impression.
        let seen = |i: i64| {
            let mut e = Event::new(EventKind::Impression, *NOW - 10 * 60 * 1000 + i * 1000);
            e.item_id = 5;
            e
        };
        {
            let store = disk(dir.path());
            let u = store.key("carol");
            for i in 0..3 {
                store.record(u, &seen(i), *NOW).await.unwrap();
            }
            store.snapshot().unwrap();
            store.record(u, &seen(3), *NOW).await.unwrap();
            // Make the counter durable, then crash.
            let t = store.record(u, &block(1), *NOW).await.unwrap();
            store.durable(t).await.unwrap();
            store.abandon();
        }
        let store = disk(dir.path());
        let u = store.key("carol");
        let n = store
            .view(u, *NOW, DimensionSet::EMPTY, false)
            .await
            .unwrap()
            .ignored_impressions(5);
        // Four, decayed over ten minutes (a day's half-life): not seven or eight.
        assert!(
            (n - 4.0).abs() < 0.05,
            "{n} ignored impressions, expected 4"
        );
        assert_eq!(store.config(), &cfg);
    }

    #[tokio::test]
    async fn evicted_users_come_back_with_their_words() {
        let dir = tempfile::tempdir().unwrap();
        // The key store holds some 80 bytes per user of it: 400 KiB for 5,000 users.
        let cap = 1 << 20;
        let cfg = StateConfig {
            memory_cap_bytes: cap,
            ..StateConfig::default()
        };
        let store = UserStore::open(cfg, &StateBackend::Disk(data(dir.path()))).unwrap();
        for i in 0..5_000u64 {
            let t = store
                .record(store.key(&format!("user-{i}")), &block(i + 1), *NOW)
                .await
                .unwrap();
            if i % 500 == 0 {
                store.durable(t).await.unwrap();
            }
        }
        // The keeper snapshots and evicts in the background; wait until it has.
        for _ in 0..200 {
            if store.stats().evicted_total > 0 && store.stats().bytes <= cap {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let stats = store.stats();
        assert!(stats.evicted_total > 0, "{stats:?}");
        assert!(store.len() < 5_000);
        for i in (0..5_000u64).step_by(97) {
            let u = format!("user-{i}");
            assert!(blocked(&store, &u, i + 1).await, "{u} lost its block");
        }
    }

    /// Files of `from` (all but the lock) copied to `to`: what a crash would leave.
    /// Copies a directory's files (not its lock), as a crash or a backup would leave them.
    fn copy_as_crashed(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n != lock::LOCK_FILE) {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_failed_snapshot_is_counted_and_the_next_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = disk(dir.path());
        let t = store.record(store.key("u"), &block(7), *NOW).await.unwrap();
        store.durable(t).await.unwrap();
        // A directory where the snapshot's temporary file must go: creating it fails, as on
        // a full or broken volume.
        let blockers: Vec<_> = (0..64u64)
            .map(|seq| data(dir.path()).join(format!("snapshot-{seq:020}.tbl.tmp")))
            .collect();
        for b in &blockers {
            std::fs::create_dir(b).unwrap();
        }
        assert!(store.snapshot().is_err());
        let stats = store.stats();
        assert_eq!(
            (stats.snapshots_total, stats.snapshot_failures_total),
            (0, 1)
        );
        for b in &blockers {
            std::fs::remove_dir(b).unwrap();
        }
        store.snapshot().unwrap();
        let stats = store.stats();
        assert_eq!(
            (stats.snapshots_total, stats.snapshot_failures_total),
            (1, 1)
        );
        assert!(blocked(&store, "u", 7).await);
    }

    /// Every file under `dir`, with its bytes.
    fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
        out
    }

    /// What must never be found in clear: the id's decimal text and its 8-byte forms.
    fn forms(id: u64) -> Vec<Vec<u8>> {
        vec![
            id.to_string().into_bytes(),
            id.to_le_bytes().to_vec(),
            id.to_be_bytes().to_vec(),
        ]
    }

    #[tokio::test]
    async fn forget_destroys_the_key_so_every_copy_of_the_data_is_unreadable_at_once() {
        let root = tempfile::tempdir().unwrap();
        let (backup, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let needle = 0x5eed_cafe_f00d_u64;
        let keys_of = |root: &Path| root.join("data-keys");
        {
            let store = disk(root.path());
            let dave = store.key("dave");
            let t = store.record(dave, &block(needle), *NOW).await.unwrap();
            store.durable(t).await.unwrap();
            store.snapshot().unwrap();
            let t = store.record(dave, &block(needle + 1), *NOW).await.unwrap();
            store.durable(t).await.unwrap();
            let t = store
                .record(store.key("erin"), &block(7), *NOW)
                .await
                .unwrap();
            store.durable(t).await.unwrap();
            // A backup of the data directory, taken while dave's words are in it.
            copy_as_crashed(&data(root.path()), &data(backup.path()));
            let snapshots = store.stats().snapshots_total;
            store.forget(dave).await.unwrap();
            // The key is destroyed, no snapshot is rewritten: erasure costs one key slot.
            assert_eq!(store.stats().snapshots_total, snapshots);
            assert!(!blocked(&store, "dave", needle).await);
            assert!(!store.profile(dave, *NOW).await.unwrap().known);
            // Nothing names dave anywhere any more: the data never did, the key store no
            // longer does. Nor are his words in clear anywhere.
            for (path, bytes) in files(root.path()) {
                assert!(
                    !contains(&bytes, &dave.0),
                    "dave's key in {}",
                    path.display()
                );
                for form in forms(needle).iter().chain(&forms(needle + 1)) {
                    assert!(!contains(&bytes, form), "the brand in {}", path.display());
                }
            }
            // A crash now, and the backup restored, both with the current key store.
            copy_as_crashed(&data(root.path()), &data(crashed.path()));
            for copy in [crashed.path(), backup.path()] {
                copy_as_crashed(&keys_of(root.path()), &keys_of(copy));
            }
            // The next regular snapshot leaves dave's rows out.
            store.snapshot().unwrap();
            let table = snapshot::Table::open_latest(&data(root.path())).unwrap();
            assert_eq!(table.rows(), 1, "erin's row only");
        }
        for dir in [root.path(), crashed.path(), backup.path()] {
            let store = disk(dir);
            assert!(!blocked(&store, "dave", needle).await, "{}", dir.display());
            assert!(!blocked(&store, "dave", needle + 1).await);
            assert!(!store.profile(store.key("dave"), *NOW).await.unwrap().known);
            assert!(
                blocked(&store, "erin", 7).await,
                "other users are untouched"
            );
        }
    }

    #[tokio::test]
    async fn forgetting_someone_never_seen_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = disk(root.path());
        let t = store.record(store.key("u"), &block(3), *NOW).await.unwrap();
        store.durable(t).await.unwrap();
        let before = files(root.path());
        store.forget(store.key("stranger")).await.unwrap();
        assert_eq!(files(root.path()), before);
        assert!(blocked(&store, "u", 3).await);
    }

    #[tokio::test]
    async fn without_its_key_store_or_with_another_master_key_the_state_is_refused_not_lost() {
        let root = tempfile::tempdir().unwrap();
        {
            let store = disk(root.path());
            let t = store.record(store.key("u"), &block(3), *NOW).await.unwrap();
            store.durable(t).await.unwrap();
        }
        let moved = root.path().join("elsewhere");
        std::fs::rename(root.path().join("data-keys"), &moved).unwrap();
        let open = |cfg: StateConfig| UserStore::open(cfg, &StateBackend::Disk(data(root.path())));
        match open(StateConfig::default()) {
            Err(StateError::Key(m)) => assert!(m.contains("no key store"), "{m}"),
            other => panic!("{:?}", other.map(|s| s.len())),
        }
        let mut cfg = StateConfig::default();
        cfg.keys.dir = Some(moved.clone());
        cfg.keys.master = Some(crypt::MasterKeySource::Inline("ab".repeat(32)));
        match open(cfg.clone()) {
            Err(StateError::Key(m)) => assert!(m.contains("does not open"), "{m}"),
            other => panic!("{:?}", other.map(|s| s.len())),
        }
        cfg.keys.master = None;
        std::fs::rename(moved.join(DEFAULT_MASTER_KEY_FILE), root.path().join("k")).unwrap();
        match open(cfg.clone()) {
            Err(StateError::Key(m)) => assert!(m.contains("needs its master key"), "{m}"),
            other => panic!("{:?}", other.map(|s| s.len())),
        }
        cfg.keys.master = Some(crypt::MasterKeySource::File(root.path().join("k")));
        let store = open(cfg).unwrap();
        assert!(blocked(&store, "u", 3).await, "the right key opens it all");
    }

    #[tokio::test]
    async fn the_check_finds_what_opening_would_without_changing_anything() {
        let root = tempfile::tempdir().unwrap();
        let d = data(root.path());
        let described = describe_key_store(&d, &KeyConfig::default()).unwrap();
        assert!(described.contains("generated master key"), "{described}");
        assert!(!d.exists() && !default_key_dir(&d).exists(), "nothing made");
        {
            let store = disk(root.path());
            let t = store.record(store.key("u"), &block(3), *NOW).await.unwrap();
            store.durable(t).await.unwrap();
            // While the server runs (and holds the locks), too.
            let described = describe_key_store(&d, &KeyConfig::default()).unwrap();
            assert!(described.contains("opens with"), "{described}");
        }
        let wrong = KeyConfig {
            dir: None,
            master: Some(crypt::MasterKeySource::Inline("cd".repeat(32))),
        };
        let e = describe_key_store(&d, &wrong).unwrap_err();
        assert!(e.to_string().contains("another key"), "{e}");
        let elsewhere = KeyConfig {
            dir: Some(root.path().join("empty-keys")),
            master: None,
        };
        let e = describe_key_store(&d, &elsewhere).unwrap_err();
        assert!(e.to_string().contains("no key store"), "{e}");
    }

    #[test]
    fn the_key_store_must_be_apart_from_the_data() {
        let root = tempfile::tempdir().unwrap();
        let d = data(root.path());
        assert!(check_key_dir(&d, &d.join("keys")).is_err());
        assert!(check_key_dir(&d, &d).is_err());
        assert!(check_key_dir(&d, root.path()).is_err());
        assert!(check_key_dir(&d, &default_key_dir(&d)).is_ok());
        assert_eq!(default_key_dir(&d), root.path().join("data-keys"));
    }

    /// Copies the committed directory of format 2 (written by the release before encryption
    /// at rest: see its README) to `to`.
    fn format_2_fixture(to: &Path) {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-format-2");
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "md") {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    }

    /// Every word the fixture's users said, as the store now reads them. Decayed counters
    /// are read as of a minute after the fixture's last activity, not as of today: they fade
    /// with the days since it was written.
    async fn assert_fixture_words(store: &UserStore) {
        let alice = store.key("fixture-alice");
        let written = store.profile(alice, crate::time::now_ms()).await.unwrap();
        let now = written.view.last_active_ms.expect("alice was active") + 60_000;
        let view = |user: &str| {
            let key = store.key(user);
            async move { store.profile(key, now).await.unwrap() }
        };
        let alice = view("fixture-alice").await;
        assert!(alice.known);
        assert!(!alice.view.is_brand_blocked(424242), "unblocked later");
        assert!(alice.view.is_brand_blocked(434343));
        assert!(alice.view.is_brand_blocked(454545), "from the log");
        assert!(alice.view.is_not_interested(31337));
        assert!(alice.view.fewer_like_this(9191, 0) > 0.9);
        assert!(alice.view.ignored_impressions(555001) > 4.0);
        assert!(
            alice.view.purchases.iter().any(|p| p.item_id == 555002),
            "the purchase that starts a cooling-off"
        );
        let bob = view("fixture-bob").await;
        assert!(bob.view.is_shop_blocked(5150));
        let carol = view("fixture-carol").await;
        assert!(carol.view.is_brand_blocked(8080));
        assert!(!carol.view.consent.allows(DataDimension::Browsing));
        assert!(carol.view.consent.allows(DataDimension::Location));
        for forgotten in ["fixture-dave", "fixture-erin"] {
            assert!(!view(forgotten).await.known, "{forgotten} was forgotten");
        }
    }

    #[tokio::test]
    async fn a_data_directory_of_format_2_is_migrated_at_start_without_losing_a_word() {
        let root = tempfile::tempdir().unwrap();
        let dir = data(root.path());
        format_2_fixture(&dir);
        {
            let store = disk(root.path());
            assert_fixture_words(&store).await;
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("format")).unwrap(),
            format!("{}\n", backend::DATA_FORMAT)
        );
        assert!(!dir.join(migrate::BACKUP).exists(), "the backup went");
        for (path, bytes) in files(&dir) {
            for id in [424242, 434343, 454545, 31337, 5150, 8080, 555002, 777777] {
                for form in forms(id) {
                    assert!(!contains(&bytes, &form), "{id} in {}", path.display());
                }
            }
            assert!(!contains(&bytes, b"Espresso"), "{}", path.display());
        }
        // And again: the migrated directory opens as any other.
        let store = disk(root.path());
        assert_fixture_words(&store).await;
    }

    #[tokio::test]
    async fn a_migration_interrupted_by_a_crash_starts_again_from_its_backup() {
        let root = tempfile::tempdir().unwrap();
        let dir = data(root.path());
        format_2_fixture(&dir);
        // What a crash after the backup was made, halfway through the new snapshot, leaves.
        let backup = dir.join(migrate::BACKUP);
        std::fs::create_dir(&backup).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("wal-") || name.starts_with("snapshot-") {
                std::fs::rename(&path, backup.join(&name)).unwrap();
            }
        }
        std::fs::write(dir.join("snapshot-00000000000000000018.tbl.tmp"), b"half").unwrap();
        std::fs::write(dir.join("wal-00000000000000000018.log"), b"").unwrap();
        let store = disk(root.path());
        assert_fixture_words(&store).await;
        assert!(!backup.exists());
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}

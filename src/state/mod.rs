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
pub mod decay;
mod disk;
pub mod event;
mod keeper;
pub mod key;
mod legacy;
pub mod lock;
mod map;
mod memory;
pub mod op;
mod pack;
mod redis;
mod settings;
pub mod snapshot;
mod store;
pub mod user;
pub mod wal;

use std::path::Path;

pub use backend::Ticket;
pub use event::{Event, EventError, EventKind};
pub use key::UserKey;
pub use op::Op;
pub use redis::DEFAULT_NAMESPACE as DEFAULT_REDIS_NAMESPACE;
pub use settings::{InvalidSetting, StateBackend, StateConfig, StateSettings};
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

/// Why the state store cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("damaged state: {0}")]
    Corrupt(String),
    #[error("user state is unavailable: {0}")]
    Unavailable(String),
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

    fn disk(dir: &Path) -> UserStore {
        UserStore::open(StateConfig::default(), &StateBackend::Disk(dir.to_owned())).unwrap()
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
        let cfg = StateConfig {
            memory_cap_bytes: 256 << 10,
            ..StateConfig::default()
        };
        let store = UserStore::open(cfg, &StateBackend::Disk(dir.path().to_owned())).unwrap();
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
            if store.stats().evicted_total > 0 && store.stats().bytes <= 256 << 10 {
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
    fn copy_as_crashed(from: &Path, to: &Path) {
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
            .map(|seq| dir.path().join(format!("snapshot-{seq:020}.tbl.tmp")))
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

    #[tokio::test]
    async fn forget_erases_the_user_at_once_and_from_every_file_at_the_next_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let crashed = tempfile::tempdir().unwrap();
        let needle = 0x5eed_cafe_f00d_u64;
        {
            let store = disk(dir.path());
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
            let snapshots = store.stats().snapshots_total;
            store.forget(dave).await.unwrap();
            // A tombstone in the log, not a new snapshot: erasure costs what the user's data
            // costs.
            assert_eq!(store.stats().snapshots_total, snapshots);
            assert!(!blocked(&store, "dave", needle).await);
            assert!(!store.profile(dave, *NOW).await.unwrap().known);
            assert!(
                !blocked(&store, "dave", needle).await,
                "not read back from the snapshot"
            );
            // A crash now: the tombstone is honoured on recovery.
            copy_as_crashed(dir.path(), crashed.path());
            // The next regular snapshot deletes the user's rows and log records.
            store.snapshot().unwrap();
            let key_bytes = dave.0;
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !contains(&bytes, &key_bytes),
                    "the user's key is still in {}",
                    path.display()
                );
                assert!(!contains(&bytes, b"dave"));
            }
        }
        for dir in [dir.path(), crashed.path()] {
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

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}

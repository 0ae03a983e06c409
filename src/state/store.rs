//! [`UserStore`]: the hot map and the backend that makes it durable (the keeper thread that
//! snapshots, expires and evicts is in `keeper.rs`).
//!
//! Every change goes through one path: make sure the user is in memory (`warm`), apply the op
//! under the user's map lock, and hand the op to the backend while still holding that lock, so
//! that the log (or the Redis list) holds each user's ops in the order they were applied. The
//! acknowledgement waits for the returned [`Ticket`] outside the lock.
//!
//! With Redis the map is a cache of what Redis holds: nothing in it is ever "changed since
//! written" (Redis has every explicit word before it is acknowledged), so any user may be
//! evicted, and every removal goes through [`Inner::drop_user`] so that a read of the user in
//! flight cannot put an older state back.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

use super::disk::Disk;
use super::event::{Event, EventError};
use super::keeper::{KeeperState, keeper_loop};
use super::key::{Keyer, UserKey};
use super::map::{Loaded, UserMap};
use super::op::Op;
use super::redis::{DEFAULT_NAMESPACE, Redis};
use super::user::UserState;
use super::user::{InterestChange, Undo};
use super::{StateConfig, StateError};
use crate::rank::{DataDimension, DimensionSet, UserView};

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    /// Nothing leaves the process.
    Memory,
    /// Write-ahead log and snapshots in this directory.
    Disk(PathBuf),
    /// Explicit words written through to Redis at this URL, shared by replicas.
    Redis(String),
}

/// What an acknowledgement must wait for: nothing ([`Ticket::NONE`]), or the backend's
/// tickets `first..=last`. A range, not a watermark alone: with Redis, a later write can
/// succeed after an earlier one failed, and an acknowledgement covering both must fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ticket {
    pub(super) first: u64,
    pub(super) last: u64,
}

impl Ticket {
    pub const NONE: Ticket = Ticket { first: 0, last: 0 };

    pub(super) fn at(n: u64) -> Self {
        Ticket { first: n, last: n }
    }

    /// What waiting for both tickets waits for.
    pub fn join(self, other: Ticket) -> Ticket {
        if self == Ticket::NONE {
            other
        } else if other == Ticket::NONE {
            self
        } else {
            Ticket {
                first: self.first.min(other.first),
                last: self.last.max(other.last),
            }
        }
    }
}

/// Why an event or a consent change was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The event itself is wrong: its producer must fix it.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// The store cannot make it durable now: retry later.
    #[error(transparent)]
    Unavailable(#[from] StateError),
}

/// What the preference centre shows about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// False when nothing is held about the user (the rest shows the defaults).
    pub known: bool,
    /// With the user's consent in force (no request override).
    pub view: UserView,
    pub not_interested_until: Vec<(u64, i64)>,
    /// Data dimensions rankings relied on for this user lately (since they were loaded into
    /// this process's memory).
    pub used_recently: DimensionSet,
}

/// The store's size, for metrics and the memory cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub users: usize,
    /// Memory accounted to user state: map slots, per-user heap, snapshot index.
    pub bytes: usize,
    pub evicted_total: usize,
    pub snapshots_total: usize,
}

pub(super) enum Backend {
    Memory,
    Disk(Disk),
    Redis(Arc<Redis>),
}

pub(super) struct Inner {
    pub(super) map: UserMap,
    pub(super) config: StateConfig,
    pub(super) keyer: Keyer,
    pub(super) backend: Backend,
    pub(super) keeper: Mutex<KeeperState>,
    pub(super) keeper_wake: Condvar,
    pub(super) over_cap: AtomicBool,
    /// Growths seen, to measure the store on one in `keeper::CAP_CHECK_EVERY`.
    pub(super) cap_checks: AtomicUsize,
    pub(super) snapshots_total: AtomicUsize,
    /// Users forgotten since the last snapshot: their rows in it must not be read back.
    pub(super) forgotten: Mutex<HashSet<UserKey>>,
    /// Loads hold it shared from lookup to insert; a snapshot swap and a forget hold it
    /// exclusively, so that no load can insert what was just replaced or erased.
    pub(super) loads: RwLock<()>,
}

/// All users' state.
pub struct UserStore {
    inner: Arc<Inner>,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

impl UserStore {
    /// A store whose state lives only as long as the process.
    pub fn in_memory(config: StateConfig) -> Self {
        let keyer = Keyer::random().unwrap_or_else(|_| Keyer::new([0x5a; 16]));
        Self::assemble(config, keyer, Backend::Memory, UserMap::new())
    }

    /// Opens the store on its backend; for `Disk`, recovers what the directory holds first.
    pub fn open(config: StateConfig, backend: &StateBackend) -> Result<Self, StateError> {
        match backend {
            StateBackend::Memory => Ok(Self::in_memory(config)),
            StateBackend::Disk(dir) => {
                let recovered = Disk::recover(dir, &config)?;
                let store = Self::assemble(
                    config,
                    recovered.keyer,
                    Backend::Disk(recovered.disk),
                    recovered.map,
                );
                store
                    .inner
                    .forgotten
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(recovered.forgotten);
                if recovered.replayed > 0 {
                    store.inner.request_snapshot();
                }
                Ok(store)
            }
            StateBackend::Redis(url) => Err(StateError::Unavailable(format!(
                "{url}: the redis backend is opened with UserStore::open_async"
            ))),
        }
    }

    /// Opens the store on any backend (Redis needs the runtime; the disk's recovery runs on
    /// a blocking thread).
    pub async fn open_async(
        config: StateConfig,
        backend: &StateBackend,
    ) -> Result<Self, StateError> {
        match backend {
            StateBackend::Redis(url) => Self::open_redis(config, url, DEFAULT_NAMESPACE).await,
            other => {
                let other = other.clone();
                tokio::task::spawn_blocking(move || Self::open(config, &other))
                    .await
                    .map_err(|e| StateError::Unavailable(e.to_string()))?
            }
        }
    }

    /// Opens a store whose explicit words live in Redis at `url`, under keys that start with
    /// `namespace` (replicas that share users share the namespace; tests use one each).
    /// Fails when Redis does not answer: without it there is no user-key secret.
    pub async fn open_redis(
        config: StateConfig,
        url: &str,
        namespace: &str,
    ) -> Result<Self, StateError> {
        let (redis, keyer) = Redis::connect(url, namespace).await?;
        let store = Self::assemble(
            config.clone(),
            keyer,
            Backend::Redis(redis.clone()),
            UserMap::new(),
        );
        redis.start(Arc::downgrade(&store.inner), config);
        Ok(store)
    }

    fn assemble(config: StateConfig, keyer: Keyer, backend: Backend, map: UserMap) -> Self {
        let inner = Arc::new(Inner {
            map,
            config,
            keyer,
            backend,
            keeper: Mutex::new(KeeperState::default()),
            keeper_wake: Condvar::new(),
            over_cap: AtomicBool::new(false),
            cap_checks: AtomicUsize::new(0),
            snapshots_total: AtomicUsize::new(0),
            forgotten: Mutex::new(HashSet::new()),
            loads: RwLock::new(()),
        });
        let keeper_inner = inner.clone();
        let keeper = std::thread::Builder::new()
            .name("tactful-keeper".into())
            .spawn(move || keeper_loop(&keeper_inner))
            .ok();
        Self {
            inner,
            keeper: Mutex::new(keeper),
        }
    }

    pub fn config(&self) -> &StateConfig {
        &self.inner.config
    }

    /// The key the store knows this user by.
    pub fn key(&self, user_id: &str) -> UserKey {
        self.inner.keyer.key(user_id)
    }

    /// Users held in memory.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            users: self.inner.map.len(),
            bytes: self.inner.bytes(),
            evicted_total: self.inner.map.evicted_total(),
            snapshots_total: self.inner.snapshots_total.load(Ordering::Relaxed),
        }
    }

    /// Brings the user into memory if the backend holds them (a prefetch: [`UserStore::view`]
    /// and the changes load the user on their own).
    pub async fn warm(&self, key: UserKey) -> Result<(), StateError> {
        match &self.inner.backend {
            Backend::Redis(r) => r.load(&self.inner, key).await,
            _ => self.inner.load(key, false).map(|_| ()),
        }
    }

    /// The snapshot a ranking at `now_ms` works from, with the request's consent override
    /// applied (it can only restrict). Reads the backend if the user is not in memory.
    pub async fn view(
        &self,
        key: UserKey,
        now_ms: i64,
        denied: DimensionSet,
        personalization_off: bool,
    ) -> Result<UserView, StateError> {
        let cfg = &self.inner.config;
        self.read(key, |state| match state {
            Some(s) => {
                let consent = s
                    .consent
                    .apply_to(cfg.consent_default)
                    .restrict(denied, personalization_off);
                s.view(now_ms, consent, cfg)
            }
            None => UserView::unknown(cfg.consent_default.restrict(denied, personalization_off)),
        })
        .await
    }

    /// Runs `f` on the user's current state (`None`: nobody knows them). Whatever eviction
    /// does meanwhile, `f` sees what the backend holds, never a user half-loaded or just
    /// evicted: with a snapshot the row is read directly; with Redis the load is retried.
    async fn read<R>(
        &self,
        key: UserKey,
        f: impl Fn(Option<&UserState>) -> R,
    ) -> Result<R, StateError> {
        for _ in 0..4 {
            if let Some(r) = self.inner.map.read(key, |s| f(Some(s))) {
                return Ok(r);
            }
            match &self.inner.backend {
                Backend::Memory => return Ok(f(None)),
                Backend::Disk(d) => {
                    if !self.inner.load(key, false)? {
                        return Ok(f(None));
                    }
                    if let Some(r) = self.inner.map.read(key, |s| f(Some(s))) {
                        return Ok(r);
                    }
                    // Evicted again at once under pressure: the row is the truth.
                    let _no_swap = self.inner.loads.read().unwrap_or_else(|e| e.into_inner());
                    if self
                        .inner
                        .forgotten
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&key)
                    {
                        return Ok(f(None));
                    }
                    return Ok(match d.get(key)? {
                        Some((_, state)) => f(Some(&state)),
                        None => f(None),
                    });
                }
                // Redis caches unknown users too, so a miss right after a load means the
                // user was evicted or invalidated meanwhile: load again.
                Backend::Redis(r) => r.load(&self.inner, key).await?,
            }
        }
        Err(StateError::Unavailable(
            "the user kept being evicted while being read; retry".into(),
        ))
    }

    /// Checks and applies one event; it is visible to the very next [`UserStore::view`].
    /// The returned ticket says what to wait for before acknowledging it.
    pub async fn record(
        &self,
        key: UserKey,
        event: &Event,
        now_ms: i64,
    ) -> Result<Ticket, RecordError> {
        event.check(now_ms)?;
        self.change(key, Op::Event(event.clone())).await
    }

    /// Sets consent choices; dimensions and sensitive categories not named keep their
    /// setting.
    pub async fn set_consent(
        &self,
        key: UserKey,
        changes: &[(DataDimension, bool)],
        personalization: Option<bool>,
        sensitive: &[(u64, bool)],
        now_ms: i64,
    ) -> Result<Ticket, RecordError> {
        let op = Op::Consent {
            changes: changes.to_vec(),
            personalization,
            sensitive: sensitive.to_vec(),
            at_ms: now_ms,
        };
        self.change(key, op).await
    }

    /// Takes back a block, a "not interested" or a "fewer like this".
    pub async fn undo(&self, key: UserKey, undo: Undo, now_ms: i64) -> Result<Ticket, RecordError> {
        self.change(
            key,
            Op::Undo {
                undo,
                at_ms: now_ms,
            },
        )
        .await
    }

    /// Adds, re-weights or removes interest tags, all or nothing.
    pub async fn update_interests(
        &self,
        key: UserKey,
        changes: Vec<InterestChange>,
        now_ms: i64,
    ) -> Result<Ticket, RecordError> {
        self.change(
            key,
            Op::Interests {
                changes,
                at_ms: now_ms,
            },
        )
        .await
    }

    async fn change(&self, key: UserKey, op: Op) -> Result<Ticket, RecordError> {
        self.inner.backpressure().await;
        // Nearly every change is for a user already in memory: applied at once, that is one
        // map lookup instead of two. With Redis, the check that it is up comes first.
        if !matches!(self.inner.backend, Backend::Redis(_))
            && let Some(result) = self.inner.apply(key, &op)
        {
            return result;
        }
        // An eviction can slip between loading and applying; then load again.
        for _ in 0..4 {
            match &self.inner.backend {
                Backend::Redis(r) => {
                    // A known-down Redis refuses before anything in memory is touched.
                    r.check_up()?;
                    r.load(&self.inner, key).await?;
                    r.check_up()?;
                }
                _ => {
                    self.inner.load(key, true)?;
                }
            }
            if let Some(result) = self.inner.apply(key, &op) {
                return result;
            }
        }
        Err(StateError::Unavailable("the user kept being evicted; retry".into()).into())
    }

    /// Waits until everything the ticket covers is durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StateError> {
        if ticket == Ticket::NONE {
            return Ok(());
        }
        match &self.inner.backend {
            Backend::Memory => Ok(()),
            Backend::Disk(d) => d.wal.durable(ticket.last).await,
            Backend::Redis(r) => r.durable(ticket.first, ticket.last).await,
        }
    }

    /// Erases everything about the user: from memory at once, and from the log and the
    /// snapshot by a snapshot that starts after the erasure, which this waits for. With
    /// Redis: the user's list is deleted (after every write queued before) and the other
    /// replicas are told to drop the user.
    pub async fn forget(&self, key: UserKey) -> Result<(), StateError> {
        if let Backend::Redis(r) = &self.inner.backend {
            r.check_up()?;
            // Queued first: a read that starts after the removal waits for the deletion.
            let ticket = r.forget(key)?;
            self.inner.drop_user(key);
            return self.durable(Ticket::at(ticket)).await;
        }
        let ticket = {
            let _no_loads = self.inner.loads.write().unwrap_or_else(|e| e.into_inner());
            let mut ticket = Ticket::NONE;
            if let Backend::Disk(d) = &self.inner.backend {
                ticket = Ticket::at(d.wal.append(key, &Op::Forget)? + 1);
                // Until the next snapshot drops their row, it must not be read back.
                self.inner
                    .forgotten
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key);
            }
            self.inner.map.remove(key);
            ticket
        };
        self.durable(ticket).await?;
        if matches!(self.inner.backend, Backend::Disk(_)) {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || inner.snapshot_and_wait())
                .await
                .map_err(|e| StateError::Unavailable(e.to_string()))??;
        }
        Ok(())
    }

    pub async fn profile(&self, key: UserKey, now_ms: i64) -> Result<Profile, StateError> {
        let cfg = &self.inner.config;
        self.read(key, |state| match state {
            Some(s) if !s.is_empty() => Profile {
                known: true,
                view: s.view(now_ms, s.consent.apply_to(cfg.consent_default), cfg),
                not_interested_until: s.not_interested_until(now_ms),
                used_recently: DimensionSet::EMPTY,
            },
            _ => Profile {
                known: false,
                view: UserView::unknown(cfg.consent_default),
                not_interested_until: Vec::new(),
                used_recently: DimensionSet::EMPTY,
            },
        })
        .await
        .map(|mut p| {
            if let Some(used) = self.inner.map.used(key) {
                p.used_recently = used;
            }
            p
        })
    }

    /// Notes that a ranking relied on these data dimensions for the user (when the user is
    /// in memory; a user tactful holds nothing about has nothing to show).
    pub fn note_used(&self, key: UserKey, dims: DimensionSet) {
        if dims.is_empty() {
            return;
        }
        self.inner.map.note_used(key, dims);
    }

    /// Takes a snapshot now and waits for it (no-op without a disk backend).
    pub fn snapshot(&self) -> Result<(), StateError> {
        match self.inner.backend {
            Backend::Disk(_) => self.inner.snapshot_and_wait(),
            Backend::Memory | Backend::Redis(_) => Ok(()),
        }
    }

    /// Stops the keeper after a last snapshot, so that the next start has little to replay.
    pub fn close(&self) {
        {
            let mut k = self.inner.keeper.lock().unwrap_or_else(|e| e.into_inner());
            k.shutdown = true;
        }
        self.inner.keeper_wake.notify_all();
        if let Some(handle) = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        if let Backend::Redis(r) = &self.inner.backend {
            r.close();
        }
    }
}

impl Drop for UserStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    pub(super) fn bytes(&self) -> usize {
        let index = match &self.backend {
            Backend::Disk(d) => d.index_bytes(),
            Backend::Memory | Backend::Redis(_) => 0,
        };
        self.map.bytes() + index
    }

    /// Makes sure the user is in memory if the backend knows them; with `create` (a change is
    /// coming), an empty entry is made for a user nobody knows, and the entry is marked
    /// changed at once so that eviction cannot take it before the change lands.
    ///
    /// Returns false when the backend holds nothing about the user (and none was created).
    fn load(&self, key: UserKey, create: bool) -> Result<bool, StateError> {
        if self.map.contains(key) {
            return Ok(true);
        }
        match &self.backend {
            Backend::Memory => {
                if create {
                    self.map.insert(key, UserState::default(), true, || true);
                }
                Ok(create)
            }
            Backend::Disk(d) => {
                let _guard = self.loads.read().unwrap_or_else(|e| e.into_inner());
                let forgotten = self
                    .forgotten
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&key);
                let stored = if forgotten { None } else { d.get(key)? };
                if stored.is_none() && !create {
                    return Ok(false);
                }
                let state = stored.map(|(_, s)| s).unwrap_or_default();
                if self.map.insert(key, state, create, || true) == Loaded::Inserted {
                    self.check_cap();
                }
                Ok(true)
            }
            // Read asynchronously, by `UserStore::warm` and `UserStore::change`.
            Backend::Redis(_) => Ok(true),
        }
    }

    /// Puts a user read from Redis into the map, unless someone put them there first or
    /// `current` (asked with the user's shard locked, so that no removal slips between the
    /// question and the insert) says the user was removed while the read was in flight.
    pub(super) fn insert_loaded(
        &self,
        key: UserKey,
        state: UserState,
        current: impl FnOnce() -> bool,
    ) -> Loaded {
        let loaded = self.map.insert(key, state, false, current);
        if loaded == Loaded::Inserted {
            self.check_cap();
        }
        loaded
    }

    /// Removes a user from memory; the next access reads the backend again. With Redis, a
    /// read of the user in flight is told first, so that it cannot put back what it read.
    pub(super) fn drop_user(&self, key: UserKey) {
        if let Backend::Redis(r) = &self.backend {
            r.removing(key);
        }
        self.map.remove(key);
    }

    /// Removes every user from memory (Redis: after the subscription to changes was lost).
    pub(super) fn drop_all(&self) {
        if let Backend::Redis(r) = &self.backend {
            r.removing_all();
        }
        self.map.clear();
    }

    /// Applies an op to a user in memory and hands it to the backend under the same lock.
    /// `None` when the user is not in memory (evicted since it was loaded).
    fn apply(&self, key: UserKey, op: &Op) -> Option<Result<Ticket, RecordError>> {
        let mut user = self.map.lock(key)?;
        if let Err(err) = user.change(|s| op.apply(s, &self.config)) {
            return Some(Err(err.into()));
        }
        let ticket = match &self.backend {
            Backend::Memory => Ok(Ticket::NONE),
            Backend::Disk(d) => {
                if op.is_explicit() || self.config.log_counters {
                    d.wal.append(key, op).map(|seq| {
                        if op.is_explicit() {
                            Ticket::at(seq + 1)
                        } else {
                            Ticket::NONE
                        }
                    })
                } else {
                    Ok(Ticket::NONE)
                }
            }
            // Counters stay in this replica's memory; explicit words go to Redis.
            Backend::Redis(r) if op.is_explicit() => r.append(key, op).map(Ticket::at),
            Backend::Redis(_) => Ok(Ticket::NONE),
        };
        let grew = user.grew();
        drop(user);
        if grew {
            self.check_cap();
        }
        Some(ticket.map_err(RecordError::from))
    }
}

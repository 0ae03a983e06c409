//! [`UserStore`]: all users' state, as the engine, the gRPC services and the command line see
//! it. It holds the hot [`UserMap`], the [`Backend`] that keeps state beyond it (named only
//! through the trait: the settings pick it, `mod.rs` opens it), and the [`Keeper`] whose thread
//! snapshots, expires and evicts.
//!
//! Every change goes through one path: make sure the user is in memory (the backend's load),
//! apply the op under the user's map lock, and hand the op to the backend while still holding
//! that lock, so that the backend (the log, the Redis list) holds each user's ops in the order
//! they were applied. The acknowledgement waits for the returned [`Ticket`] outside the lock.
//!
//! Every read goes through one path too: the map if the user is there, else the backend's load
//! into it, else (the user evicted again at once, under memory pressure) the backend's own
//! copy or another load, whichever the backend says; a reader never sees a user half-loaded.
//!
//! Must not: wait for I/O while holding a user's lock, or answer a change before the backend
//! has what its ticket covers.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::backend::{Backend, Cold, Load, Opened, Ticket};
use super::event::{Event, EventError};
use super::keeper::Keeper;
use super::key::{Keyer, UserKey};
use super::map::UserMap;
use super::op::Op;
use super::user::UserState;
use super::user::{InterestChange, Undo};
use super::{StateBackend, StateConfig, StateError};
use crate::rank::{DataDimension, DimensionSet, UserView};

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
    /// Snapshot writes that failed since start.
    pub snapshot_failures_total: usize,
}

/// All users' state.
pub struct UserStore {
    config: StateConfig,
    keyer: Keyer,
    map: Arc<UserMap>,
    backend: Arc<dyn Backend>,
    keeper: Arc<Keeper>,
    keeper_thread: Mutex<Option<JoinHandle<()>>>,
}

impl UserStore {
    /// A store whose state lives only as long as the process.
    pub fn in_memory(config: StateConfig) -> Self {
        Self::assemble(config, super::open_memory())
    }

    /// Opens the store on its backend; for `Disk`, recovers what the directory holds first.
    /// Redis needs the runtime: [`UserStore::open_async`].
    pub fn open(config: StateConfig, backend: &StateBackend) -> Result<Self, StateError> {
        let opened = super::open_backend(&config, backend)?;
        Ok(Self::assemble(config, opened))
    }

    /// Opens the store on any backend (Redis needs the runtime; the disk's recovery runs on
    /// a blocking thread).
    pub async fn open_async(
        config: StateConfig,
        backend: &StateBackend,
    ) -> Result<Self, StateError> {
        let opened = super::open_backend_async(&config, backend).await?;
        Ok(Self::assemble(config, opened))
    }

    /// Opens a store whose explicit words live in Redis at `url`, under keys that start with
    /// `namespace` (replicas that share users share the namespace; tests use one each).
    /// Fails when Redis does not answer: without it there is no user-key secret.
    pub async fn open_redis(
        config: StateConfig,
        url: &str,
        namespace: &str,
    ) -> Result<Self, StateError> {
        let opened = super::open_redis(&config, url, namespace).await?;
        Ok(Self::assemble(config, opened))
    }

    fn assemble(config: StateConfig, opened: Opened) -> Self {
        let Opened {
            backend,
            keyer,
            map,
            snapshot_soon,
        } = opened;
        let (keeper, thread) = Keeper::start(map.clone(), backend.clone(), config.clone());
        if snapshot_soon {
            keeper.request_snapshot();
        }
        Self {
            config,
            keyer,
            map,
            backend,
            keeper,
            keeper_thread: Mutex::new(thread),
        }
    }

    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The key the store knows this user by.
    pub fn key(&self, user_id: &str) -> UserKey {
        self.keyer.key(user_id)
    }

    /// Users held in memory.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            users: self.map.len(),
            bytes: self.keeper.bytes(),
            evicted_total: self.map.evicted_total(),
            snapshots_total: self.keeper.snapshots_total(),
            snapshot_failures_total: self.keeper.snapshot_failures_total(),
        }
    }

    /// Has the backend put the user into the map, and tells the keeper if the map grew.
    async fn load(&self, key: UserKey, create: bool) -> Result<Load, StateError> {
        let load = self.backend.load(&self.map, key, create).await?;
        if load == Load::Inserted {
            self.keeper.grew();
        }
        Ok(load)
    }

    /// Brings the user into memory if the backend holds them (a prefetch: [`UserStore::view`]
    /// and the changes load the user on their own).
    pub async fn warm(&self, key: UserKey) -> Result<(), StateError> {
        self.load(key, false).await.map(|_| ())
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
        let cfg = &self.config;
        self.read(key, |state| match state {
            Some(s) => {
                let consent = s
                    .consent()
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
    /// evicted: a user evicted again right after the load is read from the backend's own copy
    /// ([`Backend::read_cold`]), or loaded again.
    async fn read<R>(
        &self,
        key: UserKey,
        f: impl Fn(Option<&UserState>) -> R,
    ) -> Result<R, StateError> {
        for _ in 0..4 {
            if let Some(r) = self.map.read(key, |s| f(Some(s))) {
                return Ok(r);
            }
            if self.load(key, false).await? == Load::Unknown {
                return Ok(f(None));
            }
            if let Some(r) = self.map.read(key, |s| f(Some(s))) {
                return Ok(r);
            }
            match self.backend.read_cold(key)? {
                Cold::Unknown => return Ok(f(None)),
                Cold::State(state) => return Ok(f(Some(&state))),
                Cold::Reload => continue,
            }
        }
        Err(StateError::Unavailable(
            "the user kept being evicted while being read; retry".into(),
        ))
    }

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
        self.keeper.backpressure().await;
        // A backend known to be unable to take the change refuses before anything in memory
        // is touched. Nearly every change is for a user already in memory: applied at once,
        // that is one map lookup instead of two.
        self.backend.check_writable()?;
        if let Some(result) = self.apply(key, &op) {
            return result;
        }
        // Data minimisation: a change that leaves a user tactful knows nothing about with
        // nothing to hold (an undo of nothing, an empty consent change, removing a tag never
        // set) creates no user and writes nothing. Refusals are still refusals.
        if self.load(key, false).await? == Load::Unknown {
            let mut probe = UserState::default();
            op.apply(&mut probe, &self.config)?;
            if probe.holds_nothing_but_times() {
                return Ok(Ticket::NONE);
            }
        }
        // An eviction can slip between loading and applying; then load again.
        for _ in 0..4 {
            self.backend.check_writable()?;
            self.load(key, true).await?;
            self.backend.check_writable()?;
            if let Some(result) = self.apply(key, &op) {
                return result;
            }
        }
        Err(StateError::Unavailable("the user kept being evicted; retry".into()).into())
    }

    /// Applies an op to a user in memory and hands it to the backend under the same lock.
    /// `None` when the user is not in memory (evicted since it was loaded).
    fn apply(&self, key: UserKey, op: &Op) -> Option<Result<Ticket, RecordError>> {
        let mut user = self.map.lock(key)?;
        if let Err(err) = user.change(|s| op.apply(s, &self.config)) {
            return Some(Err(err.into()));
        }
        let ticket = self.backend.append(key, op);
        let grew = user.grew();
        drop(user);
        if grew {
            self.keeper.grew();
        }
        Some(ticket.map_err(RecordError::from))
    }

    /// Waits until everything the ticket covers is durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StateError> {
        if ticket == Ticket::NONE {
            return Ok(());
        }
        self.backend.durable(ticket).await
    }

    /// Erases everything about the user: from memory at once, and from the backend once the
    /// erasure is durable, which this waits for. With snapshots, that means a tombstone in
    /// the log (fsynced): from then on the user is never read back, also after a crash (the
    /// replay honours it), and the next regular snapshot (within `snapshot_interval_s`, since
    /// the tombstone grew the log) is written without the user's row and deletes the log
    /// segments holding their history. Waiting for that snapshot here would make every
    /// erasure cost a rewrite of everyone's state. With Redis, the user's list is deleted
    /// (after every write queued before) and the other replicas are told to drop the user.
    pub async fn forget(&self, key: UserKey) -> Result<(), StateError> {
        let ticket = self.backend.forget(&self.map, key)?;
        self.durable(ticket).await
    }

    pub async fn profile(&self, key: UserKey, now_ms: i64) -> Result<Profile, StateError> {
        let cfg = &self.config;
        self.read(key, |state| match state {
            Some(s) if !s.is_empty() => Profile {
                known: true,
                view: s.view(now_ms, s.consent().apply_to(cfg.consent_default), cfg),
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
            if let Some(used) = self.map.used(key) {
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
        self.map.note_used(key, dims);
    }

    /// Takes a snapshot now and waits for it (no-op for a backend without snapshots).
    pub fn snapshot(&self) -> Result<(), StateError> {
        if self.backend.takes_snapshots() {
            self.keeper.snapshot_and_wait()
        } else {
            Ok(())
        }
    }

    /// Leaves the store as a crash would (no last snapshot, no clean close: its threads are
    /// leaked) but lets go of the data directory's lock, so that the same process can open
    /// the directory again: for crash tests and recovery measurements.
    pub fn abandon(self) {
        self.backend.abandon();
        std::mem::forget(self);
    }

    /// Stops the keeper after a last snapshot, so that the next start has little to replay,
    /// then the backend.
    pub fn close(&self) {
        self.keeper.stop();
        if let Some(handle) = self
            .keeper_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = handle.join();
        }
        self.backend.close();
    }
}

impl Drop for UserStore {
    fn drop(&mut self) {
        self.close();
    }
}

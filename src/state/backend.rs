//! [`Backend`]: what keeps users' state beyond the [`UserMap`], and the one seam the store, the
//! keeper and every storage format meet at. The store names no concrete backend: it loads,
//! appends, waits, forgets and snapshots through this trait, and the keeper schedules
//! snapshots and eviction through it. Implementations: `memory.rs` (nothing leaves the
//! process), `disk.rs` (write-ahead log and snapshots), `redis.rs` (explicit words shared by
//! replicas); `mod.rs` opens the one the settings name.
//!
//! The contract every backend keeps:
//! - [`Backend::append`] runs under the user's map lock, right after the op was applied in
//!   memory, so that the backend holds each user's ops in the order they were applied. It
//!   must not wait: it only queues or copies bytes, and returns a [`Ticket`].
//! - An acknowledgement waits for [`Backend::durable`] of its ticket, outside any lock.
//! - A user the backend puts into the map on [`Backend::load`] is what the backend holds,
//!   never something older than a removal the backend was told of.
//! - [`Backend::forget`] removes the user from the map too, and nothing it holds may bring
//!   them back afterwards.
//!
//! Async methods return boxed futures, so that the trait stays object-safe
//! (`Arc<dyn Backend>`); backends whose work is synchronous return a ready future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::StateError;
use super::key::{Keyer, UserKey};
use super::map::UserMap;
use super::op::Op;
use super::user::UserState;

/// The layout of the ops and user states backends write (log records and snapshot rows on
/// disk, op lists in Redis). Neither carries a version of its own, so data written in another
/// layout is refused as a whole: read with the wrong layout, it would be misread.
pub const DATA_FORMAT: u32 = 4;

/// A future a backend returns.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// Where a user stands after [`Backend::load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// The backend holds nothing about the user, and no entry was made.
    Unknown,
    /// The user is in the map: they were already, or someone else put them there first.
    Present,
    /// The user was put into the map by this load: the map grew.
    Inserted,
}

/// What [`Backend::read_cold`] finds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cold {
    /// The backend holds nothing about the user.
    Unknown,
    /// The user's state as the backend holds it.
    State(UserState),
    /// The backend cannot read around the map: load the user again.
    Reload,
}

/// A backend just opened, and what it brings with it.
pub(super) struct Opened {
    pub(super) backend: Arc<dyn Backend>,
    /// The secret users are keyed by, kept (or agreed on) by the backend.
    pub(super) keyer: Keyer,
    /// The users already in memory (recovered from disk), or none.
    pub(super) map: Arc<UserMap>,
    /// Opening applied changes that no snapshot holds yet: one should be taken soon, so that
    /// the next start has little to replay.
    pub(super) snapshot_soon: bool,
}

/// What keeps users' state beyond the map. See the module's contract.
pub(super) trait Backend: Send + Sync {
    /// Makes sure the user is in `map` if the backend holds them. With `create` (a change is
    /// coming), a user nobody knows gets an empty entry, marked changed so that eviction
    /// cannot take it before the change lands; a backend may make one even without it (Redis
    /// caches unknown users, so that anonymous rankings do not ask it each time).
    fn load<'a>(
        &'a self,
        map: &'a UserMap,
        key: UserKey,
        create: bool,
    ) -> BoxFuture<'a, Result<Load, StateError>>;

    /// Reads a user straight from the backend, around the map: what a read falls back on
    /// when the user it just loaded was evicted again at once, under memory pressure.
    fn read_cold(&self, key: UserKey) -> Result<Cold, StateError>;

    /// Refuses a change at once, before anything in memory is touched, when the backend is
    /// known to be unable to take it.
    fn check_writable(&self) -> Result<(), StateError> {
        Ok(())
    }

    /// Takes an op just applied to the user in memory; called under the user's map lock, so
    /// it must not wait. The ticket says what an acknowledgement waits for.
    fn append(&self, key: UserKey, op: &Op) -> Result<Ticket, StateError>;

    /// Waits until everything `ticket` covers is durable (never called with
    /// [`Ticket::NONE`]).
    fn durable(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), StateError>>;

    /// Erases the user: from `map` at once, and from the backend once the returned ticket is
    /// durable (and, for a backend that takes snapshots, once a snapshot started after this
    /// call has finished).
    fn forget(&self, map: &UserMap, key: UserKey) -> Result<Ticket, StateError>;

    /// Whether the backend writes snapshots of the map: then the keeper schedules them, and
    /// users changed since the last one are not evicted.
    fn takes_snapshots(&self) -> bool {
        false
    }

    /// Bytes the backend has logged since its last snapshot.
    fn log_bytes(&self) -> u64 {
        0
    }

    /// Writes a snapshot of the users changed in `map` and returns the rows written. Called
    /// by the keeper alone, one at a time.
    fn snapshot(&self, _map: &UserMap) -> Result<u64, StateError> {
        Ok(0)
    }

    /// Memory the backend holds for its own index of users, counted against the memory cap.
    fn index_bytes(&self) -> usize {
        0
    }

    /// Evicts about `want` of the coldest users from `map`, as this backend can afford to
    /// lose them; returns how many went.
    fn evict(&self, map: &UserMap, want: usize) -> usize;

    /// Stops taking changes; what was already taken is finished.
    fn close(&self) {}

    /// Lets go of what keeps another opener out (the data directory's lock), for a store
    /// abandoned as a crash would leave it ([`super::UserStore::abandon`]).
    fn abandon(&self) {}
}

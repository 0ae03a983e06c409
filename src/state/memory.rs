//! The memory-only backend: state lives as long as the process (tests, benchmarks, throwaway
//! runs). Nothing is written anywhere, so acknowledgements wait for nothing, and eviction
//! loses the coldest users for good (nothing can protect a changed user: no snapshot will
//! ever write them out).

use std::sync::Arc;

use super::StateError;
use super::backend::{Backend, BoxFuture, Cold, Load, Opened, Ticket};
use super::key::{Keyer, UserKey};
use super::map::{Loaded, UserMap};
use super::op::Op;
use super::user::UserState;

pub(super) struct Memory;

impl Memory {
    /// An empty store's backend, under a secret of its own.
    pub(super) fn open() -> Opened {
        Opened {
            backend: Arc::new(Memory),
            keyer: Keyer::random().unwrap_or_else(|_| Keyer::new([0x5a; 16])),
            map: Arc::new(UserMap::new()),
            snapshot_soon: false,
        }
    }
}

impl Backend for Memory {
    fn load<'a>(
        &'a self,
        map: &'a UserMap,
        key: UserKey,
        create: bool,
    ) -> BoxFuture<'a, Result<Load, StateError>> {
        let load = if map.contains(key) {
            Load::Present
        } else if !create {
            Load::Unknown
        } else {
            match map.insert(key, UserState::default(), true, || true) {
                Loaded::Inserted => Load::Inserted,
                Loaded::Present | Loaded::Raced => Load::Present,
            }
        };
        Box::pin(std::future::ready(Ok(load)))
    }

    fn read_cold(&self, _key: UserKey) -> Result<Cold, StateError> {
        Ok(Cold::Unknown)
    }

    fn append(&self, _key: UserKey, _op: &Op) -> Result<Ticket, StateError> {
        Ok(Ticket::NONE)
    }

    fn durable(&self, _ticket: Ticket) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn forget(&self, map: &UserMap, key: UserKey) -> Result<Ticket, StateError> {
        map.remove(key);
        Ok(Ticket::NONE)
    }

    fn evict(&self, map: &UserMap, want: usize) -> usize {
        map.evict_coldest(want, false)
    }
}

//! [`UserMap`]: the users held in memory, the hot cache every ranking reads. Per user: the
//! state, when it was last used (the coldest go first when memory runs short), whether it
//! changed since a snapshot last wrote it out, and which data dimensions rankings relied on.
//!
//! The fields are private: loading, changing, dropping, expiring and evicting a user are
//! methods, so that the memory accounted to the map (slots plus the sum of per-user heap) stays
//! exact whoever does them, and no caller can forget to touch a user it serves.
//!
//! Must not: run anything that waits for I/O while a user's shard is locked (callers that
//! hand an op to a backend under the lock only queue bytes), or put back a user its caller
//! was told had been removed (see [`UserMap::insert`]).

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use dashmap::mapref::one::RefMut;

use super::StateConfig;
use super::key::{PassThrough, UserKey};
use super::user::UserState;
use crate::rank::DimensionSet;

/// One user in memory: 16 bytes beside the key (the state is a thin pointer), so that a
/// slot is 32.
struct Entry {
    state: UserState,
    /// Changed since it was last written out by a snapshot: a backend that takes snapshots
    /// keeps such users from eviction until one has.
    changed: bool,
    /// Seconds since the map was made, at the latest access: the coldest go first.
    touched: AtomicU32,
    /// The data dimensions rankings relied on for this user since they were loaded: shown in
    /// the profile ("what was used recently"). Not durable: it describes this process's work.
    used: AtomicU16,
}

impl Entry {
    fn new(state: UserState, changed: bool, touched: u32) -> Self {
        Self {
            state,
            changed,
            touched: AtomicU32::new(touched),
            used: AtomicU16::new(0),
        }
    }
}

/// What became of a user offered to [`UserMap::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loaded {
    Inserted,
    /// Someone else put the user in the map first: theirs stays.
    Present,
    /// The caller's check said the user was removed while it was being read: what was read
    /// may be old, and was not inserted.
    Raced,
}

/// Every user held in memory.
pub(super) struct UserMap {
    users: DashMap<UserKey, Entry, PassThrough>,
    /// Sum of `heap_bytes` over the users in memory.
    heap: AtomicUsize,
    /// What `touched` counts seconds from.
    epoch: Instant,
    evicted_total: AtomicUsize,
}

/// Bytes of one map slot: key, entry, and hashbrown's control byte, at its 7/8 load.
fn slot_bytes() -> usize {
    (size_of::<(UserKey, Entry)>() + 1) * 8 / 7
}

impl UserMap {
    pub(super) fn new() -> Self {
        Self {
            users: DashMap::default(),
            heap: AtomicUsize::new(0),
            epoch: Instant::now(),
            evicted_total: AtomicUsize::new(0),
        }
    }

    fn now_s(&self) -> u32 {
        self.epoch.elapsed().as_secs() as u32
    }

    fn touch(&self, e: &Entry) {
        let now = self.now_s();
        if e.touched.load(Ordering::Relaxed) != now {
            e.touched.store(now, Ordering::Relaxed);
        }
    }

    fn grow(&self, before: usize, after: usize) {
        if after >= before {
            self.heap.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.heap.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Users in memory.
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub(super) fn contains(&self, key: UserKey) -> bool {
        self.users.contains_key(&key)
    }

    /// Memory the map takes: its slots and every user's heap.
    pub(super) fn bytes(&self) -> usize {
        self.users.capacity() * slot_bytes() + self.heap.load(Ordering::Relaxed)
    }

    /// Users evicted since the map was made.
    pub(super) fn evicted_total(&self) -> usize {
        self.evicted_total.load(Ordering::Relaxed)
    }

    /// Runs `f` on the user's state under a shared lock, and marks the user used now. `None`
    /// when the user is not in memory.
    pub(super) fn read<R>(&self, key: UserKey, f: impl FnOnce(&UserState) -> R) -> Option<R> {
        let e = self.users.get(&key)?;
        self.touch(&e);
        Some(f(&e.state))
    }

    /// Locks the user for a change and marks them used now. `None` when the user is not in
    /// memory.
    pub(super) fn lock(&self, key: UserKey) -> Option<Locked<'_>> {
        let entry = self.users.get_mut(&key)?;
        self.touch(&entry);
        Some(Locked {
            map: self,
            entry,
            grew: false,
        })
    }

    /// Data dimensions rankings relied on for the user since they were loaded (`None`: not
    /// in memory).
    pub(super) fn used(&self, key: UserKey) -> Option<DimensionSet> {
        let e = self.users.get(&key)?;
        Some(DimensionSet::from_bits(e.used.load(Ordering::Relaxed)))
    }

    /// Notes that a ranking relied on these dimensions for the user, if in memory.
    pub(super) fn note_used(&self, key: UserKey, dims: DimensionSet) {
        if let Some(e) = self.users.get(&key) {
            e.used.fetch_or(dims.bits(), Ordering::Relaxed);
        }
    }

    /// Puts a user just read from a backend into the map, as the hottest user, unless someone
    /// put them there first or `current` (asked with the user's shard locked, so that no
    /// removal slips between the question and the insert) says what was read is out of date.
    /// `changed`: a change is about to be applied, so eviction must not take the user first.
    pub(super) fn insert(
        &self,
        key: UserKey,
        state: UserState,
        changed: bool,
        current: impl FnOnce() -> bool,
    ) -> Loaded {
        let heap = state.heap_bytes();
        match self.users.entry(key) {
            dashmap::Entry::Occupied(_) => return Loaded::Present,
            dashmap::Entry::Vacant(slot) => {
                if !current() {
                    return Loaded::Raced;
                }
                slot.insert(Entry::new(state, changed, self.now_s()));
            }
        }
        self.heap.fetch_add(heap, Ordering::Relaxed);
        Loaded::Inserted
    }

    /// A user recovered from disk at start-up: unchanged, and as cold as can be.
    pub(super) fn insert_recovered(&self, key: UserKey, state: UserState) {
        let heap = state.heap_bytes();
        if let Some(old) = self.users.insert(key, Entry::new(state, false, 0)) {
            self.heap
                .fetch_sub(old.state.heap_bytes(), Ordering::Relaxed);
        }
        self.heap.fetch_add(heap, Ordering::Relaxed);
    }

    /// Applies a logged op during recovery: the user is marked changed (the snapshot does
    /// not hold it yet), whatever `f` says, and is left as cold as it was. `false` when the
    /// user is not in memory.
    pub(super) fn replay(&self, key: UserKey, f: impl FnOnce(&mut UserState)) -> bool {
        let Some(mut e) = self.users.get_mut(&key) else {
            return false;
        };
        let before = e.state.heap_bytes();
        f(&mut e.state);
        let after = e.state.heap_bytes();
        e.changed = true;
        drop(e);
        self.grow(before, after);
        true
    }

    /// Removes a user; the next access reads the backend again. True if they were here.
    pub(super) fn remove(&self, key: UserKey) -> bool {
        match self.users.remove(&key) {
            Some((_, e)) => {
                self.heap.fetch_sub(e.state.heap_bytes(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Removes every user.
    pub(super) fn clear(&self) {
        let mut freed = 0;
        self.users.retain(|_, e| {
            freed += e.state.heap_bytes();
            false
        });
        self.heap.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Drops expired counters and feedback. Counters may be approximate, so this does not
    /// mark anyone changed.
    pub(super) fn expire(&self, now_ms: i64, config: &StateConfig) {
        let mut delta: isize = 0;
        self.users.iter_mut().for_each(|mut e| {
            let before = e.state.heap_bytes() as isize;
            if e.state.expire(now_ms, config) {
                delta += e.state.heap_bytes() as isize - before;
            }
        });
        if delta < 0 {
            self.heap.fetch_sub((-delta) as usize, Ordering::Relaxed);
        } else {
            self.heap.fetch_add(delta as usize, Ordering::Relaxed);
        }
    }

    /// The users changed since they were last written out, in key order.
    pub(super) fn changed(&self) -> Vec<UserKey> {
        let mut keys: Vec<UserKey> = self
            .users
            .iter()
            .filter(|e| e.changed)
            .map(|e| *e.key())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Writes a user out: under the user's lock, expires what is stale and runs `f` on the
    /// rest; if `f` succeeds, the user counts as unchanged from then on. `None` when the user
    /// is not in memory.
    pub(super) fn write_out<T, E>(
        &self,
        key: UserKey,
        now_ms: i64,
        config: &StateConfig,
        f: impl FnOnce(&UserState) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        let mut e = self.users.get_mut(&key)?;
        let before = e.state.heap_bytes();
        e.state.expire(now_ms, config);
        let after = e.state.heap_bytes();
        self.heap
            .fetch_sub(before.saturating_sub(after), Ordering::Relaxed);
        let out = f(&e.state);
        if out.is_ok() {
            e.changed = false;
        }
        Some(out)
    }

    /// Evicts up to `want` of the coldest users in one pass; with `spare_changed`, users
    /// changed since they were last written out are kept. Returns how many went.
    pub(super) fn evict_coldest(&self, want: usize, spare_changed: bool) -> usize {
        let evictable = |e: &Entry| !(spare_changed && e.changed);
        let mut ages: Vec<u32> = self
            .users
            .iter()
            .filter(|e| evictable(e))
            .map(|e| e.touched.load(Ordering::Relaxed))
            .collect();
        if ages.is_empty() || want == 0 {
            return 0;
        }
        let nth = want.min(ages.len()) - 1;
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        let mut removed = 0;
        let mut freed = 0;
        self.users.retain(|_, e| {
            let keep =
                !evictable(e) || e.touched.load(Ordering::Relaxed) > cutoff || removed >= want;
            if !keep {
                removed += 1;
                freed += e.state.heap_bytes();
            }
            keep
        });
        self.heap.fetch_sub(freed, Ordering::Relaxed);
        self.evicted(removed)
    }

    /// Evicts the `want` coldest users one by one, each announced to `before_removal` first
    /// (so that a backend can stop a read in flight from putting them back); a user used
    /// since they were picked stays. Returns how many went.
    pub(super) fn evict_each(&self, want: usize, before_removal: impl Fn(UserKey)) -> usize {
        let mut ages: Vec<(u32, UserKey)> = self
            .users
            .iter()
            .map(|e| (e.touched.load(Ordering::Relaxed), *e.key()))
            .collect();
        if ages.is_empty() || want == 0 {
            return 0;
        }
        let nth = want.min(ages.len()) - 1;
        ages.select_nth_unstable(nth);
        let mut removed = 0;
        for &(touched, key) in &ages[..=nth] {
            if self
                .users
                .get(&key)
                .is_some_and(|e| e.touched.load(Ordering::Relaxed) <= touched)
            {
                before_removal(key);
                self.remove(key);
                removed += 1;
            }
        }
        self.evicted(removed)
    }

    fn evicted(&self, removed: usize) -> usize {
        self.evicted_total.fetch_add(removed, Ordering::Relaxed);
        if self.users.len() < self.users.capacity() / 4 {
            self.users.shrink_to_fit();
        }
        removed
    }
}

/// A user locked for a change (the shard stays locked until this is dropped).
pub(super) struct Locked<'a> {
    map: &'a UserMap,
    entry: RefMut<'a, UserKey, Entry>,
    grew: bool,
}

impl Locked<'_> {
    /// Changes the user's state; if `f` succeeds, the memory it took or freed is accounted
    /// and the user is marked changed.
    pub(super) fn change<E>(
        &mut self,
        f: impl FnOnce(&mut UserState) -> Result<(), E>,
    ) -> Result<(), E> {
        let before = self.entry.state.heap_bytes();
        f(&mut self.entry.state)?;
        let after = self.entry.state.heap_bytes();
        self.map.grow(before, after);
        self.grew |= after > before;
        self.entry.changed = true;
        Ok(())
    }

    /// Whether a change made the user take more memory.
    pub(super) fn grew(&self) -> bool {
        self.grew
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Event, EventKind, Op};

    fn blocked(brand: u64) -> Op {
        let mut e = Event::new(EventKind::BlockBrand, 1);
        e.brand_id = brand;
        Op::Event(e)
    }

    fn key(n: u8) -> UserKey {
        UserKey([n; 16])
    }

    #[test]
    fn memory_is_accounted_through_every_path() {
        let cfg = StateConfig::default();
        let map = UserMap::new();
        let empty = map.bytes();
        assert_eq!(
            map.insert(key(1), UserState::default(), true, || true),
            Loaded::Inserted
        );
        assert_eq!(
            map.insert(key(1), UserState::default(), false, || true),
            Loaded::Present
        );
        assert_eq!(
            map.insert(key(2), UserState::default(), false, || false),
            Loaded::Raced
        );
        let mut user = map.lock(key(1)).unwrap();
        user.change(|s| blocked(7).apply(s, &cfg)).unwrap();
        assert!(user.grew());
        drop(user);
        let heap = map.read(key(1), |s| s.heap_bytes()).unwrap();
        assert!(heap > 0);
        assert_eq!(map.changed(), vec![key(1)]);
        assert!(
            map.write_out(key(1), 1, &cfg, |_| Ok::<_, ()>(()))
                .is_some()
        );
        assert!(map.changed().is_empty());
        map.insert_recovered(key(3), UserState::default());
        assert!(map.replay(key(3), |s| blocked(8).apply(s, &cfg).unwrap()));
        assert_eq!(map.changed(), vec![key(3)]);
        assert!(map.remove(key(1)));
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.heap.load(Ordering::Relaxed), 0);
        assert!(map.bytes() >= empty);
    }

    #[test]
    fn a_slot_is_a_key_and_sixteen_bytes() {
        // The state is a thin pointer: with the last use, the dimensions used and the
        // changed flag, an entry fills 16 bytes, and a slot 32 (plus its control byte).
        assert_eq!(size_of::<Entry>(), 16);
        assert_eq!(size_of::<(UserKey, Entry)>(), 32);
    }

    #[test]
    fn eviction_can_spare_the_changed_and_announces_each_removal() {
        let cfg = StateConfig::default();
        let map = UserMap::new();
        for n in 0..4 {
            map.insert_recovered(key(n), UserState::default());
        }
        map.replay(key(0), |s| blocked(1).apply(s, &cfg).unwrap());
        assert_eq!(map.evict_coldest(10, true), 3);
        assert!(map.contains(key(0)), "changed users are spared");
        let dropped = std::sync::Mutex::new(Vec::new());
        assert_eq!(map.evict_each(10, |k| dropped.lock().unwrap().push(k)), 1);
        assert_eq!(dropped.into_inner().unwrap(), vec![key(0)]);
        assert!(map.is_empty());
        assert_eq!(map.evicted_total(), 4);
        assert_eq!(map.heap.load(Ordering::Relaxed), 0);
    }
}

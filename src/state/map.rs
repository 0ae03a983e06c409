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

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use dashmap::mapref::one::RefMut;

use super::StateConfig;
use super::key::{PassThrough, UserKey};
use super::user::{LEAD, UserState};
use crate::rank::DimensionSet;

/// The map's record of a user, in the bytes before their state ([`LEAD`]), so that a slot is
/// the key and the state's thin pointer (24 bytes) and the record costs the user 4 bytes of
/// an allocation that usually had room for them. Bytes 0 and 1: the latest use, in seconds
/// since the map was made, modulo 2^16 (ages are counted modulo 2^16 as well, and no user is
/// left older than [`OLDEST`], so they compare right); bytes 2 and 3: the data dimensions
/// rankings relied on since the user was loaded (the low 15 bits; not durable: it describes
/// this process's work), and in the top bit whether the user changed since a snapshot last
/// wrote them out (a backend that takes snapshots keeps such users from eviction until one
/// has). Every byte is an atomic: rankings note their use under a shared lock.
struct Lead<'a>(&'a [AtomicU8]);

/// Oldest age a user is given (about 9 hours): older users are as cold as each other.
const OLDEST: u16 = 1 << 15;
const CHANGED: u8 = 0x80;

impl<'a> Lead<'a> {
    fn of(state: &'a UserState) -> Self {
        // Every state the map holds was given room for its lead (`UserMap::admit`), and
        // keeps it through every change (`keeping_lead`).
        Lead(state.lead().expect("a user in the map has a lead"))
    }

    fn touched(&self) -> u16 {
        u16::from_le_bytes([0, 1].map(|i| self.0[i].load(Ordering::Relaxed)))
    }

    fn set_touched(&self, t: u16) {
        for (b, v) in self.0[..2].iter().zip(t.to_le_bytes()) {
            b.store(v, Ordering::Relaxed);
        }
    }

    fn age(&self, now: u16) -> u16 {
        now.wrapping_sub(self.touched())
    }

    fn used(&self) -> u16 {
        u16::from_le_bytes([2, 3].map(|i| self.0[i].load(Ordering::Relaxed))) & 0x7fff
    }

    fn note_used(&self, bits: u16) {
        debug_assert!(bits < 0x8000, "15 bits of dimensions");
        let [lo, hi] = bits.to_le_bytes();
        if lo != 0 {
            self.0[2].fetch_or(lo, Ordering::Relaxed);
        }
        if hi != 0 {
            self.0[3].fetch_or(hi & !CHANGED, Ordering::Relaxed);
        }
    }

    fn changed(&self) -> bool {
        self.0[3].load(Ordering::Relaxed) & CHANGED != 0
    }

    fn set_changed(&self, changed: bool) {
        if changed {
            self.0[3].fetch_or(CHANGED, Ordering::Relaxed);
        } else {
            self.0[3].fetch_and(!CHANGED, Ordering::Relaxed);
        }
    }

    fn load(&self) -> [u8; LEAD] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }

    fn store(&self, bytes: [u8; LEAD]) {
        for (b, v) in self.0.iter().zip(bytes) {
            b.store(v, Ordering::Relaxed);
        }
    }
}

/// Runs a change on a user's state, keeping the map's record in front of it whatever the
/// change did to the allocation.
fn keeping_lead<R>(state: &mut UserState, f: impl FnOnce(&mut UserState) -> R) -> R {
    let lead = Lead::of(state).load();
    let out = f(state);
    state.keep_lead();
    Lead::of(state).store(lead);
    out
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
    users: DashMap<UserKey, UserState, PassThrough>,
    /// Sum of `heap_bytes` over the users in memory.
    heap: AtomicUsize,
    /// What last-use times count seconds from.
    epoch: Instant,
    /// Seconds added to the clock (tests, to cross the wrap of last-use times).
    skew: u32,
    evicted_total: AtomicUsize,
}

/// Bytes of one map slot: key, state pointer, and hashbrown's control byte, at its 7/8 load.
fn slot_bytes() -> usize {
    (size_of::<(UserKey, UserState)>() + 1) * 8 / 7
}

impl UserMap {
    pub(super) fn new() -> Self {
        Self {
            users: DashMap::default(),
            heap: AtomicUsize::new(0),
            epoch: Instant::now(),
            skew: 0,
            evicted_total: AtomicUsize::new(0),
        }
    }

    /// Now, as last-use times count it.
    fn now(&self) -> u16 {
        (self.epoch.elapsed().as_secs() as u32).wrapping_add(self.skew) as u16
    }

    fn touch(&self, state: &UserState) {
        let now = self.now();
        let lead = Lead::of(state);
        if lead.touched() != now {
            lead.set_touched(now);
        }
    }

    /// A state about to enter the map, given its record.
    fn admit(mut state: UserState, changed: bool, touched: u16) -> UserState {
        state.keep_lead();
        let lead = Lead::of(&state);
        lead.store([0; LEAD]);
        lead.set_touched(touched);
        lead.set_changed(changed);
        state
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
        Some(f(&e))
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
        Some(DimensionSet::from_bits(Lead::of(&e).used()))
    }

    /// Notes that a ranking relied on these dimensions for the user, if in memory.
    pub(super) fn note_used(&self, key: UserKey, dims: DimensionSet) {
        if let Some(e) = self.users.get(&key) {
            Lead::of(&e).note_used(dims.bits());
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
        let heap;
        match self.users.entry(key) {
            dashmap::Entry::Occupied(_) => return Loaded::Present,
            dashmap::Entry::Vacant(slot) => {
                if !current() {
                    return Loaded::Raced;
                }
                let state = Self::admit(state, changed, self.now());
                heap = state.heap_bytes();
                slot.insert(state);
            }
        }
        self.heap.fetch_add(heap, Ordering::Relaxed);
        Loaded::Inserted
    }

    /// A user recovered from disk at start-up: unchanged, and as cold as can be.
    pub(super) fn insert_recovered(&self, key: UserKey, state: UserState) {
        let state = Self::admit(state, false, self.now().wrapping_sub(OLDEST));
        let heap = state.heap_bytes();
        if let Some(old) = self.users.insert(key, state) {
            self.heap.fetch_sub(old.heap_bytes(), Ordering::Relaxed);
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
        let before = e.heap_bytes();
        keeping_lead(&mut e, f);
        let after = e.heap_bytes();
        Lead::of(&e).set_changed(true);
        drop(e);
        self.grow(before, after);
        true
    }

    /// Removes a user; the next access reads the backend again. True if they were here.
    pub(super) fn remove(&self, key: UserKey) -> bool {
        match self.users.remove(&key) {
            Some((_, state)) => {
                self.heap.fetch_sub(state.heap_bytes(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Removes every user.
    pub(super) fn clear(&self) {
        let mut freed = 0;
        self.users.retain(|_, state| {
            freed += state.heap_bytes();
            false
        });
        self.heap.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Drops expired counters and feedback. Counters may be approximate, so this does not
    /// mark anyone changed. Users unused for longer than [`OLDEST`] are kept at that age, so
    /// that last-use times never wrap into looking recent (this runs every minute).
    pub(super) fn expire(&self, now_ms: i64, config: &StateConfig) {
        let now = self.now();
        let mut delta: isize = 0;
        self.users.iter_mut().for_each(|mut e| {
            let lead = Lead::of(&e);
            if lead.age(now) > OLDEST {
                lead.set_touched(now.wrapping_sub(OLDEST));
            }
            let before = e.heap_bytes() as isize;
            if keeping_lead(&mut e, |s| s.expire(now_ms, config)) {
                delta += e.heap_bytes() as isize - before;
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
            .filter(|e| Lead::of(e).changed())
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
        let before = e.heap_bytes();
        keeping_lead(&mut e, |s| s.expire(now_ms, config));
        let after = e.heap_bytes();
        self.grow(before, after);
        let out = f(&e);
        if out.is_ok() {
            Lead::of(&e).set_changed(false);
        }
        Some(out)
    }

    /// Evicts up to `want` of the coldest users in one pass; with `spare_changed`, users
    /// changed since they were last written out are kept. Returns how many went.
    pub(super) fn evict_coldest(&self, want: usize, spare_changed: bool) -> usize {
        let now = self.now();
        let evictable = |lead: &Lead| !(spare_changed && lead.changed());
        let mut ages: Vec<u16> = self
            .users
            .iter()
            .filter_map(|e| {
                let lead = Lead::of(&e);
                evictable(&lead).then(|| lead.age(now))
            })
            .collect();
        if ages.is_empty() || want == 0 {
            return 0;
        }
        let nth = want.min(ages.len()) - 1;
        let (_, cutoff, _) = ages.select_nth_unstable_by(nth, |a, b| b.cmp(a));
        let cutoff = *cutoff;
        let mut removed = 0;
        let mut freed = 0;
        self.users.retain(|_, state| {
            let lead = Lead::of(state);
            let keep = !evictable(&lead) || lead.age(now) < cutoff || removed >= want;
            if !keep {
                removed += 1;
                freed += state.heap_bytes();
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
        let now = self.now();
        let mut ages: Vec<(u16, u16, UserKey)> = self
            .users
            .iter()
            .map(|e| {
                let lead = Lead::of(&e);
                (lead.age(now), lead.touched(), *e.key())
            })
            .collect();
        if ages.is_empty() || want == 0 {
            return 0;
        }
        let nth = want.min(ages.len()) - 1;
        ages.select_nth_unstable_by(nth, |a, b| b.0.cmp(&a.0));
        let mut removed = 0;
        for &(_, touched, key) in &ages[..=nth] {
            if self
                .users
                .get(&key)
                .is_some_and(|e| Lead::of(&e).touched() == touched)
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
    entry: RefMut<'a, UserKey, UserState>,
    grew: bool,
}

impl Locked<'_> {
    /// Changes the user's state: the memory it took or freed is accounted whatever `f`
    /// returns (a failed change may have moved the buffer), and if it succeeds the user is
    /// marked changed.
    pub(super) fn change<E>(
        &mut self,
        f: impl FnOnce(&mut UserState) -> Result<(), E>,
    ) -> Result<(), E> {
        let before = self.entry.heap_bytes();
        let out = keeping_lead(&mut self.entry, f);
        let after = self.entry.heap_bytes();
        self.map.grow(before, after);
        out?;
        self.grew |= after > before;
        Lead::of(&self.entry).set_changed(true);
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
    use crate::rank::DataDimension;
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
    fn a_slot_is_a_key_and_a_pointer() {
        // The last use, the dimensions used and the changed flag are in the state's lead.
        assert_eq!(size_of::<(UserKey, UserState)>(), 24);
    }

    fn set_touched(map: &UserMap, k: UserKey, t: u16) {
        Lead::of(&map.users.get(&k).unwrap()).set_touched(t);
    }

    fn age(map: &UserMap, k: UserKey) -> u16 {
        Lead::of(&map.users.get(&k).unwrap()).age(map.now())
    }

    #[test]
    fn the_record_in_front_of_a_state_survives_every_change() {
        let cfg = StateConfig::default();
        let map = UserMap::new();
        map.insert(key(1), UserState::default(), false, || true);
        let used = DimensionSet::of([DataDimension::Search, DataDimension::Editorial]);
        map.note_used(key(1), used);
        set_touched(&map, key(1), 12_345);
        let mut user = map.lock(key(1)).unwrap();
        // The lock marks the user used now.
        assert_eq!(Lead::of(&user.entry).touched(), map.now());
        Lead::of(&user.entry).set_touched(12_345);
        user.change(|s| blocked(7).apply(s, &cfg)).unwrap();
        // A change that fails, and one that throws the whole state away.
        assert!(
            user.change(|s| {
                *s = UserState::default();
                Err(())
            })
            .is_err()
        );
        drop(user);
        let lead = |map: &UserMap| {
            let e = map.users.get(&key(1)).unwrap();
            let l = Lead::of(&e);
            (l.touched(), DimensionSet::from_bits(l.used()), l.changed())
        };
        assert_eq!(lead(&map), (12_345, used, true));
        assert!(map.read(key(1), |s| s.is_empty()).unwrap());
        assert!(
            map.write_out(key(1), 1, &cfg, |_| Ok::<_, ()>(()))
                .is_some()
        );
        assert!(!lead(&map).2, "written out");
        assert_eq!(map.used(key(1)), Some(used));
        map.replay(key(1), |s| blocked(8).apply(s, &cfg).unwrap());
        assert!(lead(&map).2);
        assert_eq!(map.used(key(1)), Some(used));
        assert_eq!(
            map.heap.load(Ordering::Relaxed),
            map.read(key(1), |s| s.heap_bytes()).unwrap()
        );
    }

    #[test]
    fn ages_count_across_the_wrap_of_last_use_times_and_stop_at_the_oldest() {
        let cfg = StateConfig::default();
        let map = UserMap {
            skew: 10,
            ..UserMap::new()
        };
        for n in 0..4 {
            map.insert(key(n), UserState::default(), false, || true);
        }
        // 0: used just before the clock wrapped, 1: just after; 2: long ago; 3: recovered.
        set_touched(&map, key(0), 65_530);
        set_touched(&map, key(1), 3);
        set_touched(&map, key(2), 10u16.wrapping_sub(40_000));
        map.remove(key(3));
        map.insert_recovered(key(3), UserState::default());
        assert!(age(&map, key(0)) > age(&map, key(1)));
        assert_eq!(age(&map, key(3)), OLDEST);
        map.expire(1, &cfg);
        assert_eq!(age(&map, key(2)), OLDEST, "kept at the oldest age");
        assert_eq!(map.evict_coldest(2, false), 2);
        assert!(map.contains(key(0)) && map.contains(key(1)));
        assert_eq!(map.evict_coldest(1, false), 1);
        assert!(
            map.contains(key(1)),
            "the one used after the wrap is the warmest"
        );
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

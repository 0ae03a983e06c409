//! List caps (a policy's `[hard_caps]`): at most `max` items of one category, brand or shop
//! in the whole list, and at most `max_in_window` of one within any `window` consecutive
//! positions. Unlike diversity weights, a cap is never traded against relevance: a candidate
//! that would break one is not placed, and when every remaining candidate would, the list ends
//! shorter than `k`. Not to be confused with the frequency cap (`frequency_cap.rs`), which
//! holds back an item the user has been shown too often, across lists.
//!
//! The selection loop (`select/mod.rs`) asks [`ListCapTracker::allowed`] for each candidate
//! at each position, so the check is three array lookups: groups are numbered densely per
//! request and their counts kept in vectors, never hashed in the loop. Unknown ids (0) are
//! never capped.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::rank::kernel::Parallelism;
use crate::rank::types::RankInput;

/// The caps for one attribute (category, brand or shop). All zeros: no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupCap {
    /// At most this many items of one group in the list; 0 = no cap.
    pub max: usize,
    /// The length of the sliding window; 0 = no window cap.
    pub window: usize,
    /// At most this many items of one group within any `window` consecutive positions.
    pub max_in_window: usize,
}

impl GroupCap {
    fn windowed(&self) -> bool {
        self.window > 0
    }

    fn is_active(&self) -> bool {
        self.max > 0 || self.windowed()
    }
}

/// Off by default: a cap removes items whatever their relevance, so it is the platform's call
/// (e.g. "never more than 2 of one brand in any 5 positions" for a marketplace).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListCapParams {
    pub category: GroupCap,
    pub brand: GroupCap,
    pub shop: GroupCap,
}

/// A group's dense number within one request; `UNKNOWN` for id 0.
pub const UNKNOWN: u32 = u32::MAX;

impl ListCapParams {
    pub fn is_active(&self) -> bool {
        self.caps().iter().any(GroupCap::is_active)
    }

    fn caps(&self) -> [GroupCap; 3] {
        [self.category, self.brand, self.shop]
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, cap) in [
            ("category", self.category),
            ("brand", self.brand),
            ("shop", self.shop),
        ] {
            if cap.windowed() && !(2..=1000).contains(&cap.window) {
                return Err((
                    format!("hard_caps.{name}.window"),
                    "must be 0 (no window cap) or from 2 to 1000".into(),
                ));
            }
            if cap.windowed() && !(1..cap.window).contains(&cap.max_in_window) {
                return Err((
                    format!("hard_caps.{name}.max_in_window"),
                    "must be at least 1 and below the window (else the cap does nothing)".into(),
                ));
            }
            if !cap.windowed() && cap.max_in_window > 0 {
                return Err((
                    format!("hard_caps.{name}.window"),
                    "max_in_window needs a window".into(),
                ));
            }
        }
        Ok(())
    }

    /// The tracker for a request whose attributes have `groups` distinct values each (as
    /// [`number_groups`] numbers them).
    pub fn tracker(&self, groups: [usize; 3]) -> ListCapTracker {
        let caps = self.caps();
        let attrs = std::array::from_fn(|a| AttrState::new(caps[a], groups[a]));
        ListCapTracker { attrs }
    }
}

/// Per pool candidate, its category, brand and shop numbered densely per attribute from 0
/// ([`UNKNOWN`] for id 0), and how many distinct values each attribute has: what lets a
/// selection count groups in vectors instead of hashing ids in its loop.
///
/// Each attribute is numbered in one walk in pool order through a small open-addressing
/// table ([`Numbering`]: a multiply and a compare or two per id, where sorting (id, position)
/// pairs cost 270 instructions per candidate at N = 100 and SipHash more). Ids chosen to
/// collide cannot make it slow: a probe longer than [`MAX_PROBE`] gives up the table for that
/// attribute, which is then numbered by sorting ([`number_by_sorting`]), as it used to be.
///
/// A long pool (`parallelism` splits it) numbers its three attributes on the pool's threads
/// at once, each into its own column; a short one numbers them one after the other.
pub fn number_groups(
    input: &RankInput,
    pool: &[usize],
    parallelism: Parallelism,
) -> (Vec<[u32; 3]>, [usize; 3]) {
    let mut groups = vec![[UNKNOWN; 3]; pool.len()];
    let mut counts = [0; 3];
    if parallelism.splits_candidates(pool.len()) {
        let column = |a: usize| {
            let mut column = vec![UNKNOWN; pool.len()];
            let count =
                number_attribute(input, pool, a, &mut Numbering::new(pool.len()), |pos, n| {
                    column[pos] = n
                });
            (column, count)
        };
        let (first, (second, third)) =
            rayon::join(|| column(0), || rayon::join(|| column(1), || column(2)));
        for (a, (column, count)) in [first, second, third].into_iter().enumerate() {
            for (g, n) in groups.iter_mut().zip(column) {
                g[a] = n;
            }
            counts[a] = count;
        }
        return (groups, counts);
    }
    let mut table = Numbering::new(pool.len());
    for (a, count) in counts.iter_mut().enumerate() {
        *count = number_attribute(input, pool, a, &mut table, |pos, n| groups[pos][a] = n);
    }
    (groups, counts)
}

/// Numbers attribute `a` (0 category, 1 brand, 2 shop) of the pool's candidates, calling
/// `set(position, number)` for each known id (and again for every position if the table gives
/// up and sorting takes over); returns how many distinct ids there are.
fn number_attribute(
    input: &RankInput,
    pool: &[usize],
    a: usize,
    table: &mut Numbering,
    mut set: impl FnMut(usize, u32),
) -> usize {
    let id_of = |i: usize| {
        let c = &input.candidates[i];
        [c.category_id, c.brand_id, c.shop_id][a]
    };
    table.clear();
    let numbered = pool.iter().enumerate().all(|(pos, &i)| {
        let id = id_of(i);
        if id == 0 {
            return true;
        }
        match table.number(id) {
            Some(n) => {
                set(pos, n);
                true
            }
            None => false,
        }
    });
    if numbered {
        return table.next as usize;
    }
    let ids: Vec<u64> = pool.iter().map(|&i| id_of(i)).collect();
    let mut column = vec![[UNKNOWN; 3]; pool.len()];
    let count = number_by_sorting(&ids, &mut column, 0);
    for (pos, g) in column.iter().enumerate() {
        set(pos, g[0]);
    }
    count
}

/// The longest probe [`Numbering`] makes before it gives up. With the table at most half
/// full, random ids need about 1.5 probes on average; 32 is only reached by ids chosen to
/// collide.
const MAX_PROBE: usize = 32;

/// The most slots a [`Numbering`] starts with. Lists of thousands of candidates usually come
/// from tens or hundreds of categories, brands and shops: a table sized for the list (two slots
/// per candidate) would be megabytes to allocate and clear for a few hundred ids, so it starts
/// small and doubles as ids arrive.
const INITIAL_SLOTS: usize = 256;

/// Numbers non-zero ids densely in order of first appearance: an open-addressing table
/// (linear probing, Fibonacci hashing on the id's high bits), at most half full, which doubles
/// when an id would fill it past half.
struct Numbering {
    /// 0 marks an empty slot (0 is never numbered).
    keys: Vec<u64>,
    numbers: Vec<u32>,
    shift: u32,
    next: u32,
}

impl Numbering {
    /// A table for up to `n` ids, starting at most [`INITIAL_SLOTS`] wide.
    fn new(n: usize) -> Self {
        Self::with_slots((2 * n).next_power_of_two().clamp(16, INITIAL_SLOTS))
    }

    fn with_slots(slots: usize) -> Self {
        Self {
            keys: vec![0; slots],
            numbers: vec![0; slots],
            shift: 64 - slots.trailing_zeros(),
            next: 0,
        }
    }

    fn clear(&mut self) {
        self.keys.fill(0);
        self.next = 0;
    }

    #[inline]
    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// `id`'s number (a new one the first time it is seen); `None` after [`MAX_PROBE`] taken
    /// slots, when the table no longer holds all ids seen so far.
    #[inline]
    fn number(&mut self, id: u64) -> Option<u32> {
        let mask = self.keys.len() - 1;
        let mut slot = self.home(id);
        for _ in 0..MAX_PROBE {
            let key = self.keys[slot];
            if key == id {
                return Some(self.numbers[slot]);
            }
            if key == 0 {
                if 2 * (self.next as usize + 1) > self.keys.len() {
                    return self.grow_and_number(id);
                }
                self.keys[slot] = id;
                self.numbers[slot] = self.next;
                self.next += 1;
                return Some(self.next - 1);
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    /// Doubles the table, keeping every id's number, then numbers `id` (which it does not
    /// hold); `None` if a probe in the larger table is too long (ids chosen to collide), as
    /// [`Numbering::number`] would say. Not recursive, so that `number` stays inlined.
    #[cold]
    #[inline(never)]
    fn grow_and_number(&mut self, id: u64) -> Option<u32> {
        let mut wider = Self::with_slots(2 * self.keys.len());
        for (&key, &number) in self.keys.iter().zip(&self.numbers) {
            if key != 0 {
                wider.put(key, number)?;
            }
        }
        wider.next = self.next + 1;
        wider.put(id, self.next)?;
        *self = wider;
        Some(self.next - 1)
    }

    /// Puts an id the table does not hold into the first empty slot of its probe.
    fn put(&mut self, id: u64, number: u32) -> Option<()> {
        let mask = self.keys.len() - 1;
        let mut slot = self.home(id);
        for _ in 0..MAX_PROBE {
            if self.keys[slot] == 0 {
                self.keys[slot] = id;
                self.numbers[slot] = number;
                return Some(());
            }
            slot = (slot + 1) & mask;
        }
        None
    }
}

/// Numbers attribute `a` of `groups` from `ids` (pool order, 0 = unknown) by sorting: one sort
/// of (id, position) keys finds the runs of equal ids, and a walk in pool order numbers the runs
/// as they first appear. Returns how many distinct ids there are. Whatever the ids, it costs
/// one sort.
fn number_by_sorting(ids: &[u64], groups: &mut [[u32; 3]], a: usize) -> usize {
    // (id << 32 | position): one integer compare per step of the sort.
    let mut keyed: Vec<u128> = ids
        .iter()
        .enumerate()
        .filter(|&(_, &id)| id != 0)
        .map(|(pos, &id)| (u128::from(id) << 32) | pos as u128)
        .collect();
    keyed.sort_unstable();
    for g in groups.iter_mut() {
        g[a] = UNKNOWN;
    }
    // Each position gets its run's index first, then the run's number.
    let mut runs = 0u32;
    let mut previous = None;
    for &k in &keyed {
        let id = (k >> 32) as u64;
        if previous != Some(id) {
            previous = Some(id);
            runs += 1;
        }
        groups[(k as u32) as usize][a] = runs - 1;
    }
    let mut number_of_run = vec![UNKNOWN; runs as usize];
    let mut next = 0;
    for g in groups.iter_mut() {
        if g[a] != UNKNOWN {
            let number = &mut number_of_run[g[a] as usize];
            if *number == UNKNOWN {
                *number = next;
                next += 1;
            }
            g[a] = *number;
        }
    }
    next as usize
}

/// Where the list stands against the caps, position by position.
pub struct ListCapTracker {
    attrs: [AttrState; 3],
}

struct AttrState {
    cap: GroupCap,
    total: Vec<u32>,
    in_window: Vec<u32>,
    /// The groups of the last `window - 1` positions, oldest first.
    recent: VecDeque<u32>,
    /// Per group: placing one more would break a cap.
    closed: Vec<bool>,
}

impl AttrState {
    fn new(cap: GroupCap, groups: usize) -> Self {
        let n = if cap.is_active() { groups } else { 0 };
        Self {
            cap,
            total: vec![0; n],
            in_window: vec![0; if cap.windowed() { n } else { 0 }],
            recent: VecDeque::with_capacity(cap.window),
            closed: vec![false; n],
        }
    }

    fn update(&mut self, g: u32) {
        let g = g as usize;
        let full = self.cap.max > 0 && self.total[g] >= self.cap.max as u32;
        let crowded = self.cap.windowed() && self.in_window[g] >= self.cap.max_in_window as u32;
        self.closed[g] = full || crowded;
    }

    fn place(&mut self, g: u32) {
        if !self.cap.is_active() {
            return;
        }
        if g != UNKNOWN {
            self.total[g as usize] += 1;
        }
        if self.cap.windowed() {
            // The window slides one position whatever was placed, an unknown id included.
            self.recent.push_back(g);
            if g != UNKNOWN {
                self.in_window[g as usize] += 1;
            }
            if self.recent.len() > self.cap.window - 1
                && let Some(old) = self.recent.pop_front()
                && old != UNKNOWN
            {
                self.in_window[old as usize] -= 1;
                self.update(old);
            }
        }
        if g != UNKNOWN {
            self.update(g);
        }
    }
}

impl ListCapTracker {
    /// Whether a candidate of these groups may take the next position.
    #[inline]
    pub fn allowed(&self, g: [u32; 3]) -> bool {
        self.attrs
            .iter()
            .zip(g)
            .all(|(a, g)| g == UNKNOWN || a.closed.get(g as usize).is_none_or(|c| !c))
    }

    /// Whether a candidate of these groups may still be placed at some later position (no
    /// total cap of its groups is reached).
    pub fn possible(&self, g: [u32; 3]) -> bool {
        self.attrs
            .iter()
            .zip(g)
            .all(|(a, g)| g == UNKNOWN || a.cap.max == 0 || a.total[g as usize] < a.cap.max as u32)
    }

    /// Records a candidate of these groups at the next position.
    pub fn place(&mut self, g: [u32; 3]) {
        for (a, g) in self.attrs.iter_mut().zip(g) {
            a.place(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::types::Candidate;

    #[test]
    fn groups_are_numbered_in_the_order_they_first_appear() {
        let ids = [
            (7, 0, 9),
            (3, 5, 9),
            (7, 5, 0),
            (0, 8, 1),
            (3, 0, 9),
            (9, 5, 1),
        ];
        let input = input_of(ids.into_iter());
        // The pool in another order than the request's: numbering follows the pool.
        let pool = [1, 0, 2, 3, 4, 5];
        let (groups, counts) = number_groups(&input, &pool, Parallelism::SEQUENTIAL);
        let u = UNKNOWN;
        assert_eq!(
            groups,
            vec![
                [0, 0, 0],
                [1, u, 0],
                [1, 0, u],
                [u, 1, 1],
                [0, u, 0],
                [2, 0, 1]
            ]
        );
        assert_eq!(counts, [3, 2, 2]);
    }

    /// What sorting alone numbers, attribute by attribute.
    fn by_sorting(input: &RankInput, pool: &[usize]) -> (Vec<[u32; 3]>, [usize; 3]) {
        let mut groups = vec![[UNKNOWN; 3]; pool.len()];
        let counts = std::array::from_fn(|a| {
            let ids: Vec<u64> = pool
                .iter()
                .map(|&i| {
                    let c = &input.candidates[i];
                    [c.category_id, c.brand_id, c.shop_id][a]
                })
                .collect();
            number_by_sorting(&ids, &mut groups, a)
        });
        (groups, counts)
    }

    fn input_of(ids: impl Iterator<Item = (u64, u64, u64)>) -> RankInput {
        RankInput {
            candidates: ids
                .enumerate()
                .map(|(i, (category_id, brand_id, shop_id))| Candidate {
                    item_id: i as u64 + 1,
                    category_id,
                    brand_id,
                    shop_id,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_table_numbers_as_sorting_does_even_for_ids_chosen_to_collide() {
        // Random-looking ids with repeats and unknowns, at several sizes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for n in [1, 7, 100, 1000, 20_000] {
            let input = input_of((0..n).map(|_| (next(40), next(400) << 20, next(5000) * 7919)));
            let pool: Vec<usize> = (0..n as usize).rev().collect();
            let sorted = by_sorting(&input, &pool);
            assert_eq!(
                number_groups(&input, &pool, Parallelism::SEQUENTIAL),
                sorted,
                "{n}"
            );
            let split = Parallelism { min_work: 0 };
            assert_eq!(number_groups(&input, &pool, split), sorted, "{n} split");
        }
        // 100 categories whose hashes all start in the table's first slot: the table gives
        // up on them (and only them), and sorting numbers them.
        let slots = Numbering::new(100).keys.len() as u64;
        let colliding: Vec<u64> = (1u64..)
            .filter(|id| {
                id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - slots.trailing_zeros()) == 0
            })
            .take(100)
            .collect();
        let mut table = Numbering::new(100);
        assert!(colliding.iter().any(|&id| table.number(id).is_none()));
        let input = input_of(colliding.iter().map(|&id| (id, id % 3 + 1, 0)));
        let pool: Vec<usize> = (0..100).collect();
        let (groups, counts) = number_groups(&input, &pool, Parallelism::SEQUENTIAL);
        assert_eq!((groups.clone(), counts), by_sorting(&input, &pool));
        // Split across threads, attribute by attribute: the same numbers.
        let split = Parallelism { min_work: 0 };
        assert_eq!(
            number_groups(&input, &pool, split),
            (groups.clone(), counts)
        );
        assert_eq!(counts, [100, 3, 0]);
        assert_eq!(groups[99], [99, groups[99][1], UNKNOWN]);
    }

    fn tracker(cap: GroupCap, groups: usize) -> ListCapTracker {
        let params = ListCapParams {
            category: cap,
            ..Default::default()
        };
        let caps = params.caps();
        ListCapTracker {
            attrs: std::array::from_fn(|a| AttrState::new(caps[a], groups)),
        }
    }

    const A: [u32; 3] = [0, UNKNOWN, UNKNOWN];
    const B: [u32; 3] = [1, UNKNOWN, UNKNOWN];
    const NONE: [u32; 3] = [UNKNOWN; 3];

    #[test]
    fn a_total_cap_closes_the_group_for_good() {
        let mut t = tracker(
            GroupCap {
                max: 2,
                ..Default::default()
            },
            2,
        );
        t.place(A);
        assert!(t.allowed(A));
        t.place(A);
        assert!(!t.allowed(A) && !t.possible(A));
        assert!(t.allowed(B) && t.allowed(NONE));
    }

    #[test]
    fn a_window_cap_reopens_once_the_window_slides_past() {
        // At most 1 of a group within any 3 consecutive positions.
        let mut t = tracker(
            GroupCap {
                window: 3,
                max_in_window: 1,
                ..Default::default()
            },
            2,
        );
        t.place(A);
        assert!(!t.allowed(A) && t.possible(A));
        t.place(B);
        assert!(!t.allowed(A) && !t.allowed(B));
        t.place(NONE); // an unknown category still moves the window
        assert!(t.allowed(A), "A left the window");
        assert!(!t.allowed(B));
    }

    #[test]
    fn groups_are_numbered_densely_and_unknown_ids_stay_unknown() {
        use crate::rank::types::Candidate;
        let input = RankInput {
            candidates: [(7, 0, 3), (9, 5, 3), (7, 5, 0)]
                .into_iter()
                .map(|(category_id, brand_id, shop_id)| Candidate {
                    category_id,
                    brand_id,
                    shop_id,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let (groups, counts) = number_groups(&input, &[0, 1, 2], Parallelism::SEQUENTIAL);
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(
            groups,
            vec![[0, UNKNOWN, 0], [1, 0, 0], [0, 0, UNKNOWN]],
            "category 7 → 0, 9 → 1; brand 5 → 0; shop 3 → 0"
        );
    }

    #[test]
    fn caps_that_cannot_work_are_refused_by_field() {
        let mut p = ListCapParams::default();
        assert!(p.validate().is_ok());
        p.brand = GroupCap {
            window: 4,
            max_in_window: 4,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "hard_caps.brand.max_in_window");
        p.brand = GroupCap {
            max_in_window: 1,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "hard_caps.brand.window");
    }
}

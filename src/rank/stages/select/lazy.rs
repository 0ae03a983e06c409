//! How a lazy method ([`Greedy::is_lazy`], MMR) finds the best candidate for each place
//! without bringing every key up to date: a stale key is an upper bound of the exact one
//! (keys only fall as items are placed), so only the candidates whose bound could still win
//! are refreshed. Two ways, both exact (the same winner, ties to the earlier upstream position,
//! as a scan of exact keys):
//!
//! - **By bound** ([`Bounds`]), when no key can rise between places (no calibration): a heap
//!   of the keys as last computed, fed in score order by candidates not yet looked at (whose
//!   key is still their score's). The highest is taken; if it is exact it wins, else its
//!   repetition term is brought up to date (cheap), then its similarity (a dot product per
//!   newer pick) only if it is still the highest, and it goes back. Each place costs the few
//!   candidates whose old keys are above the winner's, and a long list never computes the
//!   keys of candidates that no place came near.
//! - **By score** ([`ScoreOrder`]), when calibration is on: a calibration term may rise from
//!   one place to the next, so an old key is no bound; the walk goes down the score order,
//!   whose ceiling (score plus the largest calibration adjustment) bounds every key, and stops
//!   where the ceiling falls below the best exact key found. Repeats of one category push
//!   keys far below their scores, which this ceiling cannot see: in a list of 100 it visits
//!   about 15 candidates per place where the bounds visit a few.

use std::collections::BinaryHeap;

use super::{Greedy, Pool, Ranked, Search};

/// The search state of a lazy method, kept across places.
pub(super) enum Lazy {
    ByBound(Bounds),
    ByScore(ScoreOrder),
}

impl Lazy {
    /// By bound unless keys can rise between places (`calibrating`).
    pub(super) fn new(pool: &Pool, calibrating: bool) -> Self {
        let n = pool.index.iter().max().map_or(0, |m| m + 1);
        if calibrating {
            Lazy::ByScore(ScoreOrder::new(pool, n))
        } else {
            Lazy::ByBound(Bounds::new(pool, n))
        }
    }

    /// Pool position `pos` (request index `index`, with this score) is placed; `moved` is the
    /// request index that `swap_remove` moved into `pos`, if any.
    pub(super) fn placed(&mut self, index: usize, pos: usize, moved: Option<usize>, score: f32) {
        match self {
            Lazy::ByBound(b) => b.placed(index, pos, moved, score),
            Lazy::ByScore(o) => o.placed(index, pos, moved),
        }
    }
}

/// The keys of a method whose keys only fall. A candidate's key before anything is placed is
/// its score's ceiling, so candidates wait in score order (`untouched`) until that key could be
/// the highest; then their key, as last computed, is kept in a max-heap of packed entries (the
/// key's ordered bits, then the complement of the request index, so the earlier position wins
/// a tie, then the place the key was computed at): a pop is a compare of integers, and a long
/// list whose head settles quickly never computes most of its keys.
pub(super) struct Bounds {
    heap: BinaryHeap<u128>,
    /// Candidates not yet looked at, by (score, earlier position first) packed as in
    /// [`ScoreOrder`].
    untouched: BinaryHeap<u64>,
    /// Entries not allowed at this place (a cap, an exploration slot), back after the search.
    aside: Vec<u128>,
    /// Pool position of each request index, `usize::MAX` once placed.
    pos_of: Vec<usize>,
    /// How many are placed: an entry computed at an earlier place has a stale repetition term.
    place: u32,
    /// The best plain score left, `None` once its candidate is placed until the next search.
    top: Option<f32>,
}

/// Maps a key to an integer with the order of `f64` comparison (−0 and +0 alike).
fn ordered_key(key: f64) -> u64 {
    let bits = (key + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn entry(r: &Ranked, place: u32) -> u128 {
    u128::from(ordered_key(r.key)) << 64 | u128::from(!(r.index as u32)) << 32 | u128::from(place)
}

/// The part of an entry that orders it: the key and the position.
fn rank_of(entry: u128) -> u128 {
    entry >> 32
}

impl Bounds {
    fn new(pool: &Pool, n: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            untouched: by_score(pool),
            aside: Vec::new(),
            pos_of: positions(pool, n),
            place: 0,
            top: None,
        }
    }

    fn placed(&mut self, index: usize, pos: usize, moved: Option<usize>, score: f32) {
        self.pos_of[index] = usize::MAX;
        if let Some(m) = moved {
            self.pos_of[m] = pos;
        }
        self.place += 1;
        if self.top == Some(score) {
            self.top = None;
        }
    }

    fn top(&mut self, pool: &Pool) -> f32 {
        *self
            .top
            .get_or_insert_with(|| pool.score.iter().copied().fold(f32::NEG_INFINITY, f32::max))
    }
}

/// The pool in descending score order (ties by upstream position), for lazy methods: no key
/// exceeds its score's ceiling, so a walk down this order can stop as soon as the ceiling
/// falls below the best exact key found. The order is drawn from a heap only as far as walks
/// reach, so a list whose head is settled quickly never pays for a full sort.
pub(super) struct ScoreOrder {
    /// Request indices, best score first, as far as walks have reached; placed ones are
    /// skipped.
    order: Vec<usize>,
    /// The rest, by (score, earlier position first), packed in one integer: the score's
    /// ordered bits above the complement of the request index (a heap of pairs compared
    /// field by field cost a third more).
    rest: BinaryHeap<u64>,
    /// Pool position of each request index, `usize::MAX` once placed.
    pos_of: Vec<usize>,
    /// Everything in `order` before it is placed.
    start: usize,
}

/// Maps a score to an integer with the same order as `f32::total_cmp`.
fn ordered_bits(score: f32) -> u32 {
    let bits = score.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

/// Pool position of each request index below `n` (`usize::MAX` if not in the pool).
fn positions(pool: &Pool, n: usize) -> Vec<usize> {
    let mut pos_of = vec![usize::MAX; n];
    for (pos, &i) in pool.index.iter().enumerate() {
        pos_of[i] = pos;
    }
    pos_of
}

/// The pool as a max-heap by (score, earlier position first): the score's ordered bits above
/// the complement of the request index.
fn by_score(pool: &Pool) -> BinaryHeap<u64> {
    pool.index
        .iter()
        .zip(&pool.score)
        .map(|(&i, &s)| (u64::from(ordered_bits(s)) << 32) | u64::from(!(i as u32)))
        .collect()
}

impl ScoreOrder {
    fn new(pool: &Pool, n: usize) -> Self {
        Self {
            order: Vec::new(),
            rest: by_score(pool),
            pos_of: positions(pool, n),
            start: 0,
        }
    }

    /// The `j`-th request index in score order, if there are that many.
    fn at(&mut self, j: usize) -> Option<usize> {
        while self.order.len() <= j {
            let i = !(self.rest.pop()? as u32) as usize;
            self.order.push(i);
        }
        Some(self.order[j])
    }

    fn placed(&mut self, index: usize, pos: usize, moved: Option<usize>) {
        self.pos_of[index] = usize::MAX;
        if let Some(m) = moved {
            self.pos_of[m] = pos;
        }
        while self
            .order
            .get(self.start)
            .is_some_and(|&i| self.pos_of[i] == usize::MAX)
        {
            self.start += 1;
        }
    }
}

impl Search<'_> {
    /// The best allowed pool position for the next place, and the best plain score left.
    pub(super) fn lazily<G: Greedy>(
        &self,
        g: &mut G,
        pool: &Pool,
        lazy: &mut Lazy,
    ) -> (Option<usize>, f32) {
        match lazy {
            Lazy::ByBound(bounds) => self.descend(g, pool, bounds),
            Lazy::ByScore(order) => self.walk(g, pool, order),
        }
    }

    /// Keys only fall: take the highest bound until one is exact and still the highest.
    fn descend<G: Greedy>(
        &self,
        g: &mut G,
        pool: &Pool,
        bounds: &mut Bounds,
    ) -> (Option<usize>, f32) {
        let place = bounds.place;
        let mut found = None;
        // The best untouched candidate's first key: it changes only when that one is taken.
        let mut first = self.first_key(g, pool, bounds);
        loop {
            // The highest of the heap and the best untouched candidate.
            let top = match first {
                Some(e) if bounds.heap.peek().is_none_or(|&t| rank_of(e) > rank_of(t)) => {
                    bounds.untouched.pop();
                    first = self.first_key(g, pool, bounds);
                    e
                }
                _ => match bounds.heap.pop() {
                    Some(t) => t,
                    None => break,
                },
            };
            let pos = bounds.pos_of[!(rank_of(top) as u32) as usize];
            if !self.allowed(pool, pos) {
                bounds.aside.push(top);
                continue;
            }
            if top as u32 == place && g.is_current(pos) {
                // Exact, and no other bound is higher.
                found = Some(pos);
                break;
            }
            let next = bounds.heap.peek().copied().max(first).map(rank_of);
            let highest = |e: u128| next.is_none_or(|n| rank_of(e) > n);
            let adjustment = self.adjusted(g, pool, pos);
            let mut e = entry(&self.ranked_with(g, pool, pos, adjustment), place);
            // The similarity is brought up to date only for a candidate still on top.
            if !g.is_current(pos) && highest(e) {
                g.refresh(pos);
                e = entry(&self.ranked_with(g, pool, pos, adjustment), place);
            }
            if g.is_current(pos) && highest(e) {
                found = Some(pos);
                break;
            }
            bounds.heap.push(e);
        }
        bounds.heap.extend(bounds.aside.drain(..));
        (found, bounds.top(pool))
    }

    /// The entry of the best untouched candidate: its key before anything was placed (no
    /// similarity, no repeats), tagged as computed at the first place.
    fn first_key<G: Greedy>(&self, g: &G, pool: &Pool, bounds: &Bounds) -> Option<u128> {
        let index = !(*bounds.untouched.peek()? as u32) as usize;
        let pos = bounds.pos_of[index];
        Some(entry(
            &self.ranked_with(g, pool, pos, self.adjustment(pool, pos)),
            0,
        ))
    }

    /// Keys may be stale upper bounds: walk down the score order, skip a candidate whose stale
    /// key cannot beat the best found, bring the others up to date, and stop where even the
    /// ceiling of a score falls below the best exact key.
    fn walk<G: Greedy>(
        &self,
        g: &mut G,
        pool: &Pool,
        order: &mut ScoreOrder,
    ) -> (Option<usize>, f32) {
        let most = self
            .adjustments
            .iter()
            .copied()
            .fold(self.neutral, f64::max);
        let mut found: Option<Ranked> = None;
        let mut top = None;
        let mut j = order.start;
        while let Some(index) = order.at(j) {
            j += 1;
            let pos = order.pos_of[index];
            if pos == usize::MAX {
                continue;
            }
            let score = pool.score[pos];
            top.get_or_insert(score);
            if found.is_some_and(|f| g.ceiling(score, most) < f.key) {
                break;
            }
            if !self.allowed(pool, pos) {
                continue;
            }
            let adjustment = self.adjusted(g, pool, pos);
            // A stale key is an upper bound: one that cannot win is not brought up to date.
            if found.is_some_and(|f| !self.ranked_with(g, pool, pos, adjustment).beats(&f)) {
                continue;
            }
            if !g.is_current(pos) {
                g.refresh(pos);
            }
            let r = self.ranked_with(g, pool, pos, adjustment);
            if found.is_none_or(|f| r.beats(&f)) {
                found = Some(r);
            }
        }
        (found.map(|f| f.pos), top.unwrap_or(f32::NEG_INFINITY))
    }
}

//! The final order: one greedy loop that every selection method shares. Position by
//! position it places the candidate with the best key among those the list caps allow; an
//! exploration slot takes the best of the candidates outside the user's dominant categories;
//! calibration adds each candidate's change in category divergence; under MMR and DPP, each
//! item like those already placed keeps less of its score the more of them there are
//! (`repetition.rs`), so no category, brand or shop fills the list. The method (MMR, DPP or
//! plain score) only says how a candidate's key depends on what is already placed
//! ([`Greedy`]); calibration and repetition are terms on the relevance scale that each method
//! turns into its own units ([`Greedy::adjustment`]).
//!
//! Past the policy's `depth` the keys are frozen (similarity and repeats stop being updated)
//! and the rest follow by their objective, still under the list caps: a request for every
//! survivor of a long list costs a sort, not k·N·d.
//!
//! Scores never increase down the list: where a cap or an exploration slot put a weaker item
//! above a stronger one, the stronger one's score is lowered to its predecessor's and the
//! difference is reported as the `placement` component. A caller that re-sorts by score keeps
//! the order.
//!
//! The policy's method and weights can be adjusted per request within fixed bounds
//! ([`DiversityRequest`](crate::rank::types::DiversityRequest)); overload and lifecycle rules
//! scale the weight for the user.

pub mod calibration;
pub mod dpp;
pub mod exploration;
mod lazy;
pub mod list_caps;
pub mod mmr;
pub mod repetition;

use self::calibration::{CalibrationParams, Calibrator};
use self::dpp::DppState;
use self::exploration::{ExplorationParams, Slots};
use self::lazy::Lazy;
use self::list_caps::{ListCapParams, ListCapTracker, number_groups};
use self::mmr::{DiversityParams, MmrState};
use self::repetition::Repetition;
use crate::rank::stage::{Deadline, Interrupted, Pick, Slate, Stage};
use crate::rank::types::Method;

/// How a method orders the pool of candidates still to place. Implementations keep their
/// per-candidate state dense over the pool: position `p` is pool position `p`, and every
/// vector shrinks by `swap_remove` together with the pool's.
pub trait Greedy {
    /// What a term on the relevance scale (calibration, repetition) becomes in this method's
    /// key.
    fn adjustment(&self, calibration: f32) -> f64;
    /// The ordering key of pool position `pos` (larger is better), given its score and its
    /// calibration adjustment.
    fn key(&self, pos: usize, score: f32, adjustment: f64) -> f64;
    /// The similarity term of `pos` against what is placed, on the relevance scale (≤ 0).
    fn diversity(&self, pos: usize) -> f32;
    /// `pos` is placed: take it out of the pool (the last position moves into its place) and
    /// account for it in the others' keys, now or lazily.
    fn take(&mut self, pos: usize);
    /// Whether this method updates keys lazily. A lazy method may leave a key stale after
    /// `take`, as long as the stale key is an upper bound of the exact one (keys only fall as
    /// items are placed), and no key ever exceeds [`ceiling`](Greedy::ceiling) of its score.
    /// The loop then brings up to date only the candidates that could still win the place
    /// (`lazy.rs`).
    fn is_lazy(&self) -> bool {
        false
    }
    /// For a lazy method: the highest key a candidate with this score and adjustment can
    /// have, whatever is placed.
    fn ceiling(&self, _score: f32, _adjustment: f64) -> f64 {
        f64::INFINITY
    }
    /// Whether `key(pos)` is exact (always, for a method that is not lazy).
    fn is_current(&self, _pos: usize) -> bool {
        true
    }
    /// Brings `pos`'s key up to date with everything placed.
    fn refresh(&mut self, _pos: usize) {}
    /// Brings every key up to date, before the tail is placed by its keys.
    fn settle(&mut self) {}
}

/// Score order: nothing depends on what is placed.
struct Plain;

impl Greedy for Plain {
    fn adjustment(&self, calibration: f32) -> f64 {
        calibration as f64
    }

    #[inline]
    fn key(&self, _: usize, score: f32, adjustment: f64) -> f64 {
        score as f64 + adjustment
    }

    fn diversity(&self, _: usize) -> f32 {
        0.0
    }

    fn take(&mut self, _: usize) {}
}

/// The selection stage.
pub struct Select {
    /// The policy's method; a request may choose another.
    pub method: Method,
    pub diversity: DiversityParams,
    pub list_caps: ListCapParams,
    pub exploration: ExplorationParams,
    pub calibration: CalibrationParams,
}

/// The candidates still to place, as parallel dense vectors (only those the request needs).
struct Pool {
    index: Vec<usize>,
    score: Vec<f32>,
    /// Category, brand and shop numbers, when caps apply.
    groups: Vec<[u32; 3]>,
    /// Outside the user's dominant categories and good enough, when there are slots.
    explorable: Vec<bool>,
    /// Calibration slot of the category, when calibrating.
    slot: Vec<usize>,
}

impl Pool {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn swap_remove(&mut self, pos: usize) {
        self.index.swap_remove(pos);
        self.score.swap_remove(pos);
        if !self.explorable.is_empty() {
            self.explorable.swap_remove(pos);
        }
        if !self.groups.is_empty() {
            self.groups.swap_remove(pos);
        }
        if !self.slot.is_empty() {
            self.slot.swap_remove(pos);
        }
    }
}

/// What shapes a list besides the method: list caps, repetition decay, exploration slots,
/// calibration.
struct Rules {
    caps: Option<ListCapTracker>,
    repetition: Option<Repetition>,
    slots: Option<Slots>,
    calibrator: Option<Calibrator>,
    /// Positions chosen greedily.
    depth: usize,
    take: usize,
    /// Whether a key may rise from one place to the next (calibration): a lazy method then
    /// searches down the score order rather than its old keys (`lazy.rs`).
    keys_rise: bool,
}

impl Stage for Select {
    fn name(&self) -> &'static str {
        match self.method {
            Method::Mmr => "mmr",
            Method::Dpp => "dpp",
            Method::Score => "by_score",
        }
    }

    fn apply(&self, slate: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
        let (input, user) = (slate.input, slate.user);
        let ask = input.diversity;
        let method = ask.method.unwrap_or(self.method);
        let weight = ask.weight.unwrap_or(self.diversity.weight) * slate.diversity_scale;
        let index = slate.survivor_list();
        let score: Vec<f32> = index.iter().map(|&i| slate.score[i]).collect();
        let take = input.limit().min(index.len());

        // Repeats decay when the list is diversified (MMR or DPP with a weight that counts);
        // by score is by score alone, and a weight of 0 turns diversity off altogether.
        let diversifies = match method {
            Method::Mmr => weight > 0.0,
            Method::Dpp => weight >= dpp::MIN_WEIGHT,
            Method::Score => false,
        };
        let repeats = diversifies && self.diversity.repeats_decay();
        let (groups, counts) = if self.list_caps.is_active() || repeats {
            number_groups(input, &index, slate.parallelism)
        } else {
            (Vec::new(), [0; 3])
        };
        let caps = self
            .list_caps
            .is_active()
            .then(|| self.list_caps.tracker(counts));
        let repetition = repeats
            .then(|| Repetition::new(&self.diversity, counts))
            .flatten();
        let share = ask.exploration_share.unwrap_or(self.exploration.share);
        let slots = Slots::new(share, self.exploration.first_slot)
            .filter(|s| (0..take).any(|p| s.contains(p)));
        // The user's dominant categories, only when a slot can be in this answer.
        let dominant = match slots {
            Some(_) => self.exploration.dominant(user),
            None => Vec::new(),
        };
        let slots = slots.filter(|_| !dominant.is_empty());
        let explorable = match slots {
            Some(_) => index
                .iter()
                .zip(&score)
                .map(|(&i, &s)| {
                    let category = input.candidates[i].category_id;
                    category != 0
                        && dominant.binary_search(&category).is_err()
                        && s >= self.exploration.min_score
                })
                .collect(),
            None => Vec::new(),
        };
        let calibration = ask.calibration.unwrap_or(self.calibration.weight);
        let calibrator = Calibrator::new(user, calibration, self.calibration.alpha);
        let slot = match &calibrator {
            Some(c) => index
                .iter()
                .map(|&i| c.slot(input.candidates[i].category_id))
                .collect(),
            None => Vec::new(),
        };

        let pool = Pool {
            index,
            score,
            groups,
            explorable,
            slot,
        };
        let positional = slots.is_some() || calibrator.is_some();
        let keys_rise = calibrator.is_some();
        let mut rules = Rules {
            caps,
            repetition,
            slots,
            calibrator,
            depth: take.min(self.diversity.depth),
            take,
            keys_rise,
        };
        let name = self.name();
        slate.picks = match method {
            Method::Mmr if weight > 0.0 => {
                let m = MmrState::new(input, &pool.index, &self.diversity, weight, rules.depth);
                select(m, pool, &mut rules, deadline, name)?
            }
            Method::Dpp if weight >= dpp::MIN_WEIGHT => {
                let m = DppState::new(
                    input,
                    &pool.index,
                    &pool.score,
                    &self.diversity,
                    weight,
                    slate.parallelism,
                );
                select(m, pool, &mut rules, deadline, name)?
            }
            _ => {
                // Without similarity the keys never change (nor do repeats decay), unless a
                // slot or calibration depends on position: then the head is greedy, else all
                // of it is a sort.
                if !positional {
                    rules.depth = 0;
                }
                select(Plain, pool, &mut rules, deadline, name)?
            }
        };
        Ok(())
    }
}

/// A pool position in the search for the next place, ordered by key and then by upstream
/// position (the earlier wins a tie), the same order for every way of searching.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    key: f64,
    index: usize,
    pos: usize,
}

impl Ranked {
    fn beats(&self, other: &Ranked) -> bool {
        self.key > other.key || (self.key == other.key && self.index < other.index)
    }
}

/// Where the search for each place looks: the caps, whether the place is an exploration slot,
/// the calibration term and adjustment of each calibration slot, and the repeats so far.
struct Search<'a> {
    caps: Option<&'a ListCapTracker>,
    explore_only: bool,
    terms: &'a [f32],
    adjustments: &'a [f64],
    neutral: f64,
    repetition: Option<&'a Repetition>,
}

impl Search<'_> {
    fn allowed(&self, pool: &Pool, pos: usize) -> bool {
        !(self.caps.is_some_and(|c| !c.allowed(pool.groups[pos]))
            || self.explore_only && !pool.explorable[pos])
    }

    fn adjustment(&self, pool: &Pool, pos: usize) -> f64 {
        if self.adjustments.is_empty() {
            self.neutral
        } else {
            self.adjustments[pool.slot[pos]]
        }
    }

    /// The calibration term of `pos`, on the relevance scale.
    fn calibration(&self, pool: &Pool, pos: usize) -> f32 {
        if self.terms.is_empty() {
            0.0
        } else {
            self.terms[pool.slot[pos]]
        }
    }

    /// The repetition term of `pos`, on the relevance scale.
    fn repetition(&self, pool: &Pool, pos: usize) -> f32 {
        self.repetition
            .map_or(0.0, |r| r.term(pool.groups[pos], pool.score[pos]))
    }

    /// What calibration and repetition add to `pos`'s key, in the method's own units: neither
    /// depends on the method's state, so a key brought up to date reuses it.
    fn adjusted<G: Greedy>(&self, g: &G, pool: &Pool, pos: usize) -> f64 {
        let repetition = self.repetition(pool, pos);
        if repetition == 0.0 {
            self.adjustment(pool, pos)
        } else {
            // Like calibration, a term on the relevance scale, in the method's own units.
            g.adjustment(self.calibration(pool, pos) + repetition)
        }
    }

    fn ranked<G: Greedy>(&self, g: &G, pool: &Pool, pos: usize) -> Ranked {
        self.ranked_with(g, pool, pos, self.adjusted(g, pool, pos))
    }

    fn ranked_with<G: Greedy>(&self, g: &G, pool: &Pool, pos: usize, adjustment: f64) -> Ranked {
        Ranked {
            key: g.key(pos, pool.score[pos], adjustment),
            index: pool.index[pos],
            pos,
        }
    }

    /// Every key is current: one scan.
    fn scan<G: Greedy>(&self, g: &G, pool: &Pool) -> (Option<usize>, f32) {
        let mut found: Option<Ranked> = None;
        let mut top = f32::NEG_INFINITY;
        for pos in 0..pool.len() {
            top = top.max(pool.score[pos]);
            if !self.allowed(pool, pos) {
                continue;
            }
            let r = self.ranked(g, pool, pos);
            if found.is_none_or(|f| r.beats(&f)) {
                found = Some(r);
            }
        }
        (found.map(|f| f.pos), top)
    }

    /// The best allowed pool position for the next place, and the best plain score left.
    fn best<G: Greedy>(
        &self,
        g: &mut G,
        pool: &Pool,
        lazy: Option<&mut Lazy>,
    ) -> (Option<usize>, f32) {
        match lazy {
            Some(lazy) => self.lazily(g, pool, lazy),
            None => self.scan(g, pool),
        }
    }
}

fn select<G: Greedy>(
    mut g: G,
    mut pool: Pool,
    rules: &mut Rules,
    deadline: &Deadline,
    name: &'static str,
) -> Result<Vec<Pick>, Interrupted> {
    let mut picks = Vec::with_capacity(rules.take);
    let neutral = g.adjustment(0.0);
    let (mut terms, mut adjustments) = (Vec::new(), Vec::new());
    let mut ended = false;
    let mut lazy = g.is_lazy().then(|| Lazy::new(&pool, rules.keys_rise));
    while picks.len() < rules.depth {
        deadline.check(name)?;
        if let Some(c) = &rules.calibrator {
            c.terms(&mut terms);
            adjustments.clear();
            adjustments.extend(terms.iter().map(|t| g.adjustment(*t)));
        }
        let slot = rules.slots.is_some_and(|s| s.contains(picks.len()));
        let mut search = Search {
            caps: rules.caps.as_ref(),
            explore_only: slot,
            terms: &terms,
            adjustments: &adjustments,
            neutral,
            repetition: rules.repetition.as_ref(),
        };
        let (mut pos, top) = search.best(&mut g, &pool, lazy.as_mut());
        let explored = slot && pos.is_some();
        if slot && pos.is_none() {
            search.explore_only = false;
            pos = search.best(&mut g, &pool, lazy.as_mut()).0;
        }
        let Some(pos) = pos else {
            // Every candidate left would break a cap here, so at every later place too.
            ended = true;
            break;
        };
        let calibration = search.calibration(&pool, pos);
        let diversity = g.diversity(pos) + search.repetition(&pool, pos);
        picks.push(Pick {
            index: pool.index[pos],
            score: pool.score[pos] + diversity + calibration,
            diversity,
            calibration,
            placement: 0.0,
            promoted: pool.score[pos] < top,
            explored,
        });
        if let Some(c) = &mut rules.caps {
            c.place(pool.groups[pos]);
        }
        if let Some(c) = &mut rules.calibrator {
            c.place(pool.slot[pos]);
        }
        if let Some(r) = &mut rules.repetition {
            r.place(pool.groups[pos]);
        }
        g.take(pos);
        let (index, score) = (pool.index[pos], pool.score[pos]);
        pool.swap_remove(pos);
        if let Some(l) = &mut lazy {
            l.placed(index, pos, pool.index.get(pos).copied(), score);
        }
    }
    if !ended && picks.len() < rules.take {
        g.settle();
        place_tail(&g, &pool, rules, &mut picks);
    }
    keep_scores_non_increasing(&mut picks);
    Ok(picks)
}

/// The rest, by objective against the head (similarity, repeats and calibration as the head
/// left them), under the caps: a candidate a window cap holds back waits for the first place
/// it may take.
fn place_tail<G: Greedy>(g: &G, pool: &Pool, rules: &mut Rules, picks: &mut Vec<Pick>) {
    let mut terms = Vec::new();
    if let Some(c) = &rules.calibrator {
        c.terms(&mut terms);
    }
    let head = Search {
        caps: None,
        explore_only: false,
        terms: &terms,
        adjustments: &[],
        neutral: 0.0,
        repetition: rules.repetition.as_ref(),
    };
    let mut tail: Vec<Pick> = (0..pool.len())
        .map(|pos| {
            let diversity = g.diversity(pos) + head.repetition(pool, pos);
            let calibration = head.calibration(pool, pos);
            Pick {
                index: pool.index[pos],
                score: pool.score[pos] + diversity + calibration,
                diversity,
                calibration,
                ..Pick::plain(pool.index[pos], 0.0)
            }
        })
        .collect();
    let by_objective = |a: &Pick, b: &Pick| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index));
    let wanted = rules.take - picks.len();
    let Some(caps) = &mut rules.caps else {
        if wanted < tail.len() && wanted > 0 {
            tail.select_nth_unstable_by(wanted - 1, by_objective);
            tail.truncate(wanted);
        }
        tail.sort_unstable_by(by_objective);
        picks.extend(tail);
        return;
    };
    tail.sort_unstable_by(by_objective);
    // Each candidate's groups, by its index in the request.
    let mut group_of = vec![[0; 3]; pool.index.iter().max().map_or(0, |m| m + 1)];
    for (&i, &g) in pool.index.iter().zip(&pool.groups) {
        group_of[i] = g;
    }
    let mut waiting: Vec<Pick> = Vec::new();
    let mut next = tail.into_iter();
    while picks.len() < rules.take {
        waiting.retain(|p| caps.possible(group_of[p.index]));
        if let Some(w) = waiting.iter().position(|p| caps.allowed(group_of[p.index])) {
            let p = waiting.remove(w);
            caps.place(group_of[p.index]);
            picks.push(p);
            continue;
        }
        let mut placed = false;
        for p in next.by_ref() {
            let g = group_of[p.index];
            if caps.allowed(g) {
                caps.place(g);
                picks.push(p);
                placed = true;
                break;
            }
            if caps.possible(g) {
                waiting.push(p);
            }
        }
        if !placed {
            break;
        }
    }
}

/// Lowers any score above its predecessor's to it, recording the difference.
fn keep_scores_non_increasing(picks: &mut [Pick]) {
    for i in 1..picks.len() {
        let above = picks[i - 1].score;
        if picks[i].score > above {
            picks[i].placement = above - picks[i].score;
            picks[i].score = above;
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::list_caps::GroupCap;
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, RankInput};

    /// Both lazy searches (by old keys, by score) are exact: on lists with repeats, caps and
    /// exploration slots they place the same candidates with the same scores, bit for bit.
    #[test]
    fn the_search_by_bound_places_what_the_walk_by_score_places() {
        let mut state = 0x9e37_79b9_u64;
        let mut next = move |m: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % m
        };
        let mut compared = 0;
        for case in 0..60 {
            let n = 20 + next(80) as usize;
            let d = [0, 3, 8][case % 3];
            let candidates: Vec<Candidate> = (0..n)
                .map(|i| Candidate {
                    item_id: i as u64 + 1,
                    category_id: next(5),
                    brand_id: next(4),
                    shop_id: next(3),
                    ..Default::default()
                })
                .collect();
            let embeddings =
                (d > 0).then(|| Array2::from_shape_fn((n, d), |_| next(1000) as f32 / 500.0 - 1.0));
            // Coarse scores: ties between keys happen and must break the same way.
            let score: Vec<f32> = (0..n).map(|_| next(40) as f32 / 40.0).collect();
            let input = RankInput {
                candidates,
                embeddings,
                k: 5 + next(40) as usize,
                ..Default::default()
            };
            let index: Vec<usize> = (0..n).collect();
            let take = input.limit().min(n);
            let params = DiversityParams::default();
            let list_caps = ListCapParams {
                category: GroupCap {
                    max: if case % 2 == 0 { 0 } else { 6 },
                    window: 4,
                    max_in_window: 2,
                },
                ..Default::default()
            };
            let slots = Slots::new([0.0, 0.2][case % 2], 2);
            let run = |keys_rise: bool| {
                let (groups, counts) = number_groups(&input, &index, Parallelism::SEQUENTIAL);
                let explorable = match slots {
                    Some(_) => groups.iter().map(|g| g[0] % 2 == 1).collect(),
                    None => Vec::new(),
                };
                let pool = Pool {
                    index: index.clone(),
                    score: score.clone(),
                    groups,
                    explorable,
                    slot: Vec::new(),
                };
                let mut rules = Rules {
                    caps: Some(list_caps.tracker(counts)),
                    repetition: Repetition::new(&params, counts),
                    slots,
                    calibrator: None,
                    depth: take,
                    take,
                    keys_rise,
                };
                let m = MmrState::new(&input, &pool.index, &params, params.weight, take);
                select(m, pool, &mut rules, &Deadline::none(), "mmr").unwrap()
            };
            let (by_bound, by_score) = (run(false), run(true));
            let bits = |picks: &[Pick]| -> Vec<_> {
                picks
                    .iter()
                    .map(|p| {
                        let f = [p.score, p.diversity, p.placement].map(f32::to_bits);
                        (p.index, f, p.promoted, p.explored)
                    })
                    .collect()
            };
            assert_eq!(bits(&by_bound), bits(&by_score), "case {case}");
            compared += by_bound.len();
        }
        assert!(compared > 600, "{compared}");
    }
}

//! Diversity by maximal marginal relevance (Carbonell & Goldstein, 1998): each position takes
//! the candidate with the best `score - weight * max_sim`, where `max_sim` is its highest
//! similarity to the items already placed. A wall of near-identical items is broken up unless
//! the repeats are much more relevant.
//!
//! Similarity is the cosine of the request's embeddings (negative cosines count as 0: being
//! opposite is no reason for a boost), or, when the request carries none, a weighted match of
//! category, brand and shop. Each candidate's `max_sim` is cached and brought up to date lazily,
//! only while its bound could still win a place, so the cost is at most O(k·N·d), never
//! O(k²·N), and usually far less. The greedy loop itself (list caps, exploration slots,
//! calibration, the tail past `depth`) is `select/mod.rs`'s; this file holds only the similarity
//! and MMR's objective.

use std::borrow::Cow;

use serde::Deserialize;

use super::Greedy;
use crate::rank::kernel::{dot_rows, max_dot};
use crate::rank::types::{Candidate, RankInput};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiversityParams {
    /// How much similarity weighs against relevance, on the [0, 1] relevance scale. For MMR,
    /// the penalty per unit of similarity: at 0.3 an exact duplicate of an item already placed
    /// must be 0.3 more relevant than a dissimilar one to beat it, so near-duplicates are spread
    /// out and strong relevance still wins. For DPP, the factor of `ln r²` (the share of the
    /// item's direction not yet covered): 0.3 costs a half-covered item 0.21.
    pub weight: f32,
    /// Positions chosen greedily. 100 covers every screen a user scrolls in one visit; past
    /// it the rest follow by their objective against that head.
    pub depth: usize,
    /// DPP only: how many of the latest picks the determinant looks at (at most the embedding
    /// length, the kernel's rank). When it is full the older half leaves, so long lists keep
    /// being diversified against what is near them rather than running out of directions.
    pub window: usize,
    /// Similarity of two items in the same category, when there are no embeddings. Category is
    /// the strongest sign of "more of the same" to a shopper.
    pub same_category: f32,
    /// Similarity added for the same brand: a wall of one brand reads as an advertisement.
    pub same_brand: f32,
    /// Similarity added for the same shop.
    pub same_shop: f32,
    /// MMR and DPP: how fast the score of "one more like those already placed" decays with
    /// each like item placed (`repetition.rs`). A candidate with `n` exact repeats above it
    /// keeps `repeat_floor + (1 − repeat_floor) · repeat_decay^n` of its score: with 0.5 and
    /// 0.25, 1, 0.625, 0.44, 0.34, … Similarity alone penalises the tenth item of a category
    /// like the second, so a category far above the rest still fills the list; this makes each
    /// repeat cost more than the last. 1 turns the decay off, and so does a diversity weight
    /// of 0 (or a selection by score).
    pub repeat_decay: f32,
    /// The share of its score a repeat keeps however many like it are placed: 0.25 keeps a
    /// strong item of a popular category in play further down (the anchor of X's open-sourced
    /// feed mixer, whose author-diversity decay runs 1, 0.625, 0.44, … to 0.25). 1 turns the
    /// decay off.
    pub repeat_floor: f32,
}

impl Default for DiversityParams {
    fn default() -> Self {
        Self {
            weight: 0.3,
            depth: 100,
            window: 32,
            same_category: 0.6,
            same_brand: 0.3,
            same_shop: 0.1,
            repeat_decay: 0.5,
            repeat_floor: 0.25,
        }
    }
}

/// What attribute similarity compares: (category, brand, shop).
pub type Attributes = (u64, u64, u64);

pub fn attributes(c: &Candidate) -> Attributes {
    (c.category_id, c.brand_id, c.shop_id)
}

impl DiversityParams {
    /// The weights of category, brand and shop, scaled down to sum at most 1: what one item
    /// like another in each attribute counts for, so that an exact duplicate counts at most 1.
    pub fn attribute_weights(&self) -> [f32; 3] {
        let weights = [self.same_category, self.same_brand, self.same_shop];
        let total: f32 = weights.iter().sum();
        let shrink = if total > 1.0 { 1.0 / total } else { 1.0 };
        weights.map(|w| w * shrink)
    }

    /// Whether repeats decay (MMR and DPP; [`repetition`](super::repetition)).
    pub fn repeats_decay(&self) -> bool {
        self.repeat_decay < 1.0 && self.repeat_floor < 1.0
    }

    /// Similarity of two items from their attributes, in [0, 1]. Unknown (0) ids never match.
    pub fn attribute_similarity(&self, a: Attributes, b: Attributes) -> f32 {
        let same = |x: u64, y: u64| x != 0 && x == y;
        let mut s = 0.0;
        if same(a.0, b.0) {
            s += self.same_category;
        }
        if same(a.1, b.1) {
            s += self.same_brand;
        }
        if same(a.2, b.2) {
            s += self.same_shop;
        }
        s.min(1.0)
    }
}

/// How similarity is measured for one request, kept dense over the candidates still to place:
/// position `p` here is position `p` of the pool, and both shrink together by `swap_remove`.
enum Similarity<'a> {
    /// The request's embedding rows, read in place: a candidate's norm is computed only when
    /// its similarity is first needed, and a dot product with a unit-length pick, divided by
    /// that norm, is a cosine.
    Embeddings {
        /// The rows, row-major (borrowed from the request unless its matrix is not laid out
        /// that way), `d` values each.
        rows: Cow<'a, [f32]>,
        d: usize,
        /// Request index of each pool position.
        index: Vec<usize>,
        /// `1 / ‖row‖` of each pool position (0 for a zero row), NaN until first needed.
        inv_norm: Vec<f32>,
        /// The picks' rows scaled to unit length, in order.
        picked: Vec<f32>,
    },
    /// Attributes per remaining candidate.
    Attributes {
        attrs: Vec<Attributes>,
        /// The attributes of the picks, in order.
        picked: Vec<Attributes>,
        params: &'a DiversityParams,
    },
}

impl<'a> Similarity<'a> {
    /// `depth`: how many picks there will be at most (their rows are reserved once).
    fn new(
        input: &'a RankInput,
        pool: &[usize],
        params: &'a DiversityParams,
        depth: usize,
    ) -> Self {
        let depth = depth.min(pool.len());
        match &input.embeddings {
            Some(e) if e.ncols() > 0 => Similarity::Embeddings {
                rows: match e.as_slice() {
                    Some(rows) => Cow::Borrowed(rows),
                    None => Cow::Owned(e.iter().copied().collect()),
                },
                d: e.ncols(),
                index: pool.to_vec(),
                inv_norm: vec![f32::NAN; pool.len()],
                picked: Vec::with_capacity(depth * e.ncols()),
            },
            _ => Similarity::Attributes {
                attrs: pool
                    .iter()
                    .map(|&i| attributes(&input.candidates[i]))
                    .collect(),
                picked: Vec::with_capacity(depth),
                params,
            },
        }
    }

    /// Takes pool position `pos` out (the last one moves into its place) and remembers it as
    /// the newest pick.
    fn swap_remove(&mut self, pos: usize) {
        match self {
            Similarity::Embeddings {
                rows,
                d,
                index,
                inv_norm,
                picked,
            } => {
                let row = row(rows, *d, index[pos]);
                let scale = norm_inverse(row, &mut inv_norm[pos]);
                picked.extend(row.iter().map(|x| x * scale));
                index.swap_remove(pos);
                inv_norm.swap_remove(pos);
            }
            Similarity::Attributes { attrs, picked, .. } => picked.push(attrs.swap_remove(pos)),
        }
    }

    /// The highest similarity of pool position `pos` to the picks from `from` on (0 if none).
    fn max_since(&mut self, pos: usize, from: usize) -> f32 {
        match self {
            Similarity::Embeddings {
                rows,
                d,
                index,
                inv_norm,
                picked,
            } => {
                let row = row(rows, *d, index[pos]);
                let scale = norm_inverse(row, &mut inv_norm[pos]);
                max_dot(&picked[from * *d..], *d, row, 0.0) * scale
            }
            Similarity::Attributes {
                attrs,
                picked,
                params,
            } => picked[from..]
                .iter()
                .map(|p| params.attribute_similarity(attrs[pos], *p))
                .fold(0.0, f32::max),
        }
    }
}

/// Row `i` of row-major rows of `d` values.
fn row(rows: &[f32], d: usize, i: usize) -> &[f32] {
    &rows[i * d..(i + 1) * d]
}

/// `1 / ‖row‖` (0 for a zero row), computed once into `cache`.
fn norm_inverse(row: &[f32], cache: &mut f32) -> f32 {
    if cache.is_nan() {
        let mut square = [0.0];
        dot_rows(row, row.len(), row, &mut square);
        let norm = square[0].sqrt();
        *cache = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    }
    *cache
}

/// MMR's view of the pool of candidates still to place.
///
/// Lazy: a pick does not touch the other candidates. Each `max_sim` only ever rises as items
/// are placed, so a key computed against fewer picks is an upper bound of the exact one, and
/// the greedy loop brings up to date only the candidates whose bound could still win
/// (Minoux's lazy greedy; `lazy.rs`). Each candidate meets each pick at most once, as in the
/// eager update, but a list whose best candidates are not much like what is placed costs a
/// few similarities per place instead of a pass over the pool.
pub struct MmrState<'a> {
    similarity: Similarity<'a>,
    max_sim: Vec<f32>,
    /// How many picks each `max_sim` accounts for.
    seen: Vec<usize>,
    /// How many items are placed.
    picks: usize,
    weight: f32,
}

impl<'a> MmrState<'a> {
    /// `depth`: how many items will be placed at most.
    pub fn new(
        input: &'a RankInput,
        pool: &[usize],
        params: &'a DiversityParams,
        weight: f32,
        depth: usize,
    ) -> Self {
        Self {
            similarity: Similarity::new(input, pool, params, depth),
            max_sim: vec![0.0; pool.len()],
            seen: vec![0; pool.len()],
            picks: 0,
            weight,
        }
    }
}

impl Greedy for MmrState<'_> {
    fn adjustment(&self, calibration: f32) -> f64 {
        calibration as f64
    }

    #[inline]
    fn key(&self, pos: usize, score: f32, adjustment: f64) -> f64 {
        (score - self.weight * self.max_sim[pos]) as f64 + adjustment
    }

    fn diversity(&self, pos: usize) -> f32 {
        -self.weight * self.max_sim[pos]
    }

    fn take(&mut self, pos: usize) {
        self.max_sim.swap_remove(pos);
        self.seen.swap_remove(pos);
        self.similarity.swap_remove(pos);
        self.picks += 1;
    }

    fn is_lazy(&self) -> bool {
        true
    }

    fn ceiling(&self, score: f32, adjustment: f64) -> f64 {
        score as f64 + adjustment
    }

    #[inline]
    fn is_current(&self, pos: usize) -> bool {
        self.seen[pos] == self.picks
    }

    fn refresh(&mut self, pos: usize) {
        let newer = self.similarity.max_since(pos, self.seen[pos]);
        self.max_sim[pos] = self.max_sim[pos].max(newer);
        self.seen[pos] = self.picks;
    }

    fn settle(&mut self) {
        for pos in 0..self.max_sim.len() {
            if !self.is_current(pos) {
                self.refresh(pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, array};

    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::stage::{Deadline, Pick, Slate, Stage};
    use crate::rank::stages::select::Select;
    use crate::rank::stages::select::repetition::multiplier;
    use crate::rank::types::{Consent, Method};
    use crate::rank::user::UserView;

    fn run(input: &RankInput, score: &[f32], params: DiversityParams) -> Vec<Pick> {
        run_with(Method::Mmr, input, score, params)
    }

    fn run_with(
        method: Method,
        input: &RankInput,
        score: &[f32],
        params: DiversityParams,
    ) -> Vec<Pick> {
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(input, &user, Parallelism::SEQUENTIAL);
        slate.score = Array1::from(score.to_vec());
        let select = Select {
            method,
            diversity: params,
            list_caps: Default::default(),
            exploration: Default::default(),
            calibration: Default::default(),
        };
        select.apply(&mut slate, &Deadline::none()).unwrap();
        slate.picks
    }

    fn candidates(categories: &[u64]) -> Vec<Candidate> {
        categories
            .iter()
            .enumerate()
            .map(|(i, &category_id)| Candidate {
                item_id: i as u64 + 1,
                category_id,
                ..Default::default()
            })
            .collect()
    }

    /// The textbook definition: recompute every max-similarity against every pick, each step,
    /// and every candidate's repeats among the picks.
    fn naive(input: &RankInput, score: &[f32], p: &DiversityParams) -> Vec<usize> {
        let sim = |a: usize, b: usize| match &input.embeddings {
            Some(e) => {
                let (x, y) = (e.row(a), e.row(b));
                let c = x.dot(&y) / (x.dot(&x).sqrt() * y.dot(&y).sqrt());
                c.max(0.0)
            }
            None => p.attribute_similarity(
                attributes(&input.candidates[a]),
                attributes(&input.candidates[b]),
            ),
        };
        let mut chosen: Vec<usize> = Vec::new();
        let mut left: Vec<usize> = (0..score.len()).collect();
        while !left.is_empty() && chosen.len() < input.limit() {
            let obj = |i: usize| {
                let m = chosen.iter().map(|&c| sim(i, c)).fold(0.0_f32, f32::max);
                score[i] - p.weight * m + naive_repetition(input, score[i], &chosen, i, p)
            };
            let (pos, _) =
                left.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bp, bo), (pos, &i)| {
                        let o = obj(i);
                        if o > bo { (pos, o) } else { (bp, bo) }
                    });
            chosen.push(left.remove(pos));
        }
        chosen
    }

    /// The repetition term of candidate `i` from scratch: its repeats among `chosen`, weighted
    /// per attribute, through the decay formula.
    fn naive_repetition(
        input: &RankInput,
        score: f32,
        chosen: &[usize],
        i: usize,
        p: &DiversityParams,
    ) -> f32 {
        if !p.repeats_decay() || score <= 0.0 {
            return 0.0;
        }
        let w = p.attribute_weights();
        let a = attributes(&input.candidates[i]);
        let same = |x: u64, y: u64| x != 0 && x == y;
        let n: f32 = chosen
            .iter()
            .map(|&c| {
                let b = attributes(&input.candidates[c]);
                [same(a.0, b.0), same(a.1, b.1), same(a.2, b.2)]
                    .iter()
                    .zip(w)
                    .filter(|(s, _)| **s)
                    .map(|(_, w)| w)
                    .sum::<f32>()
            })
            .sum();
        let m = multiplier(p.repeat_decay, p.repeat_floor, n);
        -(1.0 - m) * score
    }

    #[test]
    fn a_wall_of_one_category_is_broken_up() {
        let input = RankInput {
            candidates: candidates(&[1, 1, 1, 2]),
            k: 3,
            ..Default::default()
        };
        let picks = run(&input, &[1.0, 0.95, 0.9, 0.8], DiversityParams::default());
        let order: Vec<usize> = picks.iter().map(|p| p.index).collect();
        assert_eq!(order, vec![0, 3, 1]);
        assert!(picks[1].promoted);
        assert!(!picks[0].promoted);
        // Similarity to the first item, and the decay of a second item of its category.
        let repeat = 1.0 - multiplier(0.5, 0.25, 0.6);
        let expected = -0.3 * 0.6 - repeat * 0.95;
        assert!((picks[2].diversity - expected).abs() < 1e-6, "{picks:?}");
    }

    /// An all-zero embedding has no direction: MMR and DPP both treat it as unlike
    /// everything (no diversity term), never as a copy of what is placed, and no score is NaN.
    #[test]
    fn an_all_zero_embedding_is_unlike_everything_in_mmr_and_dpp() {
        let embeddings = array![
            [1.0, 0.0, 0.0],
            [0.99, 0.1, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0],
        ];
        let input = RankInput {
            // Category 0 (unknown) for all: no repetition decay, only the embeddings count.
            candidates: candidates(&[0, 0, 0, 0, 0]),
            embeddings: Some(embeddings),
            k: 5,
            ..Default::default()
        };
        let score = [1.0, 0.9, 0.8, 0.7, 0.6];
        for method in [Method::Mmr, Method::Dpp] {
            let picks = run_with(method, &input, &score, DiversityParams::default());
            assert_eq!(picks.len(), 5, "{method:?}");
            for p in &picks {
                assert!(
                    p.score.is_finite() && p.diversity.is_finite(),
                    "{method:?}: {p:?}"
                );
                if p.index == 2 || p.index == 4 {
                    assert_eq!(p.diversity, 0.0, "{method:?}: {p:?}");
                    assert_eq!(p.score, score[p.index], "{method:?}: {p:?}");
                }
            }
            // The near-copy of the first item is the one held back, below a zero row.
            let at = |i: usize| picks.iter().position(|p| p.index == i).unwrap();
            assert!(at(1) > at(2), "{method:?}: {picks:?}");
        }
    }

    #[test]
    fn zero_weight_keeps_score_order() {
        let input = RankInput {
            candidates: candidates(&[1, 1, 1, 2]),
            ..Default::default()
        };
        let p = DiversityParams {
            weight: 0.0,
            ..Default::default()
        };
        let order: Vec<usize> = run(&input, &[0.2, 0.9, 0.5, 0.7], p)
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(order, vec![1, 3, 2, 0]);
    }

    #[test]
    fn matches_the_naive_definition_with_embeddings_and_attributes() {
        let n = 40;
        // A small linear congruential generator: distinct values, so no float near-ties.
        let mut state = 0x2545_f491_u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let embeddings = Array2::from_shape_fn((n, 6), |_| next());
        let score: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 / 23.0).collect();
        let cats: Vec<u64> = (0..n as u64).map(|i| i % 4 + 1).collect();
        for with_embeddings in [true, false] {
            let input = RankInput {
                candidates: candidates(&cats),
                embeddings: with_embeddings.then(|| embeddings.clone()),
                k: 15,
                ..Default::default()
            };
            let no_decay = DiversityParams {
                repeat_decay: 0.5,
                ..Default::default()
            };
            for p in [DiversityParams::default(), no_decay] {
                let fast: Vec<usize> = run(&input, &score, p.clone())
                    .iter()
                    .map(|p| p.index)
                    .collect();
                assert_eq!(
                    fast,
                    naive(&input, &score, &p),
                    "embeddings: {with_embeddings}, {p:?}"
                );
            }
        }
    }

    #[test]
    fn scores_never_increase_down_the_list_even_past_the_greedy_depth() {
        let input = RankInput {
            candidates: candidates(&[1, 1, 2, 2, 3, 3, 1, 2]),
            ..Default::default()
        };
        let p = DiversityParams {
            depth: 3,
            ..Default::default()
        };
        let picks = run(&input, &[0.9, 0.8, 0.85, 0.1, 0.5, 0.6, 0.7, 0.3], p);
        assert_eq!(picks.len(), 8);
        for w in picks.windows(2) {
            assert!(w[0].score >= w[1].score, "{picks:?}");
        }
    }

    /// Rows laid out column by column (a matrix built in Fortran order) are copied once into
    /// row order: the same picks, scores and terms as the same matrix in row order.
    #[test]
    fn a_matrix_in_column_order_ranks_as_in_row_order() {
        use ndarray::ShapeBuilder;
        let (n, d) = (12, 5);
        let rows = Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let mut columns = Array2::zeros((n, d).f());
        columns.assign(&rows);
        assert!(columns.as_slice().is_none(), "not in row order");
        let score: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.03).collect();
        let ranked = |embeddings: Array2<f32>| {
            let input = RankInput {
                candidates: candidates(&[1, 1, 2, 2, 3, 3, 1, 2, 3, 1, 2, 3]),
                embeddings: Some(embeddings),
                k: 8,
                ..Default::default()
            };
            run(&input, &score, DiversityParams::default())
                .iter()
                .map(|p| (p.index, p.score.to_bits(), p.diversity.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ranked(columns), ranked(rows));
    }

    #[test]
    fn opposite_embeddings_get_no_boost() {
        let input = RankInput {
            candidates: candidates(&[0, 0, 0]),
            embeddings: Some(array![[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]),
            k: 2,
            ..Default::default()
        };
        let picks = run(&input, &[1.0, 0.5, 0.5], DiversityParams::default());
        assert_eq!(
            picks[1].index, 1,
            "tie broken by upstream position, no boost for -1"
        );
        assert_eq!(picks[1].diversity, 0.0);
    }
}

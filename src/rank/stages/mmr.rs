//! Diversity by maximal marginal relevance (Carbonell & Goldstein, 1998): each position takes
//! the candidate with the best `score - weight * max_sim`, where `max_sim` is its highest
//! similarity to the items already placed. A wall of near-identical items is broken up unless
//! the repeats are much more relevant.
//!
//! Similarity is the cosine of the request's embeddings (negative cosines count as 0: being
//! opposite is no reason for a boost), or, when the request carries none, a weighted match of
//! category, brand and shop. Each candidate's `max_sim` is cached and updated once per pick, so
//! the cost is O(k·N·d), never O(k²·N). The greedy loop itself (hard caps, exploration slots,
//! calibration, the tail past `depth`) is `select.rs`'s; this file holds only the similarity
//! and MMR's objective.

use serde::Deserialize;

use super::select::Greedy;
use crate::rank::pipeline::Parallelism;
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
        }
    }
}

/// What attribute similarity compares: (category, brand, shop).
pub type Attributes = (u64, u64, u64);

pub fn attributes(c: &Candidate) -> Attributes {
    (c.category_id, c.brand_id, c.shop_id)
}

impl DiversityParams {
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
/// position `p` here is position `p` of the pool, and both shrink together by `swap_remove`,
/// so each pass touches only what remains.
enum Similarity<'a> {
    /// Unit-length rows, one per remaining candidate: a dot product is a cosine.
    Embeddings {
        rows: Vec<f32>,
        dim: usize,
        picked: Vec<f32>,
        scratch: Vec<f32>,
        parallelism: Parallelism,
    },
    /// Attributes per remaining candidate.
    Attributes {
        attrs: Vec<Attributes>,
        picked: Attributes,
        params: &'a DiversityParams,
    },
}

impl<'a> Similarity<'a> {
    fn new(
        input: &RankInput,
        pool: &[usize],
        params: &'a DiversityParams,
        parallelism: Parallelism,
    ) -> Self {
        match &input.embeddings {
            Some(e) if e.ncols() > 0 => {
                let dim = e.ncols();
                let mut rows = Vec::with_capacity(pool.len() * dim);
                for &i in pool {
                    rows.extend(e.row(i).iter());
                }
                parallelism.normalize_rows(&mut rows, dim);
                Similarity::Embeddings {
                    rows,
                    dim,
                    picked: vec![0.0; dim],
                    scratch: vec![0.0; pool.len()],
                    parallelism,
                }
            }
            _ => Similarity::Attributes {
                attrs: pool
                    .iter()
                    .map(|&i| attributes(&input.candidates[i]))
                    .collect(),
                picked: (0, 0, 0),
                params,
            },
        }
    }

    /// Takes pool position `pos` out (the last one moves into its place) and remembers it as
    /// the new pick.
    fn swap_remove(&mut self, pos: usize) {
        match self {
            Similarity::Embeddings {
                rows, dim, picked, ..
            } => {
                let d = *dim;
                let last = rows.len() / d - 1;
                picked.copy_from_slice(&rows[pos * d..(pos + 1) * d]);
                rows.copy_within(last * d..(last + 1) * d, pos * d);
                rows.truncate(last * d);
            }
            Similarity::Attributes { attrs, picked, .. } => *picked = attrs.swap_remove(pos),
        }
    }

    /// Raises each remaining candidate's `max_sim` to its similarity with the last pick.
    fn absorb(&mut self, max_sim: &mut [f32]) {
        match self {
            Similarity::Embeddings {
                rows,
                dim,
                picked,
                scratch,
                parallelism,
            } => {
                let out = &mut scratch[..max_sim.len()];
                parallelism.rows_dot(rows, *dim, picked, out);
                for (m, s) in max_sim.iter_mut().zip(out.iter()) {
                    *m = m.max(*s);
                }
            }
            Similarity::Attributes {
                attrs,
                picked,
                params,
            } => {
                for (m, a) in max_sim.iter_mut().zip(attrs.iter()) {
                    *m = m.max(params.attribute_similarity(*a, *picked));
                }
            }
        }
    }
}

/// MMR's view of the pool of candidates still to place.
pub struct MmrState<'a> {
    similarity: Similarity<'a>,
    max_sim: Vec<f32>,
    weight: f32,
}

impl<'a> MmrState<'a> {
    pub fn new(
        input: &RankInput,
        pool: &[usize],
        params: &'a DiversityParams,
        weight: f32,
        parallelism: Parallelism,
    ) -> Self {
        Self {
            similarity: Similarity::new(input, pool, params, parallelism),
            max_sim: vec![0.0; pool.len()],
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
        self.similarity.swap_remove(pos);
        self.similarity.absorb(&mut self.max_sim);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, array};

    use super::*;
    use crate::rank::pipeline::{Deadline, Pick, Slate, Stage};
    use crate::rank::stages::select::Select;
    use crate::rank::types::{Consent, Method};
    use crate::rank::user::UserView;

    fn run(input: &RankInput, score: &[f32], params: DiversityParams) -> Vec<Pick> {
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(input, &user, Parallelism::SEQUENTIAL);
        slate.score = Array1::from(score.to_vec());
        let select = Select {
            method: Method::Mmr,
            diversity: params,
            caps: Default::default(),
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

    /// The textbook definition: recompute every max-similarity against every pick, each step.
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
                score[i] - p.weight * m
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
        assert_eq!(picks[2].diversity, -0.3 * 0.6);
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
            let p = DiversityParams::default();
            let fast: Vec<usize> = run(&input, &score, p.clone())
                .iter()
                .map(|p| p.index)
                .collect();
            assert_eq!(
                fast,
                naive(&input, &score, &p),
                "embeddings: {with_embeddings}"
            );
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

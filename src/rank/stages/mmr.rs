//! Diversity by maximal marginal relevance (Carbonell & Goldstein, 1998): the answer is built
//! greedily, each position taking the candidate with the best `score - weight * max_sim`, where
//! `max_sim` is its highest similarity to the items already placed. A wall of near-identical
//! items is broken up unless the repeats are much more relevant.
//!
//! Similarity is the cosine of the request's embeddings (negative cosines count as 0: being
//! opposite is no reason for a boost), or, when the request carries none, a weighted match of
//! category, brand and shop. Each candidate's `max_sim` is cached and updated once per pick, so
//! the cost is O(k·N·d), never O(k²·N).
//!
//! Only the first `depth` positions are chosen greedily; the rest follow in order of their
//! objective against that head, which keeps scores non-increasing down the list and bounds the
//! cost of "return everything" (k = 0) on large lists.

use ndarray::{Array1, Array2};
use serde::Deserialize;

use crate::rank::pipeline::{Deadline, Interrupted, Parallelism, Pick, Slate, Stage};
use crate::rank::types::{Candidate, RankInput};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiversityParams {
    /// Penalty per unit of similarity, on the [0, 1] relevance scale. At 0.3 an exact duplicate
    /// of an item already placed must be 0.3 more relevant than a dissimilar one to beat it:
    /// near-duplicates are spread out, strong relevance still wins.
    pub weight: f32,
    /// Positions chosen greedily. 100 covers every screen a user scrolls in one visit.
    pub depth: usize,
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
            same_category: 0.6,
            same_brand: 0.3,
            same_shop: 0.1,
        }
    }
}

impl DiversityParams {
    /// Similarity of two candidates from their attributes, in [0, 1]. Unknown (0) ids never match.
    pub fn attribute_similarity(&self, a: &Candidate, b: &Candidate) -> f32 {
        let same = |x: u64, y: u64| x != 0 && x == y;
        let mut s = 0.0;
        if same(a.category_id, b.category_id) {
            s += self.same_category;
        }
        if same(a.brand_id, b.brand_id) {
            s += self.same_brand;
        }
        if same(a.shop_id, b.shop_id) {
            s += self.same_shop;
        }
        s.min(1.0)
    }
}

pub struct Mmr(pub DiversityParams);

/// How similarity is measured for one request.
enum Similarity<'a> {
    /// Unit-length rows: a dot product is a cosine.
    Embeddings {
        unit: Array2<f32>,
        scratch: Array1<f32>,
        parallelism: Parallelism,
    },
    Attributes {
        candidates: &'a [Candidate],
        params: &'a DiversityParams,
    },
}

impl<'a> Similarity<'a> {
    fn new(input: &'a RankInput, params: &'a DiversityParams, parallelism: Parallelism) -> Self {
        match &input.embeddings {
            Some(e) if e.ncols() > 0 => {
                let mut unit = e.clone();
                parallelism.normalize_rows(&mut unit);
                Similarity::Embeddings {
                    scratch: Array1::zeros(unit.nrows()),
                    unit,
                    parallelism,
                }
            }
            _ => Similarity::Attributes {
                candidates: &input.candidates,
                params,
            },
        }
    }

    /// Raises `max_sim[r]` to the similarity between `r` and the new pick, for every `r` left.
    fn absorb(&mut self, picked: usize, remaining: &[usize], max_sim: &mut [f32]) {
        match self {
            Similarity::Embeddings {
                unit,
                scratch,
                parallelism,
            } => {
                parallelism.rows_dot(unit, unit.row(picked), scratch);
                for &r in remaining {
                    max_sim[r] = max_sim[r].max(scratch[r]);
                }
            }
            Similarity::Attributes { candidates, params } => {
                let p = &candidates[picked];
                for &r in remaining {
                    max_sim[r] = max_sim[r].max(params.attribute_similarity(&candidates[r], p));
                }
            }
        }
    }
}

impl Stage for Mmr {
    fn name(&self) -> &'static str {
        "mmr"
    }

    fn apply(&self, slate: &mut Slate<'_>, deadline: &Deadline) -> Result<(), Interrupted> {
        let input = slate.input;
        let weight = self.0.weight;
        let mut remaining: Vec<usize> = slate.survivors().collect();
        let take = input.limit().min(remaining.len());
        let greedy = take.min(self.0.depth);
        let mut max_sim = vec![0.0_f32; slate.len()];
        let mut similarity = Similarity::new(input, &self.0, slate.parallelism);
        let score = &slate.score;
        let objective = |i: usize, max_sim: &[f32]| score[i] - weight * max_sim[i];

        let mut picks = Vec::with_capacity(take);
        for _ in 0..greedy {
            deadline.check(self.name())?;
            // Best objective, ties to the upstream position; and the best plain score, to know
            // whether diversity passed over a more relevant candidate.
            let (mut best, mut best_objective) = (0, f32::NEG_INFINITY);
            let mut top_score = f32::NEG_INFINITY;
            for (pos, &i) in remaining.iter().enumerate() {
                let o = objective(i, &max_sim);
                if o > best_objective || (o == best_objective && i < remaining[best]) {
                    (best, best_objective) = (pos, o);
                }
                top_score = top_score.max(score[i]);
            }
            let i = remaining.swap_remove(best);
            picks.push(Pick {
                index: i,
                score: best_objective,
                diversity: -weight * max_sim[i],
                promoted: score[i] < top_score,
            });
            similarity.absorb(i, &remaining, &mut max_sim);
        }

        let mut tail: Vec<(f32, usize)> = remaining
            .iter()
            .map(|&i| (objective(i, &max_sim), i))
            .collect();
        tail.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        picks.extend(
            tail.into_iter()
                .take(take - picks.len())
                .map(|(o, i)| Pick {
                    index: i,
                    score: o,
                    diversity: -weight * max_sim[i],
                    promoted: false,
                }),
        );
        slate.picks = picks;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::rank::types::Consent;
    use crate::rank::user::UserView;

    fn run(input: &RankInput, score: &[f32], params: DiversityParams) -> Vec<Pick> {
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(input, &user, Parallelism::SEQUENTIAL);
        slate.score = Array1::from(score.to_vec());
        Mmr(params).apply(&mut slate, &Deadline::none()).unwrap();
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
            None => p.attribute_similarity(&input.candidates[a], &input.candidates[b]),
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

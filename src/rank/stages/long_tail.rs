//! Long tail: a bounded boost for less popular items that fit the user, against the
//! recommender's pull toward hot items and big brands (popularity bias).
//!
//! `boost = weight × tail × fit`, where `tail` is the share of the request's candidates (with a
//! known popularity) that are more popular than this one (0 for the most popular, 1 for the
//! least), and `fit` the upstream relevance normalised to [0, 1]: an unpopular item that does
//! not fit gets nothing. The boost never exceeds `weight`. Candidates without a popularity
//! (0) get none, and with personalisation off the stage does nothing: relevance then is
//! popularity itself, and "fits the user" has no meaning.

use ndarray::Array1;
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;
use serde::Deserialize;

use super::relevance::{normalize, normalize_candidates};
use crate::rank::kernel::COLUMN_BLOCK;
use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::Component;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LongTailParams {
    /// The largest boost, on the relevance scale. 0.05 lifts a well-fitting niche item past
    /// a slightly more relevant hit without ever burying a clearly better one.
    pub weight: f32,
}

impl Default for LongTailParams {
    fn default() -> Self {
        Self { weight: 0.05 }
    }
}

pub struct LongTail(pub LongTailParams);

impl Stage for LongTail {
    fn name(&self) -> &'static str {
        "long_tail"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let input = slate.input;
        let weight = input.diversity.long_tail.unwrap_or(self.0.weight);
        if weight <= 0.0 || !slate.user.consent.personalization {
            return Ok(());
        }
        if slate.parallelism.splits_candidates(slate.len()) {
            let boost = boost_split(slate, weight);
            if let Some(boost) = boost {
                slate.add_component(Component::LongTail, boost);
            }
            return Ok(());
        }
        // Most popular first, as one integer per candidate: a positive float's bits order as
        // the float does (`total_cmp`), so the complement of its bits, above the index,
        // sorts descending with plain integer compares.
        let mut known: Vec<u64> = slate
            .survivors()
            .filter(|&i| input.candidates[i].popularity > 0.0)
            .map(|i| key(input.candidates[i].popularity, i))
            .collect();
        if known.len() < 2 {
            return Ok(());
        }
        known.sort_unstable();
        let fit = normalize(&input.candidates.iter().map(|c| c.score).collect());
        let mut boost = Array1::zeros(slate.len());
        let last = (known.len() - 1) as f32;
        // `more` counts the candidates strictly more popular: ties share a tail value.
        let mut more = 0;
        for (n, &key) in known.iter().enumerate() {
            let i = (key as u32) as usize;
            if n > 0 && key >> 32 != known[n - 1] >> 32 {
                more = n;
            }
            boost[i] = weight * (more as f32 / last) * fit[i];
        }
        slate.add_component(Component::LongTail, boost);
        Ok(())
    }
}

/// A candidate's sort key: the complement of its popularity's bits above its index, so that
/// the most popular come first.
fn key(popularity: f32, index: usize) -> u64 {
    (u64::from(!popularity.to_bits()) << 32) | index as u64
}

/// The boost of a long list across threads, `None` when fewer than two candidates have a
/// popularity. Each block of the known candidates is sorted on its own thread (the standard
/// sort; rayon's parallel sort cost twice as much here), and each candidate's count of those
/// strictly more popular is its place in its own block plus, in every other block, how many
/// come before it: the exact count the sequential walk finds, so the same boost.
fn boost_split(slate: &Slate<'_>, weight: f32) -> Option<Array1<f32>> {
    let (input, parallelism) = (slate.input, slate.parallelism);
    let candidates = &input.candidates;
    let mut known: Vec<u64> = (0..candidates.len())
        .into_par_iter()
        .with_min_len(COLUMN_BLOCK)
        .filter(|&i| !slate.is_dropped(i) && candidates[i].popularity > 0.0)
        .map(|i| key(candidates[i].popularity, i))
        .collect();
    if known.len() < 2 {
        return None;
    }
    let last = (known.len() - 1) as f32;
    let threads = rayon::current_num_threads().clamp(1, 8);
    let block = known.len().div_ceil(threads);
    known.par_chunks_mut(block).for_each(|b| b.sort_unstable());
    let blocks: Vec<&[u64]> = known.chunks(block).collect();
    // Per candidate: 1 + how many known candidates are strictly more popular (0: unknown).
    let rank: Vec<AtomicU32> = (0..candidates.len()).map(|_| AtomicU32::new(0)).collect();
    blocks.par_iter().enumerate().for_each(|(me, own)| {
        let mut before = vec![0; blocks.len()];
        let mut within = 0;
        for (n, &key) in own.iter().enumerate() {
            let popularity = key >> 32;
            if n > 0 && popularity != own[n - 1] >> 32 {
                within = n;
            }
            let mut more = within;
            for (other, b) in blocks.iter().enumerate() {
                if other != me {
                    while before[other] < b.len() && b[before[other]] >> 32 < popularity {
                        before[other] += 1;
                    }
                    more += before[other];
                }
            }
            rank[(key as u32) as usize].store(more as u32 + 1, Ordering::Relaxed);
        }
    });
    let fit = normalize_candidates(candidates, |c| c.score, parallelism);
    let mut boost = vec![0.0; candidates.len()];
    parallelism.for_each_value(&mut boost, |i, b| {
        let more = rank[i].load(Ordering::Relaxed);
        if more > 0 {
            *b = weight * ((more - 1) as f32 / last) * fit[i];
        }
    });
    Some(Array1::from(boost))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, RankInput};
    use crate::rank::user::UserView;

    fn boosts(rows: &[(f32, f32)], personalization: bool) -> Vec<f32> {
        let input = RankInput {
            candidates: rows
                .iter()
                .map(|&(score, popularity)| Candidate {
                    score,
                    popularity,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut consent = Consent::privacy_default();
        consent.personalization = personalization;
        let user = UserView::unknown(consent);
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        LongTail(LongTailParams { weight: 0.1 })
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        slate.score.to_vec()
    }

    #[test]
    fn fitting_niche_items_get_up_to_the_weight_hits_and_misfits_nothing() {
        // (relevance, popularity): a hit, a fitting niche item, a niche misfit, an unknown.
        let b = boosts(&[(1.0, 1000.0), (1.0, 3.0), (0.0, 1.0), (1.0, 0.0)], true);
        assert_eq!(b[0], 0.0, "the most popular gets nothing");
        assert!((b[1] - 0.1 * 0.5).abs() < 1e-6, "{b:?}");
        assert_eq!(b[2], 0.0, "no fit, no boost");
        assert_eq!(b[3], 0.0, "unknown popularity");
        assert!(b.iter().all(|v| *v <= 0.1));
    }

    #[test]
    fn nothing_without_personalisation() {
        assert_eq!(boosts(&[(1.0, 1000.0), (1.0, 3.0)], false), vec![0.0, 0.0]);
    }
}

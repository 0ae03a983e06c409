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
use serde::Deserialize;

use super::relevance::normalize;
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
        // Most popular first, as one integer per candidate: a positive float's bits order as
        // the float does (`total_cmp`), so the complement of its bits, above the index,
        // sorts descending with plain integer compares.
        let mut known = Vec::with_capacity(slate.len());
        known.extend(
            slate
                .survivors()
                .filter(|&i| input.candidates[i].popularity > 0.0)
                .map(|i| key(input.candidates[i].popularity, i)),
        );
        if known.len() < 2 {
            return Ok(());
        }
        sort_keys(&mut known);
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

/// Below this many keys a comparison sort is quicker than four counting passes.
const RADIX_FROM: usize = 256;

/// Sorts keys built by [`key`] from candidates in upstream order, as `sort_unstable` would.
///
/// Long lists are sorted by their popularity half only, 8 bits at a time from the lowest
/// (a stable counting sort per byte, the four bytes counted in one pass; a byte every key
/// shares is skipped): the keys arrive in upstream order, so equal popularities keep it,
/// which is the order of the whole keys. At N = 20,000 the long-tail stage took 155 µs on one
/// thread with it, against 233 µs with the comparison sort (`TACTFUL_STAGE_TABLE=1 cargo
/// bench --bench parallel`).
fn sort_keys(keys: &mut Vec<u64>) {
    debug_assert!(keys.windows(2).all(|w| (w[0] as u32) < (w[1] as u32)));
    if keys.len() < RADIX_FROM {
        keys.sort_unstable();
        return;
    }
    const SHIFTS: [u32; 4] = [32, 40, 48, 56];
    let byte = |k: u64, shift: u32| ((k >> shift) & 0xff) as usize;
    let mut counts = [[0usize; 256]; 4];
    for &k in keys.iter() {
        for (count, shift) in counts.iter_mut().zip(SHIFTS) {
            count[byte(k, shift)] += 1;
        }
    }
    let mut spare = vec![0; keys.len()];
    for (mut start, shift) in counts.into_iter().zip(SHIFTS) {
        if start.contains(&keys.len()) {
            continue;
        }
        let mut sum = 0;
        for s in start.iter_mut() {
            (*s, sum) = (sum, sum + *s);
        }
        for &k in keys.iter() {
            let b = byte(k, shift);
            spare[start[b]] = k;
            start[b] += 1;
        }
        std::mem::swap(keys, &mut spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counting_sort_orders_keys_as_a_comparison_sort() {
        let mut state = 7_u64;
        for n in [0, 1, 2, RADIX_FROM - 1, RADIX_FROM, 3000] {
            for distinct in [1, 3, 1000] {
                let keys: Vec<u64> = (0..n)
                    .map(|i| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let popularity = 0.5 + ((state >> 33) % distinct) as f32 * 1.7;
                        key(popularity, i)
                    })
                    .collect();
                let (mut radix, mut plain) = (keys.clone(), keys);
                sort_keys(&mut radix);
                plain.sort_unstable();
                assert_eq!(radix, plain, "{n} keys, {distinct} popularities");
            }
        }
    }
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

//! Diversity metrics of a ranked list: how varied it is, how much of the candidates' variety it
//! shows, how fairly exposure spreads over items, how much of it is long-tail, and how well it
//! matches the user's own mix of interests. Benchmarks, pictures and the offline replay
//! evaluation measure lists with these, so they are defined once, here.
//!
//! Plain functions over slices (a list's categories, popularity or exposure counts), no I/O and
//! nothing the pipeline depends on: measuring never changes a ranking. They allocate at most a
//! small map or one copy to sort, and every result is an `f64` so that averages over many lists
//! do not drift. Category 0 is "unknown", as everywhere in the core: it never counts as a
//! category of its own and never matches another item.

use std::collections::{HashMap, HashSet};

/// Share of the catalogue, by popularity, that counts as the head in [`head_threshold`]: the
/// usual 20% (the "short head" of the 80/20 rule).
pub const DEFAULT_HEAD_SHARE: f64 = 0.2;

/// Weight of the user's own distribution mixed into the list's in [`calibration_kl`]: small
/// enough to leave the list's distribution almost as it is, large enough to keep the
/// divergence finite when the list misses one of the user's categories (Steck's choice).
pub const DEFAULT_CALIBRATION_ALPHA: f64 = 0.01;

/// Intra-list diversity: the mean dissimilarity `1 − similarity(a, b)` over the `len·(len−1)/2`
/// unordered pairs of list positions `a < b`.
///
/// `similarity` is called once per pair, with positions in `0..len`. The result is in [0, 1]
/// when similarities are in [0, 1] (0: every pair identical; 1: no two items alike), and 0 for
/// lists shorter than 2, which have no pairs. Cost: `len²/2` calls.
pub fn intra_list_diversity(len: usize, similarity: impl Fn(usize, usize) -> f32) -> f64 {
    if len < 2 {
        return 0.0;
    }
    let mut sum = 0.0_f64;
    for a in 0..len {
        for b in a + 1..len {
            sum += 1.0 - f64::from(similarity(a, b));
        }
    }
    sum / pairs(len) as f64
}

/// Intra-list diversity with "same category" as the similarity: 1 minus the share of the
/// list's pairs whose two items share a (known) category. In [0, 1]; 0 for lists shorter than
/// 2. Equal to [`intra_list_diversity`] with similarity 1 for a shared known category and 0
/// otherwise, computed in one pass.
pub fn category_intra_list_diversity(categories: &[u64]) -> f64 {
    let n = categories.len();
    if n < 2 {
        return 0.0;
    }
    let mut count: HashMap<u64, usize> = HashMap::with_capacity(n);
    for &c in categories.iter().filter(|c| **c != 0) {
        *count.entry(c).or_default() += 1;
    }
    let same: usize = count.values().map(|&k| pairs(k)).sum();
    1.0 - same as f64 / pairs(n) as f64
}

/// Category coverage: the distinct known categories of the list that occur among the
/// candidates, divided by the distinct known categories among the candidates. In [0, 1]; 0
/// when the candidates have no known category.
pub fn category_coverage(list: &[u64], candidates: &[u64]) -> f64 {
    let offered: HashSet<u64> = candidates.iter().copied().filter(|c| *c != 0).collect();
    if offered.is_empty() {
        return 0.0;
    }
    let shown: HashSet<u64> = list
        .iter()
        .copied()
        .filter(|c| offered.contains(c))
        .collect();
    shown.len() as f64 / offered.len() as f64
}

/// Gini coefficient of exposure over items, from each item's exposure count (include items
/// that were never shown, with 0, when they should count as left out):
///
/// `G = Σᵢ (2i − n − 1)·xᵢ / ((n − 1)·Σ x)` with `x₁ ≤ … ≤ xₙ` and `i` from 1.
///
/// 0 when every item gets the same exposure, 1 when one item gets all of it, in [0, 1]
/// between. 0 for fewer than 2 items or no exposure at all. Sorts one copy of the counts.
pub fn exposure_gini(exposure: &[u64]) -> f64 {
    let n = exposure.len();
    let total: f64 = exposure.iter().map(|&x| x as f64).sum();
    if n < 2 || total == 0.0 {
        return 0.0;
    }
    let mut sorted = exposure.to_vec();
    sorted.sort_unstable();
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| (2.0 * (i + 1) as f64 - n as f64 - 1.0) * x as f64)
        .sum();
    weighted / ((n - 1) as f64 * total)
}

/// The popularity at which an item enters the head: the popularity of the item at rank
/// `⌈head_share · n⌉` when the catalogue's `n` items are sorted by descending popularity
/// (use [`DEFAULT_HEAD_SHARE`] for the top 20%). An item is in the head when its popularity is
/// at least this, so items tied with the last head item join the head.
///
/// `+∞` (nothing is head) for an empty catalogue or a share of 0 or less; a share of 1 or
/// more puts every item in the head. Popularity values should be finite. Sorts one copy.
pub fn head_threshold<P: Copy + Into<f64>>(popularity: &[P], head_share: f64) -> f64 {
    let n = popularity.len();
    // The tolerance keeps a product like 0.1 · 30 = 3.0000000000000004 at 3 items, not 4.
    let head = (head_share.clamp(0.0, 1.0) * n as f64 - 1e-9).ceil() as usize;
    if head == 0 {
        return f64::INFINITY;
    }
    let mut sorted: Vec<f64> = popularity.iter().map(|&p| p.into()).collect();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    sorted[head.min(n) - 1]
}

/// Long-tail share: the share of the list's items whose popularity is below `head_threshold`
/// (from [`head_threshold`]), i.e. outside the head. In [0, 1]; 0 for an empty list.
pub fn long_tail_share<P: Copy + Into<f64>>(list_popularity: &[P], head_threshold: f64) -> f64 {
    if list_popularity.is_empty() {
        return 0.0;
    }
    let tail = list_popularity
        .iter()
        .filter(|&&p| p.into() < head_threshold)
        .count();
    tail as f64 / list_popularity.len() as f64
}

/// Calibration (Steck, "Calibrated Recommendations", RecSys 2018): the Kullback-Leibler
/// divergence `KL(p ‖ q̃) = Σ_g p(g) · ln(p(g) / q̃(g))`, in nats, where
///
/// - `p` is the user's category distribution: `user` as (category, weight) pairs, normalised
///   here (repeated categories add up; weights that are not finite and positive are ignored);
/// - `q` is the list's category distribution, each item counting once for its category (an
///   empty list gives `q = 0`);
/// - `q̃ = (1 − alpha)·q + alpha·p` keeps the divergence finite when the list misses one of
///   the user's categories ([`DEFAULT_CALIBRATION_ALPHA`] is 0.01).
///
/// 0 when the list's mix equals the user's; at most `ln(1/alpha)` (≈ 4.6 for 0.01), reached
/// by a list with none of the user's categories. 0 when the user has no category. Unknown
/// categories (0) are left out of both distributions.
pub fn calibration_kl(user: &[(u64, f64)], list: &[u64], alpha: f64) -> f64 {
    kl_divergence(user, list.iter().map(|&c| (c, 1.0)), alpha)
}

/// [`calibration_kl`] for lists whose items spread over several categories: `list` holds
/// (category, weight) pairs, e.g. `1/k` for each of an item's `k` genres, as in Steck's paper,
/// and `q(g)` is the weight on `g` divided by the list's total weight.
pub fn calibration_kl_weighted(user: &[(u64, f64)], list: &[(u64, f64)], alpha: f64) -> f64 {
    kl_divergence(user, list.iter().copied(), alpha)
}

fn kl_divergence(user: &[(u64, f64)], list: impl Iterator<Item = (u64, f64)>, alpha: f64) -> f64 {
    let usable = |&(c, w): &(u64, f64)| c != 0 && w.is_finite() && w > 0.0;
    // The user's categories, sorted, with their weight and the list's weight on them.
    let mut p: Vec<(u64, f64, f64)> = user
        .iter()
        .filter(|e| usable(e))
        .map(|&(c, w)| (c, w, 0.0))
        .collect();
    p.sort_unstable_by_key(|e| e.0);
    p.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 += later.1;
        }
        same
    });
    let p_total: f64 = p.iter().map(|e| e.1).sum();
    if p_total == 0.0 {
        return 0.0;
    }
    let mut q_total = 0.0;
    for (c, w) in list.filter(usable) {
        q_total += w;
        if let Ok(i) = p.binary_search_by_key(&c, |e| e.0) {
            p[i].2 += w;
        }
    }
    p.iter()
        .map(|&(_, w, on)| {
            let pg = w / p_total;
            let qg = if q_total > 0.0 { on / q_total } else { 0.0 };
            pg * (pg / ((1.0 - alpha) * qg + alpha * pg)).ln()
        })
        .sum()
}

/// Unordered pairs among `n` items.
fn pairs(n: usize) -> usize {
    n * n.saturating_sub(1) / 2
}

#[cfg(test)]
mod tests {
    //! Each metric against values worked out by hand, plus its edge cases: empty and
    //! one-item lists, unknown categories, all-zero inputs.

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn intra_list_diversity_is_the_mean_pairwise_dissimilarity() {
        // Similarities: (0,1) = 1, (0,2) = 0.5, (1,2) = 0 → dissimilarities 0, 0.5, 1.
        let sim = [[1.0, 1.0, 0.5], [1.0, 1.0, 0.0], [0.5, 0.0, 1.0]];
        let ild = intra_list_diversity(3, |a, b| sim[a][b]);
        assert!(close(ild, 0.5), "{ild}");
        assert_eq!(intra_list_diversity(0, |_, _| 1.0), 0.0);
        assert_eq!(intra_list_diversity(1, |_, _| 1.0), 0.0);
        assert_eq!(intra_list_diversity(4, |_, _| 0.0), 1.0);
    }

    #[test]
    fn category_diversity_counts_pairs_of_one_known_category() {
        // [1, 1, 2, 0, 0]: 10 pairs, one shares category 1, unknowns never match → 1 − 1/10.
        assert!(close(category_intra_list_diversity(&[1, 1, 2, 0, 0]), 0.9));
        // A wall of one category.
        assert_eq!(category_intra_list_diversity(&[7, 7, 7]), 0.0);
        assert_eq!(category_intra_list_diversity(&[7]), 0.0);
        assert_eq!(category_intra_list_diversity(&[]), 0.0);
        // The same as the general form with "same known category" as the similarity.
        let cats = [3, 1, 3, 3, 2, 1, 0, 2];
        let general = intra_list_diversity(cats.len(), |a, b| {
            f32::from(cats[a] != 0 && cats[a] == cats[b])
        });
        assert!(close(category_intra_list_diversity(&cats), general));
    }

    #[test]
    fn coverage_divides_shown_categories_by_offered_ones() {
        // Offered: {1, 2, 3, 4}; shown: {1, 3} (0 and the stray 9 do not count).
        assert!(close(
            category_coverage(&[1, 1, 3, 0, 9], &[1, 2, 3, 4, 0, 4]),
            0.5
        ));
        assert_eq!(category_coverage(&[1], &[0, 0]), 0.0);
        assert_eq!(category_coverage(&[], &[1, 2]), 0.0);
        assert_eq!(category_coverage(&[2, 1], &[1, 2]), 1.0);
    }

    #[test]
    fn gini_is_zero_for_even_exposure_and_one_for_a_single_winner() {
        assert_eq!(exposure_gini(&[5, 5, 5, 5]), 0.0);
        assert!(close(exposure_gini(&[0, 0, 0, 9]), 1.0));
        // Sorted [0, 1, 2, 3], n = 4, Σ = 6: (−3·0 − 1·1 + 1·2 + 3·3) / (3·6) = 10/18.
        assert!(close(exposure_gini(&[2, 0, 3, 1]), 10.0 / 18.0));
        // Order does not matter.
        assert!(close(exposure_gini(&[3, 2, 1, 0]), 10.0 / 18.0));
        assert_eq!(exposure_gini(&[]), 0.0);
        assert_eq!(exposure_gini(&[4]), 0.0);
        assert_eq!(exposure_gini(&[0, 0, 0]), 0.0);
    }

    #[test]
    fn the_head_is_the_top_share_of_items_by_popularity() {
        let popularity: [u32; 10] = [50, 3, 40, 1, 8, 7, 6, 5, 4, 2];
        // Top 20% of 10 = 2 items: 50 and 40.
        assert_eq!(head_threshold(&popularity, DEFAULT_HEAD_SHARE), 40.0);
        // 25% of 10 rounds up to 3 items.
        assert_eq!(head_threshold(&popularity, 0.25), 8.0);
        assert_eq!(head_threshold(&popularity, 1.0), 1.0);
        assert_eq!(head_threshold(&popularity, 0.0), f64::INFINITY);
        assert_eq!(head_threshold::<f32>(&[], 0.2), f64::INFINITY);
        // Ties with the last head item join the head.
        let tied: [f32; 5] = [9.0, 9.0, 9.0, 1.0, 1.0];
        assert_eq!(head_threshold(&tied, 0.2), 9.0);
        assert_eq!(long_tail_share(&tied, 9.0), 0.4);
    }

    #[test]
    fn long_tail_share_counts_items_below_the_head() {
        assert_eq!(long_tail_share(&[50.0_f64, 39.0, 40.0, 2.0], 40.0), 0.5);
        assert_eq!(long_tail_share::<f64>(&[], 40.0), 0.0);
        assert_eq!(long_tail_share(&[1_u32, 2], f64::INFINITY), 1.0);
    }

    #[test]
    fn calibration_matches_steck_by_hand() {
        // p = {1: 0.5, 2: 0.5} (weights 2 and 2, category 1 given twice); list = [1, 1, 1, 3]
        // → q = {1: 0.75, 2: 0, 3: 0.25}. With α = 0.01:
        // q̃(1) = 0.99·0.75 + 0.01·0.5 = 0.7475, q̃(2) = 0.005,
        // KL = 0.5·ln(0.5/0.7475) + 0.5·ln(0.5/0.005).
        let user = [(1, 1.0), (2, 2.0), (1, 1.0), (0, 5.0), (4, -1.0)];
        let expected = 0.5 * (0.5_f64 / 0.7475).ln() + 0.5 * (100.0_f64).ln();
        let kl = calibration_kl(&user, &[1, 1, 1, 3], DEFAULT_CALIBRATION_ALPHA);
        assert!(close(kl, expected), "{kl} vs {expected}");
    }

    #[test]
    fn calibration_is_zero_when_matched_and_bounded_when_empty() {
        let user = [(1, 3.0), (2, 1.0)];
        assert!(close(calibration_kl(&user, &[1, 1, 2, 1], 0.01), 0.0));
        // Empty list: q = 0, q̃ = α·p, KL = ln(1/α).
        assert!(close(calibration_kl(&user, &[], 0.01), (100.0_f64).ln()));
        // A list of other categories only (and unknowns) is as far as an empty one.
        assert!(close(
            calibration_kl(&user, &[5, 0], 0.01),
            (100.0_f64).ln()
        ));
        assert_eq!(calibration_kl(&[], &[1, 2], 0.01), 0.0);
        assert_eq!(calibration_kl(&[(0, 1.0)], &[1], 0.01), 0.0);
    }

    #[test]
    fn weighted_calibration_spreads_items_over_their_categories() {
        // Two items, each half category 1 and half category 2: q = {1: 0.5, 2: 0.5}.
        let user = [(1, 1.0), (2, 1.0)];
        let list = [(1, 0.5), (2, 0.5), (1, 0.5), (2, 0.5)];
        assert!(close(calibration_kl_weighted(&user, &list, 0.01), 0.0));
        // One-category items weigh 1: the two forms agree.
        let cats = [1, 2, 2, 3];
        let pairs: Vec<(u64, f64)> = cats.iter().map(|&c| (c, 1.0)).collect();
        assert!(close(
            calibration_kl(&user, &cats, 0.2),
            calibration_kl_weighted(&user, &pairs, 0.2)
        ));
    }
}

//! Synthetic requests for benchmarks and the load generator: candidate lists shaped like a
//! recommender's (skewed categories and brands, scores falling with position, evidence from
//! several dimensions, optional unit embeddings), deterministic for a seed so that runs compare.

use crate::pb;

/// SplitMix64: a tiny, fast, well-mixed generator; statistical quality is all a workload needs.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Skewed towards small values: a few categories and brands dominate, as in real catalogues.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((u * u * n as f32) as u64).min(n - 1)
    }
}

/// A Rank request with `n` candidates, `dim`-dimensional embeddings (0 = none) and `k`.
pub fn rank_request(user_id: &str, n: usize, dim: usize, k: u32, seed: u64) -> pb::RankRequest {
    use pb::DataDimension as D;
    let evidence_kinds = [
        D::Browsing,
        D::Favorites,
        D::Search,
        D::Trending,
        D::Purchases,
        D::CrossPlatform,
    ];
    let mut rng = SplitMix::new(seed);
    let candidates = (0..n)
        .map(|i| {
            let mut embedding: Vec<f32> = (0..dim).map(|_| rng.unit() - 0.5).collect();
            let norm = embedding
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
                .max(1e-6);
            embedding.iter_mut().for_each(|v| *v /= norm);
            let category_id = 1 + rng.skewed(40);
            pb::Candidate {
                item_id: 1 + i as u64 * 7 + (seed % 7),
                score: 1.0 - i as f32 / n as f32 + 0.05 * rng.unit(),
                category_id,
                brand_id: 1 + category_id * 10 + rng.skewed(8),
                shop_id: 1 + rng.skewed(200),
                price: 5.0 + 500.0 * rng.unit(),
                popularity: 10_000.0 * rng.unit() * rng.unit(),
                embedding,
                evidence: vec![
                    evidence_kinds[rng.skewed(evidence_kinds.len() as u64) as usize] as i32,
                ],
                sponsored: rng.unit() < 0.05,
                title: String::new(),
                anchor_item_id: 0,
                anchor_title: String::new(),
                cross_platform_seen_ms: 0,
            }
        })
        .collect();
    pb::RankRequest {
        user_id: user_id.to_owned(),
        candidates,
        k,
        ..Default::default()
    }
}

/// The core's input for [`rank_request`] (as the server would convert it), for benches that
/// run the pipeline without a server.
/// Lists longer than the default limit are allowed, as for an operator who raised it.
pub fn rank_input(n: usize, dim: usize, k: u32) -> crate::rank::RankInput {
    let default = crate::config::Limits::default();
    let limits = crate::config::Limits {
        max_candidates: default.max_candidates.max(n),
        ..default
    };
    crate::grpc::convert::rank_call(
        rank_request("bench", n, dim, k, 42),
        &limits,
        1_700_000_000_000,
        None,
    )
    .expect("the synthetic workload is valid")
    .input
}

/// A user with some history against `input`: every fifth item ignored three times, the second
/// item's brand blocked, the third item's category "fewer like this".
pub fn user_with_history(input: &crate::rank::RankInput) -> crate::rank::UserView {
    let mut u = crate::rank::UserView::unknown(crate::rank::Consent::privacy_default());
    u.ignored = input
        .candidates
        .iter()
        .step_by(5)
        .map(|c| (c.item_id, 3.0))
        .collect();
    u.ignored.sort_by_key(|(id, _)| *id);
    u.blocked_brands = input
        .candidates
        .get(1)
        .map(|c| c.brand_id)
        .into_iter()
        .collect();
    u.fewer_categories = input
        .candidates
        .get(2)
        .map(|c| (c.category_id, 0.8))
        .into_iter()
        .collect();
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;

    #[test]
    fn requests_are_valid_and_deterministic() {
        let a = rank_request("u", 200, 32, 20, 9);
        assert_eq!(a, rank_request("u", 200, 32, 20, 9));
        assert_ne!(a, rank_request("u", 200, 32, 20, 10));
        let call = crate::grpc::convert::rank_call(a, &Limits::default(), 1, None).unwrap();
        assert_eq!(call.input.embeddings.unwrap().shape(), &[200, 32]);
    }
}

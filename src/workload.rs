//! Synthetic requests for benchmarks and the load generator: candidate lists shaped like a
//! recommender's (skewed categories and brands, scores falling with position, evidence from
//! several dimensions, optional unit embeddings) and a stream of user events with a realistic
//! mix, deterministic for a seed so that runs compare.

use std::sync::Arc;

use crate::pb;
use crate::pb::EventType as T;

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
                embedding_f32le: Vec::new(),
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

/// Items in the generated catalogue; a few are far more popular than the rest.
const ITEMS: u64 = 100_000;

/// What users do between two explicit words, by share: mostly scrolling past items.
pub const COUNTER_MIX: [(T, f64); 5] = [
    (T::Impression, 0.85),
    (T::Click, 0.09),
    (T::Search, 0.03),
    (T::Cart, 0.02),
    (T::Favorite, 0.01),
];

/// The events that wait for durability, by share among themselves.
pub const EXPLICIT_MIX: [(T, f64); 7] = [
    (T::Purchase, 0.35),
    (T::NotInterested, 0.30),
    (T::FewerLikeThis, 0.15),
    (T::BlockBrand, 0.08),
    (T::UnblockBrand, 0.04),
    (T::BlockShop, 0.05),
    (T::UnblockShop, 0.03),
];

fn pick(mix: &[(T, f64)], u: f64) -> T {
    let mut acc = 0.0;
    for (t, share) in mix {
        acc += share;
        if u < acc {
            return *t;
        }
    }
    mix[mix.len() - 1].0
}

/// A well-spread id in `1..=n` derived from `item`, so an item keeps its category, brand and
/// shop across events.
fn attribute(item: u64, salt: u64, n: u64) -> u64 {
    1 + (item ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) % n
}

/// User ids `bench-user-0` to `bench-user-<n-1>`, as the load generator names its users.
pub fn users(n: usize) -> Arc<Vec<String>> {
    Arc::new((0..n).map(|j| format!("bench-user-{j}")).collect())
}

/// Events as a platform sends them, deterministic for a seed: many users, a few of them heavy;
/// mostly impressions, some engagement, and a chosen share of explicit feedback and purchases
/// (the events the server makes durable before it acknowledges them).
pub struct EventMix {
    users: Arc<Vec<String>>,
    explicit_share: f64,
    rng: SplitMix,
}

impl EventMix {
    pub fn new(users: Arc<Vec<String>>, explicit_share: f64, seed: u64) -> Self {
        Self {
            users,
            explicit_share,
            rng: SplitMix::new(seed),
        }
    }

    /// A generator with the same users and mix, seeded from this one's next number.
    pub fn fork(&mut self) -> Self {
        Self::new(self.users.clone(), self.explicit_share, self.rng.next_u64())
    }

    pub fn next_event(&mut self) -> pb::Event {
        let rng = &mut self.rng;
        // Skewed: the first users are the heavy ones, as on any platform.
        let user = rng.skewed(self.users.len() as u64) as usize;
        let explicit = (rng.unit() as f64) < self.explicit_share;
        let kind = if explicit {
            pick(&EXPLICIT_MIX, rng.unit() as f64)
        } else {
            pick(&COUNTER_MIX, rng.unit() as f64)
        };
        let item = 1 + rng.skewed(ITEMS);
        let mut e = pb::Event {
            user_id: self.users[user].clone(),
            r#type: kind.into(),
            item_id: item,
            category_id: attribute(item, 1, 400),
            brand_id: attribute(item, 2, 3_000),
            shop_id: attribute(item, 3, 8_000),
            surface: String::new(),
            source: pb::DataDimension::Browsing.into(),
            ..Default::default()
        };
        match kind {
            T::Search => e.item_id = 0,
            T::Purchase => e.price = 5.0 + 500.0 * rng.unit(),
            // One subject each, as a client sends them.
            T::FewerLikeThis => (e.item_id, e.brand_id, e.shop_id) = (0, 0, 0),
            T::BlockBrand | T::UnblockBrand => (e.item_id, e.category_id, e.shop_id) = (0, 0, 0),
            T::BlockShop | T::UnblockShop => (e.item_id, e.category_id, e.brand_id) = (0, 0, 0),
            _ => {}
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use std::collections::BTreeMap;

    #[test]
    fn requests_are_valid_and_deterministic() {
        let a = rank_request("u", 200, 32, 20, 9);
        assert_eq!(a, rank_request("u", 200, 32, 20, 9));
        assert_ne!(a, rank_request("u", 200, 32, 20, 10));
        let call = crate::grpc::convert::rank_call(a, &Limits::default(), 1, None).unwrap();
        assert_eq!(call.input.embeddings.unwrap().shape(), &[200, 32]);
    }

    #[test]
    fn the_mix_is_mostly_impressions_with_the_explicit_share_asked_for() {
        let users: Arc<Vec<String>> = Arc::new((0..1000).map(|j| format!("u{j}")).collect());
        let mut mix = EventMix::new(users, 0.05, 7);
        let n = 100_000;
        let mut kinds = BTreeMap::new();
        let mut distinct = std::collections::HashSet::new();
        let now = crate::time::now_ms();
        for _ in 0..n {
            let e = mix.next_event();
            // Every generated event is one the server applies.
            let core = crate::grpc::convert::event(&e, now, &Default::default()).unwrap();
            core.check(now).unwrap();
            *kinds.entry(e.r#type().as_str_name()).or_insert(0u32) += 1;
            distinct.insert(e.user_id);
        }
        let share = |k: &str| f64::from(kinds[k]) / f64::from(n);
        assert!(
            (share("EVENT_TYPE_IMPRESSION") - 0.95 * 0.85).abs() < 0.01,
            "{kinds:?}"
        );
        let explicit: f64 = EXPLICIT_MIX
            .iter()
            .map(|(t, _)| share(t.as_str_name()))
            .sum();
        assert!((explicit - 0.05).abs() < 0.005, "{kinds:?}");
        assert!(distinct.len() > 900, "many users: {}", distinct.len());
    }
}

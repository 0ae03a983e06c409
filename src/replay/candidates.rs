//! The upstream candidate generator the replay stands in for the host's recommender: built
//! only from the events it has been shown, which the replay feeds strictly in time order and
//! only after each decision point (so a candidate list never reflects the moment it is asked
//! for, nor anything later).
//!
//! It is deliberately ordinary, the kind of generator tactful sits behind:
//! - **recently viewed**: the user's last [`Params::history`] distinct items, newest strongest
//!   (`0.8 / (1 + r)` for the r-th newest);
//! - **item co-visitation**: items interacted with by any user within
//!   [`Params::covisit_window_ms`] of one another, at most [`Params::pair_span`] items apart
//!   in that user's history, counted symmetrically; the user's last [`Params::seeds`] items
//!   each add `1 / (1 + r) · count / max count of that seed` to their co-visited items;
//! - **category popularity**: the most interacted-with items of the user's recent categories,
//!   `0.3 · (share of the user's history in the category) · (count / max count in it)`;
//! - **global popularity** fills up: `0.05 · count / max count`, from a ranking refreshed every
//!   [`Params::popular_refresh`] events.
//!
//! Each proposal carries the item's category, brand, shop and price as last seen in the log
//! (what a host's catalog would attach), so the policy's brand and shop rules see them.
//!
//! Ties are broken by item id, so replays are deterministic.

use std::collections::{HashMap, VecDeque};

use super::LogEvent;
use crate::rank::{Candidate, DataDimension, DimensionSet};

/// Knobs of the generator, fixed a priori (not fitted to any log).
#[derive(Debug, Clone)]
pub struct Params {
    /// Candidates proposed per decision.
    pub count: usize,
    /// Distinct items of a user's recent history kept.
    pub history: usize,
    /// Recent items whose co-visited items are proposed.
    pub seeds: usize,
    /// Two interactions count as co-visited when this close in time (one browsing session).
    pub covisit_window_ms: i64,
    /// ... and at most this many items apart in the user's history.
    pub pair_span: usize,
    /// Items per category considered for the category-popularity source.
    pub per_category: usize,
    /// Events between refreshes of the global popularity ranking.
    pub popular_refresh: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            count: 100,
            history: 20,
            seeds: 5,
            covisit_window_ms: 3_600_000,
            pair_span: 5,
            per_category: 30,
            popular_refresh: 1000,
        }
    }
}

/// One proposed item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub item_id: u64,
    pub category_id: u64,
    /// 0 = unknown.
    pub brand_id: u64,
    /// 0 = unknown.
    pub shop_id: u64,
    /// 0 = unknown.
    pub price: f32,
    /// The generator's relevance, higher is better.
    pub score: f32,
    /// Interactions with the item so far.
    pub popularity: u32,
    /// Whether the user's own history proposed it (recently viewed or co-visitation), rather
    /// than popularity alone.
    pub personal: bool,
}

impl Proposal {
    /// The Rank candidate the host would send for it: personal sources as browsing evidence,
    /// popularity fill-ups as trending.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            item_id: self.item_id,
            score: self.score,
            category_id: self.category_id,
            brand_id: self.brand_id,
            shop_id: self.shop_id,
            price: self.price,
            popularity: self.popularity as f32,
            evidence: if self.personal {
                DimensionSet::of([DataDimension::Browsing])
            } else {
                DimensionSet::of([DataDimension::Trending])
            },
            ..Candidate::default()
        }
    }
}

/// What the generator has learned from the events fed so far.
#[derive(Debug, Default)]
pub struct Generator {
    params: Params,
    covisits: HashMap<u64, HashMap<u64, u32>>,
    popularity: HashMap<u64, u32>,
    /// Per item: the latest (category, brand, shop, price) seen.
    attributes: HashMap<u64, (u64, u64, u64, f32)>,
    category_items: HashMap<u64, HashMap<u64, u32>>,
    /// Per user, newest first: (item, at_ms).
    history: HashMap<u64, VecDeque<(u64, i64)>>,
    popular: Vec<(u64, u32)>,
    since_refresh: usize,
}

impl Generator {
    pub fn new(params: Params) -> Self {
        Self {
            params,
            ..Self::default()
        }
    }

    /// Learns from one event (after every decision point that precedes it).
    pub fn observe(&mut self, e: &LogEvent) {
        let (user, item, category, at_ms) = (e.user, e.item, e.category, e.at_ms);
        let p = &self.params;
        let history = self.history.entry(user).or_default();
        for &(other, at) in history.iter().take(p.pair_span) {
            if other == item || (at_ms - at).abs() > p.covisit_window_ms {
                continue;
            }
            *self
                .covisits
                .entry(other)
                .or_default()
                .entry(item)
                .or_default() += 1;
            *self
                .covisits
                .entry(item)
                .or_default()
                .entry(other)
                .or_default() += 1;
        }
        history.retain(|(i, _)| *i != item);
        history.push_front((item, at_ms));
        history.truncate(p.history);
        *self.popularity.entry(item).or_default() += 1;
        self.attributes
            .insert(item, (category, e.brand, e.shop, e.price));
        *self
            .category_items
            .entry(category)
            .or_default()
            .entry(item)
            .or_default() += 1;
        self.since_refresh += 1;
        if self.popular.len() < p.count || self.since_refresh >= p.popular_refresh {
            self.refresh_popular();
        }
    }

    fn refresh_popular(&mut self) {
        let mut all: Vec<(u64, u32)> = self.popularity.iter().map(|(i, n)| (*i, *n)).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(self.params.count);
        self.popular = all;
        self.since_refresh = 0;
    }

    /// Interactions with the item so far.
    pub fn popularity(&self, item: u64) -> u32 {
        self.popularity.get(&item).copied().unwrap_or(0)
    }

    /// Up to [`Params::count`] candidates for the user, best first.
    pub fn candidates(&self, user: u64) -> Vec<Proposal> {
        let p = &self.params;
        let mut score: HashMap<u64, (f32, bool)> = HashMap::new();
        let mut add = |item: u64, s: f32, personal: bool| {
            let e = score.entry(item).or_insert((0.0, false));
            e.0 += s;
            e.1 |= personal;
        };
        let empty = VecDeque::new();
        let history = self.history.get(&user).unwrap_or(&empty);
        for (r, (item, _)) in history.iter().enumerate() {
            add(*item, 0.8 / (1.0 + r as f32), true);
        }
        for (r, (seed, _)) in history.iter().take(p.seeds).enumerate() {
            let Some(co) = self.covisits.get(seed) else {
                continue;
            };
            let max = co.values().copied().max().unwrap_or(1) as f32;
            for (item, n) in co {
                add(*item, *n as f32 / max / (1.0 + r as f32), true);
            }
        }
        let mut categories: HashMap<u64, usize> = HashMap::new();
        for (item, _) in history {
            if let Some((c, ..)) = self.attributes.get(item) {
                *categories.entry(*c).or_default() += 1;
            }
        }
        for (category, n) in &categories {
            let share = *n as f32 / history.len() as f32;
            let Some(items) = self.category_items.get(category) else {
                continue;
            };
            let mut top: Vec<(u64, u32)> = items.iter().map(|(i, n)| (*i, *n)).collect();
            top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let max = top.first().map_or(1, |t| t.1) as f32;
            for (item, count) in top.into_iter().take(p.per_category) {
                add(item, 0.3 * share * count as f32 / max, false);
            }
        }
        let max = self.popular.first().map_or(1, |t| t.1) as f32;
        for (item, count) in &self.popular {
            add(*item, 0.05 * *count as f32 / max, false);
        }
        let mut out: Vec<Proposal> = score
            .into_iter()
            .map(|(item_id, (score, personal))| {
                let (category_id, brand_id, shop_id, price) =
                    self.attributes.get(&item_id).copied().unwrap_or_default();
                Proposal {
                    item_id,
                    category_id,
                    brand_id,
                    shop_id,
                    price,
                    score,
                    popularity: self.popularity(item_id),
                    personal,
                }
            })
            .collect();
        out.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.item_id.cmp(&b.item_id)));
        out.truncate(p.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view of `item` in `category` by `user` at `at_ms`.
    fn view(user: u64, item: u64, category: u64, at_ms: i64) -> LogEvent {
        LogEvent {
            user,
            item,
            category,
            at_ms,
            ..LogEvent::default()
        }
    }

    #[test]
    fn co_visited_items_are_proposed_and_ranked_by_evidence() {
        let mut g = Generator::new(Params::default());
        // Users 1 and 2 both view 10 then 11; user 1 also views 12 much later.
        g.observe(&view(1, 10, 1, 0));
        g.observe(&view(1, 11, 1, 1000));
        g.observe(&view(2, 10, 1, 2000));
        g.observe(&view(2, 11, 1, 3000));
        g.observe(&view(1, 12, 2, 10 * 3_600_000));
        // User 3 viewed 10: 11 (co-visited twice) comes first, then 10 itself (recently
        // viewed), and 12 (never within the window) only through popularity.
        g.observe(&view(3, 10, 1, 20 * 3_600_000));
        let c = g.candidates(3);
        assert_eq!(c[0].item_id, 11);
        assert_eq!(c[1].item_id, 10);
        assert!(c[0].personal && c[1].personal);
        let twelve = c.iter().find(|p| p.item_id == 12).unwrap();
        assert!(!twelve.personal && twelve.score < c[1].score);
        assert_eq!(twelve.category_id, 2);
    }

    #[test]
    fn a_cold_user_gets_popular_items_and_the_count_is_bounded() {
        let mut g = Generator::new(Params {
            count: 3,
            popular_refresh: 1,
            ..Params::default()
        });
        for i in 0..10u64 {
            for _ in 0..=i {
                g.observe(&view(100 + i, i + 1, 7, i as i64));
            }
        }
        let c = g.candidates(999);
        assert_eq!(
            c.iter().map(|p| p.item_id).collect::<Vec<_>>(),
            vec![10, 9, 8]
        );
    }
}

//! `tactful fit`: learns the platform knowledge a policy needs from the purchases of a log's
//! earlier part, in the policy format of `rank::policy` (`[cooling_off] cycles`,
//! `[complements] graph`).
//!
//! Purchases of one user in one category less than [`FitParams::occasion_ms`] apart are one
//! purchase *occasion* (a basket of two phone cases is not a repurchase).
//!
//! - **Durable categories** (cooling-off cycles): a category bought on at least
//!   [`FitParams::min_buyers`] users' occasions, of which at most
//!   [`FitParams::max_repeat_share`] are followed by another occasion of the same user in the
//!   same category. Its cycle: the shortest repurchase gap seen, if any; otherwise the
//!   longest time the log watched one of its buyers after a purchase without a repurchase
//!   (what the data vouches for), at least [`FitParams::min_days`]. Its `support` is the
//!   number of buyers behind it: the policy filters substitutes only from
//!   `cooling_off.full_support` buyers on, and below that lowers them in proportion.
//! - **Complements**: category B goes with A when at least [`FitParams::min_pair_users`]
//!   users bought B strictly after A within [`FitParams::window_days`], and the lift
//!   `P(B later | bought A) / P(B)` (users, among users with a purchase) is at least
//!   [`FitParams::min_lift`].
//!
//! Purchases of an unknown category (0) count as purchases but teach nothing.
//!
//! Nothing here looks past the events it is given: the caller passes the fitting part only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use super::discount::DiscountFit;
use super::{Action, LogEvent};
use crate::rank::Policy;
use crate::time::DAY_MS;

/// Thresholds of the fit, chosen a priori.
#[derive(Debug, Clone)]
pub struct FitParams {
    pub occasion_ms: i64,
    /// Distinct buyers a category needs before it can be called durable: 2, the least that
    /// is not one person's habit (small logs have few purchases; raise it on large ones).
    pub min_buyers: usize,
    /// At most this share of a category's occasions may be followed by a repurchase: 10%.
    pub max_repeat_share: f64,
    pub min_days: f64,
    /// Users who bought B after A before B counts as A's complement: 2.
    pub min_pair_users: usize,
    /// How much likelier than chance: 2×.
    pub min_lift: f64,
    /// "After" means within this many days: 30, the complements stage's default window.
    pub window_days: f64,
}

impl Default for FitParams {
    fn default() -> Self {
        Self {
            occasion_ms: 3_600_000,
            min_buyers: 2,
            max_repeat_share: 0.1,
            min_days: 1.0,
            min_pair_users: 2,
            min_lift: 2.0,
            window_days: 30.0,
        }
    }
}

/// A durable category found by the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Durable {
    pub category_id: u64,
    pub days: f64,
    pub buyers: usize,
    pub occasions: usize,
    pub repeats: usize,
}

/// A complement pair found by the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Complement {
    pub bought: u64,
    pub then: u64,
    pub users: usize,
    pub lift: f64,
}

/// What the fit learned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fitted {
    pub durables: Vec<Durable>,
    pub complements: Vec<Complement>,
    pub purchases: usize,
    pub buyers: usize,
    pub categories_bought: usize,
    /// Fatigue's impression discount (see [`super::discount`]); filled by the replay, which
    /// holds the candidate generator the fit replays.
    pub discount: DiscountFit,
}

/// Fits on `events` (time-ordered, the fitting part only).
pub fn fit(events: &[LogEvent], p: &FitParams) -> Fitted {
    let end_ms = events.last().map_or(0, |e| e.at_ms);
    // Per user: occasions (category, time), in time order.
    let mut occasions: BTreeMap<u64, Vec<(u64, i64)>> = BTreeMap::new();
    let mut purchases = 0;
    for e in events.iter().filter(|e| e.action == Action::Buy) {
        purchases += 1;
        if e.category == 0 {
            // A purchase in no known category says nothing about any category's cycle.
            continue;
        }
        let mine = occasions.entry(e.user).or_default();
        let same = mine
            .iter()
            .rev()
            .any(|(c, t)| *c == e.category && e.at_ms - *t < p.occasion_ms);
        if !same {
            mine.push((e.category, e.at_ms));
        }
    }
    // Durables.
    #[derive(Default)]
    struct Stats {
        buyers: BTreeSet<u64>,
        occasions: usize,
        repeats: usize,
        shortest_gap_ms: Option<i64>,
        longest_watch_ms: i64,
    }
    let mut by_category: BTreeMap<u64, Stats> = BTreeMap::new();
    for (user, mine) in &occasions {
        for (i, (c, t)) in mine.iter().enumerate() {
            let s = by_category.entry(*c).or_default();
            s.buyers.insert(*user);
            s.occasions += 1;
            match mine[i + 1..].iter().find(|(c2, _)| c2 == c) {
                Some((_, t2)) => {
                    s.repeats += 1;
                    let gap = t2 - t;
                    s.shortest_gap_ms = Some(s.shortest_gap_ms.map_or(gap, |g| g.min(gap)));
                }
                None => s.longest_watch_ms = s.longest_watch_ms.max(end_ms - t),
            }
        }
    }
    let durables = by_category
        .iter()
        .filter(|(_, s)| {
            s.buyers.len() >= p.min_buyers
                && (s.repeats as f64) <= p.max_repeat_share * s.occasions as f64
        })
        .map(|(c, s)| {
            let ms = s.shortest_gap_ms.unwrap_or(s.longest_watch_ms);
            Durable {
                category_id: *c,
                days: round2((ms as f64 / DAY_MS as f64).clamp(p.min_days, 365.0)),
                buyers: s.buyers.len(),
                occasions: s.occasions,
                repeats: s.repeats,
            }
        })
        .collect();
    // Complements.
    let buyers = occasions.len();
    let window = (p.window_days * DAY_MS as f64) as i64;
    let mut pair_users: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for mine in occasions.values() {
        let mut pairs = BTreeSet::new();
        for (i, (a, ta)) in mine.iter().enumerate() {
            for (b, tb) in &mine[i + 1..] {
                if a != b && tb > ta && tb - ta <= window {
                    pairs.insert((*a, *b));
                }
            }
        }
        for pair in pairs {
            *pair_users.entry(pair).or_default() += 1;
        }
    }
    let complements = pair_users
        .into_iter()
        .filter(|(_, n)| *n >= p.min_pair_users)
        .filter_map(|((a, b), n)| {
            let users_a = by_category[&a].buyers.len() as f64;
            let users_b = by_category[&b].buyers.len() as f64;
            let lift = (n as f64 / users_a) / (users_b / buyers as f64);
            (lift >= p.min_lift).then_some(Complement {
                bought: a,
                then: b,
                users: n,
                lift: round2(lift),
            })
        })
        .collect();
    Fitted {
        durables,
        complements,
        purchases,
        buyers,
        categories_bought: by_category.len(),
        discount: DiscountFit::default(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Fitted {
    /// Whether the fit found neither a durable category nor a complement pair: a policy
    /// "fitted" on it is the built-in default.
    pub fn learned_nothing(&self) -> bool {
        self.durables.is_empty() && self.complements.is_empty()
    }

    /// The policy file: the built-in default plus the fitted cycles and complement graph.
    /// `about` goes into the header comment (what it was fitted on).
    pub fn to_toml(&self, about: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Fitted by `tactful fit` on {about}.");
        let _ = writeln!(
            s,
            "# {} purchases by {} users in {} categories: {} durable categories, {} complement pairs.",
            self.purchases,
            self.buyers,
            self.categories_bought,
            self.durables.len(),
            self.complements.len()
        );
        s.push_str("# Everything not listed keeps the built-in default policy's setting.\n\n");
        s.push_str("[cooling_off]\ncycles = [\n");
        for d in &self.durables {
            let _ = writeln!(
                s,
                "  {{ category_id = {}, days = {:?}, support = {} }},  # {} of {} occasions repurchased",
                d.category_id, d.days, d.buyers, d.repeats, d.occasions
            );
        }
        s.push_str("]\n\n[complements]\ngraph = [\n");
        let mut graph: BTreeMap<u64, Vec<&Complement>> = BTreeMap::new();
        for c in &self.complements {
            graph.entry(c.bought).or_default().push(c);
        }
        for (a, bs) in graph {
            let ids: Vec<String> = bs.iter().map(|c| c.then.to_string()).collect();
            let why: Vec<String> = bs
                .iter()
                .map(|c| format!("{}: {} users, lift {}", c.then, c.users, c.lift))
                .collect();
            let _ = writeln!(
                s,
                "  {{ category_id = {a}, complements = [{}] }},  # {}",
                ids.join(", "),
                why.join("; ")
            );
        }
        s.push_str("]\n");
        if let Some(d) = self.discount.learned() {
            let curve = |c: &[f32]| {
                c.iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let trials = |t: &super::discount::Trials| t.shown.iter().sum::<u64>();
            let _ = write!(
                s,
                "\n# Relevance kept after 0, 1, 2, ... ignored impressions, from {} / {} / {} shown slots.\n\
                 [fatigue.learned]\nnever = [{}]\nrecent = [{}]\nearlier = [{}]\nrecent_hours = {:?}\n",
                trials(&self.discount.never),
                trials(&self.discount.recent),
                trials(&self.discount.earlier),
                curve(&d.never),
                curve(&d.recent),
                curve(&d.earlier),
                d.recent_hours
            );
        }
        s
    }

    /// The fitted policy, read back through the policy format so what is written is what
    /// runs.
    pub fn policy(&self) -> Policy {
        toml::from_str(&self.to_toml("")).expect("the fitted policy is valid TOML")
    }

    /// Cooling-off windows by category, in milliseconds.
    pub fn windows_ms(&self) -> HashMap<u64, i64> {
        self.durables
            .iter()
            .map(|d| (d.category_id, (d.days * DAY_MS as f64) as i64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buy(user: u64, category: u64, day: f64) -> LogEvent {
        LogEvent {
            user,
            item: user * 1000 + category,
            category,
            action: Action::Buy,
            at_ms: (day * DAY_MS as f64) as i64,
            ..LogEvent::default()
        }
    }

    #[test]
    fn a_durable_category_and_a_complement_pair_are_found() {
        // Category 1 (phones) is bought once by users 1..=4 and never again; each of them then
        // buys category 2 (cases). Category 3 (snacks) is rebought by everyone. Users 5..=8
        // buy only snacks and user 9 something else, so cases are rare among the 9 buyers:
        // lift = (4/4) / (4/9) = 2.25.
        let mut events = Vec::new();
        for u in 1..=4 {
            events.push(buy(u, 1, 0.0 + u as f64 * 0.1));
            events.push(buy(u, 2, 1.0 + u as f64 * 0.1));
        }
        for u in 1..=8 {
            events.push(buy(u, 3, 0.5));
            events.push(buy(u, 3, 2.5));
            // Same basket, not a repurchase.
            events.push(buy(u, 3, 2.5 + 1.0 / 48.0));
        }
        events.push(buy(9, 9, 5.0));
        events.sort_by_key(|e| e.at_ms);
        let f = fit(&events, &FitParams::default());
        let phones = f.durables.iter().find(|d| d.category_id == 1).unwrap();
        assert_eq!((phones.buyers, phones.repeats), (4, 0));
        // Watched from user 1's purchase (day 0.1) to the log's end (day 5): 4.9 days.
        assert_eq!(phones.days, 4.9);
        assert!(
            f.durables.iter().all(|d| d.category_id != 3),
            "snacks recur"
        );
        assert!(
            f.durables.iter().all(|d| d.category_id != 9),
            "one buyer is no support"
        );
        assert_eq!(
            f.complements,
            vec![Complement {
                bought: 1,
                then: 2,
                users: 4,
                lift: 2.25
            }]
        );
        // The policy reads back with the fitted knowledge.
        let policy = f.policy();
        let phones = policy
            .cooling_off
            .cycles
            .iter()
            .find(|c| c.category_id == 1);
        assert_eq!(
            phones.map(|c| c.support),
            Some(Some(4)),
            "the cycle carries the buyers behind it"
        );
        assert_eq!(policy.complements.graph[0].complements, vec![2]);
        policy.validate("fitted").unwrap();
        assert!(!f.learned_nothing());
        assert!(
            fit(&events[..1], &FitParams::default()).learned_nothing(),
            "one buyer"
        );
    }
}

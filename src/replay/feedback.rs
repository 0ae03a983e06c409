//! Simulated explicit feedback: what tactful does with a user's own words, measured on a real
//! log that has none.
//!
//! When a replay simulates feedback ([`Simulation`]), a third arm runs the policy under test
//! with its own user states. After each of its lists, every shown item the user ignores (it
//! is not the item the user opens at that moment, and the user never engages with it again in
//! the log) draws, with probability [`Simulation::share`], one word from the user, chosen with
//! equal chances among those that apply to the item:
//! - "not interested" in the item;
//! - "fewer like this" on its category (when known);
//! - blocking its brand (when known).
//!
//! Each word is an `Event` of the kind the server accepts (`NotInterested`, `FewerLikeThis`,
//! `BlockBrand`), checked and applied through the state module's own event API at the moment
//! of the list. A word the state refuses (its per-user cap) is counted and not recorded.
//!
//! The [`Ledger`] keeps what each user said, apart from the user state, so that violations (a
//! later list showing an item while the user's "not interested" in it is in force, or an item
//! of a blocked brand) are counted against the words, not against the state that should
//! honour them. "Fewer like this" lowers a category's items rather than removing them, so
//! showing one is no violation.
//!
//! Draws are a keyed hash of the seed, the decision's index in the log and the item: the same
//! seed gives the same words on the same log, whatever the machine or the run.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher as _;

use siphasher::sip::SipHasher13;

use crate::state::{Event, EventKind};

/// The simulated user's habits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulation {
    /// The share of ignored shown items the user speaks about, in (0, 1].
    pub share: f64,
    pub seed: u64,
}

/// One word of the user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    NotInterested(u64),
    FewerLikeThis(u64),
    BlockBrand(u64),
}

impl Word {
    /// The event the server would receive.
    pub fn event(self, at_ms: i64) -> Event {
        let mut e = Event::new(self.kind(), at_ms);
        match self {
            Self::NotInterested(item) => e.item_id = item,
            Self::FewerLikeThis(category) => e.category_id = category,
            Self::BlockBrand(brand) => e.brand_id = brand,
        }
        e
    }

    pub fn kind(self) -> EventKind {
        match self {
            Self::NotInterested(_) => EventKind::NotInterested,
            Self::FewerLikeThis(_) => EventKind::FewerLikeThis,
            Self::BlockBrand(_) => EventKind::BlockBrand,
        }
    }
}

impl Simulation {
    /// A uniform draw in [0, 1) for (decision, item, purpose).
    fn draw(&self, decision: usize, item: u64, purpose: u64) -> f64 {
        let mut h = SipHasher13::new_with_keys(self.seed, purpose);
        h.write_u64(decision as u64);
        h.write_u64(item);
        (h.finish() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What the user says about an ignored item shown at the `decision`-th event of the log,
    /// if anything.
    pub fn word(&self, decision: usize, item: u64, category: u64, brand: u64) -> Option<Word> {
        if self.draw(decision, item, 0) >= self.share {
            return None;
        }
        let mut options = vec![Word::NotInterested(item)];
        if category != 0 {
            options.push(Word::FewerLikeThis(category));
        }
        if brand != 0 {
            options.push(Word::BlockBrand(brand));
        }
        let pick = (self.draw(decision, item, 1) * options.len() as f64) as usize;
        Some(options[pick.min(options.len() - 1)])
    }
}

/// What the users of one arm said, and how often.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// (user, item) → in force until (unix ms).
    not_interested: HashMap<(u64, u64), i64>,
    /// (user, brand).
    blocked_brands: HashSet<(u64, u64)>,
    pub not_interested_words: u64,
    pub fewer_like_this_words: u64,
    pub block_brand_words: u64,
    /// Words the state refused (its per-user cap), not recorded.
    pub refused: u64,
}

impl Ledger {
    /// Records a word the state accepted; a "not interested" lasts `not_interested_ms`.
    pub fn record(&mut self, user: u64, word: Word, at_ms: i64, not_interested_ms: i64) {
        match word {
            Word::NotInterested(item) => {
                self.not_interested_words += 1;
                let until = at_ms.saturating_add(not_interested_ms);
                let e = self.not_interested.entry((user, item)).or_default();
                *e = (*e).max(until);
            }
            Word::FewerLikeThis(_) => self.fewer_like_this_words += 1,
            Word::BlockBrand(brand) => {
                self.block_brand_words += 1;
                self.blocked_brands.insert((user, brand));
            }
        }
    }

    /// Whether showing the item now goes against the user's word.
    pub fn violates(&self, user: u64, item: u64, brand: u64, now_ms: i64) -> bool {
        self.not_interested
            .get(&(user, item))
            .is_some_and(|until| now_ms < *until)
            || (brand != 0 && self.blocked_brands.contains(&(user, brand)))
    }

    /// Words recorded.
    pub fn words(&self) -> u64 {
        self.not_interested_words + self.fewer_like_this_words + self.block_brand_words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_share_and_the_seed() {
        let sim = Simulation {
            share: 0.25,
            seed: 7,
        };
        let words: Vec<Option<Word>> = (0..4000).map(|d| sim.word(d, 5, 6, 7)).collect();
        let spoken = words.iter().flatten().count();
        assert!((900..1100).contains(&spoken), "{spoken} of 4000 at 25%");
        for kind in [
            Word::NotInterested(5),
            Word::FewerLikeThis(6),
            Word::BlockBrand(7),
        ] {
            let n = words.iter().flatten().filter(|w| **w == kind).count();
            assert!(n > spoken / 5, "{kind:?}: {n}");
        }
        let again: Vec<Option<Word>> = (0..4000).map(|d| sim.word(d, 5, 6, 7)).collect();
        assert_eq!(words, again, "the same seed, the same words");
        let other = Simulation { seed: 8, ..sim };
        assert_ne!(
            words,
            (0..4000)
                .map(|d| other.word(d, 5, 6, 7))
                .collect::<Vec<_>>()
        );
        // Without a brand or category, only "not interested" applies.
        assert!(
            (0..400)
                .filter_map(|d| sim.word(d, 5, 0, 0))
                .all(|w| w == Word::NotInterested(5))
        );
    }

    #[test]
    fn the_ledger_knows_what_is_in_force() {
        let mut l = Ledger::default();
        l.record(1, Word::NotInterested(10), 1000, 500);
        l.record(1, Word::BlockBrand(3), 1000, 500);
        l.record(1, Word::FewerLikeThis(4), 1000, 500);
        assert!(l.violates(1, 10, 0, 1499));
        assert!(!l.violates(1, 10, 0, 1500), "expired");
        assert!(!l.violates(2, 10, 0, 1200), "another user");
        assert!(
            l.violates(1, 11, 3, 99_999),
            "a blocked brand stays blocked"
        );
        assert!(!l.violates(1, 11, 0, 1200));
        assert_eq!(l.words(), 3);
        let e = Word::BlockBrand(3).event(5);
        assert_eq!((e.kind, e.brand_id, e.at_ms), (EventKind::BlockBrand, 3, 5));
        assert!(e.check(5).is_ok());
    }
}

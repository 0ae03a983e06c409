//! Exploration slots: a share of positions kept for good items outside the user's dominant
//! categories, each with the reason "something new for you". Without them a feed only ever
//! confirms what the user already engaged with (the filter bubble), and the recommender never
//! learns whether anything else would do.
//!
//! The user's dominant categories are their category interest tags (their own and those
//! learned from consented engagement), strongest first, until `dominant_share` of the tags'
//! weight. A user without category tags has nothing to explore away from, so gets no slots;
//! with personalisation off there are no tags, hence no slots. A slot goes to the best
//! candidate (by the selection's own objective) of another category whose score is at least
//! `min_score`; when there is none, the slot is an ordinary position. Slots lie within the
//! selection's greedy depth (`diversity.depth`, 100): past it the list is a sort.

use serde::Deserialize;

use crate::rank::user::{TagKind, UserView};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExplorationParams {
    /// Share of positions that are exploration slots. One in ten is enough to learn from
    /// and to break the bubble, and costs the list little relevance.
    pub share: f32,
    /// The first slot (1-based): the top of a list is where relevance matters most, and
    /// position 5 is still on the first screen.
    pub first_slot: usize,
    /// "Good" items only: a slot's item scores at least this, on the relevance scale where the
    /// request's best candidate has 1. Exploring with poor items teaches the user to skip slots.
    pub min_score: f32,
    /// The user's dominant categories cover this share of their category tags' weight.
    pub dominant_share: f32,
}

impl Default for ExplorationParams {
    fn default() -> Self {
        Self {
            share: 0.1,
            first_slot: 5,
            min_score: 0.25,
            dominant_share: 0.8,
        }
    }
}

impl ExplorationParams {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(self.share.is_finite() && (0.0..=0.5).contains(&self.share)) {
            return Err(("exploration.share".into(), "must be from 0 to 0.5".into()));
        }
        if self.first_slot == 0 {
            return Err((
                "exploration.first_slot".into(),
                "positions count from 1".into(),
            ));
        }
        if !(self.min_score.is_finite() && (-10.0..=10.0).contains(&self.min_score)) {
            return Err((
                "exploration.min_score".into(),
                "must be a number from -10 to 10".into(),
            ));
        }
        if !unit(self.dominant_share) || self.dominant_share == 0.0 {
            return Err((
                "exploration.dominant_share".into(),
                "must be above 0 and at most 1".into(),
            ));
        }
        Ok(())
    }

    /// The user's dominant categories, sorted by id; empty when the user has no category tags.
    pub fn dominant(&self, user: &UserView) -> Vec<u64> {
        let mut tags: Vec<(u64, f32)> = user
            .tags
            .iter()
            .filter(|t| t.kind == TagKind::Category && t.weight > 0.0)
            .map(|t| (t.id, t.weight))
            .collect();
        tags.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f32 = tags.iter().map(|t| t.1).sum();
        let mut covered = 0.0;
        let mut dominant = Vec::new();
        for (id, weight) in tags {
            if covered >= self.dominant_share * total {
                break;
            }
            covered += weight;
            dominant.push(id);
        }
        dominant.sort_unstable();
        dominant
    }
}

/// Which positions of one answer are exploration slots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slots {
    /// 0-based position of the first slot.
    first: usize,
    /// Positions between slots.
    period: usize,
}

impl Slots {
    /// `None` when the share gives no slots.
    pub fn new(share: f32, first_slot: usize) -> Option<Self> {
        (share > 0.0).then(|| Self {
            first: first_slot.saturating_sub(1),
            period: ((1.0 / share).round() as usize).max(1),
        })
    }

    pub fn contains(&self, position: usize) -> bool {
        position >= self.first && (position - self.first).is_multiple_of(self.period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::types::Consent;
    use crate::rank::user::{Tag, TagSource};

    #[test]
    fn slots_start_at_the_first_slot_and_repeat_by_the_share() {
        let s = Slots::new(0.1, 5).unwrap();
        let slots: Vec<usize> = (0..40).filter(|p| s.contains(*p)).collect();
        assert_eq!(slots, vec![4, 14, 24, 34]);
        let s = Slots::new(0.5, 1).unwrap();
        assert_eq!((0..5).filter(|p| s.contains(*p)).count(), 3);
        assert!(Slots::new(0.0, 5).is_none());
    }

    #[test]
    fn dominant_categories_cover_the_share_of_tag_weight() {
        let mut user = UserView::unknown(Consent::privacy_default());
        let tag = |kind, id, weight| Tag {
            kind,
            id,
            label: String::new(),
            weight,
            source: TagSource::User,
        };
        user.tags = vec![
            tag(TagKind::Category, 1, 0.6),
            tag(TagKind::Category, 2, 0.3),
            tag(TagKind::Category, 3, 0.1),
            tag(TagKind::Brand, 9, 1.0),
        ];
        let p = ExplorationParams::default();
        assert_eq!(p.dominant(&user), vec![1, 2], "0.6 + 0.3 reach 80%");
        user.tags.clear();
        assert!(p.dominant(&user).is_empty());
    }
}

//! [`UserView`]: the read-only snapshot of one user's state that a ranking works from.
//!
//! The state store builds it (under a brief shard lock) and hands it to the pipeline, so no lock
//! is held while scoring. Lookups are binary searches over small sorted vectors: a user holds
//! at most a few hundred entries, and copying them is cheaper than any shared structure.

use serde::{Deserialize, Serialize};

use super::types::{Candidate, Consent, DimensionSet, LifecycleStage};
use crate::time::DAY_MS;

/// How many impression times are kept per item: the largest frequency cap a policy may set.
pub const SHOWN_TIMES: usize = 8;

/// A purchase, kept for cooling-off windows and complements.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Purchase {
    pub item_id: u64,
    pub category_id: u64,
    pub brand_id: u64,
    pub price: f32,
    pub at_ms: i64,
    /// The item's title when the event carried one: "goes with your new {title}".
    pub title: String,
}

/// Something the user was seen looking at on another app or site (a cross-platform signal).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Sighting {
    pub item_id: u64,
    pub category_id: u64,
    pub at_ms: i64,
}

/// What an interest tag is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    Category,
    Brand,
}

/// An interest tag the user set or re-weighted. Weight 0 means the user removed it, which also
/// hides a tag learned for the same subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interest {
    pub kind: TagKind,
    pub id: u64,
    /// In [0, 1].
    pub weight: f32,
    /// The user's words for it, e.g. "trail running"; may be empty.
    pub label: String,
}

/// Where an interest tag comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSource {
    /// The user added or re-weighted it.
    User,
    /// Learned from behaviour of these (consented) kinds.
    Learned(DimensionSet),
}

/// An interest tag in force for a ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub kind: TagKind,
    pub id: u64,
    pub label: String,
    /// In (0, 1].
    pub weight: f32,
    pub source: TagSource,
}

/// What the core knows of the user at the moment of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    /// The consent in force for this request (stored choices, platform default, override).
    pub consent: Consent,
    /// Sorted item ids the user said "not interested" in, still in force now.
    pub not_interested: Vec<u64>,
    /// Sorted brand ids the user blocked.
    pub blocked_brands: Vec<u64>,
    /// Sorted shop ids the user blocked.
    pub blocked_shops: Vec<u64>,
    /// Sorted by item: impressions without engagement, decayed to now.
    pub ignored: Vec<(u64, f32)>,
    /// Sorted by category: "fewer like this" strength in (0, 1], decayed to now.
    pub fewer_categories: Vec<(u64, f32)>,
    /// Sorted by brand: "fewer like this" strength in (0, 1], decayed to now.
    pub fewer_brands: Vec<(u64, f32)>,
    /// First event seen from this user; `None` for a user with no history.
    pub first_seen_ms: Option<i64>,
    /// Latest engagement (not mere impressions): clicks, carts, favourites, purchases, searches.
    pub last_active_ms: Option<i64>,
    /// Sorted by item: unix seconds of its latest impressions, newest first, 0 = none.
    pub shown: Vec<(u64, [u32; SHOWN_TIMES])>,
    /// Sorted by item: when the user last engaged with it (clicked, carted, favourited,
    /// bought), for items tactful still holds. Empty when personalisation is off.
    pub engaged: Vec<(u64, i64)>,
    /// Sorted by category: impressions without engagement, decayed to now.
    pub ignored_categories: Vec<(u64, f32)>,
    /// Sorted by brand: impressions without engagement, decayed to now.
    pub ignored_brands: Vec<(u64, f32)>,
    /// Impressions in the last minutes, decayed (overload detection).
    pub recent_impressions: f32,
    /// Engagements in the last minutes, decayed (overload detection).
    pub recent_engagements: f32,
    /// Recent purchases, oldest first.
    pub purchases: Vec<Purchase>,
    /// Recent cross-platform sightings, oldest first.
    pub sightings: Vec<Sighting>,
    /// Interest tags in force (the user's and those learned), sorted by (kind, id). Empty when
    /// personalisation is off.
    pub tags: Vec<Tag>,
    /// Sorted sensitive categories the user opted in to.
    pub sensitive_opt_in: Vec<u64>,
    /// Sorted by item: the complement categories the platform's item catalog gives for items
    /// in `purchases` (not stored with the user: looked up for each ranking). They add to the
    /// policy's complement graph. Empty without a catalog.
    pub catalog_complements: Vec<(u64, Vec<u64>)>,
}

impl UserView {
    /// A user tactful holds nothing about.
    pub fn unknown(consent: Consent) -> Self {
        Self {
            consent,
            not_interested: Vec::new(),
            blocked_brands: Vec::new(),
            blocked_shops: Vec::new(),
            ignored: Vec::new(),
            fewer_categories: Vec::new(),
            fewer_brands: Vec::new(),
            first_seen_ms: None,
            last_active_ms: None,
            shown: Vec::new(),
            engaged: Vec::new(),
            ignored_categories: Vec::new(),
            ignored_brands: Vec::new(),
            recent_impressions: 0.0,
            recent_engagements: 0.0,
            purchases: Vec::new(),
            sightings: Vec::new(),
            tags: Vec::new(),
            sensitive_opt_in: Vec::new(),
            catalog_complements: Vec::new(),
        }
    }

    /// The same view with everything learned from behaviour left out: what a ranking with
    /// personalisation off may see. Only the user's explicit words (blocks, "not interested",
    /// "fewer like this") and consent remain, because they are instructions, not data about
    /// the user.
    pub fn explicit_only(&self) -> Self {
        Self {
            consent: self.consent,
            not_interested: self.not_interested.clone(),
            blocked_brands: self.blocked_brands.clone(),
            blocked_shops: self.blocked_shops.clone(),
            fewer_categories: self.fewer_categories.clone(),
            fewer_brands: self.fewer_brands.clone(),
            sensitive_opt_in: self.sensitive_opt_in.clone(),
            ..Self::unknown(self.consent)
        }
    }

    /// Impressions of the item at or after `since_ms`.
    pub fn shown_since(&self, item_id: u64, since_ms: i64) -> usize {
        let Ok(i) = self.shown.binary_search_by_key(&item_id, |(k, _)| *k) else {
            return 0;
        };
        let since_s = since_ms.div_euclid(1000);
        self.shown[i]
            .1
            .iter()
            .take_while(|t| **t != 0 && i64::from(**t) >= since_s)
            .count()
    }

    /// The catalog's complement categories of a bought item (empty if none are known).
    pub fn catalog_complements_of(&self, item_id: u64) -> &[u64] {
        self.catalog_complements
            .binary_search_by_key(&item_id, |(item, _)| *item)
            .map_or(&[], |i| &self.catalog_complements[i].1)
    }

    /// Decayed ignored impressions of the item's category and brand, the larger of the two.
    pub fn ignored_group(&self, category_id: u64, brand_id: u64) -> f32 {
        let c = if category_id == 0 {
            0.0
        } else {
            lookup(&self.ignored_categories, category_id)
        };
        let b = if brand_id == 0 {
            0.0
        } else {
            lookup(&self.ignored_brands, brand_id)
        };
        c.max(b)
    }

    /// The strongest interest tag that matches the candidate, if any.
    pub fn matching_tag(&self, c: &Candidate) -> Option<&Tag> {
        let find = |kind: TagKind, id: u64| {
            if id == 0 {
                return None;
            }
            self.tags
                .binary_search_by(|t| (t.kind, t.id).cmp(&(kind, id)))
                .ok()
                .map(|i| &self.tags[i])
        };
        match (
            find(TagKind::Category, c.category_id),
            find(TagKind::Brand, c.brand_id),
        ) {
            (Some(a), Some(b)) => Some(if b.weight > a.weight { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    pub fn opted_in_sensitive(&self, category_id: u64) -> bool {
        self.sensitive_opt_in.binary_search(&category_id).is_ok()
    }

    pub fn is_not_interested(&self, item_id: u64) -> bool {
        self.not_interested.binary_search(&item_id).is_ok()
    }

    pub fn is_brand_blocked(&self, brand_id: u64) -> bool {
        brand_id != 0 && self.blocked_brands.binary_search(&brand_id).is_ok()
    }

    pub fn is_shop_blocked(&self, shop_id: u64) -> bool {
        shop_id != 0 && self.blocked_shops.binary_search(&shop_id).is_ok()
    }

    /// When the user last engaged with the item, if tactful knows.
    pub fn engaged_at(&self, item_id: u64) -> Option<i64> {
        self.engaged
            .binary_search_by_key(&item_id, |(k, _)| *k)
            .ok()
            .map(|i| self.engaged[i].1)
    }

    /// Decayed count of the item's impressions the user did not engage with.
    pub fn ignored_impressions(&self, item_id: u64) -> f32 {
        lookup(&self.ignored, item_id)
    }

    /// The strongest "fewer like this" signal that applies to an item of this category/brand.
    pub fn fewer_like_this(&self, category_id: u64, brand_id: u64) -> f32 {
        let by_category = if category_id == 0 {
            0.0
        } else {
            lookup(&self.fewer_categories, category_id)
        };
        let by_brand = if brand_id == 0 {
            0.0
        } else {
            lookup(&self.fewer_brands, brand_id)
        };
        by_category.max(by_brand)
    }

    pub fn lifecycle(&self, now_ms: i64, thresholds: &LifecycleThresholds) -> LifecycleStage {
        let (Some(first), Some(last)) = (self.first_seen_ms, self.last_active_ms) else {
            return LifecycleStage::New;
        };
        let quiet_ms = now_ms.saturating_sub(last);
        if quiet_ms >= thresholds.churned_after_days as i64 * DAY_MS {
            LifecycleStage::Churned
        } else if quiet_ms >= thresholds.silent_after_days as i64 * DAY_MS {
            LifecycleStage::Silent
        } else if now_ms.saturating_sub(first) < thresholds.new_for_days as i64 * DAY_MS {
            LifecycleStage::New
        } else {
            LifecycleStage::Active
        }
    }
}

fn lookup(sorted: &[(u64, f32)], key: u64) -> f32 {
    sorted
        .binary_search_by_key(&key, |(k, _)| *k)
        .map_or(0.0, |i| sorted[i].1)
}

/// When a user counts as new, silent or churned.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleThresholds {
    /// A user first seen less than this many days ago is new: one week is long enough to see
    /// whether a first visit turns into a habit.
    pub new_for_days: u32,
    /// No engagement for this many days makes a user silent: two weeks skips a normal
    /// fortnightly shopping rhythm.
    pub silent_after_days: u32,
    /// No engagement for this many days makes a user churned: two months is the usual
    /// e-commerce churn horizon.
    pub churned_after_days: u32,
}

impl Default for LifecycleThresholds {
    fn default() -> Self {
        Self {
            new_for_days: 7,
            silent_after_days: 14,
            churned_after_days: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_use_sorted_vectors() {
        let mut v = UserView::unknown(Consent::privacy_default());
        v.blocked_brands = vec![3, 9];
        v.ignored = vec![(1, 2.0), (5, 0.5)];
        v.fewer_brands = vec![(9, 0.4)];
        v.fewer_categories = vec![(2, 0.7)];
        assert!(v.is_brand_blocked(9));
        assert!(!v.is_brand_blocked(0));
        assert_eq!(v.ignored_impressions(5), 0.5);
        assert_eq!(v.ignored_impressions(4), 0.0);
        assert_eq!(v.fewer_like_this(2, 9), 0.7);
        assert_eq!(v.fewer_like_this(0, 9), 0.4);
    }

    #[test]
    fn lifecycle_follows_activity() {
        let t = LifecycleThresholds::default();
        let now = 100 * DAY_MS;
        let mut v = UserView::unknown(Consent::privacy_default());
        assert_eq!(v.lifecycle(now, &t), LifecycleStage::New);
        v.first_seen_ms = Some(now - 2 * DAY_MS);
        v.last_active_ms = Some(now - DAY_MS);
        assert_eq!(v.lifecycle(now, &t), LifecycleStage::New);
        v.first_seen_ms = Some(now - 30 * DAY_MS);
        assert_eq!(v.lifecycle(now, &t), LifecycleStage::Active);
        v.last_active_ms = Some(now - 20 * DAY_MS);
        assert_eq!(v.lifecycle(now, &t), LifecycleStage::Silent);
        v.first_seen_ms = Some(0);
        v.last_active_ms = Some(now - 61 * DAY_MS);
        assert_eq!(v.lifecycle(now, &t), LifecycleStage::Churned);
    }
}

//! [`UserView`]: the read-only snapshot of one user's state that a ranking works from.
//!
//! The state store builds it (under a brief shard lock) and hands it to the pipeline, so no lock
//! is held while scoring. Lookups are binary searches over small sorted vectors: a user holds
//! at most a few hundred entries, and copying them is cheaper than any shared structure.

use serde::Deserialize;

use super::types::{Consent, LifecycleStage};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

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
        }
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

//! One user's hot state: exposure counters, explicit feedback, consent choices and activity
//! times. Small sorted vectors, not maps: a user holds tens to hundreds of entries, and sorted
//! vectors are compact, cache-friendly and cheap to copy into a [`UserView`].

use serde::{Deserialize, Serialize};

use crate::rank::{Consent, DataDimension, DimensionSet, UserView};

use super::StateConfig;
use super::decay::Decayed;
use super::event::{Event, EventError, EventKind};

/// Below this decayed count an item's ignored exposure is forgotten when building a view.
const IGNORED_FLOOR: f32 = 0.05;
/// What one heap allocation costs beyond its bytes, on average: size-class rounding and the
/// allocator's bookkeeping. Counting it keeps the memory cap close to the process's RSS.
const ALLOC_OVERHEAD: usize = 16;
/// Below this decayed strength a "fewer like this" signal no longer applies.
const FEWER_FLOOR: f32 = 0.01;

/// Exposure of one item to this user.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct ItemSignal {
    item_id: u64,
    /// Impressions since the user last engaged with the item, decayed.
    ignored: Decayed,
    /// The latest engagement: impressions stamped before it were not ignored.
    engaged_at_ms: i64,
}

impl ItemSignal {
    /// The latest moment anything happened to this signal.
    fn touched_ms(&self) -> i64 {
        self.ignored.at_ms.max(self.engaged_at_ms)
    }
}

/// The user's own consent choices; anything not chosen follows the platform default.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsentChoices {
    pub granted: DimensionSet,
    pub denied: DimensionSet,
    pub personalization: Option<bool>,
}

impl ConsentChoices {
    pub fn apply_to(self, default: Consent) -> Consent {
        Consent {
            granted: default.granted.union(self.granted).difference(self.denied),
            personalization: self.personalization.unwrap_or(default.personalization),
        }
    }

    pub fn set(&mut self, dimension: DataDimension, granted: bool) {
        if granted {
            self.granted.insert(dimension);
            self.denied.remove(dimension);
        } else {
            self.denied.insert(dimension);
            self.granted.remove(dimension);
        }
    }
}

/// The user's explicit words. Most users never block or mute anything, so this lives behind
/// one pointer that is `None` for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Explicit {
    /// Sorted by item id: (item, shown again from).
    not_interested: Vec<(u64, i64)>,
    /// Sorted.
    blocked_brands: Vec<u64>,
    /// Sorted.
    blocked_shops: Vec<u64>,
    /// Sorted by category id.
    fewer_categories: Vec<(u64, Decayed)>,
    /// Sorted by brand id.
    fewer_brands: Vec<(u64, Decayed)>,
}

impl Explicit {
    fn is_empty(&self) -> bool {
        self.not_interested.is_empty()
            && self.blocked_brands.is_empty()
            && self.blocked_shops.is_empty()
            && self.fewer_categories.is_empty()
            && self.fewer_brands.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        let vec = |cap: usize, size: usize| {
            if cap == 0 {
                0
            } else {
                cap * size + ALLOC_OVERHEAD
            }
        };
        size_of::<Self>()
            + ALLOC_OVERHEAD
            + vec(self.not_interested.capacity(), size_of::<(u64, i64)>())
            + vec(self.blocked_brands.capacity(), size_of::<u64>())
            + vec(self.blocked_shops.capacity(), size_of::<u64>())
            + vec(
                self.fewer_categories.capacity(),
                size_of::<(u64, Decayed)>(),
            )
            + vec(self.fewer_brands.capacity(), size_of::<(u64, Decayed)>())
    }
}

impl Explicit {
    fn apply(&mut self, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
        use EventKind as K;
        let cap = cfg.max_explicit_per_kind;
        match e.kind {
            K::NotInterested => {
                let until = if e.expires_at_ms > 0 {
                    e.expires_at_ms
                } else {
                    e.at_ms.saturating_add(cfg.not_interested_ms)
                };
                let entry = upsert(
                    &mut self.not_interested,
                    e.item_id,
                    |(k, _)| *k,
                    || (e.item_id, until),
                    cap,
                )
                .ok_or_else(|| full("item_id", cap))?;
                entry.1 = until;
            }
            K::FewerLikeThis => {
                for (v, id, field) in [
                    (&mut self.fewer_categories, e.category_id, "category_id"),
                    (&mut self.fewer_brands, e.brand_id, "brand_id"),
                ] {
                    if id == 0 {
                        continue;
                    }
                    let entry = upsert(v, id, |(k, _)| *k, || (id, Decayed::default()), cap)
                        .ok_or_else(|| full(field, cap))?;
                    // Each request for "fewer" restores full strength; it never exceeds 1.
                    entry.1 = Decayed {
                        value: 1.0,
                        at_ms: e.at_ms.max(entry.1.at_ms),
                    };
                }
            }
            K::BlockBrand => insert_sorted(&mut self.blocked_brands, e.brand_id, cap, "brand_id")?,
            K::UnblockBrand => remove_sorted(&mut self.blocked_brands, e.brand_id),
            K::BlockShop => insert_sorted(&mut self.blocked_shops, e.shop_id, cap, "shop_id")?,
            K::UnblockShop => remove_sorted(&mut self.blocked_shops, e.shop_id),
            K::Impression | K::Click | K::Cart | K::Favorite | K::Purchase | K::Search => {}
        }
        Ok(())
    }
}

/// Everything tactful holds about one user. Compact on purpose: it is what the memory cap
/// counts, and what snapshots and the log carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// Sorted by item id.
    items: Vec<ItemSignal>,
    explicit: Option<Box<Explicit>>,
    pub consent: ConsentChoices,
    /// First event of any kind; 0 = none yet.
    first_seen_ms: i64,
    /// Latest engagement or explicit action; 0 = none yet.
    last_active_ms: i64,
}

static NO_EXPLICIT: Explicit = Explicit {
    not_interested: Vec::new(),
    blocked_brands: Vec::new(),
    blocked_shops: Vec::new(),
    fewer_categories: Vec::new(),
    fewer_brands: Vec::new(),
};

/// Inserts or finds `key` in a vector sorted by key; refuses to grow past `cap`.
fn upsert<T>(
    v: &mut Vec<T>,
    key: u64,
    key_of: impl Fn(&T) -> u64,
    make: impl FnOnce() -> T,
    cap: usize,
) -> Option<&mut T> {
    match v.binary_search_by_key(&key, key_of) {
        Ok(i) => Some(&mut v[i]),
        Err(_) if v.len() >= cap => None,
        Err(i) => {
            v.insert(i, make());
            Some(&mut v[i])
        }
    }
}

fn insert_sorted(
    v: &mut Vec<u64>,
    key: u64,
    cap: usize,
    field: &'static str,
) -> Result<(), EventError> {
    if let Err(i) = v.binary_search(&key) {
        if v.len() >= cap {
            return Err(full(field, cap));
        }
        v.insert(i, key);
    }
    Ok(())
}

fn remove_sorted(v: &mut Vec<u64>, key: u64) {
    if let Ok(i) = v.binary_search(&key) {
        v.remove(i);
    }
}

impl UserState {
    /// Applies a checked event. Explicit feedback beyond the per-user caps is refused, never
    /// silently dropped; exposure beyond its cap forgets the faintest item instead.
    pub fn apply(&mut self, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
        use EventKind as K;
        match e.kind {
            K::Impression => self.impression(e, cfg),
            // Engagement with the item ends its fatigue.
            K::Click | K::Cart | K::Favorite | K::Purchase => {
                if let Ok(i) = self.items.binary_search_by_key(&e.item_id, |s| s.item_id) {
                    let s = &mut self.items[i];
                    if e.at_ms >= s.engaged_at_ms {
                        s.engaged_at_ms = e.at_ms;
                        s.ignored = Decayed::default();
                    }
                }
            }
            K::Search => {}
            K::NotInterested
            | K::FewerLikeThis
            | K::BlockBrand
            | K::UnblockBrand
            | K::BlockShop
            | K::UnblockShop => {
                let x = self.explicit.get_or_insert_default();
                let result = x.apply(e, cfg);
                if x.is_empty() {
                    self.explicit = None;
                }
                result?;
            }
        }
        if self.first_seen_ms == 0 || e.at_ms < self.first_seen_ms {
            self.first_seen_ms = e.at_ms.max(1);
        }
        if e.kind != K::Impression {
            self.last_active_ms = self.last_active_ms.max(e.at_ms);
        }
        Ok(())
    }

    fn impression(&mut self, e: &Event, cfg: &StateConfig) {
        let hl = cfg.exposure_half_life_ms;
        let pos = match self.items.binary_search_by_key(&e.item_id, |s| s.item_id) {
            Ok(i) => i,
            Err(mut i) => {
                if self.items.len() >= cfg.max_items_per_user {
                    let faintest = self
                        .items
                        .iter()
                        .enumerate()
                        .min_by(|a, b| {
                            a.1.ignored
                                .at(e.at_ms, hl)
                                .total_cmp(&b.1.ignored.at(e.at_ms, hl))
                        })
                        .map(|(j, _)| j)
                        .unwrap_or(0);
                    self.items.remove(faintest);
                    if faintest < i {
                        i -= 1;
                    }
                }
                self.items.insert(
                    i,
                    ItemSignal {
                        item_id: e.item_id,
                        ignored: Decayed::default(),
                        engaged_at_ms: 0,
                    },
                );
                i
            }
        };
        let s = &mut self.items[pos];
        if e.at_ms > s.engaged_at_ms {
            s.ignored.add(1.0, e.at_ms, hl);
        }
    }

    /// Sets the user's consent choices; dimensions not named keep their setting.
    pub fn set_consent(
        &mut self,
        changes: &[(DataDimension, bool)],
        personalization: Option<bool>,
        now_ms: i64,
    ) {
        for &(d, granted) in changes {
            self.consent.set(d, granted);
        }
        if personalization.is_some() {
            self.consent.personalization = personalization;
        }
        if self.first_seen_ms == 0 {
            self.first_seen_ms = now_ms.max(1);
        }
    }

    /// The snapshot a ranking at `now_ms` reads.
    pub fn view(&self, now_ms: i64, consent: Consent, cfg: &StateConfig) -> UserView {
        let (hl, fhl) = (cfg.exposure_half_life_ms, cfg.fewer_like_this_half_life_ms);
        let fewer = |v: &[(u64, Decayed)]| {
            v.iter()
                .map(|(k, d)| (*k, d.at(now_ms, fhl)))
                .filter(|(_, s)| *s >= FEWER_FLOOR)
                .collect()
        };
        let x = self.explicit();
        UserView {
            consent,
            not_interested: x
                .not_interested
                .iter()
                .filter(|(_, until)| *until > now_ms)
                .map(|(item, _)| *item)
                .collect(),
            blocked_brands: x.blocked_brands.clone(),
            blocked_shops: x.blocked_shops.clone(),
            ignored: self
                .items
                .iter()
                .map(|s| (s.item_id, s.ignored.at(now_ms, hl)))
                .filter(|(_, n)| *n >= IGNORED_FLOOR)
                .collect(),
            fewer_categories: fewer(&x.fewer_categories),
            fewer_brands: fewer(&x.fewer_brands),
            first_seen_ms: (self.first_seen_ms > 0).then_some(self.first_seen_ms),
            last_active_ms: (self.last_active_ms > 0).then_some(self.last_active_ms),
        }
    }

    fn explicit(&self) -> &Explicit {
        self.explicit.as_deref().unwrap_or(&NO_EXPLICIT)
    }

    /// True when nothing is held: such a user need not be stored.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Bytes this state holds on the heap: capacity, not length, plus the allocator's cost
    /// per allocation, so that the memory cap is close to what the process really holds.
    pub fn heap_bytes(&self) -> usize {
        let items = match self.items.capacity() {
            0 => 0,
            n => n * size_of::<ItemSignal>() + ALLOC_OVERHEAD,
        };
        items + self.explicit.as_ref().map_or(0, |x| x.heap_bytes())
    }

    /// Forgets what no ranking at `now_ms` or later can use: exposure untouched for longer
    /// than the retention, "not interested" past its end, "fewer like this" faded out.
    /// Returns true when something was removed.
    pub fn expire(&mut self, now_ms: i64, cfg: &StateConfig) -> bool {
        let before = self.heap_bytes();
        let (n_items, cutoff) = (
            self.items.len(),
            now_ms.saturating_sub(cfg.counter_retention_ms),
        );
        self.items.retain(|s| s.touched_ms() >= cutoff);
        let mut changed = self.items.len() != n_items;
        if self.items.capacity() > 2 * self.items.len() + 4 {
            self.items.shrink_to_fit();
        }
        if let Some(x) = self.explicit.as_mut() {
            let n = x.not_interested.len() + x.fewer_categories.len() + x.fewer_brands.len();
            let fhl = cfg.fewer_like_this_half_life_ms;
            x.not_interested.retain(|(_, until)| *until > now_ms);
            x.fewer_categories
                .retain(|(_, d)| d.at(now_ms, fhl) >= FEWER_FLOOR);
            x.fewer_brands
                .retain(|(_, d)| d.at(now_ms, fhl) >= FEWER_FLOOR);
            changed |=
                n != x.not_interested.len() + x.fewer_categories.len() + x.fewer_brands.len();
            if x.is_empty() {
                self.explicit = None;
            }
        }
        changed || before != self.heap_bytes()
    }

    /// "Not interested" entries still in force, with when each ends.
    pub fn not_interested_until(&self, now_ms: i64) -> Vec<(u64, i64)> {
        self.explicit()
            .not_interested
            .iter()
            .copied()
            .filter(|(_, until)| *until > now_ms)
            .collect()
    }
}

fn full(field: &'static str, cap: usize) -> EventError {
    EventError::new(
        field,
        format!("the user already has the maximum of {cap} entries of this kind"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn cfg() -> StateConfig {
        StateConfig::default()
    }

    fn event(kind: EventKind, at_ms: i64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.item_id = 1;
        e.brand_id = 10;
        e.shop_id = 100;
        e.category_id = 5;
        e
    }

    #[test]
    fn ignored_impressions_accumulate_decay_and_reset_on_engagement() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..4 {
            u.apply(&event(EventKind::Impression, HOUR + t), &cfg)
                .unwrap();
        }
        let consent = Consent::privacy_default();
        let v = u.view(HOUR + 10, consent, &cfg);
        assert!((v.ignored_impressions(1) - 4.0).abs() < 1e-3);
        let later = u.view(HOUR + cfg.exposure_half_life_ms, consent, &cfg);
        assert!((later.ignored_impressions(1) - 2.0).abs() < 1e-2);

        u.apply(&event(EventKind::Click, 2 * HOUR), &cfg).unwrap();
        assert_eq!(u.view(2 * HOUR, consent, &cfg).ignored_impressions(1), 0.0);
        // An impression stamped before the click arrives late: it was not ignored.
        u.apply(&event(EventKind::Impression, HOUR + 100), &cfg)
            .unwrap();
        assert_eq!(u.view(2 * HOUR, consent, &cfg).ignored_impressions(1), 0.0);
    }

    #[test]
    fn explicit_feedback_and_its_undo() {
        let cfg = cfg();
        let mut u = UserState::default();
        u.apply(&event(EventKind::BlockBrand, HOUR), &cfg).unwrap();
        u.apply(&event(EventKind::BlockShop, HOUR), &cfg).unwrap();
        u.apply(&event(EventKind::NotInterested, HOUR), &cfg)
            .unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert!(v.is_brand_blocked(10) && v.is_shop_blocked(100) && v.is_not_interested(1));
        let expired = u.view(
            HOUR + cfg.not_interested_ms,
            Consent::privacy_default(),
            &cfg,
        );
        assert!(!expired.is_not_interested(1));
        u.apply(&event(EventKind::UnblockBrand, HOUR), &cfg)
            .unwrap();
        u.apply(&event(EventKind::UnblockShop, HOUR), &cfg).unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert!(!v.is_brand_blocked(10) && !v.is_shop_blocked(100));
        assert_eq!(v.last_active_ms, Some(HOUR));
    }

    #[test]
    fn explicit_feedback_past_the_cap_is_refused_not_dropped() {
        let cfg = StateConfig {
            max_explicit_per_kind: 2,
            ..cfg()
        };
        let mut u = UserState::default();
        for brand in 1..=2 {
            let mut e = event(EventKind::BlockBrand, HOUR);
            e.brand_id = brand;
            u.apply(&e, &cfg).unwrap();
        }
        let mut e = event(EventKind::BlockBrand, HOUR);
        e.brand_id = 3;
        assert_eq!(u.apply(&e, &cfg).unwrap_err().field, "brand_id");
        e.brand_id = 2;
        assert!(u.apply(&e, &cfg).is_ok(), "repeating a block is not growth");
    }

    #[test]
    fn exposure_past_the_cap_forgets_the_faintest_item() {
        let cfg = StateConfig {
            max_items_per_user: 3,
            ..cfg()
        };
        let mut u = UserState::default();
        for (item, times) in [(1, 3), (2, 1), (3, 2), (4, 2)] {
            for t in 0..times {
                let mut e = event(EventKind::Impression, HOUR + t);
                e.item_id = item;
                u.apply(&e, &cfg).unwrap();
            }
        }
        let v = u.view(HOUR + 10, Consent::privacy_default(), &cfg);
        let items: Vec<u64> = v.ignored.iter().map(|(i, _)| *i).collect();
        assert_eq!(items, vec![1, 3, 4]);
    }

    #[test]
    fn fewer_like_this_fades_with_its_half_life() {
        let cfg = cfg();
        let mut u = UserState::default();
        u.apply(&event(EventKind::FewerLikeThis, HOUR), &cfg)
            .unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert_eq!(v.fewer_like_this(5, 0), 1.0);
        assert_eq!(v.fewer_like_this(0, 10), 1.0);
        let later = u.view(
            HOUR + cfg.fewer_like_this_half_life_ms,
            Consent::privacy_default(),
            &cfg,
        );
        assert!((later.fewer_like_this(5, 0) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn consent_choices_override_the_default_one_dimension_at_a_time() {
        let mut c = ConsentChoices::default();
        c.set(DataDimension::Location, true);
        c.set(DataDimension::Browsing, false);
        let eff = c.apply_to(Consent::privacy_default());
        assert!(eff.allows(DataDimension::Location));
        assert!(!eff.allows(DataDimension::Browsing));
        assert!(eff.allows(DataDimension::Search));
        c.personalization = Some(false);
        assert!(
            !c.apply_to(Consent::privacy_default())
                .allows(DataDimension::Search)
        );
    }
}

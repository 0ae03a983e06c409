//! One user's hot state: exposure and engagement counters (per item, category and brand), a
//! short-term meter of impressions against engagement, recent purchases and cross-platform
//! sightings, explicit feedback and interest tags, consent choices and activity times. Small
//! sorted vectors, not maps: a user holds tens to hundreds of entries, and sorted vectors are
//! compact, cache-friendly and cheap to copy into a [`UserView`].
//!
//! This module turns events into state and state into a view; it knows no policy. What a
//! ranking does with the view is the pipeline's business.

use serde::{Deserialize, Serialize};

use crate::rank::user::{Interest, Purchase, SHOWN_TIMES, Sighting, Tag, TagKind, TagSource};
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
/// Purchases kept per user: enough for every cooling-off window a policy runs at once.
pub const MAX_PURCHASES: usize = 32;
/// Cross-platform sightings kept per user: only young ones matter ("too soon").
pub const MAX_SIGHTINGS: usize = 32;
/// Interest tags a user can set.
pub const MAX_INTERESTS: usize = 64;
/// Categories and brands with counters per user; past it the faintest is forgotten.
pub const MAX_GROUPS: usize = 128;
/// Learned interest tags shown and used: the user's strongest few, not a long tail.
const LEARNED_TAGS: usize = 5;
/// Decayed engagement a category or brand needs before it becomes a learned tag: two clicks.
const LEARNED_MIN: f32 = 2.0;
/// A learned tag's weight approaches this as engagement grows: below a tag the user set
/// (1.0 by default), because the user's own words outrank inference.
const LEARNED_MAX_WEIGHT: f32 = 0.6;
/// Impressions older than this cannot count toward any frequency cap, so they are not copied
/// into a view.
const SHOWN_HORIZON_MS: i64 = 7 * 24 * 3_600_000;
/// Purchases are kept this long: the longest cooling-off window a policy may set.
pub const PURCHASE_RETENTION_MS: i64 = 365 * 24 * 3_600_000;

/// The unix second an impression is kept at (0 marks an empty slot, so at least 1).
fn shown_second(at_ms: i64) -> u32 {
    u32::try_from(at_ms.div_euclid(1000))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// Exposure of one item to this user.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct ItemSignal {
    item_id: u64,
    /// Impressions since the user last engaged with the item, decayed.
    ignored: Decayed,
    /// The latest engagement: impressions stamped before it were not ignored.
    engaged_at_ms: i64,
    /// Unix seconds of the latest impressions, newest first, 0 = none: frequency caps count
    /// them exactly, and impressions younger than the ignore window are not yet "ignored".
    shown: [u32; SHOWN_TIMES],
}

impl ItemSignal {
    /// The latest moment anything happened to this signal.
    fn touched_ms(&self) -> i64 {
        self.ignored
            .at_ms
            .max(self.engaged_at_ms)
            .max(i64::from(self.shown[0]) * 1000)
    }

    /// The impression times after the latest engagement: engaging with an item restarts its
    /// frequency count, since restraint is for what the user does not respond to.
    fn shown_since_engaged(&self) -> [u32; SHOWN_TIMES] {
        let mut times = self.shown;
        for t in &mut times {
            if i64::from(*t) * 1000 <= self.engaged_at_ms {
                *t = 0;
            }
        }
        times
    }

    fn record_shown(&mut self, at_ms: i64) {
        let s = shown_second(at_ms);
        // Kept newest first; a late impression goes to its place in time.
        let pos = self
            .shown
            .iter()
            .position(|t| *t < s)
            .unwrap_or(SHOWN_TIMES);
        if pos < SHOWN_TIMES {
            self.shown.copy_within(pos..SHOWN_TIMES - 1, pos + 1);
            self.shown[pos] = s;
        }
    }

    /// Ignored impressions as of `now_ms`. An impression may still be engaged with, so it
    /// does not count yet, while it is younger than the ignore window *and* nothing of the
    /// user's came after it: once the user's next event (a later impression, a click on
    /// something else) or next ranking request arrives in a later second, the item was seen
    /// and passed over. `latest_s` is the unix second of the latest of those.
    fn ignored_at(&self, now_ms: i64, latest_s: u32, cfg: &StateConfig) -> f32 {
        let hl = cfg.exposure_half_life_ms;
        let pending: f32 = self
            .shown
            .iter()
            .take_while(|t| **t >= latest_s && **t > 0)
            .map(|t| i64::from(*t) * 1000)
            .take_while(|t| now_ms - *t < cfg.ignore_window_ms)
            .filter(|t| *t > self.engaged_at_ms && *t <= now_ms)
            .map(|t| super::decay::factor(now_ms - t, hl))
            .sum();
        (self.ignored.at(now_ms, hl) - pending).max(0.0)
    }
}

/// Exposure of, and engagement with, one category or brand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct GroupSignal {
    kind: TagKind,
    id: u64,
    /// Impressions since the user last engaged with anything of this group, decayed.
    ignored: Decayed,
    /// Engagement (clicks 1, carts and favourites 2, purchases 3), decayed slowly: the source
    /// of learned interest tags.
    engaged: Decayed,
    engaged_at_ms: i64,
    /// The kinds of data the engagement came from.
    sources: DimensionSet,
}

impl GroupSignal {
    fn touched_ms(&self) -> i64 {
        self.ignored.at_ms.max(self.engaged.at_ms)
    }
}

/// Impressions against engagement over the last minutes: "browse-ignore" overload shows as
/// many of the first and almost none of the second.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct SessionMeter {
    impressions: Decayed,
    engagements: Decayed,
}

/// The user's own consent choices; anything not chosen follows the platform default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsentChoices {
    pub granted: DimensionSet,
    pub denied: DimensionSet,
    pub personalization: Option<bool>,
    /// Sorted sensitive categories the user opted in to (all others stay hidden).
    pub sensitive: Vec<u64>,
}

impl ConsentChoices {
    pub fn apply_to(&self, default: Consent) -> Consent {
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

/// A change to the user's interest tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterestChange {
    pub kind: TagKind,
    pub id: u64,
    /// In [0, 1]; 0 removes the tag (and keeps a learned one of the same subject hidden).
    pub weight: f32,
    /// `None` keeps the current label.
    pub label: Option<String>,
}

/// What the user takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Undo {
    BlockedBrand(u64),
    BlockedShop(u64),
    NotInterested(u64),
    FewerCategory(u64),
    FewerBrand(u64),
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
    /// Sorted by (kind, id).
    interests: Vec<Interest>,
}

fn vec_bytes(cap: usize, size: usize) -> usize {
    if cap == 0 {
        0
    } else {
        cap * size + ALLOC_OVERHEAD
    }
}

impl Explicit {
    fn is_empty(&self) -> bool {
        self.not_interested.is_empty()
            && self.blocked_brands.is_empty()
            && self.blocked_shops.is_empty()
            && self.fewer_categories.is_empty()
            && self.fewer_brands.is_empty()
            && self.interests.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        size_of::<Self>()
            + ALLOC_OVERHEAD
            + vec_bytes(self.not_interested.capacity(), size_of::<(u64, i64)>())
            + vec_bytes(self.blocked_brands.capacity(), size_of::<u64>())
            + vec_bytes(self.blocked_shops.capacity(), size_of::<u64>())
            + vec_bytes(
                self.fewer_categories.capacity(),
                size_of::<(u64, Decayed)>(),
            )
            + vec_bytes(self.fewer_brands.capacity(), size_of::<(u64, Decayed)>())
            + vec_bytes(self.interests.capacity(), size_of::<Interest>())
            + self
                .interests
                .iter()
                .map(|i| vec_bytes(i.label.capacity(), 1))
                .sum::<usize>()
    }

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

    fn undo(&mut self, undo: Undo) {
        let remove_keyed = |v: &mut Vec<(u64, Decayed)>, id: u64| {
            if let Ok(i) = v.binary_search_by_key(&id, |(k, _)| *k) {
                v.remove(i);
            }
        };
        match undo {
            Undo::BlockedBrand(id) => remove_sorted(&mut self.blocked_brands, id),
            Undo::BlockedShop(id) => remove_sorted(&mut self.blocked_shops, id),
            Undo::NotInterested(id) => {
                if let Ok(i) = self.not_interested.binary_search_by_key(&id, |(k, _)| *k) {
                    self.not_interested.remove(i);
                }
            }
            Undo::FewerCategory(id) => remove_keyed(&mut self.fewer_categories, id),
            Undo::FewerBrand(id) => remove_keyed(&mut self.fewer_brands, id),
        }
    }

    fn update_interests(&mut self, changes: &[InterestChange]) -> Result<(), EventError> {
        // All or nothing: a batch that would overflow changes nothing.
        let mut next = self.interests.clone();
        for c in changes {
            match next.binary_search_by(|i| (i.kind, i.id).cmp(&(c.kind, c.id))) {
                Ok(i) => {
                    next[i].weight = c.weight;
                    if let Some(label) = &c.label {
                        next[i].label = label.clone();
                    }
                }
                Err(i) => {
                    if next.len() >= MAX_INTERESTS {
                        return Err(full("interests", MAX_INTERESTS));
                    }
                    next.insert(
                        i,
                        Interest {
                            kind: c.kind,
                            id: c.id,
                            weight: c.weight,
                            label: c.label.clone().unwrap_or_default(),
                        },
                    );
                }
            }
        }
        self.interests = next;
        Ok(())
    }
}

/// Everything tactful holds about one user. Compact on purpose: it is what the memory cap
/// counts, and what snapshots and the log carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// Sorted by item id.
    items: Vec<ItemSignal>,
    /// Sorted by (kind, id).
    groups: Vec<GroupSignal>,
    session: SessionMeter,
    /// Oldest first, at most [`MAX_PURCHASES`].
    purchases: Vec<Purchase>,
    /// Oldest first, at most [`MAX_SIGHTINGS`].
    sightings: Vec<Sighting>,
    explicit: Option<Box<Explicit>>,
    pub consent: ConsentChoices,
    /// First event of any kind; 0 = none yet.
    first_seen_ms: i64,
    /// Latest engagement or explicit action; 0 = none yet.
    last_active_ms: i64,
    /// When the user last blocked or unblocked each brand and shop. Outside the struct's own
    /// encoding (rows written before it existed must still decode): snapshot rows carry it
    /// after the state ([`UserState::to_row`]), a shared backend as an [`Op::Words`].
    ///
    /// [`Op::Words`]: super::op::Op::Words
    /// Boxed: most users never block anything, and this keeps them small.
    #[serde(skip)]
    words: Option<Box<WordTimes>>,
}

/// The time of the user's latest word on each brand and shop they blocked or unblocked, so
/// that blocks and unblocks resolve by when the user said them (`at_ms`), not by when they
/// arrived: a retried or delayed older event never overrides a newer one. Ties go to the
/// later arrival. Sorted by id; at most `max_explicit_per_kind` unblocked entries per list
/// are remembered (the oldest go first; blocked ones are bounded by the blocks' own cap).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WordTimes {
    /// (brand, at_ms, blocked).
    brands: Vec<(u64, i64, bool)>,
    /// (shop, at_ms, blocked).
    shops: Vec<(u64, i64, bool)>,
}

impl WordTimes {
    fn list(&mut self, shop: bool) -> &mut Vec<(u64, i64, bool)> {
        if shop {
            &mut self.shops
        } else {
            &mut self.brands
        }
    }

    /// Whether a word at `at_ms` on `id` is the newest (or as new as the newest) so far.
    fn is_newest(&self, shop: bool, id: u64, at_ms: i64) -> bool {
        let list = if shop { &self.shops } else { &self.brands };
        match list.binary_search_by_key(&id, |w| w.0) {
            Ok(i) => at_ms >= list[i].1,
            Err(_) => true,
        }
    }

    /// Notes a word; returns the time it is noted at (never earlier than the last one).
    fn note(&mut self, shop: bool, id: u64, at_ms: i64, blocked: bool, cap: usize) {
        let list = self.list(shop);
        match list.binary_search_by_key(&id, |w| w.0) {
            Ok(i) => list[i] = (id, at_ms.max(list[i].1), blocked),
            Err(i) => list.insert(i, (id, at_ms, blocked)),
        }
        let unblocked = list.iter().filter(|w| !w.2).count();
        if unblocked > cap
            && let Some(oldest) = list
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.2)
                .min_by_key(|(_, w)| w.1)
                .map(|(i, _)| i)
        {
            list.remove(oldest);
        }
    }

    fn heap_bytes(&self) -> usize {
        vec_bytes(self.brands.capacity(), size_of::<(u64, i64, bool)>())
            + vec_bytes(self.shops.capacity(), size_of::<(u64, i64, bool)>())
    }

    fn is_empty(&self) -> bool {
        self.brands.is_empty() && self.shops.is_empty()
    }
}

static NO_EXPLICIT: Explicit = Explicit {
    not_interested: Vec::new(),
    blocked_brands: Vec::new(),
    blocked_shops: Vec::new(),
    fewer_categories: Vec::new(),
    fewer_brands: Vec::new(),
    interests: Vec::new(),
};

/// Inserts or finds `key` in a vector sorted by key; refuses to grow past `cap`.
fn upsert<T, K: Ord>(
    v: &mut Vec<T>,
    key: K,
    key_of: impl Fn(&T) -> K,
    make: impl FnOnce() -> T,
    cap: usize,
) -> Option<&mut T> {
    match v.binary_search_by(|x| key_of(x).cmp(&key)) {
        Ok(i) => Some(&mut v[i]),
        Err(_) if v.len() >= cap => None,
        Err(i) => {
            v.insert(i, make());
            Some(&mut v[i])
        }
    }
}

/// Replaces `v[evict]` with `item`, whose place in the sorted order is `at` (an insertion
/// index into `v` as it is), and returns where `item` now is. The same as removing `evict` and
/// then inserting, but only the elements between the two places move: a full list (every new
/// item of a heavy user evicts the stalest) costs a third of the copying on average, not all of
/// it twice.
fn replace_sorted<T>(v: &mut [T], evict: usize, at: usize, item: T) -> usize {
    if evict < at {
        v[evict..at].rotate_left(1);
        v[at - 1] = item;
        at - 1
    } else {
        v[at..=evict].rotate_right(1);
        v[at] = item;
        at
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

/// How much an engagement says about interest, and which kind of data it is.
fn engagement(kind: EventKind) -> Option<(f32, DataDimension)> {
    match kind {
        EventKind::Click => Some((1.0, DataDimension::Browsing)),
        EventKind::Cart => Some((2.0, DataDimension::Cart)),
        EventKind::Favorite => Some((2.0, DataDimension::Favorites)),
        EventKind::Purchase => Some((3.0, DataDimension::Purchases)),
        EventKind::Search => Some((1.0, DataDimension::Search)),
        _ => None,
    }
}

/// Keeps a vector sorted by time and at most `cap` long, dropping the oldest.
fn push_recent<T>(v: &mut Vec<T>, item: T, cap: usize, at: impl Fn(&T) -> i64) {
    let pos = v.partition_point(|x| at(x) <= at(&item));
    v.insert(pos, item);
    if v.len() > cap {
        v.remove(0);
    }
}

impl UserState {
    /// Applies a checked event. Explicit feedback beyond the per-user caps is refused, never
    /// silently dropped; counters beyond their caps forget the faintest entry instead.
    pub fn apply(&mut self, e: &Event, cfg: &StateConfig) -> Result<(), EventError> {
        use EventKind as K;
        let browsing = matches!(
            e.kind,
            K::Impression | K::Click | K::Cart | K::Favorite | K::Search
        );
        if browsing && e.source == Some(DataDimension::CrossPlatform) {
            // Seen elsewhere: not an exposure here, and not engagement with this platform. It
            // is kept only to know how young cross-platform evidence is. (Purchases and the
            // user's explicit words count wherever they were observed.)
            if e.item_id != 0 || e.category_id != 0 {
                let s = Sighting {
                    item_id: e.item_id,
                    category_id: e.category_id,
                    at_ms: e.at_ms,
                };
                push_recent(&mut self.sightings, s, MAX_SIGHTINGS, |s| s.at_ms);
            }
            self.seen(e.at_ms);
            return Ok(());
        }
        match e.kind {
            K::Impression => {
                if self.impression(e, cfg) {
                    let hl = cfg.session_half_life_ms;
                    self.session.impressions.add(1.0, e.at_ms, hl);
                }
            }
            K::Click | K::Cart | K::Favorite | K::Purchase | K::Search => {
                // Engagement with the item ends its fatigue, and is remembered: restraint
                // learned from logs treats an item the user came back to apart from one they
                // never touched.
                if e.item_id != 0 {
                    let s = self.item_signal(e.item_id, cfg);
                    if e.at_ms >= s.engaged_at_ms {
                        s.engaged_at_ms = e.at_ms;
                        s.ignored = Decayed::default();
                    }
                }
                if let Some((amount, source)) = engagement(e.kind) {
                    self.engage(e, amount, source, cfg);
                }
                let hl = cfg.session_half_life_ms;
                self.session.engagements.add(1.0, e.at_ms, hl);
                if e.kind == K::Purchase {
                    let p = Purchase {
                        item_id: e.item_id,
                        category_id: e.category_id,
                        brand_id: e.brand_id,
                        price: e.price,
                        at_ms: e.at_ms,
                        title: e.title.clone(),
                    };
                    push_recent(&mut self.purchases, p, MAX_PURCHASES, |p| p.at_ms);
                }
            }
            K::BlockBrand | K::UnblockBrand | K::BlockShop | K::UnblockShop => {
                let shop = matches!(e.kind, K::BlockShop | K::UnblockShop);
                let id = if shop { e.shop_id } else { e.brand_id };
                // An older word than the last one on this brand or shop changes nothing.
                if self
                    .words
                    .as_ref()
                    .is_none_or(|w| w.is_newest(shop, id, e.at_ms))
                {
                    self.with_explicit(|x| x.apply(e, cfg))?;
                    let blocked = matches!(e.kind, K::BlockBrand | K::BlockShop);
                    self.words.get_or_insert_default().note(
                        shop,
                        id,
                        e.at_ms,
                        blocked,
                        cfg.max_explicit_per_kind,
                    );
                }
            }
            K::NotInterested | K::FewerLikeThis => {
                self.with_explicit(|x| x.apply(e, cfg))?;
            }
        }
        self.seen(e.at_ms);
        if e.kind != K::Impression {
            self.last_active_ms = self.last_active_ms.max(e.at_ms);
        }
        Ok(())
    }

    fn seen(&mut self, at_ms: i64) {
        if self.first_seen_ms == 0 || at_ms < self.first_seen_ms {
            self.first_seen_ms = at_ms.max(1);
        }
    }

    fn with_explicit<R>(&mut self, f: impl FnOnce(&mut Explicit) -> R) -> R {
        let x = self.explicit.get_or_insert_default();
        let result = f(x);
        if x.is_empty() {
            self.explicit = None;
        }
        result
    }

    /// Takes back a block, a "not interested" or a "fewer like this".
    pub fn undo(&mut self, undo: Undo, at_ms: i64) {
        let unblocked = match undo {
            Undo::BlockedBrand(id) => Some((false, id)),
            Undo::BlockedShop(id) => Some((true, id)),
            _ => None,
        };
        let was_blocked = unblocked.is_some_and(|(shop, id)| {
            self.explicit.as_ref().is_some_and(|x| {
                let list = if shop {
                    &x.blocked_shops
                } else {
                    &x.blocked_brands
                };
                list.binary_search(&id).is_ok()
            })
        });
        if self.explicit.is_some() {
            self.with_explicit(|x| x.undo(undo));
        }
        // An unblock from the preference centre is the user's newest word on it: a block sent
        // earlier that arrives later must not undo it. (Nothing is noted for a brand or shop
        // that was never blocked: nothing to store.)
        let spoken =
            |w: &mut Box<WordTimes>, shop: bool, id: u64| w.list(shop).iter().any(|w| w.0 == id);
        if let Some((shop, id)) = unblocked
            && (was_blocked || self.words.as_mut().is_some_and(|w| spoken(w, shop, id)))
        {
            self.words
                .get_or_insert_default()
                .note(shop, id, at_ms, false, usize::MAX);
        }
        self.seen(at_ms);
        self.last_active_ms = self.last_active_ms.max(at_ms);
    }

    /// Adds, re-weights or removes interest tags (all or nothing).
    pub fn update_interests(
        &mut self,
        changes: &[InterestChange],
        at_ms: i64,
    ) -> Result<(), EventError> {
        self.with_explicit(|x| x.update_interests(changes))?;
        self.seen(at_ms);
        self.last_active_ms = self.last_active_ms.max(at_ms);
        Ok(())
    }

    /// The item's signal, made room for if new (past the per-user cap the least recently
    /// touched item is forgotten).
    fn item_signal(&mut self, item_id: u64, cfg: &StateConfig) -> &mut ItemSignal {
        let pos = match self.items.binary_search_by_key(&item_id, |s| s.item_id) {
            Ok(i) => i,
            Err(i) => {
                let fresh = ItemSignal {
                    item_id,
                    ignored: Decayed::default(),
                    engaged_at_ms: 0,
                    shown: [0; SHOWN_TIMES],
                };
                if self.items.len() >= cfg.max_items_per_user && !self.items.is_empty() {
                    let faintest = self
                        .items
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| s.touched_ms())
                        .map_or(0, |(j, _)| j);
                    replace_sorted(&mut self.items, faintest, i, fresh)
                } else {
                    self.items.insert(i, fresh);
                    i
                }
            }
        };
        &mut self.items[pos]
    }

    /// Records an impression; false when the item was already recorded as shown in the same
    /// second (a host that reports impressions and also asks Rank to record its answer must
    /// not count one showing twice).
    fn impression(&mut self, e: &Event, cfg: &StateConfig) -> bool {
        let hl = cfg.exposure_half_life_ms;
        let s = self.item_signal(e.item_id, cfg);
        if s.shown.contains(&shown_second(e.at_ms)) {
            return false;
        }
        s.record_shown(e.at_ms);
        if e.at_ms > s.engaged_at_ms {
            s.ignored.add(1.0, e.at_ms, hl);
        }
        for (kind, id) in [
            (TagKind::Category, e.category_id),
            (TagKind::Brand, e.brand_id),
        ] {
            if let Some(g) = self.group(kind, id, e.at_ms)
                && e.at_ms > g.engaged_at_ms
            {
                g.ignored.add(1.0, e.at_ms, hl);
            }
        }
        true
    }

    fn engage(&mut self, e: &Event, amount: f32, source: DataDimension, cfg: &StateConfig) {
        let hl = cfg.interest_half_life_ms;
        for (kind, id) in [
            (TagKind::Category, e.category_id),
            (TagKind::Brand, e.brand_id),
        ] {
            if let Some(g) = self.group(kind, id, e.at_ms) {
                g.engaged.add(amount, e.at_ms, hl);
                g.sources.insert(source);
                if e.at_ms >= g.engaged_at_ms {
                    g.engaged_at_ms = e.at_ms;
                    g.ignored = Decayed::default();
                }
            }
        }
    }

    /// The counters of a category or brand, made room for if new (0 = unknown: none).
    fn group(&mut self, kind: TagKind, id: u64, at_ms: i64) -> Option<&mut GroupSignal> {
        if id == 0 {
            return None;
        }
        let at = match self
            .groups
            .binary_search_by(|g| (g.kind, g.id).cmp(&(kind, id)))
        {
            Ok(i) => return Some(&mut self.groups[i]),
            Err(at) => at,
        };
        let fresh = GroupSignal {
            kind,
            id,
            ignored: Decayed { value: 0.0, at_ms },
            engaged: Decayed { value: 0.0, at_ms },
            engaged_at_ms: 0,
            sources: DimensionSet::EMPTY,
        };
        let i = if self.groups.len() >= MAX_GROUPS {
            let stalest = self
                .groups
                .iter()
                .enumerate()
                .min_by_key(|(_, g)| g.touched_ms())
                .map(|(j, _)| j)?;
            replace_sorted(&mut self.groups, stalest, at, fresh)
        } else {
            self.groups.insert(at, fresh);
            at
        };
        Some(&mut self.groups[i])
    }

    /// Sets the user's consent choices; dimensions and categories not named keep their
    /// setting.
    pub fn set_consent(
        &mut self,
        changes: &[(DataDimension, bool)],
        personalization: Option<bool>,
        sensitive: &[(u64, bool)],
        now_ms: i64,
    ) -> Result<(), EventError> {
        let mut opted = self.consent.sensitive.clone();
        for &(category, granted) in sensitive {
            if granted {
                insert_sorted(&mut opted, category, usize::MAX, "sensitive_categories")?;
            } else {
                remove_sorted(&mut opted, category);
            }
        }
        // Checked on the outcome, so that the message says what the request would do.
        if opted.len() > MAX_INTERESTS {
            return Err(EventError::new(
                "sensitive_categories",
                format!(
                    "this change would leave the user opted in to {} sensitive categories; at \
                     most {MAX_INTERESTS} are kept (the user has {} now)",
                    opted.len(),
                    self.consent.sensitive.len()
                ),
            ));
        }
        self.consent.sensitive = opted;
        for &(d, granted) in changes {
            self.consent.set(d, granted);
        }
        if personalization.is_some() {
            self.consent.personalization = personalization;
        }
        self.seen(now_ms);
        Ok(())
    }

    /// The snapshot a ranking at `now_ms` reads. With personalisation off it holds only the
    /// user's explicit words: nothing learned from behaviour (see
    /// [`UserView::explicit_only`]).
    pub fn view(&self, now_ms: i64, consent: Consent, cfg: &StateConfig) -> UserView {
        let fhl = cfg.fewer_like_this_half_life_ms;
        let fewer = |v: &[(u64, Decayed)]| {
            v.iter()
                .map(|(k, d)| (*k, d.at(now_ms, fhl)))
                .filter(|(_, s)| *s >= FEWER_FLOOR)
                .collect()
        };
        let x = self.explicit();
        let mut view = UserView {
            not_interested: x
                .not_interested
                .iter()
                .filter(|(_, until)| *until > now_ms)
                .map(|(item, _)| *item)
                .collect(),
            blocked_brands: x.blocked_brands.clone(),
            blocked_shops: x.blocked_shops.clone(),
            sensitive_opt_in: self.consent.sensitive.clone(),
            ..UserView::unknown(consent)
        };
        view.fewer_categories = fewer(&x.fewer_categories);
        view.fewer_brands = fewer(&x.fewer_brands);
        if !consent.personalization {
            return view;
        }
        let hl = cfg.exposure_half_life_ms;
        let latest_s = self
            .items
            .iter()
            .map(|s| s.shown[0])
            .max()
            .unwrap_or(0)
            .max(shown_second(self.last_active_ms))
            // The ranking request itself comes after what was shown in an earlier second.
            .max(shown_second(now_ms));
        view.ignored = self
            .items
            .iter()
            .map(|s| (s.item_id, s.ignored_at(now_ms, latest_s, cfg)))
            .filter(|(_, n)| *n >= IGNORED_FLOOR)
            .collect();
        view.engaged = self
            .items
            .iter()
            .filter(|s| s.engaged_at_ms > 0)
            .map(|s| (s.item_id, s.engaged_at_ms))
            .collect();
        let shown_from = (now_ms - SHOWN_HORIZON_MS).div_euclid(1000);
        view.shown = self
            .items
            .iter()
            .filter(|s| s.shown[0] > 0 && i64::from(s.shown[0]) >= shown_from)
            .map(|s| (s.item_id, s.shown_since_engaged()))
            .collect();
        let ignored_groups = |kind: TagKind| {
            self.groups
                .iter()
                .filter(|g| g.kind == kind)
                .map(|g| (g.id, g.ignored.at(now_ms, hl)))
                .filter(|(_, n)| *n >= IGNORED_FLOOR)
                .collect()
        };
        view.ignored_categories = ignored_groups(TagKind::Category);
        view.ignored_brands = ignored_groups(TagKind::Brand);
        let shl = cfg.session_half_life_ms;
        view.recent_impressions = self.session.impressions.at(now_ms, shl);
        view.recent_engagements = self.session.engagements.at(now_ms, shl);
        view.purchases = self.purchases.clone();
        view.sightings = self.sightings.clone();
        view.tags = self.tags(now_ms, consent, cfg);
        view.first_seen_ms = (self.first_seen_ms > 0).then_some(self.first_seen_ms);
        view.last_active_ms = (self.last_active_ms > 0).then_some(self.last_active_ms);
        view
    }

    /// The user's own tags, plus the strongest few learned from engagement the user has
    /// consented to (a tag the user set or removed hides the learned one), sorted by subject.
    fn tags(&self, now_ms: i64, consent: Consent, cfg: &StateConfig) -> Vec<Tag> {
        let own = &self.explicit().interests;
        let mut learned: Vec<Tag> = self
            .groups
            .iter()
            .filter(|g| {
                own.binary_search_by(|i| (i.kind, i.id).cmp(&(g.kind, g.id)))
                    .is_err()
            })
            .filter_map(|g| {
                let sources = consent.allowed(g.sources);
                let value = g.engaged.at(now_ms, cfg.interest_half_life_ms);
                (!sources.is_empty() && value >= LEARNED_MIN).then(|| Tag {
                    kind: g.kind,
                    id: g.id,
                    label: String::new(),
                    weight: LEARNED_MAX_WEIGHT * value / (value + 2.0 * LEARNED_MIN),
                    source: TagSource::Learned(sources),
                })
            })
            .collect();
        learned.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        learned.truncate(LEARNED_TAGS);
        let mut tags: Vec<Tag> = own
            .iter()
            .filter(|i| i.weight > 0.0)
            .map(|i| Tag {
                kind: i.kind,
                id: i.id,
                label: i.label.clone(),
                weight: i.weight,
                source: TagSource::User,
            })
            .chain(learned)
            .collect();
        tags.sort_by_key(|t| (t.kind, t.id));
        tags
    }

    fn explicit(&self) -> &Explicit {
        self.explicit.as_deref().unwrap_or(&NO_EXPLICIT)
    }

    /// True when nothing is held: such a user need not be stored.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the state holds nothing but the times it was seen and markers of removed
    /// tags: what a change that changed nothing (an undo of nothing, an empty consent change,
    /// removing a tag never set) leaves on a new user, who has no learned tag to hide.
    pub fn holds_nothing_but_times(&self) -> bool {
        let mut bare = self.clone();
        bare.first_seen_ms = 0;
        bare.last_active_ms = 0;
        if let Some(x) = bare.explicit.as_mut() {
            x.interests.retain(|i| i.weight > 0.0);
            if x.is_empty() {
                bare.explicit = None;
            }
        }
        bare.is_empty()
    }

    /// Bytes this state holds on the heap: capacity, not length, plus the allocator's cost
    /// per allocation, so that the memory cap is close to what the process really holds.
    pub fn heap_bytes(&self) -> usize {
        vec_bytes(self.items.capacity(), size_of::<ItemSignal>())
            + vec_bytes(self.groups.capacity(), size_of::<GroupSignal>())
            + vec_bytes(self.purchases.capacity(), size_of::<Purchase>())
            + self
                .purchases
                .iter()
                .map(|p| vec_bytes(p.title.capacity(), 1))
                .sum::<usize>()
            + vec_bytes(self.sightings.capacity(), size_of::<Sighting>())
            + vec_bytes(self.consent.sensitive.capacity(), size_of::<u64>())
            + self.explicit.as_ref().map_or(0, |x| x.heap_bytes())
            + self.words.as_ref().map_or(0, |w| {
                size_of::<WordTimes>() + ALLOC_OVERHEAD + w.heap_bytes()
            })
    }

    /// The state as a snapshot row: its own encoding, then the word times when there are
    /// any (a row without them is one written before they existed, and reads as none).
    pub fn to_row(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut bytes = postcard::to_allocvec(self)?;
        if let Some(words) = self.words.as_ref().filter(|w| !w.is_empty()) {
            bytes.extend(postcard::to_allocvec(&**words)?);
        }
        Ok(bytes)
    }

    /// A state from a snapshot row ([`UserState::to_row`]).
    pub fn from_row(bytes: &[u8]) -> Result<Self, postcard::Error> {
        let (mut state, rest): (Self, _) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            state.set_words(postcard::from_bytes(rest)?);
        }
        Ok(state)
    }

    /// The word times, for a backend that stores them apart ([`UserState::to_row`]).
    pub fn words(&self) -> WordTimes {
        self.words.as_deref().cloned().unwrap_or_default()
    }

    pub fn set_words(&mut self, words: WordTimes) {
        self.words = (!words.is_empty()).then(|| Box::new(words));
    }

    /// Forgets what no ranking at `now_ms` or later can use: counters untouched for longer
    /// than the retention, purchases older than any cooling-off window, "not interested" past
    /// its end, "fewer like this" faded out. Returns true when something was removed.
    pub fn expire(&mut self, now_ms: i64, cfg: &StateConfig) -> bool {
        let before = (self.heap_bytes(), self.len());
        let cutoff = now_ms.saturating_sub(cfg.counter_retention_ms);
        self.items.retain(|s| s.touched_ms() >= cutoff);
        self.groups.retain(|g| g.touched_ms() >= cutoff);
        self.sightings.retain(|s| s.at_ms >= cutoff);
        let bought_cutoff = now_ms.saturating_sub(PURCHASE_RETENTION_MS);
        self.purchases.retain(|p| p.at_ms >= bought_cutoff);
        if self.items.capacity() > 2 * self.items.len() + 4 {
            self.items.shrink_to_fit();
        }
        if self.groups.capacity() > 2 * self.groups.len() + 4 {
            self.groups.shrink_to_fit();
        }
        if let Some(x) = self.explicit.as_mut() {
            let fhl = cfg.fewer_like_this_half_life_ms;
            x.not_interested.retain(|(_, until)| *until > now_ms);
            x.fewer_categories
                .retain(|(_, d)| d.at(now_ms, fhl) >= FEWER_FLOOR);
            x.fewer_brands
                .retain(|(_, d)| d.at(now_ms, fhl) >= FEWER_FLOOR);
            if x.is_empty() {
                self.explicit = None;
            }
        }
        before != (self.heap_bytes(), self.len())
    }

    /// Entries held, of every kind: a change in it means something was forgotten.
    fn len(&self) -> usize {
        let x = self.explicit();
        self.items.len()
            + self.groups.len()
            + self.purchases.len()
            + self.sightings.len()
            + x.not_interested.len()
            + x.fewer_categories.len()
            + x.fewer_brands.len()
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

    /// The user's own interest entries, including removed ones (weight 0).
    pub fn interests(&self) -> &[Interest] {
        &self.explicit().interests
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

    #[test]
    fn replacing_in_place_is_removing_then_inserting() {
        for len in 1..7usize {
            let base: Vec<u32> = (0..len as u32).map(|x| x * 10).collect();
            for evict in 0..len {
                for at in 0..=len {
                    let item = if at == 0 { 0 } else { base[at - 1] + 5 };
                    let mut expected = base.clone();
                    expected.remove(evict);
                    let to = if evict < at { at - 1 } else { at };
                    expected.insert(to, item);
                    let mut got = base.clone();
                    let placed = replace_sorted(&mut got, evict, at, item);
                    assert_eq!((got, placed), (expected, to), "evict {evict} at {at}");
                }
            }
        }
    }

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
        // Counted at once (no ignore window) to follow the arithmetic.
        let cfg = StateConfig {
            ignore_window_ms: 0,
            ..cfg()
        };
        let mut u = UserState::default();
        for t in 0..4 {
            u.apply(&event(EventKind::Impression, HOUR + t * 1000), &cfg)
                .unwrap();
        }
        // The same showing reported twice (same item, same second) counts once.
        u.apply(&event(EventKind::Impression, HOUR + 3500), &cfg)
            .unwrap();
        let consent = Consent::privacy_default();
        let v = u.view(HOUR + 10_000, consent, &cfg);
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
            ignore_window_ms: 0,
            ..cfg()
        };
        let mut u = UserState::default();
        for (item, times) in [(1, 3), (2, 1), (3, 2), (4, 2)] {
            for t in 0..times {
                let mut e = event(EventKind::Impression, HOUR + t * 1000);
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

    fn at(kind: EventKind, at_ms: i64, item: u64, category: u64) -> Event {
        let mut e = Event::new(kind, at_ms);
        e.item_id = item;
        e.category_id = category;
        e
    }

    #[test]
    fn an_impression_is_pending_until_the_next_request_or_event() {
        let cfg = cfg();
        let consent = Consent::privacy_default();
        let mut u = UserState::default();
        u.apply(&at(EventKind::Impression, HOUR, 1, 5), &cfg)
            .unwrap();
        u.apply(&at(EventKind::Impression, HOUR + 10, 2, 5), &cfg)
            .unwrap();
        // A ranking in the same second: the list was just shown, nothing is ignored yet.
        assert_eq!(
            u.view(HOUR + 500, consent, &cfg).ignored_impressions(1),
            0.0
        );
        // The next ranking request, a second later: seen and passed over.
        assert!(u.view(HOUR + 1000, consent, &cfg).ignored_impressions(1) > 0.99);
        // Engaging with item 2 in the same second as the impressions leaves item 1 pending for
        // that second, and item 2 engaged, not ignored.
        u.apply(&at(EventKind::Click, HOUR + 20, 2, 5), &cfg)
            .unwrap();
        let v = u.view(HOUR + 900, consent, &cfg);
        assert_eq!(v.ignored_impressions(1), 0.0);
        assert_eq!(v.engaged_at(2), Some(HOUR + 20));
        let next = u.view(HOUR + 2000, consent, &cfg);
        assert!(next.ignored_impressions(1) > 0.99);
        assert_eq!(next.ignored_impressions(2), 0.0);
        // A later event of the user passes it over too, whatever the ranking's clock says.
        u.apply(&at(EventKind::Impression, HOUR + 3000, 3, 5), &cfg)
            .unwrap();
        assert!(u.view(HOUR + 1000, consent, &cfg).ignored_impressions(1) > 0.99);
        // Frequency caps count every showing at once.
        assert_eq!(u.view(HOUR + 500, consent, &cfg).shown_since(1, HOUR), 1);
    }

    #[test]
    fn categories_collect_ignored_exposure_and_engagement_resets_it() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..5 {
            u.apply(&at(EventKind::Impression, HOUR + t, 10 + t as u64, 5), &cfg)
                .unwrap();
        }
        let consent = Consent::privacy_default();
        let v = u.view(2 * HOUR, consent, &cfg);
        assert!(v.ignored_group(5, 0) > 4.0);
        u.apply(&at(EventKind::Click, 2 * HOUR, 99, 5), &cfg)
            .unwrap();
        assert_eq!(u.view(2 * HOUR, consent, &cfg).ignored_group(5, 0), 0.0);
    }

    #[test]
    fn engagement_becomes_a_learned_tag_only_with_consent_and_unless_removed() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..3 {
            u.apply(&at(EventKind::Click, HOUR + t, 1, 7), &cfg)
                .unwrap();
        }
        let consent = Consent::privacy_default();
        let tags = u.view(2 * HOUR, consent, &cfg).tags;
        assert_eq!(tags.len(), 1);
        assert_eq!((tags[0].kind, tags[0].id), (TagKind::Category, 7));
        assert_eq!(
            tags[0].source,
            TagSource::Learned(DimensionSet::of([DataDimension::Browsing]))
        );
        let no_browsing = consent.restrict(DimensionSet::of([DataDimension::Browsing]), false);
        assert!(u.view(2 * HOUR, no_browsing, &cfg).tags.is_empty());
        // The user removes it: it stays removed, whatever is learned later.
        let remove = InterestChange {
            kind: TagKind::Category,
            id: 7,
            weight: 0.0,
            label: None,
        };
        u.update_interests(&[remove], 2 * HOUR).unwrap();
        u.apply(&at(EventKind::Click, 3 * HOUR, 1, 7), &cfg)
            .unwrap();
        assert!(u.view(3 * HOUR, consent, &cfg).tags.is_empty());
        // And a tag the user adds is theirs, with their label.
        let add = InterestChange {
            kind: TagKind::Brand,
            id: 70,
            weight: 0.8,
            label: Some("tea".into()),
        };
        u.update_interests(&[add], 3 * HOUR).unwrap();
        let tags = u.view(3 * HOUR, consent, &cfg).tags;
        assert_eq!(tags.len(), 1);
        assert_eq!(
            (tags[0].label.as_str(), tags[0].source),
            ("tea", TagSource::User)
        );
        // Personalisation off: no tags at all.
        let off = consent.restrict(DimensionSet::EMPTY, true);
        assert!(u.view(3 * HOUR, off, &cfg).tags.is_empty());
    }

    #[test]
    fn too_many_interests_change_nothing() {
        let mut u = UserState::default();
        let changes: Vec<InterestChange> = (1..=MAX_INTERESTS as u64 + 1)
            .map(|id| InterestChange {
                kind: TagKind::Category,
                id,
                weight: 1.0,
                label: None,
            })
            .collect();
        assert_eq!(
            u.update_interests(&changes, HOUR).unwrap_err().field,
            "interests"
        );
        assert!(u.interests().is_empty());
    }

    #[test]
    fn purchases_and_cross_platform_sightings_are_kept_in_time_order() {
        let cfg = cfg();
        let mut u = UserState::default();
        let mut buy = at(EventKind::Purchase, 2 * HOUR, 1, 12);
        buy.title = "Pixel 9".into();
        buy.price = 999.0;
        u.apply(&buy, &cfg).unwrap();
        u.apply(&at(EventKind::Purchase, HOUR, 2, 30), &cfg)
            .unwrap();
        let mut elsewhere = at(EventKind::Click, 3 * HOUR, 5, 0);
        elsewhere.source = Some(DataDimension::CrossPlatform);
        u.apply(&elsewhere, &cfg).unwrap();
        let v = u.view(4 * HOUR, Consent::privacy_default(), &cfg);
        let bought: Vec<u64> = v.purchases.iter().map(|p| p.item_id).collect();
        assert_eq!(bought, vec![2, 1]);
        assert_eq!(v.purchases[1].title, "Pixel 9");
        assert_eq!(v.sightings.len(), 1);
        // A sighting elsewhere is not an exposure here.
        assert!(v.shown.is_empty());
        for t in 0..(MAX_PURCHASES as i64 + 5) {
            u.apply(
                &at(EventKind::Purchase, 5 * HOUR + t, 100 + t as u64, 30),
                &cfg,
            )
            .unwrap();
        }
        let v = u.view(6 * HOUR, Consent::privacy_default(), &cfg);
        assert_eq!(v.purchases.len(), MAX_PURCHASES);
        assert!(v.purchases.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn explicit_words_count_wherever_they_were_observed() {
        let cfg = cfg();
        let mut u = UserState::default();
        let mut block = event(EventKind::BlockBrand, HOUR);
        block.source = Some(DataDimension::CrossPlatform);
        u.apply(&block, &cfg).unwrap();
        let mut bought = at(EventKind::Purchase, HOUR, 3, 12);
        bought.source = Some(DataDimension::CrossPlatform);
        u.apply(&bought, &cfg).unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg);
        assert!(v.is_brand_blocked(10));
        assert_eq!(v.purchases.len(), 1);
        assert!(v.sightings.is_empty());
    }

    #[test]
    fn undo_takes_back_each_kind_of_feedback() {
        let cfg = cfg();
        let mut u = UserState::default();
        for kind in [
            EventKind::BlockBrand,
            EventKind::BlockShop,
            EventKind::NotInterested,
            EventKind::FewerLikeThis,
        ] {
            u.apply(&event(kind, HOUR), &cfg).unwrap();
        }
        for undo in [
            Undo::BlockedBrand(10),
            Undo::BlockedShop(100),
            Undo::NotInterested(1),
            Undo::FewerCategory(5),
            Undo::FewerBrand(10),
        ] {
            u.undo(undo, 2 * HOUR);
        }
        let v = u.view(2 * HOUR, Consent::privacy_default(), &cfg);
        assert!(v.blocked_brands.is_empty() && v.blocked_shops.is_empty());
        assert!(v.not_interested.is_empty());
        assert_eq!(v.fewer_like_this(5, 10), 0.0);
    }

    #[test]
    fn the_overload_meter_follows_the_session() {
        let cfg = cfg();
        let mut u = UserState::default();
        for t in 0..40 {
            u.apply(
                &at(EventKind::Impression, HOUR + t * 1000, 1 + t as u64, 0),
                &cfg,
            )
            .unwrap();
        }
        let v = u.view(HOUR + 40_000, Consent::privacy_default(), &cfg);
        assert!(v.recent_impressions > 35.0 && v.recent_engagements == 0.0);
        let hour_later = u.view(2 * HOUR, Consent::privacy_default(), &cfg);
        assert!(hour_later.recent_impressions < 0.01);
    }

    #[test]
    fn sensitive_opt_ins_are_kept_sorted_and_can_be_withdrawn() {
        let mut u = UserState::default();
        u.set_consent(&[], None, &[(9, true), (4, true)], HOUR)
            .unwrap();
        assert_eq!(u.consent.sensitive, vec![4, 9]);
        u.set_consent(&[], None, &[(9, false)], HOUR).unwrap();
        let v = u.view(HOUR, Consent::privacy_default(), &cfg());
        assert!(v.opted_in_sensitive(4) && !v.opted_in_sensitive(9));
    }
}

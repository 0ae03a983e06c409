//! Hot per-user state: a concurrent map from user id to [`UserState`], updated by events and
//! read by rankings as a [`UserView`] snapshot. Writers lock one shard briefly; a ranking copies
//! what it needs and scores with no lock held.
//!
//! Must not: block on I/O while holding a shard, or keep anything that cannot be bounded per
//! user (every list has a cap).

pub mod decay;
pub mod event;
pub mod user;

use dashmap::DashMap;

use crate::rank::{Consent, DataDimension, DimensionSet, UserView};

pub use event::{Event, EventError, EventKind};
pub use user::UserState;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Limits and time constants of the state store.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Consent for users who have chosen nothing: the privacy default, or stricter.
    pub consent_default: Consent,
    /// Ignored exposure halves in a day: yesterday's scrolling matters less today and the
    /// item is back to nearly fresh within a week.
    pub exposure_half_life_ms: i64,
    /// "Fewer like this" halves in 30 days: a clear request, honoured for weeks, not forever.
    pub fewer_like_this_half_life_ms: i64,
    /// A "not interested" without its own expiry lasts 90 days: a season, after which tastes
    /// and assortments have moved on.
    pub not_interested_ms: i64,
    /// Items with exposure counters per user. 256 covers several days of a heavy user's feed;
    /// past it the faintest is forgotten (counters may be approximate).
    pub max_items_per_user: usize,
    /// Entries of each kind of explicit feedback per user (blocked brands, blocked shops,
    /// not-interested items, fewer-like-this categories and brands). Past it, new feedback of
    /// that kind is refused with a clear error rather than silently lost.
    pub max_explicit_per_kind: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            consent_default: Consent::privacy_default(),
            exposure_half_life_ms: DAY_MS,
            fewer_like_this_half_life_ms: 30 * DAY_MS,
            not_interested_ms: 90 * DAY_MS,
            max_items_per_user: 256,
            max_explicit_per_kind: 1000,
        }
    }
}

/// What the preference centre shows about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// False when nothing is held about the user (the rest shows the defaults).
    pub known: bool,
    /// With the user's consent in force (no request override).
    pub view: UserView,
    pub not_interested_until: Vec<(u64, i64)>,
}

/// All users' hot state.
pub struct UserStore {
    users: DashMap<Box<str>, UserState>,
    config: StateConfig,
}

impl UserStore {
    pub fn new(config: StateConfig) -> Self {
        Self {
            users: DashMap::new(),
            config,
        }
    }

    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Users held in memory.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Runs `f` on the user's state, creating it if needed.
    fn update<R>(&self, user_id: &str, f: impl FnOnce(&mut UserState) -> R) -> R {
        if let Some(mut state) = self.users.get_mut(user_id) {
            return f(&mut state);
        }
        f(&mut self.users.entry(user_id.into()).or_default())
    }

    /// Checks and applies one event; it is visible to the very next [`UserStore::view`].
    pub fn record(&self, user_id: &str, event: &Event, now_ms: i64) -> Result<(), EventError> {
        event.check(now_ms)?;
        self.update(user_id, |u| u.apply(event, &self.config))
    }

    pub fn set_consent(
        &self,
        user_id: &str,
        changes: &[(DataDimension, bool)],
        personalization: Option<bool>,
        now_ms: i64,
    ) {
        self.update(user_id, |u| u.set_consent(changes, personalization, now_ms));
    }

    /// The snapshot a ranking at `now_ms` works from, with the request's consent override
    /// applied (it can only restrict).
    pub fn view(
        &self,
        user_id: &str,
        now_ms: i64,
        denied: DimensionSet,
        personalization_off: bool,
    ) -> UserView {
        let default = self.config.consent_default;
        match self.users.get(user_id) {
            Some(u) => {
                let consent = u
                    .consent
                    .apply_to(default)
                    .restrict(denied, personalization_off);
                u.view(now_ms, consent, &self.config)
            }
            None => UserView::unknown(default.restrict(denied, personalization_off)),
        }
    }

    pub fn profile(&self, user_id: &str, now_ms: i64) -> Profile {
        match self.users.get(user_id) {
            Some(u) => Profile {
                known: true,
                view: u.view(
                    now_ms,
                    u.consent.apply_to(self.config.consent_default),
                    &self.config,
                ),
                not_interested_until: u.not_interested_until(now_ms),
            },
            None => Profile {
                known: false,
                view: UserView::unknown(self.config.consent_default),
                not_interested_until: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_event_is_visible_to_the_next_view() {
        let store = UserStore::new(StateConfig::default());
        let now = 1_700_000_000_000;
        let mut e = Event::new(EventKind::BlockBrand, now);
        e.brand_id = 42;
        store.record("u1", &e, now).unwrap();
        assert!(
            store
                .view("u1", now, DimensionSet::EMPTY, false)
                .is_brand_blocked(42)
        );
        assert!(
            !store
                .view("u2", now, DimensionSet::EMPTY, false)
                .is_brand_blocked(42)
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn invalid_events_change_nothing() {
        let store = UserStore::new(StateConfig::default());
        let e = Event::new(EventKind::BlockBrand, 1);
        assert_eq!(store.record("u1", &e, 1).unwrap_err().field, "brand_id");
        assert!(store.is_empty());
    }

    #[test]
    fn stored_consent_and_request_override_combine_strictly() {
        let store = UserStore::new(StateConfig::default());
        store.set_consent("u", &[(DataDimension::Location, true)], None, 5);
        let v = store.view("u", 5, DimensionSet::EMPTY, false);
        assert!(v.consent.allows(DataDimension::Location));
        let v = store.view("u", 5, DimensionSet::of([DataDimension::Location]), false);
        assert!(!v.consent.allows(DataDimension::Location));
        let p = store.profile("u", 5);
        assert!(p.known && p.view.consent.allows(DataDimension::Location));
        assert!(!store.profile("other", 5).known);
    }
}

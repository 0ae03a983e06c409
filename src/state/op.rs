//! A change to one user's state, as the write-ahead log and the shared backend carry it. The
//! same `Op` applied to the same state gives the same result, so replaying the log after a
//! crash rebuilds exactly what was acknowledged.

use serde::{Deserialize, Serialize};

use super::StateConfig;
use super::event::{Event, EventError, EventKind};
use super::user::{InterestChange, Undo, UserState, WordTimes};
use crate::rank::DataDimension;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Event(Event),
    Consent {
        changes: Vec<(DataDimension, bool)>,
        personalization: Option<bool>,
        /// Sensitive categories opted in to (true) or out of (false).
        sensitive: Vec<(u64, bool)>,
        at_ms: i64,
    },
    /// Erase the user: everything before this op is gone.
    Forget,
    /// Replace the user's state with this one: a shared backend compacts a long history of
    /// ops into one. Encoded as the state's row ([`UserState::to_row`]), so it carries the
    /// row format's byte; format-2 records are read by `legacy::decode_op_v2`.
    Restore(Box<UserState>),
    /// Take back a block, a "not interested" or a "fewer like this".
    Undo {
        undo: Undo,
        at_ms: i64,
    },
    /// Add, re-weight or remove interest tags.
    Interests {
        changes: Vec<InterestChange>,
        at_ms: i64,
    },
    /// Set the times of the user's blocks and unblocks: follows a `Restore`, which does not
    /// carry them (added after the first release; a variant at the end keeps older records
    /// readable).
    Words(WordTimes),
}

/// Bytes reserved for an op's encoding: an event or a word fits, so the buffer is not
/// regrown byte by byte on the way (a restore of a whole state grows past it as usual).
const ENCODED_GUESS: usize = 64;

impl Op {
    /// The op as a log record or list element holds it (postcard).
    pub fn encoded(&self) -> postcard::Result<Vec<u8>> {
        postcard::to_extend(self, Vec::with_capacity(ENCODED_GUESS))
    }

    /// The user's explicit words (and purchases, which start cooling-off windows): their
    /// acknowledgement waits until they are durable. The rest are counters, which may be
    /// approximate and are made durable in batches.
    pub fn is_explicit(&self) -> bool {
        match self {
            Op::Event(e) => !matches!(
                e.kind,
                EventKind::Impression
                    | EventKind::Click
                    | EventKind::Cart
                    | EventKind::Favorite
                    | EventKind::Search
            ),
            Op::Consent { .. }
            | Op::Forget
            | Op::Restore(_)
            | Op::Undo { .. }
            | Op::Interests { .. }
            | Op::Words(_) => true,
        }
    }

    /// Applies the op to a user's state. `Forget` is the store's business, not the state's.
    pub fn apply(&self, state: &mut UserState, cfg: &StateConfig) -> Result<(), EventError> {
        match self {
            Op::Event(e) => state.apply(e, cfg),
            Op::Consent {
                changes,
                personalization,
                sensitive,
                at_ms,
            } => state.set_consent(changes, *personalization, sensitive, *at_ms),
            Op::Forget => {
                *state = UserState::default();
                Ok(())
            }
            Op::Restore(saved) => {
                *state = (**saved).clone();
                Ok(())
            }
            Op::Undo { undo, at_ms } => {
                state.undo(*undo, *at_ms);
                Ok(())
            }
            Op::Interests { changes, at_ms } => state.update_interests(changes, *at_ms),
            Op::Words(words) => {
                state.set_words(words.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_words_and_purchases_are_the_ops_that_wait_for_disk() {
        let explicit: Vec<EventKind> = EventKind::ALL
            .into_iter()
            .filter(|k| Op::Event(Event::new(*k, 1)).is_explicit())
            .collect();
        assert_eq!(
            explicit,
            vec![
                EventKind::Purchase,
                EventKind::NotInterested,
                EventKind::FewerLikeThis,
                EventKind::BlockBrand,
                EventKind::UnblockBrand,
                EventKind::BlockShop,
                EventKind::UnblockShop,
            ]
        );
        assert!(Op::Forget.is_explicit());
    }

    fn restored() -> UserState {
        let cfg = StateConfig::default();
        let mut u = UserState::default();
        let mut e = Event::new(EventKind::Impression, 1_780_000_000_000);
        e.item_id = 4;
        u.apply(&e, &cfg).unwrap();
        e.kind = EventKind::BlockBrand;
        e.brand_id = 9;
        u.apply(&e, &cfg).unwrap();
        u
    }

    #[test]
    fn ops_survive_encoding() {
        let mut e = Event::new(EventKind::BlockBrand, 5);
        e.brand_id = 9;
        for op in [
            Op::Event(e),
            Op::Consent {
                changes: vec![(DataDimension::Location, true)],
                personalization: Some(false),
                sensitive: vec![(40, true)],
                at_ms: 7,
            },
            Op::Forget,
            Op::Undo {
                undo: Undo::FewerBrand(3),
                at_ms: 8,
            },
            Op::Restore(Box::new(restored())),
        ] {
            let bytes = postcard::to_allocvec(&op).unwrap();
            assert_eq!(postcard::from_bytes::<Op>(&bytes).unwrap(), op);
        }
    }
}

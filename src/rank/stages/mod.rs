//! One file per stage. Each stage is a small type implementing [`Stage`](super::stage::Stage)
//! with its knobs next to it (defaults with the reason for each); `policy.rs` composes them.
//! Selection is the one stage with parts: `select/` holds it and what shapes its list.
//!
//! Order in the default policy:
//! 1. hard filters: explicit feedback (`feedback.rs`), consent and sensitive categories
//!    (`consent.rs`), the frequency cap (`frequency_cap.rs`), cooling-off, overload
//!    (sponsored items held back);
//! 2. the user's lifecycle stage (how many items, how much popularity and diversity);
//! 3. relevance, then penalties: consent discount, "too soon", fatigue, fewer-like-this;
//! 4. boosts: complements of recent purchases, interest tags, context rules, the long tail;
//! 5. selection (`select/`: MMR or DPP diversity, per-list caps, exploration slots,
//!    calibration), then reasons (`explain.rs`, which also words the dropped candidates).
//!
//! A fail-open answer runs `hard_rules.rs` (explicit feedback and consent in one pass) and
//! then the upstream order (`order.rs`); the identity baseline runs the upstream order alone.

pub mod complements;
pub mod consent;
pub mod context;
pub mod cooling_off;
pub mod explain;
pub mod fatigue;
pub mod feedback;
pub mod frequency_cap;
pub mod hard_rules;
pub mod interests;
pub mod lifecycle;
pub mod long_tail;
pub mod order;
pub mod overload;
pub mod relevance;
pub mod select;

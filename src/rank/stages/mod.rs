//! One file per stage. Each stage is a small type implementing [`Stage`](super::pipeline::Stage)
//! with its knobs next to it (defaults with the reason for each); `policy.rs` composes them.
//!
//! Order in the default policy: hard filters (explicit feedback, consent) → relevance →
//! penalties (fatigue, fewer-like-this) → selection (MMR diversity) → explain.

pub mod consent;
pub mod explain;
pub mod fatigue;
pub mod feedback;
pub mod mmr;
pub mod order;
pub mod relevance;

use super::types::{Candidate, DropRule};
use super::user::UserView;

/// The hard rule, if any, that removes this candidate for this user. These rules are the
/// user's own words and consent, so even a fail-open answer applies them.
pub fn hard_rule(candidate: &Candidate, user: &UserView) -> Option<DropRule> {
    feedback::rule_for(candidate, user).or_else(|| consent::rule_for(candidate, user))
}

/// Plain words for a dropped candidate, shown only when a request asks to explain.
pub fn drop_detail(rule: DropRule, c: &Candidate, user: &UserView) -> String {
    match rule {
        DropRule::NotInterested => format!("the user said not interested in item {}", c.item_id),
        DropRule::BlockedBrand => format!("the user blocked brand {}", c.brand_id),
        DropRule::BlockedShop => format!("the user blocked shop {}", c.shop_id),
        DropRule::Consent => {
            let denied: Vec<&str> = c
                .evidence
                .iter()
                .filter(|d| !user.consent.allows(*d))
                .map(|d| d.name())
                .collect();
            format!(
                "all evidence comes from data the user has not consented to: {}",
                denied.join(", ")
            )
        }
    }
}

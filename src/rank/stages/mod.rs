//! One file per stage. Each stage is a small type implementing [`Stage`](super::pipeline::Stage)
//! with its knobs next to it (defaults with the reason for each); `policy.rs` composes them.
//!
//! Order in the default policy:
//! 1. hard filters: explicit feedback, consent and sensitive categories, frequency caps,
//!    cooling-off, overload (sponsored items held back);
//! 2. the user's lifecycle stage (how many items, how much popularity and diversity);
//! 3. relevance, then penalties: consent discount, "too soon", fatigue, fewer-like-this;
//! 4. boosts: complements of recent purchases, interest tags, context rules, the long tail;
//! 5. selection (`select.rs`: MMR or DPP diversity, hard caps, exploration slots,
//!    calibration), then reasons.

pub mod calibration;
pub mod caps;
pub mod complements;
pub mod consent;
pub mod context;
pub mod cooling_off;
pub mod dpp;
pub mod explain;
pub mod exploration;
pub mod fatigue;
pub mod feedback;
pub mod hard_caps;
pub mod interests;
pub mod lifecycle;
pub mod long_tail;
pub mod mmr;
pub mod order;
pub mod overload;
pub mod relevance;
pub mod select;

use super::types::{Candidate, DropRule, RankInput};
use super::user::UserView;

/// The hard rules that hold whatever happens, even in a fail-open answer: the user's own
/// words (blocks, "not interested") and consent, including the policy's sensitive categories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HardRules {
    /// Sorted categories shown only to users who opted in.
    pub sensitive_categories: Vec<u64>,
}

impl HardRules {
    /// The hard rule, if any, that removes this candidate for this user.
    pub fn rule_for(&self, candidate: &Candidate, user: &UserView) -> Option<DropRule> {
        feedback::rule_for(candidate, user)
            .or_else(|| consent::rule_for(candidate, user))
            .or_else(|| consent::sensitive_rule(&self.sensitive_categories, candidate, user))
    }
}

/// Plain words for a dropped candidate, shown only when a request asks to explain.
pub fn drop_detail(rule: DropRule, c: &Candidate, user: &UserView, input: &RankInput) -> String {
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
        DropRule::FrequencyCap => format!(
            "item {} was shown {} times lately: more than the {} surface allows",
            c.item_id,
            user.shown_since(c.item_id, 0),
            if input.surface.is_empty() {
                "default"
            } else {
                &input.surface
            }
        ),
        DropRule::CoolingOff => cooling_off::detail(c, user),
        DropRule::Sensitive => format!(
            "category {} is sensitive and the user has not opted in",
            c.category_id
        ),
        DropRule::Overload => {
            "a sponsored item held back while the user skims without engaging".to_owned()
        }
    }
}

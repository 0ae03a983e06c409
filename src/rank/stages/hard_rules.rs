//! The hard rules that hold whatever happens, even in a fail-open answer: the user's own words
//! (blocks, "not interested") and consent, including the policy's sensitive categories. In a
//! full ranking the same rules run as two stages (`feedback.rs`'s explicit feedback, then
//! `consent.rs`'s gate); this one stage applies them together, in one linear pass with no
//! deadline check, which is what a fail-open answer can afford after its deadline has passed.

use super::{consent, feedback};
use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Candidate, DropRule};
use crate::rank::user::UserView;

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

impl Stage for HardRules {
    fn name(&self) -> &'static str {
        "hard_rules"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        slate.drop_by(|c, u| self.rule_for(c, u));
        Ok(())
    }
}

//! The consent gate: a candidate whose evidence comes only from data dimensions the user has
//! not consented to is removed, because showing it would reveal that such data was used.
//! A candidate that declares no evidence, or any consented evidence, passes.

use crate::rank::pipeline::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Candidate, DropRule};
use crate::rank::user::UserView;

pub fn rule_for(c: &Candidate, user: &UserView) -> Option<DropRule> {
    let allowed = user.consent.allowed(c.evidence);
    (!c.evidence.is_empty() && allowed.is_empty()).then_some(DropRule::Consent)
}

pub struct ConsentGate;

impl Stage for ConsentGate {
    fn name(&self) -> &'static str {
        "consent"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        slate.drop_by(rule_for);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::pipeline::Parallelism;
    use crate::rank::types::{Consent, DataDimension as D, DimensionSet, RankInput};

    fn with_evidence(item_id: u64, dims: &[D]) -> Candidate {
        Candidate {
            item_id,
            evidence: DimensionSet::of(dims.iter().copied()),
            ..Default::default()
        }
    }

    #[test]
    fn only_candidates_with_no_consented_evidence_are_dropped() {
        let input = RankInput {
            candidates: vec![
                with_evidence(1, &[D::CrossPlatform]),
                with_evidence(2, &[D::CrossPlatform, D::Browsing]),
                with_evidence(3, &[]),
                with_evidence(4, &[D::Trending]),
                with_evidence(5, &[D::Location, D::Social]),
            ],
            ..Default::default()
        };
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        ConsentGate.apply(&mut slate, &Deadline::none()).unwrap();
        let dropped: Vec<usize> = (0..5).filter(|&i| slate.is_dropped(i)).collect();
        assert_eq!(dropped, vec![0, 4]);
    }

    #[test]
    fn personalisation_off_drops_every_personal_only_candidate() {
        let user =
            UserView::unknown(Consent::privacy_default().restrict(DimensionSet::EMPTY, true));
        assert_eq!(
            rule_for(&with_evidence(1, &[D::Browsing, D::Search]), &user),
            Some(DropRule::Consent)
        );
        assert_eq!(
            rule_for(&with_evidence(2, &[D::Browsing, D::Editorial]), &user),
            None
        );
    }
}

//! Selection without diversity: by score (a policy with diversity turned off), or the upstream
//! order unchanged (the identity baseline, and the shape of every fail-open answer).

use crate::rank::stage::{Deadline, Interrupted, Pick, Slate, Stage};

use super::explain;

/// Survivors by descending score, ties to the upstream position.
pub struct ByScore;

impl Stage for ByScore {
    fn name(&self) -> &'static str {
        "by_score"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let score = &slate.score;
        let mut order = slate.survivor_list();
        let take = slate.input.limit().min(order.len());
        let by_score = |a: &usize, b: &usize| score[*b].total_cmp(&score[*a]).then(a.cmp(b));
        if take > 0 && take < order.len() {
            order.select_nth_unstable_by(take - 1, by_score);
            order.truncate(take);
        }
        order.sort_unstable_by(by_score);
        slate.picks = order
            .into_iter()
            .map(|index| Pick::plain(index, score[index]))
            .collect();
        Ok(())
    }
}

/// Survivors in the upstream order with their upstream scores and the "upstream" reason.
pub struct Upstream;

impl Stage for Upstream {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let input = slate.input;
        let mut picks = Vec::with_capacity(input.limit().min(slate.len()));
        picks.extend(
            slate
                .survivors()
                .take(input.limit())
                .map(|index| Pick::plain(index, input.candidates[index].score)),
        );
        slate.picks = picks;
        let reason = explain::upstream_reason(input.locale);
        slate.reasons = vec![reason; slate.picks.len()];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, DropRule, RankInput, ReasonCode};
    use crate::rank::user::UserView;

    fn input(n: usize, k: usize) -> RankInput {
        RankInput {
            candidates: (0..n)
                .map(|i| Candidate {
                    item_id: i as u64 + 1,
                    score: (n - i) as f32,
                    ..Default::default()
                })
                .collect(),
            k,
            ..Default::default()
        }
    }

    #[test]
    fn by_score_takes_the_top_k_with_ties_to_upstream_position() {
        let input = input(5, 3);
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        slate.score = array![0.5, 0.9, 0.5, 0.1, 0.9];
        slate.drop_candidate(4, DropRule::BlockedBrand);
        ByScore.apply(&mut slate, &Deadline::none()).unwrap();
        let order: Vec<usize> = slate.picks.iter().map(|p| p.index).collect();
        assert_eq!(order, vec![1, 0, 2]);
    }

    #[test]
    fn upstream_keeps_request_order_and_skips_dropped() {
        let input = input(4, 0);
        let user = UserView::unknown(Consent::privacy_default());
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        slate.score = array![0.0, 5.0, 9.0, 1.0];
        slate.drop_candidate(1, DropRule::NotInterested);
        Upstream.apply(&mut slate, &Deadline::none()).unwrap();
        let order: Vec<usize> = slate.picks.iter().map(|p| p.index).collect();
        assert_eq!(order, vec![0, 2, 3]);
        assert_eq!(slate.picks[0].score, 4.0, "upstream score");
        assert!(slate.reasons.iter().all(|r| r.code == ReasonCode::Upstream));
    }
}

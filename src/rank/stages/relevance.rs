//! Relevance: the upstream score, min-max normalised to [0, 1] within the request, so that
//! penalties and diversity weigh the same whatever scale the recommender scores on.
//!
//! With personalisation off the upstream score is not used, since it may rest on the user's
//! data: relevance is the candidates' popularity, or, when the request carries none, the
//! upstream order (the platform's editorial order).

use ndarray::Array1;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::Component;

pub struct Relevance;

/// Maps scores linearly onto [0, 1]; when all scores are equal, every item gets 1.
pub fn normalize(scores: &Array1<f32>) -> Array1<f32> {
    let (lo, hi) = scores
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &s| {
            (lo.min(s), hi.max(s))
        });
    // In f64: the span of two finite f32 scores can overflow f32.
    let (lo, span) = (f64::from(lo), f64::from(hi) - f64::from(lo));
    if span > 0.0 {
        scores.mapv(|s| ((f64::from(s) - lo) / span) as f32)
    } else {
        Array1::ones(scores.len())
    }
}

impl Stage for Relevance {
    fn name(&self) -> &'static str {
        "relevance"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let candidates = &slate.input.candidates;
        let column = if slate.user.consent.personalization {
            normalize(&candidates.iter().map(|c| c.score).collect())
        } else {
            let popularity: Array1<f32> = candidates.iter().map(|c| c.popularity).collect();
            if popularity.iter().any(|p| *p != popularity[0]) {
                normalize(&popularity)
            } else {
                let n = candidates.len().max(2) as f32;
                (0..candidates.len())
                    .map(|i| 1.0 - i as f32 / (n - 1.0))
                    .collect()
            }
        };
        slate.add_component(Component::Relevance, column);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn scores_map_onto_the_unit_interval_keeping_order() {
        assert_eq!(normalize(&array![2.0, 4.0, 3.0]), array![0.0, 1.0, 0.5]);
        assert_eq!(normalize(&array![-10.0, 10.0]), array![0.0, 1.0]);
    }

    #[test]
    fn personalisation_off_ranks_by_popularity_or_the_editorial_order() {
        use crate::rank::kernel::Parallelism;
        use crate::rank::types::{Candidate, Consent, DimensionSet, RankInput};
        use crate::rank::user::UserView;
        let mut input = RankInput {
            candidates: [(1.0, 5.0), (3.0, 1.0), (2.0, 3.0)]
                .map(|(score, popularity)| Candidate {
                    score,
                    popularity,
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        };
        let off = UserView::unknown(Consent::privacy_default().restrict(DimensionSet::EMPTY, true));
        let mut slate = Slate::new(&input, &off, Parallelism::SEQUENTIAL);
        Relevance.apply(&mut slate, &Deadline::none()).unwrap();
        assert_eq!(slate.score, array![1.0, 0.0, 0.5]);
        input.candidates.iter_mut().for_each(|c| c.popularity = 0.0);
        let mut slate = Slate::new(&input, &off, Parallelism::SEQUENTIAL);
        Relevance.apply(&mut slate, &Deadline::none()).unwrap();
        assert_eq!(slate.score, array![1.0, 0.5, 0.0]);
    }

    #[test]
    fn equal_or_extreme_scores_do_not_produce_nan() {
        assert_eq!(normalize(&array![7.0, 7.0]), array![1.0, 1.0]);
        assert_eq!(
            normalize(&array![f32::MAX, -f32::MAX, 0.0]),
            array![1.0, 0.0, 0.5]
        );
        assert_eq!(normalize(&Array1::zeros(0)).len(), 0);
    }
}

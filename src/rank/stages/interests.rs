//! Interest tags: the user's visible, editable interests (categories and brands). Tags the
//! user set, and the few learned from engagement the user consented to, boost matching
//! candidates in proportion to their weight, with the reason "matches your interest in …".
//! A tag the user removed stays removed: it also hides the learned tag of the same subject.

use ndarray::Array1;
use serde::Deserialize;

use crate::rank::stage::{Cause, Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Component, DimensionSet, Locale, ReasonCode};
use crate::rank::user::{Tag, TagSource};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InterestParams {
    pub enabled: bool,
    /// The boost of a tag of weight 1, on the [0, 1] relevance scale. 0.2 lets a stated
    /// interest decide between items of similar relevance without overriding the recommender.
    pub weight: f32,
}

impl Default for InterestParams {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 0.2,
        }
    }
}

pub struct Interests(pub InterestParams);

impl Stage for Interests {
    fn name(&self) -> &'static str {
        "interests"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (input, user) = (slate.input, slate.user);
        if user.tags.is_empty() {
            return Ok(());
        }
        let mut boost = Array1::<f32>::zeros(input.candidates.len());
        for (i, c) in input.candidates.iter().enumerate() {
            let Some(tag) = user.matching_tag(c) else {
                continue;
            };
            boost[i] = self.0.weight * tag.weight;
            slate.offer_cause(i, cause(tag, boost[i], input.locale));
        }
        slate.add_component(Component::Interest, boost);
        Ok(())
    }
}

fn cause(tag: &Tag, strength: f32, locale: Locale) -> Cause {
    let label = tag.label.trim();
    let text = match (locale, label.is_empty()) {
        (Locale::En, false) => format!("Matches your interest in {label}").into(),
        (Locale::En, true) => "Matches your interests".into(),
        (Locale::ZhCn, false) => format!("符合你对{label}的兴趣").into(),
        (Locale::ZhCn, true) => "符合你的兴趣".into(),
    };
    Cause {
        code: ReasonCode::Interest,
        text,
        dimensions: match tag.source {
            // The user's own words: no behavioural data behind them.
            TagSource::User => DimensionSet::EMPTY,
            TagSource::Learned(from) => from,
        },
        strength,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, DataDimension, RankInput};
    use crate::rank::user::{TagKind, UserView};

    #[test]
    fn tags_boost_matching_candidates_by_weight_and_say_why() {
        let input = RankInput {
            candidates: [(1, 7, 0), (2, 8, 70), (3, 9, 0)]
                .map(|(item_id, category_id, brand_id)| Candidate {
                    item_id,
                    category_id,
                    brand_id,
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.tags = vec![
            Tag {
                kind: TagKind::Category,
                id: 7,
                label: "trail running".into(),
                weight: 1.0,
                source: TagSource::User,
            },
            Tag {
                kind: TagKind::Brand,
                id: 70,
                label: String::new(),
                weight: 0.5,
                source: TagSource::Learned(DimensionSet::of([DataDimension::Browsing])),
            },
        ];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Interests(InterestParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.score.to_vec(), vec![0.2, 0.1, 0.0]);
        let own = slate.causes[0].as_ref().unwrap();
        assert_eq!(own.text, "Matches your interest in trail running");
        assert!(own.dimensions.is_empty());
        let learned = slate.causes[1].as_ref().unwrap();
        assert_eq!(
            learned.dimensions,
            DimensionSet::of([DataDimension::Browsing])
        );
    }
}

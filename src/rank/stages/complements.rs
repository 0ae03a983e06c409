//! Complements (stage 2 of the avoidance chain): after a purchase, accessories of what was
//! just bought are what the user needs next (phone → case, charger, earphones). A category
//! complement graph in the policy boosts them, fading over the window, with the reason
//! "goes with your new …". The graph is the platform's (category ids are its own); fitting it
//! from logs is the replay evaluation's job. The item catalog adds per-item complements: the
//! categories it lists for the very item bought (`UserView::catalog_complements`) count as
//! edges too.
//!
//! Uses the user's purchases, so it runs only with consent for purchase data.

use std::borrow::Cow;

use ndarray::Array1;
use serde::Deserialize;

use crate::rank::stage::{Cause, Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Component, DataDimension, DimensionSet, Locale, ReasonCode};
use crate::rank::user::Purchase;
use crate::time::DAY_MS;

/// The categories that go with one category.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub category_id: u64,
    pub complements: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComplementParams {
    pub enabled: bool,
    /// The boost right after the purchase, on the [0, 1] relevance scale: 0.3 lifts an
    /// accessory of middling relevance into the first screen.
    pub weight: f32,
    /// Days over which the boost fades to 0: 30, the time in which most accessories of a new
    /// device are bought.
    pub days: f64,
    pub graph: Vec<Edge>,
}

impl Default for ComplementParams {
    fn default() -> Self {
        Self {
            enabled: true,
            weight: 0.3,
            days: 30.0,
            graph: Vec::new(),
        }
    }
}

impl ComplementParams {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(self.days.is_finite() && self.days > 0.0 && self.days <= 365.0) {
            return Err((
                "complements.days".into(),
                "must be above 0 and at most 365".into(),
            ));
        }
        for (i, e) in self.graph.iter().enumerate() {
            if e.category_id == 0 || e.complements.contains(&0) {
                return Err((
                    format!("complements.graph[{i}]"),
                    "category ids must not be 0 (unknown)".into(),
                ));
            }
        }
        Ok(())
    }

    fn goes_with(&self, bought: u64, candidate: u64) -> bool {
        bought != 0
            && candidate != 0
            && self
                .graph
                .iter()
                .any(|e| e.category_id == bought && e.complements.contains(&candidate))
    }
}

pub struct Complements(pub ComplementParams);

impl Stage for Complements {
    fn name(&self) -> &'static str {
        "complements"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (input, user) = (slate.input, slate.user);
        if user.purchases.is_empty()
            || (self.0.graph.is_empty() && user.catalog_complements.is_empty())
            || !user.consent.allows(DataDimension::Purchases)
        {
            return Ok(());
        }
        let window = (self.0.days * DAY_MS as f64) as i64;
        let now = input.now_ms;
        // Each recent purchase with the catalog's complements of the item bought.
        let recent: Vec<(&Purchase, &[u64])> = user
            .purchases
            .iter()
            .rev()
            .filter(|p| now - p.at_ms < window)
            .map(|p| (p, user.catalog_complements_of(p.item_id)))
            .collect();
        let mut boost = Array1::<f32>::zeros(input.candidates.len());
        for (i, c) in input.candidates.iter().enumerate() {
            let Some((p, _)) = recent.iter().find(|(p, listed)| {
                self.0.goes_with(p.category_id, c.category_id)
                    || (c.category_id != 0 && listed.contains(&c.category_id))
            }) else {
                continue;
            };
            let left = 1.0 - (now - p.at_ms).max(0) as f32 / window as f32;
            boost[i] = self.0.weight * left;
            slate.offer_cause(
                i,
                Cause {
                    code: ReasonCode::Complement,
                    text: text(&p.title, input.locale),
                    dimensions: DimensionSet::of([DataDimension::Purchases]),
                    // The post-purchase story outranks every other reason.
                    strength: f32::INFINITY,
                },
            );
        }
        slate.add_component(Component::Complement, boost);
        Ok(())
    }
}

fn text(title: &str, locale: Locale) -> Cow<'static, str> {
    let title = title.trim();
    match (locale, title.is_empty()) {
        (Locale::En, false) => format!("Goes with your new {title}").into(),
        (Locale::En, true) => "Goes with something you bought recently".into(),
        (Locale::ZhCn, false) => format!("搭配你新买的{title}").into(),
        (Locale::ZhCn, true) => "搭配你最近买的商品".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Candidate, Consent, RankInput};
    use crate::rank::user::UserView;

    const DAY: i64 = crate::time::DAY_MS;

    #[test]
    fn accessories_of_a_new_phone_are_boosted_with_their_reason() {
        let params = ComplementParams {
            graph: vec![Edge {
                category_id: 12,
                complements: vec![13, 14],
            }],
            ..Default::default()
        };
        let input = RankInput {
            candidates: [(1, 13), (2, 14), (3, 15)]
                .map(|(item_id, category_id)| Candidate {
                    item_id,
                    category_id,
                    ..Default::default()
                })
                .to_vec(),
            now_ms: 15 * DAY,
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.purchases = vec![Purchase {
            item_id: 9,
            category_id: 12,
            at_ms: 0,
            title: "Pixel 9".into(),
            ..Default::default()
        }];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Complements(params)
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.score.to_vec(), vec![0.15, 0.15, 0.0]);
        let cause = slate.causes[0].as_ref().unwrap();
        assert_eq!(cause.code, ReasonCode::Complement);
        assert_eq!(cause.text, "Goes with your new Pixel 9");
        assert!(slate.causes[2].is_none());
        assert_eq!(text("", Locale::ZhCn), "搭配你最近买的商品");
    }

    #[test]
    fn the_catalogs_complements_of_the_item_bought_count_as_edges() {
        let input = RankInput {
            candidates: [(1, 13), (2, 14), (3, 0)]
                .map(|(item_id, category_id)| Candidate {
                    item_id,
                    category_id,
                    ..Default::default()
                })
                .to_vec(),
            now_ms: 15 * DAY,
            ..Default::default()
        };
        let mut user = UserView::unknown(Consent::privacy_default());
        user.purchases = vec![Purchase {
            item_id: 9,
            category_id: 12,
            at_ms: 0,
            title: "Pixel 9".into(),
            ..Default::default()
        }];
        // No graph in the policy: the catalog lists category 14 for item 9 (and 0 matches
        // nothing).
        user.catalog_complements = vec![(9, vec![14, 0])];
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Complements(ComplementParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.score.to_vec(), vec![0.0, 0.15, 0.0]);
        assert_eq!(
            slate.causes[1].as_ref().unwrap().text,
            "Goes with your new Pixel 9"
        );
        // Without consent to purchase data, nothing.
        user.consent = user.consent.restrict(
            crate::rank::DimensionSet::of([DataDimension::Purchases]),
            false,
        );
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        Complements(ComplementParams::default())
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        assert_eq!(slate.score.to_vec(), vec![0.0, 0.0, 0.0]);
    }
}

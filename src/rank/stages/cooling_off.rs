//! Cooling-off (stage 2 of the avoidance chain): after a purchase, showing the same item at a
//! lower price, or rivals of it, invites regret ("did I buy wrong?"). For the category's
//! purchase cycle tactful therefore shows no price drops of the item just bought and no
//! substitutes (other items of its category), as a hard rule or a strong penalty per policy.
//!
//! Purchase cycles are per category, in the policy: long for durables (phones, appliances),
//! short or none for consumables. Category ids are the platform's own, so none is assumed:
//! unlisted categories get `default_days` (0: no substitute rule). The price-drop rule needs
//! no configuration and applies to every purchase.
//!
//! A cycle fitted from a log carries its *support*, the number of buyers behind it. A cycle
//! backed by fewer than `full_support` buyers is evidence too thin for a hard filter: its
//! substitutes get a fading penalty scaled by `support / full_support` instead, whatever the
//! mode, so one or two buyers' habits cannot hide a whole category. A cycle the platform sets
//! by hand (no `support`) is taken at full strength.
//!
//! Uses the user's purchases, so it runs only with consent for purchase data.

use serde::Deserialize;

use ndarray::Array1;

use crate::rank::stage::{Deadline, Interrupted, Slate, Stage};
use crate::rank::types::{Candidate, Component, DataDimension, DropRule};
use crate::rank::user::{Purchase, UserView};
use crate::time::DAY_MS;

/// Purchases are kept a year: no window may be longer.
pub const MAX_DAYS: f64 = 365.0;

/// How substitutes are kept back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Removed for the whole window.
    Hard,
    /// Lowered by `penalty`, fading over the window: a very strong match can still show.
    Penalty,
}

/// One category's purchase cycle.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cycle {
    pub category_id: u64,
    /// Days after a purchase during which substitutes are kept back.
    pub days: f64,
    /// Buyers behind a fitted cycle (`tactful fit` writes it); absent when the platform sets
    /// the cycle itself, which then counts as fully supported.
    #[serde(default)]
    pub support: Option<u32>,
}

impl Cycle {
    /// How far the evidence carries the cycle: 1 at `full_support` buyers or more (or when
    /// the platform set it), otherwise `support / full_support`.
    pub fn strength(&self, full_support: u32) -> f32 {
        match self.support {
            Some(n) if n < full_support => n as f32 / full_support as f32,
            _ => 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoolingOffParams {
    pub enabled: bool,
    /// Hard by default: a substitute shown days after a purchase is the regret trigger the
    /// product exists to avoid.
    pub mode: Mode,
    /// In penalty mode, the penalty right after the purchase (fading to 0 over the window).
    /// 0.8 sinks a substitute below nearly everything.
    pub penalty: f32,
    /// Days during which the item just bought is not shown at a lower price: 30, the common
    /// length of retailers' price-protection promises.
    pub price_drop_days: f64,
    /// The window for categories without a cycle of their own: 0, because only the platform
    /// knows which of its categories are durables.
    pub default_days: f64,
    pub cycles: Vec<Cycle>,
    /// Buyers a fitted cycle needs before it may act as a hard filter: 10, chosen a priori
    /// (a fit calls a category durable from 2 buyers; 10 is where one household's habit no
    /// longer decides). Below it the substitutes get `penalty × support / full_support`,
    /// fading over the window.
    pub full_support: u32,
}

impl Default for CoolingOffParams {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: Mode::Hard,
            penalty: 0.8,
            price_drop_days: 30.0,
            default_days: 0.0,
            cycles: Vec::new(),
            full_support: 10,
        }
    }
}

impl CoolingOffParams {
    /// The cooling-off window of a category, in milliseconds.
    pub fn window_ms(&self, category_id: u64) -> i64 {
        self.window(category_id).0
    }

    /// The cooling-off window of a category in milliseconds, with the strength of the
    /// evidence behind it (1 for `default_days` and hand-set cycles).
    pub fn window(&self, category_id: u64) -> (i64, f32) {
        let (days, strength) = self
            .cycles
            .iter()
            .find(|c| c.category_id == category_id)
            .map_or((self.default_days, 1.0), |c| {
                (c.days, c.strength(self.full_support))
            });
        ((days * DAY_MS as f64) as i64, strength)
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        let days_ok = |d: f64| d.is_finite() && (0.0..=MAX_DAYS).contains(&d);
        for (field, d) in [
            ("cooling_off.price_drop_days", self.price_drop_days),
            ("cooling_off.default_days", self.default_days),
        ] {
            if !days_ok(d) {
                return Err((field.into(), format!("must be from 0 to {MAX_DAYS}")));
            }
        }
        for (i, c) in self.cycles.iter().enumerate() {
            if c.category_id == 0 {
                return Err((
                    format!("cooling_off.cycles[{i}].category_id"),
                    "must not be 0 (unknown)".into(),
                ));
            }
            if !days_ok(c.days) {
                return Err((
                    format!("cooling_off.cycles[{i}].days"),
                    format!("must be from 0 to {MAX_DAYS}"),
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.full_support) {
            return Err((
                "cooling_off.full_support".into(),
                "must be from 1 to 1000000 buyers".into(),
            ));
        }
        if !(self.penalty.is_finite() && (0.0..=10.0).contains(&self.penalty)) {
            return Err((
                "cooling_off.penalty".into(),
                "must be a number from 0 to 10".into(),
            ));
        }
        Ok(())
    }

    /// The purchase that makes `c` a price drop (the same item, cheaper, within the
    /// price-drop window), if any.
    pub fn price_drop<'u>(
        &self,
        c: &Candidate,
        user: &'u UserView,
        now: i64,
    ) -> Option<&'u Purchase> {
        let window = (self.price_drop_days * DAY_MS as f64) as i64;
        user.purchases
            .iter()
            .rev()
            .find(|p| p.item_id == c.item_id && c.price < p.price && now - p.at_ms < window)
    }

    /// The latest purchase that makes `c` a substitute (another item of its category within
    /// the category's window).
    pub fn substitute_of<'u>(
        &self,
        c: &Candidate,
        user: &'u UserView,
        now: i64,
    ) -> Option<Substitute<'u>> {
        if c.category_id == 0 {
            return None;
        }
        let (window, strength) = self.window(c.category_id);
        if window <= 0 {
            return None;
        }
        user.purchases
            .iter()
            .rev()
            .find(|p| p.category_id == c.category_id && now - p.at_ms < window)
            .map(|p| Substitute {
                purchase: p,
                left: 1.0 - (now - p.at_ms).max(0) as f32 / window as f32,
                strength,
            })
    }

    /// What happens to a substitute: dropped when the mode is hard and the cycle is fully
    /// supported, otherwise the penalty (≤ 0), fading over the window and scaled by the
    /// evidence.
    pub fn substitute_penalty(&self, s: &Substitute<'_>) -> Option<f32> {
        match self.mode {
            Mode::Hard if s.strength >= 1.0 => None,
            _ => Some(-self.penalty * s.strength * s.left),
        }
    }
}

/// A candidate that is a substitute of something the user bought.
#[derive(Debug, Clone, Copy)]
pub struct Substitute<'u> {
    pub purchase: &'u Purchase,
    /// The share of the window still to run, in (0, 1].
    pub left: f32,
    /// The evidence behind the category's cycle, in (0, 1] (see [`Cycle::strength`]).
    pub strength: f32,
}

pub struct CoolingOff(pub CoolingOffParams);

impl Stage for CoolingOff {
    fn name(&self) -> &'static str {
        "cooling_off"
    }

    fn apply(&self, slate: &mut Slate<'_>, _: &Deadline) -> Result<(), Interrupted> {
        let (input, user) = (slate.input, slate.user);
        if user.purchases.is_empty() || !user.consent.allows(DataDimension::Purchases) {
            return Ok(());
        }
        let now = input.now_ms;
        let mut penalty = Array1::<f32>::zeros(input.candidates.len());
        for (i, c) in input.candidates.iter().enumerate() {
            if self.0.price_drop(c, user, now).is_some() {
                slate.drop_candidate(i, DropRule::CoolingOff);
            } else if let Some(sub) = self.0.substitute_of(c, user, now) {
                match self.0.substitute_penalty(&sub) {
                    None => slate.drop_candidate(i, DropRule::CoolingOff),
                    Some(p) => penalty[i] = p,
                }
            }
        }
        slate.add_component(Component::CoolingOff, penalty);
        Ok(())
    }
}

/// A cooling-off window in force, for the user's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub item_id: u64,
    pub category_id: u64,
    pub title: String,
    pub bought_at_ms: i64,
    /// Until when other items of the category are kept back; `bought_at_ms` when the
    /// category has no cycle.
    pub substitutes_until_ms: i64,
    /// Until when the item is not shown at a lower price.
    pub price_drops_until_ms: i64,
}

/// The windows still in force at `now_ms` under these settings, latest purchase first.
pub fn windows(p: &CoolingOffParams, user: &UserView, now_ms: i64) -> Vec<Window> {
    if !p.enabled || !user.consent.allows(DataDimension::Purchases) {
        return Vec::new();
    }
    user.purchases
        .iter()
        .rev()
        .map(|b| Window {
            item_id: b.item_id,
            category_id: b.category_id,
            title: b.title.clone(),
            bought_at_ms: b.at_ms,
            substitutes_until_ms: b.at_ms
                + if b.category_id == 0 {
                    0
                } else {
                    p.window_ms(b.category_id)
                },
            price_drops_until_ms: b.at_ms + (p.price_drop_days * DAY_MS as f64) as i64,
        })
        .filter(|w| w.substitutes_until_ms.max(w.price_drops_until_ms) > now_ms)
        .collect()
}

/// Plain words for a candidate removed by cooling-off.
pub fn detail(c: &Candidate, user: &UserView) -> String {
    match user.purchases.iter().rev().find(|p| p.item_id == c.item_id) {
        Some(p) => format!(
            "the user bought item {} at {} recently; this offer is cheaper",
            p.item_id, p.price
        ),
        None => format!(
            "the user bought an item of category {} recently: this is a substitute",
            c.category_id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::kernel::Parallelism;
    use crate::rank::types::{Consent, DimensionSet, RankInput};

    const DAY: i64 = crate::time::DAY_MS;
    const PHONES: u64 = 12;
    const MILK: u64 = 30;

    fn candidate(item_id: u64, category_id: u64, price: f32) -> Candidate {
        Candidate {
            item_id,
            category_id,
            price,
            ..Default::default()
        }
    }

    fn user_who_bought_a_phone_and_milk(consent: Consent) -> UserView {
        let mut user = UserView::unknown(consent);
        user.purchases = vec![
            Purchase {
                item_id: 1,
                category_id: PHONES,
                price: 999.0,
                ..Default::default()
            },
            Purchase {
                item_id: 50,
                category_id: MILK,
                price: 2.0,
                ..Default::default()
            },
        ];
        user
    }

    fn params(mode: Mode) -> CoolingOffParams {
        CoolingOffParams {
            mode,
            cycles: vec![Cycle {
                category_id: PHONES,
                days: 14.0,
                support: None,
            }],
            ..Default::default()
        }
    }

    fn run(
        params: CoolingOffParams,
        day: i64,
        consent: Consent,
    ) -> (Vec<Option<DropRule>>, Vec<f32>) {
        let input = RankInput {
            candidates: vec![
                candidate(1, PHONES, 899.0), // the phone just bought, cheaper
                candidate(2, PHONES, 700.0), // a rival phone
                candidate(3, 13, 20.0),      // a case
                candidate(50, MILK, 1.5),    // the milk, cheaper
                candidate(51, MILK, 2.0),    // other milk
            ],
            now_ms: day * DAY,
            ..Default::default()
        };
        let user = user_who_bought_a_phone_and_milk(consent);
        let mut slate = Slate::new(&input, &user, Parallelism::SEQUENTIAL);
        CoolingOff(params)
            .apply(&mut slate, &Deadline::none())
            .unwrap();
        (slate.dropped, slate.score.to_vec())
    }

    #[test]
    fn no_price_drops_and_no_substitutes_within_the_cycle() {
        let c = Some(DropRule::CoolingOff);
        let (dropped, _) = run(params(Mode::Hard), 3, Consent::privacy_default());
        // Milk has no cycle: other milk stays, but the same milk cheaper is a price drop.
        assert_eq!(dropped, vec![c, c, None, c, None]);
        let (dropped, _) = run(params(Mode::Hard), 20, Consent::privacy_default());
        assert_eq!(
            dropped,
            vec![c, None, None, c, None],
            "phones return after 14 days"
        );
        let (dropped, _) = run(params(Mode::Hard), 31, Consent::privacy_default());
        assert_eq!(
            dropped,
            vec![None; 5],
            "price protection ends after 30 days"
        );
    }

    #[test]
    fn penalty_mode_lowers_substitutes_fading_over_the_window() {
        let (dropped, score) = run(params(Mode::Penalty), 7, Consent::privacy_default());
        assert_eq!(dropped[1], None);
        assert!((score[1] + 0.4).abs() < 1e-4, "{score:?}");
        assert_eq!(
            dropped[0],
            Some(DropRule::CoolingOff),
            "price drops stay hard"
        );
    }

    #[test]
    fn a_thinly_supported_cycle_fades_instead_of_filtering() {
        let mut thin = params(Mode::Hard);
        thin.cycles[0].support = Some(2);
        let (dropped, score) = run(thin.clone(), 7, Consent::privacy_default());
        assert_eq!(
            dropped[1], None,
            "2 buyers of 10 do not hide the rival phone"
        );
        // 0.8 × (2 / 10) × (7 days of 14 left).
        assert!((score[1] + 0.08).abs() < 1e-4, "{score:?}");
        assert_eq!(
            dropped[0],
            Some(DropRule::CoolingOff),
            "price drops need no cycle and stay hard"
        );
        let (_, later) = run(thin.clone(), 11, Consent::privacy_default());
        assert!(later[1] > score[1] && later[1] < 0.0, "fades: {later:?}");

        thin.cycles[0].support = Some(10);
        let (dropped, _) = run(thin.clone(), 7, Consent::privacy_default());
        assert_eq!(
            dropped[1],
            Some(DropRule::CoolingOff),
            "full support is hard"
        );
        thin.cycles[0].support = Some(5);
        thin.full_support = 5;
        let (dropped, _) = run(thin, 7, Consent::privacy_default());
        assert_eq!(
            dropped[1],
            Some(DropRule::CoolingOff),
            "the threshold is a setting"
        );
    }

    #[test]
    fn full_support_is_validated() {
        let mut p = params(Mode::Hard);
        p.full_support = 0;
        assert_eq!(p.validate().unwrap_err().0, "cooling_off.full_support");
    }

    #[test]
    fn without_purchase_consent_purchases_are_not_used() {
        let consent = Consent::privacy_default()
            .restrict(DimensionSet::of([DataDimension::Purchases]), false);
        assert_eq!(run(params(Mode::Hard), 3, consent).0, vec![None; 5]);
    }
}

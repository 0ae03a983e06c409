//! Policies: named, versioned sets of stage knobs, turned into [`Pipeline`]s. The built-in
//! `default` is the full tactful policy; `identity` is the baseline every benchmark and
//! evaluation compares against (upstream order, validation only). Configured policies are
//! validated here, with messages that name the offending field.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::kernel::Parallelism;
use super::pipeline::Pipeline;
use super::stage::Stage;
use super::stages::{
    complements::{ComplementParams, Complements},
    consent::{ConsentDiscount, ConsentGate, ConsentParams, TooSoon},
    context::{Context, ContextParams},
    cooling_off::{CoolingOff, CoolingOffParams},
    explain::{Explain, drop_detail},
    fatigue::{Fatigue, FatigueParams},
    feedback::{ExplicitFeedback, FewerLikeThis, FewerLikeThisParams},
    frequency_cap::{FrequencyCap, FrequencyCapParams},
    hard_rules::HardRules,
    interests::{InterestParams, Interests},
    lifecycle::{Lifecycle, LifecycleParams},
    long_tail::{LongTail, LongTailParams},
    order::Upstream,
    overload::{Overload, OverloadParams},
    relevance::Relevance,
    select::{
        Select, calibration::CalibrationParams, exploration::ExplorationParams,
        list_caps::ListCapParams, mmr::DiversityParams,
    },
};
use super::types::Method;

pub const DEFAULT_POLICY: &str = "default";
pub const IDENTITY_POLICY: &str = "identity";

/// How the final order is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Greedy diversity by maximal marginal relevance: similarity to the closest item placed.
    Mmr,
    /// Greedy diversity by a determinantal point process: similarity to all items placed.
    Dpp,
    /// By score alone (list caps, exploration slots and calibration still apply; repeats do
    /// not decay).
    Score,
    /// The upstream order: no rule but validation (the identity baseline).
    Upstream,
}

impl Selection {
    /// The selection method, `None` for the upstream order.
    pub fn method(self) -> Option<Method> {
        match self {
            Self::Mmr => Some(Method::Mmr),
            Self::Dpp => Some(Method::Dpp),
            Self::Score => Some(Method::Score),
            Self::Upstream => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Reported as `name@version` in every response; bump it on every change.
    pub version: u32,
    /// Explicit feedback and consent remove candidates. Only the identity baseline turns this
    /// off.
    pub hard_rules: bool,
    pub consent: ConsentParams,
    /// How often one item may be shown to the user (`frequency_cap.rs`).
    #[serde(rename = "caps")]
    pub frequency_cap: FrequencyCapParams,
    pub cooling_off: CoolingOffParams,
    pub overload: OverloadParams,
    pub lifecycle: LifecycleParams,
    pub fatigue: FatigueParams,
    pub fewer_like_this: FewerLikeThisParams,
    pub complements: ComplementParams,
    pub interests: InterestParams,
    pub context: ContextParams,
    pub long_tail: LongTailParams,
    pub selection: Selection,
    pub diversity: DiversityParams,
    /// How many of one category, brand or shop one list may hold (`select/list_caps.rs`).
    #[serde(rename = "hard_caps")]
    pub list_caps: ListCapParams,
    pub exploration: ExplorationParams,
    pub calibration: CalibrationParams,
}

impl Default for Policy {
    /// The full tactful policy.
    fn default() -> Self {
        Self {
            version: 4,
            hard_rules: true,
            consent: ConsentParams::default(),
            frequency_cap: FrequencyCapParams::default(),
            cooling_off: CoolingOffParams::default(),
            overload: OverloadParams::default(),
            lifecycle: LifecycleParams::default(),
            fatigue: FatigueParams::default(),
            fewer_like_this: FewerLikeThisParams::default(),
            complements: ComplementParams::default(),
            interests: InterestParams::default(),
            context: ContextParams::default(),
            long_tail: LongTailParams::default(),
            selection: Selection::Mmr,
            diversity: DiversityParams::default(),
            list_caps: ListCapParams::default(),
            exploration: ExplorationParams::default(),
            calibration: CalibrationParams::default(),
        }
    }
}

/// A policy setting that cannot work, with the dotted path of the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

impl Policy {
    /// Upstream order, no rules: the baseline.
    pub fn identity() -> Self {
        let mut p = Self {
            // The baseline's own version: it changes only when the baseline does.
            version: 2,
            hard_rules: false,
            selection: Selection::Upstream,
            ..Default::default()
        };
        p.frequency_cap.enabled = false;
        p.cooling_off.enabled = false;
        p.overload.enabled = false;
        p.lifecycle.enabled = false;
        p.fatigue.enabled = false;
        p.fewer_like_this.enabled = false;
        p.complements.enabled = false;
        p.interests.enabled = false;
        p
    }

    pub fn validate(&self, name: &str) -> Result<(), PolicyError> {
        let err = |field: &str, message: &str| {
            Err(PolicyError {
                field: format!("policies.{name}.{field}"),
                message: message.to_owned(),
            })
        };
        let weight = |v: f32| v.is_finite() && (0.0..=10.0).contains(&v);
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        for (field, v) in [
            ("fatigue.weight", self.fatigue.weight),
            ("fatigue.group_weight", self.fatigue.group_weight),
            ("fewer_like_this.weight", self.fewer_like_this.weight),
            ("diversity.weight", self.diversity.weight),
            ("consent.mixed_discount", self.consent.mixed_discount),
            ("consent.too_soon_weight", self.consent.too_soon_weight),
            ("complements.weight", self.complements.weight),
            ("interests.weight", self.interests.weight),
            ("overload.diversity_factor", self.overload.diversity_factor),
            ("long_tail.weight", self.long_tail.weight),
        ] {
            if !weight(v) {
                return err(field, "must be a number from 0 to 10");
            }
        }
        for (field, v) in [
            ("fatigue.saturation", self.fatigue.saturation),
            ("fatigue.group_saturation", self.fatigue.group_saturation),
            ("overload.min_impressions", self.overload.min_impressions),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return err(field, "must be a number above 0");
            }
        }
        for (field, v) in [
            ("diversity.same_category", self.diversity.same_category),
            ("diversity.same_brand", self.diversity.same_brand),
            ("diversity.same_shop", self.diversity.same_shop),
            ("diversity.repeat_decay", self.diversity.repeat_decay),
            ("diversity.repeat_floor", self.diversity.repeat_floor),
            (
                "overload.max_engagement_rate",
                self.overload.max_engagement_rate,
            ),
        ] {
            if !unit(v) {
                return err(field, "must be a number from 0 to 1");
            }
        }
        if !(unit(self.overload.k_factor) && self.overload.k_factor > 0.0) {
            return err("overload.k_factor", "must be above 0 and at most 1");
        }
        if !(1..=10_000).contains(&self.diversity.depth) {
            return err("diversity.depth", "must be from 1 to 10000");
        }
        if !(2..=1024).contains(&self.diversity.window) {
            return err("diversity.window", "must be from 2 to 1024");
        }
        let hours = self.consent.too_soon_hours;
        if !(hours.is_finite() && (0.0..=24.0 * 365.0).contains(&hours)) {
            return err("consent.too_soon_hours", "must be from 0 to 8760");
        }
        for check in [
            self.frequency_cap.validate(),
            self.fatigue
                .learned
                .as_ref()
                .map_or(Ok(()), |l| l.validate()),
            self.cooling_off.validate(),
            self.complements.validate(),
            self.lifecycle.validate(),
            self.context.validate(),
            self.list_caps.validate(),
            self.exploration.validate(),
            self.calibration.validate(),
        ] {
            if let Err((field, message)) = check {
                return err(&field, &message);
            }
        }
        Ok(())
    }

    /// The stages this policy runs, in order (see `stages/mod.rs` for why this order), and
    /// those of its fail-open answer: the hard rules, when the policy has them, then the
    /// upstream order.
    pub fn pipeline(&self, name: &str, parallelism: Parallelism) -> Pipeline {
        let mut sensitive = self.consent.sensitive_categories.clone();
        sensitive.sort_unstable();
        sensitive.dedup();
        let mut stages: Vec<Box<dyn Stage>> = Vec::new();
        if self.hard_rules {
            stages.push(Box::new(ExplicitFeedback));
            stages.push(Box::new(ConsentGate {
                sensitive_categories: sensitive.clone(),
            }));
        }
        if self.frequency_cap.enabled {
            stages.push(Box::new(FrequencyCap(self.frequency_cap.clone())));
        }
        if self.cooling_off.enabled {
            stages.push(Box::new(CoolingOff(self.cooling_off.clone())));
        }
        if self.overload.enabled {
            stages.push(Box::new(Overload(self.overload.clone())));
        }
        if self.lifecycle.enabled {
            stages.push(Box::new(Lifecycle(self.lifecycle.clone())));
        }
        if self.selection != Selection::Upstream {
            stages.push(Box::new(Relevance));
            if self.hard_rules {
                stages.push(Box::new(ConsentDiscount(self.consent.mixed_discount)));
                stages.push(Box::new(TooSoon::new(&self.consent)));
            }
        }
        if self.fatigue.enabled {
            stages.push(Box::new(Fatigue(self.fatigue.clone())));
        }
        if self.fewer_like_this.enabled {
            stages.push(Box::new(FewerLikeThis(self.fewer_like_this.clone())));
        }
        if self.complements.enabled {
            stages.push(Box::new(Complements(self.complements.clone())));
        }
        if self.interests.enabled {
            stages.push(Box::new(Interests(self.interests.clone())));
        }
        if !self.context.rules.is_empty() {
            stages.push(Box::new(Context::new(&self.context)));
        }
        match self.selection.method() {
            Some(method) => {
                // A request may raise the long-tail weight from 0, so the stage is always
                // there; it returns at once when its weight is 0.
                stages.push(Box::new(LongTail(self.long_tail.clone())));
                stages.push(Box::new(Select {
                    method,
                    diversity: self.diversity.clone(),
                    list_caps: self.list_caps.clone(),
                    exploration: self.exploration.clone(),
                    calibration: self.calibration.clone(),
                }));
                stages.push(Box::new(Explain));
            }
            None => stages.push(Box::new(Upstream)),
        }
        let mut fallback: Vec<Box<dyn Stage>> = Vec::new();
        if self.hard_rules {
            // The user's own words and consent hold even in a fail-open answer.
            fallback.push(Box::new(HardRules {
                sensitive_categories: sensitive,
            }));
        }
        fallback.push(Box::new(Upstream));
        Pipeline::new(
            format!("{name}@{}", self.version),
            stages,
            fallback,
            self.lifecycle.thresholds(),
            parallelism,
        )
        .with_drop_detail(drop_detail)
        .bounded()
    }
}

/// The named pipelines a server can run.
pub struct Policies {
    pipelines: BTreeMap<String, Arc<Pipeline>>,
    /// The settings each configured or built-in pipeline was built from.
    settings: BTreeMap<String, Policy>,
}

impl Policies {
    /// The built-ins plus configured policies. A configured `default` replaces the built-in
    /// one (that is how a platform tunes tactful); `identity` cannot be replaced, because every
    /// comparison depends on it meaning "upstream order".
    pub fn build(
        configured: &BTreeMap<String, Policy>,
        parallelism: Parallelism,
    ) -> Result<Self, PolicyError> {
        let mut all = BTreeMap::from([
            (DEFAULT_POLICY.to_owned(), Policy::default()),
            (IDENTITY_POLICY.to_owned(), Policy::identity()),
        ]);
        for (name, policy) in configured {
            if name == IDENTITY_POLICY {
                return Err(PolicyError {
                    field: format!("policies.{name}"),
                    message: "the identity baseline is built in and cannot be redefined".into(),
                });
            }
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(PolicyError {
                    field: format!("policies.{name}"),
                    message: "a policy name uses only letters, digits, '_' and '-'".into(),
                });
            }
            policy.validate(name)?;
            all.insert(name.clone(), policy.clone());
        }
        let pipelines = all
            .iter()
            .map(|(name, policy)| {
                let pipeline = Arc::new(policy.pipeline(name, parallelism));
                (name.clone(), pipeline)
            })
            .collect();
        Ok(Self {
            pipelines,
            settings: all,
        })
    }

    /// The settings of a built-in or configured policy (not of one inserted as a pipeline);
    /// the empty name means `default`.
    pub fn settings(&self, name: &str) -> Option<&Policy> {
        let name = if name.is_empty() {
            DEFAULT_POLICY
        } else {
            name
        };
        self.settings.get(name)
    }

    /// Registers a pipeline under `name`, e.g. one with custom stages when tactful is embedded
    /// as a library. The identity baseline cannot be replaced.
    pub fn insert(&mut self, name: &str, pipeline: Pipeline) -> Result<(), PolicyError> {
        if name == IDENTITY_POLICY {
            return Err(PolicyError {
                field: format!("policies.{name}"),
                message: "the identity baseline is built in and cannot be redefined".into(),
            });
        }
        self.pipelines.insert(name.to_owned(), Arc::new(pipeline));
        self.settings.remove(name);
        Ok(())
    }

    /// Looks a policy up; the empty name means `default`.
    pub fn get(&self, name: &str) -> Option<&Arc<Pipeline>> {
        let name = if name.is_empty() {
            DEFAULT_POLICY
        } else {
            name
        };
        self.pipelines.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pipelines.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_the_documented_stages() {
        let p = Policies::build(&BTreeMap::new(), Parallelism::SEQUENTIAL).unwrap();
        assert_eq!(
            p.get("").unwrap().stage_names(),
            vec![
                "explicit_feedback",
                "consent",
                "frequency_cap",
                "cooling_off",
                "overload",
                "lifecycle",
                "relevance",
                "consent_discount",
                "too_soon",
                "fatigue",
                "fewer_like_this",
                "complements",
                "interests",
                "long_tail",
                "mmr",
                "explain"
            ]
        );
        assert_eq!(p.get("identity").unwrap().stage_names(), vec!["upstream"]);
        assert_eq!(p.get("default").unwrap().version(), "default@4");
        assert!(p.get("nope").is_none());
    }

    #[test]
    fn configured_policies_are_validated_by_field() {
        let bad: Policy = toml::from_str("[fatigue]\nweight = -1.0").unwrap();
        let err = Policies::build(
            &BTreeMap::from([("soft".to_owned(), bad)]),
            Parallelism::SEQUENTIAL,
        )
        .err()
        .unwrap();
        assert_eq!(err.field, "policies.soft.fatigue.weight");

        for (toml, field) in [
            ("[diversity]\nrepeat_decay = 1.5", "diversity.repeat_decay"),
            ("[diversity]\nrepeat_floor = -0.1", "diversity.repeat_floor"),
            ("[diversity]\nrepeat_floor = nan", "diversity.repeat_floor"),
        ] {
            let bad: Policy = toml::from_str(toml).unwrap();
            let err = bad.validate("soft").unwrap_err();
            assert_eq!(err.field, format!("policies.soft.{field}"));
            assert_eq!(err.message, "must be a number from 0 to 1");
        }

        let err = Policies::build(
            &BTreeMap::from([("identity".to_owned(), Policy::default())]),
            Parallelism::SEQUENTIAL,
        )
        .err()
        .unwrap();
        assert_eq!(err.field, "policies.identity");
    }

    #[test]
    fn the_caps_keep_their_configuration_keys() {
        let p: Policy =
            toml::from_str("[caps]\nenabled = false\n[hard_caps]\ncategory = { max = 2 }\n")
                .unwrap();
        assert!(!p.frequency_cap.enabled);
        assert_eq!(p.list_caps.category.max, 2);
        assert!(toml::from_str::<Policy>("[frequency_cap]\nenabled = false").is_err());
        assert!(toml::from_str::<Policy>("[list_caps]\ncategory = { max = 2 }").is_err());
    }

    #[test]
    fn unknown_policy_keys_are_refused() {
        assert!(toml::from_str::<Policy>("[fatigue]\nwieght = 1.0").is_err());
        let p: Policy = toml::from_str("selection = \"score\"\nversion = 3").unwrap();
        assert_eq!(p.selection, Selection::Score);
        assert_eq!(p.fatigue, FatigueParams::default());
    }
}

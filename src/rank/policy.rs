//! Policies: named, versioned sets of stage knobs, turned into [`Pipeline`]s. The built-in
//! `default` is the full tactful policy; `identity` is the baseline every benchmark and
//! evaluation compares against (upstream order, validation only). Configured policies are
//! validated here, with messages that name the offending field.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::pipeline::{Parallelism, Pipeline, Stage};
use super::stages::{
    consent::ConsentGate,
    explain::Explain,
    fatigue::{Fatigue, FatigueParams},
    feedback::{ExplicitFeedback, FewerLikeThis, FewerLikeThisParams},
    mmr::{DiversityParams, Mmr},
    order::{ByScore, Upstream},
    relevance::Relevance,
};
use super::user::LifecycleThresholds;

pub const DEFAULT_POLICY: &str = "default";
pub const IDENTITY_POLICY: &str = "identity";

/// How the final order is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Greedy diversity (maximal marginal relevance).
    Mmr,
    /// By score alone.
    Score,
    /// The upstream order.
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Reported as `name@version` in every response; bump it on every change.
    pub version: u32,
    /// Explicit feedback and consent remove candidates. Only the identity baseline turns this
    /// off.
    pub hard_rules: bool,
    pub fatigue: FatigueParams,
    pub fewer_like_this: FewerLikeThisParams,
    pub selection: Selection,
    pub diversity: DiversityParams,
    pub lifecycle: LifecycleThresholds,
}

impl Default for Policy {
    /// The full tactful policy.
    fn default() -> Self {
        Self {
            version: 1,
            hard_rules: true,
            fatigue: FatigueParams::default(),
            fewer_like_this: FewerLikeThisParams::default(),
            selection: Selection::Mmr,
            diversity: DiversityParams::default(),
            lifecycle: LifecycleThresholds::default(),
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
        Self {
            hard_rules: false,
            fatigue: FatigueParams {
                enabled: false,
                ..Default::default()
            },
            fewer_like_this: FewerLikeThisParams {
                enabled: false,
                ..Default::default()
            },
            selection: Selection::Upstream,
            ..Default::default()
        }
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
        if !weight(self.fatigue.weight) {
            return err("fatigue.weight", "must be a number from 0 to 10");
        }
        if !(self.fatigue.saturation.is_finite() && self.fatigue.saturation > 0.0) {
            return err("fatigue.saturation", "must be a number above 0");
        }
        if !weight(self.fewer_like_this.weight) {
            return err("fewer_like_this.weight", "must be a number from 0 to 10");
        }
        if !weight(self.diversity.weight) {
            return err("diversity.weight", "must be a number from 0 to 10");
        }
        for (field, v) in [
            ("diversity.same_category", self.diversity.same_category),
            ("diversity.same_brand", self.diversity.same_brand),
            ("diversity.same_shop", self.diversity.same_shop),
        ] {
            if !unit(v) {
                return err(field, "must be a number from 0 to 1");
            }
        }
        let l = &self.lifecycle;
        if l.silent_after_days >= l.churned_after_days {
            return err(
                "lifecycle.silent_after_days",
                "must be below lifecycle.churned_after_days",
            );
        }
        Ok(())
    }

    /// The stages this policy runs, in order.
    pub fn pipeline(&self, name: &str, parallelism: Parallelism) -> Pipeline {
        let mut stages: Vec<Box<dyn Stage>> = Vec::new();
        if self.hard_rules {
            stages.push(Box::new(ExplicitFeedback));
            stages.push(Box::new(ConsentGate));
        }
        if self.selection != Selection::Upstream {
            stages.push(Box::new(Relevance));
        }
        if self.fatigue.enabled {
            stages.push(Box::new(Fatigue(self.fatigue.clone())));
        }
        if self.fewer_like_this.enabled {
            stages.push(Box::new(FewerLikeThis(self.fewer_like_this.clone())));
        }
        match self.selection {
            Selection::Mmr => stages.push(Box::new(Mmr(self.diversity.clone()))),
            Selection::Score => stages.push(Box::new(ByScore)),
            Selection::Upstream => stages.push(Box::new(Upstream)),
        }
        if self.selection != Selection::Upstream {
            stages.push(Box::new(Explain));
        }
        Pipeline::new(
            format!("{name}@{}", self.version),
            stages,
            self.hard_rules,
            self.lifecycle.clone(),
            parallelism,
        )
    }
}

/// The named pipelines a server can run.
pub struct Policies {
    pipelines: BTreeMap<String, Arc<Pipeline>>,
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
            .into_iter()
            .map(|(name, policy)| {
                let pipeline = Arc::new(policy.pipeline(&name, parallelism));
                (name, pipeline)
            })
            .collect();
        Ok(Self { pipelines })
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
                "relevance",
                "fatigue",
                "fewer_like_this",
                "mmr",
                "explain"
            ]
        );
        assert_eq!(p.get("identity").unwrap().stage_names(), vec!["upstream"]);
        assert_eq!(p.get("default").unwrap().version(), "default@1");
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

        let err = Policies::build(
            &BTreeMap::from([("identity".to_owned(), Policy::default())]),
            Parallelism::SEQUENTIAL,
        )
        .err()
        .unwrap();
        assert_eq!(err.field, "policies.identity");
    }

    #[test]
    fn unknown_policy_keys_are_refused() {
        assert!(toml::from_str::<Policy>("[fatigue]\nwieght = 1.0").is_err());
        let p: Policy = toml::from_str("selection = \"score\"\nversion = 3").unwrap();
        assert_eq!(p.selection, Selection::Score);
        assert_eq!(p.fatigue, FatigueParams::default());
    }
}

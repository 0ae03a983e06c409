//! The parts of a replay that do not depend on the policy under test: the fit of the fitting
//! part and each decision's candidates. Comparing many policies on one log and split (as
//! `tactful tune` does) computes them once with [`prepare`] and hands them to every
//! [`super::run`] through [`super::ReplayConfig::prepared`]; the generator and the fit are
//! most of a replay's time, the pipelines a few percent.
//!
//! They come from an ordinary replay ([`super::run_observed`], recording the candidates it
//! is given), so a run with them is the same replay as one without: same decisions, same
//! candidates, same fit (a test checks the reports are equal). A run checks that they were
//! prepared for its log, split, warm-up and generator, and refuses others.

use std::collections::HashMap;
use std::fmt;

use super::candidates::Proposal;
use super::fit::Fitted;
use super::{Log, ReplayConfig};

/// What [`prepare`] computed.
pub struct Prepared {
    pub fitted: Fitted,
    /// Per decision, by event index: the candidates.
    proposals: HashMap<usize, Vec<Proposal>>,
    /// What they were prepared for.
    made_for: String,
}

fn fingerprint(log: &Log, cfg: &ReplayConfig) -> String {
    format!(
        "{} ({} events, first {:?}, last {:?}), fit until {}, warm-up {}, {:?}",
        log.name,
        log.events.len(),
        log.events.first(),
        log.events.last(),
        cfg.fit_until_ms,
        cfg.warmup,
        cfg.generator
    )
}

/// Replays `log` once (identity against the policy `cfg` would fit) and keeps its fit and
/// candidates.
pub fn prepare(log: &Log, cfg: &ReplayConfig) -> Prepared {
    let cfg = ReplayConfig {
        prepared: None,
        progress: false,
        ..cfg.clone()
    };
    let mut proposals = HashMap::new();
    let report = super::run_observed(log, None, &cfg, &mut |i, p| {
        proposals.insert(i, p.to_vec());
    });
    Prepared {
        fitted: report.fitted,
        proposals,
        made_for: fingerprint(log, &cfg),
    }
}

impl Prepared {
    /// Panics unless these were prepared for this log and configuration.
    pub fn check(&self, log: &Log, cfg: &ReplayConfig) {
        let asked = fingerprint(log, cfg);
        assert_eq!(
            self.made_for, asked,
            "prepared replay parts used for another replay"
        );
    }

    /// The candidates of the decision at event `index` (empty if it is none).
    pub fn proposals(&self, index: usize) -> Vec<Proposal> {
        self.proposals.get(&index).cloned().unwrap_or_default()
    }

    /// How many decisions have candidates.
    pub fn decisions(&self) -> usize {
        self.proposals.len()
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("decisions", &self.proposals.len())
            .field("made_for", &self.made_for)
            .finish_non_exhaustive()
    }
}

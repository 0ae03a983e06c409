//! THE PURE CORE: types, user view, policies and the ranking pipeline. No tonic, prost or tokio
//! here, so everything is unit-tested and benchmarked without a server.
//!
//! A ranking: [`Policies`](policy::Policies) gives the [`Pipeline`](pipeline::Pipeline) for the
//! request's policy; the pipeline runs its stages (`stages/`) over a
//! [`Slate`](stage::Slate) built from the [`RankInput`](types::RankInput) and the user's
//! [`UserView`](user::UserView), under a [`Deadline`](stage::Deadline), and returns a
//! [`Ranking`](types::Ranking).
//!
//! Arrows: `policy` → `pipeline` (the driver) and `stages`; `pipeline` and `stages` →
//! `stage` (the contract) → `kernel` (vector maths), `types`, `user`. The driver names no
//! rule: the policy hands it the stages, including those of a fail-open answer.
//!
//! [`metrics`] measures a finished list (intra-list diversity, coverage, exposure Gini, long
//! tail, calibration): shared by benches, pictures and the offline replay, never used to rank.

pub mod kernel;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod stage;
pub mod stages;
pub mod types;
pub mod user;

pub use kernel::{MAX_EMBEDDING_VALUE, Parallelism};
pub use pipeline::Pipeline;
pub use policy::{Policies, Policy};
pub use stage::{Deadline, Interrupted, Limit, Slate, Stage};
pub use types::*;
pub use user::UserView;

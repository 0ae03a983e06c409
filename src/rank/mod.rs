//! THE PURE CORE: types, user view, policies and the ranking pipeline. No tonic, prost or tokio
//! here, so everything is unit-tested and benchmarked without a server.
//!
//! A ranking: [`Policies`](policy::Policies) gives the [`Pipeline`](pipeline::Pipeline) for the
//! request's policy; the pipeline runs its stages (`stages/`) over a
//! [`Slate`](pipeline::Slate) built from the [`RankInput`](types::RankInput) and the user's
//! [`UserView`](user::UserView), under a [`Deadline`](pipeline::Deadline), and returns a
//! [`Ranking`](types::Ranking).
//!
//! [`metrics`] measures a finished list (intra-list diversity, coverage, exposure Gini, long
//! tail, calibration): shared by benches, pictures and the offline replay, never used to rank.

pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod stages;
pub mod types;
pub mod user;

pub use pipeline::{Deadline, Interrupted, Limit, Parallelism, Pipeline, Slate, Stage};
pub use policy::{Policies, Policy};
pub use types::*;
pub use user::UserView;

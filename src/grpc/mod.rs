//! The thin gRPC edge: server wiring (health, reflection, limits, drain), and one handler per
//! service that only validates, converts, calls the engine, the store or the catalog, and
//! converts back. Each handler is built (by [`crate::app`]) with exactly the parts it uses:
//! Ranker the engine and the catalog, Events the store and the catalog, Profile the store,
//! the audit log and the engine (for the policy in force), Catalog the catalog. Errors become
//! `tonic::Status` in exactly one place (`error.rs`).
//!
//! Depends on `engine`, `state`, `catalog`, `audit`, `metrics` and `readiness`; nothing below
//! depends on it.

pub mod auth;
pub mod catalog;
pub mod connections;
pub mod convert;
pub mod error;
pub mod events;
pub mod in_place;
pub mod observe;
pub mod profile;
pub mod ranker;
pub mod server;
pub mod timeout;
pub mod wire;

pub use error::ApiError;

/// Names the call's user in its `rpc` span as a pseudonym (never the id), so that every log
/// line of the call says whose it was. Costs nothing when the span is not recorded.
pub(crate) fn note_user(pseudonyms: &crate::pseudonym::Pseudonyms, user_id: &str) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("user", pseudonyms.of(user_id).as_str());
    }
}
pub use server::{ServeError, Services, check_tls, serve};

//! The thin gRPC edge: server wiring (health, reflection, limits, drain), and one handler per
//! service that only validates, converts, calls the engine or the store, and converts back.
//! Errors become `tonic::Status` in exactly one place (`error.rs`).

pub mod auth;
pub mod catalog;
pub mod convert;
pub mod error;
pub mod events;
pub mod observe;
pub mod profile;
pub mod ranker;
pub mod server;
pub mod timeout;

pub use error::ApiError;

/// Names the call's user in its `rpc` span as a pseudonym (never the id), so that every log
/// line of the call says whose it was. Costs nothing when the span is not recorded.
pub(crate) fn note_user(engine: &crate::engine::Engine, user_id: &str) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("user", engine.audit().pseudonyms().of(user_id).as_str());
    }
}
pub use server::{ServeError, check_tls, serve, serve_with};

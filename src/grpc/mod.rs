//! The thin gRPC edge: server wiring (health, reflection, limits, drain), and one handler per
//! service that only validates, converts, calls the engine or the store, and converts back.
//! Errors become `tonic::Status` in exactly one place (`error.rs`).

pub mod auth;
pub mod convert;
pub mod error;
pub mod events;
pub mod observe;
pub mod profile;
pub mod ranker;
pub mod server;
pub mod timeout;

pub use error::ApiError;
pub use server::{ServeError, check_tls, serve, serve_with};

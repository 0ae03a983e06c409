//! The ONE place where failures become gRPC statuses. Handlers return [`ApiError`]; nothing
//! else builds a `tonic::Status`.

use tonic::Status;

use crate::catalog::CatalogError;
use crate::engine::{Degraded, RankError};
use crate::state::{RecordError, StateError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Bad input: the message starts with the field at fault.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error(transparent)]
    Rank(#[from] RankError),
    /// The state store cannot take or serve this now (its disk or Redis failed): retry.
    #[error(transparent)]
    State(#[from] StateError),
    /// A catalog change refused whole (the item limit).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<RecordError> for ApiError {
    /// A change the store refused: bad input names its field; an unavailable store is
    /// retryable.
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Invalid(e) => Self::invalid(e.field, e.message),
            RecordError::Unavailable(e) => e.into(),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            ApiError::Rank(r) => match r {
                RankError::UnknownPolicy { .. } => Status::invalid_argument(format!("policy: {r}")),
                RankError::DeadlineExceeded(Degraded::Budget) => Status::deadline_exceeded(
                    "ranking did not finish within the server's budget (strict request)",
                ),
                RankError::DeadlineExceeded(_) => Status::deadline_exceeded(
                    "ranking did not finish before the caller's deadline (strict request)",
                ),
                RankError::Overloaded => Status::resource_exhausted(
                    "too many rankings in flight (strict request); retry with backoff",
                ),
                RankError::Internal(_) => Status::internal(r.to_string()),
                RankError::State(_) => Status::unavailable(format!("{r} (strict request)")),
            },
            // A write refused here may still have reached storage (the master of a Redis
            // Cluster whose replicas did not confirm in time, say), so the answer does not say
            // nothing was written: only that it was not acknowledged. Explicit words are
            // idempotent, so a retry is safe.
            ApiError::State(s) => Status::unavailable(format!("{s}; not acknowledged, retry")),
            ApiError::Catalog(c) => match c {
                CatalogError::Full { .. } => {
                    Status::resource_exhausted(format!("{c}; nothing of this stream was applied"))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_error_has_its_code() {
        let cases = [
            (ApiError::invalid("k", "too big"), Code::InvalidArgument),
            (
                RankError::UnknownPolicy {
                    name: "x".into(),
                    known: "default".into(),
                }
                .into(),
                Code::InvalidArgument,
            ),
            (
                RankError::DeadlineExceeded(Degraded::Deadline).into(),
                Code::DeadlineExceeded,
            ),
            (RankError::Overloaded.into(), Code::ResourceExhausted),
            (RankError::Internal("boom".into()).into(), Code::Internal),
            (
                CatalogError::Full {
                    held: 3,
                    after: 4,
                    max: 3,
                }
                .into(),
                Code::ResourceExhausted,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(Status::from(e).code(), code);
        }
        assert_eq!(
            Status::from(ApiError::invalid("k", "too big")).message(),
            "k: too big"
        );
    }
}

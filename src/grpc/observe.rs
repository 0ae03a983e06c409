//! A tower layer around every gRPC call that counts it by method and outcome and times it
//! (`tactful_grpc_requests_total`, `tactful_grpc_request_duration_seconds`), and runs it in an
//! `rpc` span with its request id and trace id (see [`crate::telemetry`]); the request id is
//! echoed in the response's `x-request-id` header.
//!
//! The outcome is read from the response: a fail-open Rank answer carries its
//! [`Degraded`](crate::engine::Degraded) reason in the response's extensions (the ranker puts it
//! there), an error carries `grpc-status` in its headers (tonic answers errors trailers-only),
//! anything else is `ok`. A call dropped before it answered (the client went away) counts as
//! `cancelled`; one past the caller's `grpc-timeout` is answered `deadline_exceeded` by
//! [`super::wire`] before tonic's own timer would drop it.
//!
//! The `method` label is the gRPC path without its slash, but only for methods a service here
//! serves (read from the descriptor sets): any other path is `unknown`, so that clients cannot
//! grow the label set.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::engine::Degraded;
use crate::metrics::Metrics;
use crate::telemetry;

/// The request id header, read and echoed.
const REQUEST_ID: &str = "x-request-id";

/// The methods served (the tactful services, health and both reflection versions) that
/// `keep` accepts, as `package.Service/Method`.
pub(super) fn methods_where(
    keep: impl Fn(&prost_types::MethodDescriptorProto) -> bool,
) -> HashSet<String> {
    let sets = [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                for method in service.method.iter().filter(|m| keep(m)) {
                    methods.insert(format!("{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    methods
}

/// Every method served.
fn served_methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| methods_where(|_| true))
}

/// The `method` label of a request path.
pub fn method_label(path: &str) -> &'static str {
    let method = path.strip_prefix('/').unwrap_or(path);
    served_methods()
        .get(method)
        .map_or("unknown", String::as_str)
}

/// A gRPC code as a label value (snake case, as in the gRPC spec's names).
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

fn outcome<B>(response: &http::Response<B>) -> &'static str {
    if response.extensions().get::<Degraded>().is_some() {
        return "degraded";
    }
    match response.headers().get("grpc-status") {
        Some(status) => code_label(Code::from_bytes(status.as_bytes())),
        None => "ok",
    }
}

#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        // Decoded once here, not on the first call.
        served_methods();
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Records a call when it ends; a call dropped unanswered records as `cancelled`.
struct Call {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    outcome: Option<&'static str>,
}

impl Call {
    fn answered(&mut self, outcome: &'static str) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or("cancelled");
        self.metrics
            .call(self.method, outcome, self.started.elapsed());
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Observe<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let mut call = Call {
            metrics: self.metrics.clone(),
            method,
            started: Instant::now(),
            outcome: None,
        };
        let headers = request.headers();
        let request_id = headers
            .get(REQUEST_ID)
            .and_then(|v| telemetry::accept_request_id(v.as_bytes()))
            .map_or_else(telemetry::new_request_id, str::to_owned);
        let span = tracing::info_span!(
            "rpc",
            method,
            request_id = %request_id,
            trace_id = tracing::field::Empty,
            user = tracing::field::Empty,
        );
        if let Some(trace) = headers
            .get("traceparent")
            .and_then(|v| telemetry::trace_id(v.as_bytes()))
        {
            span.record("trace_id", trace);
        }
        #[cfg(feature = "otlp")]
        telemetry::otlp::set_parent(&span, headers);
        // The service that was polled ready serves this call; the clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut result = inner.call(request).instrument(span).await;
            call.answered(match &result {
                Ok(response) => outcome(response),
                Err(_) => "internal",
            });
            if let (Ok(response), Ok(id)) = (&mut result, http::HeaderValue::from_str(&request_id))
            {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_label("/tactful.v1.Ranker/Rank"),
            "tactful.v1.Ranker/Rank"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(
            method_label("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        );
        assert_eq!(method_label("/tactful.v1.Ranker/Nope"), "unknown");
        assert_eq!(method_label("/x"), "unknown");
    }

    #[test]
    fn outcomes_come_from_the_extensions_then_the_status() {
        let mut r = http::Response::new(());
        assert_eq!(outcome(&r), "ok");
        r.headers_mut().insert("grpc-status", "16".parse().unwrap());
        assert_eq!(outcome(&r), "unauthenticated");
        let mut r = http::Response::new(());
        r.extensions_mut().insert(Degraded::Overload);
        assert_eq!(outcome(&r), "degraded");
    }
}

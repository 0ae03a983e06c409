//! Logs and traces. Logs go to stderr, human-readable by default or one JSON object per line
//! (`log_format = "json"`), filtered by `TACTFUL_LOG`. Every gRPC call runs in an `rpc` span
//! (opened by [`crate::grpc::observe`]) carrying:
//!
//! - `method`: the gRPC method;
//! - `request_id`: the caller's `x-request-id` header, or one made here; echoed in the
//!   response's `x-request-id` header either way, so both sides log the same id;
//! - `trace_id`: from the caller's W3C `traceparent` header, when it sent one;
//! - `user`: the user's pseudonym ([`crate::pseudonym`]), never the id.
//!
//! Every log line written during the call carries these. Pipeline stages are timed by the
//! metrics (`tactful_rank_stage_duration_seconds`), not by spans: a span per stage per
//! request would cost more than most stages.
//!
//! With the cargo feature `otlp` and `trace.otlp_endpoint` set, the spans are also exported
//! over OTLP/gRPC (OpenTelemetry), as children of the caller's `traceparent`.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

/// Log filter, e.g. `info` or `tactful=debug` [default: info].
pub const ENV_LOG: &str = "TACTFUL_LOG";

/// What must be done before the process exits (flush exported spans).
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber: stderr logs, and OTLP export when configured. With OTLP,
/// call it inside the tokio runtime (the exporter's gRPC client needs it).
pub fn init(config: &Config) -> TelemetryGuard {
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log written to a file or a pipe stays plain text.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match config.log_format {
        LogFormat::Human => logs.boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    #[cfg(feature = "otlp")]
    {
        let (otel, provider) = match &config.trace.otlp_endpoint {
            Some(endpoint) => match otlp::layer(endpoint) {
                Ok((layer, provider)) => (Some(layer), Some(provider)),
                Err(e) => {
                    eprintln!("tactful: OTLP export to {endpoint} is off: {e}");
                    (None, None)
                }
            },
            None => (None, None),
        };
        let _ = tracing_subscriber::registry()
            .with(logs)
            .with(otel)
            .with(filter)
            .try_init();
        TelemetryGuard { provider }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = tracing_subscriber::registry()
            .with(logs)
            .with(filter)
            .try_init();
        TelemetryGuard {}
    }
}

/// A request id for a call that came without one: 32 hex digits, a random per-process prefix
/// and a counter, so ids are unique without a random draw per call.
pub fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    format!("{prefix:016x}{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The caller's request id if it is a sensible one (1 to 128 visible ASCII characters, so it
/// cannot forge log lines); `None` otherwise.
pub fn accept_request_id(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty() && value.len() <= 128 && value.iter().all(u8::is_ascii_graphic);
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), if valid.
pub fn trace_id(traceparent: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(traceparent).ok()?;
    let mut parts = text.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(trace)
}

/// OTLP export (feature `otlp`).
#[cfg(feature = "otlp")]
pub mod otlp {
    use opentelemetry::propagation::Extractor;
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The OpenTelemetry layer exporting to `endpoint` (e.g. `http://otel-collector:4317`).
    pub fn layer<S>(
        endpoint: &str,
    ) -> Result<
        (
            tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
            SdkTracerProvider,
        ),
        String,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| e.to_string())?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tactful")
                    .build(),
            )
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("tactful");
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }

    struct Headers<'a>(&'a http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    /// Makes `span` a child of the caller's `traceparent`, if it sent one.
    pub fn set_parent(span: &tracing::Span, headers: &http::HeaderMap) {
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_accepted_only_when_sensible_and_made_unique() {
        assert_eq!(accept_request_id(b"req-42"), Some("req-42"));
        assert_eq!(accept_request_id(b""), None);
        assert_eq!(accept_request_id(b"two words"), None);
        assert_eq!(accept_request_id(b"line\nbreak"), None);
        assert_eq!(accept_request_id(&[b'a'; 129]), None);
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id(format!("00-{id}-00f067aa0ba902b7-01").as_bytes()),
            Some(id)
        );
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7".to_owned(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
            format!("00-{id}-0000000000000000-01"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}x-00f067aa0ba902b7-01"),
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }
}

//! The admin HTTP server, on its own port (`admin_listen`, default `127.0.0.1:9464`) so that
//! probes and scrapes never queue behind gRPC traffic and never need its TLS or tokens:
//!
//! - `GET /metrics`: Prometheus text format (the names are listed in [`crate::metrics`]).
//! - `GET /live`: 200 while the process runs (a liveness probe: restart only if it hangs).
//! - `GET /ready`: 200 while serving; 503 while the state is still loading (recovery can take
//!   seconds) and once a drain has begun, so load balancers stop sending new calls first.
//!
//! The server starts before the user state is loaded (so `/live` answers during recovery)
//! and stops only after the gRPC server has drained (so `/ready` says 503 throughout).
//!
//! What a scrape reports beyond the request counters comes from an observer the composition
//! root ([`crate::app`]) attaches once the parts exist, so this server knows no engine, store
//! or catalog: it depends on `metrics` and `readiness` only.
//!
//! Must not: serve anything about users. It reports counts only.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{self, Metrics, Observed};
use crate::readiness::Readiness;

/// Reads what the running parts count themselves, at each scrape.
pub type Observer = Box<dyn Fn() -> Observed + Send + Sync>;

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    metrics: Arc<Metrics>,
    readiness: Readiness,
    /// Set once the state is loaded and the engine built; until then only the request-free
    /// metrics are reported.
    observer: Arc<OnceLock<Observer>>,
}

impl Admin {
    pub fn new(metrics: Arc<Metrics>, readiness: Readiness) -> Self {
        Self {
            metrics,
            readiness,
            observer: Arc::new(OnceLock::new()),
        }
    }

    /// From now on, scrapes include what `observe` reads (the engine, the store, the catalog
    /// and the audit log count themselves). Only the first observer attached is kept.
    pub fn attach(&self, observe: impl Fn() -> Observed + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(observe));
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = Router::new()
            .route("/metrics", get(scrape))
            .route("/live", get(|| async { "live\n" }))
            .route("/ready", get(ready))
            .with_state(self);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn scrape(State(admin): State<Admin>) -> impl IntoResponse {
    if let Some(observe) = admin.observer.get() {
        admin.metrics.observe(&observe());
    }
    admin.metrics.set_ready(admin.readiness.is_ready());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        admin.metrics.render(),
    )
}

async fn ready(State(admin): State<Admin>) -> impl IntoResponse {
    let status = if admin.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}\n", admin.readiness.describe()))
}

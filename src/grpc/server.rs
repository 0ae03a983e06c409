//! Server wiring: the tactful services with their message-size limits, `grpc.health.v1`,
//! server reflection, HTTP/2 keepalive and connection limits (`[grpc]`, the bound and the
//! silence timers in [`super::connections`]), TLS (and mutual TLS) through rustls, the layers
//! every call passes (metrics outermost, so that refused calls are counted too, then
//! bearer-token auth, then the framing checks of [`super::wire`]), and a graceful drain: on shutdown every service turns NOT_SERVING, new connections
//! are refused, and in-flight calls get the configured grace period to finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use super::auth::{AuthLayer, Tokens};
use super::connections;
use super::observe::ObserveLayer;
use super::wire::WireLayer;
use super::{
    catalog::CatalogService, events::EventsService, profile::ProfileService, ranker::RankerService,
};
use crate::config::{Config, ConfigError, TlsSettings};
use crate::metrics::Metrics;
use crate::pb;
use crate::readiness::Readiness;

/// The largest HTTP/2 frame a client may send (HTTP/2's default is 16 KiB). A Rank request of
/// 100 candidates × 64 dimensions (31 KB) then arrives in one DATA frame rather than two, which
/// the connection's reader would otherwise gather by growing its buffer and copying the part
/// it held: 12,000 fewer instructions per such call (`scripts/per-call.sh`). Kept at 64 KiB
/// because a connection's read buffer keeps the size of the largest frame it received.
const MAX_FRAME_BYTES: u32 = 64 * 1024;

/// Names under which health is reported: the whole server ("") and each service.
const SERVICES: [&str; 5] = [
    "",
    "tactful.v1.Ranker",
    "tactful.v1.Events",
    "tactful.v1.Profile",
    "tactful.v1.Catalog",
];

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
}

/// tonic's TLS settings from ours, with the files read; `None` when TLS is off.
fn tls_config(tls: &TlsSettings) -> Result<Option<ServerTlsConfig>, ConfigError> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let read = |setting: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| ConfigError {
            setting: setting.into(),
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read("tls.cert", cert)?,
        read("tls.key", key)?,
    ));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("tls.client_ca", ca)?));
    }
    Ok(Some(config))
}

/// Checks that the TLS files make a working configuration (the key matches, the PEM parses),
/// so that a bad one stops the start like any other bad setting.
pub fn check_tls(config: &Config) -> Result<(), ConfigError> {
    if let Some(tls) = tls_config(&config.tls)? {
        Server::builder().tls_config(tls).map_err(|e| ConfigError {
            setting: "tls".into(),
            message: format!("{e}: {}", source_chain(&e)),
        })?;
    }
    Ok(())
}

/// An error's causes, joined: tonic's transport errors say little at the top.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// The tactful services, each built with the parts it uses (see [`crate::app`]).
pub struct Services {
    pub ranker: RankerService,
    pub events: EventsService,
    pub profile: ProfileService,
    pub catalog: CatalogService,
}

/// Serves `services` on `listener` until `shutdown` completes, then drains. Reports readiness
/// through `readiness` (which the admin server's `/ready` reads): serving once the services
/// are in place, draining from the shutdown signal on. Counts every call in `metrics`. Takes
/// the shutdown future as an argument so tests drive it.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    services: Services,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    readiness: Readiness,
) -> Result<(), ServeError> {
    let tokens = Tokens::from_settings(&config.auth)?;
    let tls = tls_config(&config.tls)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICES {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    // Both reflection versions: many tools (grpcurl, ghz) still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let max = config.limits.max_message_bytes;
    let ranker = pb::ranker_server::RankerServer::new(services.ranker)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let events = pb::events_server::EventsServer::new(services.events)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let catalog = pb::catalog_server::CatalogServer::new(services.catalog)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let profile = pb::profile_server::ProfileServer::new(services.profile)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_readiness = readiness.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        drain_readiness.draining();
        for name in SERVICES {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let _ = draining_tx.send(());
    };
    let grpc = &config.grpc;
    // 0 = off.
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    // Connections: bounded below the descriptor limit, closed when silent (see connections).
    let fd_limit = connections::raise_fd_limit();
    let max_connections = connections::max_connections(grpc.max_connections, fd_limit);
    metrics.set_connection_limits(max_connections, fd_limit);
    tracing::info!(
        fd_limit,
        max_connections,
        handshake_timeout_s = grpc.handshake_timeout_s,
        idle_timeout_s = grpc.idle_timeout_s,
        "connection limits"
    );
    let timeouts = connections::Timeouts {
        handshake: seconds(grpc.handshake_timeout_s),
        idle: seconds(grpc.idle_timeout_s),
    };
    let incoming = connections::incoming(listener, max_connections, timeouts, &metrics);
    let mut builder = Server::builder();
    if let Some(mut tls) = tls {
        // A TLS handshake gets the same time as an HTTP/2 preface.
        if let Some(handshake) = timeouts.handshake {
            tls = tls.timeout(handshake);
        }
        builder = builder.tls_config(tls)?;
    }
    if let Some(age) = seconds(grpc.max_connection_age_s) {
        builder = builder
            .max_connection_age(age)
            .max_connection_age_grace(Duration::from_secs(config.drain_grace_s));
    }
    let server = builder
        .http2_keepalive_interval(seconds(grpc.http2_keepalive_interval_s))
        .http2_keepalive_timeout(seconds(grpc.http2_keepalive_timeout_s))
        .max_concurrent_streams(
            (grpc.max_concurrent_streams > 0).then_some(grpc.max_concurrent_streams),
        )
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .layer(ObserveLayer::new(metrics.clone()))
        .layer(AuthLayer::new(tokens, config.auth.rank_open))
        .layer(WireLayer::new(metrics, max))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ranker)
        .add_service(events)
        .add_service(profile)
        .add_service(catalog)
        .serve_with_incoming_shutdown(incoming, signal);
    // The listener is bound: connections made from now on queue until the server polls.
    readiness.serving();

    let grace = Duration::from_secs(config.drain_grace_s);
    let grace_over = async move {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result?,
        () = grace_over => tracing::warn!(?grace, "drain grace period over; closing with calls in flight"),
    }
    Ok(())
}

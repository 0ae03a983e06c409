//! tactful: a low-latency gRPC re-ranking sidecar.
pub mod pb {
    tonic::include_proto!("tactful.v1");
}
pub mod rank;

//! tactful: a low-latency gRPC re-ranking sidecar that takes an upstream recommender's
//! candidates and returns them re-ranked with penalties for the risk that the user avoids what
//! is shown (fatigue, ignored feedback, privacy intrusion) and boosts for diversity, each item
//! with a reason. It fails open to the upstream order rather than ever hurting the host.
//!
//! Crate map. Dependencies point one way: `cli` → `app` → `grpc` → `engine` → `rank`,
//! `state`, `catalog`; `app` → `admin`, which needs only `metrics` and `readiness`. The leaves `time`, `readiness`, `metrics` and `pseudonym` (and
//! `audit`, over `pseudonym` and `time`) are used from any level and use nothing above them;
//! `config` embeds the settings of the parts it configures. Nothing below `engine` imports
//! it, `grpc` and `admin` do not import each other, and only `cli` imports `app`.
//! - [`app`]: the composition root: from one `Config` it builds the metrics, readiness, audit
//!   log, user state, catalog, ranking pool and engine, gives each gRPC service the parts it
//!   uses, and runs the gRPC and admin servers; `tactful serve` and the integration tests
//!   both run it.
//! - [`rank`]: the pure core. Types, policies, the stage contract, the stages, the pipeline
//!   that runs them, vector kernels. No I/O, no async.
//! - [`state`]: hot per-user state in a concurrent map, updated by events, read as snapshots;
//!   made durable on local disk, or shared by replicas through Redis, behind one backend
//!   trait, every stored record sealed under its user's own key; owns its `[state]` settings.
//! - [`catalog`]: the optional item cache (category, brand, shop, price, popularity,
//!   embedding, title, complement categories), bounded, filled by `Catalog.Upsert` and a
//!   start-up file, so that Rank requests can carry ids and scores only.
//! - [`engine`]: ranks: holds the policies in force, runs a ranking under a deadline (a small
//!   one where the call is, a large one on the rayon pool), decides fail-open. Builds nothing.
//! - [`grpc`]: the tonic edge: validation and conversion, services (each holding the parts it
//!   uses), server wiring.
//! - [`config`]: one `Config` from defaults, file, environment and flags.
//! - [`metrics`]: the Prometheus metrics (names, labels, what each counts).
//! - [`admin`]: the admin HTTP server: `/metrics`, `/live`, `/ready`.
//! - [`readiness`]: the readiness latch the gRPC server moves and `/ready` reads.
//! - [`audit`]: the audit log of consent changes, erasures and policy reloads.
//! - [`pseudonym`]: user ids as keyed hashes, for everything outside the state store.
//! - [`telemetry`]: logs, the span of each call, OTLP export (feature `otlp`).
//! - [`time`]: the leaf every module takes the clock, `DAY_MS` and civil dates from.
//! - [`cli`]: the command line: `serve` (arguments, ports, signals) and the client
//!   subcommands.
//! - [`workload`]: synthetic requests for benchmarks and the load generator.
//! - [`datasets`]: readers for interaction logs (Taobao, REES46, Tmall, MovieLens, a platform's
//!   own CSV through a column mapping), for offline evaluation and pictures; never used at
//!   request time.
//! - [`replay`]: offline replay of real logs through two policies in time order, and the fit of
//!   a policy (durable categories, complements, fatigue's impression discount) from a log's
//!   earlier part, and the tune of its main knobs on that part alone.
//! - [`pb`]: the generated `tactful.v1` protobuf types, clients and servers; `pb::bulk` writes
//!   `RankRequest`, `Candidate` and `CatalogItem` by hand so that candidates and their
//!   embeddings decode in bulk; `pb::codec` is the codec every service and client uses.
//! - [`alloc`]: the binary's allocator settings.
//!
//! How a Rank request flows: `grpc::ranker` validates and converts the request
//! (`grpc::convert`: each candidate is looked up once in the `catalog`, which supplies what
//! the request leaves unset), reads the caller's `grpc-timeout`, and calls
//! `engine::Engine::rank`. The engine reads the user's view from `state` (memory, else the
//! snapshot or Redis; if that fails, it fails open with reason STATE), adds the catalog's
//! complement categories of what the user bought, takes an in-flight permit (or fails open as
//! overloaded), and runs the policy's `rank::Pipeline`: a typical ranking right there, a large
//! one on the rayon pool, whose oneshot answer the tokio side awaits until the deadline; past
//! it, or on a panic, the answer is the upstream order marked degraded.

pub mod admin;
pub mod alloc;
pub mod app;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod datasets;
pub mod engine;
pub mod grpc;
pub mod metrics;
pub mod pseudonym;
pub mod rank;
pub mod readiness;
pub mod replay;
pub mod state;
pub mod telemetry;
pub mod time;
pub mod workload;

/// Generated protobuf types, clients and servers of `tactful.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tactful.v1");

    pub mod bulk;
    pub mod codec;
    pub mod event;
    pub use bulk::{Candidate, CatalogItem, RankRequest};
    pub use event::Event;

    /// The encoded descriptor set, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tactful_descriptor.bin"));
}

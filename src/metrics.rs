//! The service's Prometheus metrics: one [`Metrics`] per server (no global registry, so tests
//! that run several servers in one process each see their own), rendered in the Prometheus
//! text format (0.0.4) by the admin server's `/metrics`.
//!
//! The names below are a public interface (dashboards and alerts depend on them): add metrics
//! freely, never rename or re-label one.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `tactful_grpc_requests_total` | counter | `method`, `outcome` | calls answered; `outcome` is `ok`, `degraded` (a fail-open Rank answer) or the gRPC code in snake case (`invalid_argument`, `unauthenticated`, `resource_exhausted`, ...); `method` is `tactful.v1.Ranker/Rank` etc., `unknown` for paths no service serves |
//! | `tactful_grpc_request_duration_seconds` | histogram | `method`, `outcome` | time from the request's headers to the response's |
//! | `tactful_rank_candidates` | histogram | | candidates per Rank |
//! | `tactful_rank_queue_seconds` | histogram | | wait for a ranking thread (rankings sent to the pool only) |
//! | `tactful_rank_decoded_in_place_total` | counter | | Rank requests decoded where they arrived, their message whole in one HTTP/2 DATA frame (the others are gathered by tonic first: a copy) |
//! | `tactful_rank_stage_duration_seconds` | histogram | `stage` | time in each pipeline stage |
//! | `tactful_rank_degraded_total` | counter | `reason` | fail-open answers: `deadline`, `budget`, `overload`, `internal`, `state` |
//! | `tactful_rank_inflight` | gauge | | rankings admitted and not finished |
//! | `tactful_rank_max_inflight` | gauge | | the limit past which rankings fail open |
//! | `tactful_avoidance_rankings_total` | counter | | rankings the avoidance totals cover (fail-open answers included) |
//! | `tactful_avoidance_dropped_total` | counter | `rule` | candidates removed per hard rule |
//! | `tactful_avoidance_penalised_total` | counter | `component` | candidates lowered per penalty |
//! | `tactful_events_total` | counter | `type`, `outcome` | events: `applied`, `rejected` (invalid) or `unavailable` (the store could not take it; the call failed) |
//! | `tactful_state_users` | gauge | | users held in memory |
//! | `tactful_state_bytes` | gauge | | memory accounted to user state |
//! | `tactful_state_memory_cap_bytes` | gauge | | the cap past which the coldest users are evicted |
//! | `tactful_state_evicted_total` | counter | | users evicted from memory |
//! | `tactful_state_snapshots_total` | counter | | snapshots written |
//! | `tactful_state_snapshot_failures_total` | counter | | snapshot writes that failed (the previous snapshot and the log stay in force) |
//! | `tactful_catalog_items` | gauge | | items the catalog holds |
//! | `tactful_catalog_bytes` | gauge | | memory of the catalog's items (entries and their heap parts; the map's spare slots add up to about half again) |
//! | `tactful_catalog_max_items` | gauge | | the limit past which changes are refused |
//! | `tactful_catalog_upserts_total` | counter | `outcome` | catalog items received: `upserted` (put), `deleted` (tombstones), `rejected` (in an Upsert stream or change that was refused whole: a bad item, the limit, a cut-off stream) |
//! | `tactful_catalog_lookups_total` | counter | `outcome` | Rank candidates looked up in the catalog: `hit` or `miss` (none while the catalog is empty) |
//! | `tactful_catalog_partial_embeddings_total` | counter | | Rank requests in which some candidates had an embedding (inline or from the catalog) and others none: ranked without embeddings |
//! | `tactful_policy_info` | gauge (1) | `policy`, `version` | the policies in force |
//! | `tactful_audit_errors_total` | counter | | audit records that could not be written |
//! | `tactful_grpc_connections` | gauge | | connections open on the gRPC port |
//! | `tactful_grpc_max_connections` | gauge | | the bound past which new connections are closed at once (`grpc.max_connections`, kept below the descriptor limit) |
//! | `tactful_grpc_connections_closed_total` | counter | `reason` | connections the server closed: `limit` (past the bound), `handshake` (no first bytes in `grpc.handshake_timeout_s`), `idle` (no call for `grpc.idle_timeout_s`), `evicted` (still silent when a new connection needed its place at the bound) |
//! | `tactful_process_max_fds` | gauge | | the process's file-descriptor limit (soft), after raising it to the hard limit at start |
//! | `tactful_ready` | gauge | | 1 while serving, 0 while loading or draining |
//! | `tactful_build_info` | gauge (1) | `version` | the running build |
//! | `process_resident_memory_bytes` | gauge | | the process's resident memory (Linux) |
//! | `process_open_fds` | gauge | | file descriptors the process has open (Linux; counted when scraped) |
//!
//! Counters kept elsewhere (the engine's avoidance totals, the store's counts) are copied in
//! when a scrape asks ([`Metrics::observe`]); the request path only touches atomics.
//!
//! Must not: know tonic, the engine or the store. Callers hand plain numbers in.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets of a whole call: from 100 µs (a small Rank on loopback) to 5 s.
const CALL_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Buckets of one stage or one queue wait: from 5 µs up to the default budget.
const STAGE_BUCKETS: [f64; 13] = [
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05,
];
/// Candidates per request, up to the default maximum.
const CANDIDATE_BUCKETS: [f64; 10] = [
    1.0, 10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// The fail-open reasons, pre-registered so that their series exist (at 0) from the start:
/// an alert on `rate()` needs the series before the first failure.
pub const DEGRADED_REASONS: [&str; 5] = ["deadline", "budget", "overload", "internal", "state"];

/// Values the engine and the store keep themselves, copied in at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub rankings: u64,
    /// Per hard rule name: candidates removed since start.
    pub dropped: Vec<(&'static str, u64)>,
    /// Per penalty name: candidates lowered since start.
    pub penalised: Vec<(&'static str, u64)>,
    pub users: usize,
    pub state_bytes: usize,
    pub memory_cap_bytes: usize,
    pub evicted_total: usize,
    pub snapshots_total: usize,
    pub snapshot_failures_total: usize,
    pub inflight: usize,
    pub max_inflight: usize,
    /// Audit records that could not be written.
    pub audit_errors: u64,
    /// `(name, name@version)` of each policy in force.
    pub policies: Vec<(String, String)>,
    pub catalog_items: usize,
    pub catalog_bytes: usize,
    pub catalog_max_items: usize,
    /// Running totals of catalog items put, deleted and refused.
    pub catalog_upserted: u64,
    pub catalog_deleted: u64,
    pub catalog_rejected: u64,
    /// Running totals of Rank candidates found and not found in the catalog.
    pub catalog_hits: u64,
    pub catalog_misses: u64,
    /// Running total of Rank requests ranked without embeddings because only some of their
    /// candidates had one.
    pub catalog_partial_embeddings: u64,
}

/// The `outcome`s of `tactful_catalog_upserts_total` and `tactful_catalog_lookups_total`,
/// pre-registered so that their series exist (at 0) from the start.
/// Why the server closes a connection (`tactful_grpc_connections_closed_total`).
pub const CONNECTION_CLOSE_REASONS: [&str; 4] = ["limit", "handshake", "idle", "evicted"];

const CATALOG_UPSERT_OUTCOMES: [&str; 3] = ["upserted", "deleted", "rejected"];
const CATALOG_LOOKUP_OUTCOMES: [&str; 2] = ["hit", "miss"];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    rank_candidates: Histogram,
    rank_queue_seconds: Histogram,
    rank_in_place: IntCounter,
    stage_seconds: HistogramVec,
    /// The stages' histograms, by the stage's name (see [`Metrics::stages`]).
    stage_handles: Mutex<Vec<(&'static str, Histogram)>>,
    degraded: IntCounterVec,
    inflight: IntGauge,
    max_inflight: IntGauge,
    rankings: IntCounter,
    dropped: IntCounterVec,
    penalised: IntCounterVec,
    events: IntCounterVec,
    users: IntGauge,
    state_bytes: IntGauge,
    memory_cap_bytes: IntGauge,
    evicted: IntCounter,
    snapshots: IntCounter,
    snapshot_failures: IntCounter,
    policy_info: IntGaugeVec,
    catalog_items: IntGauge,
    catalog_bytes: IntGauge,
    catalog_max_items: IntGauge,
    catalog_upserts: IntCounterVec,
    catalog_lookups: IntCounterVec,
    catalog_partial_embeddings: IntCounter,
    audit_errors: IntCounter,
    ready: IntGauge,
    connections: IntGauge,
    max_connections: IntGauge,
    connections_closed: IntCounterVec,
    max_fds: IntGauge,
    rss: IntGauge,
    open_fds: IntGauge,
    /// Held while copying totals in, so two scrapes at once do not count a difference twice.
    observing: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` (a clone: prometheus metrics are shared handles) and returns it.
/// Names are fixed and distinct, so registration cannot fail.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are distinct and valid");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid name"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid name"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid name"))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("valid name"),
    )
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    register(
        registry,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .expect("valid name"),
    )
}

/// Raises a counter to `total`, a running total kept elsewhere.
fn raise_to(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let m = Self {
            requests: counter_vec(
                &r,
                "tactful_grpc_requests_total",
                "gRPC calls answered, by method and outcome (ok, degraded or the gRPC code)",
                &["method", "outcome"],
            ),
            request_seconds: histogram_vec(
                &r,
                "tactful_grpc_request_duration_seconds",
                "Time from a call's request headers to its response headers",
                &["method", "outcome"],
                &CALL_BUCKETS,
            ),
            rank_candidates: histogram(
                &r,
                "tactful_rank_candidates",
                "Candidates per Rank request",
                &CANDIDATE_BUCKETS,
            ),
            rank_queue_seconds: histogram(
                &r,
                "tactful_rank_queue_seconds",
                "Time a ranking waited for a ranking thread",
                &STAGE_BUCKETS,
            ),
            rank_in_place: counter(
                &r,
                "tactful_rank_decoded_in_place_total",
                "Rank requests decoded where they arrived (the message whole in one DATA frame)",
            ),
            stage_seconds: histogram_vec(
                &r,
                "tactful_rank_stage_duration_seconds",
                "Time spent in each stage of the ranking pipeline",
                &["stage"],
                &STAGE_BUCKETS,
            ),
            stage_handles: Mutex::new(Vec::new()),
            degraded: counter_vec(
                &r,
                "tactful_rank_degraded_total",
                "Rank answers that failed open to the upstream order, by reason",
                &["reason"],
            ),
            inflight: gauge(
                &r,
                "tactful_rank_inflight",
                "Rankings admitted and not yet finished",
            ),
            max_inflight: gauge(
                &r,
                "tactful_rank_max_inflight",
                "Rankings in flight past which new ones fail open as overloaded",
            ),
            rankings: counter(
                &r,
                "tactful_avoidance_rankings_total",
                "Rankings counted in the avoidance totals (fail-open answers included)",
            ),
            dropped: counter_vec(
                &r,
                "tactful_avoidance_dropped_total",
                "Candidates removed by each hard rule (explicit feedback, consent, caps, ...)",
                &["rule"],
            ),
            penalised: counter_vec(
                &r,
                "tactful_avoidance_penalised_total",
                "Candidates lowered by each avoidance penalty",
                &["component"],
            ),
            events: counter_vec(
                &r,
                "tactful_events_total",
                "Events received, by type and outcome (applied, rejected or unavailable)",
                &["type", "outcome"],
            ),
            users: gauge(&r, "tactful_state_users", "Users held in memory"),
            state_bytes: gauge(&r, "tactful_state_bytes", "Memory accounted to user state"),
            memory_cap_bytes: gauge(
                &r,
                "tactful_state_memory_cap_bytes",
                "Memory for user state past which the coldest users are evicted",
            ),
            evicted: counter(
                &r,
                "tactful_state_evicted_total",
                "Users evicted from memory (read back on their next request)",
            ),
            snapshots: counter(&r, "tactful_state_snapshots_total", "Snapshots written"),
            snapshot_failures: counter(
                &r,
                "tactful_state_snapshot_failures_total",
                "Snapshot writes that failed (the previous snapshot and the log stay in force)",
            ),
            policy_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("tactful_policy_info", "The policies in force (always 1)"),
                    &["policy", "version"],
                )
                .expect("valid name"),
            ),
            catalog_items: gauge(&r, "tactful_catalog_items", "Items the catalog holds"),
            catalog_bytes: gauge(
                &r,
                "tactful_catalog_bytes",
                "Memory of the catalog's items (entries and heap parts, not the map's spare slots)",
            ),
            catalog_max_items: gauge(
                &r,
                "tactful_catalog_max_items",
                "Items the catalog may hold; changes past it are refused",
            ),
            catalog_upserts: counter_vec(
                &r,
                "tactful_catalog_upserts_total",
                "Catalog items received, by outcome (upserted, deleted, rejected)",
                &["outcome"],
            ),
            catalog_lookups: counter_vec(
                &r,
                "tactful_catalog_lookups_total",
                "Rank candidates looked up in the catalog, by outcome (hit, miss)",
                &["outcome"],
            ),
            catalog_partial_embeddings: counter(
                &r,
                "tactful_catalog_partial_embeddings_total",
                "Rank requests where only some candidates had an embedding, ranked without embeddings",
            ),
            audit_errors: counter(
                &r,
                "tactful_audit_errors_total",
                "Audit records that could not be written",
            ),
            ready: gauge(
                &r,
                "tactful_ready",
                "1 while serving; 0 while loading state or draining",
            ),
            connections: gauge(
                &r,
                "tactful_grpc_connections",
                "Connections open on the gRPC port",
            ),
            max_connections: gauge(
                &r,
                "tactful_grpc_max_connections",
                "Connections open at once past which new ones are closed at once",
            ),
            connections_closed: counter_vec(
                &r,
                "tactful_grpc_connections_closed_total",
                "Connections the server closed, by reason (limit, handshake, idle, evicted)",
                &["reason"],
            ),
            max_fds: gauge(
                &r,
                "tactful_process_max_fds",
                "The process's file-descriptor limit (soft, as raised at start)",
            ),
            rss: gauge(
                &r,
                "process_resident_memory_bytes",
                "Resident memory of the process",
            ),
            open_fds: gauge(
                &r,
                "process_open_fds",
                "File descriptors the process has open",
            ),
            observing: Mutex::new(()),
            registry: r,
        };
        for reason in DEGRADED_REASONS {
            m.degraded.with_label_values(&[reason]);
        }
        for reason in CONNECTION_CLOSE_REASONS {
            m.connections_closed.with_label_values(&[reason]);
        }
        for outcome in CATALOG_UPSERT_OUTCOMES {
            m.catalog_upserts.with_label_values(&[outcome]);
        }
        for outcome in CATALOG_LOOKUP_OUTCOMES {
            m.catalog_lookups.with_label_values(&[outcome]);
        }
        let build = register(
            &m.registry,
            IntGaugeVec::new(
                Opts::new("tactful_build_info", "The running build (always 1)"),
                &["version"],
            )
            .expect("valid name"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m
    }

    /// One gRPC call answered.
    pub fn call(&self, method: &str, outcome: &str, took: Duration) {
        let labels = [method, outcome];
        self.requests.with_label_values(&labels).inc();
        self.request_seconds
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn rank_candidates(&self, n: usize) {
        self.rank_candidates.observe(n as f64);
    }

    pub fn rank_queued(&self, took: Duration) {
        self.rank_queue_seconds.observe(took.as_secs_f64());
    }

    /// Each stage's time of one ranking. A stage's histogram is looked up by its label once
    /// and kept, found again by the name's address (a label lookup hashes the name: 16 per
    /// ranking were 2,000 instructions).
    pub fn stages(&self, stages: &[(&'static str, Duration)]) {
        let mut known = self.stage_handles.lock().unwrap_or_else(|e| e.into_inner());
        for &(stage, took) in stages {
            let at = match known
                .iter()
                .position(|(name, _)| std::ptr::eq(*name, stage))
            {
                Some(at) => at,
                None => {
                    known.push((stage, self.stage_seconds.with_label_values(&[stage])));
                    known.len() - 1
                }
            };
            known[at].1.observe(took.as_secs_f64());
        }
    }

    pub fn degraded(&self, reason: &str) {
        self.degraded.with_label_values(&[reason]).inc();
    }

    /// An event of `kind` was `applied` or `rejected`.
    pub fn event(&self, kind: &str, outcome: &str) {
        self.events.with_label_values(&[kind, outcome]).inc();
    }

    /// Counts Rank requests decoded in place (`grpc::in_place`).
    pub fn rank_in_place_counter(&self) -> IntCounter {
        self.rank_in_place.clone()
    }

    /// The counter [`Metrics::event`] adds to, for a caller that counts so many events that
    /// it keeps the handle (looking the labels up costs more than the count).
    pub fn event_counter(&self, kind: &str, outcome: &str) -> IntCounter {
        self.events.with_label_values(&[kind, outcome])
    }

    /// The open-connections gauge (the connection guards move it themselves).
    pub fn connections(&self) -> IntGauge {
        self.connections.clone()
    }

    /// The counter of connections closed for `reason` (one of [`CONNECTION_CLOSE_REASONS`]).
    pub fn connection_closed(&self, reason: &str) -> IntCounter {
        self.connections_closed.with_label_values(&[reason])
    }

    /// The connection bound in force and the descriptor limit it was derived from.
    pub fn set_connection_limits(&self, max_connections: usize, max_fds: u64) {
        self.max_connections.set(max_connections as i64);
        self.max_fds.set(i64::try_from(max_fds).unwrap_or(i64::MAX));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Copies in what the engine and the store count themselves.
    pub fn observe(&self, o: &Observed) {
        let _one_at_a_time = self.observing.lock().unwrap_or_else(|e| e.into_inner());
        raise_to(&self.rankings, o.rankings);
        for (rule, n) in &o.dropped {
            raise_to(&self.dropped.with_label_values(&[*rule]), *n);
        }
        for (component, n) in &o.penalised {
            raise_to(&self.penalised.with_label_values(&[*component]), *n);
        }
        let int = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.users.set(int(o.users));
        self.state_bytes.set(int(o.state_bytes));
        self.memory_cap_bytes.set(int(o.memory_cap_bytes));
        raise_to(&self.evicted, o.evicted_total as u64);
        raise_to(&self.snapshots, o.snapshots_total as u64);
        raise_to(&self.snapshot_failures, o.snapshot_failures_total as u64);
        self.inflight.set(int(o.inflight));
        self.max_inflight.set(int(o.max_inflight));
        raise_to(&self.audit_errors, o.audit_errors);
        self.catalog_items.set(int(o.catalog_items));
        self.catalog_bytes.set(int(o.catalog_bytes));
        self.catalog_max_items.set(int(o.catalog_max_items));
        for (outcome, n) in CATALOG_UPSERT_OUTCOMES.into_iter().zip([
            o.catalog_upserted,
            o.catalog_deleted,
            o.catalog_rejected,
        ]) {
            raise_to(&self.catalog_upserts.with_label_values(&[outcome]), n);
        }
        for (outcome, n) in CATALOG_LOOKUP_OUTCOMES
            .into_iter()
            .zip([o.catalog_hits, o.catalog_misses])
        {
            raise_to(&self.catalog_lookups.with_label_values(&[outcome]), n);
        }
        raise_to(
            &self.catalog_partial_embeddings,
            o.catalog_partial_embeddings,
        );
        // Reset first: a reload that changed a version must not leave the old one listed.
        self.policy_info.reset();
        for (name, version) in &o.policies {
            self.policy_info.with_label_values(&[name, version]).set(1);
        }
    }

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.rss.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        if let Some(fds) = open_fds() {
            self.open_fds.set(i64::try_from(fds).unwrap_or(i64::MAX));
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Resident memory from `/proc/self/status` (`VmRSS`, in kB); `None` off Linux.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Descriptors open now, from `/proc/self/fd` (the one the listing itself holds left out);
/// `None` off Linux.
fn open_fds() -> Option<usize> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn calls_and_totals_appear_under_their_names() {
        let m = Metrics::new();
        m.call("tactful.v1.Ranker/Rank", "ok", Duration::from_micros(300));
        m.call("tactful.v1.Ranker/Rank", "ok", Duration::from_micros(700));
        m.degraded("overload");
        m.observe(&Observed {
            rankings: 5,
            dropped: vec![("blocked_brand", 3)],
            users: 2,
            policies: vec![("default".into(), "default@2".into())],
            catalog_items: 7,
            catalog_upserted: 9,
            catalog_hits: 40,
            catalog_misses: 2,
            ..Default::default()
        });
        let text = m.render();
        let get = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
        assert_eq!(
            get(r#"tactful_grpc_requests_total{method="tactful.v1.Ranker/Rank",outcome="ok"}"#),
            2.0
        );
        assert_eq!(
            get(
                r#"tactful_grpc_request_duration_seconds_bucket{method="tactful.v1.Ranker/Rank",outcome="ok",le="0.0005"}"#
            ),
            1.0
        );
        assert_eq!(
            get(r#"tactful_rank_degraded_total{reason="overload"}"#),
            1.0
        );
        assert_eq!(get(r#"tactful_rank_degraded_total{reason="state"}"#), 0.0);
        assert_eq!(
            get(r#"tactful_avoidance_dropped_total{rule="blocked_brand"}"#),
            3.0
        );
        assert_eq!(get("tactful_avoidance_rankings_total"), 5.0);
        assert_eq!(get("tactful_state_users"), 2.0);
        assert_eq!(get("tactful_catalog_items"), 7.0);
        assert_eq!(
            get(r#"tactful_catalog_upserts_total{outcome="upserted"}"#),
            9.0
        );
        assert_eq!(
            get(r#"tactful_catalog_upserts_total{outcome="rejected"}"#),
            0.0
        );
        assert_eq!(get(r#"tactful_catalog_lookups_total{outcome="hit"}"#), 40.0);
        assert_eq!(get(r#"tactful_catalog_lookups_total{outcome="miss"}"#), 2.0);
        assert_eq!(get("tactful_catalog_partial_embeddings_total"), 0.0);
        if cfg!(target_os = "linux") {
            // stdin, stdout and stderr at least.
            assert!(get("process_open_fds") >= 3.0, "{text}");
        }
        assert_eq!(
            get(r#"tactful_policy_info{policy="default",version="default@2"}"#),
            1.0
        );
    }

    #[test]
    fn totals_copied_twice_are_not_counted_twice_and_old_policies_go() {
        let m = Metrics::new();
        let mut o = Observed {
            rankings: 4,
            policies: vec![("default".into(), "default@2".into())],
            ..Default::default()
        };
        m.observe(&o);
        m.observe(&o);
        o.rankings = 6;
        o.policies = vec![("default".into(), "default@3".into())];
        m.observe(&o);
        let text = m.render();
        assert_eq!(value(&text, "tactful_avoidance_rankings_total"), Some(6.0));
        assert!(!text.contains("default@2"), "{text}");
        assert!(text.contains("default@3"), "{text}");
    }
}

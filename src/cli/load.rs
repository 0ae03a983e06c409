//! `tactful bench`: a load generator for Rank over gRPC, over `connections` HTTP/2 connections.
//!
//! - Closed loop (default): each of `concurrency` workers sends its next request as soon as
//!   the last one answered. Measures what the server sustains.
//! - Open loop (`--rate N`): a request every 1/N s whatever the answers, as real traffic
//!   arrives; latency counts from when each request was due, so a server that falls behind
//!   cannot hide it (no coordinated omission). At most `--max-outstanding` requests wait at
//!   once (past that a send is skipped and counted), so the client's memory stays bounded
//!   however slow the server. This is how overload is tested.
//!
//! Both run until `requests` were sent or `max_seconds` passed, and report throughput and
//! latency percentiles — of all answers, of those actually ranked and of the fail-open ones —
//! fail-open answers by reason, errors by gRPC code, and, when the server runs on this machine,
//! its CPU time per request and memory (`proc_usage`); `--json` prints one JSON object.
//! Loopback targets only unless `--allow-remote` is given.
//!
//! Requests are generated (`workload`), or read from `--payload FILE` (protobuf JSON, the ghz
//! payloads; `payload`); `--users N` spreads them over N users. Each request is encoded once,
//! before the load ([`Encoded`]): the generator shares the machine with the server it
//! measures, and encoding 100 × 64 floats anew for every call was about a quarter of its CPU
//! per call. `--events record|stream` loads
//! the Events service instead (`load_events`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use prost::Message;
use prost::bytes::{BufMut, Bytes};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::client::Failure;
use super::load_events::{self, EventsArgs};
use super::proc_usage::{self, Watch};
use super::ticker::Ticker;
use super::{EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::pb;
use crate::workload::rank_request;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server address (host:port, or http:// / https:// URL).
    #[arg(long, env = "TACTFUL_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Requests to measure (after the warm-up).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Requests (with --events: events) sent first and not measured.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// HTTP/2 connections shared by the workers.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Candidates per generated request (not with --payload).
    #[arg(long, default_value_t = 200)]
    pub candidates: usize,
    /// Embedding length of generated requests, 0 = none (not with --payload).
    #[arg(long, default_value_t = 32)]
    pub dim: usize,
    /// k of generated requests (not with --payload).
    #[arg(long, default_value_t = 20)]
    pub k: u32,
    /// A RankRequest in protobuf JSON, as ghz takes it (e.g. benches/ghz/data/rank-default.json),
    /// sent instead of generated requests. --candidates, --dim and --k do not apply; --policy
    /// and --strict, when given, override the file's.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["candidates", "dim", "k"])]
    pub payload: Option<PathBuf>,
    /// Spread the requests over this many users, `<id>-0` to `<id>-<N-1>` (`<id>`: the
    /// payload's user, or bench-user), so that per-user state is exercised. Without it: the
    /// payload's user, or bench-user-0..15 for generated requests. With --events: the users the
    /// events are spread over [default: 10000].
    #[arg(long, value_name = "N")]
    pub users: Option<usize>,
    /// The server's process id, for its CPU time per request and its memory. Without it, the
    /// process listening on the target's port is looked up in /proc when the target is on this
    /// machine; "unknown" when none can be read.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// The policy the requests ask for (empty = the server's default).
    #[arg(long, default_value = "")]
    pub policy: String,
    /// Deadline sent with each request, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Stop after this many seconds whatever the count.
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// Open loop: send this many requests per second whatever the answers (0 = closed loop).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Open loop: most requests waiting at once; past it a send is skipped and counted.
    #[arg(long, default_value_t = 10_000)]
    pub max_outstanding: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Send strict requests: errors (e.g. RESOURCE_EXHAUSTED) instead of fail-open answers.
    #[arg(long)]
    pub strict: bool,
    /// Call grpc.health.v1.Health/Check instead of Rank: the transport's own cost, to compare
    /// a Rank call's against on the same server and load.
    #[arg(long)]
    pub health: bool,
    /// Send the embeddings in the bytes form (`embedding_f32le`, little-endian float32)
    /// instead of `repeated float`.
    #[arg(long)]
    pub embedding_bytes: bool,
    /// Write the first request as a gRPC message (a 5-byte frame header, then the protobuf)
    /// to FILE and exit, without sending anything: a body for other HTTP/2 load generators
    /// (`h2load -d FILE`, see `benches/h2load.sh`).
    #[arg(long, value_name = "FILE")]
    pub write_frame: Option<PathBuf>,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Upload the generated items (attributes and embeddings) to the server's catalog first,
    /// then send candidates with ids, scores and evidence only (the server's catalog.dim must
    /// be --dim).
    #[arg(long)]
    pub catalog: bool,
    #[command(flatten)]
    pub access: super::Access,
    #[command(flatten)]
    pub events: EventsArgs,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests answered (successfully or not).
    pub sent: usize,
    pub elapsed: Duration,
    /// Latencies of successful calls, sorted.
    pub latencies: Vec<Duration>,
    /// Latencies of the calls that were ranked (not failed open), sorted.
    pub ranked: Vec<Duration>,
    /// Latencies of the fail-open answers, sorted.
    pub failed_open: Vec<Duration>,
    pub errors: BTreeMap<String, usize>,
    pub degraded: usize,
    /// Fail-open answers by reason (`overload`, `deadline`, ...).
    pub degraded_by: BTreeMap<String, usize>,
    /// Open loop: sends skipped because `max_outstanding` requests were waiting.
    pub skipped: usize,
    /// Open loop: how late each request was handed to the client after it was due, sorted
    /// (how evenly the generator paced; latency counts from the due time either way).
    pub pacing: Vec<Duration>,
}

/// The `p`th percentile of sorted `latencies` (zero when empty).
pub fn percentile(latencies: &[Duration], p: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
    latencies[rank.min(latencies.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report {
    /// Adds one answer that took `took` from when it was due.
    fn count(&mut self, took: Duration, answer: Result<&pb::RankResponse, tonic::Code>) {
        self.sent += 1;
        match answer {
            Ok(r) => {
                self.latencies.push(took);
                if r.degraded {
                    self.degraded += 1;
                    self.failed_open.push(took);
                    let reason = r.degraded_reason().as_str_name();
                    let reason = reason.strip_prefix("DEGRADED_REASON_").unwrap_or(reason);
                    *self
                        .degraded_by
                        .entry(reason.to_ascii_lowercase())
                        .or_default() += 1;
                } else {
                    self.ranked.push(took);
                }
            }
            Err(code) => *self.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Report) {
        self.sent += other.sent;
        self.degraded += other.degraded;
        self.skipped += other.skipped;
        self.latencies.extend(other.latencies);
        self.ranked.extend(other.ranked);
        self.failed_open.extend(other.failed_open);
        self.pacing.extend(other.pacing);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (reason, n) in other.degraded_by {
            *self.degraded_by.entry(reason).or_default() += n;
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        self.latencies.sort_unstable();
        self.ranked.sort_unstable();
        self.failed_open.sort_unstable();
        self.pacing.sort_unstable();
    }

    pub fn text(&self) -> String {
        let rps = self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let line = |name: &str, l: &[Duration]| {
            format!(
                "{name} ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
                ms(percentile(l, 50.0)),
                ms(percentile(l, 90.0)),
                ms(percentile(l, 99.0)),
                ms(percentile(l, 99.9)),
                ms(percentile(l, 100.0)),
            )
        };
        let mut out = format!(
            "{} requests in {:.2} s: {rps:.0} req/s; {} degraded\n",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.degraded,
        );
        out.push_str(&line("latency", &self.latencies));
        if self.degraded > 0 {
            out.push_str(&line("  ranked", &self.ranked));
            out.push_str(&line("  fail-open", &self.failed_open));
            for (reason, n) in &self.degraded_by {
                out.push_str(&format!("degraded {reason}: {n}\n"));
            }
        }
        if !self.pacing.is_empty() {
            out.push_str(&format!(
                "paced: sent after their due time by p50 {:.3}  p99 {:.3}  max {:.3} ms\n",
                ms(percentile(&self.pacing, 50.0)),
                ms(percentile(&self.pacing, 99.0)),
                ms(percentile(&self.pacing, 100.0)),
            ));
        }
        if self.skipped > 0 {
            out.push_str(&format!(
                "skipped (too many outstanding): {}\n",
                self.skipped
            ));
        }
        for (code, n) in &self.errors {
            out.push_str(&format!("errors {code}: {n}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let summary = |l: &[Duration]| {
            serde_json::json!({
                "count": l.len(),
                "p50_ms": ms(percentile(l, 50.0)),
                "p90_ms": ms(percentile(l, 90.0)),
                "p99_ms": ms(percentile(l, 99.0)),
                "max_ms": ms(percentile(l, 100.0)),
            })
        };
        serde_json::json!({
            "sent": self.sent,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "rps": self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9),
            "latency": summary(&self.latencies),
            "ranked": summary(&self.ranked),
            "fail_open": summary(&self.failed_open),
            "degraded": self.degraded_by,
            "errors": self.errors,
            "skipped": self.skipped,
            "pacing": summary(&self.pacing),
        })
    }
}

fn is_loopback(addr: &str) -> bool {
    let host = addr
        .split("://")
        .last()
        .unwrap_or(addr)
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `RankRequest` encoded before the load, sent as it is, with the user's id (with
/// `--users`) appended as field 1: protobuf readers take fields in any order.
#[derive(Debug, Clone, Default)]
struct Encoded {
    body: Bytes,
    user_id: Option<Arc<str>>,
}

impl Encoded {
    /// `request` encoded; its `user_id` left out when each call names its own.
    fn new(request: &pb::RankRequest, per_call_user: bool) -> Self {
        let body = if per_call_user && !request.user_id.is_empty() {
            let mut without = request.clone();
            without.user_id.clear();
            without.encode_to_vec()
        } else {
            request.encode_to_vec()
        };
        Self {
            body: body.into(),
            user_id: None,
        }
    }
}

/// Only ever encoded (the generator never reads one back).
impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.body);
        if let Some(user) = &self.user_id {
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, buf);
            prost::encoding::encode_varint(user.len() as u64, buf);
            buf.put_slice(user.as_bytes());
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.body.len()
            + self.user_id.as_ref().map_or(0, |u| {
                prost::encoding::key_len(1)
                    + prost::encoding::encoded_len_varint(u.len() as u64)
                    + u.len()
            })
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Writes `request` as one gRPC message: uncompressed, its length (big-endian u32), then it.
fn write_frame(path: &std::path::Path, request: &pb::RankRequest) -> Result<(), Failure> {
    let body = request.encode_to_vec();
    let len = u32::try_from(body.len())
        .map_err(|_| Failure("the request is over 4 GiB".into(), EXIT_USAGE))?;
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    std::fs::write(path, &frame)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display()), EXIT_USAGE))
}

/// Sends an encoded request to `tactful.v1.Ranker/Rank`, as the generated client would.
async fn rank(
    channel: &Channel,
    request: tonic::Request<Encoded>,
) -> Result<tonic::Response<pb::RankResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
    grpc.unary(
        request,
        PathAndQuery::from_static("/tactful.v1.Ranker/Rank"),
        pb::codec::ProstCodec::<Encoded, pb::RankResponse>::default(),
    )
    .await
}

/// What every request of a run shares.
#[derive(Clone)]
struct Shots {
    channels: Vec<Channel>,
    /// With `--health`: health checks are sent instead of rankings.
    health: Option<Vec<tonic_health::pb::health_client::HealthClient<Channel>>>,
    requests: Arc<Vec<Encoded>>,
    /// With `--users`: request `i` goes to user `i % len`.
    users: Option<Arc<Vec<Arc<str>>>>,
    timeout: Duration,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Shots {
    /// Sends request `i` and counts its answer into `report`, timed from `due`.
    async fn fire(&self, i: usize, due: Instant) -> Report {
        if let Some(health) = &self.health {
            let mut client = health[i % health.len()].clone();
            let mut req = tonic::Request::new(tonic_health::pb::HealthCheckRequest::default());
            req.set_timeout(self.timeout);
            let answer = client.check(req).await;
            // Counted as a ranked answer: what matters is that it came, and when.
            let served = pb::RankResponse::default();
            let mut report = Report::default();
            report.count(
                due.elapsed(),
                answer.as_ref().map(|_| &served).map_err(|s| s.code()),
            );
            return report;
        }
        let mut msg = self.requests[i % self.requests.len()].clone();
        if let Some(users) = &self.users {
            msg.user_id = Some(users[i % users.len()].clone());
        }
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        if let Some(token) = &self.authorization {
            req.metadata_mut().insert("authorization", token.clone());
        }
        let answer = rank(&self.channels[i % self.channels.len()], req).await;
        let mut report = Report::default();
        report.count(
            due.elapsed(),
            answer.as_ref().map(|r| r.get_ref()).map_err(|s| s.code()),
        );
        report
    }

    /// Closed loop: `concurrency` workers, each sending as soon as its last call answered.
    async fn closed(&self, count: usize, concurrency: usize, cap: Duration) -> Report {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (shots, next) = (self.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut local = Report::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || start.elapsed() > cap {
                        break;
                    }
                    local.merge(shots.fire(i, Instant::now()).await);
                }
                local
            }));
        }
        let mut report = Report::default();
        for w in workers {
            if let Ok(local) = w.await {
                report.merge(local);
            }
        }
        report.finish(start.elapsed());
        report
    }

    /// Open loop: request `i` is due at `i / rate` s, sent then whatever came back before.
    ///
    /// The due times come from a periodic timer of the kernel ([`Ticker`]) watched by the
    /// same thread that sends and receives: it wakes on the tick or on an answer, whichever
    /// comes first, with no other thread to hand requests over (a pacing thread woken for
    /// each request, which then woke this one, sent four times later at the median). tokio's
    /// own timer has a 1 ms
    /// granularity and released requests in bursts of about three at 3,000 req/s, a tail of
    /// the generator's own making. How late each send was is reported (`pacing`).
    async fn open(
        &self,
        count: usize,
        rate: u64,
        max_outstanding: usize,
        cap: Duration,
    ) -> Result<Report, Failure> {
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let ticker = Ticker::every(period)
            .map_err(|e| Failure(format!("cannot set the pacing timer: {e}"), EXIT_USAGE))?;
        // The first tick comes one period after the timer is set.
        let start = Instant::now() + period;
        let (tx, mut due_now) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        let pace = async move {
            let mut i = 0;
            while i < count {
                let Ok(ticks) = ticker.tick().await else {
                    break;
                };
                for _ in 0..ticks {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    if i >= count || due.duration_since(start) > cap {
                        return;
                    }
                    if tx.send((i, due)).is_err() {
                        return;
                    }
                    i += 1;
                }
            }
        };
        let pacer = tokio::spawn(pace);
        let outstanding = Arc::new(AtomicUsize::new(0));
        let mut calls = tokio::task::JoinSet::new();
        let mut report = Report::default();
        while let Some((i, due)) = due_now.recv().await {
            report.pacing.push(due.elapsed());
            // Collect what has answered, so finished calls do not pile up.
            while let Some(done) = calls.try_join_next() {
                if let Ok(r) = done {
                    report.merge(r);
                }
            }
            if outstanding.load(Ordering::Relaxed) >= max_outstanding {
                report.skipped += 1;
                continue;
            }
            outstanding.fetch_add(1, Ordering::Relaxed);
            let (shots, outstanding) = (self.clone(), outstanding.clone());
            calls.spawn(async move {
                let r = shots.fire(i, due).await;
                outstanding.fetch_sub(1, Ordering::Relaxed);
                r
            });
        }
        let _ = pacer.await;
        while let Some(done) = calls.join_next().await {
            if let Ok(r) = done {
                report.merge(r);
            }
        }
        report.finish(start.elapsed());
        Ok(report)
    }
}

/// `connections` channels to the target.
async fn channels(args: &BenchArgs) -> Result<Vec<Channel>, Failure> {
    let endpoint = args.access.endpoint(&args.addr)?.tcp_nodelay(true);
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Failure(format!("cannot reach {}: {e}", args.addr), EXIT_UNAVAILABLE))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// The requests to send: the payload file's, or 16 generated ones.
fn requests(args: &BenchArgs) -> Result<Vec<pb::RankRequest>, Failure> {
    let Some(path) = &args.payload else {
        return Ok((0..16)
            .map(|seed| {
                let mut r = rank_request(
                    &format!("bench-user-{seed}"),
                    args.candidates,
                    args.dim,
                    args.k,
                    seed,
                );
                r.policy = args.policy.clone();
                r.strict = args.strict;
                r
            })
            .collect());
    };
    let mut r = super::payload::read_rank_request(path).map_err(|e| Failure(e, EXIT_USAGE))?;
    if !args.policy.is_empty() {
        r.policy = args.policy.clone();
    }
    r.strict |= args.strict;
    Ok(vec![r])
}

/// Moves every candidate's embedding into the bytes form (`--embedding-bytes`).
fn to_embedding_bytes(r: &mut pb::RankRequest) {
    r.candidates
        .iter_mut()
        .for_each(pb::Candidate::use_embedding_bytes);
}

pub async fn run(args: BenchArgs) -> Result<(), Failure> {
    let local = is_loopback(&args.addr);
    if !args.allow_remote && !local {
        return Err(Failure(
            format!(
                "{} is not a loopback address; pass --allow-remote to load it",
                args.addr
            ),
            EXIT_USAGE,
        ));
    }
    if args.concurrency == 0 || args.connections == 0 || args.max_outstanding == 0 {
        return Err(Failure(
            "--concurrency, --connections and --max-outstanding must be above 0".into(),
            EXIT_USAGE,
        ));
    }
    if args.users == Some(0) {
        return Err(Failure("--users must be above 0".into(), EXIT_USAGE));
    }
    let events = args
        .events
        .events
        .map(|via| load_events::settle(&args, via))
        .transpose()?;
    let mut requests = requests(&args)?;
    let authorization = args.access.authorization()?;
    if args.catalog {
        let endpoint = args.access.endpoint(&args.addr)?;
        super::catalog::move_to_catalog(&endpoint, authorization.as_ref(), &mut requests).await?;
    }
    if args.embedding_bytes {
        requests.iter_mut().for_each(to_embedding_bytes);
    }
    if let Some(path) = &args.write_frame {
        return write_frame(path, &requests[0]);
    }
    let channels = channels(&args).await?;
    // Looked up before any load: a scan of /proc is not free.
    let server_pid = proc_usage::server_pid(args.server_pid, &args.addr, local);
    if let Some(settings) = events {
        return load_events::run(&args, settings, channels, server_pid).await;
    }
    let users = args.users.map(|n| {
        let base = match &args.payload {
            Some(_) if !requests[0].user_id.is_empty() => requests[0].user_id.clone(),
            _ => "bench-user".to_owned(),
        };
        Arc::new(
            (0..n)
                .map(|j| Arc::<str>::from(format!("{base}-{j}")))
                .collect::<Vec<_>>(),
        )
    });
    let first = &requests[0];
    let (n, dim, k) = (
        first.candidates.len(),
        first.candidates.first().map_or(0, |c| c.embedding.len()),
        first.k,
    );
    let policy = if first.policy.is_empty() {
        "default".to_owned()
    } else {
        first.policy.clone()
    };
    let health = args.health.then(|| {
        channels
            .iter()
            .cloned()
            .map(tonic_health::pb::health_client::HealthClient::new)
            .collect()
    });
    let encoded = requests
        .iter()
        .map(|r| Encoded::new(r, users.is_some()))
        .collect();
    let shots = Shots {
        channels,
        health,
        requests: Arc::new(encoded),
        users,
        timeout: Duration::from_millis(args.timeout_ms),
        authorization,
    };
    let cap = Duration::from_secs(args.max_seconds);
    // The warm-up is closed loop either way: it only opens connections and fills caches.
    shots.closed(args.warmup, args.concurrency, cap).await;
    let server = server_pid.and_then(|pid| Watch::start(Some(pid)));
    let client = Watch::start(None);
    let report = if args.rate > 0 {
        shots
            .open(args.requests, args.rate, args.max_outstanding, cap)
            .await?
    } else {
        shots.closed(args.requests, args.concurrency, cap).await
    };
    let server = server.and_then(Watch::stop);
    let client = client.and_then(Watch::stop);
    let answered = report.sent as u64;
    if args.json {
        let mut out = report.json();
        out["server"] = server.map_or(serde_json::Value::Null, |u| u.json(answered));
        out["client"] = client.map_or(serde_json::Value::Null, |u| u.json(answered));
        println!("{out}");
        return Ok(());
    }
    let mode = if args.rate > 0 {
        format!("open loop at {} req/s", args.rate)
    } else {
        format!("concurrency {}", args.concurrency)
    };
    let source = match &args.payload {
        Some(path) => format!(" from {}", path.display()),
        None => String::new(),
    };
    let users = args
        .users
        .map(|u| format!(", {u} users"))
        .unwrap_or_default();
    if args.health {
        println!("Health/Check instead of Rank (the transport's own cost):");
    }
    println!(
        "Rank: {n} candidates, dim {dim}, k {k}{source}, policy {policy:?}, {mode}, \
         connections {}{users}",
        args.connections
    );
    if args.catalog {
        println!("candidates carry ids, scores and evidence; the rest comes from the catalog");
    }
    print!("{}", report.text());
    print!("{}", proc_usage::text(server, client, answered, "request"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_pass_by_default() {
        assert!(is_loopback("http://127.0.0.1:50051"));
        assert!(is_loopback("http://localhost:50051"));
        assert!(is_loopback("http://[::1]:50051"));
        assert!(!is_loopback("http://10.0.0.5:50051"));
        assert!(!is_loopback("http://example.com:50051"));
    }

    #[test]
    fn answers_are_counted_as_ranked_failed_open_or_errors() {
        let mut report = Report::default();
        let ranked = pb::RankResponse::default();
        let overloaded = pb::RankResponse {
            degraded: true,
            degraded_reason: pb::DegradedReason::Overload.into(),
            ..Default::default()
        };
        report.count(Duration::from_millis(2), Ok(&ranked));
        report.count(Duration::from_millis(1), Ok(&overloaded));
        report.count(
            Duration::from_millis(9),
            Err(tonic::Code::ResourceExhausted),
        );
        report.finish(Duration::from_secs(1));
        assert_eq!((report.sent, report.degraded), (3, 1));
        assert_eq!(report.ranked, [Duration::from_millis(2)]);
        assert_eq!(report.failed_open, [Duration::from_millis(1)]);
        assert_eq!(report.degraded_by.get("overload"), Some(&1));
        assert_eq!(report.errors.get("ResourceExhausted"), Some(&1));
        let json = report.json();
        assert_eq!(json["degraded"]["overload"], 1);
        assert_eq!(json["ranked"]["count"], 1);
        assert!(report.text().contains("degraded overload: 1"));
    }

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let report = Report {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Default::default()
        };
        assert_eq!(
            percentile(&report.latencies, 50.0),
            Duration::from_millis(51)
        );
        assert_eq!(
            percentile(&report.latencies, 99.0),
            Duration::from_millis(99)
        );
        assert_eq!(
            percentile(&report.latencies, 100.0),
            Duration::from_millis(100)
        );
    }
}

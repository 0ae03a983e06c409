//! `tactful bench --events record|stream`: load for the Events service.
//!
//! - `record`: `--concurrency` workers each send batches of `--batch` events through
//!   Events.Record, the next as soon as the last was acknowledged.
//! - `stream`: `--concurrency` client streams through Events.Stream, each carrying its share
//!   (or `--per-stream` events, then a new stream), encoded as fast as HTTP/2 takes them.
//!
//! Events are generated with a realistic mix over `--users` users (a few heavy users, most
//! light; mostly impressions, some engagement, `--explicit-share` of explicit feedback and
//! purchases, which the server makes durable before it acknowledges). Both stop after
//! `--event-count` events or `--max-seconds`, and report acknowledged events per second,
//! rejections, and failed calls by gRPC code with the events they carried.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Args;
use tonic::transport::Channel;

use super::EXIT_USAGE;
use super::client::Failure;
use super::load::{BenchArgs, percentile};
use super::proc_usage::{self, Watch};
use crate::pb;
use crate::workload::EventMix;

/// Which Events method carries the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Batches through Events.Record.
    Record,
    /// Client streams through Events.Stream.
    Stream,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Load the Events service instead of Rank: `record` (batches through Events.Record) or
    /// `stream` (Events.Stream client streams). Rank's --requests, --candidates, --dim, --k,
    /// --policy, --strict, --payload, --rate and --max-outstanding do not apply; --warmup counts
    /// events.
    #[arg(
        long,
        value_enum,
        value_name = "record|stream",
        conflicts_with_all = [
            "requests", "candidates", "dim", "k", "policy", "strict", "payload", "rate",
            "max_outstanding",
        ]
    )]
    pub events: Option<Via>,
    /// Events to measure, after the warm-up [default: 200000].
    #[arg(long, value_name = "N", requires = "events")]
    pub event_count: Option<u64>,
    /// Events per Record call (record only) [default: 32].
    #[arg(long, value_name = "N", requires = "events")]
    pub batch: Option<usize>,
    /// Events per stream before it is closed and acknowledged (stream only) [default: each of
    /// the --concurrency streams carries its whole share].
    #[arg(long, value_name = "N", requires = "events")]
    pub per_stream: Option<u64>,
    /// Share of the events that are explicit feedback (not interested, fewer like this, blocks)
    /// or purchases, from 0 to 1: the server makes those durable (fsync) before it
    /// acknowledges [default: 0.01].
    #[arg(long, value_name = "SHARE", requires = "events")]
    pub explicit_share: Option<f64>,
}

const DEFAULT_EVENT_COUNT: u64 = 200_000;
const DEFAULT_BATCH: usize = 32;
const DEFAULT_USERS: usize = 10_000;
const DEFAULT_EXPLICIT_SHARE: f64 = 0.01;
/// Events from an [`EventMix`], always ready: tonic then packs as many into each HTTP/2 frame as
/// its buffer takes (an iterator stream would yield every few dozen items and cut the frames
/// short).
struct Generated {
    mix: EventMix,
    left: u64,
    deadline: Instant,
    sent: Arc<AtomicU64>,
}

impl tokio_stream::Stream for Generated {
    type Item = pb::Event;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<pb::Event>> {
        // The clock is read every 256 events: cheap enough, and a stream ends within a
        // millisecond of the deadline.
        if self.left == 0 || (self.left.is_multiple_of(256) && Instant::now() >= self.deadline) {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Some(self.mix.next_event()))
    }
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct EventsReport {
    /// Events sent in calls that were answered, successfully or not.
    pub sent: u64,
    pub applied: u64,
    pub rejected: u64,
    /// Calls answered (Record calls or streams).
    pub calls: u64,
    /// Latencies of successful calls, sorted.
    pub latencies: Vec<Duration>,
    /// Failed calls by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// Events carried by failed calls (none of them acknowledged).
    pub failed_events: u64,
    pub elapsed: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl EventsReport {
    fn count(
        &mut self,
        sent: u64,
        took: Duration,
        answer: Result<&pb::RecordResponse, tonic::Code>,
    ) {
        self.sent += sent;
        self.calls += 1;
        match answer {
            Ok(r) => {
                self.applied += u64::from(r.applied);
                self.rejected += u64::from(r.rejected_total);
                self.latencies.push(took);
            }
            Err(code) => {
                *self.errors.entry(format!("{code:?}")).or_default() += 1;
                self.failed_events += sent;
            }
        }
    }

    fn merge(&mut self, other: EventsReport) {
        self.sent += other.sent;
        self.applied += other.applied;
        self.rejected += other.rejected;
        self.calls += other.calls;
        self.latencies.extend(other.latencies);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.failed_events += other.failed_events;
    }

    /// Acknowledged events per second: applied and rejected alike were answered for.
    pub fn per_second(&self) -> f64 {
        (self.applied + self.rejected) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn text(&self) -> String {
        let l = &self.latencies;
        let mut out = format!(
            "{} events in {:.2} s: {:.0} events/s acknowledged; {} applied, {} rejected\n",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.applied,
            self.rejected,
        );
        out.push_str(&format!(
            "{} calls, latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n",
            self.calls,
            ms(percentile(l, 50.0)),
            ms(percentile(l, 90.0)),
            ms(percentile(l, 99.0)),
            ms(percentile(l, 100.0)),
        ));
        for (code, n) in &self.errors {
            out.push_str(&format!("errors {code}: {n} calls\n"));
        }
        if self.failed_events > 0 {
            out.push_str(&format!(
                "events in failed calls (not acknowledged): {}\n",
                self.failed_events
            ));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let l = &self.latencies;
        serde_json::json!({
            "sent": self.sent,
            "applied": self.applied,
            "rejected": self.rejected,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "events_per_s": self.per_second(),
            "calls": self.calls,
            "call_latency": {
                "count": l.len(),
                "p50_ms": ms(percentile(l, 50.0)),
                "p90_ms": ms(percentile(l, 90.0)),
                "p99_ms": ms(percentile(l, 99.0)),
                "max_ms": ms(percentile(l, 100.0)),
            },
            "errors": self.errors,
            "failed_events": self.failed_events,
        })
    }
}

/// The settled parameters of a run.
#[derive(Clone)]
struct Plan {
    via: Via,
    users: Arc<Vec<String>>,
    explicit_share: f64,
    batch: usize,
    per_stream: u64,
    concurrency: usize,
    timeout: Duration,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    clients: Vec<pb::events_client::EventsClient<Channel>>,
}

impl Plan {
    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        if let Some(token) = &self.authorization {
            req.metadata_mut().insert("authorization", token.clone());
        }
        req
    }

    /// Sends `count` events (split over the workers) before `cap` passes; `seed` makes the
    /// events of a phase differ from another's.
    async fn run(&self, count: u64, cap: Duration, seed: u64) -> EventsReport {
        let start = Instant::now();
        let deadline = start + cap;
        let workers = self.concurrency as u64;
        let mut tasks = Vec::new();
        for w in 0..workers {
            let share = count / workers + u64::from(w < count % workers);
            let plan = self.clone();
            let mix = EventMix::new(
                self.users.clone(),
                self.explicit_share,
                seed.wrapping_mul(1_000_003).wrapping_add(w),
            );
            let client = self.clients[w as usize % self.clients.len()].clone();
            tasks.push(tokio::spawn(async move {
                match plan.via {
                    Via::Record => plan.record(client, mix, share, deadline).await,
                    Via::Stream => plan.stream(client, mix, share, deadline).await,
                }
            }));
        }
        let mut report = EventsReport::default();
        for t in tasks {
            if let Ok(r) = t.await {
                report.merge(r);
            }
        }
        report.elapsed = start.elapsed();
        report.latencies.sort_unstable();
        report
    }

    async fn record(
        &self,
        mut client: pb::events_client::EventsClient<Channel>,
        mut mix: EventMix,
        share: u64,
        deadline: Instant,
    ) -> EventsReport {
        let mut report = EventsReport::default();
        let mut left = share;
        while left > 0 && Instant::now() < deadline {
            let n = left.min(self.batch as u64);
            left -= n;
            let events = (0..n).map(|_| mix.next_event()).collect();
            let started = Instant::now();
            let answer = client
                .record(self.request(pb::RecordRequest { events }, self.timeout))
                .await;
            report.count(
                n,
                started.elapsed(),
                answer.as_ref().map(|r| r.get_ref()).map_err(|s| s.code()),
            );
        }
        report
    }

    async fn stream(
        &self,
        mut client: pb::events_client::EventsClient<Channel>,
        mut mix: EventMix,
        share: u64,
        deadline: Instant,
    ) -> EventsReport {
        let mut report = EventsReport::default();
        let mut left = share;
        while left > 0 && Instant::now() < deadline {
            let n = if self.per_stream == 0 {
                left
            } else {
                left.min(self.per_stream)
            };
            let sent = Arc::new(AtomicU64::new(0));
            // The stream owns its generator: a new one each, seeded from this worker's.
            let events = Generated {
                mix: mix.fork(),
                left: n,
                deadline,
                sent: sent.clone(),
            };
            // The deadline covers the whole stream: sending it, then its last events' fsync.
            let timeout = deadline.saturating_duration_since(Instant::now()) + self.timeout;
            let started = Instant::now();
            let answer = client.stream(self.request(events, timeout)).await;
            let sent = sent.load(Ordering::Relaxed);
            left -= sent.min(left);
            report.count(
                sent,
                started.elapsed(),
                answer.as_ref().map(|r| r.get_ref()).map_err(|s| s.code()),
            );
            if sent < n {
                break;
            }
        }
        report
    }
}

/// What a run is to do, checked before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub via: Via,
    pub count: u64,
    pub users: usize,
    pub explicit_share: f64,
    pub batch: usize,
    /// 0: each stream carries its worker's whole share.
    pub per_stream: u64,
}

/// The settings of `args`, or why they do not make sense for `via` (flags of the other method;
/// zeros; a share outside 0..1). Clap has already refused Rank's flags and events flags
/// without `--events`.
pub fn settle(args: &BenchArgs, via: Via) -> Result<Settings, Failure> {
    let e = &args.events;
    let usage = |m: &str| Err(Failure(m.to_owned(), EXIT_USAGE));
    if via == Via::Stream && e.batch.is_some() {
        return usage("--batch applies to --events record; streams carry events one by one");
    }
    if via == Via::Record && e.per_stream.is_some() {
        return usage("--per-stream applies to --events stream");
    }
    let settings = Settings {
        via,
        count: e.event_count.unwrap_or(DEFAULT_EVENT_COUNT),
        users: args.users.unwrap_or(DEFAULT_USERS),
        explicit_share: e.explicit_share.unwrap_or(DEFAULT_EXPLICIT_SHARE),
        batch: e.batch.unwrap_or(DEFAULT_BATCH),
        per_stream: e.per_stream.unwrap_or(0),
    };
    if settings.batch == 0 || settings.users == 0 || e.per_stream == Some(0) {
        return usage("--batch, --per-stream and --users must be above 0");
    }
    if !(0.0..=1.0).contains(&settings.explicit_share) {
        return usage("--explicit-share must be a share from 0 to 1");
    }
    Ok(settings)
}

/// Runs the events bench; `channels` are connected, the target already checked.
pub async fn run(
    args: &BenchArgs,
    settings: Settings,
    channels: Vec<Channel>,
    server_pid: Option<u32>,
) -> Result<(), Failure> {
    let Settings {
        via,
        count,
        users,
        explicit_share,
        batch,
        per_stream,
    } = settings;
    let plan = Plan {
        via,
        users: crate::workload::users(users),
        explicit_share,
        batch,
        per_stream,
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
        authorization: args.access.authorization()?,
        clients: channels
            .into_iter()
            .map(pb::events_client::EventsClient::new)
            .collect(),
    };
    let cap = Duration::from_secs(args.max_seconds);
    if args.warmup > 0 {
        plan.run(args.warmup as u64, cap, 1).await;
    }
    let server = server_pid.and_then(|pid| Watch::start(Some(pid)));
    let client = Watch::start(None);
    let report = plan.run(count, cap, 2).await;
    let server = server.and_then(Watch::stop);
    let client = client.and_then(Watch::stop);
    let acknowledged = report.applied + report.rejected;
    if args.json {
        let mut out = report.json();
        out["via"] = serde_json::json!(format!("{via:?}").to_ascii_lowercase());
        out["server"] = server.map_or(serde_json::Value::Null, |u| u.json(acknowledged));
        out["client"] = client.map_or(serde_json::Value::Null, |u| u.json(acknowledged));
        println!("{out}");
        return Ok(());
    }
    let how = match via {
        Via::Record => format!(
            "Events.Record: {} callers, batches of {batch}",
            args.concurrency
        ),
        Via::Stream => format!("Events.Stream: {} streams", args.concurrency),
    };
    println!(
        "{how}, {users} users, {:.1}% explicit, connections {}",
        explicit_share * 100.0,
        args.connections
    );
    print!("{}", report.text());
    print!(
        "{}",
        proc_usage::text(server, client, acknowledged, "event")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench_args(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        use clap::Parser;
        let cli = super::super::Cli::try_parse_from(["tactful", "bench"].iter().chain(args))?;
        match cli.command {
            super::super::Command::Bench(b) => Ok(b),
            _ => unreachable!("parsed as bench"),
        }
    }

    #[test]
    fn flags_of_the_other_load_are_refused_clearly() {
        for (args, says) in [
            (&["--events", "stream", "--k", "5"][..], "--k"),
            (&["--events", "record", "--payload", "p.json"], "--payload"),
            (&["--events", "record", "--requests", "9"], "--requests"),
            (&["--events", "stream", "--rate", "100"], "--rate"),
            (&["--batch", "8"], "--events"),
            (&["--event-count", "8"], "--events"),
            (
                &["--payload", "p.json", "--candidates", "5"],
                "--candidates",
            ),
            (&["--payload", "p.json", "--dim", "0"], "--dim"),
            (&["--events", "sideways"], "sideways"),
        ] {
            let err = bench_args(args).unwrap_err().to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
        let fine = bench_args(&[
            "--payload",
            "p.json",
            "--users",
            "8",
            "--policy",
            "identity",
        ]);
        assert!(fine.is_ok());
        let fine = bench_args(&["--events", "stream", "--users", "8", "--server-pid", "1"]);
        assert!(fine.is_ok());
    }

    #[test]
    fn events_settings_default_and_refuse_what_does_not_apply() {
        let args = bench_args(&["--events", "record"]).unwrap();
        let Ok(s) = settle(&args, Via::Record) else {
            panic!("the defaults are refused");
        };
        assert_eq!(
            (s.count, s.users, s.batch, s.per_stream),
            (200_000, 10_000, 32, 0)
        );
        assert_eq!(s.explicit_share, 0.01);
        for (args, via, says) in [
            (
                &["--events", "stream", "--batch", "8"][..],
                Via::Stream,
                "--batch",
            ),
            (
                &["--events", "record", "--per-stream", "8"],
                Via::Record,
                "--per-stream",
            ),
            (
                &["--events", "record", "--batch", "0"],
                Via::Record,
                "above 0",
            ),
            (
                &["--events", "stream", "--users", "0"],
                Via::Stream,
                "above 0",
            ),
            (
                &["--events", "stream", "--explicit-share", "1.5"],
                Via::Stream,
                "from 0 to 1",
            ),
        ] {
            let Err(Failure(message, code)) = settle(&bench_args(args).unwrap(), via) else {
                panic!("{args:?} accepted");
            };
            assert!(message.contains(says), "{args:?}: {message}");
            assert_eq!(code, EXIT_USAGE);
        }
    }

    #[test]
    fn reports_count_acknowledged_events_and_failed_calls() {
        let mut r = EventsReport::default();
        let ok = pb::RecordResponse {
            applied: 30,
            rejected_total: 2,
            ..Default::default()
        };
        r.count(32, Duration::from_millis(3), Ok(&ok));
        r.count(32, Duration::from_millis(9), Err(tonic::Code::Unavailable));
        r.elapsed = Duration::from_secs(1);
        assert_eq!((r.sent, r.applied, r.rejected, r.calls), (64, 30, 2, 2));
        assert_eq!(r.failed_events, 32);
        assert_eq!(r.per_second(), 32.0);
        let j = r.json();
        assert_eq!(j["errors"]["Unavailable"], 1);
        assert_eq!(j["call_latency"]["count"], 1);
        assert!(r.text().contains("errors Unavailable: 1 calls"));
    }
}

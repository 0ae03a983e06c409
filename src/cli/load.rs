//! `tactful bench`: a closed-loop load generator for Rank over gRPC. Each of `concurrency`
//! workers sends its next request as soon as the last one answered, over `connections` HTTP/2
//! connections, until `requests` were sent or `max_seconds` passed. It reports throughput,
//! latency percentiles and errors by gRPC code. Bounded in count and time; loopback targets
//! only unless `--allow-remote` is given.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;

use super::client::Failure;
use super::{EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::pb;
use crate::workload::rank_request;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, env = "TACTFUL_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Requests to measure (after the warm-up).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Requests sent first and not measured.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// HTTP/2 connections shared by the workers.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Candidates per request.
    #[arg(long, default_value_t = 200)]
    pub candidates: usize,
    /// Embedding length (0 = none).
    #[arg(long, default_value_t = 32)]
    pub dim: usize,
    #[arg(long, default_value_t = 20)]
    pub k: u32,
    #[arg(long, default_value = "")]
    pub policy: String,
    /// Deadline sent with each request, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Stop after this many seconds whatever the count.
    #[arg(long, default_value_t = 60)]
    pub max_seconds: u64,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub access: super::Access,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub elapsed: Duration,
    /// Latencies of successful calls, sorted.
    pub latencies: Vec<Duration>,
    pub errors: BTreeMap<String, usize>,
    pub degraded: usize,
}

impl Report {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    pub fn text(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let rps = self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let mut out = format!(
            "{} requests in {:.2} s: {rps:.0} req/s; {} degraded\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.degraded,
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(99.9)),
            ms(self.percentile(100.0)),
        );
        for (code, n) in &self.errors {
            out.push_str(&format!("errors {code}: {n}\n"));
        }
        out
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

pub async fn run(args: BenchArgs) -> Result<(), Failure> {
    if !args.allow_remote && !is_loopback(&args.addr) {
        return Err(Failure(
            format!(
                "{} is not a loopback address; pass --allow-remote to load it",
                args.addr
            ),
            EXIT_USAGE,
        ));
    }
    if args.concurrency == 0 || args.connections == 0 {
        return Err(Failure(
            "--concurrency and --connections must be above 0".into(),
            EXIT_USAGE,
        ));
    }
    let endpoint = args.access.endpoint(&args.addr)?.tcp_nodelay(true);
    let authorization = args.access.authorization()?;
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Failure(format!("cannot reach {}: {e}", args.addr), EXIT_UNAVAILABLE))?;
        clients.push(pb::ranker_client::RankerClient::new(channel));
    }
    let requests: Vec<pb::RankRequest> = (0..16)
        .map(|seed| {
            let mut r = rank_request(
                &format!("bench-user-{seed}"),
                args.candidates,
                args.dim,
                args.k,
                seed,
            );
            r.policy = args.policy.clone();
            r
        })
        .collect();

    let timeout = Duration::from_millis(args.timeout_ms);
    let one_pass = |count: usize, cap: Duration| {
        let (clients, requests) = (clients.clone(), requests.clone());
        let concurrency = args.concurrency;
        let authorization = authorization.clone();
        async move {
            let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let start = Instant::now();
            let mut workers = Vec::new();
            for w in 0..concurrency {
                let mut client = clients[w % clients.len()].clone();
                let (next, requests) = (next.clone(), requests.clone());
                let authorization = authorization.clone();
                workers.push(tokio::spawn(async move {
                    let mut local = Report::default();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count || start.elapsed() > cap {
                            break;
                        }
                        let mut req = tonic::Request::new(requests[i % requests.len()].clone());
                        req.set_timeout(timeout);
                        if let Some(token) = &authorization {
                            req.metadata_mut().insert("authorization", token.clone());
                        }
                        let t = Instant::now();
                        match client.rank(req).await {
                            Ok(r) => {
                                local.latencies.push(t.elapsed());
                                local.degraded += usize::from(r.get_ref().degraded);
                            }
                            Err(s) => {
                                *local.errors.entry(format!("{:?}", s.code())).or_default() += 1
                            }
                        }
                        local.sent += 1;
                    }
                    local
                }));
            }
            let mut report = Report::default();
            for w in workers {
                if let Ok(local) = w.await {
                    report.sent += local.sent;
                    report.degraded += local.degraded;
                    report.latencies.extend(local.latencies);
                    for (code, n) in local.errors {
                        *report.errors.entry(code).or_default() += n;
                    }
                }
            }
            report.elapsed = start.elapsed();
            report.latencies.sort_unstable();
            report
        }
    };
    let cap = Duration::from_secs(args.max_seconds);
    one_pass(args.warmup, cap).await;
    let report = one_pass(args.requests, cap).await;
    println!(
        "Rank: {} candidates, dim {}, k {}, policy {:?}, concurrency {}, connections {}",
        args.candidates,
        args.dim,
        args.k,
        if args.policy.is_empty() {
            "default"
        } else {
            &args.policy
        },
        args.concurrency,
        args.connections
    );
    print!("{}", report.text());
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
    fn percentiles_come_from_the_sorted_latencies() {
        let report = Report {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Default::default()
        };
        assert_eq!(report.percentile(50.0), Duration::from_millis(51));
        assert_eq!(report.percentile(99.0), Duration::from_millis(99));
        assert_eq!(report.percentile(100.0), Duration::from_millis(100));
    }
}

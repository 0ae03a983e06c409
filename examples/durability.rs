//! Measures the durable state store in-process, with the same allocator as the server:
//!
//! - `recovery`: builds a data directory holding N typical users (20 impressions, 5 clicks,
//!   2 purchases, 3 explicit events each), then times reopening it after a crash with the
//!   default snapshot settings, after a crash with everything still in the log (no snapshot
//!   ever taken: the worst case), and after a clean shutdown.
//! - `per-user`: loads N typical users into memory (no durability, no cap) and reports what
//!   each costs: the growth of the process RSS per user, and the store's own account.
//!   `--kind heavy` loads users with 256 items and 128 categories and brands instead, `--kind
//!   new` users with a first few events.
//! - `memory-cap`: streams N distinct users (4 impressions, a blocked brand and a "not
//!   interested" each) into a store capped at M MiB, samples the process RSS, then checks that
//!   a sample of users evicted along the way still has its explicit feedback.
//!
//! ```text
//! cargo run --release --example durability -- recovery --users 1000000
//! cargo run --release --example durability -- per-user --users 1000000
//! cargo run --release --example durability -- per-user --users 100000 --kind heavy
//! cargo run --release --example durability -- memory-cap --users 5000000 --cap-mib 256
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use tactful::rank::DimensionSet;
use tactful::state::{Event, EventKind, StateBackend, StateConfig, UserStore};
use tactful::time::now_ms;

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tactful::alloc::Mimalloc = tactful::alloc::Mimalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Recovery {
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
    },
    PerUser {
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// What each user did: `typical` (30 events), `heavy` (256 items in 128 categories and
        /// brands, 551 events) or `new` (3 impressions and a click).
        #[arg(long, value_enum, default_value_t = Kind::Typical)]
        kind: Kind,
    },
    MemoryCap {
        #[arg(long, default_value_t = 5_000_000)]
        users: u64,
        #[arg(long, default_value_t = 256)]
        cap_mib: usize,
        /// Users checked for their explicit feedback at the end.
        #[arg(long, default_value_t = 2_000)]
        sample: u64,
    },
}

/// A kind of user, for `per-user`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Typical,
    Heavy,
    New,
}

impl Kind {
    fn events(self) -> u64 {
        match self {
            Kind::Typical => 30,
            Kind::Heavy => 551,
            Kind::New => 4,
        }
    }
}

fn event(kind: EventKind, at_ms: i64, item: u64, brand: u64) -> Event {
    let mut e = Event::new(kind, at_ms);
    e.item_id = item;
    e.brand_id = brand;
    e.category_id = 1 + item % 50;
    e
}

/// What the process holds in RAM now and at its peak, in MiB, from /proc.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn dir_mib(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / (1 << 20) as f64
}

/// Records a typical user's history.
async fn typical_user(store: &UserStore, u: u64, now: i64) {
    let key = store.key(&format!("user-{u}"));
    let mut events = Vec::with_capacity(30);
    for i in 0..20 {
        events.push(event(
            EventKind::Impression,
            now - 60_000 + i,
            u * 7 + i as u64 % 10 + 1,
            0,
        ));
    }
    for i in 0..5 {
        events.push(event(
            EventKind::Click,
            now - 30_000 + i,
            u * 7 + i as u64 + 1,
            0,
        ));
    }
    for i in 0..2 {
        events.push(event(
            EventKind::Purchase,
            now - 20_000 + i,
            u * 7 + 1 + i as u64,
            0,
        ));
    }
    events.push(event(EventKind::BlockBrand, now - 10_000, 0, 1 + u % 9_999));
    events.push(event(EventKind::NotInterested, now - 9_000, u * 7 + 9, 0));
    events.push(event(EventKind::FewerLikeThis, now - 8_000, u * 7 + 9, 0));
    let mut last = Default::default();
    for e in &events {
        last = store.record(key, e, now).await.expect("valid event");
    }
    if u.is_multiple_of(10_000) {
        store.durable(last).await.expect("durable");
    }
}

/// Records a heavy user's history: 2 impressions of each of 256 items spread over a catalog of
/// 50 million (64 categories, 64 brands), 32 clicks, 4 purchases and the typical user's
/// explicit words.
async fn heavy_user(store: &UserStore, u: u64, now: i64) {
    let key = store.key(&format!("user-{u}"));
    let item = |i: u64| 1 + (u * 256 + i).wrapping_mul(2_654_435_761) % 50_000_000;
    let grouped = |kind, at_ms, i: u64| {
        let mut e = event(kind, at_ms, item(i), 0);
        e.category_id = 1 + (u + i) % 64;
        e.brand_id = 1_000 + (u + i / 2) % 64;
        e
    };
    let mut events = Vec::with_capacity(560);
    for round in 0..2 {
        for i in 0..256 {
            let at = now - 600_000 + round * 300_000 + i as i64 * 1000;
            events.push(grouped(EventKind::Impression, at, i));
        }
    }
    for i in 0..32 {
        events.push(grouped(EventKind::Click, now - 20_000 + i as i64, i * 8));
    }
    for i in 0..4 {
        events.push(grouped(
            EventKind::Purchase,
            now - 15_000 + i as i64,
            i * 64,
        ));
    }
    events.push(event(EventKind::BlockBrand, now - 10_000, 0, 1 + u % 9_999));
    events.push(event(EventKind::NotInterested, now - 9_000, item(9), 0));
    events.push(event(EventKind::FewerLikeThis, now - 8_000, item(9), 0));
    for e in &events {
        store.record(key, e, now).await.expect("valid event");
    }
}

/// Records a new user's first steps: three impressions and a click.
async fn new_user(store: &UserStore, u: u64, now: i64) {
    let key = store.key(&format!("user-{u}"));
    for i in 0..3 {
        let e = event(
            EventKind::Impression,
            now - 5_000 + i,
            u * 3 + i as u64 + 1,
            0,
        );
        store.record(key, &e, now).await.expect("valid event");
    }
    let e = event(EventKind::Click, now - 1_000, u * 3 + 1, 0);
    store.record(key, &e, now).await.expect("valid event");
}

/// The data directory under a run's directory; its key store goes beside it, in the same one.
fn data_dir(dir: &Path) -> StateBackend {
    StateBackend::Disk(dir.join("data"))
}

async fn build(dir: &Path, config: StateConfig, users: u64) -> (UserStore, f64) {
    let store = UserStore::open(config, &data_dir(dir)).expect("open");
    let now = now_ms();
    let started = Instant::now();
    for u in 0..users {
        typical_user(&store, u, now).await;
    }
    let t = store
        .record(
            store.key("last"),
            &event(EventKind::BlockBrand, now, 0, 1),
            now,
        )
        .await
        .expect("valid");
    store.durable(t).await.expect("durable");
    (store, started.elapsed().as_secs_f64())
}

async fn time_open(dir: &Path, config: StateConfig, users: u64) -> f64 {
    let started = Instant::now();
    let store = UserStore::open(config, &data_dir(dir)).expect("recover");
    let took = started.elapsed().as_secs_f64();
    // Recovery must have restored the users' words, not just returned quickly.
    for u in (0..users).step_by((users / 100).max(1) as usize) {
        let key = store.key(&format!("user-{u}"));
        let view = store
            .view(key, now_ms(), DimensionSet::EMPTY, false)
            .await
            .expect("view");
        assert!(
            view.is_brand_blocked(1 + u % 9_999),
            "user-{u} lost a block"
        );
    }
    store.abandon();
    took
}

async fn recovery(users: u64) {
    let events = users * 30;
    println!("recovery: {users} users, {events} events");
    // 1. Default settings, killed without a clean shutdown: the log since the last snapshot.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, built) = build(dir.path(), StateConfig::default(), users).await;
    println!(
        "  built in {built:.1} s ({:.0} events/s); data dir {:.0} MiB; {} snapshots taken",
        events as f64 / built,
        dir_mib(dir.path()),
        store.stats().snapshots_total
    );
    store.abandon();
    let crash = time_open(dir.path(), StateConfig::default(), users).await;
    println!("  crash, default snapshots:      recovered in {crash:.2} s");

    // 2. No snapshot ever taken: every event of every user is replayed from the log.
    let never = StateConfig {
        snapshot_interval_ms: i64::MAX / 2,
        snapshot_log_bytes: u64::MAX,
        memory_cap_bytes: usize::MAX,
        ..StateConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = build(dir.path(), never.clone(), users).await;
    println!("  log only: data dir {:.0} MiB", dir_mib(dir.path()));
    store.abandon();
    let worst = time_open(dir.path(), never, users).await;
    println!("  crash, whole history in log:   recovered in {worst:.2} s");

    // 3. Clean shutdown: a last snapshot, nothing to replay.
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = build(dir.path(), StateConfig::default(), users).await;
    tokio::task::spawn_blocking(move || store.close())
        .await
        .expect("close");
    let clean = time_open(dir.path(), StateConfig::default(), users).await;
    println!("  clean shutdown:                recovered in {clean:.2} s");
}

async fn per_user(users: u64, kind: Kind) {
    let config = StateConfig {
        memory_cap_bytes: usize::MAX,
        ..StateConfig::default()
    };
    let store = UserStore::open(config, &StateBackend::Memory).expect("open");
    let (before, _) = rss_mib();
    let now = now_ms();
    let started = Instant::now();
    for u in 0..users {
        match kind {
            Kind::Typical => typical_user(&store, u, now).await,
            Kind::Heavy => heavy_user(&store, u, now).await,
            Kind::New => new_user(&store, u, now).await,
        }
    }
    let took = started.elapsed().as_secs_f64();
    let (after, _) = rss_mib();
    let stats = store.stats();
    let per_user = |mib: f64| mib * (1 << 20) as f64 / users as f64;
    println!(
        "per-user: {users} {} users ({} events each) in {took:.1} s ({:.0} events/s); \
         rss grew {:.0} MiB = {:.0} bytes per user; the store accounts {:.0} bytes per user",
        kind.to_possible_value().expect("named").get_name(),
        kind.events(),
        users as f64 * kind.events() as f64 / took,
        after - before,
        per_user(after - before),
        stats.bytes as f64 / users as f64,
    );
    store.abandon();
}

async fn memory_cap(users: u64, cap_mib: usize, sample: u64) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StateConfig {
        memory_cap_bytes: cap_mib << 20,
        ..StateConfig::default()
    };
    let store = UserStore::open(config, &data_dir(dir.path())).expect("open");
    let now = now_ms();
    let started = Instant::now();
    let mut peak_seen: f64 = 0.0;
    for u in 0..users {
        let key = store.key(&format!("user-{u}"));
        for i in 0..4 {
            store
                .record(
                    key,
                    &event(
                        EventKind::Impression,
                        now - 100 + i,
                        u * 5 + i as u64 + 1,
                        0,
                    ),
                    now,
                )
                .await
                .expect("valid");
        }
        store
            .record(
                key,
                &event(EventKind::BlockBrand, now - 10, 0, 1 + u % 9_999),
                now,
            )
            .await
            .expect("valid");
        let t = store
            .record(
                key,
                &event(EventKind::NotInterested, now - 5, u * 5 + 5, 0),
                now,
            )
            .await
            .expect("valid");
        if u % 50_000 == 0 {
            store.durable(t).await.expect("durable");
            let (rss, _) = rss_mib();
            peak_seen = peak_seen.max(rss);
            let s = store.stats();
            println!(
                "  {u:>9} users  rss {rss:6.0} MiB  in memory {:>8}  accounted {:5.0} MiB  evicted {:>9}  snapshots {}",
                s.users,
                s.bytes as f64 / (1 << 20) as f64,
                s.evicted_total,
                s.snapshots_total
            );
        }
    }
    let took = started.elapsed().as_secs_f64();
    let (rss, hwm) = rss_mib();
    let stats = store.stats();
    let mut lost = 0;
    // The first users are the coldest: they were evicted long ago.
    for u in (0..users / 2).step_by((users / 2 / sample).max(1) as usize) {
        let key = store.key(&format!("user-{u}"));
        let view = store
            .view(key, now, DimensionSet::EMPTY, false)
            .await
            .expect("view");
        if !(view.is_brand_blocked(1 + u % 9_999) && view.is_not_interested(u * 5 + 5)) {
            lost += 1;
        }
    }
    let limit = cap_mib as f64 * 1.25;
    println!(
        "memory-cap: {users} users in {took:.1} s; cap {cap_mib} MiB; rss now {rss:.0} MiB, peak {hwm:.0} MiB (limit {limit:.0}); {} evicted; {} in memory; sampled evicted users that lost feedback: {lost}",
        stats.evicted_total, stats.users
    );
    hwm <= limit && lost == 0
}

fn main() -> ExitCode {
    tactful::alloc::return_freed_memory_promptly();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        match cli.command {
            Command::Recovery { users } => {
                recovery(users).await;
                ExitCode::SUCCESS
            }
            Command::PerUser { users, kind } => {
                per_user(users, kind).await;
                ExitCode::SUCCESS
            }
            Command::MemoryCap {
                users,
                cap_mib,
                sample,
            } => {
                if memory_cap(users, cap_mib, sample).await {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    })
}

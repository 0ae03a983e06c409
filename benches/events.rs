//! Events applied to the user state store on one thread, as the Events service applies them
//! (the user's key from their id, then the store's checks, the change and, on disk, the log
//! append), with a realistic mix over 100,000 users (`workload::EventMix`: mostly impressions,
//! 1% explicit feedback and purchases). Run: `cargo bench --bench events`.
//!
//! - `memory`: the in-memory store, default configuration.
//! - `disk`: the default store as `tactful serve` runs it: write-ahead log with every counter
//!   logged, the log writer and the keeper (snapshots as the log grows) on their own threads.
//!   Each batch of 4,096 events is acknowledged as a stream of that size would be, once its
//!   explicit events are fsynced; as with several streams in flight, that wait overlaps with
//!   applying the next batch.
//! - `disk_sync_ack`: the same, but each batch waits for its own fsync before the next one
//!   starts: one stream at a time, so the throughput includes the disk's fsync latency.
//!
//! - `view/memory`: what a ranking reads afterwards: the views of 4,096 users of the mix (heavy
//!   users as often as the mix sends them) built from the in-memory store.
//!
//! Same allocator as the binary: mimalloc, or the system's with `--features system-allocator`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tactful::config::Limits;
use tactful::rank::DimensionSet;
use tactful::state::{Event, StateBackend, StateConfig, Ticket, UserStore};
use tactful::time::now_ms;
use tactful::workload::{EventMix, users};

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tactful::alloc::Mimalloc = tactful::alloc::Mimalloc;

/// Events per measured iteration: one acknowledgement each on disk.
const BATCH: usize = 4096;
/// Events generated up front and replayed in turn. Each pass shifts the item ids, so a user
/// keeps meeting new items as in a long stream (their item lists fill up and the stalest
/// entries are evicted) instead of the same ones again, which would stay cheap hits.
const POOL: usize = 1 << 18;

/// The pool: each event with its user's id, converted as the gRPC edge converts it.
fn pool(now: i64) -> Vec<(String, Event)> {
    let mut mix = EventMix::new(users(100_000), 0.01, 42);
    let limits = Limits::default();
    (0..POOL)
        .map(|_| {
            let e = mix.next_event();
            let event = tactful::grpc::convert::event(&e, now, &limits).expect("valid event");
            (e.user_id, event)
        })
        .collect()
}

/// When a batch is acknowledged.
#[derive(Clone, Copy, PartialEq)]
enum Ack {
    /// Never: nothing is made durable (the in-memory store).
    None,
    /// After the next batch has been applied.
    Overlapped,
    /// Before the next batch starts.
    Sync,
}

/// Applies `count` events from the pool starting at `*at`, one at a time, then waits as `ack`
/// says; `pending` is the previous batch's ticket, when its wait overlaps with this one.
async fn apply(
    store: &UserStore,
    pool: &[(String, Event)],
    at: &mut usize,
    count: usize,
    now: i64,
    ack: Ack,
    pending: &mut Ticket,
) {
    let mut ticket = Ticket::NONE;
    for _ in 0..count {
        let (user, event) = &pool[*at % pool.len()];
        let pass = (*at / pool.len()) as u64;
        *at += 1;
        let mut event = event.clone();
        if event.item_id != 0 {
            event.item_id = event.item_id.wrapping_add(pass.wrapping_mul(1_000_003));
        }
        let t = store
            .record(store.key(user), &event, now)
            .await
            .expect("applied");
        ticket = ticket.join(t);
    }
    match ack {
        Ack::None => {}
        Ack::Overlapped => {
            store.durable(*pending).await.expect("durable");
            *pending = ticket;
        }
        Ack::Sync => store.durable(ticket).await.expect("durable"),
    }
}

fn events(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = now_ms();
    let pool = pool(now);
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut memory = None;
    for (name, ack) in [
        ("memory", Ack::None),
        ("disk", Ack::Overlapped),
        ("disk_sync_ack", Ack::Sync),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = match ack {
            Ack::None => UserStore::in_memory(StateConfig::default()),
            Ack::Overlapped | Ack::Sync => UserStore::open(
                StateConfig::default(),
                &StateBackend::Disk(dir.path().join("data")),
            )
            .unwrap(),
        };
        let (mut at, mut pending) = (0, Ticket::NONE);
        // Every user known and every list at its working size before measuring.
        runtime.block_on(apply(&store, &pool, &mut at, POOL, now, ack, &mut pending));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    runtime.block_on(apply(&store, &pool, &mut at, BATCH, now, ack, &mut pending));
                }
                started.elapsed()
            })
        });
        eprintln!("events/{name}: {} users in memory", store.len());
        if ack == Ack::None {
            memory = Some(store);
        }
    }
    group.finish();
    if let Some(store) = memory {
        views(c, &runtime, &store, &pool, now);
    }
}

/// What a ranking reads: the view of a user the mix made, heavy users (the first ones) as
/// often as the mix sends them, built from the in-memory state as `Rank` builds it.
fn views(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    store: &UserStore,
    pool: &[(String, Event)],
    now: i64,
) {
    let keys: Vec<_> = pool.iter().take(BATCH).map(|(u, _)| store.key(u)).collect();
    let mut group = c.benchmark_group("view");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("memory", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut held = 0;
                for key in &keys {
                    let view = store
                        .view(*key, now, DimensionSet::EMPTY, false)
                        .await
                        .expect("view");
                    held += view.ignored.len() + view.shown.len();
                }
                std::hint::black_box(held)
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = events
}
criterion_main!(benches);

//! Adaptive parallelism: one request of the default pipeline on one thread against the same
//! request on a two-thread pool that splits vector passes and per-candidate rules above
//! `rank.parallel_min_work`, from N = 100 (where nothing should split, and nothing may get
//! slower) to N = 20,000.
//!
//! The timed loop runs on a thread of the pool (`pool.install` around `iter`, not inside
//! it), so each sample is the ranking alone, as the engine runs a large ranking on the pool:
//! a hand-off per iteration would add a cross-thread wake-up of tens of microseconds, as
//! large as the whole N = 100 ranking. The hand-off itself is measured apart
//! (`parallel/handoff`), so both costs can be read side by side.
//! Run: `cargo bench --bench parallel`. With `TACTFUL_STAGE_TABLE=1` it first prints, for
//! N = 20,000, each stage's median time on one thread and on two (what splits and what stays
//! sequential, measured).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tactful::config::RankSettings;
use tactful::rank::{Deadline, Parallelism, Policies};
use tactful::workload::{rank_input, user_with_history};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

fn parallel(c: &mut Criterion) {
    let split = Parallelism {
        min_work: RankSettings::default().parallel_min_work,
    };
    let mut group = c.benchmark_group("parallel");
    for (n, dim, k) in [
        (100, 64, 20),
        (1000, 64, 20),
        (5000, 64, 20),
        (20_000, 64, 20),
    ] {
        let input = rank_input(n, dim, k);
        let user = user_with_history(&input);
        group.throughput(Throughput::Elements(n as u64));
        let id = format!("n{n}_d{dim}_k{k}");
        for (name, threads, parallelism) in [
            ("1_thread", 1, Parallelism::SEQUENTIAL),
            ("2_threads", 2, split),
        ] {
            let policies = Policies::build(&Default::default(), parallelism).unwrap();
            let default = policies.get("default").unwrap();
            let pool = pool(threads);
            group.bench_with_input(BenchmarkId::new(name, &id), &input, |b, input| {
                pool.install(|| {
                    b.iter(|| {
                        default
                            .run(black_box(input), &user, &Deadline::none())
                            .unwrap()
                    })
                })
            });
        }
    }
    group.finish();
}

/// What the bench used to time, for comparison: the N = 100 ranking handed from the calling
/// thread to the pool on every iteration (`pool.install` inside `iter`), so that each sample
/// adds a wake-up of a pool thread and the wait for its answer.
fn handoff(c: &mut Criterion) {
    let input = rank_input(100, 64, 20);
    let user = user_with_history(&input);
    let policies = Policies::build(&Default::default(), Parallelism::SEQUENTIAL).unwrap();
    let default = policies.get("default").unwrap();
    let mut group = c.benchmark_group("parallel/handoff");
    for (name, threads) in [("1_thread", 1), ("2_threads", 2)] {
        let pool = pool(threads);
        group.bench_function(format!("{name}/n100_d64_k20"), |b| {
            b.iter(|| {
                pool.install(|| {
                    default
                        .run(black_box(&input), &user, &Deadline::none())
                        .unwrap()
                })
            })
        });
    }
    group.finish();
}

/// Each stage's median time at N = 20,000, one thread against two, from the pipeline's own
/// per-stage observer: the Amdahl accounting of the split.
fn stage_table() {
    const RUNS: usize = 200;
    let (n, dim, k) = (20_000, 64, 20);
    let input = rank_input(n, dim, k);
    let user = user_with_history(&input);
    let split = Parallelism {
        min_work: RankSettings::default().parallel_min_work,
    };
    let mut columns = Vec::new();
    for (threads, parallelism) in [(1, Parallelism::SEQUENTIAL), (2, split)] {
        let policies = Policies::build(&Default::default(), parallelism).unwrap();
        let default = policies.get("default").unwrap();
        let mut times: Vec<(&'static str, Vec<f64>)> = Vec::new();
        let mut totals = Vec::with_capacity(RUNS);
        pool(threads).install(|| {
            for run in 0..RUNS + 20 {
                let mut stage = 0;
                let started = std::time::Instant::now();
                let mut observe = |name: &'static str, took: std::time::Duration| {
                    if times.len() <= stage {
                        times.push((name, Vec::new()));
                    }
                    if run >= 20 {
                        times[stage].1.push(took.as_secs_f64() * 1e6);
                    }
                    stage += 1;
                };
                let ranking = default
                    .run_observed(&input, &user, &Deadline::none(), Some(&mut observe))
                    .unwrap();
                drop(black_box(ranking));
                if run >= 20 {
                    totals.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
        });
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut column: Vec<(&'static str, f64)> = times
            .iter_mut()
            .map(|(name, v)| (*name, median(v)))
            .collect();
        let staged: f64 = column.iter().map(|(_, t)| t).sum();
        let total = median(&mut totals);
        column.push(("(between stages, answer, drop)", total - staged));
        column.push(("total", total));
        columns.push(column);
    }
    println!("N = {n}, d = {dim}, k = {k}: median µs per stage over {RUNS} runs");
    println!(
        "{:<32} {:>9} {:>9} {:>7}",
        "stage", "1 thread", "2 threads", "ratio"
    );
    for (one, two) in columns[0].iter().zip(&columns[1]) {
        println!(
            "{:<32} {:>9.1} {:>9.1} {:>6.2}×",
            one.0,
            one.1,
            two.1,
            one.1 / two.1
        );
    }
}

fn stage_table_on_request(_: &mut Criterion) {
    if std::env::var_os("TACTFUL_STAGE_TABLE").is_some() {
        stage_table();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = stage_table_on_request, parallel, handoff
}
criterion_main!(benches);

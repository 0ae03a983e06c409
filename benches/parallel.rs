//! Adaptive parallelism: one request of the default pipeline on one thread against the same
//! request on a two-thread pool that splits vector passes above `rank.parallel_min_work`,
//! from N = 100 (where nothing should split, and nothing may get slower) to N = 20,000.
//! Run: `cargo bench --bench parallel`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tactful::config::RankSettings;
use tactful::rank::{Deadline, Parallelism, Policies};
use tactful::workload::{rank_input, user_with_history};

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
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            group.bench_with_input(BenchmarkId::new(name, &id), &input, |b, input| {
                b.iter(|| {
                    pool.install(|| {
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = parallel
}
criterion_main!(benches);

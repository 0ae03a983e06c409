//! Criterion benches of the core pipeline (no server): the default policy at several list
//! sizes, with and without embeddings, against the identity baseline and the fail-open path.
//! Run: `cargo bench --bench pipeline`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tactful::rank::{Deadline, Parallelism, Policies};
use tactful::workload::{rank_input, user_with_history};

fn pipeline(c: &mut Criterion) {
    let policies = Policies::build(&Default::default(), Parallelism::SEQUENTIAL).unwrap();
    let default = policies.get("default").unwrap();
    let identity = policies.get("identity").unwrap();
    let mut group = c.benchmark_group("rank");
    for (n, dim, k) in [(100, 0, 20), (100, 64, 20), (200, 32, 20), (1000, 128, 50)] {
        let input = rank_input(n, dim, k);
        let user = user_with_history(&input);
        group.throughput(Throughput::Elements(n as u64));
        let id = format!("n{n}_d{dim}_k{k}");
        group.bench_with_input(BenchmarkId::new("default", &id), &input, |b, input| {
            b.iter(|| {
                default
                    .run(black_box(input), &user, &Deadline::none())
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("identity", &id), &input, |b, input| {
            b.iter(|| {
                identity
                    .run(black_box(input), &user, &Deadline::none())
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("fail_open", &id), &input, |b, input| {
            b.iter(|| default.fail_open(black_box(input), &user))
        });
    }
    group.finish();
}

/// The reference every similarity pass is measured against: one N×d multiply-add pass.
fn kernel(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    for (n, d) in [(1000, 128), (200, 32)] {
        let flat: Vec<f32> = (0..n * d).map(|i| (i % 17) as f32 * 0.1).collect();
        let v: Vec<f32> = (0..d).map(|i| (i % 5) as f32).collect();
        let mut out = vec![0.0; n];
        group.throughput(Throughput::Elements((n * d) as u64));
        group.bench_function(format!("dot_rows_n{n}_d{d}"), |b| {
            b.iter(|| tactful::rank::kernel::dot_rows(black_box(&flat), d, &v, &mut out))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = pipeline, kernel
}
criterion_main!(benches);

//! Criterion benches of the core pipeline (no server): the default policy at several list
//! sizes, with and without embeddings, against the identity baseline and the fail-open path.
//! Run: `cargo bench --bench pipeline`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tactful::config::Limits;
use tactful::grpc::convert::rank_call;
use tactful::rank::{Consent, Deadline, Parallelism, Policies, RankInput, UserView};
use tactful::workload::rank_request;

fn input(n: usize, dim: usize, k: u32) -> RankInput {
    let limits = Limits::default();
    rank_call(
        rank_request("bench", n, dim, k, 42),
        &limits,
        1_700_000_000_000,
        None,
    )
    .expect("the workload is valid")
    .input
}

/// A user with some history: ignored items, a blocked brand, a "fewer like this" category.
fn user(input: &RankInput) -> UserView {
    let mut u = UserView::unknown(Consent::privacy_default());
    u.ignored = input
        .candidates
        .iter()
        .step_by(5)
        .map(|c| (c.item_id, 3.0))
        .collect();
    u.ignored.sort_by_key(|(id, _)| *id);
    u.blocked_brands = vec![input.candidates[1].brand_id];
    u.fewer_categories = vec![(input.candidates[2].category_id, 0.8)];
    u
}

fn pipeline(c: &mut Criterion) {
    let policies = Policies::build(&Default::default(), Parallelism::SEQUENTIAL).unwrap();
    let default = policies.get("default").unwrap();
    let identity = policies.get("identity").unwrap();
    let mut group = c.benchmark_group("rank");
    for (n, dim, k) in [(100, 0, 20), (100, 64, 20), (200, 32, 20), (1000, 128, 50)] {
        let input = input(n, dim, k);
        let user = user(&input);
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
            b.iter(|| tactful::rank::pipeline::dot_rows(black_box(&flat), d, &v, &mut out))
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

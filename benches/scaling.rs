//! How the full default pipeline's cost grows with the list (N), the embedding length (d) and
//! the answer (k): criterion, one thread, no server. Each case runs the default policy (MMR
//! selection) and the same policy with DPP selection, for a user with some history.
//! `scripts/scaling-plot.py` turns the results into the table and plot of docs/performance.md.
//!
//! Run: `cargo bench --bench scaling` then `python3 scripts/scaling-plot.py`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tactful::rank::policy::Selection;
use tactful::rank::{Deadline, Parallelism, Policies, Policy};
use tactful::workload::{rank_input, user_with_history};

fn scaling(c: &mut Criterion) {
    let dpp = Policy {
        selection: Selection::Dpp,
        ..Policy::default()
    };
    let configured = BTreeMap::from([("dpp".to_owned(), dpp)]);
    let policies = Policies::build(&configured, Parallelism::SEQUENTIAL).unwrap();
    let mut group = c.benchmark_group("scaling");
    for n in [100, 500, 1000, 5000] {
        for dim in [0, 32, 128] {
            for k in [20, 50, 100] {
                let input = rank_input(n, dim, k);
                let user = user_with_history(&input);
                group.throughput(Throughput::Elements(n as u64));
                let id = format!("n{n}_d{dim}_k{k}");
                for policy in ["default", "dpp"] {
                    let pipeline = policies.get(policy).unwrap();
                    group.bench_with_input(BenchmarkId::new(policy, &id), &input, |b, input| {
                        b.iter(|| {
                            pipeline
                                .run(black_box(input), &user, &Deadline::none())
                                .unwrap()
                        })
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_millis(700)).warm_up_time(std::time::Duration::from_millis(300));
    targets = scaling
}
criterion_main!(benches);

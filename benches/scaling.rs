//! How the full default pipeline's cost grows with the list (N), the embedding length (d) and
//! the answer (k): criterion, one thread, no server. Each case runs the default policy (MMR
//! selection) and the same policy with DPP selection, for a user with some history.
//! `scripts/scaling-plot.py` turns the results into the README's table and plot.
//!
//! Run: `cargo bench --bench scaling` then `python3 scripts/scaling-plot.py`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tactful::config::Limits;
use tactful::grpc::convert::rank_call;
use tactful::rank::policy::Selection;
use tactful::rank::{Consent, Deadline, Parallelism, Policies, Policy, RankInput, UserView};
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
                let input = input(n, dim, k);
                let user = user(&input);
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

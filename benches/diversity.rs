//! Criterion benches of the selection stage alone (no server, one thread): MMR and DPP at
//! N ∈ {100, 1000} candidates, d ∈ {32, 128} embedding dims, k ∈ {20, 100} picks, each next
//! to the reference bound: `k` passes of one N×d multiply-add (`dot_rows`, the kernel every
//! similarity pass runs on). A method's cost over the reference's is how close it is to the
//! O(k·N·d) bound. `scripts/diversity-table.py` turns the results into the table of
//! docs/performance.md.
//!
//! Run: `cargo bench --bench diversity` then `python3 scripts/diversity-table.py`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ndarray::{Array1, Array2};
use tactful::rank::kernel::dot_rows;
use tactful::rank::stages::select::Select;
use tactful::rank::stages::select::mmr::DiversityParams;
use tactful::rank::{
    Candidate, Consent, Deadline, Method, Parallelism, RankInput, Slate, Stage, UserView,
};

/// A request of `n` candidates over 20 categories with random `d`-dim embeddings and scores.
fn input(n: usize, d: usize, k: usize) -> (RankInput, Array1<f32>) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let candidates = (0..n)
        .map(|i| Candidate {
            item_id: i as u64 + 1,
            category_id: i as u64 % 20 + 1,
            ..Default::default()
        })
        .collect();
    let embeddings = Array2::from_shape_fn((n, d), |_| next() - 0.5);
    let score = Array1::from_shape_fn(n, |_| next());
    let input = RankInput {
        candidates,
        embeddings: Some(embeddings),
        k,
        ..Default::default()
    };
    (input, score)
}

fn stage(method: Method) -> Select {
    Select {
        method,
        diversity: DiversityParams::default(),
        list_caps: Default::default(),
        exploration: Default::default(),
        calibration: Default::default(),
    }
}

fn selection(c: &mut Criterion) {
    let user = UserView::unknown(Consent::privacy_default());
    let mut group = c.benchmark_group("diversity");
    for n in [100, 1000] {
        for d in [32, 128] {
            for k in [20, 100] {
                let (input, score) = input(n, d, k);
                let id = format!("n{n}_d{d}_k{k}");
                for (name, method) in [("mmr", Method::Mmr), ("dpp", Method::Dpp)] {
                    let select = stage(method);
                    group.bench_with_input(BenchmarkId::new(name, &id), &input, |b, input| {
                        b.iter(|| {
                            let mut slate = Slate::new(input, &user, Parallelism::SEQUENTIAL);
                            slate.score.assign(&score);
                            select.apply(&mut slate, &Deadline::none()).unwrap();
                            black_box(slate.picks.len())
                        })
                    });
                }
                // The bound: k passes of N×d multiply-adds over the same rows.
                let flat: Vec<f32> = input.embeddings.as_ref().unwrap().iter().copied().collect();
                let v: Vec<f32> = flat[..d].to_vec();
                let mut out = vec![0.0; n];
                group.bench_function(BenchmarkId::new("reference", &id), |b| {
                    b.iter(|| {
                        for _ in 0..k {
                            dot_rows(black_box(&flat), d, &v, &mut out);
                        }
                        black_box(out[0])
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(1));
    targets = selection
}
criterion_main!(benches);

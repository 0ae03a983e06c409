//! What the gRPC edge does to a Rank request before the engine sees it, without the
//! transport: the protobuf message decoded from its bytes as the server's codec decodes it
//! (one contiguous buffer, `RankRequest::decode_rows`: the embeddings straight into one
//! matrix) and converted into the engine's call (every field checked). N = 100 candidates ×
//! 64 dimensions, in the `repeated float` form and in the bytes form (`embedding_f32le`).
//! Run: `cargo bench --bench edge`.
//!
//! Instructions per request, exactly: `valgrind --tool=callgrind
//! --toggle-collect='edge::decode_and_convert' target/release/deps/edge-* --bench
//! --profile-time 2`, then the total over the calls `callgrind_annotate` reports for it.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use tactful::config::Limits;
use tactful::grpc::convert;
use tactful::pb;
use tactful::workload::rank_request;

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tactful::alloc::Mimalloc = tactful::alloc::Mimalloc;

const N: usize = 100;
const DIM: usize = 64;

/// The request as a client sends it, in either embedding form.
fn encoded(bytes_form: bool) -> Vec<u8> {
    let mut req = rank_request("edge-bench", N, DIM, 20, 42);
    if bytes_form {
        req.candidates
            .iter_mut()
            .for_each(pb::Candidate::use_embedding_bytes);
    }
    req.encode_to_vec()
}

/// One request through the edge: decoded and converted, then dropped as a call would drop it.
#[inline(never)]
fn decode_and_convert(bytes: &[u8], limits: &Limits) -> usize {
    let req = pb::RankRequest::decode_rows(bytes).expect("a well-formed request");
    let call = convert::rank_call(req, limits, 1_700_000_000_000, None).expect("a valid request");
    call.input.candidates.len()
}

fn edge(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("edge");
    group.throughput(Throughput::Elements(1));
    for (name, bytes_form) in [("rank_request/float", false), ("rank_request/bytes", true)] {
        let bytes = encoded(bytes_form);
        group.bench_function(name, |b| {
            b.iter(|| decode_and_convert(black_box(&bytes), &limits))
        });
    }
    group.finish();
}

criterion_group!(benches, edge);
criterion_main!(benches);

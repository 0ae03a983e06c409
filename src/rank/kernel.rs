//! Vector kernels: the dot product every similarity pass runs on ([`dot_rows`], SIMD where
//! the CPU has it) and [`Parallelism`], which decides when a pass is worth splitting across
//! the rayon pool's threads.
//!
//! Invariants: a kernel gives the same result, bit for bit, whether it runs on one thread or
//! many (work is split by rows, never inside a row); nothing here knows about candidates,
//! users or rules.

use rayon::prelude::*;

/// The largest magnitude of an embedding value the server accepts. A norm or dot product over
/// the longest embedding (1,024 values of 1e6) is at most 1.0e15, far inside f32's range
/// (3.4e38), so the kernels' sums cannot overflow to infinity, which values near f32's limit
/// did (identical vectors then showed no similarity, and DPP scored them about -20.7). Real
/// encoders' values are far smaller: unit vectors, or a few tens at most.
pub const MAX_EMBEDDING_VALUE: f32 = 1.0e6;

/// Decides when a batch of vector work is split across the rayon pool's threads.
///
/// Splitting costs a few microseconds of coordination; it pays only when a pass does enough
/// multiply-adds. Below `min_work` the pass runs on the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub min_work: usize,
}

impl Parallelism {
    /// Never split: benches of the sequential path and small deployments.
    pub const SEQUENTIAL: Parallelism = Parallelism {
        min_work: usize::MAX,
    };

    /// What one candidate's pass through a per-candidate rule (a few lookups in the user's
    /// state) counts as, in multiply-adds, when deciding to split: with the default
    /// `min_work`, lists from 2048 candidates are scored across threads.
    pub const PER_CANDIDATE: usize = 32;

    /// What one candidate's pass through a rule of a few lookups and no arithmetic to speak of
    /// (a hard-rule check, a consent discount) counts as: such a pass costs 2 ns a candidate,
    /// and at N = 20,000 (35–40 µs) it took longer on two threads than on one, up to twice as
    /// long: the other thread wakes in about the time the pass takes. With the default
    /// `min_work` these rules split from 32,768 candidates.
    pub const PER_LOOKUP_RULE: usize = 2;

    pub fn splits(self, work: usize) -> bool {
        work >= self.min_work
    }

    /// Whether per-candidate rules over `n` candidates are split across threads.
    pub fn splits_candidates(self, n: usize) -> bool {
        self.splits(n.saturating_mul(Self::PER_CANDIDATE))
    }

    /// Whether a rule of a few lookups per candidate ([`Parallelism::PER_LOOKUP_RULE`]) over
    /// `n` candidates is split across threads.
    pub fn splits_lookups(self, n: usize) -> bool {
        self.splits(n.saturating_mul(Self::PER_LOOKUP_RULE))
    }

    /// `out[i] = rows[i] · v` for every `d`-long row of `rows`.
    pub fn rows_dot(self, rows: &[f32], d: usize, v: &[f32], out: &mut [f32]) {
        if self.splits(rows.len()) && d > 0 {
            // Blocks of rows, so each task amortises its scheduling over real work.
            const BLOCK_ROWS: usize = 64;
            rows.par_chunks(d * BLOCK_ROWS)
                .zip(out.par_chunks_mut(BLOCK_ROWS))
                .for_each(|(rows, o)| dot_rows(rows, d, v, o));
        } else {
            dot_rows(rows, d, v, out);
        }
    }

    /// Scales every `d`-long row of `rows` to unit length (rows of zeros stay zero).
    pub fn normalize_rows(self, rows: &mut [f32], d: usize) {
        if d == 0 {
            return;
        }
        let unit = |row: &mut [f32]| {
            let mut norm = [0.0];
            dot_rows(row, row.len(), row, &mut norm);
            let norm = norm[0].sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|x| *x /= norm);
            }
        };
        if self.splits(rows.len()) {
            rows.par_chunks_mut(d).for_each(unit);
        } else {
            rows.chunks_mut(d).for_each(unit);
        }
    }
}

/// `out[i] = rows[i] · v` for each `d`-long row of `flat`: the inner loop of every
/// similarity pass.
///
/// Written with independent accumulators so that the compiler turns it into SIMD
/// multiply-adds with no serial dependency chain (a plain iterator sum stays scalar). On x86-64
/// CPUs with AVX2 and FMA (detected at run time, once per pass) a copy compiled for them is
/// used.
pub fn dot_rows(flat: &[f32], d: usize, v: &[f32], out: &mut [f32]) {
    debug_assert_eq!(v.len(), d);
    if d == 0 {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has just been checked for the features `dot_rows_avx2` needs.
        unsafe { dot_rows_avx2(flat, d, v, out) };
        return;
    }
    for (row, o) in flat.chunks_exact(d).zip(out.iter_mut()) {
        *o = dot_lanes::<8>(row, v);
    }
}

/// The largest of `floor` and the dot products of `v` with each row of `flat` (row-major, `d`
/// values per row): what [`dot_rows`] would write, folded as it goes, with no output buffer.
/// Each product is computed exactly as `dot_rows` computes it. With `d = 0`, `floor`.
pub fn max_dot(flat: &[f32], d: usize, v: &[f32], floor: f32) -> f32 {
    debug_assert_eq!(v.len(), d);
    if d == 0 {
        return floor;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has just been checked for the features `max_dot_avx2` needs.
        return unsafe { max_dot_avx2(flat, d, v, floor) };
    }
    flat.chunks_exact(d)
        .fold(floor, |m, row| m.max(dot_lanes::<8>(row, v)))
}

/// Whether every value's magnitude is at most `bound` (no NaN is). Checked without an early
/// exit, so the loop is vector compares and `and`s; on x86-64 CPUs with AVX2 (detected at run
/// time) a copy compiled for them compares 8 values at a time instead of 4 (2,000 fewer
/// instructions for a Rank request's 6,400 embedding values, checked row by row).
pub fn all_within(values: &[f32], bound: f32) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has just been checked for the feature `all_within_avx2` needs.
        return unsafe { all_within_avx2(values, bound) };
    }
    all_within_portable(values, bound)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn all_within_avx2(values: &[f32], bound: f32) -> bool {
    all_within_portable(values, bound)
}

#[inline(always)]
fn all_within_portable(values: &[f32], bound: f32) -> bool {
    values.iter().fold(true, |ok, &x| ok & (x.abs() <= bound))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn max_dot_avx2(flat: &[f32], d: usize, v: &[f32], floor: f32) -> f32 {
    flat.chunks_exact(d)
        .fold(floor, |m, row| m.max(dot_avx2(row, v)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_rows_avx2(flat: &[f32], d: usize, v: &[f32], out: &mut [f32]) {
    for (row, o) in flat.chunks_exact(d).zip(out.iter_mut()) {
        *o = dot_avx2(row, v);
    }
}

/// Four 8-wide fused multiply-add chains: enough to hide FMA latency on current x86 cores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY (every load below): offsets stay below `n`, the length of both slices.
    let load = |p: *const f32, i: usize| unsafe { _mm256_loadu_ps(p.add(i)) };
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(load(pa, i + 8 * j), load(pb, i + 8 * j), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(load(pa, i), load(pb, i), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0_f32; 8];
    // SAFETY: `lanes` holds exactly eight f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum::<f32>()
        + a[i..n]
            .iter()
            .zip(&b[i..n])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

/// The portable version: independent accumulators the compiler vectorises for the baseline
/// target.
fn dot_lanes<const LANES: usize>(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0_f32; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_textbook_sum_for_every_length() {
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 64, 130] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 - i as f32 * 0.25).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let close = |v: f32| (v - plain).abs() <= 1e-3 * plain.abs().max(1.0);
            let mut out = [f32::NAN];
            dot_rows(&a, len, &b, &mut out);
            assert!(close(out[0]), "{len}");
            assert!(close(dot_lanes::<8>(&a, &b)), "{len}");
        }
    }

    /// The fused maximum is the maximum of what `dot_rows` writes, bit for bit, never below
    /// the floor.
    #[test]
    fn max_dot_is_the_largest_row_product_or_the_floor() {
        for d in [1, 7, 8, 33, 64, 130] {
            for n in [0, 1, 5] {
                let rows: Vec<f32> = (0..n * d)
                    .map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.5)
                    .collect();
                let v: Vec<f32> = (0..d).map(|j| 0.5 - (j % 5) as f32 * 0.2).collect();
                let mut out = vec![0.0; n];
                dot_rows(&rows, d, &v, &mut out);
                for floor in [0.0, f32::NEG_INFINITY] {
                    let want = out.iter().fold(floor, |m, x| m.max(*x));
                    let got = max_dot(&rows, d, &v, floor);
                    assert_eq!(got.to_bits(), want.to_bits(), "d {d}, n {n}, floor {floor}");
                }
            }
        }
    }

    /// Every value out of bound is found, wherever it is in the slice and whatever it is
    /// (over the bound either way, infinite, NaN), by the dispatched check and the portable
    /// one alike.
    #[test]
    fn a_value_out_of_bound_is_found_at_every_position() {
        let bound = 10.0;
        for len in [0, 1, 7, 8, 9, 31, 32, 33, 64, 130] {
            let inside: Vec<f32> = (0..len).map(|i| (i % 21) as f32 - 10.0).collect();
            assert!(all_within(&inside, bound), "{len}");
            assert!(all_within_portable(&inside, bound), "{len}");
            for at in 0..len {
                for bad in [10.5, -10.5, f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                    let mut v = inside.clone();
                    v[at] = bad;
                    assert!(!all_within(&v, bound), "{len}, {bad} at {at}");
                    assert!(!all_within_portable(&v, bound), "{len}, {bad} at {at}");
                }
            }
        }
    }

    #[test]
    fn parallel_and_sequential_vector_passes_agree() {
        let (n, d) = (300, 8);
        let rows: Vec<f32> = (0..n * d).map(|i| i as f32 * 0.01 - 1.0).collect();
        let v: Vec<f32> = (0..d).map(|j| j as f32 - 3.0).collect();
        let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
        Parallelism::SEQUENTIAL.rows_dot(&rows, d, &v, &mut a);
        Parallelism { min_work: 1 }.rows_dot(&rows, d, &v, &mut b);
        assert_eq!(a, b);
        let (mut x, mut y) = (rows.clone(), rows);
        Parallelism::SEQUENTIAL.normalize_rows(&mut x, d);
        Parallelism { min_work: 1 }.normalize_rows(&mut y, d);
        assert_eq!(x, y);
        for row in x.chunks(d) {
            let norm: f32 = row.iter().map(|v| v * v).sum();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }
}

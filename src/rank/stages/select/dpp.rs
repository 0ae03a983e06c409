//! Diversity by a determinantal point process: greedy MAP inference with incremental Cholesky
//! updates (Chen, Zhang & Zhou, "Fast Greedy MAP Inference for Determinantal Point Process to
//! Improve Recommendation Diversity", NeurIPS 2018), on the low-rank kernel
//! `L = diag(q)·V·Vᵀ·diag(q)` whose N×N matrix is never built.
//!
//! Where MMR looks at the single closest item already placed, a DPP looks at all of them at
//! once: a candidate's gain is the volume it adds to the parallelotope of the placed items'
//! vectors, so three items that each differ a little from the others can still be redundant
//! together.
//!
//! - `V` has one unit row per candidate: the request's embedding, or, without embeddings, a
//!   sparse code of category, brand and shop scaled so that `⟨v_i, v_j⟩` is the attribute
//!   similarity of `mmr.rs` (weights scaled down to sum at most 1), plus a private part that
//!   makes every row unit length.
//! - Quality `q_i = exp(s_i / (2w))` for score `s_i` and weight `w`, so the greedy gain
//!   `log det(L_{Y∪i}) − log det(L_Y) = s_i / w + ln r_i²`, where `r_i²` is the squared
//!   distance of `v_i` from the span of the placed rows. On the relevance scale the objective
//!   is `s_i + w·ln r_i²`: the diversity term is `w·ln r_i² ≤ 0`, and a candidate in the span of
//!   what is placed (`r_i² → 0`) gets the floor `w·ln 10⁻⁶`.
//! - The Cholesky row of candidate `i` grows by `e_i = (L_ji − ⟨c_j, c_i⟩)/d_j` per pick `j`.
//!   Dividing out the qualities, `e_i = ⟨v_i, u_j⟩` where `u_j` is the new pick's residual
//!   direction (its row minus its projection on the earlier directions, normalised): one
//!   N×d pass per pick, plus O(t·d) to form `u_j`. So the whole selection costs O(k·N·d), the
//!   same as MMR, and `r_i² ← r_i² − e_i²` is the paper's `d_i²` update with `q_i²` kept apart.
//! - The window: after `window` directions, at most `d − 1` with embeddings (d is the rank of
//!   `V`, so no candidate has a residual left after d picks), the older half of the window leaves and the directions
//!   are rebuilt from the newer half: one N×d pass per kept pick, every `window / 2` picks,
//!   at most doubling the cost. Long lists stay diverse against their recent stretch.
//!
//! Ordering compares `q_i²·r_i²` (no logarithm per candidate per step: the comparison is the
//! same as on the log scale). Below a weight of [`MIN_WEIGHT`] the qualities underflow; the
//! selection then orders by score.

use std::collections::VecDeque;

use super::Greedy;
use super::list_caps::{UNKNOWN, number_groups};
use super::mmr::DiversityParams;
use crate::rank::kernel::{Parallelism, dot_rows};
use crate::rank::types::RankInput;

/// Below this weight `exp(Δs / w)` leaves the range of an f64 for ordinary score gaps.
pub const MIN_WEIGHT: f32 = 0.02;

/// The smallest squared residual counted: a candidate in the span of the placed items is as
/// redundant as it can be, but still ranked among its peers by score.
const FLOOR: f32 = 1e-6;

/// How candidates' rows are stored.
enum Rows {
    /// Unit embedding rows, N×d, dense: dot products with a direction are one pass.
    Dense { rows: Vec<f32> },
    /// Per candidate, the coordinates of its category, brand and shop in the attribute space
    /// (`UNKNOWN` for an unknown id); all rows share `scale`.
    Sparse {
        coords: Vec<[u32; 3]>,
        scale: [f32; 3],
    },
}

/// DPP's view of the pool of candidates still to place.
pub struct DppState {
    rows: Rows,
    /// Dimension of the shared space (embedding length, or distinct attribute values).
    dim: usize,
    /// `q_i²`, scaled so that the best candidate has 1.
    quality: Vec<f64>,
    /// `r_i²`: squared residual against the current directions.
    residual: Vec<f32>,
    /// Squared norm of each row in the full space (1, or 0 for an all-zero embedding, which
    /// spans nothing when placed).
    norm: Vec<f32>,
    /// Orthonormal directions (in the full space), `dim` floats each, newest last.
    basis: Vec<f32>,
    /// The latest picks' rows (shared part), oldest first, at most `window`.
    recent: VecDeque<Vec<f32>>,
    window: usize,
    weight: f32,
    scratch: Vec<f32>,
    parallelism: Parallelism,
}

impl DppState {
    /// `weight` must be at least [`MIN_WEIGHT`]; `score` is the pool's scores.
    pub fn new(
        input: &RankInput,
        pool: &[usize],
        score: &[f32],
        params: &DiversityParams,
        weight: f32,
        parallelism: Parallelism,
    ) -> Self {
        debug_assert!(weight >= MIN_WEIGHT);
        let n = pool.len();
        let (rows, dim, norm) = match &input.embeddings {
            Some(e) if e.ncols() > 0 => {
                let dim = e.ncols();
                let mut rows = Vec::with_capacity(n * dim);
                for &i in pool {
                    rows.extend(e.row(i).iter());
                }
                parallelism.normalize_rows(&mut rows, dim);
                let norm = rows
                    .chunks_exact(dim)
                    .map(|r| {
                        if r.iter().any(|x| *x != 0.0) {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                (Rows::Dense { rows }, dim, norm)
            }
            _ => {
                let (coords, dim) = attribute_coords(input, pool, parallelism);
                let scale = params.attribute_weights().map(f32::sqrt);
                (Rows::Sparse { coords, scale }, dim, vec![1.0; n])
            }
        };
        let best = score.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let quality = score
            .iter()
            .map(|s| (((s - best) / weight) as f64).max(-700.0).exp())
            .collect();
        let window = match rows {
            // With d directions nothing has a residual left: slide one pick before that.
            Rows::Dense { .. } => params.window.clamp(2, dim.saturating_sub(1).max(2)),
            // Every attribute row has a private part: no rank limit below N.
            Rows::Sparse { .. } => params.window.max(2),
        };
        Self {
            rows,
            dim,
            quality,
            // A zero row has no direction to be redundant along: it starts, and stays, as
            // unlike everything (as in MMR, where its similarity to anything is 0), rather
            // than at the floor, which scored it as a copy of what was placed.
            residual: vec![1.0; n],
            norm,
            basis: Vec::new(),
            recent: VecDeque::new(),
            window,
            weight,
            scratch: vec![0.0; n],
            parallelism,
        }
    }

    fn len(&self) -> usize {
        self.quality.len()
    }

    /// The shared part of pool position `pos`'s row, as a dense vector.
    fn row(&self, pos: usize) -> Vec<f32> {
        match &self.rows {
            Rows::Dense { rows } => rows[pos * self.dim..(pos + 1) * self.dim].to_vec(),
            Rows::Sparse { coords, scale } => {
                let mut v = vec![0.0; self.dim];
                for (c, s) in coords[pos].iter().zip(scale) {
                    if *c != UNKNOWN {
                        v[*c as usize] = *s;
                    }
                }
                v
            }
        }
    }

    /// `out[i] = ⟨v_i, u⟩` for every candidate in the pool.
    fn project(&mut self, u: &[f32]) {
        let n = self.len();
        let out = &mut self.scratch[..n];
        match &self.rows {
            Rows::Dense { rows } => self.parallelism.rows_dot(rows, self.dim, u, out),
            Rows::Sparse { coords, scale } => {
                for (o, c) in out.iter_mut().zip(coords) {
                    *o = c
                        .iter()
                        .zip(scale)
                        .filter(|(c, _)| **c != UNKNOWN)
                        .map(|(c, s)| s * u[*c as usize])
                        .sum();
                }
            }
        }
    }

    /// Adds the direction of a placed row `v` (unit length in the full space, or zero) and
    /// lowers every candidate's residual by its component along it.
    fn add_direction(&mut self, v: &[f32], norm: f32) {
        let d = self.dim;
        if d == 0 {
            return; // no shared coordinates: every row is its own private direction
        }
        // Coefficients on the existing directions: ⟨v, u_t⟩ in the full space equals the
        // shared-space product, because a direction's private part belongs to earlier picks.
        let mut coef = vec![0.0; self.basis.len() / d];
        dot_rows(&self.basis, d, v, &mut coef);
        let left = norm - coef.iter().map(|c| c * c).sum::<f32>();
        if left <= FLOOR {
            return; // in the span already: no new direction
        }
        let mut u = v.to_vec();
        for (c, b) in coef.iter().zip(self.basis.chunks_exact(d)) {
            u.iter_mut().zip(b).for_each(|(x, b)| *x -= c * b);
        }
        let len = left.sqrt();
        u.iter_mut().for_each(|x| *x /= len);
        self.project(&u);
        for (r, e) in self.residual.iter_mut().zip(&self.scratch) {
            *r = (*r - e * e).max(0.0);
        }
        self.basis.extend_from_slice(&u);
    }

    /// Starts the directions again from the newer half of the window.
    fn slide(&mut self) {
        let keep = self.window / 2;
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
        self.basis.clear();
        self.residual.fill(1.0);
        let recent = std::mem::take(&mut self.recent);
        for v in &recent {
            self.add_direction(v, 1.0);
        }
        self.recent = recent;
    }
}

/// The distinct categories, brands and shops of the pool as coordinates of one space: the
/// per-attribute numbers of [`number_groups`], brands after categories, shops after brands.
fn attribute_coords(
    input: &RankInput,
    pool: &[usize],
    parallelism: Parallelism,
) -> (Vec<[u32; 3]>, usize) {
    let (mut coords, counts) = number_groups(input, pool, parallelism);
    let offsets = [0, counts[0] as u32, (counts[0] + counts[1]) as u32];
    for c in &mut coords {
        for (x, offset) in c.iter_mut().zip(offsets) {
            if *x != UNKNOWN {
                *x += offset;
            }
        }
    }
    (coords, counts.iter().sum())
}

impl Greedy for DppState {
    fn adjustment(&self, calibration: f32) -> f64 {
        ((calibration / self.weight) as f64)
            .clamp(-700.0, 700.0)
            .exp()
    }

    #[inline]
    fn key(&self, pos: usize, _score: f32, adjustment: f64) -> f64 {
        self.quality[pos] * self.residual[pos].max(FLOOR) as f64 * adjustment
    }

    fn diversity(&self, pos: usize) -> f32 {
        self.weight * self.residual[pos].max(FLOOR).ln()
    }

    fn take(&mut self, pos: usize) {
        let v = self.row(pos);
        let norm = self.norm[pos];
        let last = self.len() - 1;
        if let Rows::Dense { rows } = &mut self.rows {
            let d = self.dim;
            rows.copy_within(last * d..(last + 1) * d, pos * d);
            rows.truncate(last * d);
        }
        if let Rows::Sparse { coords, .. } = &mut self.rows {
            coords.swap_remove(pos);
        }
        self.quality.swap_remove(pos);
        self.residual.swap_remove(pos);
        self.norm.swap_remove(pos);
        if norm == 0.0 {
            return; // an all-zero embedding spans nothing
        }
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(v.clone());
        if self.basis.len() / self.dim.max(1) >= self.window {
            self.slide();
        } else {
            self.add_direction(&v, norm);
        }
    }
}

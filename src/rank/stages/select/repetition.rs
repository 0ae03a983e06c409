//! Repetition decay: the more items like a candidate are already placed, the less of its score
//! it keeps. Similarity (MMR's closest placed item, DPP's volume) barely grows with repeats:
//! under MMR the tenth item of a category is penalised like the second, so a category that
//! scores far above the rest still fills the whole list. Here each repeat costs more than the
//! last, down to a floor, as in the author-diversity decay of X's open-sourced feed mixer.
//!
//! A candidate's repeat count is `n = Σ_a w_a · n_a` over category, brand and shop, where
//! `n_a` is how many placed items share its (known) id in that attribute and `w_a` the
//! attribute's similarity weight, scaled to sum at most 1
//! ([`DiversityParams::attribute_weights`]): an exact duplicate counts 1, an item of the same
//! category only 0.6 by default. The candidate keeps `m(n) = floor + (1 − floor)·decay^n` of
//! a positive score; the lost part, `−(1 − m)·score`, is a term on the relevance scale that the
//! selection adds to the candidate's objective (MMR's and DPP's alike, each in its own units)
//! and reports in its diversity component. A score at or below 0 is left alone: a penalty that raised it
//! would reward repetition.
//!
//! Invariants: the term is never positive and only falls as items are placed (so a lazy
//! method's stale key stays an upper bound); with `decay` or `floor` at 1 there is no
//! tracker and the selection is exactly what it was without one. Per candidate and position
//! the cost is three array lookups and two multiplications; per placed item, three.

use super::list_caps::UNKNOWN;
use super::mmr::DiversityParams;

/// The share of a positive score a candidate keeps with `n` repeats placed above it.
pub fn multiplier(decay: f32, floor: f32, n: f32) -> f32 {
    floor + (1.0 - floor) * decay.powf(n)
}

/// Where the list stands in repeats, per category, brand and shop group.
pub struct Repetition {
    /// Per attribute: `decay^(w_a)`, what one more placed item of a group multiplies the
    /// group's part by.
    step: [f32; 3],
    /// Per attribute, per group (numbered densely, as for the list caps):
    /// `decay^(w_a · placed in the group)`.
    part: [Vec<f32>; 3],
    floor: f32,
}

impl Repetition {
    /// `None` when the policy's repeats do not decay. `groups` is how many distinct values
    /// each attribute has in the request.
    pub fn new(params: &DiversityParams, groups: [usize; 3]) -> Option<Self> {
        if !params.repeats_decay() {
            return None;
        }
        let weights = params.attribute_weights();
        Some(Self {
            step: weights.map(|w| params.repeat_decay.powf(w)),
            part: groups.map(|n| vec![1.0; n]),
            floor: params.repeat_floor,
        })
    }

    /// The share of its score a candidate of these groups keeps at the next position.
    #[inline]
    pub fn multiplier(&self, g: [u32; 3]) -> f32 {
        let mut decayed = 1.0;
        for (part, g) in self.part.iter().zip(g) {
            if g != UNKNOWN {
                decayed *= part[g as usize];
            }
        }
        self.floor + (1.0 - self.floor) * decayed
    }

    /// The term (≤ 0, on the relevance scale) a candidate of these groups with this score gets
    /// at the next position.
    #[inline]
    pub fn term(&self, g: [u32; 3], score: f32) -> f32 {
        if score > 0.0 {
            -(1.0 - self.multiplier(g)) * score
        } else {
            0.0
        }
    }

    /// Records an item of these groups at the next position.
    pub fn place(&mut self, g: [u32; 3]) {
        for ((part, step), g) in self.part.iter_mut().zip(self.step).zip(g) {
            if g != UNKNOWN {
                part[g as usize] *= step;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_decay_runs_one_five_eighths_and_on_down_to_a_quarter() {
        let p = DiversityParams::default();
        let seq: Vec<f32> = (0..6)
            .map(|n| multiplier(p.repeat_decay, p.repeat_floor, n as f32))
            .collect();
        let expected = [1.0, 0.625, 0.4375, 0.34375, 0.296875, 0.2734375];
        for (got, want) in seq.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{seq:?}");
        }
        assert!(multiplier(p.repeat_decay, p.repeat_floor, 200.0) >= p.repeat_floor);

        // The tracker follows the same sequence for exact duplicates (category, brand and
        // shop all shared: weights 0.6 + 0.3 + 0.1 count one repeat each).
        let mut r = Repetition::new(&p, [1, 1, 1]).unwrap();
        let dup = [0, 0, 0];
        for want in expected {
            assert!((r.multiplier(dup) - want).abs() < 1e-6);
            r.place(dup);
        }
        // Same category only: 0.6 of a repeat each; unknown ids never repeat.
        let mut r = Repetition::new(&p, [1, 2, 1]).unwrap();
        r.place([0, 0, UNKNOWN]);
        let same_category = [0, 1, UNKNOWN];
        let want = multiplier(0.5, 0.25, 0.6);
        assert!((r.multiplier(same_category) - want).abs() < 1e-6);
        assert_eq!(r.multiplier([UNKNOWN; 3]), 1.0);
    }

    #[test]
    fn the_term_never_rewards_and_is_off_at_one() {
        let p = DiversityParams::default();
        let mut r = Repetition::new(&p, [1, 0, 0]).unwrap();
        let g = [0, UNKNOWN, UNKNOWN];
        assert_eq!(r.term(g, 0.8), 0.0, "nothing placed yet");
        r.place(g);
        assert!(r.term(g, 0.8) < 0.0);
        assert_eq!(r.term(g, -0.3), 0.0, "a negative score is not raised");
        for (repeat_decay, repeat_floor) in [(1.0, 0.25), (0.5, 1.0)] {
            let off = DiversityParams {
                repeat_decay,
                repeat_floor,
                ..Default::default()
            };
            assert!(Repetition::new(&off, [1, 1, 1]).is_none());
        }
    }
}

//! Exponential decay with a half-life: counters that fade so that old exposure and old "fewer
//! like this" signals stop weighing on today's ranking. Values are stored with the time they
//! were last brought up to date and decayed lazily on read.

/// A value that halves every `half_life_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Decayed {
    pub value: f32,
    /// When `value` was exact, unix milliseconds.
    pub at_ms: i64,
}

/// The factor by which a value shrinks over `elapsed_ms`.
pub fn factor(elapsed_ms: i64, half_life_ms: i64) -> f32 {
    if elapsed_ms <= 0 {
        1.0
    } else {
        (-(elapsed_ms as f64) / half_life_ms as f64).exp2() as f32
    }
}

impl Decayed {
    /// The value as of `now_ms` (never grows: a read before `at_ms` sees `value`).
    pub fn at(&self, now_ms: i64, half_life_ms: i64) -> f32 {
        self.value * factor(now_ms - self.at_ms, half_life_ms)
    }

    /// Adds `amount` observed at `when_ms`. Events may arrive out of order: an older one is
    /// added already decayed to the stored time.
    pub fn add(&mut self, amount: f32, when_ms: i64, half_life_ms: i64) {
        if when_ms >= self.at_ms {
            self.value = self.at(when_ms, half_life_ms) + amount;
            self.at_ms = when_ms;
        } else {
            self.value += amount * factor(self.at_ms - when_ms, half_life_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HL: i64 = 1000;

    #[test]
    fn halves_every_half_life() {
        let d = Decayed {
            value: 8.0,
            at_ms: 0,
        };
        assert_eq!(d.at(0, HL), 8.0);
        assert_eq!(d.at(1000, HL), 4.0);
        assert_eq!(d.at(3000, HL), 1.0);
        assert_eq!(d.at(-50, HL), 8.0);
    }

    #[test]
    fn order_of_arrival_does_not_change_the_result() {
        let mut a = Decayed::default();
        a.add(1.0, 1000, HL);
        a.add(1.0, 2000, HL);
        let mut b = Decayed::default();
        b.add(1.0, 2000, HL);
        b.add(1.0, 1000, HL);
        assert!((a.at(5000, HL) - b.at(5000, HL)).abs() < 1e-6);
        assert!((a.at(2000, HL) - 1.5).abs() < 1e-6);
    }
}

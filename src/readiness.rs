//! Whether this server should receive traffic: a latch the gRPC server moves (serving once its
//! services are in place, draining from the shutdown signal on) and the admin server's `/ready`
//! reads. It sits below both so that neither reaches into the other for it.
//!
//! Invariants: it starts as loading; a drain is final (a late `serving` never undoes it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const LOADING: u8 = 0;
const SERVING: u8 = 1;
const DRAINING: u8 = 2;

/// The readiness latch; clones share one state. Starts as loading.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// The port is open and the state loaded.
    pub fn serving(&self) {
        // A drain is final: a late `serving` must not undo it.
        let _ = self
            .0
            .compare_exchange(LOADING, SERVING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A drain has begun.
    pub fn draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == SERVING
    }

    /// `loading`, `ready` or `draining`, as `/ready` says it.
    pub fn describe(&self) -> &'static str {
        match self.0.load(Ordering::Acquire) {
            LOADING => "loading",
            SERVING => "ready",
            _ => "draining",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_goes_loading_serving_draining_and_stays_drained() {
        let r = Readiness::new();
        assert!(!r.is_ready());
        assert_eq!(r.describe(), "loading");
        r.serving();
        assert!(r.is_ready());
        r.draining();
        r.serving();
        assert!(!r.is_ready());
        assert_eq!(r.describe(), "draining");
    }
}

//! The keeper thread: it writes snapshots (on schedule, when the log has grown, on request,
//! under memory pressure and at shutdown), sweeps expired counters, and evicts the coldest
//! users when the store nears its memory cap. Changes that arrive while the store is over its
//! cap wait for it briefly (backpressure); rankings never do.
//!
//! Must not: evict a user whose changes exist only in memory and the log (a snapshot first
//! makes them durable), or hold a user's lock while writing.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::StateError;
use super::store::{Backend, Inner};

/// Coordination with the keeper thread.
#[derive(Default)]
pub(super) struct KeeperState {
    /// Snapshots started and completed.
    started: u64,
    completed: u64,
    /// Someone waits for a snapshot that starts after their request.
    wanted: bool,
    last_error: Option<StateError>,
    pub(super) shutdown: bool,
}

impl Inner {
    /// Called when a user's state grew. Measuring the store locks every shard, so it is done
    /// on one growth in `CAP_CHECK_EVERY`: the headroom below the cap absorbs the rest.
    pub(super) fn check_cap(&self) {
        if !self
            .cap_checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CAP_CHECK_EVERY)
        {
            return;
        }
        if self.bytes() > high_water(self.config.memory_cap_bytes)
            && !self.over_cap.swap(true, Ordering::Relaxed)
        {
            self.keeper_wake.notify_all();
        }
    }

    /// Changes wait (briefly) while the store is over its cap: when ingestion outruns the
    /// keeper, it slows down instead of growing memory. Rankings never wait here.
    pub(super) async fn backpressure(&self) {
        if !self.over_cap.load(Ordering::Relaxed) {
            return;
        }
        let cap = self.config.memory_cap_bytes;
        for _ in 0..BACKPRESSURE_MAX_WAITS {
            if self.bytes() <= cap {
                return;
            }
            self.keeper_wake.notify_all();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub(super) fn request_snapshot(&self) {
        let mut k = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        k.wanted = true;
        drop(k);
        self.keeper_wake.notify_all();
    }

    /// Asks the keeper for a snapshot that starts after this call, and waits for it.
    pub(super) fn snapshot_and_wait(&self) -> Result<(), StateError> {
        let mut k = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        let target = k.started + 1;
        k.wanted = true;
        self.keeper_wake.notify_all();
        while k.completed < target && !k.shutdown {
            k = self.keeper_wake.wait(k).unwrap_or_else(|e| e.into_inner());
        }
        match &k.last_error {
            Some(e) => Err(e.clone()),
            None if k.completed >= target => Ok(()),
            None => Err(StateError::Unavailable("the store is closing".into())),
        }
    }

    /// Evicts the coldest clean users until the accounted memory is below `target`.
    pub(super) fn evict(&self, target: usize) {
        let bytes = self.bytes();
        if bytes <= target {
            return;
        }
        let len = self.map.len().max(1);
        let per_user = (bytes / len).max(1);
        let want = ((bytes - target) / per_user + 1).min(len);
        let removed = match &self.backend {
            // Redis holds every explicit word already, so none is kept back (this replica's
            // counters for them are lost, as counters may be); each removal is announced, so
            // that no read in flight can resurrect the user.
            Backend::Redis(r) => self.map.evict_each(want, |key| r.removing(key)),
            // Without a durable backend nothing is ever written out, so "changed" cannot
            // protect anyone: memory-only state is evicted coldest first, and lost.
            Backend::Memory => self.map.evict_coldest(want, false),
            Backend::Disk(_) => self.map.evict_coldest(want, true),
        };
        tracing::debug!(removed, bytes = self.bytes(), "evicted the coldest users");
    }

    /// Drops expired counters and feedback. Counters may be approximate, so this does not
    /// mark anyone for the next snapshot.
    pub(super) fn expire(&self, now_ms: i64) {
        self.map.expire(now_ms, &self.config);
    }
}

/// The keeper starts making room at 75% of the cap and evicts down to 55%: the headroom
/// absorbs what arrives while it writes a snapshot, and what the allocator keeps of the
/// memory evicted users freed, so that the process's RSS stays within the cap plus 25%.
fn high_water(cap: usize) -> usize {
    cap / 100 * 75
}

fn low_water(cap: usize) -> usize {
    cap / 100 * 55
}

/// One growth in this many measures the store against its cap.
const CAP_CHECK_EVERY: usize = 32;

/// A change waits at most this many milliseconds for the keeper to get below the cap.
const BACKPRESSURE_MAX_WAITS: u32 = 2000;

/// How often the keeper looks at the store when nothing wakes it.
const KEEPER_TICK: Duration = Duration::from_secs(1);
/// How often expired counters are swept.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

pub(super) fn keeper_loop(inner: &Inner) {
    let mut last_snapshot = Instant::now();
    let mut last_expire = Instant::now();
    loop {
        let (wanted, shutdown) = {
            let mut k = inner.keeper.lock().unwrap_or_else(|e| e.into_inner());
            if !k.wanted && !k.shutdown && !inner.over_cap.load(Ordering::Relaxed) {
                k = inner
                    .keeper_wake
                    .wait_timeout(k, KEEPER_TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (k.wanted, k.shutdown)
        };
        let cap = inner.config.memory_cap_bytes;
        let over = inner.bytes() > high_water(cap);
        if let Backend::Disk(d) = &inner.backend {
            let log = d.wal.bytes_since_rotation();
            let due = log > 0
                && last_snapshot.elapsed().as_millis() as i64 >= inner.config.snapshot_interval_ms;
            let pressed = over && last_snapshot.elapsed() >= KEEPER_TICK;
            if wanted || shutdown || pressed || due || log >= inner.config.snapshot_log_bytes {
                {
                    let mut k = inner.keeper.lock().unwrap_or_else(|e| e.into_inner());
                    k.started += 1;
                    k.wanted = false;
                }
                let started = Instant::now();
                let result = d.snapshot(inner);
                match &result {
                    Ok(rows) => {
                        inner.snapshots_total.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            rows,
                            took_ms = started.elapsed().as_millis() as u64,
                            "snapshot written"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "snapshot failed"),
                }
                last_snapshot = Instant::now();
                let mut k = inner.keeper.lock().unwrap_or_else(|e| e.into_inner());
                k.completed = k.started;
                k.last_error = result.err();
                drop(k);
                inner.keeper_wake.notify_all();
            }
        } else if wanted {
            let mut k = inner.keeper.lock().unwrap_or_else(|e| e.into_inner());
            k.started += 1;
            k.completed = k.started;
            k.wanted = false;
            drop(k);
            inner.keeper_wake.notify_all();
        }
        if shutdown {
            return;
        }
        if last_expire.elapsed() >= EXPIRE_EVERY {
            inner.expire(crate::time::now_ms());
            last_expire = Instant::now();
        }
        if inner.bytes() > high_water(cap) {
            inner.evict(low_water(cap));
        }
        inner.over_cap.store(false, Ordering::Relaxed);
    }
}

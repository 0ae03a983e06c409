//! The [`Keeper`] and its thread: it has the backend write snapshots (on schedule, when the
//! log has grown, on request, under memory pressure and at shutdown), sweeps expired counters,
//! and has the backend evict the coldest users when the store nears its memory cap. Changes
//! that arrive while the store is over its cap wait for it briefly (backpressure); rankings
//! never do.
//!
//! It knows the backend only through the [`Backend`] trait: whether it takes snapshots, how
//! much it has logged since the last, and how it can afford to lose users.
//!
//! Must not: evict a user whose changes exist only in memory and the log (the backend spares
//! them until a snapshot makes them durable), or hold a user's lock while writing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::map::UserMap;
use super::{StateConfig, StateError};

/// Coordination with the keeper thread.
#[derive(Default)]
struct KeeperState {
    /// Snapshots started and completed.
    started: u64,
    completed: u64,
    /// Someone waits for a snapshot that starts after their request.
    wanted: bool,
    last_error: Option<StateError>,
    shutdown: bool,
}

/// What the keeper thread works on, and how the store talks to it.
pub(super) struct Keeper {
    map: Arc<UserMap>,
    backend: Arc<dyn Backend>,
    config: StateConfig,
    state: Mutex<KeeperState>,
    wake: Condvar,
    over_cap: AtomicBool,
    /// Growths seen, to measure the store on one in `CAP_CHECK_EVERY`.
    cap_checks: AtomicUsize,
    snapshots_total: AtomicUsize,
    /// Snapshot writes that failed (the previous snapshot and the log stay in force).
    snapshot_failures_total: AtomicUsize,
}

impl Keeper {
    /// Starts the keeper thread (`None` in the handle if the thread could not be made: the
    /// store then works without snapshots and eviction).
    pub(super) fn start(
        map: Arc<UserMap>,
        backend: Arc<dyn Backend>,
        config: StateConfig,
    ) -> (Arc<Self>, Option<JoinHandle<()>>) {
        let keeper = Arc::new(Self {
            map,
            backend,
            config,
            state: Mutex::new(KeeperState::default()),
            wake: Condvar::new(),
            over_cap: AtomicBool::new(false),
            cap_checks: AtomicUsize::new(0),
            snapshots_total: AtomicUsize::new(0),
            snapshot_failures_total: AtomicUsize::new(0),
        });
        let running = keeper.clone();
        let thread = std::thread::Builder::new()
            .name("tactful-keeper".into())
            .spawn(move || running.run())
            .ok();
        (keeper, thread)
    }

    /// Memory accounted to user state: the map's slots and heap, and the backend's index.
    pub(super) fn bytes(&self) -> usize {
        self.map.bytes() + self.backend.index_bytes()
    }

    pub(super) fn snapshots_total(&self) -> usize {
        self.snapshots_total.load(Ordering::Relaxed)
    }

    pub(super) fn snapshot_failures_total(&self) -> usize {
        self.snapshot_failures_total.load(Ordering::Relaxed)
    }

    /// Called when the map grew (a user loaded, a state grown). Measuring the store locks
    /// every shard, so it is done on one growth in `CAP_CHECK_EVERY`: the headroom below the
    /// cap absorbs the rest.
    pub(super) fn grew(&self) {
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
            self.wake.notify_all();
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
            self.wake.notify_all();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeeperState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn request_snapshot(&self) {
        self.lock().wanted = true;
        self.wake.notify_all();
    }

    /// Asks for a snapshot that starts after this call, and waits for it.
    pub(super) fn snapshot_and_wait(&self) -> Result<(), StateError> {
        let mut k = self.lock();
        let target = k.started + 1;
        k.wanted = true;
        self.wake.notify_all();
        while k.completed < target && !k.shutdown {
            k = self.wake.wait(k).unwrap_or_else(|e| e.into_inner());
        }
        match &k.last_error {
            Some(e) => Err(e.clone()),
            None if k.completed >= target => Ok(()),
            None => Err(StateError::Unavailable("the store is closing".into())),
        }
    }

    /// Tells the thread to take a last snapshot and stop.
    pub(super) fn stop(&self) {
        self.lock().shutdown = true;
        self.wake.notify_all();
    }

    /// Has the backend evict the coldest users until the accounted memory is below `target`.
    fn evict(&self, target: usize) {
        let bytes = self.bytes();
        if bytes <= target {
            return;
        }
        let len = self.map.len().max(1);
        let per_user = (bytes / len).max(1);
        let want = ((bytes - target) / per_user + 1).min(len);
        let removed = self.backend.evict(&self.map, want);
        tracing::debug!(removed, bytes = self.bytes(), "evicted the coldest users");
    }

    fn run(&self) {
        let mut last_snapshot = Instant::now();
        let mut last_expire = Instant::now();
        loop {
            let (wanted, shutdown) = {
                let mut k = self.lock();
                if !k.wanted && !k.shutdown && !self.over_cap.load(Ordering::Relaxed) {
                    k = self
                        .wake
                        .wait_timeout(k, KEEPER_TICK)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                (k.wanted, k.shutdown)
            };
            let cap = self.config.memory_cap_bytes;
            let over = self.bytes() > high_water(cap);
            if self.backend.takes_snapshots() {
                let log = self.backend.log_bytes();
                let due = log > 0
                    && last_snapshot.elapsed().as_millis() as i64
                        >= self.config.snapshot_interval_ms;
                let pressed = over && last_snapshot.elapsed() >= KEEPER_TICK;
                if wanted || shutdown || pressed || due || log >= self.config.snapshot_log_bytes {
                    {
                        let mut k = self.lock();
                        k.started += 1;
                        k.wanted = false;
                    }
                    let started = Instant::now();
                    let result = self.backend.snapshot(&self.map);
                    match &result {
                        Ok(rows) => {
                            self.snapshots_total.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(
                                rows,
                                took_ms = started.elapsed().as_millis() as u64,
                                "snapshot written"
                            );
                        }
                        Err(e) => {
                            self.snapshot_failures_total.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, "snapshot failed");
                        }
                    }
                    last_snapshot = Instant::now();
                    let mut k = self.lock();
                    k.completed = k.started;
                    k.last_error = result.err();
                    drop(k);
                    self.wake.notify_all();
                }
            } else if wanted {
                let mut k = self.lock();
                k.started += 1;
                k.completed = k.started;
                k.wanted = false;
                drop(k);
                self.wake.notify_all();
            }
            if shutdown {
                return;
            }
            if last_expire.elapsed() >= EXPIRE_EVERY {
                // Counters may be approximate, so this marks nobody for the next snapshot.
                self.map.expire(crate::time::now_ms(), &self.config);
                last_expire = Instant::now();
            }
            if self.bytes() > high_water(cap) {
                self.evict(low_water(cap));
            }
            self.over_cap.store(false, Ordering::Relaxed);
        }
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

//! The write-ahead log: every change to user state is appended here before it is
//! acknowledged, so that a crash loses nothing the user was told was saved.
//!
//! Appends only queue a record: its seq, its key id, and what seals it (they run under a user's
//! map lock and must neither wait for I/O nor spend time on cryptography). One writer thread
//! takes the queue, seals each record into the buffer, writes it, and fsyncs it when an
//! explicit op is waiting or the counter sync interval has passed: one fsync covers every op
//! in the batch (group commit). Waiters watch a durable watermark.
//!
//! Files: `wal-<first seq>.log`, a sequence of frames `[len u32][crc32 u32][payload]`. The
//! payload is `[seq u64][key id u64][sealed op]` ([`Frame`]): the op sealed under its user's
//! data key by the caller (`disk.rs`); the log itself never sees a user or an op in clear.
//! Data format 2 wrote a postcard `Record` in clear instead ([`read_payloads`] reads either;
//! the migration decodes them). A crash can leave a torn frame at the tail of the last
//! segment; reading stops there. A snapshot rotates the log to a new segment and deletes the
//! older ones once it is safe.
//!
//! Before each fsync the writer runs the `before_sync` hook it was started with: the key store
//! fsyncs the keys made since, so that no acknowledged record is sealed under a key a crash
//! could lose.
//!
//! Must not: acknowledge an explicit op before its bytes are fsynced.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::StateError;

const FRAME_HEADER: usize = 8;
/// A record larger than this is corruption, not data (an op is tens of bytes).
const MAX_RECORD: usize = 1 << 20;
/// How often the writer looks for work when nobody wakes it.
const IDLE_WAIT: Duration = Duration::from_millis(5);
/// A buffer this full is written without waiting for the next round.
const FLUSH_BYTES: usize = 1 << 20;

/// Bytes before a frame's sealed op: its seq and its key id.
pub const FRAME_PREFIX: usize = 16;

/// One logged record, as the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub seq: u64,
    /// The id of the data key the op is sealed under (the key store's, never the user's key).
    pub key_id: u64,
    /// The sealed op; empty for an erasure's marker, which carries nothing.
    pub sealed: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a payload written by [`Wal::append`].
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let key_id = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
        Some(Self {
            seq,
            key_id,
            sealed: &payload[FRAME_PREFIX..],
        })
    }
}

/// Runs before every fsync of the log; an error fails the log like a failed write.
pub type BeforeSync = Box<dyn Fn() -> Result<(), StateError> + Send>;

/// How far the log is on disk.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every seq below this is fsynced.
    durable: u64,
    /// Set when a write failed: nothing more is acknowledged.
    failed: Option<Arc<str>>,
}

/// What a record's bytes come from: given its seq, appends the sealed op. Run by the writer
/// thread, off the appenders' path: sealing is the costly part of a record.
pub type Seal = Box<dyn FnOnce(u64, &mut Vec<u8>) + Send>;

struct Pending {
    /// Records not yet written: seq, key id, what makes their bytes.
    records: Vec<(u64, u64, Seal)>,
    /// What they will take in the log, about.
    bytes: usize,
    next_seq: u64,
    /// An explicit op below this seq waits for an fsync.
    sync_upto: u64,
    rotate: Option<std::sync::mpsc::Sender<Result<u64, StateError>>>,
    shutdown: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Mirrors `Pending::next_seq` for readers that must not take the mutex.
    next_seq: AtomicU64,
    /// Bytes appended since the last rotation: drives snapshots.
    bytes_since_rotation: AtomicU64,
    progress: watch::Sender<Progress>,
}

pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

/// The segments in `dir`, oldest first, with the first seq each holds.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StateError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StateError::io(dir, e))? {
        let entry = entry.map_err(|e| StateError::io(dir, e))?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wal-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Reads the payload of every intact frame of the segments in `dir`, oldest first. A torn or
/// corrupt frame ends its segment (after a crash, the tail of the last one is expected to be
/// torn).
pub fn read_payloads(dir: &Path, mut each: impl FnMut(&[u8])) -> Result<(), StateError> {
    read_segment_payloads(dir, |payloads| payloads.iter().for_each(|p| each(p)))
}

/// [`read_payloads`], one segment at a time: `each` gets every intact payload of a segment.
fn read_segment_payloads(dir: &Path, mut each: impl FnMut(&[&[u8]])) -> Result<(), StateError> {
    let segs = segments(dir)?;
    let last = segs.len().saturating_sub(1);
    for (i, (_, path)) in segs.iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| StateError::io(path, e))?;
        let mut payloads = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            match frame_at(&bytes, at) {
                Some((payload, next)) => {
                    payloads.push(payload);
                    at = next;
                }
                None => {
                    if i != last {
                        tracing::warn!(
                            segment = %path.display(),
                            offset = at,
                            "write-ahead log segment ends in a damaged frame"
                        );
                    }
                    break;
                }
            }
        }
        each(&payloads);
    }
    Ok(())
}

/// Reads every frame written by [`Wal::append`], oldest first.
pub fn read_all(dir: &Path, mut each: impl FnMut(Frame<'_>)) -> Result<(), StateError> {
    read_segments(dir, |frames| frames.iter().for_each(|f| each(*f)))
}

/// [`read_all`], one segment at a time: `each` gets every frame of a segment, in order, so
/// that the caller can work on them in parallel before applying them in order.
pub fn read_segments(dir: &Path, mut each: impl FnMut(&[Frame<'_>])) -> Result<(), StateError> {
    let mut damaged = None;
    read_segment_payloads(dir, |payloads| {
        if damaged.is_some() {
            return;
        }
        let mut frames = Vec::with_capacity(payloads.len());
        for payload in payloads {
            match Frame::parse(payload) {
                Some(frame) => frames.push(frame),
                None => {
                    damaged = Some(payload.len());
                    return;
                }
            }
        }
        each(&frames);
    })?;
    match damaged {
        Some(len) => Err(StateError::Corrupt(format!(
            "{}: a log frame of {len} bytes is too short to hold a record",
            dir.display()
        ))),
        None => Ok(()),
    }
}

fn frame_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at + FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((payload, at + FRAME_HEADER + len))
}

/// Appends one framed record to `buf`: its seq, its key id, and what `seal` appends (the
/// sealed op).
fn encode(buf: &mut Vec<u8>, seq: u64, key_id: u64, seal: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&key_id.to_le_bytes());
    seal(buf);
    let len = (buf.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io(dir, e))
}

impl Wal {
    /// Starts a new segment at `next_seq` in `dir` (the caller has read what was there).
    /// Counter-only batches are fsynced at least every `counter_sync`; `before_sync` runs
    /// before every fsync.
    pub fn start(
        dir: &Path,
        next_seq: u64,
        counter_sync: Duration,
        before_sync: BeforeSync,
    ) -> Result<Self, StateError> {
        // A segment of this name can only hold a torn first frame (a complete one would have
        // made `next_seq` larger): start it afresh, or what follows the tear would be unreadable.
        let file = create_segment(dir, next_seq, true)?;
        let (progress, _) = watch::channel(Progress {
            durable: next_seq,
            failed: None,
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                records: Vec::with_capacity(1 << 10),
                bytes: 0,
                next_seq,
                sync_upto: 0,
                rotate: None,
                shutdown: false,
            }),
            wake: Condvar::new(),
            next_seq: AtomicU64::new(next_seq),
            bytes_since_rotation: AtomicU64::new(0),
            progress,
        });
        let writer_shared = shared.clone();
        let dir = dir.to_owned();
        let writer = std::thread::Builder::new()
            .name("tactful-wal".into())
            .spawn(move || writer_loop(&writer_shared, &dir, file, counter_sync, before_sync))
            .map_err(|e| StateError::Unavailable(format!("cannot start the log writer: {e}")))?;
        Ok(Self {
            shared,
            writer: Some(writer),
        })
    }

    /// Appends a record and returns its seq. `seal` is given the seq and appends the sealed op;
    /// the writer thread runs it, so that appenders (under a user's lock) do not seal.
    /// `size` is about what the sealed op will take. An `explicit` record is fsynced promptly;
    /// others ride with the next batch. Never waits for I/O.
    pub fn append(
        &self,
        key_id: u64,
        explicit: bool,
        size: usize,
        seal: Seal,
    ) -> Result<u64, StateError> {
        if let Some(why) = &self.shared.progress.borrow().failed {
            return Err(StateError::Unavailable(format!(
                "the write-ahead log failed: {why}"
            )));
        }
        let mut p = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let seq = p.next_seq;
        p.records.push((seq, key_id, seal));
        let added = (FRAME_HEADER + FRAME_PREFIX + size) as u64;
        p.bytes += added as usize;
        p.next_seq += 1;
        self.shared.next_seq.store(p.next_seq, Ordering::Release);
        self.shared
            .bytes_since_rotation
            .fetch_add(added, Ordering::Relaxed);
        if explicit {
            p.sync_upto = p.next_seq;
            drop(p);
            self.shared.wake.notify_one();
        }
        Ok(seq)
    }

    /// The seq the next append will get. Read under a user's lock, it bounds every op already
    /// applied to that user.
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Acquire)
    }

    pub fn bytes_since_rotation(&self) -> u64 {
        self.shared.bytes_since_rotation.load(Ordering::Relaxed)
    }

    /// Waits until every seq below `until` is fsynced.
    pub async fn durable(&self, until: u64) -> Result<(), StateError> {
        let mut rx = self.shared.progress.subscribe();
        let p = rx
            .wait_for(|p| p.durable >= until || p.failed.is_some())
            .await
            .map_err(|_| StateError::Unavailable("the log writer stopped".into()))?;
        match &p.failed {
            Some(why) if p.durable < until => Err(StateError::Unavailable(format!(
                "the write-ahead log failed: {why}"
            ))),
            _ => Ok(()),
        }
    }

    /// Ends the current segment (fsynced) and starts a new one. Returns the first seq of the
    /// new segment: every older segment holds only seqs below it.
    pub fn rotate(&self) -> Result<u64, StateError> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut p = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.rotate = Some(tx);
        }
        self.shared.wake.notify_one();
        rx.recv()
            .map_err(|_| StateError::Unavailable("the log writer stopped".into()))?
    }

    fn stop(&mut self) {
        {
            let mut p = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.shutdown = true;
        }
        self.shared.wake.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Deletes the segments that hold only seqs below `boundary`.
pub fn delete_before(dir: &Path, boundary: u64) -> Result<(), StateError> {
    let segs = segments(dir)?;
    for (i, (first, path)) in segs.iter().enumerate() {
        let next_first = segs.get(i + 1).map(|(s, _)| *s);
        if *first < boundary && next_first.is_some_and(|n| n <= boundary) {
            fs::remove_file(path).map_err(|e| StateError::io(path, e))?;
        }
    }
    sync_dir(dir)
}

fn create_segment(dir: &Path, first_seq: u64, fresh: bool) -> Result<File, StateError> {
    let path = dir.join(segment_name(first_seq));
    if fresh {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io(&path, e)),
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StateError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

fn writer_loop(
    shared: &Shared,
    dir: &Path,
    mut file: File,
    counter_sync: Duration,
    before_sync: BeforeSync,
) {
    let mut spare = Vec::with_capacity(1 << 16);
    let mut records = Vec::with_capacity(1 << 10);
    let mut last_sync = Instant::now();
    let mut written_upto = shared.progress.borrow().durable;
    loop {
        let (upto, need_sync, rotate, shutdown) = {
            let mut p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            // Counters wait for company (a batch per IDLE_WAIT); explicit ops, rotations and
            // shutdown go at once.
            let until = Instant::now() + IDLE_WAIT;
            loop {
                let urgent = p.sync_upto > shared.progress.borrow().durable
                    || p.rotate.is_some()
                    || p.shutdown
                    || p.bytes >= FLUSH_BYTES;
                let now = Instant::now();
                if urgent || now >= until {
                    break;
                }
                p = shared
                    .wake
                    .wait_timeout(p, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let counters_due = written_upto > shared.progress.borrow().durable
                && last_sync.elapsed() >= counter_sync;
            if p.records.is_empty() && p.rotate.is_none() && !p.shutdown && !counters_due {
                continue;
            }
            std::mem::swap(&mut p.records, &mut records);
            p.bytes = 0;
            let need_sync = p.sync_upto > shared.progress.borrow().durable;
            (p.next_seq, need_sync, p.rotate.take(), p.shutdown)
        };
        // Sealed here, outside the lock: appenders go on meanwhile.
        for (seq, key_id, seal) in records.drain(..) {
            encode(&mut spare, seq, key_id, |buf| seal(seq, buf));
        }
        let mut result = file.write_all(&spare).map_err(|e| StateError::io(dir, e));
        spare.clear();
        if spare.capacity() > 1 << 24 {
            spare = Vec::with_capacity(1 << 16);
        }
        written_upto = upto;
        let sync_now =
            need_sync || rotate.is_some() || shutdown || last_sync.elapsed() >= counter_sync;
        if result.is_ok() && sync_now && shared.progress.borrow().durable < upto {
            result =
                before_sync().and_then(|()| file.sync_data().map_err(|e| StateError::io(dir, e)));
            last_sync = Instant::now();
            if result.is_ok() {
                shared.progress.send_modify(|p| p.durable = upto);
            }
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "write-ahead log write failed; refusing further writes");
            shared
                .progress
                .send_modify(|p| p.failed = Some(e.to_string().into()));
        }
        if let Some(reply) = rotate {
            let rotated = result
                .clone()
                .and_then(|()| create_segment(dir, upto, false));
            match rotated {
                Ok(f) => {
                    file = f;
                    shared.bytes_since_rotation.store(0, Ordering::Relaxed);
                    let _ = reply.send(Ok(upto));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if shutdown {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_hook() -> BeforeSync {
        Box::new(|| Ok(()))
    }

    /// A stand-in for a sealed op: the tests here are about framing, not about sealing.
    fn body(n: u64) -> Vec<u8> {
        format!("op {n}").into_bytes()
    }

    fn frames(dir: &Path) -> Vec<(u64, u64, Vec<u8>)> {
        let mut seen = Vec::new();
        read_all(dir, |f| seen.push((f.seq, f.key_id, f.sealed.to_vec()))).unwrap();
        seen
    }

    #[test]
    fn a_frame_reads_back_as_written() {
        let mut buf = vec![1, 2, 3];
        encode(&mut buf, 77, 9, |b| b.extend_from_slice(&body(5)));
        let (payload, end) = frame_at(&buf, 3).unwrap();
        assert_eq!(end, buf.len());
        let f = Frame::parse(payload).unwrap();
        assert_eq!((f.seq, f.key_id, f.sealed), (77, 9, &body(5)[..]));
        assert_eq!(Frame::parse(&payload[..10]), None);
    }

    #[tokio::test]
    async fn appended_records_are_read_back_in_order_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let wal = Wal::start(dir.path(), 1, Duration::from_secs(1), no_hook()).unwrap();
            let mut last = 0;
            for b in 1..=100 {
                last = wal
                    .append(
                        b % 3,
                        true,
                        8,
                        Box::new(move |seq, buf| {
                            assert_eq!(seq, b);
                            buf.extend_from_slice(&body(b))
                        }),
                    )
                    .unwrap();
            }
            wal.durable(last + 1).await.unwrap();
        }
        let seen = frames(dir.path());
        assert_eq!(seen.len(), 100);
        assert!(
            seen.iter()
                .enumerate()
                .all(|(i, (s, k, b))| *s == i as u64 + 1 && *k == s % 3 && *b == body(*s))
        );
    }

    #[tokio::test]
    async fn the_hook_runs_before_the_fsync_and_its_failure_fails_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let seen = calls.clone();
        let hook: BeforeSync = Box::new(move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(())
            } else {
                Err(StateError::Unavailable("key store gone".into()))
            }
        });
        let wal = Wal::start(dir.path(), 1, Duration::from_secs(60), hook).unwrap();
        let s = wal.append(1, true, 1, Box::new(|_, b| b.push(1))).unwrap();
        wal.durable(s + 1).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let s = wal.append(1, true, 1, Box::new(|_, b| b.push(2))).unwrap();
        let e = wal.durable(s + 1).await.unwrap_err();
        assert!(e.to_string().contains("key store gone"), "{e}");
        assert!(wal.append(1, true, 1, Box::new(|_, b| b.push(3))).is_err());
    }

    #[test]
    fn a_torn_tail_ends_the_log_and_keeps_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        for seq in 1..=3 {
            encode(&mut buf, seq, 1, |b| b.extend_from_slice(&body(seq)));
        }
        // Tear the last frame, and in another copy flip one payload byte of it.
        let torn = &buf[..buf.len() - 3];
        fs::write(dir.path().join(segment_name(1)), torn).unwrap();
        assert_eq!(frames(dir.path()).len(), 2);
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(dir.path().join(segment_name(1)), &flipped).unwrap();
        assert_eq!(
            frames(dir.path()).len(),
            2,
            "a checksum mismatch is not data"
        );
    }

    #[tokio::test]
    async fn a_segment_holding_only_a_torn_frame_is_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        encode(&mut buf, 1, 1, |b| b.extend_from_slice(&body(1)));
        // The crash tore the segment's only frame: recovery finds no record and restarts at 1.
        fs::write(dir.path().join(segment_name(1)), &buf[..buf.len() - 2]).unwrap();
        assert!(frames(dir.path()).is_empty());
        {
            let wal = Wal::start(dir.path(), 1, Duration::from_secs(1), no_hook()).unwrap();
            let s = wal
                .append(1, true, 8, Box::new(|_, b| b.extend_from_slice(&body(2))))
                .unwrap();
            wal.durable(s + 1).await.unwrap();
        }
        assert_eq!(
            frames(dir.path()),
            vec![(1, 1, body(2))],
            "the acknowledged record after the tear is readable"
        );
    }

    #[tokio::test]
    async fn rotation_starts_a_new_segment_and_older_ones_can_go() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(dir.path(), 1, Duration::from_secs(1), no_hook()).unwrap();
        wal.append(1, false, 1, Box::new(|_, b| b.push(1))).unwrap();
        wal.append(1, false, 1, Box::new(|_, b| b.push(2))).unwrap();
        let boundary = wal.rotate().unwrap();
        assert_eq!(boundary, 3);
        let s = wal.append(1, true, 1, Box::new(|_, b| b.push(3))).unwrap();
        wal.durable(s + 1).await.unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        delete_before(dir.path(), boundary).unwrap();
        let seqs: Vec<u64> = frames(dir.path()).into_iter().map(|f| f.0).collect();
        assert_eq!(seqs, vec![3]);
    }
}

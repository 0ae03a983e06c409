//! The gRPC port's connections: how many may be open, how long one may stay silent, and the
//! file descriptors they take.
//!
//! A TCP connection that never speaks would otherwise stay open forever, and enough of them
//! exhaust the process's descriptors: then `/live` stops answering, snapshots and Forget fail
//! with "too many open files". So:
//! - [`raise_fd_limit`] raises the soft `RLIMIT_NOFILE` to the hard limit at start;
//! - [`max_connections`] keeps `grpc.max_connections` below that limit minus a reserve (an
//!   eighth of it, at least 256), which the admin port, the log, snapshots and the audit file
//!   use: running out of connections never runs the process out of descriptors;
//! - [`incoming`] accepts connections in a task of its own and closes at once one past the
//!   bound (counted, `reason="limit"`); an accept that fails for want of descriptors waits a
//!   moment instead of spinning;
//! - at the bound, a new connection takes the place of the oldest one that has not sent a
//!   byte yet (`reason="evicted"`): a real client speaks within milliseconds, so a wave of
//!   silent connections cannot keep real ones out until their handshake time runs out;
//! - each accepted [`Conn`] carries a timer: no first byte (the HTTP/2 preface, or a TLS
//!   hello) within `grpc.handshake_timeout_s` and the connection is closed (`handshake`); no
//!   call in flight for `grpc.idle_timeout_s` and it is closed (`idle`). Calls are counted per
//!   connection by [`crate::grpc::wire`], which finds the connection's [`Activity`] in the
//!   request's extensions ([`ConnInfo`]). HTTP/2 PINGs are not calls: a client that only
//!   answers keepalives is idle.
//!
//! Closing an idle connection is abrupt (no GOAWAY): it has no call in flight, and gRPC
//! clients reconnect on their next call. The timer is polled from the connection's reads, so
//! it costs nothing between its deadlines.
//!
//! Must not: know the services; hold a lock across a read.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::metrics::Metrics;

/// Descriptors never given to gRPC connections: at least this many.
const MIN_FD_RESERVE: u64 = 256;

/// Raises the soft file-descriptor limit to the hard one and returns the limit in force
/// (`u64::MAX` when unlimited; the soft limit unchanged if it cannot be raised).
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write and read the struct passed, nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return u64::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        if limit.rlim_cur == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            // rlim_t is u64 on Linux, not on every unix.
            #[allow(clippy::unnecessary_cast)]
            let soft = limit.rlim_cur as u64;
            soft
        }
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

/// The connection bound in force: `configured`, but never more than the descriptor limit
/// minus the reserve (an eighth of the limit, at least [`MIN_FD_RESERVE`]); at least 1.
pub fn max_connections(configured: usize, fd_limit: u64) -> usize {
    let reserve = (fd_limit / 8).max(MIN_FD_RESERVE);
    let room = fd_limit.saturating_sub(reserve).max(1);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// How long connections may stay silent (`None` = no limit).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Option<Duration>,
    pub idle: Option<Duration>,
}

/// Calls in flight on one connection, and when its last call ended.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    calls: AtomicUsize,
    /// Milliseconds from `born` to the end of the last call.
    last_end_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            calls: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    /// A call started on this connection; it ends when the guard is dropped.
    pub fn call(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// When the connection became idle, or `None` while a call is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.born + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire)))
    }
}

/// One call in flight on a connection.
#[derive(Debug)]
pub struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let ms = self.0.born.elapsed().as_millis() as u64;
        self.0.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a request knows of its connection (in its extensions, as tonic puts it there; under
/// TLS wrapped in `TlsConnectInfo`).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    pub activity: Arc<Activity>,
}

/// What the accept loop keeps of a connection still silent, to close it when a new one needs
/// its place.
#[derive(Debug, Default)]
struct Silent {
    /// Set by the accept loop: the connection closes at its next poll.
    evicted: AtomicBool,
    /// Set by the connection once it has spoken: no longer a candidate.
    spoke: AtomicBool,
    /// Wakes the connection's task, so that it sees `evicted`.
    waker: Mutex<Option<Waker>>,
}

/// The connections accepted and not known to have spoken, oldest first.
#[derive(Default)]
struct SilentQueue(Mutex<VecDeque<Weak<Silent>>>);

impl SilentQueue {
    fn push(&self, silent: &Arc<Silent>, max: usize) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Entries of connections that spoke or closed are dropped lazily.
        if q.len() >= max.saturating_mul(2).max(64) {
            q.retain(|w| {
                w.upgrade()
                    .is_some_and(|s| !s.spoke.load(Ordering::Acquire))
            });
        }
        q.push_back(Arc::downgrade(silent));
    }

    /// Closes the oldest connection still silent; whether there was one.
    fn evict_oldest(&self) -> bool {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(weak) = q.pop_front() {
            let Some(silent) = weak.upgrade() else {
                continue;
            };
            if silent.spoke.load(Ordering::Acquire) {
                continue;
            }
            silent.evicted.store(true, Ordering::Release);
            if let Some(waker) = silent
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                waker.wake();
            }
            return true;
        }
        false
    }
}

/// Counts the connection as open while it lives.
struct Open {
    _permit: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No byte received yet.
    Handshake,
    Open,
}

/// An accepted connection under its silence timer.
pub struct Conn {
    stream: TcpStream,
    remote_addr: Option<SocketAddr>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    phase: Phase,
    /// The next moment to look at the connection's silence; `None` with no limits.
    timer: Option<Pin<Box<Sleep>>>,
    closed_handshake: IntCounter,
    closed_idle: IntCounter,
    /// Until the connection speaks: how the accept loop can close it to make room.
    silent: Option<Arc<Silent>>,
    _open: Open,
}

impl Conn {
    /// `Err` once the connection has been silent for too long; `Pending` otherwise (with the
    /// timer registered for the next look).
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let Some(timer) = self.timer.as_mut() else {
                return Poll::Pending;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let next = match self.phase {
                Phase::Handshake => {
                    self.closed_handshake.inc();
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within grpc.handshake_timeout_s",
                    ));
                }
                Phase::Open => match (self.timeouts.idle, self.activity.idle_since()) {
                    (None, _) => None,
                    // A call in flight: look again a whole idle period later.
                    (Some(idle), None) => Some(now + idle),
                    (Some(idle), Some(since)) if now >= since + idle => {
                        self.closed_idle.inc();
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no call within grpc.idle_timeout_s",
                        ));
                    }
                    (Some(idle), Some(since)) => Some(since + idle),
                },
            };
            match next {
                Some(at) => timer.as_mut().reset(at),
                None => self.timer = None,
            }
        }
    }

    /// The first bytes arrived: from now on the idle limit applies.
    fn spoke(&mut self) {
        if let Some(silent) = self.silent.take() {
            silent.spoke.store(true, Ordering::Release);
        }
        if self.phase == Phase::Handshake {
            self.phase = Phase::Open;
            match (self.timeouts.idle, self.timer.as_mut()) {
                (Some(idle), Some(timer)) => timer.as_mut().reset(Instant::now() + idle),
                (Some(idle), None) => {
                    self.timer = Some(Box::pin(tokio::time::sleep(idle)));
                }
                (None, _) => self.timer = None,
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(silent) = &this.silent {
            if silent.evicted.load(Ordering::Acquire) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "closed while silent to make room for a new connection",
                )));
            }
            *silent.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.spoke();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_silence(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            remote_addr: self.remote_addr,
            activity: self.activity.clone(),
        }
    }
}

/// Whether an accept error means the process (or system) is out of a resource, rather than
/// one connection having failed: then accepting again at once would spin.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The connections accepted on `listener`, at most `max` open at once, each under
/// `timeouts`. The accept loop runs in a task of its own and ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    max: usize,
    timeouts: Timeouts,
    metrics: &Metrics,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(max));
    let gauge = metrics.connections();
    let closed_limit = metrics.connection_closed("limit");
    let closed_handshake = metrics.connection_closed("handshake");
    let closed_idle = metrics.connection_closed("idle");
    let closed_evicted = metrics.connection_closed("evicted");
    let silent_queue = SilentQueue::default();
    tokio::spawn(async move {
        // Warnings at most once a second: a flood must not flood the log too.
        let mut last_warning: Option<Instant> = None;
        let mut warn = |message: &str, error: Option<&io::Error>| {
            let now = Instant::now();
            if last_warning.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
                last_warning = Some(now);
                tracing::warn!(error = error.map(tracing::field::display), "{message}");
            }
        };
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(ok) => ok,
                Err(e) if out_of_resources(&e) => {
                    warn(
                        "cannot accept a connection; pausing accepts for 100 ms",
                        Some(&e),
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                // One connection failed (reset before accept, ...): the next may not.
                Err(_) => continue,
            };
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                // At the bound: the oldest silent connection makes room, if there is one.
                Err(_) if silent_queue.evict_oldest() => {
                    closed_evicted.inc();
                    tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                Err(_) => None,
            };
            let Some(permit) = permit else {
                closed_limit.inc();
                warn(
                    "grpc.max_connections reached: closing new connections until some close",
                    None,
                );
                drop(stream);
                continue;
            };
            // Nagle's algorithm would hold small responses back for the peer's delayed ACK.
            let _ = stream.set_nodelay(true);
            gauge.inc();
            let open = Open {
                _permit: permit,
                gauge: gauge.clone(),
            };
            let silent = Arc::new(Silent::default());
            silent_queue.push(&silent, max);
            let conn = Conn {
                stream,
                remote_addr: Some(remote),
                activity: Arc::new(Activity::new()),
                timeouts,
                // Without a handshake limit, the idle one applies from the start.
                phase: if timeouts.handshake.is_some() {
                    Phase::Handshake
                } else {
                    Phase::Open
                },
                timer: match (timeouts.handshake, timeouts.idle) {
                    (Some(first), _) | (None, Some(first)) => {
                        Some(Box::pin(tokio::time::sleep(first)))
                    }
                    (None, None) => None,
                },
                closed_handshake: closed_handshake.clone(),
                closed_idle: closed_idle.clone(),
                silent: Some(silent),
                _open: open,
            };
            if tx.send(Ok(conn)).await.is_err() {
                break;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_leaves_a_reserve_of_descriptors() {
        assert_eq!(max_connections(16384, 20_000), 16384);
        assert_eq!(max_connections(16384, 1024), 768);
        assert_eq!(max_connections(16384, 4096), 3584);
        assert_eq!(max_connections(16384, u64::MAX), 16384);
        assert_eq!(max_connections(100, 100), 1);
    }
}

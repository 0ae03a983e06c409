//! [`Ticker`]: a periodic timer of the kernel (`timerfd`, nanosecond resolution) watched by
//! the tokio reactor, for the load generator's open loop. tokio's own timer rounds to the
//! millisecond; a thread that sleeps until each due time must then wake the runtime's thread
//! for every request. A timerfd is one more descriptor in the reactor's `epoll`: the thread
//! that sends and receives wakes on a tick or on an answer, whichever comes first.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

pub struct Ticker {
    fd: AsyncFd<OwnedFd>,
}

impl Ticker {
    /// Ticks every `period` (at least 1 ns), the first one `period` from now. Needs a tokio
    /// runtime with I/O enabled.
    pub fn every(period: Duration) -> io::Result<Self> {
        let period = period.max(Duration::from_nanos(1));
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor
        // this function alone owns.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor owned by nobody else (above).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let spec = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        let timer = libc::itimerspec {
            it_interval: spec,
            it_value: spec,
        };
        // SAFETY: `fd` is a timerfd; `timer` is a valid itimerspec; the old value is not asked for.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &timer, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is owned by the AsyncFd, so it stays open while registered
        // and is deregistered before it is closed.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(Self { fd })
    }

    /// Waits for the next tick; returns how many periods ended since the last call (more
    /// than one when the caller was late).
    pub async fn tick(&self) -> io::Result<u64> {
        loop {
            let mut ready = self.fd.readable().await?;
            let read = ready.try_io(|fd| {
                let mut ticks = 0u64;
                // SAFETY: reads at most 8 bytes into `ticks`, which has 8.
                let n = unsafe {
                    libc::read(
                        fd.as_raw_fd(),
                        (&raw mut ticks).cast::<libc::c_void>(),
                        size_of::<u64>(),
                    )
                };
                if n == size_of::<u64>() as isize {
                    Ok(ticks)
                } else {
                    Err(io::Error::last_os_error())
                }
            });
            match read {
                Ok(result) => return result,
                // Not ready after all (woken spuriously): wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn ticks_at_its_period_and_counts_the_ones_missed() {
        let period = Duration::from_millis(2);
        // Taken before the timer is set, which is when its periods start counting.
        let start = Instant::now();
        let ticker = Ticker::every(period).unwrap();
        let mut ticks = 0;
        while ticks < 5 {
            ticks += ticker.tick().await.unwrap();
        }
        // Five periods cannot end sooner than five periods after the timer was set.
        let took = start.elapsed();
        assert!(took >= period * 5, "{took:?}");
        // A caller that sleeps past three periods is told of all of them at once.
        std::thread::sleep(period * 3 + Duration::from_micros(500));
        assert!(ticker.tick().await.unwrap() >= 3);
    }
}

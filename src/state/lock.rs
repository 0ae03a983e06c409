//! The data directory's lock: one process at a time owns a data directory.
//!
//! Two servers on one directory would each replay the same log, serve diverging state, and the
//! one that stops first would delete log segments the other is still appending to: an
//! acknowledged block would then be lost at the next crash. So the disk backend takes an
//! exclusive `flock(2)` on `<data_dir>/lock` before it reads, creates or deletes anything
//! else there, and keeps it until the backend is dropped (the kernel releases it when the
//! process ends, however it ends: a lock is never left behind by a crash). The holder writes
//! its pid into the file, so that a second opener can say who holds it.
//!
//! `flock` is advisory and per open file: it guards against another tactful (or a tool that
//! opens the directory through this module), not against `rm`. On NFS it maps to POSIX locks
//! on recent Linux kernels; a data directory belongs on a local volume anyway.
//!
//! Must not: touch any other file of the directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StateError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// An exclusive lock on a data directory, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    /// Kept open: closing it would release the lock.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) without waiting: another process holding it
    /// is [`StateError::Locked`], naming its pid when the holder wrote one.
    pub fn acquire(dir: &Path) -> Result<Self, StateError> {
        let (path, mut file) = open_locked(dir, true)?;
        // Ours now: say who holds it.
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| StateError::io(&path, e))?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds `dir`'s lock: `None` when nobody does (checked by taking it and letting it
    /// go again at once, writing nothing), else the pid the holder wrote (0 if unknown).
    pub fn holder(dir: &Path) -> Option<u32> {
        match open_locked(dir, false) {
            Err(StateError::Locked { holder, .. }) => Some(holder.unwrap_or(0)),
            _ => None,
        }
    }
}

/// `dir`'s lock file, opened (created if need be and `create`) and locked.
fn open_locked(dir: &Path, create: bool) -> Result<(PathBuf, File), StateError> {
    let path = dir.join(LOCK_FILE);
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(create)
        .truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| StateError::io(&path, e))?;
    match try_lock(&file) {
        Ok(()) => Ok((path, file)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(StateError::Locked {
                dir: dir.display().to_string(),
                holder: text.trim().parse().ok(),
            })
        }
        Err(e) => Err(StateError::io(&path, e)),
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this `File` owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, e))
        } else {
            Err(e)
        }
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_opener_is_refused_with_the_holders_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(StateError::Locked { holder, .. }) => {
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(DirLock::holder(dir.path()), Some(std::process::id()));
        drop(first);
        assert_eq!(DirLock::holder(dir.path()), None);
        DirLock::acquire(dir.path()).unwrap();
    }
}

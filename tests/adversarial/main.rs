//! The server against careless and hostile clients, and against a second process: the cases
//! found by trying to break it, each run against the real binary on loopback, bounded in time
//! and count. Properties checked:
//! 1. A second `tactful serve` on a running server's data directory exits 64 naming the
//!    holder's pid, and deletes nothing: the first server's log segments stay, and after a
//!    `kill -9` of the first, what it acknowledged is still there.

#[path = "../common/mod.rs"]
mod common;

mod lock;

//! Allocator settings for the binary, which runs on mimalloc unless built with the
//! `system-allocator` feature ([`NAME`] says which).
//!
//! Under a memory cap, evicted users are freed on the keeper thread while request threads
//! keep allocating; with mimalloc's default purge delay, pages freed that way stay resident
//! long enough to push the process well past its cap (measured: 5,000,000 users through a
//! 256 MiB cap peaked at 333 MiB RSS with the default, 290 MiB with immediate purging).

/// The binary's allocator, for the start-up log.
pub const NAME: &str = if cfg!(feature = "system-allocator") {
    "system"
} else {
    "mimalloc"
};

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (include/mimalloc.h): milliseconds
/// before freed memory is returned to the OS.
#[cfg(not(feature = "system-allocator"))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the OS at once, unless the operator chose otherwise through
/// mimalloc's own `MIMALLOC_PURGE_DELAY`. With the system allocator there is nothing to set.
pub fn return_freed_memory_promptly() {
    #[cfg(not(feature = "system-allocator"))]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads options at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

//! Allocator settings for the binary, which runs on mimalloc unless built with the
//! `system-allocator` feature ([`NAME`] says which).
//!
//! [`Mimalloc`] is mimalloc with the entry points C programs use for what needs no more than
//! the alignment every block has (16 bytes; for a smaller block, up to its size), as Rust's own
//! system allocator does with `malloc`: the `mimalloc` crate's allocator asks for every block
//! through mimalloc's aligned entry points, 20 instructions more per allocation, some 270 of
//! them per Rank call.
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

/// The alignment mimalloc gives every block of at least that size (`MI_MAX_ALIGN_SIZE` on
/// 64-bit targets: its size classes are multiples of two words, except the one-word class,
/// whose blocks are word-aligned). So a block of `size` bytes is aligned to any power of two
/// up to 16 that is at most `size`.
#[cfg(not(feature = "system-allocator"))]
const MI_MAX_ALIGN_SIZE: usize = 16;

/// mimalloc as the global allocator, through its plain entry points when the alignment asked
/// for is one every block of that size has (see the module's header).
#[cfg(not(feature = "system-allocator"))]
pub struct Mimalloc;

#[cfg(not(feature = "system-allocator"))]
impl Mimalloc {
    /// Whether a plain allocation of this layout is aligned enough: the rule of Rust's
    /// system allocator, with mimalloc's alignment (the layout's size is a multiple of its
    /// alignment, so a block of at least that size is aligned to it).
    #[inline]
    fn plain(align: usize, size: usize) -> bool {
        align <= MI_MAX_ALIGN_SIZE && align <= size
    }
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` takes blocks from
// every entry point); a plain entry point is used only where its alignment is enough.
#[cfg(not(feature = "system-allocator"))]
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        // SAFETY: mimalloc's allocation functions take any size and a power-of-two alignment.
        unsafe {
            if Self::plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        // SAFETY: as in `alloc`.
        unsafe {
            if Self::plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys as mi;
        // SAFETY: `ptr` came from this allocator; the new block keeps `layout`'s alignment
        // (a plain block of the new size is aligned to it when the rule holds for that size).
        unsafe {
            if Self::plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(all(test, not(feature = "system-allocator")))]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::*;

    /// A fresh block of `size` bytes aligned to `align`, filled with `byte`.
    unsafe fn filled(a: &Mimalloc, size: usize, align: usize, byte: u8) -> *mut u8 {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0, "alloc {size}/{align}");
        // SAFETY: the block holds `size` bytes.
        unsafe { p.write_bytes(byte, size) };
        p
    }

    /// Layouts whose size is not a multiple of their alignment (a hash table's buckets and
    /// control bytes ask for such blocks) take the plain entry points too.
    #[test]
    fn blocks_of_sizes_between_alignments_are_aligned() {
        let a = Mimalloc;
        for (size, align) in [(9, 8), (12, 8), (17, 16), (24, 16), (52, 16), (1000, 16)] {
            let blocks: Vec<*mut u8> = (0..64)
                // SAFETY: non-zero sizes; every block is freed below with its layout.
                .map(|_| unsafe { filled(&a, size, align, 1) })
                .collect();
            for p in blocks {
                // SAFETY: made above with this layout.
                unsafe { a.dealloc(p, Layout::from_size_align(size, align).unwrap()) };
            }
        }
    }

    #[test]
    fn every_block_has_the_alignment_asked_for_and_keeps_its_bytes() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 15, 16, 24, 100, 1000, 5000, 70_000] {
                // A layout's size is a multiple of its alignment.
                let size = size.max(align) / align * align;
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; each block is freed once, with the layout it has.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size}/{align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                    for new_size in [align, size * 3] {
                        let p = filled(&a, size, align, 0xab);
                        let q = a.realloc(p, layout, new_size);
                        assert_eq!(q as usize % align, 0, "{size}/{align} to {new_size}");
                        let kept = std::slice::from_raw_parts(q, size.min(new_size));
                        assert!(kept.iter().all(|&b| b == 0xab), "{size}/{align}");
                        a.dealloc(q, Layout::from_size_align(new_size, align).unwrap());
                    }
                }
            }
        }
    }
}

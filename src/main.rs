//! The `tactful` binary: the allocator, then the command line. Everything else is in the
//! library.

use std::process::ExitCode;

// mimalloc unless built with `--features system-allocator` (for comparing the two; see the
// README's Performance section).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tactful::alloc::Mimalloc = tactful::alloc::Mimalloc;

fn main() -> ExitCode {
    tactful::alloc::return_freed_memory_promptly();
    tactful::cli::main()
}

//! The executor this binary was built with.
//!
//! Exactly one runtime runs. If both features are enabled (`--all-features`, or feature
//! unification when another workspace member asks for the other one) smol is used instead
//! of failing the build: a compile error there would break workspace-wide commands for no
//! benefit, and the async-std adapter stays compiled and tested through its own crate.

#[cfg(not(any(feature = "smol", feature = "async-std")))]
compile_error!("linksocks-cli needs a runtime: enable feature `smol` (default) or `async-std`");

#[cfg(feature = "smol")]
pub use linksocks_runtime_smol::{block_on, Smol as Rt, NAME};

#[cfg(all(feature = "async-std", not(feature = "smol")))]
pub use linksocks_runtime_async_std::{block_on, AsyncStd as Rt, NAME};

/// `LINKSOCKS_THREADS=N`: N threads in all run the proxy (smol; default 1, which suits a
/// client and most servers). async-std sizes its own pool.
pub fn apply_thread_count() {
    #[cfg(feature = "smol")]
    if let Some(n) = std::env::var("LINKSOCKS_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        linksocks_runtime_smol::set_threads(n);
    }
}

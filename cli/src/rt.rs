//! The executor this binary was built with.
//!
//! Exactly one runtime runs. If both features are enabled (`--all-features`, or feature
//! unification when another workspace member asks for the other one) smol is used instead
//! of failing the build: a compile error there would break workspace-wide commands for no
//! benefit, and the async-std adapter stays compiled and tested through its own crate.

#[cfg(not(any(feature = "smol", feature = "async-std")))]
compile_error!("linksocks-cli needs a runtime: enable feature `smol` (default) or `async-std`");

#[cfg(feature = "smol")]
pub use linksocks_runtime_smol::{block_on, run_client, run_server, NAME};

#[cfg(all(feature = "async-std", not(feature = "smol")))]
pub use linksocks_runtime_async_std::{block_on, run_client, run_server, NAME};

//! LinkSocks on smol: a SOCKS5 proxy tunnelled over WebSocket, wire-compatible with the
//! reference Go implementation, as a library. This crate is the one dependency a smol
//! program needs: it re-exports the [`Server`] and [`Client`] of `linksocks-runtime` and adds
//! [`Smol`], the [`Runtime`] that runs them on smol.
//!
//! Layers: `linksocks-core` holds the protocol as pure state machines and codecs;
//! `linksocks-runtime` drives them on sockets (written once, over async-io); this crate says
//! how smol spawns tasks.
//!
//! ```no_run
//! use linksocks_runtime_smol::{Client, Error, Server, Smol};
//!
//! fn main() -> Result<(), Error> {
//!     smol::block_on(async {
//!         let server = Server::builder()
//!             .ws_addr("127.0.0.1", 8765)
//!             .forward_token("secret")
//!             .start(Smol)
//!             .await?;
//!         let client = Client::builder("secret")
//!             .url("ws://127.0.0.1:8765")
//!             .start(Smol)?;
//!         client.ready().await?; // SOCKS5 and HTTP proxy on 127.0.0.1:9870
//!         client.wait().await?;
//!         server.stop().await
//!     })
//! }
//! ```
//!
//! The `examples/` folder has a forward client, a server managing tokens from code and a
//! reverse provider; each runs as a test.

#![deny(missing_docs)]

use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use linksocks_runtime::BoxFuture;

/// Access rules, batching, token status and counters, from the protocol core.
pub use linksocks_core::{
    access::{AccessConfig, AccessRule, AccessRules},
    session::{BatchPolicy, Snapshot, TokenStatus, TokenType},
};
/// The server, the client and everything needed to configure them.
pub use linksocks_runtime::{
    proxy_url::parse_proxy_url, Client, ClientBuilder, ConfigError, Error, Event, Events, ProxyEnv,
    ProxyUrl, ReverseToken, ReverseTokenInfo, Running, Runtime, Server, ServerBuilder, StopHandle,
    TlsError,
};
/// The protocol core and the shared runtime, for what the re-exports above do not cover.
pub use {linksocks_core as core, linksocks_runtime as runtime};

/// Name shown by `linksocks-cli version`.
pub const NAME: &str = "smol";

/// smol as the library's runtime: under [`block_on`] tasks run on our executor (on the
/// threads that drive the reactor), anywhere else on smol's global executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        // Inside our `block_on` (the CLI), tasks run on the threads that drive the reactor.
        // Anywhere else (an application's own `smol::block_on` or executor) nobody runs our
        // executor, so tasks go to smol's global one, which runs itself.
        if IN_BLOCK_ON.with(Cell::get) {
            executor().spawn(task).detach();
        } else {
            smol::spawn(task).detach();
        }
    }
}

/// An executor of the application's as the library's runtime: every task of the server or
/// client is spawned on it, and runs while the application runs it.
///
/// ```no_run
/// use std::sync::Arc;
/// use linksocks_runtime_smol::{OnExecutor, Server};
///
/// let ex = Arc::new(smol::Executor::new());
/// smol::block_on(ex.run(async {
///     let server = Server::builder()
///         .forward_token("secret")
///         .start(OnExecutor(ex.clone()))
///         .await?;
///     server.wait().await
/// }))
/// .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct OnExecutor(pub Arc<smol::Executor<'static>>);

impl Runtime for OnExecutor {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.spawn(task).detach();
    }
}

thread_local! {
    /// This thread is inside [`block_on`] (or one of the threads [`set_threads`] started).
    static IN_BLOCK_ON: Cell<bool> = const { Cell::new(false) };
}

/// Threads beyond the caller's that run our executor, set once by [`set_threads`].
static EXTRA_THREADS: OnceLock<usize> = OnceLock::new();

/// The executor our tasks run on under [`block_on`]. Not smol's global one: that one runs
/// tasks on threads of its own while another thread waits for I/O, so every socket event
/// costs a wake-up across threads. Ours runs on the threads that call [`block_on`], which also
/// drive the reactor: one thread, by default, polls the sockets and runs what they woke.
fn executor() -> &'static smol::Executor<'static> {
    static EX: OnceLock<smol::Executor<'static>> = OnceLock::new();
    EX.get_or_init(|| {
        let extra = EXTRA_THREADS.get().copied().unwrap_or(0);
        for i in 0..extra {
            let _ = std::thread::Builder::new()
                .name(format!("linksocks-{i}"))
                .spawn(|| {
                    IN_BLOCK_ON.with(|c| c.set(true));
                    smol::block_on(executor().run(std::future::pending::<()>()))
                });
        }
        smol::Executor::new()
    })
}

/// Run [`block_on`]'s work on `threads` threads in all (the caller's and `threads - 1` more;
/// 0 counts as 1). Takes effect only before the first task is spawned; returns false after.
/// One thread suits a client and most servers: the data path is not CPU-bound before the
/// kernel is.
pub fn set_threads(threads: usize) -> bool {
    EXTRA_THREADS.set(threads.saturating_sub(1)).is_ok()
}

/// Drive a future to completion on this thread, running our tasks meanwhile on this thread
/// (and those of [`set_threads`]): the fastest way to run a server or client. Under any
/// other executor ours work too, on smol's global executor.
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    let was = IN_BLOCK_ON.with(|c| c.replace(true));
    let out = smol::block_on(executor().run(fut));
    IN_BLOCK_ON.with(|c| c.set(was));
    out
}

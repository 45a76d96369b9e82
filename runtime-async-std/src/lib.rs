//! LinkSocks on async-std: a SOCKS5 proxy tunnelled over WebSocket, wire-compatible with the
//! reference Go implementation, as a library. This crate is the one dependency a async-std
//! program needs: it re-exports the [`Server`] and [`Client`] of `linksocks-runtime` and adds
//! [`AsyncStd`], the [`Runtime`] that runs them on async-std.
//!
//! Layers: `linksocks-core` holds the protocol as pure state machines and codecs;
//! `linksocks-runtime` drives them on sockets (written once, over async-io); this crate says
//! how async-std spawns tasks.
//!
//! ```no_run
//! use linksocks_runtime_async_std::{Client, Error, Server, AsyncStd};
//!
//! fn main() -> Result<(), Error> {
//!     async_std::task::block_on(async {
//!         let server = Server::builder()
//!             .ws_addr("127.0.0.1", 8765)
//!             .forward_token("secret")
//!             .start(AsyncStd)
//!             .await?;
//!         let client = Client::builder("secret")
//!             .url("ws://127.0.0.1:8765")
//!             .start(AsyncStd)?;
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

use std::future::Future;

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
pub const NAME: &str = "async-std";

/// async-std as the library's runtime: tasks are async-std tasks.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        async_std::task::spawn(task);
    }
}

/// Drive a future to completion on async-std's executor.
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    async_std::task::block_on(fut)
}

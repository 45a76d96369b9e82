//! LinkSocks on async-std: the [`Runtime`] seam filled with async-std's executor, timers and
//! sockets. Everything else lives once in `linksocks-runtime`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use linksocks_runtime::{BoxFuture, Runtime};

/// Access rules, batching, token status and counters, from the protocol core.
pub use linksocks_core::{
    access::{AccessConfig, AccessRule, AccessRules},
    session::{BatchPolicy, Snapshot, TokenStatus, TokenType},
};
/// The server, client and everything needed to configure them, bound to this executor.
pub use linksocks_runtime::{
    proxy_url::parse_proxy_url, ClientBuilder, ConfigError, Error, Event, Events, ProxyEnv,
    ProxyUrl, ReverseToken, ReverseTokenInfo, ServerBuilder, StopHandle, TlsError,
};
/// The protocol core and the shared runtime, for what the re-exports above do not cover.
pub use {linksocks_core as core, linksocks_runtime as runtime};

/// A LinkSocks server running on async-std (see [`linksocks_runtime::Server`]).
pub type Server = linksocks_runtime::Server<AsyncStd>;
/// A LinkSocks client running on async-std (see [`linksocks_runtime::Client`]).
pub type Client = linksocks_runtime::Client<AsyncStd>;

/// Name shown by `linksocks-cli version`.
pub const NAME: &str = "async-std";

#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Tcp = TcpStream;
    type Listener = TcpListener;
    type Udp = UdpSocket;

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(fut);
    }

    linksocks_runtime::std_shaped_sockets!();

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            async_std::task::sleep(deadline.saturating_duration_since(Instant::now())).await;
        })
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok((host.as_str(), port).to_socket_addrs().await?.collect()) })
    }
}

/// Drive a future to completion on async-std's executor.
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    async_std::task::block_on(fut)
}

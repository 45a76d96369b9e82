//! LinkSocks as a library: a SOCKS5 proxy tunnelled over WebSocket, wire-compatible with the
//! reference Go implementation.
//!
//! # Layers
//!
//! - `linksocks-core`: the protocol as pure state machines and codecs (no sockets, clocks or
//!   threads), fuzzed and simulated.
//! - this crate: the drivers that run those machines on real sockets, written once for every
//!   executor, and the front door: [`Server`] and [`Client`], built with [`ServerBuilder`] and
//!   [`ClientBuilder`].
//! - `linksocks-runtime-smol`, `linksocks-runtime-async-std`: the [`Runtime`] for each
//!   executor, re-exporting everything a program needs (one dependency is enough).
//!
//! # Example
//!
//! A server and a forward client in one program (on any [`Runtime`]):
//!
//! ```no_run
//! use linksocks_runtime::{Client, Runtime, Server};
//!
//! async fn run(rt: impl Runtime + Clone) -> Result<(), linksocks_runtime::Error> {
//!     let server = Server::builder()
//!         .ws_addr("127.0.0.1", 0)
//!         .forward_token("secret")
//!         .start(rt.clone())
//!         .await?;
//!     let client = Client::builder("secret")
//!         .url(format!("ws://{}", server.ws_addr()))
//!         .socks_addr("127.0.0.1", 0)
//!         .start(rt)?;
//!     client.ready().await?;
//!     println!("SOCKS5 on {}", client.socks_addr().unwrap());
//!     client.stop().await?;
//!     server.stop().await
//! }
//! ```

#![deny(missing_docs)]

mod embed;
mod error;
mod options;
mod stop;

pub use embed::client::{Client, ClientBuilder, DEFAULT_SOCKS_PORT, DEFAULT_URL};
pub use embed::events::{Event, Events, EVENT_BUFFER};
pub use embed::running::Running;
pub use embed::server::{
    ReverseToken, ReverseTokenInfo, Server, ServerBuilder, DEFAULT_SOCKS_HOST, DEFAULT_WS_HOST,
    DEFAULT_WS_PORT,
};
pub use error::{ConfigError, Error, ProxyUrlError, TlsError};
pub use options::*;
pub use proxy::ProxyEnv;
pub(crate) use stop::Stop;
pub use stop::StopHandle;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant as StdInstant;

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A boxed future, as [`Runtime::spawn`] takes it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What differs between executors: how a task is spawned. Sockets, timers and name lookups are
/// written once, over async-io, whose reactor both smol and async-std run. Object-safe: a
/// server or client holds its runtime as an `Arc<dyn Runtime>`, so the handles are the same
/// types whatever the executor.
pub trait Runtime: Send + Sync + 'static {
    /// Run `task` to completion in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
}

/// The runtime a server or client was started on, with the sockets and timers every runtime
/// shares.
#[derive(Clone)]
pub(crate) struct Rt(std::sync::Arc<dyn Runtime>);

impl Rt {
    pub(crate) fn new(rt: impl Runtime) -> Rt {
        Rt(std::sync::Arc::new(rt))
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(Box::pin(task))
    }

    pub(crate) fn sleep_until(&self, deadline: StdInstant) -> impl Future<Output = ()> + Send {
        net::sleep_until(deadline)
    }

    pub(crate) async fn listen(&self, addr: SocketAddr) -> io::Result<net::TcpListener> {
        net::TcpListener::bind(addr)
    }

    pub(crate) async fn connect(&self, addr: SocketAddr) -> io::Result<net::TcpStream> {
        net::TcpStream::connect(addr).await
    }

    pub(crate) async fn resolve(&self, host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
        net::resolve(host, port).await
    }

    pub(crate) async fn udp_bind(&self, addr: SocketAddr) -> io::Result<net::UdpSocket> {
        net::UdpSocket::bind(addr)
    }
}

mod client;
mod connect;
mod driver;
mod fd;
mod http;
mod link;
mod net;
mod proxy;
pub mod proxy_url;
mod read_buf;
mod server;
mod tls;
mod ws;

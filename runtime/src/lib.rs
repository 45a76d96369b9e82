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
//! async fn run<R: Runtime>(rt: R) -> Result<(), linksocks_runtime::Error> {
//!     let server = Server::<R>::builder()
//!         .ws_addr("127.0.0.1", 0)
//!         .forward_token("secret")
//!         .start(rt.clone())
//!         .await?;
//!     let client = Client::<R>::builder("secret")
//!         .url(format!("ws://{}", server.ws_addr()))
//!         .socks_addr("127.0.0.1", 0)
//!         .start(rt)?;
//!     client.ready().await?;
//!     println!("SOCKS5 on {}", client.socks_addr().unwrap());
//!     client.stop().await?;
//!     server.stop().await
//! }
//! ```

mod embed;
mod error;
pub mod options;
pub mod stop;

pub use embed::client::{Client, ClientBuilder, DEFAULT_SOCKS_PORT, DEFAULT_URL};
pub use embed::events::{Event, Events, EVENT_BUFFER};
pub use embed::server::{
    ReverseToken, ReverseTokenInfo, Server, ServerBuilder, DEFAULT_SOCKS_HOST, DEFAULT_WS_HOST,
    DEFAULT_WS_PORT,
};
pub use error::{ConfigError, Error, ProxyUrlError, TlsError};
pub use options::*;
pub use proxy::ProxyEnv;
pub use stop::{stop_pair, Stop, StopHandle};

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

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an executor must provide. Both smol and async-std sit on async-io, but their socket
/// types and spawn functions differ; this is the seam.
pub trait Runtime: Clone + Send + Sync + 'static {
    type Tcp: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + Sync + 'static;
    type Listener: Send + Sync + 'static;
    type Udp: Send + Sync + 'static;

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static);
    fn sleep_until(&self, deadline: StdInstant) -> BoxFuture<'static, ()>;

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Listener>>;
    fn listener_addr(l: &Self::Listener) -> io::Result<SocketAddr>;
    fn accept(l: &Self::Listener) -> BoxFuture<'_, io::Result<(Self::Tcp, SocketAddr)>>;

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>>;
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
    fn tcp_local_addr(s: &Self::Tcp) -> io::Result<SocketAddr>;
    fn tcp_clone(s: &Self::Tcp) -> Self::Tcp;
    /// Reset instead of FIN on close (SO_LINGER 0), so the peer sees an error.
    fn tcp_set_linger_zero(s: &Self::Tcp);
    fn tcp_shutdown(s: &Self::Tcp, how: std::net::Shutdown);
    fn tcp_set_nodelay(s: &Self::Tcp) -> io::Result<()>;
    /// Write what the socket takes now, without waiting (`WouldBlock` when it takes nothing).
    fn tcp_try_write(s: &Self::Tcp, buf: &[u8]) -> io::Result<usize>;
    /// The same for several buffers in one call.
    fn tcp_try_write_vectored(s: &Self::Tcp, bufs: &[io::IoSlice<'_>]) -> io::Result<usize>;

    fn udp_bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Udp>>;
    fn udp_local_addr(u: &Self::Udp) -> io::Result<SocketAddr>;
    fn udp_send_to<'a>(
        u: &'a Self::Udp,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> BoxFuture<'a, io::Result<usize>>;
    /// Send a datagram now if the socket can take it (`WouldBlock` otherwise).
    fn udp_try_send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
    fn udp_recv_from<'a>(
        u: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>>;
}

mod client;
mod connect;
pub mod driver;
#[doc(hidden)]
pub mod fd;
mod http;
mod link;
mod proxy;
pub mod proxy_url;
mod read_buf;
mod server;
mod tls;
mod ws;

/// The [`Runtime`] methods whose text is the same for every executor whose socket types follow
/// std's shape (`bind`, `accept`, `connect`, `local_addr`, `shutdown`, `send_to`, ...): smol's
/// and async-std's both do. Expanded inside each adapter's `impl Runtime`, so the code exists
/// once and each adapter keeps only what truly differs (spawning, timers, name resolution).
#[macro_export]
macro_rules! std_shaped_sockets {
    () => {
        fn listen(
            &self,
            addr: ::std::net::SocketAddr,
        ) -> $crate::BoxFuture<'static, ::std::io::Result<Self::Listener>> {
            Box::pin(<Self::Listener>::bind(addr))
        }

        fn listener_addr(l: &Self::Listener) -> ::std::io::Result<::std::net::SocketAddr> {
            l.local_addr()
        }

        fn accept(
            l: &Self::Listener,
        ) -> $crate::BoxFuture<'_, ::std::io::Result<(Self::Tcp, ::std::net::SocketAddr)>> {
            Box::pin(l.accept())
        }

        fn connect(
            &self,
            addr: ::std::net::SocketAddr,
        ) -> $crate::BoxFuture<'static, ::std::io::Result<Self::Tcp>> {
            Box::pin(<Self::Tcp>::connect(addr))
        }

        fn tcp_local_addr(s: &Self::Tcp) -> ::std::io::Result<::std::net::SocketAddr> {
            s.local_addr()
        }

        fn tcp_clone(s: &Self::Tcp) -> Self::Tcp {
            s.clone()
        }

        fn tcp_shutdown(s: &Self::Tcp, how: ::std::net::Shutdown) {
            let _ = s.shutdown(how);
        }

        fn tcp_set_nodelay(s: &Self::Tcp) -> ::std::io::Result<()> {
            s.set_nodelay(true)
        }

        fn tcp_set_linger_zero(s: &Self::Tcp) {
            $crate::fd::set_linger_zero(s)
        }

        fn tcp_try_write(s: &Self::Tcp, buf: &[u8]) -> ::std::io::Result<usize> {
            $crate::fd::try_send(s, buf)
        }

        fn tcp_try_write_vectored(
            s: &Self::Tcp,
            bufs: &[::std::io::IoSlice<'_>],
        ) -> ::std::io::Result<usize> {
            $crate::fd::try_send_vectored(s, bufs)
        }

        fn udp_try_send_to(
            u: &Self::Udp,
            buf: &[u8],
            to: ::std::net::SocketAddr,
        ) -> ::std::io::Result<usize> {
            $crate::fd::try_send_to(u, buf, to)
        }

        fn udp_bind(
            &self,
            addr: ::std::net::SocketAddr,
        ) -> $crate::BoxFuture<'static, ::std::io::Result<Self::Udp>> {
            Box::pin(<Self::Udp>::bind(addr))
        }

        fn udp_local_addr(u: &Self::Udp) -> ::std::io::Result<::std::net::SocketAddr> {
            u.local_addr()
        }

        fn udp_send_to<'a>(
            u: &'a Self::Udp,
            buf: &'a [u8],
            to: ::std::net::SocketAddr,
        ) -> $crate::BoxFuture<'a, ::std::io::Result<usize>> {
            Box::pin(u.send_to(buf, to))
        }

        fn udp_recv_from<'a>(
            u: &'a Self::Udp,
            buf: &'a mut [u8],
        ) -> $crate::BoxFuture<'a, ::std::io::Result<(usize, ::std::net::SocketAddr)>> {
            Box::pin(u.recv_from(buf))
        }
    };
}

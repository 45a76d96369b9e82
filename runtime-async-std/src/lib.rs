//! LinkSocks on async-std: the [`Runtime`] seam filled with async-std's executor, timers and
//! sockets. Everything else lives once in `linksocks-runtime`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
pub use linksocks_runtime::{
    stop_pair, ClientOptions, RunError, RunEvent, ServerOptions, Stop, StopHandle,
};
use linksocks_runtime::{BoxFuture, Runtime};

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

/// Run a server until `stop` (see [`linksocks_runtime::run_server`]).
pub async fn run_server(
    opts: ServerOptions,
    events: Option<async_channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    linksocks_runtime::run_server(AsyncStd, opts, events, stop).await
}

/// Run a client until `stop` or a fatal error (see [`linksocks_runtime::run_client`]).
pub async fn run_client(
    opts: ClientOptions,
    events: Option<async_channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    linksocks_runtime::run_client(AsyncStd, opts, events, stop).await
}

//! LinkSocks on smol: the [`Runtime`] seam filled with smol's executor, timers and sockets.
//! Everything else lives once in `linksocks-runtime`.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

pub use linksocks_runtime::{
    stop_pair, ClientOptions, RunError, RunEvent, ServerOptions, Stop, StopHandle,
};
use linksocks_runtime::{BoxFuture, Runtime};
use smol::net::{TcpListener, TcpStream, UdpSocket};

/// Name shown by `linksocks-cli version`.
pub const NAME: &str = "smol";

#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    type Tcp = TcpStream;
    type Listener = TcpListener;
    type Udp = UdpSocket;

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(fut).detach();
    }

    linksocks_runtime::std_shaped_sockets!();

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(smol::unblock(move || {
            (host.as_str(), port).to_socket_addrs().map(|a| a.collect())
        }))
    }

    fn tcp_set_linger_zero(s: &TcpStream) {
        let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
    }
}

/// Drive a future to completion on this thread; spawned tasks run on smol's global executor
/// (`SMOL_THREADS` threads, one by default).
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    smol::block_on(fut)
}

/// Run a server until `stop` (see [`linksocks_runtime::run_server`]).
pub async fn run_server(
    opts: ServerOptions,
    events: Option<smol::channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    linksocks_runtime::run_server(Smol, opts, events, stop).await
}

/// Run a client until `stop` or a fatal error (see [`linksocks_runtime::run_client`]).
pub async fn run_client(
    opts: ClientOptions,
    events: Option<smol::channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    linksocks_runtime::run_client(Smol, opts, events, stop).await
}

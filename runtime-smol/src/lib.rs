//! LinkSocks on smol: the [`Runtime`] seam filled with smol's executor, timers and sockets.
//! Everything else lives once in `linksocks-runtime`.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
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
        executor().spawn(fut).detach();
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
}

/// The executor every task of ours runs on. Not smol's global one: that one runs tasks on
/// threads of its own while another thread waits for I/O, so every socket event costs a
/// wake-up across threads. Ours runs on the threads that call [`block_on`], which also drive
/// the reactor: one thread, by default, polls the sockets and runs what they woke.
fn executor() -> &'static smol::Executor<'static> {
    static EX: OnceLock<smol::Executor<'static>> = OnceLock::new();
    EX.get_or_init(|| {
        // LINKSOCKS_THREADS=N: N threads in all share the work (the default, 1, suits a
        // client; a busy server on many cores may want more).
        let extra = std::env::var("LINKSOCKS_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .saturating_sub(1);
        for i in 0..extra {
            let _ = std::thread::Builder::new()
                .name(format!("linksocks-{i}"))
                .spawn(|| smol::block_on(executor().run(std::future::pending::<()>())));
        }
        smol::Executor::new()
    })
}

/// Drive a future to completion on this thread, running our tasks meanwhile (see
/// `executor`).
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    smol::block_on(executor().run(fut))
}

/// Run a server until `stop` (see [`linksocks_runtime::run_server`]). Its tasks run on
/// threads inside [`block_on`], so drive it (or whatever awaits it) with that.
pub async fn run_server(
    opts: ServerOptions,
    events: Option<smol::channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    linksocks_runtime::run_server(Smol, opts, events, stop).await
}

/// Run a client until `stop` or a fatal error (see [`linksocks_runtime::run_client`]). Its
/// tasks run on threads inside [`block_on`], so drive it (or whatever awaits it) with that.
pub async fn run_client(
    opts: ClientOptions,
    events: Option<smol::channel::Sender<RunEvent>>,
    stop: Stop,
) -> Result<(), RunError> {
    linksocks_runtime::run_client(Smol, opts, events, stop).await
}

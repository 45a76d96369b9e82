//! LinkSocks on smol: the [`Runtime`] seam filled with smol's executor, timers and sockets.
//! Everything else lives once in `linksocks-runtime`.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Instant;

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

/// A LinkSocks server running on smol (see [`linksocks_runtime::Server`]).
pub type Server = linksocks_runtime::Server<Smol>;
/// A LinkSocks client running on smol (see [`linksocks_runtime::Client`]).
pub type Client = linksocks_runtime::Client<Smol>;

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
        // Inside our `block_on` (the CLI), tasks run on the threads that drive the reactor.
        // Anywhere else (an application's own `smol::block_on` or executor) nobody runs our
        // executor, so tasks go to smol's global one, which runs itself.
        if IN_BLOCK_ON.with(Cell::get) {
            executor().spawn(fut).detach();
        } else {
            smol::spawn(fut).detach();
        }
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

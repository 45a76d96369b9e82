//! What the mode scenarios (forward, reverse, agent, autonomy, lifecycle, curl) share: setting
//! up reverse servers and providers, restarting a server on its port, a TCP relay that counts
//! connection attempts, and the application-side checks.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use linksocks_core::session::ClientRole;
use linksocks_runtime::{Error, Event, ServerOptions};

use super::proxy::{client_options, reverse, server_options, EVENT_TIMEOUT};
use super::socks5::{Dest, Socks5, SocksError};
use super::target::{drain_hash, TcpServer};
use super::{wait, Proxy, Rt};

/// One request through `socks`: connect to `dest`, send `payload`, read it back (from an echo
/// target) and compare. The error says what went wrong, for the test's panic message.
///
/// Writes everything before reading, so keep `payload` within what loopback buffers hold
/// (tens of KiB).
pub fn echo_once(socks: &Socks5, dest: impl Into<Dest>, payload: &[u8]) -> Result<(), String> {
    let dest = dest.into();
    let mut s = socks
        .connect(dest.clone())
        .map_err(|e| format!("SOCKS5 CONNECT {dest} via {}: {e}", socks.proxy))?;
    s.write_all(payload)
        .map_err(|e| format!("writing to {dest}: {e}"))?;
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got)
        .map_err(|e| format!("reading the echo of {dest}: {e}"))?;
    let _ = s.shutdown(Shutdown::Both);
    if got != payload {
        return Err(format!("the echo of {dest} differs from what was sent"));
    }
    Ok(())
}

/// [`echo_once`], panicking with its error.
#[track_caller]
pub fn assert_echo(socks: &Socks5, dest: impl Into<Dest>, payload: &[u8]) {
    if let Err(e) = echo_once(socks, dest, payload) {
        panic!("{e}");
    }
}

/// `n` applications released at once, application `i` echoing `pattern(seed + i, size(i))`
/// (sizes and contents differ, so a crossed channel shows); panics listing those that failed.
pub fn assert_concurrent_echoes(
    socks: SocketAddr,
    dest: SocketAddr,
    n: usize,
    seed: u64,
    size: fn(usize) -> usize,
) {
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    let apps: Vec<_> = (0..n)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let payload = super::target::pattern(seed + i as u64, size(i));
                echo_once(&Socks5::new(socks), dest, &payload)
            })
        })
        .collect();
    let failed: Vec<String> = apps
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| t.join().unwrap().err().map(|e| format!("app {i}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {n} failed: {failed:#?}",
        failed.len()
    );
}

/// Reads exactly `len` bytes from each connection and answers with their SHA-256 hex (64
/// ASCII bytes). Unlike [`TcpServer::sink`] it needs no EOF from the application, which the
/// protocol could not deliver without ending the channel (it has no half-close).
pub fn counted_sink(bind: &str, len: u64) -> io::Result<TcpServer> {
    TcpServer::start(bind, move |mut s| {
        let mut r = (&s).take(len);
        if let Ok((n, h)) = drain_hash(&mut r) {
            if n == len {
                let _ = s.write_all(h.as_bytes());
            }
        }
        // Wait for the application to close first, so that the answer is not cut off.
        let _ = s.read(&mut [0u8; 1]);
    })
}

/// A TCP relay on 127.0.0.1 to `to`: every accepted connection is piped to a new connection
/// to `to` (closed at once when `to` refuses). Its `accepted` counter shows how often a client
/// tried to reach the server behind it, failures included, which the fault-injecting relays
/// (`relay`, `netfault`) do not count: they count only what they could relay.
pub fn tcp_relay(to: SocketAddr) -> io::Result<TcpServer> {
    TcpServer::start("127.0.0.1:0", move |a| {
        let Ok(b) = TcpStream::connect(to) else {
            return;
        };
        let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
            return;
        };
        let pipe = |mut from: TcpStream, mut to: TcpStream| {
            let _ = io::copy(&mut from, &mut to);
            // No half-close in this protocol's world: one side's end ends both.
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        };
        let up = std::thread::spawn(move || pipe(a, b2));
        pipe(b, a2);
        let _ = up.join();
    })
}

/// Start a server whose HTTP/WebSocket port is `port` (a restart on the port of a server that
/// just stopped). Retries while the port is still taken, which on a shared machine can last a
/// moment.
pub fn server_on_port(rt: Rt, mut opts: ServerOptions, port: u16) -> Proxy {
    opts.ws_port = port;
    wait::for_some(
        &format!("a server listening on port {port}"),
        EVENT_TIMEOUT,
        || {
            let mut s = Proxy::server(rt, opts.clone());
            let started = Instant::now();
            loop {
                if s.history()
                    .iter()
                    .any(|e| matches!(e, Event::WebSocketListening(_)))
                {
                    return Some(s);
                }
                match s.wait_end(Duration::from_millis(20)) {
                    None if started.elapsed() < EVENT_TIMEOUT => continue,
                    None => panic!("the restarted server neither listens nor ends"),
                    Some(Err(Error::Bind { .. })) => return None,
                    Some(other) => panic!("the restarted server ended: {other:?}"),
                }
            }
        },
    )
}

/// A server with one reverse token `token` (SOCKS5 on 127.0.0.1, port of the system's
/// choice, optional credentials), after `tweak`.
pub fn reverse_server(
    rt: Rt,
    token: &str,
    credentials: Option<(&str, &str)>,
    tweak: impl FnOnce(&mut ServerOptions),
) -> Proxy {
    let mut opts = server_options(vec![reverse(token, credentials)]);
    tweak(&mut opts);
    Proxy::server(rt, opts)
}

/// A provider of `token` for the server at `url`, once it is authenticated.
pub fn provider(rt: Rt, url: &str, token: &str) -> Proxy {
    provider_with(rt, url, token, |_| {})
}

/// Like [`provider`], with its options changed by `tweak` first.
pub fn provider_with(
    rt: Rt,
    url: &str,
    token: &str,
    tweak: impl FnOnce(&mut linksocks_runtime::ClientOptions),
) -> Proxy {
    let mut opts = client_options(url, token, ClientRole::Provider);
    tweak(&mut opts);
    let mut p = Proxy::client(rt, opts);
    p.wait_links_ready(1);
    p
}

/// How many targets each of `proxies` dialled, once they add up to at least `total` (the
/// `Dialing` events travel on a channel of their own, a moment behind the data).
pub fn dial_counts(proxies: &mut [Proxy], total: usize) -> Vec<usize> {
    let mut counts = Vec::new();
    wait::until(&format!("{total} dials reported"), EVENT_TIMEOUT, || {
        counts = proxies.iter_mut().map(|p| p.dialled().len()).collect();
        counts.iter().sum::<usize>() >= total
    });
    counts
}

/// True when `r` is what an application sees on a connection the proxy ended with an error
/// (a reset, a broken pipe), as opposed to a clean EOF or a read that merely timed out.
pub fn is_error_close(r: &io::Result<usize>) -> bool {
    match r {
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::UnexpectedEof
        ),
        Ok(_) => false,
    }
}

/// The HTTP API key the mode scenarios give servers whose client counts they watch.
pub const API_KEY: &str = "e2e-modes-key";

/// How many clients (links) token `token` has on the server at `ws`, per its HTTP API (the
/// server needs `api_key: Some(API_KEY)`). A test waits on this where the reference's tests
/// wait on the server's own count, e.g. for a departed provider to be noticed.
pub fn token_clients(ws: SocketAddr, token: &str) -> usize {
    let status = super::api::request(ws, "GET", "/api/status", Some(API_KEY), None).json();
    status["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["token"] == token)
        .and_then(|t| t["clients_count"].as_u64())
        .unwrap_or(0) as usize
}

/// Waits until [`token_clients`] is `n`.
#[track_caller]
pub fn wait_token_clients(ws: SocketAddr, token: &str, n: usize) {
    wait::until(
        &format!("{n} clients of token {token:?} on the server"),
        EVENT_TIMEOUT,
        || token_clients(ws, token) == n,
    );
}

/// A FastOpen CONNECT through `socks` to `dest`, which cannot be reached: the application is
/// told "connected" at once, so the failure must reach it as an error close (a reset), never
/// as a clean EOF that reads like a finished exchange. Panics otherwise.
#[track_caller]
pub fn assert_fast_open_fails(socks: &Socks5, dest: impl Into<Dest>) {
    let dest = dest.into();
    match socks.connect(dest.clone()) {
        Ok(mut s) => {
            // A reset that arrives first fails this write; the kernel reports the error once,
            // so a read after it would then see 0: the write's error is the answer then.
            let w = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            if let Err(e) = &w {
                if is_error_close(&Err(io::Error::from(e.kind()))) {
                    return;
                }
            }
            let r = s.read(&mut [0u8; 64]);
            assert!(
                is_error_close(&r),
                "FastOpen to {dest}: expected an error close, got {r:?} (write: {w:?})"
            );
        }
        // The reset overtook the success reply: an error close too.
        Err(SocksError::Io(e)) if is_error_close(&Err(io::Error::from(e.kind()))) => {}
        Err(e) => panic!("FastOpen to {dest}: expected success, then a reset; got {e}"),
    }
}

//! HTTP redirects while dialing (spec section 1: up to 5 are followed). A tiny HTTP server
//! here answers the WebSocket upgrade with 3xx and a `Location`, as a front that moved the
//! service would; our forward client, pointed at it, must end up at our server with its token
//! and carry SOCKS5 traffic, and must give up with a clear error on a loop.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use linksocks_core::session::ClientRole;
use linksocks_runtime::Error;
use linksocks_tests::e2e::modes::assert_echo;
use linksocks_tests::e2e::proxy::{forward, ws_url, EVENT_TIMEOUT};
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::{read_request_head, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

/// An HTTP server on 127.0.0.1 answering every request with the redirect `route` makes of its
/// own address and the request's target (path and query): (status, Location). It records the
/// targets it was asked for.
struct Redirector {
    server: TcpServer,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Redirector {
    fn start(
        route: impl Fn(SocketAddr, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> Redirector {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        // Known once it listens, before anyone can ask it anything.
        let me = Arc::new(OnceLock::new());
        let me2 = me.clone();
        let server = TcpServer::start("127.0.0.1:0", move |mut s| {
            let _ = s.set_read_timeout(Some(EVENT_TIMEOUT));
            let Some(head) = read_request_head(&mut s) else {
                return;
            };
            // "GET <target> HTTP/1.1"
            let Some(target) = head.split(' ').nth(1) else {
                return;
            };
            // Recorded before answering: the client acts on the answer only.
            seen.lock().unwrap().push(target.to_string());
            let (status, location) = route(*me2.get().expect("address set"), target);
            let reason = match status {
                301 => "Moved Permanently",
                302 => "Found",
                303 => "See Other",
                307 => "Temporary Redirect",
                308 => "Permanent Redirect",
                _ => "Unexpected",
            };
            let answer = format!(
                "HTTP/1.1 {status} {reason}\r\nLocation: {location}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(answer.as_bytes());
            let _ = s.shutdown(Shutdown::Write);
        })
        .expect("redirector");
        me.set(server.addr).expect("set once");
        Redirector { server, requests }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The request targets so far, oldest first.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A forward server; the address of its WebSocket port.
fn forward_server(rt: Rt) -> (Proxy, SocketAddr) {
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let addr = server.ws_addr();
    (server, addr)
}

/// A forward client pointed at the redirector; reconnection off, so it dials once and a
/// failure to reach the server ends it.
fn client_via(rt: Rt, redirector: &Redirector) -> Proxy {
    let mut opts = client_options(&ws_url(redirector.addr()), "tok", ClientRole::Forward);
    opts.machine.reconnect = false;
    Proxy::client(rt, opts)
}

/// The query of a request target (after `?`), or a panic.
fn query(target: &str) -> &str {
    target
        .split_once('?')
        .unwrap_or_else(|| panic!("no query in {target:?}"))
        .1
}

/// One `302 Found` to our server's `/socket`, with no query in the Location: the client
/// follows it keeping its own query (the token), authenticates and carries traffic.
fn redirect_once(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, server) = forward_server(rt);
    let redirector = Redirector::start(move |_, _| (302, format!("ws://{server}/socket")));
    let mut client = client_via(rt, &redirector);
    let socks = client.socks_addr();
    client.wait_links_ready(1);
    assert_echo(&Socks5::new(socks), echo.addr, b"through a redirect");
    let requests = redirector.requests();
    assert_eq!(
        requests.len(),
        1,
        "requests to the redirector: {requests:?}"
    );
    assert!(
        requests[0].starts_with("/socket?") && query(&requests[0]).contains("token="),
        "the client's first request: {:?}",
        requests[0]
    );
}

/// Five redirects (the most that are followed), one of each status and each form of
/// Location: absolute http:// URL, absolute path, absolute ws:// URL, network-path
/// reference, then our server. The query the client started with reaches every hop.
fn redirect_chain(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, server) = forward_server(rt);
    let redirector = Redirector::start(move |me, target| match target.split('?').next().unwrap() {
        "/socket" => (301, format!("http://{me}/hop1")),
        "/hop1" => (302, "/hop2".into()),
        "/hop2" => (303, format!("ws://{me}/hop3")),
        "/hop3" => (307, format!("//{me}/hop4")),
        "/hop4" => (308, format!("ws://{server}/socket")),
        other => (302, format!("/unexpected{other}")),
    });
    let mut client = client_via(rt, &redirector);
    let socks = client.socks_addr();
    client.wait_links_ready(1);
    assert_echo(&Socks5::new(socks), echo.addr, b"through five redirects");
    let requests = redirector.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|t| t.split('?').next().unwrap())
        .collect();
    assert_eq!(paths, ["/socket", "/hop1", "/hop2", "/hop3", "/hop4"]);
    let first = query(&requests[0]);
    assert!(first.contains("token="), "first query: {first:?}");
    for t in &requests[1..] {
        assert_eq!(query(t), first, "query at {t:?}");
    }
}

/// Two paths redirecting to each other: the client follows 5 redirects (6 requests), then
/// ends with one clear line.
fn redirect_loop(rt: Rt) {
    let redirector = Redirector::start(|me, target| {
        if target.starts_with("/socket") {
            (302, "/loop".into())
        } else {
            (307, format!("http://{me}/socket"))
        }
    });
    let mut client = client_via(rt, &redirector);
    let end = client.wait_end(EVENT_TIMEOUT).map(|r| match r {
        Err(e @ Error::Disconnected { .. }) => Ok(e.to_string()),
        other => Err(format!("{other:?}")),
    });
    let message = match end {
        Some(Ok(m)) => m,
        Some(Err(other)) => panic!("the client ended with {other}, not a fatal error"),
        None => panic!("the client still runs {EVENT_TIMEOUT:?} into a redirect loop"),
    };
    assert!(
        message.contains("too many redirects") && !message.contains('\n'),
        "error: {message:?}"
    );
    assert!(
        !message.contains("token="),
        "the error shows the token hash: {message:?}"
    );
    let requests = redirector.requests();
    assert_eq!(
        requests.len(),
        6,
        "the first request and 5 redirects: {requests:?}"
    );
}

linksocks_tests::on_both_runtimes!(redirect_once, redirect_chain, redirect_loop);

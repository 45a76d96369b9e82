//! Upstream proxies (spec section 9) against real ones started here: our client reaching the
//! WebSocket server through SOCKS5 (microsocks, with and without credentials; dante) and HTTP
//! CONNECT (tinyproxy, with Basic authentication), and our server reaching targets through
//! SOCKS5 and HTTP upstreams.
//!
//! Every proxy dials out from 127.0.0.2, and what stands behind it (our server's WebSocket
//! port, or the target) admits only that address: the direct path from 127.0.0.1 is refused,
//! so a working tunnel proves the traffic went through the proxy. Each test also checks the
//! proxy's own log, and that the direct path indeed fails.

use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use linksocks_core::session::ClientRole;
use linksocks_runtime::{ClientOptions, ProxyUrl};
use linksocks_tests::e2e::daemon::free_addr;
use linksocks_tests::e2e::daemons::{UpstreamProxy, PROXY_OUT_IP};
use linksocks_tests::e2e::modes::{assert_echo, echo_once};
use linksocks_tests::e2e::proxy::{
    client_options, forward, reverse, server_options, EVENT_TIMEOUT,
};
use linksocks_tests::e2e::relay::Relay;
use linksocks_tests::e2e::socks5::{Socks5, SocksError};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{Proxy, Rt};

/// The reply code of a SOCKS5 CONNECT that must be refused, or what happened instead.
fn reply_code(r: Result<TcpStream, SocksError>) -> Result<u8, String> {
    match r {
        Ok(_) => Err("the request succeeded".into()),
        Err(SocksError::Reply(c)) => Ok(c),
        Err(e) => Err(e.to_string()),
    }
}

/// An echo target that serves only connections from `only` and closes others at once.
struct GuardedEcho {
    server: TcpServer,
    refused: Arc<AtomicUsize>,
}

fn guarded_echo(only: IpAddr) -> GuardedEcho {
    let refused = Arc::new(AtomicUsize::new(0));
    let r2 = refused.clone();
    let server = TcpServer::start("127.0.0.1:0", move |s| {
        if s.peer_addr().map(|p| p.ip()).ok() != Some(only) {
            r2.fetch_add(1, Ordering::SeqCst);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        let mut r = s.try_clone().expect("clone");
        let mut w = s;
        let _ = std::io::copy(&mut r, &mut w);
        let _ = w.shutdown(std::net::Shutdown::Both);
    })
    .unwrap();
    GuardedEcho { server, refused }
}

/// A forward server (token "tok") whose WebSocket port only the proxies can reach: the
/// relay in front of it admits connections from [`PROXY_OUT_IP`] alone.
fn guarded_forward_server(rt: Rt) -> (Proxy, Relay) {
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let relay = Relay::start_admitting(server.ws_addr(), Some(PROXY_OUT_IP));
    (server, relay)
}

fn client_via(url: &str, role: ClientRole, proxy: Option<ProxyUrl>) -> ClientOptions {
    let mut o = client_options(url, "tok", role);
    o.upstream_proxy = proxy;
    o.machine.reconnect = false;
    o
}

/// Starts a client that must fail to reach its server; its error.
#[track_caller]
fn client_fails(rt: Rt, opts: ClientOptions) -> String {
    let mut c = Proxy::client(rt, opts);
    match c.wait_end(EVENT_TIMEOUT) {
        Some(Err(e)) => e.to_string(),
        other => panic!("the client should have failed: {other:?}"),
    }
}

/// The WebSocket links the relay let in came from the proxy.
#[track_caller]
fn links_came_through_proxy(relay: &Relay) {
    let conns = relay.conns();
    assert!(!conns.is_empty(), "no link reached the server");
    for c in conns {
        assert_eq!(c.peer.ip(), PROXY_OUT_IP, "a link came from {}", c.peer);
    }
}

/// A forward client through a SOCKS5 upstream (microsocks, no authentication).
fn client_via_socks5(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let proxy = UpstreamProxy::microsocks(None);
    let (_server, relay) = guarded_forward_server(rt);

    let why = client_fails(rt, client_via(&relay.url(), ClientRole::Forward, None));
    assert!(why.contains("cannot connect to the server"), "{why}");
    assert!(
        relay.refused() >= 1,
        "the direct attempt never reached the relay"
    );

    let mut client = Proxy::client(
        rt,
        client_via(&relay.url(), ClientRole::Forward, Some(proxy.url())),
    );
    client.wait_links_ready(1);
    assert_echo(
        &Socks5::new(client.socks_addr()),
        echo.addr,
        &pattern(1, 60_000),
    );
    links_came_through_proxy(&relay);
    assert!(
        proxy.logged_connection_to(relay.addr),
        "microsocks did not log a connection to {}:\n{}",
        relay.addr,
        proxy.log()
    );
}

/// microsocks requiring a username and password: the right ones pass; a wrong password and
/// no credentials at all are refused, and the client says it was the upstream proxy.
fn client_via_socks5_with_credentials(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let proxy = UpstreamProxy::microsocks(Some(("proxyuser", "pr0xy-pass")));
    let (_server, relay) = guarded_forward_server(rt);

    for (creds, what) in [
        (Some(("proxyuser", "wrong")), "a wrong password"),
        (None, "none"),
    ] {
        let why = client_fails(
            rt,
            client_via(
                &relay.url(),
                ClientRole::Forward,
                Some(proxy.url_with(creds)),
            ),
        );
        assert!(
            why.contains("upstream proxy"),
            "credentials {what}: unclear error: {why}"
        );
    }
    assert!(
        relay.conns().is_empty(),
        "a refused client reached the server"
    );

    let mut client = Proxy::client(
        rt,
        client_via(&relay.url(), ClientRole::Forward, Some(proxy.url())),
    );
    client.wait_links_ready(1);
    assert_echo(
        &Socks5::new(client.socks_addr()),
        echo.addr,
        b"authenticated upstream",
    );
    links_came_through_proxy(&relay);
    assert!(proxy.logged_connection_to(relay.addr), "{}", proxy.log());
}

/// A reverse provider reaching its server through dante.
fn provider_via_dante(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let proxy = UpstreamProxy::dante();
    let mut server = Proxy::server(rt, server_options(vec![reverse("tok", None)]));
    let relay = Relay::start_admitting(server.ws_addr(), Some(PROXY_OUT_IP));

    let mut prov = Proxy::client(
        rt,
        client_via(&relay.url(), ClientRole::Provider, Some(proxy.url())),
    );
    prov.wait_links_ready(1);
    assert_echo(
        &Socks5::new(server.socks_addr()),
        echo.addr,
        &pattern(2, 60_000),
    );
    links_came_through_proxy(&relay);
    assert!(
        proxy.logged_connection_to(relay.addr),
        "dante did not log a connection to {}:\n{}",
        relay.addr,
        proxy.log()
    );
}

/// A forward client through tinyproxy's HTTP CONNECT with Basic authentication; a wrong
/// password gets the proxy's refusal in the client's error.
fn client_via_http_connect(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let proxy = UpstreamProxy::tinyproxy(Some(("webuser", "web-pass")));
    let (_server, relay) = guarded_forward_server(rt);

    let why = client_fails(
        rt,
        client_via(
            &relay.url(),
            ClientRole::Forward,
            Some(proxy.url_with(Some(("webuser", "nope")))),
        ),
    );
    // tinyproxy answers a bad password with 401 rather than RFC 9110's 407.
    assert!(
        why.contains("upstream proxy refused") && why.contains("401"),
        "unclear error: {why}"
    );

    let mut client = Proxy::client(
        rt,
        client_via(&relay.url(), ClientRole::Forward, Some(proxy.url())),
    );
    client.wait_links_ready(1);
    assert_echo(
        &Socks5::new(client.socks_addr()),
        echo.addr,
        &pattern(3, 60_000),
    );
    links_came_through_proxy(&relay);
    assert!(
        proxy.logged_connection_to(relay.addr),
        "tinyproxy did not log CONNECT {}:\n{}",
        relay.addr,
        proxy.log()
    );
}

/// A forward server dialling its targets through `proxy`; the target admits only the proxy.
/// Without the upstream the same request fails; through it, it works; a target the proxy
/// cannot reach gives the application reply 0x04.
fn server_reaches_targets_via(rt: Rt, proxy: &UpstreamProxy) {
    let target = guarded_echo(PROXY_OUT_IP);

    let (_direct_server, _direct_client, direct_socks) =
        linksocks_tests::e2e::proxy::forward_pair(rt, "tok");
    assert!(
        echo_once(&Socks5::new(direct_socks), target.server.addr, b"direct").is_err(),
        "the target served a direct connection"
    );
    assert_eq!(target.refused.load(Ordering::SeqCst), 1);

    let mut opts = server_options(vec![forward("tok")]);
    opts.upstream_proxy = Some(proxy.url());
    let mut server = Proxy::server(rt, opts);
    let mut client = Proxy::client(
        rt,
        client_options(&server.url(), "tok", ClientRole::Forward),
    );
    let socks = Socks5::new(client.socks_addr());
    assert_echo(&socks, target.server.addr, &pattern(4, 100_000));
    assert_echo(&socks, target.server.addr, b"and again");
    assert_eq!(
        target.refused.load(Ordering::SeqCst),
        1,
        "a connection bypassed the proxy"
    );
    assert!(
        proxy.logged_connection_to(target.server.addr),
        "the proxy did not log a connection to {}:\n{}",
        target.server.addr,
        proxy.log()
    );
    assert_eq!(reply_code(socks.connect(free_addr())), Ok(0x04));
}

fn server_via_socks5(rt: Rt) {
    server_reaches_targets_via(rt, &UpstreamProxy::dante());
}

fn server_via_socks5_with_credentials(rt: Rt) {
    let proxy = UpstreamProxy::microsocks(Some(("srv", "srv-pass")));
    server_reaches_targets_via(rt, &proxy);
    // With a wrong password the server's dial fails, and the application hears 0x04.
    let target = guarded_echo(PROXY_OUT_IP);
    let mut opts = server_options(vec![forward("tok")]);
    opts.upstream_proxy = Some(proxy.url_with(Some(("srv", "bad"))));
    let mut server = Proxy::server(rt, opts);
    let mut client = Proxy::client(
        rt,
        client_options(&server.url(), "tok", ClientRole::Forward),
    );
    let socks = Socks5::new(client.socks_addr());
    assert_eq!(reply_code(socks.connect(target.server.addr)), Ok(0x04));
    assert_eq!(target.server.accepted.load(Ordering::SeqCst), 0);
}

fn server_via_http(rt: Rt) {
    server_reaches_targets_via(rt, &UpstreamProxy::tinyproxy(Some(("srv", "srv-pass"))));
}

linksocks_tests::on_both_runtimes!(
    client_via_socks5,
    client_via_socks5_with_credentials,
    provider_via_dante,
    client_via_http_connect,
    server_via_socks5,
    server_via_socks5_with_credentials,
    server_via_http,
);

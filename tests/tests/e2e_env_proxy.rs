//! Proxies from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, and their
//! lower-case forms) on the client's way to the server, against real proxies, and
//! `no_env_proxy` (`--no-env-proxy`) turning them off.
//!
//! The environment is the process's: this file is a test binary of its own, and its tests
//! (one per runtime) hold [`ENV_LOCK`] for their whole run, so no two of them change or read
//! the variables at the same time. Proxies under test are stopped before the variables change.
//!
//! Like the reference, the client never sends loopback destinations to an environment proxy.
//! The server therefore gets the URL host `127.1`, a name (not an IP literal) that the
//! proxies' resolvers, and ours, read as 127.0.0.1. What stands in front of our server admits
//! only the proxies' outgoing address, so only a proxied link gets through. (wss:// needs a
//! TLS server name, which `127.1` is not: HTTPS_PROXY's choice for wss:// is covered by the
//! runtime's unit tests of the same decision.)

use std::sync::{Mutex, MutexGuard};

use linksocks_core::session::ClientRole;
use linksocks_runtime::{ClientOptions, Error, ProxyUrl};
use linksocks_tests::e2e::daemon::free_addr;
use linksocks_tests::e2e::daemons::{UpstreamProxy, PROXY_OUT_IP};
use linksocks_tests::e2e::modes::assert_echo;
use linksocks_tests::e2e::proxy::{client_options, forward, server_options, EVENT_TIMEOUT};
use linksocks_tests::e2e::relay::Relay;
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::TcpServer;
use linksocks_tests::e2e::{Proxy, Rt};

static ENV_LOCK: Mutex<()> = Mutex::new(());

const VARS: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// Holds the environment for one test; clears the proxy variables when done.
struct ProxyEnv<'a> {
    _lock: MutexGuard<'a, ()>,
}

impl ProxyEnv<'_> {
    fn take() -> ProxyEnv<'static> {
        // A test that failed while holding the lock leaves it poisoned; the variables are
        // set afresh anyway.
        let lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let env = ProxyEnv { _lock: lock };
        env.set(&[]);
        env
    }

    /// Exactly these proxy variables, the others unset.
    fn set(&self, vars: &[(&str, &str)]) {
        for k in VARS {
            std::env::remove_var(k);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
    }
}

impl Drop for ProxyEnv<'_> {
    fn drop(&mut self) {
        self.set(&[]);
    }
}

/// A client of `url` that does not reconnect; taking its proxy from the environment (as the
/// CLI does) unless `no_env`.
fn client(url: &str, no_env: bool, explicit: Option<ProxyUrl>) -> ClientOptions {
    let mut o = client_options(url, "tok", ClientRole::Forward);
    o.env_proxy = (!no_env).then(|| linksocks_runtime::ProxyEnv::from_vars(std::env::vars()));
    o.upstream_proxy = explicit;
    o.machine.reconnect = false;
    o
}

/// The client connects and tunnels; the relay saw the link come from a proxy.
#[track_caller]
fn works(rt: Rt, opts: ClientOptions, echo: &TcpServer, relay: Option<&Relay>, what: &str) {
    let before = relay.map_or(0, |r| r.conns().len());
    let mut c = Proxy::client(rt, opts);
    c.wait_links_ready(1);
    assert_echo(&Socks5::new(c.socks_addr()), echo.addr, what.as_bytes());
    if let Some(r) = relay {
        let conns = r.conns();
        assert_eq!(conns.len(), before + 1, "{what}: one new link expected");
        assert_eq!(conns[before].peer.ip(), PROXY_OUT_IP, "{what}: not proxied");
    }
    c.stop().expect("client stops cleanly");
}

/// The client cannot reach the server.
#[track_caller]
fn fails(rt: Rt, opts: ClientOptions, what: &str) {
    let mut c = Proxy::client(rt, opts);
    match c.wait_end(EVENT_TIMEOUT) {
        Some(Err(e @ Error::Disconnected { .. })) => {
            let why = e.to_string();
            assert!(
                why.contains("cannot connect to the server"),
                "{what}: {why}"
            )
        }
        other => panic!("{what}: the client should have failed: {other:?}"),
    }
}

fn environment_proxies(rt: Rt) {
    let env = ProxyEnv::take();
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let http = UpstreamProxy::tinyproxy(None);
    let socks = UpstreamProxy::microsocks(None);
    let dead = format!("http://{}", free_addr());
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let relay = Relay::start_admitting(server.ws_addr(), Some(PROXY_OUT_IP));
    let url = format!("ws://127.1:{}", relay.addr.port());
    let connects = |p: &UpstreamProxy| {
        p.log()
            .matches(&format!("127.1:{}", relay.addr.port()))
            .count()
    };

    env.set(&[]);
    fails(rt, client(&url, false, None), "no proxy: direct, refused");

    env.set(&[("HTTP_PROXY", &http.url_string())]);
    works(
        rt,
        client(&url, false, None),
        &echo,
        Some(&relay),
        "HTTP_PROXY",
    );
    assert_eq!(connects(&http), 1, "tinyproxy log:\n{}", http.log());
    fails(rt, client(&url, true, None), "HTTP_PROXY with no_env_proxy");

    env.set(&[
        ("HTTP_PROXY", &http.url_string()),
        ("NO_PROXY", "example.test,127.1"),
    ]);
    fails(
        rt,
        client(&url, false, None),
        "HTTP_PROXY with the host in NO_PROXY",
    );

    env.set(&[("http_proxy", &http.url_string())]);
    works(
        rt,
        client(&url, false, None),
        &echo,
        Some(&relay),
        "http_proxy",
    );
    assert_eq!(connects(&http), 2, "tinyproxy log:\n{}", http.log());

    env.set(&[("ALL_PROXY", &socks.url_string())]);
    works(
        rt,
        client(&url, false, None),
        &echo,
        Some(&relay),
        "ALL_PROXY",
    );
    assert_eq!(connects(&socks), 1, "microsocks log:\n{}", socks.log());

    // An explicit upstream proxy wins over the environment's.
    env.set(&[("HTTP_PROXY", &dead), ("ALL_PROXY", &dead)]);
    works(
        rt,
        client(&url, false, Some(socks.url())),
        &echo,
        Some(&relay),
        "explicit",
    );
    assert_eq!(connects(&socks), 2, "microsocks log:\n{}", socks.log());
    fails(rt, client(&url, false, None), "a dead HTTP_PROXY");

    // Loopback servers are reached directly whatever the environment says.
    works(
        rt,
        client(&server.url(), false, None),
        &echo,
        None,
        "loopback direct",
    );
}

linksocks_tests::on_both_runtimes!(environment_proxies);

//! Agent mode (connector -> server -> provider) and autonomy (providers register their own
//! connector tokens) on real loopback sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use linksocks_core::session::{ClientRole, ReverseTokenSpec};
use linksocks_runtime::{Event, ServerOptions, TokenSpec};
use linksocks_tests::e2e::daemon::free_port;
use linksocks_tests::e2e::modes::{
    assert_echo, dial_counts, echo_once, provider, provider_with, server_on_port,
    wait_token_clients, API_KEY,
};
use linksocks_tests::e2e::proxy::{reverse, socks_listen, EVENT_TIMEOUT};
use linksocks_tests::e2e::socks5::{Dest, Socks5, SocksError};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

/// A server with reverse token `rtok` (SOCKS5 on 127.0.0.1) and connector token `ctok`.
fn agent_server(rt: Rt, tweak: impl FnOnce(&mut ServerOptions)) -> Proxy {
    let mut opts = server_options(vec![
        reverse("rtok", None),
        TokenSpec::Connector(Some("ctok".into()), "rtok".into()),
    ]);
    tweak(&mut opts);
    Proxy::server(rt, opts)
}

/// A connector (a forward client with a connector token) and its SOCKS5 address.
fn connector(rt: Rt, url: &str, token: &str, fast_open: bool) -> (Proxy, SocketAddr) {
    let mut opts = client_options(url, token, ClientRole::Forward);
    opts.machine.fast_open = fast_open;
    let mut c = Proxy::client(rt, opts);
    let socks = c.socks_addr();
    (c, socks)
}

/// The `n`-th connector token this provider was confirmed (1 = the first registration).
fn connector_token(p: &mut Proxy, n: usize) -> String {
    let mut seen = 0;
    p.wait_for("connector token registration", EVENT_TIMEOUT, |e| match e {
        Event::ConnectorToken(t) => {
            seen += 1;
            (seen >= n).then(|| t.clone())
        }
        _ => None,
    })
}

/// Both the server's SOCKS port and the connector's reach targets, through the provider.
fn agent_both_ports(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = agent_server(rt, |_| {});
    let url = server.url();
    let mut prov = provider(rt, &url, "rtok");
    let (_conn, csocks) = connector(rt, &url, "ctok", false);
    assert_echo(&Socks5::new(csocks), echo.addr, &pattern(1, 20_000));
    assert_echo(
        &Socks5::new(csocks),
        Dest::domain("localhost", echo.addr.port()),
        b"by name",
    );
    assert_echo(&Socks5::new(server.socks_addr()), echo.addr, b"server port");
    // Everything left through the provider: the server dialled nothing itself.
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 3), vec![3]);
    assert!(server.dialled().is_empty(), "{:?}", server.dialled());
}

/// A connector's request while its provider is gone waits `connector_wait_provider`: it fails
/// (reply 0x04) when no provider comes, and succeeds when one returns in time.
fn connector_waits_for_provider(rt: Rt) {
    let wait = Duration::from_secs(3);
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = agent_server(rt, |o| {
        o.machine.timings.connector_wait_provider = wait;
        o.api_key = Some(API_KEY.into());
    });
    let (ws, url) = (server.ws_addr(), server.url());
    let first = provider(rt, &url, "rtok");
    let (_conn, csocks) = connector(rt, &url, "ctok", false);
    let socks = Socks5::new(csocks);
    assert_echo(&socks, echo.addr, b"before");
    first.stop().unwrap();
    wait_token_clients(ws, "rtok", 0);

    let start = Instant::now();
    match socks.connect(echo.addr) {
        Err(SocksError::Reply(4)) => {}
        other => panic!("no provider within the wait: expected reply 0x04, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= wait - Duration::from_millis(100) && took < Duration::from_secs(15),
        "refused after {took:?}; the connector wait is {wait:?}"
    );

    let s2 = socks.clone();
    let waiting = std::thread::spawn(move || echo_once(&s2, echo.addr, b"while away"));
    let mut second = provider(rt, &url, "rtok");
    waiting.join().unwrap().unwrap();
    assert_eq!(dial_counts(std::slice::from_mut(&mut second), 1), vec![1]);
}

/// FastOpen in agent mode: on the server, on the connector, on both (the reference's
/// "mixed" cases); both SOCKS ports work each time.
fn agent_fast_open(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    for (server_fo, connector_fo) in [(true, false), (false, true), (true, true)] {
        let mut server = agent_server(rt, |o| o.machine.fast_open = server_fo);
        let url = server.url();
        let _prov = provider(rt, &url, "rtok");
        let (_conn, csocks) = connector(rt, &url, "ctok", connector_fo);
        for socks in [csocks, server.socks_addr()] {
            if let Err(e) = echo_once(&Socks5::new(socks), echo.addr, &pattern(9, 8_000)) {
                panic!("server FastOpen {server_fo}, connector FastOpen {connector_fo}: {e}");
            }
        }
    }
}

/// Server options for autonomy as the reference's `-r -a` sets them up: the reverse token may
/// manage connectors. `socks` is what the token's SOCKS5 listener was asked to be; the
/// reference opens none for such a token.
fn autonomy_options(socks_port: Option<u16>) -> ServerOptions {
    let mut opts = server_options(vec![TokenSpec::Reverse(ReverseTokenSpec {
        token: Some("rtok".into()),
        socks: socks_port.map(|port| {
            let mut l = socks_listen(None);
            l.port = port;
            l
        }),
        allow_manage_connector: true,
    })]);
    opts.machine.connector_autonomy = true;
    opts
}

/// A provider registering connector token `token` ("" lets the server choose one).
fn autonomy_provider(rt: Rt, url: &str, token: &str) -> Proxy {
    provider_with(rt, url, "rtok", |o| {
        o.machine.connector_token = Some(token.into())
    })
}

/// A provider registers its connector token; a connector with it works. The server's own
/// SOCKS port for the reverse token does not (spec 11.11): the reference opens none for a
/// token whose providers manage their connectors.
fn autonomy_connector(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let socks_port = free_port();
    let mut server = Proxy::server(rt, autonomy_options(Some(socks_port)));
    let url = server.url();
    let mut prov = autonomy_provider(rt, &url, "my-connector");
    assert_eq!(connector_token(&mut prov, 1), "my-connector");
    let (_conn, csocks) = connector(rt, &url, "my-connector", false);
    assert_echo(&Socks5::new(csocks), echo.addr, b"via my connector");
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 1), vec![1]);

    let server_port = SocketAddr::from(([127, 0, 0, 1], socks_port));
    assert!(
        echo_once(&Socks5::new(server_port), echo.addr, b"x").is_err(),
        "the server's own SOCKS port reached the autonomous provider"
    );
    assert!(
        !server
            .history()
            .iter()
            .any(|e| matches!(e, Event::SocksListening(_))),
        "the server opened a SOCKS5 listener for an autonomy token: {:?}",
        server.history()
    );
}

/// A provider asking for no particular token gets one generated, and it works.
fn autonomy_generated_token(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = Proxy::server(rt, autonomy_options(None));
    let url = server.url();
    let mut prov = autonomy_provider(rt, &url, "");
    let token = connector_token(&mut prov, 1);
    assert!(!token.is_empty(), "no token generated");
    let (_conn, csocks) = connector(rt, &url, &token, false);
    assert_echo(&Socks5::new(csocks), echo.addr, b"generated");
}

/// Two providers, each with its connector: each connector's traffic leaves only at its own
/// provider.
fn autonomy_isolation(rt: Rt) {
    const N: usize = 6;
    let (echo_a, echo_b) = (
        TcpServer::echo("127.0.0.1:0").unwrap(),
        TcpServer::echo("127.0.0.1:0").unwrap(),
    );
    let mut server = Proxy::server(rt, autonomy_options(None));
    let url = server.url();
    let mut provs = [
        autonomy_provider(rt, &url, "conn-a"),
        autonomy_provider(rt, &url, "conn-b"),
    ];
    assert_eq!(connector_token(&mut provs[0], 1), "conn-a");
    assert_eq!(connector_token(&mut provs[1], 1), "conn-b");
    let (_ca, socks_a) = connector(rt, &url, "conn-a", false);
    let (_cb, socks_b) = connector(rt, &url, "conn-b", false);
    for i in 0..N {
        assert_echo(&Socks5::new(socks_a), echo_a.addr, &pattern(i as u64, 500));
        assert_echo(&Socks5::new(socks_b), echo_b.addr, &pattern(i as u64, 700));
    }
    assert_eq!(dial_counts(&mut provs, 2 * N), vec![N, N]);
    let (a, b) = (echo_a.addr.to_string(), echo_b.addr.to_string());
    assert!(
        provs[0].dialled().iter().all(|t| *t == a),
        "provider A dialled {:?}",
        provs[0].dialled()
    );
    assert!(
        provs[1].dialled().iter().all(|t| *t == b),
        "provider B dialled {:?}",
        provs[1].dialled()
    );
}

/// The server restarts (same port, no memory of connector tokens): the provider reconnects and
/// registers its connector token again by itself, and a connector with it works.
fn autonomy_replay(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = Proxy::server(rt, autonomy_options(None));
    let (port, url) = (server.ws_addr().port(), server.url());
    let mut prov = autonomy_provider(rt, &url, "kept");
    assert_eq!(connector_token(&mut prov, 1), "kept");
    {
        let (conn, csocks) = connector(rt, &url, "kept", false);
        assert_echo(&Socks5::new(csocks), echo.addr, b"before the restart");
        // A connector whose token is unknown for a moment is refused, and that is final (as
        // in the reference): this one goes, a new one comes after the restart.
        conn.stop().unwrap();
    }
    server.stop().unwrap();

    let _server = server_on_port(rt, autonomy_options(None), port);
    assert_eq!(connector_token(&mut prov, 2), "kept");
    let (_conn, csocks) = connector(rt, &url, "kept", false);
    assert_echo(&Socks5::new(csocks), echo.addr, b"after the restart");
    assert_eq!(dial_counts(std::slice::from_mut(&mut prov), 2), vec![2]);
}

linksocks_tests::on_both_runtimes!(
    agent_both_ports,
    connector_waits_for_provider,
    agent_fast_open,
    autonomy_connector,
    autonomy_generated_token,
    autonomy_isolation,
    autonomy_replay,
);

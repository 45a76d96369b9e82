//! Reverse mode on real loopback sockets: SOCKS5 on our server, our providers dial.

use std::time::{Duration, Instant};

use linksocks_tests::e2e::daemon::free_addr;
use linksocks_tests::e2e::modes::{
    assert_concurrent_echoes, assert_echo, assert_fast_open_fails, dial_counts, echo_once,
    provider, provider_with, reverse_server, wait_token_clients, API_KEY,
};
use linksocks_tests::e2e::socks5::{Socks5, SocksError};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::Rt;

/// Two providers of one token: the server hands requests out round robin, so each provider
/// dials about half of them.
fn round_robin_two_providers(rt: Rt) {
    const N: usize = 20;
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = reverse_server(rt, "rtok", None, |_| {});
    let url = server.url();
    let mut providers = [provider(rt, &url, "rtok"), provider(rt, &url, "rtok")];
    let socks = Socks5::new(server.socks_addr());
    for i in 0..N {
        assert_echo(&socks, echo.addr, &pattern(i as u64, 1000 + i));
    }
    let counts = dial_counts(&mut providers, N);
    assert_eq!(counts.iter().sum::<usize>(), N, "dials: {counts:?}");
    // Strict alternation gives 10/10; a provider briefly passed over (a late pong on a loaded
    // machine) may shift a few, not most.
    assert!(
        counts.iter().all(|&c| c >= N / 4),
        "round robin: each provider should dial about half of {N}, got {counts:?}"
    );
}

/// Username/password on the server's reverse SOCKS port.
fn reverse_credentials(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = reverse_server(rt, "rtok", Some(("bob", "hunter2")), |_| {});
    let _p = provider(rt, &server.url(), "rtok");
    let socks = server.socks_addr();
    assert_echo(
        &Socks5::with_auth(socks, "bob", "hunter2"),
        echo.addr,
        b"ok",
    );
    match Socks5::with_auth(socks, "bob", "hunter3").connect(echo.addr) {
        Err(SocksError::AuthRefused(1)) => {}
        other => panic!("wrong password: expected status 1, got {other:?}"),
    }
    match Socks5::new(socks).connect(echo.addr) {
        Err(SocksError::NoMethod) => {}
        other => panic!("no-auth only: expected 05 FF, got {other:?}"),
    }
    assert_echo(
        &Socks5::with_auth(socks, "bob", "hunter2"),
        echo.addr,
        b"again",
    );
}

/// No provider connected: the request waits `provider_wait`, then gets reply 0x03.
fn no_provider_reply_03(rt: Rt) {
    let wait = Duration::from_secs(1);
    let mut server = reverse_server(rt, "rtok", None, |o| {
        // The listener opens with no provider at all.
        o.machine.socks_nowait = true;
        o.machine.timings.provider_wait = wait;
    });
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let start = Instant::now();
    match Socks5::new(server.socks_addr()).connect(echo.addr) {
        Err(SocksError::Reply(3)) => {}
        other => panic!("no provider: expected reply 0x03, got {other:?}"),
    }
    let took = start.elapsed();
    // Lower bound: the wait is honoured; upper: it is ours, not the 10 s default.
    assert!(
        took >= wait - Duration::from_millis(100) && took < Duration::from_secs(8),
        "reply 0x03 after {took:?}, provider wait {wait:?}"
    );
}

/// A provider that leaves and a new one that comes: the server's SOCKS port serves again, and a
/// request made while no provider was connected is served by the newcomer.
fn provider_reconnect(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = reverse_server(rt, "rtok", None, |o| o.api_key = Some(API_KEY.into()));
    let (ws, url) = (server.ws_addr(), server.url());
    let mut first = provider(rt, &url, "rtok");
    let socks = Socks5::new(server.socks_addr());
    assert_echo(&socks, echo.addr, b"first");
    assert_eq!(first.dialled().len(), 1);
    first.stop().unwrap();
    wait_token_clients(ws, "rtok", 0);

    let s2 = socks.clone();
    let waiting = std::thread::spawn(move || echo_once(&s2, echo.addr, b"while away"));
    let mut second = provider(rt, &url, "rtok");
    waiting.join().unwrap().unwrap();
    assert_echo(&socks, echo.addr, b"second");
    assert_eq!(dial_counts(std::slice::from_mut(&mut second), 2), vec![2]);
}

/// Five providers share 100 concurrent requests: all succeed, every provider takes a share.
fn five_providers_100(rt: Rt) {
    const N: usize = 100;
    const K: usize = 5;
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = reverse_server(rt, "rtok", None, |_| {});
    let url = server.url();
    let mut providers: Vec<_> = (0..K).map(|_| provider(rt, &url, "rtok")).collect();
    let socks = server.socks_addr();
    assert_concurrent_echoes(socks, echo.addr, N, 500, |i| 2048 + 31 * i);
    let counts = dial_counts(&mut providers, N);
    assert_eq!(counts.iter().sum::<usize>(), N, "dials: {counts:?}");
    assert!(
        counts.iter().all(|&c| c >= N / K / 4),
        "each of {K} providers should take a share of {N}, got {counts:?}"
    );
}

/// FastOpen on the server (the SOCKS side in reverse mode), and mixed with the provider's
/// setting: the wire is the same whichever side uses it.
fn fast_open_reverse(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    for (server_fo, provider_fo) in [(true, false), (false, true), (true, true)] {
        let mut server = reverse_server(rt, "rtok", None, |o| o.machine.fast_open = server_fo);
        let _p = provider_with(rt, &server.url(), "rtok", |o| {
            o.machine.fast_open = provider_fo
        });
        let socks = Socks5::new(server.socks_addr());
        for i in 0..3 {
            if let Err(e) = echo_once(&socks, echo.addr, &pattern(i, 10_000)) {
                panic!("server FastOpen {server_fo}, provider FastOpen {provider_fo}: {e}");
            }
        }
    }
}

/// FastOpen on the server toward a target nobody listens on: the application, told
/// "connected", sees an error close, not a clean EOF.
fn fast_open_reverse_refused(rt: Rt) {
    let mut server = reverse_server(rt, "rtok", None, |o| o.machine.fast_open = true);
    let _p = provider(rt, &server.url(), "rtok");
    assert_fast_open_fails(&Socks5::new(server.socks_addr()), free_addr());
}

linksocks_tests::on_both_runtimes!(
    round_robin_two_providers,
    reverse_credentials,
    no_provider_reply_03,
    provider_reconnect,
    five_providers_100,
    fast_open_reverse,
    fast_open_reverse_refused,
);

//! Lifecycle on real loopback sockets: reconnection after a server restart, refused tokens
//! (final, or retried with `retry_auth`), reconnect backoff, stopping, and what applications
//! see when a proxy stops under them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use linksocks_core::session::ClientRole;
use linksocks_runtime::{ClientOptions, Error, Event};
use linksocks_tests::e2e::daemon::free_port;
use linksocks_tests::e2e::modes::{
    assert_echo, is_error_close, provider, server_on_port, tcp_relay,
};
use linksocks_tests::e2e::proxy::{forward, forward_pair, reverse, ws_url, EVENT_TIMEOUT};
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::TcpServer;
use linksocks_tests::e2e::{client_options, server_options, wait, Proxy, Rt};

/// A forward client of `url` with token `token`, after `tweak`.
fn client(rt: Rt, url: &str, token: &str, tweak: impl FnOnce(&mut ClientOptions)) -> Proxy {
    let mut opts = client_options(url, token, ClientRole::Forward);
    tweak(&mut opts);
    Proxy::client(rt, opts)
}

fn forward_server(rt: Rt, token: &str) -> Proxy {
    Proxy::server(rt, server_options(vec![forward(token)]))
}

/// The server restarts on its port: the same client reconnects by itself and its SOCKS port
/// (the same listener) works again.
fn forward_reconnect_after_restart(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = forward_server(rt, "tok");
    let port = server.ws_addr().port();
    let mut c = client(rt, &server.url(), "tok", |_| {});
    let socks = Socks5::new(c.socks_addr());
    assert_echo(&socks, echo.addr, b"before");
    server.stop().unwrap();

    let _server = server_on_port(rt, server_options(vec![forward("tok")]), port);
    c.wait_links_ready(2);
    assert_echo(&socks, echo.addr, b"after");
    let listeners = c
        .history()
        .iter()
        .filter(|e| matches!(e, Event::SocksListening(_)))
        .count();
    assert_eq!(listeners, 1, "the SOCKS5 listener was reopened");
}

/// A token the server does not know: the client ends by itself with an error naming it, after
/// one attempt (no reconnection).
fn invalid_token_is_final(rt: Rt) {
    let mut server = forward_server(rt, "tok");
    let relay = tcp_relay(server.ws_addr()).unwrap();
    let mut c = client(rt, &ws_url(relay.addr), "not-the-token", |_| {});
    match c.wait_end(EVENT_TIMEOUT) {
        Some(Err(Error::AuthRefused { reason })) => assert!(
            reason.contains("invalid token"),
            "the error should say the token was refused: {reason}"
        ),
        other => panic!("expected the client to end with an auth error, got {other:?}"),
    }
    let attempts = relay.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(attempts, 1, "the client tried {attempts} times");
    assert!(!c.history().contains(&Event::LinkUp), "{:?}", c.history());
}

/// With `retry_auth` a refused client keeps trying, and once the server accepts its token (a
/// restart with it) it connects and serves.
fn retry_auth_until_accepted(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = forward_server(rt, "other");
    let port = server.ws_addr().port();
    let relay = tcp_relay(server.ws_addr()).unwrap();
    let mut c = client(rt, &ws_url(relay.addr), "late", |o| {
        o.machine.retry_auth = true;
        o.machine.timings.reconnect_delay = Duration::from_millis(200);
    });
    wait::until("three refused attempts", EVENT_TIMEOUT, || {
        relay.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 3
    });
    assert!(c.wait_end(Duration::ZERO).is_none(), "the client gave up");
    server.stop().unwrap();

    let _server = server_on_port(rt, server_options(vec![forward("late")]), port);
    c.wait_links_ready(1);
    assert_echo(&Socks5::new(c.socks_addr()), echo.addr, b"accepted at last");
}

/// Reconnect backoff grows while the server stays away, and starts again from the base delay
/// (1 s, the default) after a connection succeeded: a second outage reconnects within ~3 s
/// although the first one had pushed the delay to 3.4 s and beyond.
fn backoff_resets_after_success(rt: Rt) {
    let mut server = forward_server(rt, "tok");
    let port = server.ws_addr().port();
    let relay = tcp_relay(server.ws_addr()).unwrap();
    let attempts = || relay.accepted.load(std::sync::atomic::Ordering::SeqCst);
    let mut c = client(rt, &ws_url(relay.addr), "tok", |_| {});
    c.wait_links_ready(1);
    assert_eq!(attempts(), 1);

    // Outage 1: attempts at +1 s, +2.5 s and +4.75 s fail; the next delay is 3.375 s.
    server.stop().unwrap();
    wait::until("three failed reconnect attempts", EVENT_TIMEOUT, || {
        attempts() >= 4
    });
    let server = server_on_port(rt, server_options(vec![forward("tok")]), port);
    c.wait_links_ready(2);

    // Outage 2: the link was up, so the first attempt comes after the base delay and succeeds.
    let lost = Instant::now();
    server.stop().unwrap();
    let _server = server_on_port(rt, server_options(vec![forward("tok")]), port);
    c.wait_links_ready(3);
    let took = lost.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "second outage: reconnected after {took:?}; without the reset the delay would be 5 s"
    );
}

/// Stopping twice (and more, from several threads, after the end, then dropping) is harmless:
/// each proxy ends cleanly, and a stopped client's SOCKS port is closed.
fn stop_twice_is_harmless(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (mut server, mut c, socks) = forward_pair(rt, "tok");
    assert_echo(&Socks5::new(socks), echo.addr, b"up");

    for p in [&mut server, &mut c] {
        let (h1, h2) = (p.stop_handle(), p.stop_handle());
        let t1 = std::thread::spawn(move || h1.stop());
        let t2 = std::thread::spawn(move || h2.stop());
        t1.join().unwrap();
        t2.join().unwrap();
        p.stop_handle().stop();
        match p.wait_end(Duration::from_secs(10)) {
            Some(Ok(())) => {}
            other => panic!("stop: expected a clean end within 10 s, got {other:?}"),
        }
        p.stop_handle().stop();
    }
    assert!(
        TcpStream::connect(socks).is_err(),
        "the stopped client's SOCKS port still accepts"
    );
    // Their Drop stops once more.
    drop((c, server));

    // A reverse pair, dropped without an explicit stop, provider first and server second.
    let mut rserver = Proxy::server(rt, server_options(vec![reverse("rtok", None)]));
    let prov = provider(rt, &rserver.url(), "rtok");
    let rsocks = rserver.socks_addr();
    assert_echo(&Socks5::new(rsocks), echo.addr, b"reverse up");
    prov.stop_handle().stop();
    drop(prov);
    rserver.stop_handle().stop();
    assert!(matches!(rserver.stop(), Ok(())));
    assert!(
        TcpStream::connect(rsocks).is_err(),
        "the stopped server's reverse SOCKS port still accepts"
    );
}

/// A stopped client has let its SOCKS5 port go: a new client started at once on the same
/// port binds it and serves (a restart, as an embedding program does it). The sharper check
/// that the port is closed when `stop` returns is in [`stop_twice_is_harmless`].
fn restart_on_same_socks_port(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = forward_server(rt, "tok");
    let url = server.url();
    let port = free_port();
    let on_port = |o: &mut ClientOptions| {
        if let Some(l) = o.machine.socks.as_mut() {
            l.port = port;
        }
    };
    for round in 0..3 {
        let mut c = client(rt, &url, "tok", on_port);
        let socks = c.socks_addr();
        assert_eq!(socks.port(), port, "round {round}");
        assert_echo(&Socks5::new(socks), echo.addr, b"round");
        c.stop().unwrap();
    }
}

/// Opens `n` tunnels to `echo` through `socks`, each checked to work.
fn open_tunnels(socks: &Socks5, echo: &TcpServer, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = socks.connect(echo.addr).unwrap();
            let msg = format!("tunnel {i}");
            s.write_all(msg.as_bytes()).unwrap();
            let mut b = vec![0u8; msg.len()];
            s.read_exact(&mut b).unwrap();
            assert_eq!(b, msg.as_bytes());
            s
        })
        .collect()
}

/// What each application sees once the proxy under it went away: its connection ends (EOF or
/// an error), promptly, instead of hanging until its own timeout.
#[track_caller]
fn assert_all_closed(tunnels: Vec<TcpStream>, who: &str) {
    for (i, mut s) in tunnels.into_iter().enumerate() {
        let r = s.read(&mut [0u8; 16]);
        assert!(
            matches!(r, Ok(0)) || is_error_close(&r),
            "after the {who} stopped, tunnel {i} read {r:?}"
        );
    }
}

/// A graceful stop of the client while tunnels are open: their applications see them closed.
fn stopping_client_closes_tunnels(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, c, socks) = forward_pair(rt, "tok");
    let tunnels = open_tunnels(&Socks5::new(socks), &echo, 3);
    c.stop().unwrap();
    assert_all_closed(tunnels, "client");
}

/// A graceful stop of the server while tunnels are open: the client's applications see them
/// closed, and the client itself keeps running (to reconnect).
fn stopping_server_closes_tunnels(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (server, mut c, socks) = forward_pair(rt, "tok");
    let tunnels = open_tunnels(&Socks5::new(socks), &echo, 3);
    server.stop().unwrap();
    assert_all_closed(tunnels, "server");
    assert!(c.wait_end(Duration::ZERO).is_none(), "the client ended");
}

linksocks_tests::on_both_runtimes!(
    forward_reconnect_after_restart,
    invalid_token_is_final,
    retry_auth_until_accepted,
    backoff_resets_after_success,
    stop_twice_is_harmless,
    restart_on_same_socks_port,
    stopping_client_closes_tunnels,
    stopping_server_closes_tunnels,
);

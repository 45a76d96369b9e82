//! Forward mode on real loopback sockets: SOCKS5 on our client, our server dials.

use std::io::{Read, Write};
use std::net::Shutdown;

use linksocks_core::session::ClientRole;
use linksocks_tests::e2e::daemon::free_addr;
use linksocks_tests::e2e::modes::{
    assert_concurrent_echoes, assert_echo, assert_fast_open_fails, counted_sink,
};
use linksocks_tests::e2e::proxy::{forward, forward_pair, socks_listen};
use linksocks_tests::e2e::socks5::{Dest, Socks5, SocksError};
use linksocks_tests::e2e::target::{drain_hash, pattern, pattern_hash, send_pattern, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

/// Large transfers: enough to cross every buffer and high-water mark many times over.
const BIG: u64 = 64 << 20;

/// A forward server and a client whose options `tweak` changed; (server, client, SOCKS5).
fn forward_pair_with(
    rt: Rt,
    tweak: impl FnOnce(&mut linksocks_runtime::ClientOptions),
) -> (Proxy, Proxy, std::net::SocketAddr) {
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    tweak(&mut opts);
    let mut client = Proxy::client(rt, opts);
    let socks = client.socks_addr();
    (server, client, socks)
}

fn ipv4_echo(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = forward_pair(rt, "tok");
    let mut s = Socks5::new(socks).connect(echo.addr).unwrap();
    let data = pattern(1, 300_000);
    let mut w = s.try_clone().unwrap();
    let d = data.clone();
    // No half-close: the protocol has none (EOF from the application ends the channel).
    let writer = std::thread::spawn(move || w.write_all(&d).unwrap());
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    writer.join().unwrap();
    s.shutdown(Shutdown::Both).unwrap();
    assert!(
        got == data,
        "echo differs: {} of {} bytes",
        got.len(),
        data.len()
    );
}

/// An IPv6 literal target: the address travels as text and the server dials [::1].
fn ipv6_echo(rt: Rt) {
    let echo = TcpServer::echo("[::1]:0").unwrap();
    assert!(echo.addr.is_ipv6());
    let (mut server, _client, socks) = forward_pair(rt, "tok");
    assert_echo(&Socks5::new(socks), echo.addr, &pattern(2, 20_000));
    let dialled = server.dialled();
    assert!(
        dialled.iter().any(|t| t.contains("::1")),
        "the server dialled {dialled:?}, not [::1]"
    );
}

fn domain_target(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = forward_pair(rt, "tok");
    let mut s = Socks5::new(socks)
        .connect(Dest::domain("localhost", echo.addr.port()))
        .unwrap();
    s.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
}

/// Username/password on the client's SOCKS port: the right pair passes, a wrong one gets
/// RFC 1929 status 1, and an application offering only "no authentication" gets `05 FF`.
fn socks_credentials(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = forward_pair_with(rt, |o| {
        o.machine.socks = Some(socks_listen(Some(("alice", "s3cret"))));
    });
    assert_echo(
        &Socks5::with_auth(socks, "alice", "s3cret"),
        echo.addr,
        b"hi",
    );
    match Socks5::with_auth(socks, "alice", "wrong").connect(echo.addr) {
        Err(SocksError::AuthRefused(1)) => {}
        other => panic!("wrong password: expected status 1, got {other:?}"),
    }
    match Socks5::with_auth(socks, "mallory", "s3cret").connect(echo.addr) {
        Err(SocksError::AuthRefused(1)) => {}
        other => panic!("wrong user: expected status 1, got {other:?}"),
    }
    match Socks5::new(socks).connect(echo.addr) {
        Err(SocksError::NoMethod) => {}
        other => panic!("no-auth only: expected 05 FF, got {other:?}"),
    }
    // Refusals leave the port serving.
    assert_echo(
        &Socks5::with_auth(socks, "alice", "s3cret"),
        echo.addr,
        b"again",
    );
}

/// A target nobody listens on: the server's dial fails and the application gets reply 0x04.
fn refused_target(rt: Rt) {
    let (_server, _client, socks) = forward_pair(rt, "tok");
    let nobody = free_addr();
    match Socks5::new(socks).connect(nobody) {
        Err(SocksError::Reply(4)) => {}
        other => panic!("refused target: expected reply 0x04, got {other:?}"),
    }
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    assert_echo(&Socks5::new(socks), echo.addr, b"still serving");
}

/// 64 MiB from the target to the application, checked by SHA-256 as it streams.
fn large_download(rt: Rt) {
    let source = TcpServer::source("127.0.0.1:0", 7, BIG).unwrap();
    let (_server, _client, socks) = forward_pair(rt, "tok");
    let mut s = Socks5::new(socks).connect(source.addr).unwrap();
    let (n, hash) = drain_hash(&mut s).unwrap();
    assert_eq!(n, BIG, "bytes received");
    assert_eq!(hash, pattern_hash(7, BIG), "content received");
}

/// 64 MiB from the application to the target, which answers with the SHA-256 of what it got.
fn large_upload(rt: Rt) {
    let sink = counted_sink("127.0.0.1:0", BIG).unwrap();
    let (_server, _client, socks) = forward_pair(rt, "tok");
    let mut s = Socks5::new(socks).connect(sink.addr).unwrap();
    let sent = send_pattern(&mut s, 8, BIG).unwrap();
    let mut answer = [0u8; 64];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(
        std::str::from_utf8(&answer).unwrap(),
        sent,
        "content received"
    );
}

/// 100 applications at once, each echoing a payload of its own (size and content differ, so
/// a crossed channel shows).
fn concurrent_100(rt: Rt) {
    const N: usize = 100;
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = forward_pair(rt, "tok");
    assert_concurrent_echoes(socks, echo.addr, N, 1000, |i| 4096 + 97 * i);
    assert_eq!(echo.accepted.load(std::sync::atomic::Ordering::SeqCst), N);
}

/// FastOpen on the client: success is replied at once and data flows.
fn fast_open_echo(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = forward_pair_with(rt, |o| o.machine.fast_open = true);
    assert_echo(&Socks5::new(socks), echo.addr, &pattern(3, 30_000));
    assert_echo(
        &Socks5::new(socks),
        Dest::domain("localhost", echo.addr.port()),
        b"fast",
    );
}

/// FastOpen toward a target nobody listens on: the application was told "connected", so the
/// failure must reach it as an error close (a reset), never as a clean EOF that reads like a
/// finished exchange.
fn fast_open_refused(rt: Rt) {
    let (_server, _client, socks) = forward_pair_with(rt, |o| o.machine.fast_open = true);
    assert_fast_open_fails(&Socks5::new(socks), free_addr());
}

/// Channels writing in small pieces at once, both ways: small frames go onto the link on the
/// spot, and when its socket is full their unwritten rest goes to the link's writer task,
/// after which everything queues behind it until it has caught up. Any interleaving of two
/// frames, or a rest written out of turn, shows as a broken WebSocket or a differing echo.
fn small_writes_many_channels(rt: Rt) {
    const CHANNELS: u64 = 8;
    const LEN: usize = 4 << 20;
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = forward_pair(rt, "tok");
    let workers: Vec<_> = (0..CHANNELS)
        .map(|i| {
            let to = echo.addr;
            std::thread::spawn(move || {
                let mut s = Socks5::new(socks).connect(to).unwrap();
                let data = pattern(100 + i, LEN);
                let mut w = s.try_clone().unwrap();
                let d = data.clone();
                let writer = std::thread::spawn(move || {
                    let (mut at, mut k) = (0usize, 0usize);
                    while at < d.len() {
                        // 1 B .. 8 KiB, varying: well under the largest frame written on the spot.
                        let n = (1 + (k * 7919 + i as usize * 31) % 8192).min(d.len() - at);
                        w.write_all(&d[at..at + n]).unwrap();
                        at += n;
                        k += 1;
                    }
                });
                let mut got = vec![0u8; LEN];
                s.read_exact(&mut got).unwrap();
                writer.join().unwrap();
                let first_bad = got.iter().zip(&data).position(|(a, b)| a != b);
                assert!(
                    first_bad.is_none(),
                    "channel {i}: echo differs from byte {first_bad:?}"
                );
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

linksocks_tests::on_both_runtimes!(
    small_writes_many_channels,
    ipv4_echo,
    ipv6_echo,
    domain_target,
    socks_credentials,
    refused_target,
    large_download,
    large_upload,
    concurrent_100,
    fast_open_echo,
    fast_open_refused,
);

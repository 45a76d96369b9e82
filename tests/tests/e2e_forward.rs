//! Forward mode on real loopback sockets: SOCKS5 on our client, our server dials.

use std::io::{Read, Write};
use std::net::Shutdown;

use linksocks_tests::e2e::proxy::forward_pair;
use linksocks_tests::e2e::socks5::{Dest, Socks5};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::Rt;

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

linksocks_tests::on_both_runtimes!(ipv4_echo, domain_target);

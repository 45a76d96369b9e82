//! Hostile input whose defence is a timer, on real loopback sockets with the timers shortened,
//! both runtimes: SOCKS5 handshakes left hanging (slow loris) and WebSocket connections that
//! upgrade and never authenticate are closed once the handshake time is up, and not before;
//! everyone else is served meanwhile. (The rest of the hostile-input suite runs against the
//! built binary: cli/tests/hostile.rs.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use linksocks_core::session::ClientRole;
use linksocks_tests::e2e::proxy::{forward, EVENT_TIMEOUT};
use linksocks_tests::e2e::rawws::{query_path, RawWs};
use linksocks_tests::e2e::socks5::{Socks5, IO_TIMEOUT};
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

const HANDSHAKE: Duration = Duration::from_secs(1);
/// Lower bounds on when something may happen allow this much for clock granularity.
const EARLY: Duration = Duration::from_millis(50);

fn echo_round(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert!(back == msg, "echo differs");
}

/// Handshakes stalled at each stage are closed after the handshake time (cleanly: the
/// application may read whatever was answered before), while a normal connection works.
fn socks_handshake_times_out(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let mut opts = client_options(&server.url(), "tok", ClientRole::Forward);
    opts.machine.timings.handshake_timeout = HANDSHAKE;
    let mut client = Proxy::client(rt, opts);
    let socks = client.socks_addr();

    let stages: [&[u8]; 5] = [
        &[],
        &[5],
        &[5, 1, 0],
        &[5, 1, 0, 5, 1, 0, 3, 200, b'x'],
        &[5, 1, 0, 5, 1, 0, 1, 127, 0],
    ];
    let t = Instant::now();
    let mut stalled: Vec<TcpStream> = stages
        .iter()
        .map(|part| {
            let mut s = TcpStream::connect(socks).unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(part).unwrap();
            s
        })
        .collect();
    let mut ok = Socks5::new(socks)
        .connect(echo.addr)
        .expect("served meanwhile");
    echo_round(&mut ok, &pattern(1, 10_000));
    for (i, s) in stalled.iter_mut().enumerate() {
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        assert!(r.is_ok(), "stage {i}: {r:?}");
        // Only the method selection answer (05 00) may have come before the close.
        assert!(got.is_empty() || got == [5, 0], "stage {i}: {got:02x?}");
        assert!(
            t.elapsed() >= HANDSHAKE - EARLY,
            "stage {i} closed after {:?}, before the handshake time",
            t.elapsed()
        );
    }
    echo_round(&mut ok, &pattern(2, 10_000));
}

/// A connection that upgrades to WebSocket and never authenticates is closed after the
/// handshake time; an authenticated link outlives it.
fn unauthenticated_link_times_out(rt: Rt) {
    let mut opts = server_options(vec![forward("tok")]);
    opts.machine.timings.handshake_timeout = HANDSHAKE;
    let mut server = Proxy::server(rt, opts);
    let ws = server.ws_addr();
    let mut good = RawWs::connect(ws, &query_path("tok", false)).expect("upgrade");
    good.recv_binary().expect("AuthResponse");
    let t = Instant::now();
    let mut idle = RawWs::connect(ws, "/socket").expect("upgrade");
    idle.wait_end(EVENT_TIMEOUT)
        .expect("unauthenticated link closed");
    assert!(
        t.elapsed() >= HANDSHAKE - EARLY,
        "closed after {:?}, before the handshake time",
        t.elapsed()
    );
    // Three handshake times: the authenticated link is not subject to the deadline.
    let kept = good.wait_end(3 * HANDSHAKE);
    assert!(
        kept.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
        "the authenticated link ended: {kept:?}"
    );
}

linksocks_tests::on_both_runtimes!(socks_handshake_times_out, unauthenticated_link_times_out);

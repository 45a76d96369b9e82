//! Faults on real loopback sockets, both runtimes: the WebSocket link cut under transfers, a
//! provider dying with channels open, targets that reset or never answer, a server restarted
//! under a live client. What every test holds to: an application never sees a clean end of
//! stream with data missing; a transfer either arrives whole, in order, or fails with an error.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use linksocks_core::session::ClientRole;
use linksocks_runtime::Error;
use linksocks_tests::e2e::netfault::{Blackhole, Relay};
use linksocks_tests::e2e::proxy::{forward, reverse, EVENT_TIMEOUT};
use linksocks_tests::e2e::socks5::{Socks5, SocksError, IO_TIMEOUT};
use linksocks_tests::e2e::target::{drain_hash, pattern, sha256_hex, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, wait, Proxy, Rt};

/// Reconnect quickly: the tests wait for the reconnection, not for the default 1 s.
const RECONNECT: Duration = Duration::from_millis(100);

/// How a stream the application reads ended.
#[derive(Debug)]
enum Outcome {
    /// Clean end after exactly the expected bytes.
    Whole,
    /// Clean end with the wrong bytes or too few: the failure these tests exist to catch.
    Truncated { got: u64 },
    /// An error (reset, abort): the application knows the transfer failed.
    Failed(io::ErrorKind),
}

fn is_timeout(k: io::ErrorKind) -> bool {
    matches!(k, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Reads `s` to its end and judges it against what should have arrived.
fn read_outcome(s: &mut TcpStream, expect_len: u64, expect_hash: &str) -> Outcome {
    match drain_hash(s) {
        Ok((n, h)) if n == expect_len && h == expect_hash => Outcome::Whole,
        Ok((n, _)) => Outcome::Truncated { got: n },
        Err(e) => Outcome::Failed(e.kind()),
    }
}

/// One round trip through an echo target.
fn echo_round(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echo differs"));
    }
    Ok(())
}

/// A forward client with quick reconnection and `threads` links.
fn client(rt: Rt, url: &str, threads: usize) -> Proxy {
    let mut o = client_options(url, "tok", ClientRole::Forward);
    o.machine.threads = threads;
    o.machine.timings.reconnect_delay = RECONNECT;
    Proxy::client(rt, o)
}

/// What a [`gated_source`] connection saw at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetEnd {
    /// It sent everything and the proxy ended the connection cleanly.
    Clean,
    /// A read or write failed: the proxy reset the connection.
    Reset,
}

/// A target that sends `first` bytes of a pattern, waits for `gate`, sends the rest, then
/// half-closes and reads until the proxy ends the connection. Each connection reports how it
/// ended on `ends`.
fn gated_source(
    first: usize,
    total: usize,
    gate: Arc<AtomicBool>,
    ends: mpsc::Sender<TargetEnd>,
) -> TcpServer {
    let ends = std::sync::Mutex::new(ends);
    TcpServer::start("127.0.0.1:0", move |mut s| {
        let data = pattern(7, total);
        let end = (|| -> io::Result<()> {
            s.write_all(&data[..first])?;
            // Wait for the gate; an error meanwhile (the proxy reset us) ends it early.
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            let mut b = [0u8; 64];
            while !gate.load(Ordering::SeqCst) {
                match s.read(&mut b) {
                    Ok(0) => return Err(io::Error::other("clean end before the gate")),
                    Ok(_) => {}
                    Err(e) if is_timeout(e.kind()) => {}
                    Err(e) => return Err(e),
                }
            }
            s.write_all(&data[first..])?;
            s.shutdown(Shutdown::Write)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            loop {
                if s.read(&mut b)? == 0 {
                    return Ok(());
                }
            }
        })();
        let end = match end {
            Ok(()) => TargetEnd::Clean,
            Err(_) => TargetEnd::Reset,
        };
        let _ = ends.lock().unwrap().send(end);
    })
    .expect("target")
}

/// Two links through a relay; four downloads spread over them; one link is cut mid-transfer.
/// The transfers on the other link finish whole and in order; those on the cut link fail with
/// an error on both ends (the application and the target), never a clean short stream. The
/// cut link reconnects and new transfers work.
fn link_cut_mid_transfer(rt: Rt) {
    const FIRST: usize = 256 << 10;
    const TOTAL: usize = FIRST + (2 << 20);
    let gate = Arc::new(AtomicBool::new(false));
    let (ends_tx, ends) = mpsc::channel();
    let target = gated_source(FIRST, TOTAL, gate.clone(), ends_tx);
    // Channels end with their link here (no transport grace): how they end is the point.
    // With a grace they continue on the other link, which `e2e_resume` shows.
    let mut so = server_options(vec![forward("tok")]);
    so.machine.timings.transport_grace = Duration::ZERO;
    let mut server = Proxy::server(rt, so);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let mut co = client_options(&relay.url(), "tok", ClientRole::Forward);
    co.machine.threads = 2;
    co.machine.timings.reconnect_delay = RECONNECT;
    co.machine.timings.transport_grace = Duration::ZERO;
    let mut client = Proxy::client(rt, co);
    let socks = client.socks_addr();
    client.wait_links_ready(2);

    let full = pattern(7, TOTAL);
    let rest_hash = sha256_hex(&full[FIRST..]);
    let failed = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut s = Socks5::new(socks).connect(target.addr).expect("connect");
        let mut head = vec![0u8; FIRST];
        s.read_exact(&mut head).expect("first part");
        assert!(head == full[..FIRST], "first part differs");
        let (h, failed) = (rest_hash.clone(), failed.clone());
        readers.push(std::thread::spawn(move || {
            let o = read_outcome(&mut s, (TOTAL - FIRST) as u64, &h);
            if matches!(o, Outcome::Failed(_)) {
                failed.fetch_add(1, Ordering::SeqCst);
            }
            o
        }));
    }

    relay.cut(0);
    // Channels on the cut link fail now, before the target sends the rest.
    wait::until("a transfer on the cut link to fail", EVENT_TIMEOUT, || {
        failed.load(Ordering::SeqCst) > 0
    });
    gate.store(true, Ordering::SeqCst);
    let outcomes: Vec<Outcome> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let mut whole = 0;
    for o in &outcomes {
        match o {
            Outcome::Whole => whole += 1,
            Outcome::Failed(k) => assert!(!is_timeout(*k), "a transfer hung: {outcomes:?}"),
            Outcome::Truncated { got } => {
                panic!("clean end after {got} bytes: silent truncation ({outcomes:?})")
            }
        }
    }
    let failed = failed.load(Ordering::SeqCst);
    // Round robin over two ready links puts transfers on both.
    assert!(whole >= 1 && failed >= 1, "{outcomes:?}");
    let mut target_ends: Vec<TargetEnd> = (0..4)
        .map(|_| ends.recv_timeout(EVENT_TIMEOUT).expect("target end"))
        .collect();
    target_ends.sort_by_key(|e| *e == TargetEnd::Reset);
    let resets = target_ends
        .iter()
        .filter(|e| **e == TargetEnd::Reset)
        .count();
    assert_eq!(
        (4 - resets, resets),
        (whole, failed),
        "target ends {target_ends:?} do not match the applications' {outcomes:?}"
    );

    // The cut link comes back (2 initial authentications + 1) and carries new transfers.
    client.wait_links_ready(3);
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    for i in 0..4 {
        let mut s = Socks5::new(socks)
            .connect(echo.addr)
            .expect("connect after reconnect");
        echo_round(&mut s, &pattern(100 + i, 100_000)).expect("echo after reconnect");
    }
}

/// A reverse provider.
fn provider(rt: Rt, url: &str) -> Proxy {
    let mut o = client_options(url, "rtok", ClientRole::Provider);
    o.machine.timings.reconnect_delay = RECONNECT;
    Proxy::client(rt, o)
}

/// Reverse mode with two providers, channels open on both; one provider's connection dies
/// (and it cannot come back). Its applications see their connections reset; the other
/// provider's keep echoing; new requests go to the live provider at once, not after the
/// provider wait.
fn provider_dies_with_channels_open(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut opts = server_options(vec![reverse("rtok", None)]);
    // Long enough that a request waiting for a provider would show as a timeout below.
    opts.machine.timings.provider_wait = Duration::from_secs(120);
    // A provider that dies does not come back: channels end with its link rather than wait
    // the transport grace for it (each provider has an instance of its own, as every process
    // does, so the live one cannot take them over).
    opts.machine.timings.transport_grace = Duration::ZERO;
    let mut server = Proxy::server(rt, opts);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let mut dying = provider(rt, &relay.url());
    dying.wait_links_ready(1);
    let mut live = provider(rt, &server.url());
    live.wait_links_ready(1);
    let socks = server.socks_addr();

    let mut apps: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut s = Socks5::new(socks).connect(echo.addr).expect("connect");
            echo_round(&mut s, &pattern(i, 10_000)).expect("echo");
            s
        })
        .collect();
    wait::until(
        "both providers to have dialled twice",
        EVENT_TIMEOUT,
        || dying.dialled().len() == 2 && live.dialled().len() == 2,
    );

    relay.refuse_new(true);
    relay.cut_all();
    let mut closed = 0;
    let mut alive = Vec::new();
    for (i, mut s) in apps.drain(..).enumerate() {
        match echo_round(&mut s, &pattern(10 + i as u64, 10_000)) {
            Ok(()) => alive.push(s),
            Err(e) => {
                assert!(!is_timeout(e.kind()), "application {i} hung: {e}");
                assert_ne!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof,
                    "application {i} saw a clean end, not a failure"
                );
                closed += 1;
            }
        }
    }
    assert_eq!((closed, alive.len()), (2, 2), "closed / still echoing");

    for i in 0..6 {
        let t = Instant::now();
        let mut s = Socks5::new(socks)
            .connect(echo.addr)
            .unwrap_or_else(|e| panic!("request {i} after the provider died: {e}"));
        echo_round(&mut s, &pattern(20 + i, 10_000)).expect("echo through the live provider");
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "request {i} waited {:?} (provider wait is 120 s)",
            t.elapsed()
        );
    }
    for (i, s) in alive.iter_mut().enumerate() {
        echo_round(s, &pattern(40 + i as u64, 10_000)).expect("old channel on the live provider");
    }
    assert_eq!(
        dying.dialled().len(),
        2,
        "the dead provider got new requests"
    );
    assert_eq!(live.dialled().len(), 8);
}

/// Reverse mode with two providers; one freezes (its host lost power: no FIN, no reset, the
/// link just goes silent). A provider silent for longer than the probe time is pinged before
/// it gets a new channel and passed over when it does not answer in time, so new requests go
/// to the live provider after at most the probe time, not after the 15 s connect guard.
/// (Requests in the first probe time after a freeze still go to the frozen provider: only a
/// round trip could tell, and the server spares providers heard from recently that cost.)
fn provider_frozen_fails_over(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut opts = server_options(vec![reverse("rtok", None)]);
    opts.machine.timings.provider_wait = Duration::from_secs(120);
    let probe = opts.machine.timings.provider_probe;
    let mut server = Proxy::server(rt, opts);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let mut frozen = provider(rt, &relay.url());
    frozen.wait_links_ready(1);
    let mut live = provider(rt, &server.url());
    live.wait_links_ready(1);
    let socks = server.socks_addr();
    for i in 0..2 {
        let mut s = Socks5::new(socks).connect(echo.addr).expect("connect");
        echo_round(&mut s, &pattern(i, 1000)).expect("echo");
    }
    wait::until("both providers to have dialled", EVENT_TIMEOUT, || {
        frozen.dialled().len() == 1 && live.dialled().len() == 1
    });

    relay.freeze_all();
    let frozen_at = Instant::now();
    wait::until(
        "the frozen provider to be silent past the probe time",
        EVENT_TIMEOUT,
        || frozen_at.elapsed() > probe,
    );
    for i in 0..4 {
        let t = Instant::now();
        let mut s = Socks5::new(socks).connect(echo.addr).unwrap_or_else(|e| {
            panic!(
                "request {i} after the provider froze ({:?}): {e}",
                t.elapsed()
            )
        });
        echo_round(&mut s, &pattern(20 + i, 1000)).expect("echo through the live provider");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "request {i} took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(frozen.dialled().len(), 1, "the frozen provider dialled");
}

/// A target resets its connection mid-stream: the application sees a reset after the bytes
/// that came before it, not a clean end.
fn target_resets_mid_stream(rt: Rt) {
    const SENT: usize = 64 << 10;
    let (read_tx, read_rx) = mpsc::channel::<()>();
    let read_rx = std::sync::Mutex::new(read_rx);
    let target = TcpServer::start("127.0.0.1:0", move |mut s| {
        let _ = s.write_all(&pattern(3, SENT));
        // Reset only once the application has everything sent so far: what is tested is the
        // reset's propagation, not data racing it.
        let _ = read_rx.lock().unwrap().recv_timeout(IO_TIMEOUT);
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    })
    .unwrap();
    let (_server, _client, socks) = linksocks_tests::e2e::proxy::forward_pair(rt, "tok");
    let mut s = Socks5::new(socks).connect(target.addr).expect("connect");
    let mut got = vec![0u8; SENT];
    s.read_exact(&mut got).expect("data before the reset");
    assert!(got == pattern(3, SENT));
    read_tx.send(()).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => panic!("clean end: the target's reset was turned into an EOF"),
        Ok(n) => panic!("{n} bytes after the target's reset"),
        Err(e) => assert!(
            !is_timeout(e.kind()),
            "no end after the target's reset: {e}"
        ),
    }
}

/// The application resets its connection mid-stream: the target sees an error, not a clean
/// end (nor a hang).
fn application_resets_mid_stream(rt: Rt) {
    let (end_tx, end_rx) = mpsc::channel::<io::Result<usize>>();
    let end_tx = std::sync::Mutex::new(end_tx);
    let target = TcpServer::start("127.0.0.1:0", move |mut s| {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut total = 0;
        let mut b = vec![0u8; 16 << 10];
        let end = loop {
            match s.read(&mut b) {
                Ok(0) => break Ok(total),
                Ok(n) => total += n,
                Err(e) => break Err(e),
            }
        };
        let _ = end_tx.lock().unwrap().send(end);
    })
    .unwrap();
    let (_server, _client, socks) = linksocks_tests::e2e::proxy::forward_pair(rt, "tok");
    let mut s = Socks5::new(socks).connect(target.addr).expect("connect");
    s.write_all(&pattern(4, 100_000)).unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    match end_rx.recv_timeout(EVENT_TIMEOUT).expect("target end") {
        Ok(n) => panic!("the target saw a clean end after {n} bytes, not the reset"),
        Err(e) => assert!(!is_timeout(e.kind()), "the target hung: {e}"),
    }
}

/// A target that never answers the dial: the server gives up after its connect timeout and the
/// application gets reply 0x04 (host unreachable), then the proxy serves others as before.
fn target_never_answers(rt: Rt) {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let hole = Blackhole::start().expect("black hole");
    let mut opts = server_options(vec![forward("tok")]);
    opts.machine.timings.connect_timeout = TIMEOUT;
    let mut server = Proxy::server(rt, opts);
    let mut client = client(rt, &server.url(), 1);
    let socks = client.socks_addr();
    let t = Instant::now();
    match Socks5::new(socks).connect(hole.addr) {
        Err(SocksError::Reply(0x04)) => {}
        Err(e) => panic!("expected reply 0x04, got {e}"),
        Ok(_) => panic!("connected to a target that never answers"),
    }
    // The dial cannot fail sooner: the black hole refuses nothing, it only stays silent.
    assert!(
        t.elapsed() >= TIMEOUT - Duration::from_millis(50),
        "reply after {:?}: not the connect timeout",
        t.elapsed()
    );
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut s = Socks5::new(socks).connect(echo.addr).expect("connect");
    echo_round(&mut s, b"still serving").unwrap();
}

/// Starts a server on `addr` (the port a previous server had), retrying while the port is
/// still being released.
fn server_on(rt: Rt, addr: SocketAddr) -> Proxy {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let mut opts = server_options(vec![forward("tok")]);
        opts.ws_port = addr.port();
        let mut s = Proxy::server(rt, opts);
        if let Some(Err(Error::Bind { .. })) = s.wait_end(Duration::from_millis(200)) {
            assert!(Instant::now() < deadline, "port {addr} stays taken");
            continue;
        }
        assert_eq!(s.ws_addr(), addr);
        return s;
    }
}

/// The server stops and a new one starts on its port under a live client: the client's
/// application in flight sees its connection fail (not a clean end), the client reconnects by
/// itself and new connections work.
fn server_restarted_under_live_client(rt: Rt) {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut server = Proxy::server(rt, server_options(vec![forward("tok")]));
    let addr = server.ws_addr();
    let mut client = client(rt, &server.url(), 1);
    let socks = client.socks_addr();
    client.wait_links_ready(1);
    let mut app = Socks5::new(socks).connect(echo.addr).expect("connect");
    echo_round(&mut app, b"before the restart").unwrap();

    server.stop().expect("server stops cleanly");
    let mut b = [0u8; 16];
    match app.read(&mut b) {
        Ok(0) => panic!("clean end for a connection whose server went away"),
        Ok(n) => panic!("{n} unexpected bytes"),
        Err(e) => assert!(!is_timeout(e.kind()), "the application hung: {e}"),
    }

    let _server = server_on(rt, addr);
    client.wait_links_ready(2);
    for i in 0..3 {
        let mut s = Socks5::new(socks)
            .connect(echo.addr)
            .expect("connect after restart");
        echo_round(&mut s, &pattern(50 + i, 200_000)).expect("echo after restart");
    }
}

linksocks_tests::on_both_runtimes!(
    link_cut_mid_transfer,
    provider_dies_with_channels_open,
    provider_frozen_fails_over,
    target_resets_mid_stream,
    application_resets_mid_stream,
    target_never_answers,
    server_restarted_under_live_client,
);

//! Transport grace and byte-exact resume on real loopback sockets, both runtimes: the
//! WebSocket link between our client and our server is reset (a TCP RST, as a CDN, a NAT or a
//! network drop gives) twice during a 64 MiB transfer, and the transfer goes on over the link
//! the client opens again, every byte delivered once and in order: in forward, reverse and
//! agent mode (either the provider's or the connector's link lost), and with two links per
//! client (the channel goes on at once over the other). When the peer stays away past the
//! grace, the application sees an error, never a clean end with data missing; with a grace of
//! zero, channels end with their link as before.
//!
//! The resets are triggered by the progress of the reading end (the application for a
//! download, the target for an upload), never by a timer; every wait has a deadline, so a
//! build that loses or stalls a channel fails instead of hanging.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use linksocks_core::session::{ClientRole, Timings};
use linksocks_runtime::TokenSpec;
use linksocks_tests::e2e::modes::{assert_echo, is_error_close};
use linksocks_tests::e2e::netfault::Relay;
use linksocks_tests::e2e::proxy::{forward, reverse};
use linksocks_tests::e2e::socks5::{Socks5, IO_TIMEOUT};
use linksocks_tests::e2e::target::{drain_hash, pattern, pattern_hash, send_pattern, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, wait, Proxy, Rt};

/// Bytes of each transfer.
const LEN: u64 = 64 << 20;
/// Its content: [`pattern`]`(SEED, ..)`, as [`send_pattern`] sends it.
const SEED: u64 = 0x7e5;
/// The link is reset as the reading end passes each of these.
const RESET_AT: [u64; 2] = [20 << 20, 40 << 20];
/// Reconnect quickly (and keep the backoff short while a relay refuses): the tests wait for
/// reconnections, not for the default delays.
const RECONNECT: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_millis(400);
/// The transport grace of the scenarios whose peer comes back (the default, said here).
const GRACE: Duration = Duration::from_secs(30);
/// Longest any one wait of these tests may last.
const DEADLINE: Duration = Duration::from_secs(30);

/// SHA-256 hex of the transfers' content.
fn expected_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| pattern_hash(SEED, LEN))
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

fn mibs(ns: &[u64]) -> String {
    let v: Vec<String> = ns.iter().map(|n| mib(*n)).collect();
    format!("[{}]", v.join(", "))
}

/// True for a failure an application can tell from a finished transfer (a reset, an abort),
/// as opposed to a read that merely timed out.
fn is_error(kind: io::ErrorKind) -> bool {
    is_error_close(&Err(io::Error::from(kind)))
}

/// Quick reconnection and a transport grace of `grace`.
fn set_timings(t: &mut Timings, grace: Duration) {
    t.reconnect_delay = RECONNECT;
    t.reconnect_max = RECONNECT_MAX;
    t.transport_grace = grace;
}

fn server(rt: Rt, tokens: Vec<TokenSpec>, grace: Duration) -> Proxy {
    let mut o = server_options(tokens);
    set_timings(&mut o.machine.timings, grace);
    Proxy::server(rt, o)
}

/// A client of ours (forward client, connector or provider), its link ready.
fn client(rt: Rt, url: &str, token: &str, role: ClientRole, grace: Duration) -> Proxy {
    client_threads(rt, url, token, role, grace, 1)
}

/// Like [`client`], with `threads` links, all ready.
fn client_threads(
    rt: Rt,
    url: &str,
    token: &str,
    role: ClientRole,
    grace: Duration,
    threads: usize,
) -> Proxy {
    let mut o = client_options(url, token, role);
    o.machine.threads = threads;
    set_timings(&mut o.machine.timings, grace);
    let mut c = Proxy::client(rt, o);
    c.wait_links_ready(threads);
    c
}

/// A forward server and a forward client with `threads` links to it through a relay, links
/// ready: (server, relay, client, the client's SOCKS5 address).
fn forward_via_relay(rt: Rt, grace: Duration, threads: usize) -> (Proxy, Relay, Proxy, SocketAddr) {
    let mut server = server(rt, vec![forward("tok")], grace);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let mut client = client_threads(rt, &relay.url(), "tok", ClientRole::Forward, grace, threads);
    let socks = client.socks_addr();
    (server, relay, client, socks)
}

/// A server with reverse token `rtok` and connector token `ctok` (agent mode).
fn agent_server(rt: Rt) -> Proxy {
    server(
        rt,
        vec![
            reverse("rtok", None),
            TokenSpec::Connector(Some("ctok".into()), "rtok".into()),
        ],
        GRACE,
    )
}

/// How a transfer's stream ended at its reading end.
#[derive(Debug)]
// The fields are read through `Debug`, in the panic messages.
#[allow(dead_code)]
enum Outcome {
    /// A clean end after exactly the bytes sent.
    Whole,
    /// A clean end after too few bytes, or other bytes than sent: the failure that must never
    /// happen.
    Truncated { got: u64 },
    /// An error (reset, abort, timeout) after `after` bytes.
    Failed { after: u64, kind: io::ErrorKind },
}

/// The reading end of a transfer, shared with the test: bytes read so far, where reading
/// pauses, and how the stream ended, when.
#[derive(Clone)]
struct ReadEnd(Arc<ReadState>);

struct ReadState {
    bytes: AtomicU64,
    /// Reading stops once this many bytes are read, until it is raised (`u64::MAX`: never).
    hold_at: AtomicU64,
    end: OnceLock<(io::Result<(u64, String)>, Instant)>,
}

impl ReadEnd {
    fn new() -> ReadEnd {
        ReadEnd(Arc::new(ReadState {
            bytes: AtomicU64::new(0),
            hold_at: AtomicU64::new(u64::MAX),
            end: OnceLock::new(),
        }))
    }

    fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::SeqCst)
    }

    fn ended(&self) -> bool {
        self.0.end.get().is_some()
    }

    /// Reading pauses once `at` bytes are read, until [`ReadEnd::release`].
    fn hold_at(&self, at: u64) {
        self.0.hold_at.store(at, Ordering::SeqCst);
    }

    fn release(&self) {
        self.0.hold_at.store(u64::MAX, Ordering::SeqCst);
    }

    /// Reads `r` to its end on the calling thread, counting and hashing; records the end.
    fn drain(&self, r: impl Read) {
        let res = drain_hash(&mut Counted {
            inner: r,
            end: self,
        });
        let _ = self.0.end.set((res, Instant::now()));
    }

    /// How the stream ended, and when; `None` while it is still being read.
    fn outcome(&self) -> Option<(Outcome, Instant)> {
        let (res, at) = self.0.end.get()?;
        let o = match res {
            Ok((n, h)) if *n == LEN && h == expected_hash() => Outcome::Whole,
            Ok((n, _)) => Outcome::Truncated { got: *n },
            Err(e) => Outcome::Failed {
                after: self.bytes(),
                kind: e.kind(),
            },
        };
        Some((o, *at))
    }
}

/// A reader that counts into a [`ReadEnd`] and pauses where it says.
struct Counted<'a, R> {
    inner: R,
    end: &'a ReadEnd,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let st = &self.end.0;
        let at = st.bytes.load(Ordering::SeqCst);
        let deadline = Instant::now() + DEADLINE;
        let hold = loop {
            let hold = st.hold_at.load(Ordering::SeqCst);
            if at < hold {
                break hold;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "held too long"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let max = buf
            .len()
            .min(usize::try_from(hold - at).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        st.bytes.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

/// Waits until `end` has read `at` bytes; panics saying how the stream ended if it ends
/// first (`resets`: where the link was reset so far, for the message).
#[track_caller]
fn wait_bytes(end: &ReadEnd, at: u64, what: &str, resets: &[u64]) {
    wait::until(
        &format!("{what}: {} at the reading end", mib(at)),
        DEADLINE,
        || end.bytes() >= at || end.ended(),
    );
    if end.bytes() < at {
        let (o, _) = end.outcome().expect("ended");
        panic!(
            "{what}: the stream ended at {} of {}, the link reset at {}: {o:?} \
             (a channel must outlive its link)",
            mib(end.bytes()),
            mib(LEN),
            mibs(resets)
        );
    }
}

/// Waits for `end` to finish; panics unless it got the whole stream, cleanly.
#[track_caller]
fn assert_whole(end: &ReadEnd, what: &str, resets: &[u64]) {
    wait::until(&format!("{what}: the stream's end"), DEADLINE, || {
        end.ended()
    });
    let (o, _) = end.outcome().expect("ended");
    assert!(
        matches!(o, Outcome::Whole),
        "{what}: the link reset at {}, the stream ended: {o:?}",
        mibs(resets)
    );
    for r in resets {
        assert!(
            *r < LEN,
            "{what}: a reset came after the transfer ({})",
            mibs(resets)
        );
    }
}

/// Calls `reset(k)` as the reading end passes each of [`RESET_AT`] (`k` = 0, 1), then checks
/// that the stream arrived whole.
fn survive_resets(end: &ReadEnd, what: &str, mut reset: impl FnMut(usize)) {
    let start = Instant::now();
    let mut resets = Vec::new();
    for (k, &mark) in RESET_AT.iter().enumerate() {
        wait_bytes(end, mark, what, &resets);
        reset(k);
        resets.push(end.bytes());
    }
    assert_whole(end, what, &resets);
    eprintln!(
        "{what}: {} whole through resets at {} in {:?}",
        mib(LEN),
        mibs(&resets),
        start.elapsed()
    );
}

/// Resets every connection of `relay` (the link it carries) for the `k`-th time (from 0),
/// once the link is back from the previous reset: the relay has relayed `k + 1` connections.
fn reset_link(relay: &Relay, k: usize) {
    wait::until(
        &format!("the link back through the relay after {k} resets"),
        DEADLINE,
        || relay.accepted() > k,
    );
    relay.reset_all();
}

/// A download of [`LEN`] bytes from `target` through `socks`, read on a thread of its own.
fn start_download(socks: SocketAddr, target: SocketAddr, end: &ReadEnd) {
    let app = Socks5::new(socks)
        .connect(target)
        .unwrap_or_else(|e| panic!("SOCKS5 CONNECT {target} via {socks}: {e}"));
    let end = end.clone();
    std::thread::spawn(move || end.drain(app));
}

/// Downloads [`LEN`] bytes from a byte source through `socks`, the link reset by `reset(k)`
/// at each of [`RESET_AT`]; panics unless the download arrives whole.
fn download_through_resets(socks: SocketAddr, what: &str, reset: impl FnMut(usize)) {
    let source = TcpServer::source("127.0.0.1:0", SEED, LEN).expect("source");
    let end = ReadEnd::new();
    start_download(socks, source.addr, &end);
    survive_resets(&end, what, reset);
}

/// Forward mode, client -> relay -> server: the application downloads 64 MiB while the link
/// is reset twice.
fn forward_download_survives_two_resets(rt: Rt) {
    let (_server, relay, _client, socks) = forward_via_relay(rt, GRACE, 1);
    download_through_resets(socks, "forward download", |k| reset_link(&relay, k));
    assert!(relay.accepted() >= 3, "the client did not reconnect twice");
}

/// Forward mode: the application uploads 64 MiB to a sink while the link is reset twice
/// (from the sink's progress); the sink gets every byte, in order, and tells the application
/// the hash of what it got.
fn forward_upload_survives_two_resets(rt: Rt) {
    let (_server, relay, _client, socks) = forward_via_relay(rt, GRACE, 1);
    let end = ReadEnd::new();
    let sink_end = end.clone();
    let sink = TcpServer::start("127.0.0.1:0", move |mut s| {
        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
        sink_end.drain((&s).take(LEN));
        if let Some((Outcome::Whole, _)) = sink_end.outcome() {
            let _ = s.write_all(expected_hash().as_bytes());
        }
        // Wait for the application to close first, so that the answer is not cut off.
        let _ = s.read(&mut [0u8; 1]);
    })
    .expect("sink");
    let mut app = Socks5::new(socks)
        .connect(sink.addr)
        .expect("SOCKS5 CONNECT");
    let writer = std::thread::spawn(move || -> io::Result<String> {
        send_pattern(&mut app, SEED, LEN)?;
        let mut answer = [0u8; 64];
        app.read_exact(&mut answer)?;
        let _ = app.shutdown(Shutdown::Both);
        Ok(String::from_utf8_lossy(&answer).into_owned())
    });
    survive_resets(&end, "forward upload", |k| reset_link(&relay, k));
    match writer.join().expect("writer") {
        Ok(h) => assert_eq!(h, expected_hash(), "the sink's answer to the application"),
        Err(e) => panic!("the sink got everything, but the application saw {e}"),
    }
    assert_eq!(sink.accepted.load(Ordering::SeqCst), 1, "sink connections");
    assert!(relay.accepted() >= 3, "the client did not reconnect twice");
}

/// Reverse mode, provider -> relay -> server, SOCKS5 on the server: the provider's link is
/// reset twice during a download; the provider comes back and gets its channel back.
fn reverse_download_survives_two_resets(rt: Rt) {
    let mut server = server(rt, vec![reverse("rtok", None)], GRACE);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let _provider = client(rt, &relay.url(), "rtok", ClientRole::Provider, GRACE);
    let socks = server.socks_addr();
    download_through_resets(socks, "reverse download", |k| reset_link(&relay, k));
    assert!(
        relay.accepted() >= 3,
        "the provider did not reconnect twice"
    );
}

/// Agent mode, connector -> server -> provider: the provider's link (through a relay) is
/// reset twice during a download through the connector's SOCKS5 port.
fn agent_provider_link_lost(rt: Rt) {
    let mut server = agent_server(rt);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let _provider = client(rt, &relay.url(), "rtok", ClientRole::Provider, GRACE);
    let mut connector = client(rt, &server.url(), "ctok", ClientRole::Forward, GRACE);
    let socks = connector.socks_addr();
    download_through_resets(socks, "agent download, provider's link reset", |k| {
        reset_link(&relay, k)
    });
    assert!(
        relay.accepted() >= 3,
        "the provider did not reconnect twice"
    );
}

/// Agent mode: the connector's link (through a relay) is reset twice during a download
/// through its SOCKS5 port; the provider's link stays.
fn agent_connector_link_lost(rt: Rt) {
    let mut server = agent_server(rt);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let _provider = client(rt, &server.url(), "rtok", ClientRole::Provider, GRACE);
    let mut connector = client(rt, &relay.url(), "ctok", ClientRole::Forward, GRACE);
    let socks = connector.socks_addr();
    download_through_resets(socks, "agent download, connector's link reset", |k| {
        reset_link(&relay, k)
    });
    assert!(
        relay.accepted() >= 3,
        "the connector did not reconnect twice"
    );
}

/// Bytes relayed so far on each connection of `relay`.
fn relayed(relay: &Relay) -> Vec<u64> {
    (0..relay.accepted()).map(|i| relay.relayed(i)).collect()
}

/// The connection of `relay` that relayed the most since `before` (from [`relayed`]): the
/// one carrying the transfer.
fn busiest_since(relay: &Relay, before: &[u64]) -> usize {
    let now = relayed(relay);
    (0..now.len())
        .max_by_key(|&i| now[i] - before.get(i).copied().unwrap_or(0))
        .expect("a relayed connection")
}

/// A forward client with two links through a relay; the link that carries a download is reset
/// twice, each time with new connections refused, so that the transfer can only go on over
/// the other link, at once. Between the resets, the first link comes back.
fn forward_threads2_survives_resets(rt: Rt) {
    const WHAT: &str = "download over two links";
    let (_server, relay, mut client, socks) = forward_via_relay(rt, GRACE, 2);
    assert_eq!(relay.accepted(), 2, "two links through the relay");
    let source = TcpServer::source("127.0.0.1:0", SEED, LEN).expect("source");
    let end = ReadEnd::new();
    // The reader waits at the second mark until the first reset link is back, so that the
    // second reset still finds the transfer running.
    end.hold_at(RESET_AT[1]);
    let start = Instant::now();
    let before = relayed(&relay);
    start_download(socks, source.addr, &end);
    let mut resets = Vec::new();

    wait_bytes(&end, RESET_AT[0], WHAT, &resets);
    let first = busiest_since(&relay, &before);
    assert!(first < 2, "connection #{first} carries the transfer");
    relay.refuse_new(true);
    relay.reset(first);
    resets.push(end.bytes());
    // 20 MiB more than any buffer holds: they can only come over the other link.
    wait_bytes(
        &end,
        RESET_AT[1],
        &format!("{WHAT}, link #{first} reset and not allowed back"),
        &resets,
    );

    relay.refuse_new(false);
    wait::until("the reset link back through the relay", DEADLINE, || {
        relay.accepted() >= 3
    });
    client.wait_links_ready(3);
    let before = relayed(&relay);
    end.release();
    wait_bytes(&end, RESET_AT[1] + (2 << 20), WHAT, &resets);
    let second = busiest_since(&relay, &before);
    relay.refuse_new(true);
    relay.reset(second);
    resets.push(end.bytes());
    assert_whole(
        &end,
        &format!("{WHAT}, link #{first} reset, then link #{second}"),
        &resets,
    );
    eprintln!(
        "{WHAT}: {} whole through resets of links #{first} and #{second} at {} in {:?}",
        mib(LEN),
        mibs(&resets),
        start.elapsed()
    );
    // Both links come back.
    relay.refuse_new(false);
    client.wait_links_ready(4);
}

/// A byte source of [`LEN`] bytes that reports how its sending ended, and when.
fn reporting_source(ends: mpsc::Sender<(Result<(), io::ErrorKind>, Instant)>) -> TcpServer {
    let ends = Mutex::new(ends);
    TcpServer::start("127.0.0.1:0", move |mut s| {
        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
        // Far more than every buffer between it and the application holds (socket buffers,
        // link queues, a flow window on each side: tens of MiB on loopback), so it cannot
        // finish while its channel is held: only the end of the channel stops it.
        let r = send_pattern(&mut s, SEED, 1 << 30).map(|_| ());
        let _ = s.shutdown(Shutdown::Write);
        let _ = ends
            .lock()
            .unwrap()
            .send((r.map_err(|e| e.kind()), Instant::now()));
    })
    .expect("source")
}

/// A short grace on both sides; the link is reset during a download and the relay then
/// refuses the client for longer than the grace. The channel is held (suspended) through the
/// grace on both ends, then fails on both: the application sees an error, not a clean short
/// stream, and the target's connection ends too. Once the relay lets it through, the client
/// reconnects and new connections work.
fn grace_expiry_is_an_error(rt: Rt) {
    const SHORT: Duration = Duration::from_secs(1);
    // Lower bounds keep a margin for timers' granularity.
    let held = SHORT - Duration::from_millis(150);
    let (ends_tx, ends) = mpsc::channel();
    let source = reporting_source(ends_tx);
    let (_server, relay, mut client, socks) = forward_via_relay(rt, SHORT, 1);
    let end = ReadEnd::new();
    start_download(socks, source.addr, &end);
    wait_bytes(&end, RESET_AT[0], "download before the reset", &[]);
    relay.refuse_new(true);
    relay.reset_all();
    let reset = Instant::now();
    let at = end.bytes();

    wait::until(
        "the application's stream to end after the grace",
        SHORT + Duration::from_secs(10),
        || end.ended(),
    );
    let (o, ended) = end.outcome().expect("ended");
    match o {
        Outcome::Failed { kind, .. } if is_error(kind) => {}
        other => panic!(
            "link reset at {}, peer away past the grace: the application saw {other:?}, \
             expected an error",
            mib(at)
        ),
    }
    let after = ended.duration_since(reset);
    assert!(
        after >= held,
        "the application's stream failed {after:?} after the link was reset, before the \
         grace of {SHORT:?} ran out: the channel was not held ({o:?})"
    );

    let (sent, target_ended) = ends
        .recv_timeout(SHORT + Duration::from_secs(10))
        .expect("the target's connection to end after the grace");
    assert!(
        matches!(sent, Err(k) if is_error(k)),
        "the target sent everything ({sent:?}) although the channel was lost"
    );
    let after = target_ended.saturating_duration_since(reset);
    assert!(
        after >= held,
        "the target's connection ended {after:?} after the link was reset, before the \
         grace of {SHORT:?} ran out"
    );

    relay.refuse_new(false);
    client.wait_links_ready(2);
    let echo = TcpServer::echo("127.0.0.1:0").expect("echo");
    assert_echo(&Socks5::new(socks), echo.addr, &pattern(3, 100_000));
}

/// A grace of zero: a reset of the link ends its channels at once, as before the grace
/// existed: the application sees an error (not a clean short stream), promptly; the client
/// reconnects and new connections work.
fn grace_zero_keeps_old_behaviour(rt: Rt) {
    let source = TcpServer::source("127.0.0.1:0", SEED, LEN).expect("source");
    let (_server, relay, mut client, socks) = forward_via_relay(rt, Duration::ZERO, 1);
    let end = ReadEnd::new();
    start_download(socks, source.addr, &end);
    wait_bytes(&end, RESET_AT[0], "download before the reset", &[]);
    relay.reset_all();
    let reset = Instant::now();
    let at = end.bytes();
    wait::until("the application's stream to end", DEADLINE, || end.ended());
    let (o, ended) = end.outcome().expect("ended");
    match o {
        Outcome::Failed { kind, .. } if is_error(kind) => {}
        other => panic!(
            "grace 0, link reset at {}: the application saw {other:?}, expected an error",
            mib(at)
        ),
    }
    let after = ended.duration_since(reset);
    assert!(
        after < Duration::from_secs(5),
        "grace 0: the channel failed only {after:?} after the link was reset"
    );
    client.wait_links_ready(2);
    let echo = TcpServer::echo("127.0.0.1:0").expect("echo");
    assert_echo(&Socks5::new(socks), echo.addr, &pattern(4, 100_000));
}

linksocks_tests::on_both_runtimes!(
    forward_download_survives_two_resets,
    forward_upload_survives_two_resets,
    reverse_download_survives_two_resets,
    agent_provider_link_lost,
    agent_connector_link_lost,
    forward_threads2_survives_resets,
    grace_expiry_is_an_error,
    grace_zero_keeps_old_behaviour,
);

//! What a thousand suspended channels cost, both runtimes: a forward client with 1,000 idle
//! channels open through its link to our server (each with one echo round trip behind it)
//! loses that link (a TCP RST from a relay that then refuses the client for a while); both
//! sides hold all 1,000 channels, suspended, and the process's resident memory is measured
//! before and during the suspension. Then the client is let back, and every one of the 1,000
//! original connections echoes again, byte-exact, and ends cleanly with nothing more.
//!
//! Both proxies, the relay, the echo target and the applications all run in this process, so
//! `/proc/self/status` (VmRSS) and `/proc/self/fd` measure the whole setup; the figures are
//! printed (run with `--nocapture`) so they can be quoted. The two runtimes' tests take turns
//! (a lock), since each measures the whole process.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linksocks_core::session::{ClientRole, Timings};
use linksocks_tests::e2e::api::Api;
use linksocks_tests::e2e::netfault::Relay;
use linksocks_tests::e2e::proxy::forward;
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, wait, Proxy, Rt};

/// Channels held open through the suspension.
const CONNS: usize = 1000;
/// Bytes of each echo round trip.
const PAYLOAD: usize = 64;
/// File descriptors each connection takes in this process: the application's socket, the
/// client's accepted one, the server's dialled one, the echo target's socket and its clone.
const FDS_PER_CONN: u64 = 5;
/// Growth of the resident set from all channels open to all suspended that the test allows
/// (generous: the point is to print the real figure).
const RSS_BOUND_KIB: u64 = 64 << 10;
/// Reconnect quickly (and keep the backoff short while the relay refuses).
const RECONNECT: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_millis(400);
/// The default transport grace, said here: far longer than the test keeps the link down.
const GRACE: Duration = Duration::from_secs(30);
/// Longest any one wait of this test may last.
const DEADLINE: Duration = Duration::from_secs(30);
const API_KEY: &str = "e2e-resume-memory-key";

/// Each test measures the whole process: the two runtimes' tests must not overlap.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// This process's resident set (VmRSS), KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/self/status:\n{status}"))
}

/// File descriptors open in this process (the one reading the directory included).
fn fd_count() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count() as u64
}

/// The soft limit on open files, from `/proc/self/limits`.
fn fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .map(|soft| soft.parse().unwrap_or(u64::MAX)) // "unlimited"
        .unwrap_or_else(|| panic!("no open files limit in /proc/self/limits:\n{limits}"))
}

/// Raises the soft limit on open files towards `want` (at most to the hard limit), through
/// the C library std links anyway (no `libc` dependency in this crate). Only where
/// `RLIMIT_NOFILE` is 7 and `rlim_t` is an unsigned long (64-bit glibc and musl).
#[cfg(all(
    target_pointer_width = "64",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
))]
fn raise_fd_limit(want: u64) {
    use std::ffi::{c_int, c_ulong};
    #[repr(C)]
    struct RLimit {
        cur: c_ulong,
        max: c_ulong,
    }
    const RLIMIT_NOFILE: c_int = 7;
    extern "C" {
        fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
        fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
    }
    let mut l = RLimit { cur: 0, max: 0 };
    // SAFETY: `l` is a valid, writable `struct rlimit` for the duration of the call.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut l) } != 0 || l.cur >= want {
        return;
    }
    l.cur = want.min(l.max);
    // SAFETY: `l` is a valid `struct rlimit`, its soft limit within the hard one.
    let _ = unsafe { setrlimit(RLIMIT_NOFILE, &l) };
}

#[cfg(not(all(
    target_pointer_width = "64",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x",
        target_arch = "loongarch64"
    )
)))]
fn raise_fd_limit(_want: u64) {}

/// How many connections this process can hold: [`CONNS`], unless the open files limit cannot
/// be raised far enough (then fewer, and the test says so).
fn connections_that_fit() -> usize {
    // The proxies' listeners, links, the relay's pumps, reconnection attempts: a margin.
    let margin = 256;
    let want = fd_count() + CONNS as u64 * FDS_PER_CONN + margin;
    raise_fd_limit(want);
    let limit = fd_limit();
    if limit >= want {
        return CONNS;
    }
    let n = (limit.saturating_sub(fd_count() + margin) / FDS_PER_CONN) as usize;
    eprintln!(
        "NOTE: open files limited to {limit} (wanted {want}): {n} connections instead of \
         {CONNS}"
    );
    assert!(n >= 100, "open files limit {limit}: too low for this test");
    n
}

fn set_timings(t: &mut Timings) {
    t.reconnect_delay = RECONNECT;
    t.reconnect_max = RECONNECT_MAX;
    t.transport_grace = GRACE;
}

/// The server's `/metrics` value `series`.
fn metric(api: &Api, series: &str) -> u64 {
    api.metrics().get(series) as u64
}

/// An application connection to `echo` through `socks` that has done one echo round trip of
/// `pattern(i, ..)`.
fn open(socks: &Socks5, echo: SocketAddr, i: usize) -> TcpStream {
    let mut s = socks
        .connect(echo)
        .unwrap_or_else(|e| panic!("connection #{i}: SOCKS5 CONNECT {echo}: {e}"));
    let payload = pattern(i as u64, PAYLOAD);
    s.write_all(&payload)
        .unwrap_or_else(|e| panic!("connection #{i}: write: {e}"));
    let mut got = vec![0u8; PAYLOAD];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("connection #{i}: reading the echo: {e}"));
    assert_eq!(got, payload, "connection #{i}: the echo differs");
    s
}

/// Connections `0..n` as [`open`] makes them, in order, opened by a few threads at once.
fn open_all(socks: &Socks5, echo: SocketAddr, n: usize) -> Vec<TcpStream> {
    const OPENERS: usize = 8;
    std::thread::scope(|scope| {
        let openers: Vec<_> = (0..OPENERS)
            .map(|t| {
                scope.spawn(move || {
                    (t..n)
                        .step_by(OPENERS)
                        .map(|i| (i, open(socks, echo, i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, TcpStream)> = openers
            .into_iter()
            .flat_map(|o| o.join().expect("opener"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, s)| s).collect()
    })
}

/// Waits until the server holds every one of `n` channels with no link (all suspended), and
/// the client has noticed its link is gone too.
///
/// The server side: its `/metrics` show no link and still `n` channels (a channel without a
/// link is either suspended or gone). The client side: it tried to connect again (the relay
/// refused the attempt), which it does only after it handled the loss of its link, channels
/// suspended included.
fn wait_suspended(api: &Api, relay: &Relay, n: usize) {
    wait::until("the server to lose its link", DEADLINE, || {
        metric(api, "linksocks_links") == 0
    });
    let held = metric(api, "linksocks_channels");
    assert_eq!(
        held, n as u64,
        "the server lost its link and holds {held} channels of {n}: channels were not \
         suspended"
    );
    wait::until("the client to try to reconnect", DEADLINE, || {
        relay.refused() > 0
    });
}

fn kib(k: u64) -> String {
    format!("{k} KiB ({:.1} MiB)", k as f64 / 1024.0)
}

fn delta(from: u64, to: u64) -> String {
    let d = to as i64 - from as i64;
    format!("{d:+} KiB")
}

/// 1,000 idle channels through a relayed link; the link is reset and kept down, both sides
/// suspend them; memory and file descriptors before and during; every connection echoes
/// again once the client is back, and ends cleanly.
fn thousand_suspended_channels_memory(rt: Rt) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let n = connections_that_fit();

    let mut so = server_options(vec![forward("tok")]);
    so.api_key = Some(API_KEY.into());
    set_timings(&mut so.machine.timings);
    let mut server = Proxy::server(rt, so);
    let api = Api::new(server.ws_addr(), API_KEY);
    let relay = Relay::start(server.ws_addr()).expect("relay");
    let mut co = client_options(&relay.url(), "tok", ClientRole::Forward);
    set_timings(&mut co.machine.timings);
    let mut client = Proxy::client(rt, co);
    client.wait_links_ready(1);
    let socks = Socks5::new(client.socks_addr());
    let echo = TcpServer::echo("127.0.0.1:0").expect("echo");
    let (rss_base, fds_base) = (rss_kib(), fd_count());

    // 1. n channels, each with one round trip behind it, then idle.
    let opening = Instant::now();
    let mut conns = open_all(&socks, echo.addr, n);
    let opened_in = opening.elapsed();
    assert_eq!(
        metric(&api, "linksocks_channels"),
        n as u64,
        "server channels"
    );

    // 2. All open.
    let (rss_before, fds_before) = (rss_kib(), fd_count());

    // 3. The link is reset and the client kept away: both sides suspend every channel.
    relay.refuse_new(true);
    relay.reset_all();
    let reset_at = Instant::now();
    wait_suspended(&api, &relay, n);
    let (rss_suspended, fds_suspended) = (rss_kib(), fd_count());
    let suspended_for = reset_at.elapsed();

    // 4. The client comes back; every original connection echoes again.
    relay.refuse_new(false);
    wait::until("the client back through the relay", DEADLINE, || {
        relay.accepted() >= 2
    });
    client.wait_links_ready(2);
    let back_in = reset_at.elapsed();
    let resuming = Instant::now();
    let mut failed: Vec<String> = Vec::new();
    // Everything written first, then read: all channels carry data at once.
    for (i, s) in conns.iter_mut().enumerate() {
        if let Err(e) = s.write_all(&pattern((n + i) as u64, PAYLOAD)) {
            failed.push(format!("#{i}: write after the resume: {e}"));
        }
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let mut got = vec![0u8; PAYLOAD];
        match s.read_exact(&mut got) {
            Ok(()) if got == pattern((n + i) as u64, PAYLOAD) => {}
            Ok(()) => failed.push(format!("#{i}: the echo after the resume differs")),
            Err(e) => failed.push(format!("#{i}: reading the echo after the resume: {e}")),
        }
    }
    let echoed_in = resuming.elapsed();
    let (rss_after, fds_after) = (rss_kib(), fd_count());
    let survivors = n - failed.len();

    eprintln!(
        "{rt:?}: {n} channels opened in {opened_in:?}; suspended {suspended_for:?}; client \
         back {back_in:?} after the reset; {survivors}/{n} echoed again in {echoed_in:?}"
    );
    eprintln!(
        "{rt:?}: RSS baseline {}, all open {}, all suspended {}, after the resume {}",
        kib(rss_base),
        kib(rss_before),
        kib(rss_suspended),
        kib(rss_after)
    );
    eprintln!(
        "{rt:?}: RSS open-suspended {} = {:.2} KiB per suspended channel; baseline-open {} \
         = {:.2} KiB per open channel (echo target's thread included); suspended-after {}",
        delta(rss_before, rss_suspended),
        (rss_suspended as f64 - rss_before as f64) / n as f64,
        delta(rss_base, rss_before),
        (rss_before as f64 - rss_base as f64) / n as f64,
        delta(rss_suspended, rss_after),
    );
    eprintln!(
        "{rt:?}: fds baseline {fds_base}, all open {fds_before}, all suspended \
         {fds_suspended}, after the resume {fds_after}"
    );

    // 5.
    assert!(
        failed.is_empty(),
        "{} of {n} connections did not survive the suspension, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        rss_suspended.saturating_sub(rss_before) < RSS_BOUND_KIB,
        "suspending {n} channels grew the resident set from {} to {} (bound {})",
        kib(rss_before),
        kib(rss_suspended),
        kib(RSS_BOUND_KIB)
    );
    // Only the link's sockets (client, server, the relay's pair) may go while suspended; a
    // channel whose local sockets were closed would take 4 or 5 with it.
    assert!(
        fds_suspended + 32 >= fds_before,
        "file descriptors fell from {fds_before} to {fds_suspended} during the suspension: \
         local sockets were closed"
    );
    assert_eq!(metric(&api, "linksocks_links"), 1, "server links after");
    assert_eq!(
        metric(&api, "linksocks_channels"),
        n as u64,
        "server channels after"
    );

    // Exactly once: each application's end comes back as a clean end, nothing more before it.
    for s in &conns {
        let _ = s.shutdown(Shutdown::Write);
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(0) => {}
            Ok(k) => failed.push(format!("#{i}: {k} bytes more than echoed before the end")),
            Err(e) => failed.push(format!("#{i}: no clean end after the resume: {e}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} connections did not end cleanly, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    eprintln!("{rt:?}: done in {:?}", start.elapsed());
}

linksocks_tests::on_both_runtimes!(thousand_suspended_channels_memory);

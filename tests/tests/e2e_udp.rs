//! UDP ASSOCIATE on real loopback sockets, in forward mode (relay on our client, our server
//! sends to the targets) and reverse mode (relay on our server, our provider sends): datagrams
//! of every size both ways, IPv6 and domain-name destinations, DNS, gzip above the threshold,
//! the relay kept to its application, and the end of an association (control connection
//! closed, idle timeout) closing the sockets on both sides.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use linksocks_core::session::{ClientRole, DataConfig, ReverseTokenSpec, SocksListen, Timings};
use linksocks_runtime::TokenSpec;
use linksocks_tests::e2e::proxy::{
    client_options, forward, server_options, socks_listen, Proxy, Rt, EVENT_TIMEOUT,
};
use linksocks_tests::e2e::socks5::{Dest, Socks5, UdpAssociation, IO_TIMEOUT};
use linksocks_tests::e2e::target::{dns_parse_a, dns_query, pattern, UdpServer};
use linksocks_tests::e2e::wait;

const TOKEN: &str = "udp-token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Reverse,
}

/// What a scenario changes in both proxies.
#[derive(Clone, Default)]
struct Tune {
    timings: Option<Timings>,
    data: Option<DataConfig>,
    /// Where the SOCKS5 listener (and so the relay) is: 127.0.0.1 unless named.
    socks_host: Option<&'static str>,
    fast_open: bool,
}

impl Tune {
    fn apply(&self, timings: &mut Timings, data: &mut DataConfig) {
        if let Some(t) = &self.timings {
            *timings = t.clone();
        }
        if let Some(d) = &self.data {
            *data = d.clone();
        }
    }
}

/// A server and a client of ours in `mode`, and the SOCKS5 listener applications use.
struct Setup {
    socks: SocketAddr,
    _server: Proxy,
    _client: Proxy,
}

fn setup(rt: Rt, mode: Mode, tune: &Tune) -> Setup {
    let listen = SocksListen {
        host: tune.socks_host.unwrap_or("127.0.0.1").into(),
        ..socks_listen(None)
    };
    let token = match mode {
        Mode::Forward => forward(TOKEN),
        Mode::Reverse => TokenSpec::Reverse(ReverseTokenSpec {
            token: Some(TOKEN.into()),
            socks: Some(listen.clone()),
            allow_manage_connector: false,
        }),
    };
    let mut so = server_options(vec![token]);
    tune.apply(&mut so.machine.timings, &mut so.machine.data);
    so.machine.fast_open = tune.fast_open;
    let mut server = Proxy::server(rt, so);
    let role = match mode {
        Mode::Forward => ClientRole::Forward,
        Mode::Reverse => ClientRole::Provider,
    };
    let mut co = client_options(&server.url(), TOKEN, role);
    tune.apply(&mut co.machine.timings, &mut co.machine.data);
    co.machine.fast_open = tune.fast_open;
    if mode == Mode::Forward {
        co.machine.socks = Some(listen);
    }
    let mut client = Proxy::client(rt, co);
    let socks = match mode {
        Mode::Forward => client.socks_addr(),
        Mode::Reverse => {
            client.wait_links_ready(1);
            server.socks_addr()
        }
    };
    Setup {
        socks,
        _server: server,
        _client: client,
    }
}

fn associate(socks: SocketAddr) -> UdpAssociation {
    let local = SocketAddr::new(socks.ip(), 0);
    match Socks5::new(socks).udp_associate(local) {
        Ok(a) => a,
        Err(e) => panic!("UDP ASSOCIATE through {socks}: {e}"),
    }
}

/// `RSV FRAG ATYP DST.ADDR DST.PORT DATA`, for sockets other than an association's own.
fn socks_datagram(dest: &Dest, data: &[u8]) -> Vec<u8> {
    let mut d = vec![0, 0, 0];
    dest.encode(&mut d);
    d.extend_from_slice(data);
    d
}

/// The largest payload a SOCKS5 application can exchange with `target` (reached as `dest`)
/// through a relay at `relay`: the SOCKS5 header rides in the datagrams between application
/// and relay, and each leg is limited by its IP version (65,507 bytes of UDP payload over
/// IPv4, 65,527 over IPv6).
fn max_payload(relay: SocketAddr, dest: &Dest, target: SocketAddr) -> usize {
    let ip_max = |ip: IpAddr| if ip.is_ipv4() { 65_507 } else { 65_527 };
    let header = |d: &Dest| socks_datagram(d, &[]).len();
    let relay_leg = ip_max(relay.ip()) - header(dest).max(header(&Dest::Ip(target)));
    relay_leg.min(ip_max(target.ip()))
}

/// Sends every payload to `dest` and checks that each comes back intact, from `from`, paced
/// as an application would: at most 16 datagrams and 64 KiB unanswered (one larger datagram
/// alone), so no socket buffer on the way (~200 KiB here) can overflow. What this shows is
/// exactly "no loss at this pacing".
fn exchange(assoc: &UdpAssociation, dest: &Dest, from: &Dest, payloads: &[Vec<u8>]) {
    const WINDOW: usize = 16;
    const WINDOW_BYTES: usize = 64 << 10;
    let mut next = 0;
    // Indices of the unanswered payloads. Echoes are matched by content, not by order.
    let mut waiting: Vec<usize> = Vec::new();
    let mut in_flight = 0;
    let mut answered = 0;
    while answered < payloads.len() {
        while next < payloads.len()
            && (waiting.is_empty()
                || (waiting.len() < WINDOW && in_flight + payloads[next].len() <= WINDOW_BYTES))
        {
            assoc.send_to(dest, &payloads[next]).unwrap();
            in_flight += payloads[next].len();
            waiting.push(next);
            next += 1;
        }
        let (src, data) = match assoc.recv() {
            Ok(x) => x,
            Err(e) => panic!(
                "{answered} of {} echoes back, then: {e}; unanswered: {:?} (sizes {:?})",
                payloads.len(),
                waiting,
                waiting
                    .iter()
                    .map(|&i| payloads[i].len())
                    .collect::<Vec<_>>()
            ),
        };
        assert_eq!(&src, from, "source named in the relay's SOCKS5 header");
        let Some(pos) = waiting.iter().position(|&i| payloads[i] == data) else {
            panic!(
                "an echo of {} bytes matches no unanswered datagram (sizes {:?})",
                data.len(),
                waiting
                    .iter()
                    .map(|&i| payloads[i].len())
                    .collect::<Vec<_>>()
            );
        };
        in_flight -= payloads[waiting.remove(pos)].len();
        answered += 1;
    }
}

/// One datagram and its echo.
fn round_trip(assoc: &UdpAssociation, dest: &Dest, from: &Dest, payload: &[u8]) {
    exchange(assoc, dest, from, &[payload.to_vec()]);
}

/// xorshift64*: reproducible sizes.
fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// `n` sizes from 1 byte to `max`: every tenth of each kind named here, the rest random.
fn mixed_sizes(n: usize, max: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            let r = next_rand(&mut x) as usize;
            match i % 10 {
                0 => 1,
                1 => 4096,
                2 => 4097,
                3 => max,
                4 => 1 + r % 512,
                5 => 1200 + r % 300,
                6 => 4097 + r % 12_000,
                _ => 1 + r % max,
            }
        })
        .collect()
}

// ------------------------------------------------------------------ traffic

/// 1,000 datagrams of 1 byte to 65,507 bytes (the largest IPv4 UDP payload) to an IPv4 echo
/// target: all come back intact. The relay is on [::1], where the SOCKS5 header still fits
/// around a 65,507-byte payload (over IPv4 it could not: 65,507 is the IPv4 limit itself).
fn thousand_datagrams(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let tune = Tune {
        socks_host: Some("::1"),
        ..Tune::default()
    };
    let s = setup(rt, mode, &tune);
    let assoc = associate(s.socks);
    assert!(
        assoc.relay.is_ipv6(),
        "relay {} for an IPv6 client",
        assoc.relay
    );
    let dest = Dest::Ip(echo.addr);
    let max = max_payload(assoc.relay, &dest, echo.addr);
    assert_eq!(max, 65_507);
    let payloads: Vec<Vec<u8>> = mixed_sizes(1000, max, 7)
        .into_iter()
        .enumerate()
        .map(|(i, n)| pattern(i as u64, n))
        .collect();
    exchange(&assoc, &dest, &dest, &payloads);
    let got = echo.received.lock().unwrap();
    assert_eq!(got.len(), 1000, "datagrams the target received");
    assert!(got.iter().any(|(_, n)| *n == 65_507));
}

/// An IPv6 target ([::1]) through a relay on 127.0.0.1, up to the largest payload that fits
/// the application's datagram to the relay.
fn ipv6_target(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("[::1]:0").unwrap();
    let s = setup(rt, mode, &Tune::default());
    let assoc = associate(s.socks);
    let dest = Dest::Ip(echo.addr);
    let max = max_payload(assoc.relay, &dest, echo.addr);
    let payloads: Vec<Vec<u8>> = [1, 4097, 30_000, max]
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(100 + i as u64, n))
        .collect();
    exchange(&assoc, &dest, &dest, &payloads);
    assert!(
        echo.received
            .lock()
            .unwrap()
            .iter()
            .all(|(a, _)| a.is_ipv6()),
        "the target was reached over IPv6"
    );
}

/// A SOCKS5 listener on `[::]` serves IPv4 and IPv6 applications; each gets a relay of its own
/// family, which it can send to (an IPv4 application named an IPv4-mapped IPv6 relay could
/// not). Regression: the relay was bound on, and named as, `[::ffff:127.0.0.1]`.
fn dual_stack_listener(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let tune = Tune {
        socks_host: Some("::"),
        ..Tune::default()
    };
    let s = setup(rt, mode, &tune);
    let dest = Dest::Ip(echo.addr);
    for ip in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(Ipv6Addr::LOCALHOST),
    ] {
        let assoc = associate(SocketAddr::new(ip, s.socks.port()));
        assert_eq!(assoc.relay.ip(), ip, "relay of an application on {ip}");
        round_trip(&assoc, &dest, &dest, format!("from {ip}").as_bytes());
    }
}

/// A domain-name destination is resolved on the dialling side: the echo target listens on
/// what `localhost` resolves to first, and the relay names that address as the source.
fn domain_target(rt: Rt, mode: Mode) {
    let first = ("localhost", 0)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("localhost resolves");
    let echo = UdpServer::echo(&SocketAddr::new(first.ip(), 0).to_string()).unwrap();
    let s = setup(rt, mode, &Tune::default());
    let assoc = associate(s.socks);
    let dest = Dest::domain("localhost", echo.addr.port());
    let max = max_payload(assoc.relay, &dest, echo.addr);
    let payloads: Vec<Vec<u8>> = [1, 4097, max]
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(200 + i as u64, n))
        .collect();
    exchange(&assoc, &dest, &Dest::Ip(echo.addr), &payloads);
}

/// A DNS query through the association to a DNS responder on loopback: the answer for the
/// name it serves, NXDOMAIN for another.
fn dns_query_through_tunnel(rt: Rt, mode: Mode) {
    let ip = Ipv4Addr::new(10, 20, 30, 40);
    let dns = UdpServer::dns("127.0.0.1:0", "svc.linksocks.test", ip).unwrap();
    let s = setup(rt, mode, &Tune::default());
    let assoc = associate(s.socks);
    let dest = Dest::Ip(dns.addr);
    for (id, name, want) in [
        (0x1234, "svc.linksocks.test", vec![ip]),
        (0x4321, "other.linksocks.test", vec![]),
    ] {
        assoc.send_to(&dest, &dns_query(id, name)).unwrap();
        let (src, resp) = assoc.recv().expect("DNS answer");
        assert_eq!(src, dest, "the answer's source");
        assert_eq!(dns_parse_a(&resp, id), Some(want), "A records for {name}");
    }
}

/// Payloads at or over the compression threshold travel gzip-compressed (the threshold set to
/// 1 KiB, sampling off, as the reference does) and arrive intact: compressible and random
/// data, under and over the threshold, both ways.
fn gzip_datagrams(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let data = DataConfig {
        compression_threshold: 1024,
        compression_sampling: false,
        ..DataConfig::default()
    };
    let tune = Tune {
        data: Some(data),
        ..Tune::default()
    };
    let s = setup(rt, mode, &tune);
    let assoc = associate(s.socks);
    let dest = Dest::Ip(echo.addr);
    let max = max_payload(assoc.relay, &dest, echo.addr);
    let payloads: Vec<Vec<u8>> = mixed_sizes(200, max, 11)
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            if i % 2 == 0 {
                pattern(300 + i as u64, n)
            } else {
                format!("datagram {i} ").bytes().cycle().take(n).collect()
            }
        })
        .collect();
    exchange(&assoc, &dest, &dest, &payloads);
}

/// FastOpen on both sides: the relay is named before the far side confirmed the association,
/// and datagrams sent at once (racing the far side's socket) all come back.
fn fast_open_datagrams(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let tune = Tune {
        fast_open: true,
        ..Tune::default()
    };
    let s = setup(rt, mode, &tune);
    let assoc = associate(s.socks);
    let dest = Dest::Ip(echo.addr);
    let max = max_payload(assoc.relay, &dest, echo.addr);
    let payloads: Vec<Vec<u8>> = mixed_sizes(100, max, 13)
        .into_iter()
        .enumerate()
        .map(|(i, n)| pattern(400 + i as u64, n))
        .collect();
    exchange(&assoc, &dest, &dest, &payloads);
}

// ------------------------------------------------------------------ the relay's application

/// The association names the application's address: a datagram to the relay from another
/// port of the same host, or from another loopback address, reaches nothing; the
/// application's own datagrams, sent after them, make the round trip.
fn strangers_dropped(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let s = setup(rt, mode, &Tune::default());
    let assoc = associate(s.socks);
    let dest = Dest::Ip(echo.addr);
    let strangers = [
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.2:0").unwrap(),
    ];
    stranger_then_app(&assoc, &strangers, &dest, &echo);
}

/// An association that names `0.0.0.0:0` (the application does not know its address yet) is
/// kept to the control connection's host: a datagram from another loopback address is
/// dropped.
fn strangers_dropped_unnamed(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let s = setup(rt, mode, &Tune::default());
    let unnamed = SocketAddr::from(([0, 0, 0, 0], 0));
    let assoc = Socks5::new(s.socks)
        .udp_associate_announcing("127.0.0.1:0".parse().unwrap(), Some(unnamed))
        .unwrap();
    let dest = Dest::Ip(echo.addr);
    let strangers = [UdpSocket::bind("127.0.0.2:0").unwrap()];
    stranger_then_app(&assoc, &strangers, &dest, &echo);
}

/// Each stranger sends to the relay first; then the application makes two round trips. Loopback
/// delivers in order and the relay handles its datagrams in order, so a stranger's datagram
/// the relay forwarded would be at the target before the application's echoes are back.
fn stranger_then_app(
    assoc: &UdpAssociation,
    strangers: &[UdpSocket],
    dest: &Dest,
    echo: &UdpServer,
) {
    const STRANGER: &[u8] = b"from a stranger";
    for s in strangers {
        s.send_to(&socks_datagram(dest, STRANGER), assoc.relay)
            .unwrap();
    }
    round_trip(assoc, dest, dest, b"application 1");
    round_trip(assoc, dest, dest, b"application 2!");
    let got: Vec<usize> = echo.received.lock().unwrap().iter().map(|r| r.1).collect();
    assert_eq!(
        got,
        vec![13, 14],
        "sizes of the datagrams the target received"
    );
    for s in strangers {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        let r = s.recv_from(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "the relay answered a stranger: {r:?}"
        );
    }
}

// ------------------------------------------------------------------ end of an association

/// Whether nothing listens on `relay` any more: a datagram to it draws ICMP port unreachable,
/// which a connected UDP socket reports as "connection refused".
fn relay_closed(sock: &UdpSocket, dest: &Dest) -> bool {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if sock.send(&socks_datagram(dest, b"probe")).is_err() {
        return false;
    }
    let mut b = vec![0u8; 65_536];
    loop {
        match sock.recv(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            // An echo: the relay still forwards; drain what came back and probe again.
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// While the association lives, its sockets hold their ports: the relay's on this side, the
/// one the target saw datagrams come from on the far side.
fn assert_ports_held(relay: SocketAddr, far: SocketAddr) {
    assert!(
        UdpSocket::bind(relay).is_err(),
        "the relay {relay} is not bound"
    );
    assert!(
        UdpSocket::bind(far).is_err(),
        "the far side's socket {far} is not bound"
    );
}

/// The association is over: the relay's port refuses datagrams and the far side's socket
/// gave its port back.
fn assert_association_gone(sock: UdpSocket, relay: SocketAddr, far: SocketAddr, dest: &Dest) {
    wait::until(
        &format!("the far side's socket {far} to close"),
        EVENT_TIMEOUT,
        || UdpSocket::bind(far).is_ok(),
    );
    sock.connect(relay).unwrap();
    wait::until(
        &format!("the relay {relay} to close"),
        EVENT_TIMEOUT,
        || relay_closed(&sock, dest),
    );
}

/// Closing the control connection ends the association on both sides; a new association
/// then works.
fn control_close_ends_association(rt: Rt, mode: Mode) {
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let s = setup(rt, mode, &Tune::default());
    let assoc = associate(s.socks);
    let dest = Dest::Ip(echo.addr);
    round_trip(&assoc, &dest, &dest, b"before");
    let far = echo.received.lock().unwrap()[0].0;
    assert_ports_held(assoc.relay, far);
    let UdpAssociation { ctrl, sock, relay } = assoc;
    drop(ctrl);
    assert_association_gone(sock, relay, far, &dest);

    let again = associate(s.socks);
    round_trip(&again, &dest, &dest, b"after");
}

/// With a short idle timeout, an association that keeps exchanging datagrams stays open well
/// past it; once it goes quiet it is ended (control connection closed, both sockets closed),
/// and never sooner than the idle timeout after the application's last datagram.
fn idle_timeout(rt: Rt, mode: Mode) {
    let idle = Duration::from_secs(2);
    let timings = Timings {
        idle_timeout: idle,
        cleaner_interval: Duration::from_millis(100),
        ..Timings::default()
    };
    let tune = Tune {
        timings: Some(timings),
        ..Tune::default()
    };
    let echo = UdpServer::echo("127.0.0.1:0").unwrap();
    let s = setup(rt, mode, &tune);
    let mut assoc = associate(s.socks);
    let dest = Dest::Ip(echo.addr);
    // Active for more than twice the idle timeout, a datagram every 100 ms.
    let active_until = Instant::now() + idle * 2 + idle / 4;
    let mut last_send;
    let mut i = 0u32;
    loop {
        last_send = Instant::now();
        round_trip(&assoc, &dest, &dest, format!("tick {i}").as_bytes());
        i += 1;
        if Instant::now() >= active_until {
            break;
        }
        // The application's own pace, not a wait for the proxy.
        std::thread::sleep(Duration::from_millis(100));
    }
    let far = echo.received.lock().unwrap()[0].0;
    assert_ports_held(assoc.relay, far);
    assoc.ctrl.set_nonblocking(true).unwrap();
    let r = assoc.ctrl.read(&mut [0u8; 1]);
    assert!(
        matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "the control connection ended while datagrams flowed: {r:?}"
    );
    assoc.ctrl.set_nonblocking(false).unwrap();

    // Now idle: the proxy closes the control connection (a reset or an end of stream).
    let r = assoc.ctrl.read(&mut [0u8; 1]);
    let ended = Instant::now();
    match r {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("control connection after {IO_TIMEOUT:?} idle: {other:?}"),
    }
    assert!(
        ended - last_send >= idle,
        "ended {:?} after the last datagram, before the idle timeout {idle:?}",
        ended - last_send
    );
    let UdpAssociation { sock, relay, .. } = assoc;
    assert_association_gone(sock, relay, far, &dest);
}

// ------------------------------------------------------------------ both modes

macro_rules! both_modes {
    ($($scenario:ident => $fwd:ident, $rev:ident;)*) => {
        $(
            fn $fwd(rt: Rt) {
                $scenario(rt, Mode::Forward)
            }
            fn $rev(rt: Rt) {
                $scenario(rt, Mode::Reverse)
            }
        )*
        linksocks_tests::on_both_runtimes!($($fwd, $rev),*);
    };
}

both_modes! {
    thousand_datagrams => forward_thousand_datagrams, reverse_thousand_datagrams;
    ipv6_target => forward_ipv6_target, reverse_ipv6_target;
    dual_stack_listener => forward_dual_stack_listener, reverse_dual_stack_listener;
    domain_target => forward_domain_target, reverse_domain_target;
    dns_query_through_tunnel => forward_dns_query, reverse_dns_query;
    gzip_datagrams => forward_gzip_datagrams, reverse_gzip_datagrams;
    fast_open_datagrams => forward_fast_open, reverse_fast_open;
    strangers_dropped => forward_strangers_dropped, reverse_strangers_dropped;
    strangers_dropped_unnamed => forward_strangers_dropped_unnamed, reverse_strangers_dropped_unnamed;
    control_close_ends_association => forward_control_close, reverse_control_close;
    idle_timeout => forward_idle_timeout, reverse_idle_timeout;
}

//! Several WebSocket links per client (`threads`): the client opens them all, spreads its
//! channels over them, and a link that is cut, or that stops moving bytes, takes down only
//! the channels it carries. A relay between client and server shows which link carries which
//! channel (by its byte counts) and acts on one link at a time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use linksocks_core::session::ClientRole;
use linksocks_runtime::Event;
use linksocks_tests::e2e::api::Api;
use linksocks_tests::e2e::modes::assert_echo;
use linksocks_tests::e2e::proxy::{client_options, forward, server_options, EVENT_TIMEOUT};
use linksocks_tests::e2e::relay::{Relay, RelayConn};
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::{wait, Proxy, Rt};

const THREADS: usize = 3;
const STREAMS: usize = 6;
const KEY: &str = "threads-key";

struct Setup {
    _server: Proxy,
    api: Api,
    relay: Relay,
    client: Proxy,
    socks: Socks5,
    echo: TcpServer,
}

/// A forward server behind a relay, and a client with [`THREADS`] links through it.
fn setup(rt: Rt) -> Setup {
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let mut opts = server_options(vec![forward("tok")]);
    opts.api_key = Some(KEY.into());
    // These scenarios are about the links themselves: channels end with theirs (no transport
    // grace). With a grace they continue on another link, which `e2e_resume` shows.
    opts.machine.timings.transport_grace = Duration::ZERO;
    let mut server = Proxy::server(rt, opts);
    let api = Api::new(server.ws_addr(), KEY);
    let relay = Relay::start(api.addr);
    let mut o = client_options(&relay.url(), "tok", ClientRole::Forward);
    o.machine.threads = THREADS;
    o.machine.timings.transport_grace = Duration::ZERO;
    let mut client = Proxy::client(rt, o);
    client.wait_links_ready(THREADS);
    let socks = Socks5::new(client.socks_addr());
    assert_eq!(relay.conns().len(), THREADS, "one TCP connection per link");
    assert_eq!(api.metrics().get("linksocks_links"), THREADS as f64);
    assert_eq!(
        api.token_status("tok").unwrap()["clients_count"],
        THREADS,
        "the server counts each link"
    );
    Setup {
        _server: server,
        api,
        relay,
        client,
        socks,
        echo,
    }
}

/// Which link carries `s`: echo a burst through it and see whose server-to-client byte count
/// grows by at least the burst (nothing else flows meanwhile but small pings).
fn link_of(s: &mut TcpStream, conns: &[Arc<RelayConn>]) -> usize {
    let before: Vec<u64> = conns.iter().map(|c| c.down()).collect();
    let burst = pattern(5, 64 << 10);
    s.write_all(&burst).unwrap();
    let mut got = vec![0u8; burst.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == burst, "echo differs");
    // The relay counts a chunk just after passing it on: wait for the count.
    wait::for_some("the relay to count the burst", EVENT_TIMEOUT, || {
        let grown: Vec<usize> = (0..conns.len())
            .filter(|&i| conns[i].down() - before[i] >= burst.len() as u64)
            .collect();
        (grown.len() == 1).then(|| grown[0])
    })
}

/// `STREAMS` tunnelled echo streams and the link each rides on.
fn open_streams(s: &Setup) -> Vec<(TcpStream, usize)> {
    let conns = s.relay.conns();
    let mut out = Vec::new();
    for _ in 0..STREAMS {
        let mut t = s.socks.connect(s.echo.addr).unwrap();
        let l = link_of(&mut t, &conns);
        out.push((t, l));
    }
    let per_link: Vec<usize> = (0..THREADS)
        .map(|l| out.iter().filter(|(_, x)| *x == l).count())
        .collect();
    // Round robin: as even as it gets.
    assert!(
        per_link.iter().all(|&n| n == STREAMS / THREADS),
        "channels per link: {per_link:?}"
    );
    out
}

/// Echoes `len` bytes through `s` on two threads; the outcome once both are done. With
/// `halfway`, the writer waits there after the first half.
fn transfer(
    s: TcpStream,
    seed: u64,
    len: usize,
    halfway: Option<Arc<Barrier>>,
) -> JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        let data = pattern(seed, len);
        let mut w = s.try_clone()?;
        let d = data.clone();
        let writer = std::thread::spawn(move || {
            let (first, second) = d.split_at(len / 2);
            w.write_all(first)?;
            if let Some(b) = halfway {
                b.wait();
            }
            w.write_all(second)
        });
        let mut r = s;
        let mut got = vec![0u8; len];
        let read = r.read_exact(&mut got);
        let _ = r.shutdown(Shutdown::Both);
        // The writer may fail too once the stream is gone; the read says what happened.
        let _ = writer.join();
        read?;
        if got != data {
            return Err(io::Error::other("the echo differs"));
        }
        Ok(())
    })
}

/// Keeps echoing through `s` until it fails or ends, for at most [`EVENT_TIMEOUT`] of writing
/// (after which the reader's timeout ends it, as a stall).
fn endless(s: TcpStream, seed: u64) -> JoinHandle<io::Result<()>> {
    std::thread::spawn(move || {
        let mut w = s.try_clone()?;
        let writer = std::thread::spawn(move || {
            let block = pattern(seed, 64 << 10);
            let until = Instant::now() + EVENT_TIMEOUT;
            while Instant::now() < until {
                if w.write_all(&block).is_err() {
                    return;
                }
            }
        });
        let mut r = s;
        let mut buf = vec![0u8; 64 << 10];
        let end = loop {
            match r.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        let _ = r.shutdown(Shutdown::Both);
        let _ = writer.join();
        match end {
            // A clean end is an end: what matters is that the stream did not hang.
            Ok(()) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "ended")),
            Err(e) => Err(e),
        }
    })
}

/// How a stream on a dropped link must end: with an end or an error, not a read timeout.
#[track_caller]
fn assert_ended_not_stalled(r: io::Result<()>, what: &str) {
    match r {
        Ok(()) => panic!("{what}: the transfer finished although its link was cut"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{what}: stalled until the read timeout instead of ending: {e}"
        ),
    }
}

/// The client opens its links, spreads channels over them round robin, and a cut link takes
/// only its own channels along: transfers on the other links, running while it is cut,
/// complete byte for byte; the client opens the link again and new channels work.
fn cut_link_spares_the_others(rt: Rt) {
    let mut s = setup(rt);
    let streams = open_streams(&s);
    let conns = s.relay.conns();
    let before = conns[0].down();

    // The streams on link 0 run until it is cut; the others send half, wait for the cut,
    // then send the rest: they are mid-transfer when it happens.
    let others = streams.iter().filter(|(_, l)| *l != 0).count();
    let halfway = Arc::new(Barrier::new(others + 1));
    let jobs: Vec<(usize, JoinHandle<io::Result<()>>)> = streams
        .into_iter()
        .enumerate()
        .map(|(i, (t, l))| {
            let job = if l == 0 {
                endless(t, i as u64)
            } else {
                transfer(t, i as u64, 8 << 20, Some(halfway.clone()))
            };
            (l, job)
        })
        .collect();
    wait::until("link 0 to carry its streams", EVENT_TIMEOUT, || {
        conns[0].down() - before >= 1 << 20
    });
    conns[0].cut();
    halfway.wait();

    for (i, (link, job)) in jobs.into_iter().enumerate() {
        let r = job.join().unwrap();
        if link == 0 {
            assert_ended_not_stalled(r, &format!("stream {i} on the cut link"));
        } else if let Err(e) = r {
            panic!("stream {i} on link {link} failed after another link was cut: {e}");
        }
    }

    s.client.wait_links_ready(THREADS + 1);
    assert_eq!(s.relay.conns().len(), THREADS + 1, "one new connection");
    wait::until("the server to count the links again", EVENT_TIMEOUT, || {
        s.api.metrics().get("linksocks_links") == THREADS as f64
    });
    for i in 0..STREAMS {
        assert_echo(&s.socks, s.echo.addr, &pattern(100 + i as u64, 50_000));
    }
}

/// A link that stops moving bytes (frozen, nobody told) while its channels keep sending does
/// not hold up the channels on the other links: their transfers complete while it is still
/// frozen and still counted as up. Cut afterwards, it takes its own channels along.
fn frozen_link_does_not_stall_the_others(rt: Rt) {
    let mut s = setup(rt);
    let streams = open_streams(&s);
    let conns = s.relay.conns();
    conns[0].freeze();

    let mut stuck = Vec::new();
    let mut others = Vec::new();
    for (i, (t, link)) in streams.into_iter().enumerate() {
        if link == 0 {
            // More than every buffer on the way holds: the frozen link's queue fills up. Its
            // reads wait out the others' transfers, however long a loaded machine takes.
            t.set_read_timeout(Some(3 * EVENT_TIMEOUT)).unwrap();
            stuck.push(transfer(t, i as u64, 32 << 20, None));
        } else {
            others.push(transfer(t, i as u64, 4 << 20, None));
        }
    }
    for (i, job) in others.into_iter().enumerate() {
        if let Err(e) = job.join().unwrap() {
            panic!("transfer {i} on a live link failed while another link was frozen: {e}");
        }
    }
    assert!(
        s.client
            .history()
            .iter()
            .filter(|e| **e == Event::LinkUp)
            .nth(THREADS)
            .is_none(),
        "the frozen link was replaced before the check: the check proves nothing"
    );

    conns[0].cut();
    for (i, job) in stuck.into_iter().enumerate() {
        assert_ended_not_stalled(job.join().unwrap(), &format!("frozen stream {i}"));
    }
    s.client.wait_links_ready(THREADS + 1);
    assert_echo(&s.socks, s.echo.addr, b"after the frozen link was replaced");
}

linksocks_tests::on_both_runtimes!(
    cut_link_spares_the_others,
    frozen_link_does_not_stall_the_others
);

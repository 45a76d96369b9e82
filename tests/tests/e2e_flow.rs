//! Per-channel flow control between our own peers: an application that stops reading holds
//! back only its own channel, never the other channels of its WebSocket link.
//!
//! The LinkSocks wire has no flow control of its own; with a reference peer the only way to
//! bound memory without dropping data is to stop reading the whole link, which stalls every
//! channel on it (head-of-line blocking). Between our peers the window extension (announced
//! with `ext=flow` and Hello, acknowledged with ChannelAck) holds back just the slow channel.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linksocks_core::session::ClientRole;
use linksocks_tests::e2e::proxy::{client_options, forward, server_options, Proxy};
use linksocks_tests::e2e::socks5::Socks5;
use linksocks_tests::e2e::target::{pattern, TcpServer};
use linksocks_tests::e2e::Rt;

/// A forward pair whose peers do (or do not) speak per-channel flow control, with one link.
fn pair(rt: Rt, flow: bool) -> (Proxy, Proxy, Socks5) {
    let mut sopts = server_options(vec![forward("tok")]);
    sopts.machine.data.channel_flow = flow;
    let mut server = Proxy::server(rt, sopts);
    let mut copts = client_options(&server.url(), "tok", ClientRole::Forward);
    copts.machine.data.channel_flow = flow;
    let mut client = Proxy::client(rt, copts);
    let socks = Socks5::new(client.socks_addr());
    (server, client, socks)
}

/// Opens a download of `len` bytes that the application then stops reading, once data has
/// started to flow. Returns the stalled stream (kept open by the caller).
fn stalled_download(socks: &Socks5, source: &TcpServer) -> TcpStream {
    let mut s = socks.connect(source.addr).expect("connect to the source");
    let mut first = [0u8; 1];
    s.read_exact(&mut first).expect("the download starts");
    s
}

/// One echo round trip of a fresh connection, or the error, within `limit`.
fn echo_within(socks: &Socks5, echo: &TcpServer, seed: u64, limit: Duration) -> Result<(), String> {
    let mut s = socks.connect(echo.addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(limit)).unwrap();
    let data = pattern(seed, 1000);
    s.write_all(&data).map_err(|e| e.to_string())?;
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).map_err(|e| e.to_string())?;
    if got != data {
        return Err("echo differs".into());
    }
    Ok(())
}

/// A source of [`pattern`]`(seed, ..)` that counts the bytes its connections got written.
fn counting_source(seed: u64, len: u64) -> (TcpServer, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    let block = pattern(seed, 1 << 20);
    let server = TcpServer::start("127.0.0.1:0", move |mut s| {
        let mut done = 0u64;
        while done < len {
            let at = (done % (1 << 20)) as usize;
            let n = ((len - done) as usize).min(64 << 10).min(block.len() - at);
            if s.write_all(&block[at..at + n]).is_err() {
                return;
            }
            w.fetch_add(n as u64, Ordering::SeqCst);
            done += n as u64;
        }
    })
    .unwrap();
    (server, written)
}

/// With flow control, connections beside a stalled 256 MiB download keep working: each echo
/// completes promptly although the download's channel is stuck for as long as the test runs,
/// and the stall reaches back to the source (our server stops reading it: memory stays
/// bounded, nothing is dropped).
fn stalled_reader_does_not_block_its_link(rt: Rt) {
    let (source, written) = counting_source(7, 256 << 20);
    let echo = TcpServer::echo("127.0.0.1:0").unwrap();
    let (_server, _client, socks) = pair(rt, true);
    let stalled = stalled_download(&socks, &source);
    let start = Instant::now();
    for i in 0..20 {
        echo_within(&socks, &echo, i, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("echo {i} beside a stalled download: {e}"));
    }
    eprintln!(
        "20 echoes beside a stalled download in {:?}",
        start.elapsed()
    );
    // Socket buffers, the pause's overshoot and the link queues hold a few MiB; the rest of
    // the 256 MiB must still be waiting at the source.
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < 64 << 20,
        "the source wrote {sent} bytes into a stalled channel"
    );
    // The stalled application still gets its stream, in order, once it reads again.
    let mut s = stalled;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let want = pattern(7, 1 << 20);
    let mut got = vec![0u8; want.len() - 1];
    s.read_exact(&mut got).unwrap();
    assert!(
        got == want[1..],
        "the stalled download resumed with other bytes"
    );
}

linksocks_tests::on_both_runtimes!(stalled_reader_does_not_block_its_link);

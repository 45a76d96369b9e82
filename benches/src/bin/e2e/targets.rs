//! The generator's own targets on 127.0.0.1: a bulk source/sink, TCP echo (short and held
//! connections) and UDP echo.
//!
//! Bulk protocol: the client sends `op (1 byte) count (u64 LE)`.
//! - `D`: the server writes `count` bytes of incompressible data, then closes.
//! - `U`: the server reads until EOF and, while reading, reports the running byte count as
//!   u64 LE whenever it changed (every 2 ms at most); the client knows the upload has arrived
//!   when a report reaches what it sent. No half-close is needed, which not every proxy passes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::pool::Pool;
use std::thread;
use std::time::Duration;

pub const OP_DOWN: u8 = b'D';
pub const OP_UP: u8 = b'U';

/// Small stacks: the held-connection test runs thousands of these threads.
const STACK: usize = 64 << 10;

#[derive(Clone, Copy, Debug)]
pub struct Targets {
    pub bulk: SocketAddr,
    pub echo: SocketAddr,
    pub udp: SocketAddr,
}

/// Incompressible bytes (xorshift64*), `len` long. Repeated 1 MiB blocks are far beyond any
/// gzip window, so a stream of them does not compress either.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Accepts on `l` and serves each connection on a pool thread (no thread start on the
/// connection's critical path once the pool is warm).
fn accept_loop(l: TcpListener, serve: fn(TcpStream, &Arc<Vec<u8>>), data: Arc<Vec<u8>>) {
    let pool = Pool::new(STACK, 64);
    thread::spawn(move || {
        for s in l.incoming() {
            match s {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let d = data.clone();
                    pool.run(move || serve(s, &d));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
}

pub fn start(data: Arc<Vec<u8>>) -> io::Result<Targets> {
    let bulk = TcpListener::bind("127.0.0.1:0")?;
    let echo = TcpListener::bind("127.0.0.1:0")?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let t = Targets {
        bulk: bulk.local_addr()?,
        echo: echo.local_addr()?,
        udp: udp.local_addr()?,
    };
    accept_loop(bulk, serve_bulk, data.clone());
    accept_loop(echo, |s, _| serve_echo(s), data);
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        }
    });
    Ok(t)
}

/// A TCP echo server on `listen` that runs until the process is killed (`e2e echo-server`):
/// a target in a process of its own, so that held connections cost the generator one
/// descriptor each rather than two (a process may have only so many).
pub fn echo_forever(listen: SocketAddr) -> io::Result<()> {
    let l = TcpListener::bind(listen)?;
    accept_loop(l, |s, _| serve_echo(s), Arc::new(Vec::new()));
    loop {
        thread::park();
    }
}

fn serve_echo(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn serve_bulk(mut s: TcpStream, data: &Arc<Vec<u8>>) {
    let mut h = [0u8; 9];
    if s.read_exact(&mut h).is_err() {
        return;
    }
    let count = u64::from_le_bytes(h[1..].try_into().unwrap());
    match h[0] {
        OP_DOWN => {
            let mut left = count;
            let mut off = 0usize;
            while left > 0 {
                let end = (off + left.min(256 << 10) as usize).min(data.len());
                match s.write(&data[off..end]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        left -= n as u64;
                        off = (off + n) % data.len();
                    }
                }
            }
            let _ = s.flush();
        }
        OP_UP => {
            let got = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let Ok(mut w) = s.try_clone() else { return };
            let (g, d) = (got.clone(), done.clone());
            let reporter = thread::spawn(move || {
                let mut last = 0;
                while !d.load(Ordering::Relaxed) {
                    let now = g.load(Ordering::Relaxed);
                    if now != last {
                        last = now;
                        if w.write_all(&now.to_le_bytes()).is_err() {
                            return;
                        }
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            });
            let mut buf = vec![0u8; 256 << 10];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
            done.store(true, Ordering::Relaxed);
            let _ = reporter.join();
        }
        _ => {}
    }
}

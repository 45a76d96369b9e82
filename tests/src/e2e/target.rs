//! What applications reach through the proxy: small blocking servers on loopback, one thread
//! per connection, stopped when dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// `len` bytes of reproducible, incompressible data (xorshift64* from `seed`).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// SHA-256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Reads `r` to its end, hashing as it goes: (bytes read, SHA-256 hex). Holds no copy, so
/// transfers of any size cost no memory.
pub fn drain_hash(r: &mut impl Read) -> io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hex::encode(h.finalize())));
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

/// Writes `len` bytes of [`pattern`]`(seed, ..)` in chunks; their SHA-256 hex. The chunk
/// pattern repeats every 1 MiB, so any length streams in constant memory.
pub fn send_pattern(w: &mut impl Write, seed: u64, len: u64) -> io::Result<String> {
    let block = pattern(seed, 1 << 20);
    let mut h = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])?;
        h.update(&block[..n]);
        left -= n as u64;
    }
    w.flush()?;
    Ok(hex::encode(h.finalize()))
}

/// SHA-256 hex of what [`send_pattern`] sends for (`seed`, `len`).
pub fn pattern_hash(seed: u64, len: u64) -> String {
    send_pattern(&mut io::sink(), seed, len).expect("sink")
}

/// Reads an HTTP request head (through its blank line); `None` if the peer stops first.
pub fn read_request_head(s: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A TCP server on loopback: an accept thread handing each connection to `serve` on a
/// thread of its own.
pub struct TcpServer {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl TcpServer {
    /// Serve on `bind` (e.g. `127.0.0.1:0`, `[::1]:0`).
    pub fn start(
        bind: &str,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> io::Result<TcpServer> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let serve = Arc::new(serve);
        let (stop, count) = (stopping.clone(), accepted.clone());
        std::thread::Builder::new()
            .name(format!("target {addr}"))
            .spawn(move || {
                for s in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(s) = s else { continue };
                    count.fetch_add(1, Ordering::SeqCst);
                    let serve = serve.clone();
                    std::thread::spawn(move || serve(s));
                }
            })?;
        Ok(TcpServer {
            addr,
            stopping,
            accepted,
        })
    }

    /// Echoes every byte back until the peer closes.
    pub fn echo(bind: &str) -> io::Result<TcpServer> {
        Self::start(bind, |mut s| {
            let mut r = s.try_clone().expect("clone");
            let _ = io::copy(&mut r, &mut s);
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Sends `len` bytes of [`pattern`]`(seed, ..)` to each connection, then closes it.
    pub fn source(bind: &str, seed: u64, len: u64) -> io::Result<TcpServer> {
        Self::start(bind, move |mut s| {
            let _ = send_pattern(&mut s, seed, len);
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// Reads each connection to its end and answers with the SHA-256 hex of what it read
    /// (64 ASCII bytes), then closes.
    pub fn sink(bind: &str) -> io::Result<TcpServer> {
        Self::start(bind, |mut s| {
            if let Ok((_, h)) = drain_hash(&mut s) {
                let _ = s.write_all(h.as_bytes());
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    }

    /// A minimal HTTP/1.1 server answering every request with `body`.
    pub fn http(bind: &str, body: Vec<u8>) -> io::Result<TcpServer> {
        let body = Arc::new(body);
        Self::start(bind, move |mut s| {
            if read_request_head(&mut s).is_none() {
                return;
            }
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if s.write_all(h.as_bytes()).is_ok() {
                let _ = s.write_all(&body);
            }
            let _ = s.shutdown(Shutdown::Write);
            // Let the client read to the end before the socket goes.
            let _ = s.read(&mut [0u8; 1024]);
        })
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A UDP server on loopback answering each datagram with what `answer` makes of it.
pub struct UdpServer {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// Datagrams received so far, with their source.
    pub received: Arc<Mutex<Vec<(SocketAddr, usize)>>>,
}

impl UdpServer {
    pub fn start(
        bind: &str,
        answer: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> io::Result<UdpServer> {
        let sock = UdpSocket::bind(bind)?;
        let addr = sock.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop, log) = (stopping.clone(), received.clone());
        std::thread::Builder::new()
            .name(format!("udp target {addr}"))
            .spawn(move || {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    log.lock().unwrap().push((from, n));
                    if let Some(reply) = answer(&buf[..n]) {
                        let _ = sock.send_to(&reply, from);
                    }
                }
            })?;
        Ok(UdpServer {
            addr,
            stopping,
            received,
        })
    }

    /// Sends every datagram back to its source.
    pub fn echo(bind: &str) -> io::Result<UdpServer> {
        Self::start(bind, |d| Some(d.to_vec()))
    }

    /// A DNS server answering A queries for `name` with `ip` (and NXDOMAIN otherwise).
    pub fn dns(bind: &str, name: &str, ip: std::net::Ipv4Addr) -> io::Result<UdpServer> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        Self::start(bind, move |q| dns_answer(q, &name, ip))
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.addr.ip(), 0)) {
            let _ = s.send_to(b"", self.addr);
        }
    }
}

/// A DNS query for `name` (type A, class IN) with id `id`.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The IPv4 addresses of the A records in a DNS response to query `id`.
pub fn dns_parse_a(resp: &[u8], id: u16) -> Option<Vec<std::net::Ipv4Addr>> {
    if resp.len() < 12 || resp[..2] != id.to_be_bytes() || resp[2] & 0x80 == 0 {
        return None;
    }
    let qd = u16::from_be_bytes([resp[4], resp[5]]);
    let an = u16::from_be_bytes([resp[6], resp[7]]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(resp, i)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..an {
        i = skip_name(resp, i)?;
        let rr = resp.get(i..i + 10)?;
        let (ty, len) = (
            u16::from_be_bytes([rr[0], rr[1]]),
            u16::from_be_bytes([rr[8], rr[9]]) as usize,
        );
        let data = resp.get(i + 10..i + 10 + len)?;
        if ty == 1 && len == 4 {
            ips.push(std::net::Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + len;
    }
    Some(ips)
}

fn skip_name(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let l = *b.get(i)? as usize;
        if l == 0 {
            return Some(i + 1);
        }
        if l & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        i += 1 + l;
    }
}

/// The question's name, dotted and lower-cased, and where the question ends.
fn question(q: &[u8]) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let l = *q.get(i)? as usize;
        i += 1;
        if l == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + l)?).to_ascii_lowercase());
        i += l;
    }
    Some((labels.join("."), i + 4))
}

fn dns_answer(q: &[u8], name: &str, ip: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let (qname, end) = question(q)?;
    let qtype = u16::from_be_bytes([*q.get(end - 4)?, *q.get(end - 3)?]);
    let hit = qname == name && qtype == 1;
    let mut r = q[..2].to_vec();
    r.extend_from_slice(&[0x81, if hit { 0x80 } else { 0x83 }]);
    r.extend_from_slice(&[0, 1, 0, u8::from(hit), 0, 0, 0, 0]);
    r.extend_from_slice(q.get(12..end)?);
    if hit {
        // A pointer to the question's name, type A, class IN, TTL 60, 4 bytes.
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

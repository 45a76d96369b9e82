//! A TCP relay put between a LinkSocks client and its server that reads the WebSocket frames
//! passing each way and tallies the LinkSocks messages inside them (version byte, type, Data
//! compression and protocol), so a test can show what each side really sent: that the
//! reference sends version 0x02 and we 0x01, that gzip went each way, that a client
//! authenticated by Auth message rather than by URL query.
//!
//! The relay forwards bytes untouched and parses a copy as it streams: only the first bytes
//! of each message are kept, so transfers of any size cost no memory. Plain `ws://` only.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use super::target::TcpServer;

/// Bytes of a message needed to classify it: version, type, and for Data the protocol,
/// channel id and compression byte.
const PREFIX: usize = 20;
const TYPE_DATA: u8 = 0x04;

/// What one direction carried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages per version byte.
    pub versions: BTreeMap<u8, u64>,
    /// Messages per type byte.
    pub types: BTreeMap<u8, u64>,
    /// Data messages whose compression byte says gzip (0x01).
    pub gzip_data: u64,
    /// Data messages of protocol UDP (0x02).
    pub udp_data: u64,
    /// WebSocket ping and pong frames.
    pub pings: u64,
    pub pongs: u64,
}

/// Both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tallies {
    /// From the client to the server.
    pub to_server: Tally,
    /// From the server to the client.
    pub to_client: Tally,
}

/// A running tap: clients connect to `addr` (`ws://{addr}`) and reach `upstream`.
pub struct WireTap {
    pub addr: SocketAddr,
    tallies: Arc<Mutex<Tallies>>,
    _relay: TcpServer,
}

impl WireTap {
    /// Relays every connection to `addr` to `upstream` (a LinkSocks server's HTTP port).
    pub fn start(upstream: SocketAddr) -> WireTap {
        let tallies = Arc::new(Mutex::new(Tallies::default()));
        let t = tallies.clone();
        let relay = TcpServer::start("127.0.0.1:0", move |client| {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            let up = {
                let t = t.clone();
                std::thread::spawn(move || pipe(client, s2, &t, true))
            };
            pipe(server, c2, &t, false);
            let _ = up.join();
        })
        .expect("start the wire tap");
        WireTap {
            addr: relay.addr,
            tallies,
            _relay: relay,
        }
    }

    /// The `ws://` URL that reaches the upstream server through the tap.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// What passed so far.
    pub fn tallies(&self) -> Tallies {
        self.tallies.lock().unwrap().clone()
    }
}

/// Copies `from` to `to`, parsing what passes; when either ends, ends both.
fn pipe(mut from: TcpStream, mut to: TcpStream, tallies: &Mutex<Tallies>, to_server: bool) {
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let tally = |f: &mut dyn FnMut(&mut Tally)| {
            let mut t = tallies.lock().unwrap();
            f(if to_server {
                &mut t.to_server
            } else {
                &mut t.to_client
            })
        };
        parser.feed(
            &buf[..n],
            |prefix| tally(&mut |t| t.count(prefix)),
            |opcode| tally(&mut |t| t.control(opcode)),
        );
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Tally {
    fn control(&mut self, opcode: u8) {
        match opcode {
            0x9 => self.pings += 1,
            _ => self.pongs += 1,
        }
    }

    /// Counts a message from its first bytes (all of it when shorter than [`PREFIX`]).
    fn count(&mut self, prefix: &[u8]) {
        let (Some(&version), Some(&kind)) = (prefix.first(), prefix.get(1)) else {
            return;
        };
        *self.versions.entry(version).or_default() += 1;
        *self.types.entry(kind).or_default() += 1;
        if kind == TYPE_DATA && prefix.len() >= PREFIX {
            self.udp_data += u64::from(prefix[2] == 0x02);
            self.gzip_data += u64::from(prefix[19] == 0x01);
        }
    }
}

/// Where the parser is in the stream.
#[derive(Default)]
enum State {
    /// In the HTTP upgrade request or response; holds the end of what was seen, to find the
    /// blank line across reads.
    #[default]
    Http,
    /// Collecting a frame header.
    Header,
    /// Inside a frame's payload.
    Payload {
        left: u64,
        mask: Option<[u8; 4]>,
        /// Offset into the payload (for unmasking).
        at: u64,
        /// A data frame (not a control frame): its bytes belong to the current message.
        data: bool,
        /// The last frame of its message.
        fin: bool,
    },
}

/// A streaming reader of one direction of a WebSocket connection that hands the first
/// [`PREFIX`] bytes of each binary message to a callback.
#[derive(Default)]
struct Parser {
    state: State,
    /// HTTP head tail, or the frame header being collected.
    pending: Vec<u8>,
    /// First bytes of the current message.
    prefix: Vec<u8>,
    /// The current message was handed over already.
    reported: bool,
    /// The current message is binary (text messages are not LinkSocks').
    binary: bool,
}

impl Parser {
    /// Parses `bytes`; each message's first bytes go to `report`, each ping (opcode 0x9) or
    /// pong (0xA) frame's opcode to `control`.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut report: impl FnMut(&[u8]),
        mut control: impl FnMut(u8),
    ) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Http => {
                    let keep = self.pending.len();
                    self.pending.extend_from_slice(bytes);
                    match self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(i) => {
                            let used = i + 4 - keep;
                            bytes = &bytes[used..];
                            self.pending.clear();
                            self.state = State::Header;
                        }
                        None => {
                            let tail = self.pending.len().saturating_sub(3);
                            self.pending.drain(..tail);
                            return;
                        }
                    }
                }
                State::Header => {
                    loop {
                        if let Some(n) = header_len(&self.pending) {
                            if self.pending.len() >= n {
                                break;
                            }
                        }
                        let Some((&b, rest)) = bytes.split_first() else {
                            return;
                        };
                        self.pending.push(b);
                        bytes = rest;
                    }
                    let h = std::mem::take(&mut self.pending);
                    let opcode = h[0] & 0x0f;
                    let fin = h[0] & 0x80 != 0;
                    let (len, at) = match h[1] & 0x7f {
                        126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
                        127 => (u64::from_be_bytes(h[2..10].try_into().unwrap()), 10),
                        n => (n as u64, 2),
                    };
                    let mask = (h[1] & 0x80 != 0).then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
                    // Control frames (close, ping, pong) may come between the fragments of a
                    // message and are not part of it.
                    let data = opcode < 0x8;
                    if opcode == 0x9 || opcode == 0xA {
                        control(opcode);
                    }
                    if opcode == 0x1 || opcode == 0x2 {
                        // A new message starts (continuation frames have opcode 0).
                        self.finish(&mut report);
                        self.binary = opcode == 0x2;
                    }
                    if len == 0 {
                        if data && fin {
                            self.finish(&mut report);
                        }
                        continue;
                    }
                    self.state = State::Payload {
                        left: len,
                        mask,
                        at: 0,
                        data,
                        fin,
                    };
                }
                State::Payload {
                    left,
                    mask,
                    at,
                    data,
                    fin,
                } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    if *data && self.binary && self.prefix.len() < PREFIX {
                        let take = n.min(PREFIX - self.prefix.len());
                        for (k, &b) in bytes[..take].iter().enumerate() {
                            let m = mask.map_or(0, |m| m[((*at + k as u64) % 4) as usize]);
                            self.prefix.push(b ^ m);
                        }
                        if self.prefix.len() == PREFIX && !self.reported {
                            report(&self.prefix);
                            self.reported = true;
                        }
                    }
                    *left -= n as u64;
                    *at += n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        let ends_message = *data && *fin;
                        self.state = State::Header;
                        if ends_message {
                            self.finish(&mut report);
                        }
                    }
                }
            }
        }
    }

    /// Ends the current message: reports it if it was shorter than [`PREFIX`].
    fn finish(&mut self, report: &mut impl FnMut(&[u8])) {
        if self.binary && !self.reported && !self.prefix.is_empty() {
            report(&self.prefix);
        }
        self.prefix.clear();
        self.reported = false;
        self.binary = false;
    }
}

/// The length of the frame header that starts `h`, once its first two bytes are there.
fn header_len(h: &[u8]) -> Option<usize> {
    let b1 = *h.get(1)?;
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    Some(2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    fn data_message(version: u8, gzip: bool, len: usize) -> Vec<u8> {
        let mut m = vec![version, TYPE_DATA, 0x01];
        m.extend_from_slice(&[7; 16]);
        m.push(u8::from(gzip));
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.resize(m.len() + len, 0xAB);
        m
    }

    /// Everything the parser reports for `stream`, fed in pieces of `step` bytes.
    fn tally(stream: &[u8], step: usize) -> Tally {
        let mut p = Parser::default();
        let (mut messages, mut controls) = (Vec::new(), Vec::new());
        for chunk in stream.chunks(step) {
            p.feed(
                chunk,
                |prefix| messages.push(prefix.to_vec()),
                |op| controls.push(op),
            );
        }
        let mut t = Tally::default();
        messages.iter().for_each(|m| t.count(m));
        controls.into_iter().for_each(|op| t.control(op));
        t
    }

    #[test]
    fn counts_messages_across_fragments_masks_and_reads() {
        let mut s = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        // A short AuthResponse, unmasked.
        s.extend(frame(0x2, true, &[0x02, 0x02, 0x01], None));
        // A gzip Data message cut into three fragments with a ping between, masked.
        let big = data_message(0x02, true, 70_000);
        let k = Some([1, 2, 3, 4]);
        s.extend(frame(0x2, false, &big[..5], k));
        s.extend(frame(0x9, true, b"ping", k));
        s.extend(frame(0x0, false, &big[5..30_000], k));
        s.extend(frame(0x0, true, &big[30_000..], k));
        // A plain Data message and a text message, which is not LinkSocks'.
        s.extend(frame(0x2, true, &data_message(0x01, false, 10), None));
        s.extend(frame(0x1, true, b"text", None));
        let want = Tally {
            versions: [(0x01, 1), (0x02, 2)].into(),
            types: [(0x02, 1), (TYPE_DATA, 2)].into(),
            gzip_data: 1,
            udp_data: 0,
            pings: 1,
            pongs: 0,
        };
        for step in [1, 3, 7, 4096, s.len()] {
            assert_eq!(tally(&s, step), want, "fed {step} bytes at a time");
        }
    }
}

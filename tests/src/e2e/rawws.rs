//! A WebSocket client written by hand from RFC 6455, for hostile-input tests: it sends exactly
//! the bytes a test asks for (frames of any opcode, lengths that lie, messages cut short),
//! which a real WebSocket library would refuse to produce.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use linksocks_core::session::client::token_hash;

/// How long a test read waits.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The request target that authenticates with `token` in the URL query, as the reference
/// client does.
pub fn query_path(token: &str, reverse: bool) -> String {
    format!(
        "/socket?token={}&reverse={reverse}&instance=6f0a8c1e-4d0b-4b7e-9a55-{:012x}",
        token_hash(token),
        std::process::id()
    )
}

/// Sends `request` on a fresh connection and returns everything the server answers until
/// it closes (or `READ_TIMEOUT` passes, which is an error).
pub fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    // The server may answer and close before reading everything: a write error is not ours
    // to report, what it answered is.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// How the server ended a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A Close frame (its status code, if any), then the end of the stream.
    Close(Option<u16>),
    /// The stream ended (FIN or reset) without a Close frame.
    Dropped,
}

/// An upgraded WebSocket connection.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read past the HTTP response.
    pending: Vec<u8>,
}

impl RawWs {
    /// Opens `path` (e.g. [`query_path`] or `/socket`) with an upgrade request; fails unless
    /// the server switches protocols.
    pub fn connect(addr: SocketAddr, path: &str) -> io::Result<RawWs> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes())?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let end = loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed during the upgrade: {:?}",
                        String::from_utf8_lossy(&head)
                    ),
                ));
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(io::Error::other(format!(
                "upgrade refused: {:?}",
                String::from_utf8_lossy(&head[..end])
            )));
        }
        Ok(RawWs {
            stream,
            pending: head[end..].to_vec(),
        })
    }

    /// The local address (what the server logs as the peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    /// Writes raw bytes (a hand-made frame header, anything).
    pub fn send_raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)
    }

    /// One masked, final frame with this opcode and payload.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut f = frame_header(opcode, payload.len() as u64);
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f)
    }

    pub fn send_binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(OP_BINARY, payload)
    }

    fn fill(&mut self, n: usize) -> io::Result<()> {
        let mut buf = [0u8; 16 << 10];
        while self.pending.len() < n {
            let k = self.stream.read(&mut buf)?;
            if k == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended"));
            }
            self.pending.extend_from_slice(&buf[..k]);
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.fill(n)?;
        Ok(self.pending.drain(..n).collect())
    }

    /// The next frame from the server (unmasked, as RFC 6455 requires of servers).
    pub fn recv_frame(&mut self) -> io::Result<Frame> {
        let h = self.take(2)?;
        let opcode = h[0] & 0x0f;
        let len = match h[1] & 0x7f {
            126 => u16::from_be_bytes(self.take(2)?.try_into().unwrap()) as u64,
            127 => u64::from_be_bytes(self.take(8)?.try_into().unwrap()),
            n => n as u64,
        };
        if h[1] & 0x80 != 0 {
            return Err(io::Error::other("the server masked a frame"));
        }
        let payload = self.take(len as usize)?;
        Ok(Frame { opcode, payload })
    }

    /// The next binary message, answering pings on the way.
    pub fn recv_binary(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let f = self.recv_frame()?;
            match f.opcode {
                OP_BINARY => return Ok(f.payload),
                OP_PING => self.send_frame(OP_PONG, &f.payload)?,
                OP_PONG => {}
                OP_CLOSE => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("closed by the server: {:?}", close_code(&f.payload)),
                    ))
                }
                op => return Err(io::Error::other(format!("unexpected opcode {op:#x}"))),
            }
        }
    }

    /// Reads until the server ends the connection (within `timeout`), skipping messages;
    /// how it ended. A timeout is an error: the server kept the connection.
    pub fn wait_end(&mut self, timeout: Duration) -> io::Result<End> {
        let deadline = Instant::now() + timeout;
        let mut close = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server kept the connection open",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.recv_frame() {
                Ok(f) if f.opcode == OP_CLOSE => close = Some(close_code(&f.payload)),
                Ok(f) if f.opcode == OP_PING => {
                    let _ = self.send_frame(OP_PONG, &f.payload);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(match close {
                        Some(code) => End::Close(code),
                        None => End::Dropped,
                    })
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the server kept the connection open",
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A frame header with FIN set and the MASK bit set, for `len` payload bytes (the masking key
/// is the caller's to append).
pub fn frame_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= u16::MAX as u64 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    f
}

fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

//! WebSocket framing (RFC 6455) on the data path, once the handshake is done.
//!
//! The handshakes stay with async-tungstenite (client) and our HTTP front (server); what
//! follows is ours because every byte of every channel crosses it twice, and a general-purpose
//! WebSocket copies it: into a write buffer on the way out, into a freshly zeroed read buffer
//! on the way in. Here a frame goes out as a header plus the machine's own `Bytes` in one
//! vectored write (masked in place when we are the client and hold the only reference), and a
//! message comes in as a slice of the read buffer, read into memory zeroed once and no more.
//!
//! Only what LinkSocks needs is accepted: binary messages (fragmented ones are joined),
//! ping/pong, close. No extensions are negotiated, so RSV bits are a protocol error; text
//! messages are surfaced for the caller to refuse.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
/// Smallest read from the socket while waiting for a header or a small frame.
const READ_MIN: usize = 16 << 10;
/// Largest read beyond what the current frame still needs.
const READ_MAX: usize = 256 << 10;
/// Segments handed to one vectored write (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 128;

/// Which end of the connection we are: a client masks what it sends, a server unmasks what
/// it receives (and insists that it was masked).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// What the reader got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The peer broke the protocol (a bad frame, an oversized message).
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message of {size} bytes is over the limit of {max}")]
    TooLong { size: u64, max: usize },
    /// The connection ended without a Close frame, or failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl WsError {
    /// The peer did something wrong (as opposed to the connection merely ending).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, WsError::Io(_))
    }
}

/// XOR `data` with the 4-byte `mask`, starting at mask offset 0.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask);
    let m64 = (u64::from(m32) << 32) | u64::from(m32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Parses a frame header at the start of `b`: (fin, opcode, payload length, mask, header
/// length), or `None` if more bytes are needed.
#[allow(clippy::type_complexity)]
fn parse_header(b: &[u8]) -> Result<Option<(bool, u8, u64, Option<[u8; 4]>, usize)>, WsError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    if b[0] & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let l = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
            if l >> 63 != 0 {
                return Err(WsError::Protocol("payload length with the top bit set"));
            }
            (l, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if b.len() < at + 4 {
            return Ok(None);
        }
        let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some((fin, opcode, len, mask, at)))
}

/// Writes a frame header for a payload of `len` bytes into `out`.
fn write_header(out: &mut BytesMut, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    out.extend_from_slice(&[0x80 | opcode]);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.extend_from_slice(&[mbit | len as u8]);
    } else if len <= u16::MAX as usize {
        out.extend_from_slice(&[mbit | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[mbit | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// Reads messages from one direction of a WebSocket connection.
pub struct FrameReader<R> {
    io: R,
    side: Side,
    max_message: usize,
    buf: BytesMut,
    /// A fragmented binary message being joined.
    partial: Option<BytesMut>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `leftover`: bytes already read past the handshake.
    pub fn new(io: R, side: Side, max_message: usize, leftover: Bytes) -> Self {
        FrameReader {
            io,
            side,
            max_message,
            buf: BytesMut::from(&leftover[..]),
            partial: None,
        }
    }

    /// Reads at least one more byte into the buffer, `want` bytes at most. The buffer is
    /// zeroed only where this read may land, so each byte is zeroed once at most.
    async fn fill(&mut self, want: usize) -> Result<(), WsError> {
        let old = self.buf.len();
        self.buf.resize(old + want.max(1), 0);
        let r = self.io.read(&mut self.buf[old..]).await;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        match r {
            Ok(0) => Err(WsError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The next message. Data messages come whole; control frames as they arrive.
    pub async fn next(&mut self) -> Result<Incoming, WsError> {
        loop {
            let (fin, opcode, len, mask, hlen) = loop {
                if let Some(h) = parse_header(&self.buf)? {
                    break h;
                }
                self.fill(READ_MIN).await?;
            };
            match (self.side, mask) {
                (Side::Server, None) => {
                    return Err(WsError::Protocol("unmasked frame from a client"))
                }
                (Side::Client, Some(_)) => {
                    return Err(WsError::Protocol("masked frame from a server"))
                }
                _ => {}
            }
            let control = opcode & 0x8 != 0;
            if control && (!fin || len > 125) {
                return Err(WsError::Protocol("fragmented or oversized control frame"));
            }
            let joined = self.partial.as_ref().map_or(0, |p| p.len() as u64);
            if len.saturating_add(joined) > self.max_message as u64 {
                return Err(WsError::TooLong {
                    size: len.saturating_add(joined),
                    max: self.max_message,
                });
            }
            let total = hlen + len as usize;
            while self.buf.len() < total {
                // What the frame still needs and a little more for the next header, so a large
                // message lands in one contiguous run of the buffer; in steps of a few MiB, so a
                // peer announcing a huge message must send it before we hold that much.
                let need = total - self.buf.len();
                self.fill((need + READ_MIN).min(READ_MAX.max(need.min(4 << 20))))
                    .await?;
            }
            self.buf.advance(hlen);
            let mut payload = self.buf.split_to(len as usize);
            if let Some(m) = mask {
                apply_mask(&mut payload, m);
            }
            match opcode {
                OP_BINARY | OP_TEXT if self.partial.is_some() => {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                OP_BINARY if fin => return Ok(Incoming::Binary(payload.freeze())),
                OP_BINARY => self.partial = Some(payload),
                OP_TEXT => return Ok(Incoming::Text),
                OP_CONTINUATION => {
                    let Some(p) = self.partial.as_mut() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    p.extend_from_slice(&payload);
                    if fin {
                        let whole = self.partial.take().expect("present");
                        return Ok(Incoming::Binary(whole.freeze()));
                    }
                }
                OP_PING => return Ok(Incoming::Ping(payload.freeze())),
                OP_PONG => return Ok(Incoming::Pong),
                OP_CLOSE => return Ok(Incoming::Close),
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }
}

/// What the writer is asked to send.
pub enum Outgoing {
    Binary(Bytes),
    Ping,
    Pong(Bytes),
    Close,
}

/// Turns messages into frames: a header, and the payload masked in place when we are the
/// client and hold the only reference to it (the machine's frame normally is ours alone by
/// now). Used by the writer task and by the driver's writes made on the spot.
pub struct Framer {
    side: Side,
    /// Mask keys need not be secret here (they defeat cache poisoning by intermediaries that
    /// misparse WebSocket as HTTP): a cheap generator seeded per link will do.
    mask_state: u64,
    headers: BytesMut,
}

impl Framer {
    pub fn new(side: Side, seed: u64) -> Self {
        Framer {
            side,
            mask_state: seed | 1,
            headers: BytesMut::new(),
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64*
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32).to_ne_bytes()
    }

    /// One frame: its header and its payload (empty for an empty frame).
    pub fn encode(&mut self, msg: Outgoing) -> (Bytes, Bytes) {
        let (opcode, payload) = match msg {
            Outgoing::Binary(b) => (OP_BINARY, b),
            Outgoing::Ping => (OP_PING, Bytes::new()),
            Outgoing::Pong(b) => (OP_PONG, b),
            // Status 1000, normal closure.
            Outgoing::Close => (OP_CLOSE, Bytes::from_static(&[0x03, 0xE8])),
        };
        let mask = (self.side == Side::Client).then(|| self.next_mask());
        self.headers.reserve(MAX_HEADER);
        write_header(&mut self.headers, opcode, payload.len(), mask);
        let header = self.headers.split().freeze();
        let payload = match mask {
            Some(m) if !payload.is_empty() => {
                let mut owned = payload
                    .try_into_mut()
                    .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                apply_mask(&mut owned, m);
                owned.freeze()
            }
            _ => payload,
        };
        (header, payload)
    }
}

/// Writes frames to one direction of a WebSocket connection, batched into vectored writes.
pub struct FrameWriter<W> {
    io: W,
    framer: Framer,
    segments: VecDeque<Bytes>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W, side: Side, seed: u64) -> Self {
        FrameWriter {
            io,
            framer: Framer::new(side, seed),
            segments: VecDeque::new(),
        }
    }

    /// Queue one frame; nothing is written until [`FrameWriter::flush`].
    pub fn queue(&mut self, msg: Outgoing) {
        let (header, payload) = self.framer.encode(msg);
        self.queue_raw(header);
        self.queue_raw(payload);
    }

    /// Queue bytes already framed (the rest of a frame begun elsewhere).
    pub fn queue_raw(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.segments.push_back(bytes);
        }
    }

    /// Whether frames are queued.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Write everything queued (vectored writes) and flush the stream.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.segments.is_empty() {
            let n = {
                let iov: Vec<IoSlice<'_>> = self
                    .segments
                    .iter()
                    .take(MAX_IOV)
                    .map(|s| IoSlice::new(s))
                    .collect();
                self.io.write_vectored(&iov).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut left = n;
            while left > 0 {
                let front = self
                    .segments
                    .front_mut()
                    .expect("written bytes were queued");
                if front.len() <= left {
                    left -= front.len();
                    self.segments.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        self.io.flush().await
    }

    /// Close the stream (after a Close frame was flushed).
    pub async fn close(&mut self) -> io::Result<()> {
        self.io.close().await
    }
}

/// The stream async-tungstenite's client handshake runs on: it hands out bytes only up to the
/// end of the HTTP response head, so whatever the server sent right after (its AuthResponse,
/// typically in the same segment) stays here for our frame reader ([`HeadOnly::into_parts`]).
pub struct HeadOnly<S> {
    inner: S,
    ahead: BytesMut,
    /// How much of the `\r\n\r\n` terminator the bytes handed out so far end with.
    matched: usize,
    done: bool,
}

impl<S> HeadOnly<S> {
    pub fn new(inner: S) -> Self {
        HeadOnly {
            inner,
            ahead: BytesMut::new(),
            matched: 0,
            done: false,
        }
    }

    /// The stream and the bytes read past the response head.
    pub fn into_parts(self) -> (S, Bytes) {
        (self.inner, self.ahead.freeze())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadOnly<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.done || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.ahead.is_empty() {
            let mut tmp = [0u8; 4096];
            let n = match Pin::new(&mut this.inner).poll_read(cx, &mut tmp) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            this.ahead.extend_from_slice(&tmp[..n]);
        }
        let mut n = 0;
        while n < this.ahead.len() && n < buf.len() {
            let b = this.ahead[n];
            n += 1;
            this.matched = match (this.matched, b) {
                (0 | 2, b'\r') => this.matched + 1,
                (1 | 3, b'\n') => this.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if this.matched == 4 {
                this.done = true;
                break;
            }
        }
        buf[..n].copy_from_slice(&this.ahead[..n]);
        this.ahead.advance(n);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadOnly<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// One half of a stream split for a reader task and a writer task. Unlike futures-lite's
/// halves these pass vectored writes through, which the frame writer depends on.
pub struct Half<S>(Arc<Mutex<S>>);

/// Split `stream` into a half to read from and a half to write to.
pub fn split<S>(stream: S) -> (Half<S>, Half<S>) {
    let s = Arc::new(Mutex::new(stream));
    (Half(s.clone()), Half(s))
}

impl<S> Half<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Half<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Half<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(side: Side, wire: Vec<u8>, max: usize) -> Vec<Result<Incoming, String>> {
        let mut r = FrameReader::new(futures_lite::io::Cursor::new(wire), side, max, Bytes::new());
        let mut out = Vec::new();
        futures_lite::future::block_on(async {
            loop {
                match r.next().await {
                    Ok(m) => out.push(Ok(m)),
                    Err(WsError::Io(_)) => return,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        out
    }

    fn written(side: Side, msgs: Vec<Outgoing>) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new(), side, 42);
        for m in msgs {
            w.queue(m);
        }
        futures_lite::future::block_on(w.flush()).unwrap();
        w.io
    }

    #[test]
    fn round_trips_through_both_sides() {
        let big = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
        for (from, to) in [(Side::Client, Side::Server), (Side::Server, Side::Client)] {
            let wire = written(
                from,
                vec![
                    Outgoing::Binary(Bytes::from_static(b"hi")),
                    Outgoing::Binary(Bytes::from(vec![7u8; 300])),
                    Outgoing::Ping,
                    Outgoing::Binary(big.clone()),
                    Outgoing::Pong(Bytes::from_static(b"p")),
                    Outgoing::Close,
                ],
            );
            let got = read_all(to, wire, 1 << 20);
            assert_eq!(
                got.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
                vec![
                    Incoming::Binary(Bytes::from_static(b"hi")),
                    Incoming::Binary(Bytes::from(vec![7u8; 300])),
                    Incoming::Ping(Bytes::new()),
                    Incoming::Binary(big.clone()),
                    Incoming::Pong,
                    Incoming::Close,
                ]
            );
        }
    }

    #[test]
    fn rfc6455_examples() {
        // 5.7: a single-frame masked text message "Hello" and an unmasked one.
        let masked = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            read_all(Side::Server, masked, 100),
            vec![Ok(Incoming::Text)]
        );
        // A fragmented unmasked binary message, with a ping between the fragments.
        let frag = vec![
            0x02, 0x03, b'H', b'e', b'l', 0x89, 0x00, 0x80, 0x02, b'l', b'o',
        ];
        assert_eq!(
            read_all(Side::Client, frag, 100),
            vec![
                Ok(Incoming::Ping(Bytes::new())),
                Ok(Incoming::Binary(Bytes::from_static(b"Hello")))
            ]
        );
        // 256 bytes with a 16-bit length; 64 KiB with a 64-bit one.
        let mut w = vec![0x82, 0x7E, 0x01, 0x00];
        w.extend(vec![1u8; 256]);
        assert_eq!(
            read_all(Side::Client, w, 1000),
            vec![Ok(Incoming::Binary(Bytes::from(vec![1u8; 256])))]
        );
        let mut w = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        w.extend(vec![2u8; 65536]);
        assert_eq!(
            read_all(Side::Client, w, 1 << 20),
            vec![Ok(Incoming::Binary(Bytes::from(vec![2u8; 65536])))]
        );
    }

    #[test]
    fn refuses_what_the_protocol_forbids() {
        let cases: &[(Side, &[u8], &str)] = &[
            (Side::Server, &[0x82, 0x01, 0x00], "unmasked"),
            (Side::Client, &[0x82, 0x81, 1, 2, 3, 4, 0], "masked"),
            (Side::Client, &[0xC2, 0x00], "reserved"),
            (Side::Client, &[0x09, 0x00], "control"),
            (Side::Client, &[0x89, 0x7E, 0x00, 0x80], "control"),
            (Side::Client, &[0x80, 0x00], "continuation"),
            (Side::Client, &[0x02, 0x00, 0x02, 0x00], "inside"),
            (Side::Client, &[0x83, 0x00], "opcode"),
            (
                Side::Client,
                &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
                "top bit",
            ),
            (
                Side::Client,
                &[0x82, 0x7F, 0, 0, 0, 0, 0x02, 0, 0, 1],
                "over the limit",
            ),
        ];
        for (side, wire, want) in cases {
            let got = read_all(*side, wire.to_vec(), 1 << 25);
            let last = got.last().cloned().unwrap_or(Ok(Incoming::Pong));
            match last {
                Err(e) => assert!(e.contains(want), "{wire:?}: {e} (wanted {want})"),
                Ok(m) => panic!("{wire:?} accepted as {m:?}"),
            }
        }
    }

    #[test]
    fn masks_in_place_when_unique_and_copies_when_shared() {
        let shared = Bytes::from(vec![9u8; 1000]);
        let keep = shared.clone();
        let wire = written(Side::Client, vec![Outgoing::Binary(shared)]);
        assert_eq!(
            keep,
            Bytes::from(vec![9u8; 1000]),
            "a shared payload was changed"
        );
        assert_eq!(
            read_all(Side::Server, wire, 4096),
            vec![Ok(Incoming::Binary(keep))]
        );
    }

    #[test]
    fn head_only_stops_at_the_end_of_the_head() {
        let wire = b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n\x82\x02hi".to_vec();
        let mut h = HeadOnly::new(futures_lite::io::Cursor::new(wire));
        let mut got = Vec::new();
        futures_lite::future::block_on(async {
            let mut b = [0u8; 7];
            loop {
                let n = h.read(&mut b).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
            }
        });
        assert!(got.ends_with(b"websocket\r\n\r\n"), "{got:?}");
        let (mut inner, leftover) = h.into_parts();
        let mut rest = leftover.to_vec();
        futures_lite::future::block_on(inner.read_to_end(&mut rest)).unwrap();
        assert_eq!(rest, b"\x82\x02hi");
    }

    #[test]
    fn mask_matches_bytewise_xor() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, [1, 2, 3, 4]);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }
}

//! WebSocket framing (RFC 6455) on the data path, once the handshake is done: the async glue
//! around the sans-IO codec of `linksocks_core::ws`.
//!
//! The handshakes stay with async-tungstenite (client) and our HTTP front (server); what
//! follows is ours because every byte of every channel crosses it twice, and a general-purpose
//! WebSocket copies it: into a write buffer on the way out, into a freshly zeroed read buffer
//! on the way in. Here a frame goes out as a header plus the machine's own `Bytes` in one
//! vectored write (masked in place when we are the client and hold the only reference), and a
//! message comes in as a slice of the read buffer, read into memory zeroed once and no more.
//!
//! What is accepted, and every check on the peer's frames, is the core codec's
//! ([`linksocks_core::ws::Decoder`]); this module only decides how much to read, and when.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
#[cfg(test)]
use linksocks_core::ws::apply_mask;
use linksocks_core::ws::{Decoded, Decoder, FrameError};
pub use linksocks_core::ws::{Framer, Incoming, Outgoing, Side};

/// Smallest read from the socket while waiting for a header or a small frame.
const READ_MIN: usize = 16 << 10;
/// Largest read beyond what the current frame still needs.
const READ_MAX: usize = 256 << 10;
/// Segments handed to one vectored write (Linux's IOV_MAX is 1024).
const MAX_IOV: usize = 128;

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The peer broke the protocol (a bad frame, an oversized message).
    #[error(transparent)]
    Protocol(#[from] FrameError),
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

/// Reads messages from one direction of a WebSocket connection.
pub struct FrameReader<R> {
    io: R,
    decoder: Decoder,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `leftover`: bytes already read past the handshake.
    pub fn new(io: R, side: Side, max_message: usize, leftover: Bytes) -> Self {
        FrameReader {
            io,
            decoder: Decoder::new(side, max_message),
            buf: BytesMut::from(&leftover[..]),
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
            let want = match self.decoder.decode(&mut self.buf)? {
                Decoded::Message(m) => return Ok(m),
                Decoded::Incomplete { missing: None } => READ_MIN,
                // What the frame still needs and a little more for the next header, so a large
                // message lands in one contiguous run of the buffer; in steps of a few MiB, so a
                // peer announcing a huge message must send it before we hold that much.
                Decoded::Incomplete {
                    missing: Some(need),
                } => need
                    .saturating_add(READ_MIN)
                    .min(READ_MAX.max(need.min(4 << 20))),
            };
            self.fill(want).await?;
        }
    }
}

/// Writes frames to one direction of a WebSocket connection, batched into vectored writes.
pub struct FrameWriter<W> {
    io: W,
    framer: Framer,
    segments: VecDeque<Bytes>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer for `side` (a client's frames are masked with keys from `seed`).
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
    /// Wraps `inner` before the handshake reads anything from it.
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

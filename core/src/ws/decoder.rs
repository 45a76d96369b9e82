//! The frame stream, in whatever pieces it arrives, to messages.
//!
//! The caller reads into a `BytesMut` and calls [`Decoder::decode`] until it reports
//! [`Decoded::Incomplete`]; a message's payload is split off the front of that buffer and
//! unmasked in place, so an unfragmented message is never copied. Everything checkable from
//! a header (masking, control-frame rules, the size limit) is checked as soon as the header is
//! in, before the caller reads any of the payload: a peer announcing a huge message is refused
//! without a byte of it held.

use bytes::{Buf, Bytes, BytesMut};

use super::error::FrameError;
use super::header::{FrameHeader, Opcode, MAX_CONTROL_PAYLOAD};
use super::mask::apply_mask;
use super::Side;

/// A message, or a control frame, from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole binary message: its fragments joined, unmasked. Unfragmented, it is a slice of
    /// the caller's read buffer.
    Binary(Bytes),
    /// A text message, or the first fragment of one. Its payload is dropped unread: LinkSocks
    /// is binary, so the caller's only sensible answer is to close the connection.
    Text,
    /// A ping, with the payload its pong must echo.
    Ping(Bytes),
    /// A pong (its payload is of no use to us).
    Pong,
    /// A close frame (its status code and reason are of no use to us).
    Close,
}

/// What [`Decoder::decode`] found at the front of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// One message; its frames are gone from the buffer.
    Message(Incoming),
    /// The buffer ends inside a frame; read more and call again. Complete frames before it
    /// that make no message on their own (fragments being joined) were taken already.
    Incomplete {
        /// Bytes the current frame still lacks, once its header is in (never 0); `None` while
        /// the buffer ends inside the header itself, which may need up to
        /// [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN) bytes.
        missing: Option<usize>,
    },
}

/// Decodes one direction of a WebSocket connection.
///
/// Memory: the decoder holds at most `max_message` bytes of its own (a fragmented message
/// being joined), and never asks the caller to buffer more than the current frame, which is
/// at most [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN) + `max_message` bytes.
///
/// After an error the stream is beyond repair: drop the connection. (Calling on is safe, but
/// what it returns means nothing.)
#[derive(Debug)]
pub struct Decoder {
    side: Side,
    max_message: usize,
    /// A fragmented binary message being joined.
    partial: Option<BytesMut>,
}

impl Decoder {
    /// A decoder for the frames `side` receives: a server insists on masked frames, a client
    /// on unmasked ones. Messages over `max_message` bytes, fragments joined, are refused.
    pub fn new(side: Side, max_message: usize) -> Self {
        Decoder {
            side,
            max_message,
            partial: None,
        }
    }

    /// Which end of the connection this decoder is on.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The largest message accepted, in bytes.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Bytes of a fragmented message joined so far and held here (0 when none is open).
    pub fn partial_len(&self) -> usize {
        self.partial.as_ref().map_or(0, BytesMut::len)
    }

    /// Takes the next message off the front of `buf`: data messages come whole, control
    /// frames as they arrive (a ping between two fragments comes out before the message).
    /// Never panics and never allocates from an announced length; the only copy is of the
    /// fragments of a fragmented message, into one buffer.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FrameError> {
        loop {
            let Some((h, hlen)) = FrameHeader::parse(buf)? else {
                return Ok(Decoded::Incomplete { missing: None });
            };
            // These depend only on the header and on what was joined so far, so making them
            // again on every call while the payload trickles in gives the same answer.
            let len = self.check(&h)?;
            let total = hlen.saturating_add(len);
            if buf.len() < total {
                return Ok(Decoded::Incomplete {
                    missing: Some(total - buf.len()),
                });
            }
            buf.advance(hlen);
            let mut payload = buf.split_to(len);
            if let Some(m) = h.mask {
                apply_mask(&mut payload, m);
            }
            // The opcode's place in the message sequence is judged only once the whole frame
            // is in, as the runtime always did: an unknown opcode over the size limit is
            // "too long", and one cut short by the connection's end is that end.
            let msg = match h.opcode {
                Opcode::Binary | Opcode::Text if self.partial.is_some() => {
                    return Err(FrameError::NewMessageInFragmented);
                }
                Opcode::Binary if h.fin => Incoming::Binary(payload.freeze()),
                Opcode::Binary => {
                    self.partial = Some(payload);
                    continue;
                }
                Opcode::Text => Incoming::Text,
                Opcode::Continuation => {
                    let Some(p) = self.partial.as_mut() else {
                        return Err(FrameError::OrphanContinuation);
                    };
                    p.extend_from_slice(&payload);
                    if !h.fin {
                        continue;
                    }
                    Incoming::Binary(self.partial.take().expect("present").freeze())
                }
                Opcode::Ping => Incoming::Ping(payload.freeze()),
                Opcode::Pong => Incoming::Pong,
                Opcode::Close => Incoming::Close,
                Opcode::Reserved(opcode) => return Err(FrameError::UnknownOpcode { opcode }),
            };
            return Ok(Decoded::Message(msg));
        }
    }

    /// What can be refused from the header alone, in the runtime's order; the payload length,
    /// known from here on to fit in a `usize`.
    fn check(&self, h: &FrameHeader) -> Result<usize, FrameError> {
        match (self.side, h.mask) {
            (Side::Server, None) => return Err(FrameError::Unmasked),
            (Side::Client, Some(_)) => return Err(FrameError::Masked),
            _ => {}
        }
        if h.opcode.is_control() && (!h.fin || h.len > MAX_CONTROL_PAYLOAD) {
            return Err(FrameError::BadControlFrame);
        }
        // Counts what was joined even for a control frame between fragments: the bound is on
        // what the connection may make us hold at once.
        let size = h.len.saturating_add(self.partial_len() as u64);
        if size > self.max_message as u64 {
            return Err(FrameError::TooLong {
                size,
                max: self.max_message,
            });
        }
        Ok(h.len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` whole: every message, then the error or `None` if it ran out.
    fn run(side: Side, max: usize, wire: &[u8]) -> (Vec<Incoming>, Option<FrameError>) {
        let mut d = Decoder::new(side, max);
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf) {
                Ok(Decoded::Message(m)) => out.push(m),
                Ok(Decoded::Incomplete { .. }) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn every_error_at_its_point() {
        use FrameError::*;
        let cases: &[(Side, &[u8], FrameError)] = &[
            (Side::Server, &[0x82, 0x01, 0x00], Unmasked),
            (Side::Client, &[0x82, 0x81, 1, 2, 3, 4, 0], Masked),
            (Side::Client, &[0xC2, 0x00], ReservedBits),
            (Side::Client, &[0x09, 0x00], BadControlFrame),
            (Side::Client, &[0x89, 0x7E, 0x00, 0x7E], BadControlFrame),
            (Side::Client, &[0x8B, 0x7E, 0x00, 0x80], BadControlFrame),
            (Side::Client, &[0x80, 0x00], OrphanContinuation),
            (
                Side::Client,
                &[0x02, 0x00, 0x02, 0x00],
                NewMessageInFragmented,
            ),
            (
                Side::Client,
                &[0x02, 0x00, 0x81, 0x00],
                NewMessageInFragmented,
            ),
            (Side::Client, &[0x83, 0x00], UnknownOpcode { opcode: 3 }),
            (Side::Client, &[0x8F, 0x00], UnknownOpcode { opcode: 0xF }),
            (
                Side::Client,
                &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0],
                LengthTopBit,
            ),
            (
                Side::Client,
                &[0x82, 0x7F, 0, 0, 0, 0, 0x02, 0, 0, 1],
                TooLong {
                    size: (32 << 20) + 1,
                    max: 32 << 20,
                },
            ),
        ];
        for (side, wire, want) in cases {
            let (_, err) = run(*side, 32 << 20, wire);
            assert_eq!(err.as_ref(), Some(want), "{wire:02x?}");
        }
    }

    #[test]
    fn the_limit_counts_joined_fragments_and_is_inclusive() {
        // 3 + 2 = 5 bytes joined against a limit of 5: accepted.
        let ok = [0x02, 0x03, 1, 2, 3, 0x80, 0x02, 4, 5];
        assert_eq!(
            run(Side::Client, 5, &ok),
            (
                vec![Incoming::Binary(Bytes::from_static(&[1, 2, 3, 4, 5]))],
                None
            )
        );
        // One byte more is refused from the continuation's header, its payload never read.
        let over = [0x02, 0x03, 1, 2, 3, 0x80, 0x03];
        assert_eq!(
            run(Side::Client, 5, &over).1,
            Some(FrameError::TooLong { size: 6, max: 5 })
        );
        // A ping between fragments counts too.
        let ping = [0x02, 0x03, 1, 2, 3, 0x89, 0x03];
        assert_eq!(
            run(Side::Client, 5, &ping).1,
            Some(FrameError::TooLong { size: 6, max: 5 })
        );
    }

    #[test]
    fn refuses_before_the_payload_is_buffered() {
        let mut d = Decoder::new(Side::Client, 1 << 20);
        let mut buf = BytesMut::from(&[0x82u8, 0x7F, 0, 0, 0, 0, 0x02, 0, 0, 1][..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(FrameError::TooLong {
                size: 0x0200_0001,
                ..
            })
        ));
        // While an unknown opcode waits for its payload, nothing is said yet.
        let mut d = Decoder::new(Side::Client, 1 << 20);
        let mut buf = BytesMut::from(&[0x83u8, 0x05, 1, 2][..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Incomplete { missing: Some(3) })
        );
    }

    #[test]
    fn reports_what_is_missing() {
        let mut d = Decoder::new(Side::Server, 1 << 20);
        let mut buf = BytesMut::new();
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Incomplete { missing: None })
        );
        buf.extend_from_slice(&[0x82, 0xFE, 0x01]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Incomplete { missing: None })
        );
        buf.extend_from_slice(&[0x00, 1, 2, 3, 4]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Incomplete { missing: Some(256) })
        );
        buf.extend_from_slice(&[0u8; 255]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Incomplete { missing: Some(1) })
        );
        buf.extend_from_slice(&[0u8; 1]);
        let Ok(Decoded::Message(Incoming::Binary(b))) = d.decode(&mut buf) else {
            panic!("no message");
        };
        assert_eq!(b.len(), 256);
        assert!(buf.is_empty());
    }

    #[test]
    fn takes_fragments_before_saying_incomplete() {
        let mut d = Decoder::new(Side::Client, 100);
        let mut buf = BytesMut::from(&[0x02u8, 0x02, b'a', b'b', 0x00, 0x01, b'c', 0x80][..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Incomplete { missing: None })
        );
        assert_eq!(d.partial_len(), 3);
        assert_eq!(&buf[..], &[0x80]);
        buf.extend_from_slice(&[0x01, b'd', 0x82, 0x00]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Message(Incoming::Binary(Bytes::from_static(
                b"abcd"
            ))))
        );
        assert_eq!(d.partial_len(), 0);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Message(Incoming::Binary(Bytes::new())))
        );
    }

    #[test]
    fn an_unfragmented_message_is_a_slice_of_the_buffer() {
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0x82, 0x03, 7, 8, 9, 0x82, 0x00]);
        let base = buf.as_ptr() as usize;
        let mut d = Decoder::new(Side::Client, 100);
        let Ok(Decoded::Message(Incoming::Binary(b))) = d.decode(&mut buf) else {
            panic!("no message");
        };
        assert_eq!((&b[..], b.as_ptr() as usize), (&[7u8, 8, 9][..], base + 2));
    }

    #[test]
    fn control_frames_and_text() {
        let wire = [
            0x89, 0x02, b'h', b'i', // ping "hi"
            0x8A, 0x01, b'x', // pong
            0x81, 0x01, b't', // text
            0x88, 0x02, 0x03, 0xE8, // close 1000
        ];
        assert_eq!(
            run(Side::Client, 100, &wire),
            (
                vec![
                    Incoming::Ping(Bytes::from_static(b"hi")),
                    Incoming::Pong,
                    Incoming::Text,
                    Incoming::Close
                ],
                None
            )
        );
        // A control frame of exactly 125 bytes is fine.
        let mut w = vec![0x89, 125];
        w.extend_from_slice(&[5; 125]);
        assert_eq!(
            run(Side::Client, 1000, &w),
            (vec![Incoming::Ping(Bytes::from(vec![5; 125]))], None)
        );
    }
}

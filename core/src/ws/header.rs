//! One frame header (RFC 6455, section 5.2), parsed from untrusted bytes and encoded.
//!
//! Parsing checks only what the header alone can tell regardless of context: the RSV bits and
//! the top bit of a 64-bit length. Which side may mask, control-frame rules, the size limit and
//! the opcode's place in a message are the [`Decoder`](super::Decoder)'s business, in the order
//! the runtime has always applied them. Lengths are not required to be minimal, as before.

use bytes::BytesMut;

use super::error::FrameError;

/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload of a control frame (section 5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's opcode (the low nibble of its first byte).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: a further fragment of the message begun by a text or binary frame.
    Continuation,
    /// 0x1: a UTF-8 text message (LinkSocks never sends one).
    Text,
    /// 0x2: a binary message, which every LinkSocks message is.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping, to be answered with a pong carrying the same payload.
    Ping,
    /// 0xA: a pong.
    Pong,
    /// Any other nibble (0x3-0x7 data, 0xB-0xF control): reserved for extensions we never
    /// negotiate. Only the low four bits of the value are meaningful.
    Reserved(u8),
}

impl Opcode {
    /// The opcode in the low nibble of `byte` (the high nibble is ignored).
    pub const fn from_bits(byte: u8) -> Opcode {
        match byte & 0x0F {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            n => Opcode::Reserved(n),
        }
    }

    /// The four bits this opcode is sent as.
    pub const fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(n) => n & 0x0F,
        }
    }

    /// Whether this is a control opcode (high bit of the nibble set), reserved ones included:
    /// control frames may not be fragmented and carry at most 125 bytes.
    pub const fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// The fields of a frame header that matter here.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key, present on every frame a client sends and on none a server sends.
    pub mask: Option<[u8; 4]>,
    /// Payload length, at most `2^63 - 1`: what the peer announced, not yet checked against
    /// any limit or against the bytes present.
    pub len: u64,
}

impl FrameHeader {
    /// Parses the header at the start of `b`: the header and how many bytes it took, or
    /// `None` if `b` ends inside it. Reads at most [`MAX_HEADER_LEN`] bytes of `b` and
    /// allocates nothing.
    pub fn parse(b: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        let [b0, b1, ..] = *b else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let (len, mut at) = match b1 & 0x7F {
            126 => {
                let Some(ext) = b.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4)
            }
            127 => {
                let Some(ext) = b.get(2..10) else {
                    return Ok(None);
                };
                let l = u64::from_be_bytes(ext.try_into().expect("8 bytes"));
                if l >> 63 != 0 {
                    return Err(FrameError::LengthTopBit);
                }
                (l, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if b1 & 0x80 != 0 {
            let Some(m) = b.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                opcode: Opcode::from_bits(b0),
                mask,
                len,
            },
            at,
        )))
    }

    /// Bytes this header takes when encoded (always with the shortest length form, so a
    /// parsed header that used a longer form takes fewer bytes again).
    pub const fn encoded_len(&self) -> usize {
        let ext = if self.len < 126 {
            0
        } else if self.len <= u16::MAX as u64 {
            2
        } else {
            8
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header to the start of `out`; returns how many bytes it took. The length
    /// takes the shortest form, as section 5.2 requires of a sender; a `len` with the top bit
    /// set is written as given (which a receiver refuses), since no payload could be that long.
    pub fn write(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | self.opcode.bits();
        let mbit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = if self.len < 126 {
            out[1] = mbit | self.len as u8;
            2
        } else if self.len <= u64::from(u16::MAX) {
            out[1] = mbit | 126;
            out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            4
        } else {
            out[1] = mbit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            10
        };
        if let Some(m) = self.mask {
            out[at..at + 4].copy_from_slice(&m);
            at += 4;
        }
        at
    }

    /// Appends the header to `out` (see [`FrameHeader::write`]).
    pub fn encode(&self, out: &mut BytesMut) {
        let mut b = [0u8; MAX_HEADER_LEN];
        let n = self.write(&mut b);
        out.extend_from_slice(&b[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: Opcode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            opcode,
            mask,
            len,
        }
    }

    #[test]
    fn round_trips_every_length_class() {
        // Each class at both of its ends, and the boundaries between them.
        let lens = [
            (0u64, 2usize),
            (1, 2),
            (125, 2),
            (126, 4),
            (127, 4),
            (0xFFFF, 4),
            (0x1_0000, 10),
            (u64::from(u32::MAX) + 1, 10),
            (u64::MAX >> 1, 10),
        ];
        for (len, plain) in lens {
            for mask in [None, Some([0x37, 0xfa, 0x21, 0x3d])] {
                for fin in [true, false] {
                    for opcode in [Opcode::Binary, Opcode::Continuation, Opcode::Reserved(0x3)] {
                        let h = header(fin, opcode, mask, len);
                        let mut out = BytesMut::new();
                        h.encode(&mut out);
                        let want = plain + if mask.is_some() { 4 } else { 0 };
                        assert_eq!(out.len(), want, "{h:?}");
                        assert_eq!(h.encoded_len(), want, "{h:?}");
                        assert_eq!(FrameHeader::parse(&out), Ok(Some((h, want))), "{h:?}");
                        // Every proper prefix asks for more and claims nothing.
                        for cut in 0..want {
                            assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "{h:?} {cut}");
                        }
                        // Bytes after the header are not its business.
                        out.extend_from_slice(&[0xFF; 20]);
                        assert_eq!(FrameHeader::parse(&out), Ok(Some((h, want))));
                    }
                }
            }
        }
    }

    #[test]
    fn encodes_the_bytes_of_rfc6455_section_5_7() {
        let mut out = BytesMut::new();
        header(true, Opcode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5).encode(&mut out);
        assert_eq!(&out[..], &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        out.clear();
        header(false, Opcode::Text, None, 3).encode(&mut out);
        header(true, Opcode::Continuation, None, 2).encode(&mut out);
        header(true, Opcode::Ping, None, 5).encode(&mut out);
        header(true, Opcode::Binary, None, 256).encode(&mut out);
        header(true, Opcode::Binary, None, 65536).encode(&mut out);
        assert_eq!(
            &out[..],
            &[
                0x01, 0x03, 0x80, 0x02, 0x89, 0x05, 0x82, 0x7E, 0x01, 0x00, 0x82, 0x7F, 0, 0, 0, 0,
                0, 1, 0, 0
            ]
        );
    }

    #[test]
    fn accepts_lengths_that_are_not_minimal() {
        // A 16-bit form for 5 and a 64-bit form for 300: legal to parse (senders must not).
        let (h, n) = FrameHeader::parse(&[0x82, 0x7E, 0x00, 0x05])
            .unwrap()
            .unwrap();
        assert_eq!((h.len, n), (5, 4));
        let (h, n) = FrameHeader::parse(&[0x82, 0xFF, 0, 0, 0, 0, 0, 0, 1, 44, 1, 2, 3, 4])
            .unwrap()
            .unwrap();
        assert_eq!((h.len, n, h.mask), (300, 14, Some([1, 2, 3, 4])));
        assert_eq!(h.encoded_len(), 8);
    }

    #[test]
    fn refuses_reserved_bits_and_the_length_top_bit() {
        for b0 in [0xC2u8, 0xA2, 0x92, 0xF2, 0x40] {
            assert_eq!(
                FrameHeader::parse(&[b0, 0x00]),
                Err(FrameError::ReservedBits),
                "{b0:#x}"
            );
        }
        // The RSV check needs only the first byte, but it is made once two are present.
        assert_eq!(FrameHeader::parse(&[0xC2]), Ok(None));
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::LengthTopBit)
        );
        // Known before the mask key arrives.
        assert_eq!(
            FrameHeader::parse(&[0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(FrameError::LengthTopBit)
        );
    }

    #[test]
    fn opcodes_map_to_their_bits_and_back() {
        for bits in 0u8..16 {
            let op = Opcode::from_bits(bits | 0xF0);
            assert_eq!(op.bits(), bits);
            assert_eq!(op.is_control(), bits >= 8);
            let named = !matches!(op, Opcode::Reserved(_));
            assert_eq!(named, matches!(bits, 0 | 1 | 2 | 8 | 9 | 10), "{bits:#x}");
        }
    }
}

//! Messages to frames. A frame leaves as two `Bytes`, its header and its payload, for one
//! vectored write: the payload is never copied into a write buffer, and when we are the
//! client it is masked in place if we hold the only reference to it (a frame the machine
//! just built normally is ours alone by then).

use bytes::{Bytes, BytesMut};

use super::header::{FrameHeader, Opcode, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::Side;

/// A message to send. Every frame is final: we never fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A binary message (every LinkSocks message is one).
    Binary(Bytes),
    /// A ping with an empty payload.
    Ping,
    /// A pong echoing a ping's payload.
    Pong(Bytes),
    /// A close frame with status 1000 (normal closure) and no reason.
    Close,
}

/// Frames messages for one side of a connection.
///
/// Mask keys need not be secret (they only stop intermediaries that misparse WebSocket as
/// HTTP from being fed chosen bytes; section 10.3), so they come from a cheap generator seeded
/// per connection rather than from the OS for every frame.
#[derive(Debug)]
pub struct Framer {
    side: Side,
    mask_state: u64,
    /// Headers are split off one buffer, so most frames do not allocate one of their own.
    headers: BytesMut,
}

impl Framer {
    /// A framer for what `side` sends (a client masks each frame with a key from a generator
    /// seeded with `seed`; a server never masks). Equal seeds give equal keys.
    pub fn new(side: Side, seed: u64) -> Self {
        Framer {
            side,
            // xorshift has a fixed point at 0.
            mask_state: seed | 1,
            headers: BytesMut::new(),
        }
    }

    /// Which end of the connection this framer is on.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The next mask key: xorshift64*, its high half.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32).to_ne_bytes()
    }

    /// One final frame: its header and its payload (empty for an empty frame), to be written
    /// in this order. A client's payload is masked in place if it is unique, else copied and
    /// masked, so a `Bytes` the caller still shares is never changed.
    pub fn encode(&mut self, msg: Outgoing) -> (Bytes, Bytes) {
        let (opcode, payload) = match msg {
            Outgoing::Binary(b) => (Opcode::Binary, b),
            Outgoing::Ping => (Opcode::Ping, Bytes::new()),
            Outgoing::Pong(b) => (Opcode::Pong, b),
            // Status 1000, normal closure.
            Outgoing::Close => (Opcode::Close, Bytes::from_static(&[0x03, 0xE8])),
        };
        let mask = (self.side == Side::Client).then(|| self.next_mask());
        self.headers.reserve(MAX_HEADER_LEN);
        FrameHeader {
            fin: true,
            opcode,
            mask,
            len: payload.len() as u64,
        }
        .encode(&mut self.headers);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_frames_without_a_mask() {
        let mut f = Framer::new(Side::Server, 1);
        let (h, p) = f.encode(Outgoing::Binary(Bytes::from_static(b"Hello")));
        assert_eq!((&h[..], &p[..]), (&[0x82u8, 0x05][..], &b"Hello"[..]));
        let (h, p) = f.encode(Outgoing::Ping);
        assert_eq!((&h[..], p.len()), (&[0x89u8, 0x00][..], 0));
        let (h, p) = f.encode(Outgoing::Pong(Bytes::from_static(b"x")));
        assert_eq!((&h[..], &p[..]), (&[0x8Au8, 0x01][..], &b"x"[..]));
        let (h, p) = f.encode(Outgoing::Close);
        assert_eq!((&h[..], &p[..]), (&[0x88u8, 0x02][..], &[0x03u8, 0xE8][..]));
        let (h, _) = f.encode(Outgoing::Binary(Bytes::from(vec![0; 70_000])));
        assert_eq!(&h[..], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn a_client_masks_with_the_seeded_keys() {
        // The keys are part of what goes on the wire: pin the generator's first two.
        let mut f = Framer::new(Side::Client, 42);
        let mut g = Framer::new(Side::Client, 42);
        let (h1, p1) = f.encode(Outgoing::Binary(Bytes::from_static(b"Hello")));
        let (h2, _) = f.encode(Outgoing::Ping);
        let key1: [u8; 4] = h1[2..6].try_into().unwrap();
        assert_eq!((h1[0], h1[1], h1.len()), (0x82, 0x85, 6));
        assert_eq!((h2[0], h2[1], h2.len()), (0x89, 0x80, 6));
        assert_eq!(key1, g.next_mask());
        assert_eq!(&h2[2..6], &g.next_mask());
        let mut clear = p1.to_vec();
        apply_mask(&mut clear, key1);
        assert_eq!(&clear, b"Hello");
        // Seeds 42 and 43 differ only in the bit the framer forces: same keys.
        assert_eq!(
            Framer::new(Side::Client, 42).next_mask(),
            Framer::new(Side::Client, 43).next_mask()
        );
        // Taken as a native-endian word, as the masking XOR takes it.
        assert_eq!(
            u32::from_ne_bytes(Framer::new(Side::Client, 42).next_mask()),
            0x9eb3_1902
        );
    }

    #[test]
    fn masks_in_place_when_unique_and_copies_when_shared() {
        let mut f = Framer::new(Side::Client, 7);
        let unique = Bytes::from(vec![9u8; 1000]);
        let at = unique.as_ptr();
        let (_, p) = f.encode(Outgoing::Binary(unique));
        assert_eq!(p.as_ptr(), at, "a unique payload was copied");

        let shared = Bytes::from(vec![9u8; 1000]);
        let keep = shared.clone();
        let (h, p) = f.encode(Outgoing::Binary(shared));
        assert_eq!(
            keep,
            Bytes::from(vec![9u8; 1000]),
            "a shared payload changed"
        );
        assert_ne!(p.as_ptr(), keep.as_ptr());
        let mut clear = p.to_vec();
        apply_mask(&mut clear, h[4..8].try_into().unwrap());
        assert_eq!(clear, vec![9u8; 1000]);
    }
}

//! Feed arbitrary bytes, cut into arbitrary chunks, to the WebSocket frame decoder, as the
//! server side (frames must be masked) and as the client side (they must not be).
//!
//! Properties checked on every input:
//! - no panic;
//! - bounded memory: what the decoder holds (a fragmented message being joined) stays within
//!   the message limit, and it never asks for more than one frame's bytes (header plus limit);
//!   every message it hands out is within the limit, every ping within 125 bytes;
//! - the outcome (the messages, the error, the bytes left unconsumed) does not depend on how
//!   the input was cut;
//! - whatever decodes re-encodes consistently: the messages framed again by the peer's side
//!   decode to the same messages, and the first frame header parsed re-encodes (in its
//!   shortest form) to a header that parses back the same.
//!
//! Input layout: a flags byte, a seed for the cuts, a byte for the message limit, then the
//! bytes on the wire.
#![no_main]

#[path = "common/cuts.rs"]
mod cuts;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use linksocks_core::ws::{
    apply_mask, Decoded, Decoder, FrameError, FrameHeader, Framer, Incoming, Opcode, Outgoing,
    Side, MAX_HEADER_LEN,
};

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Incoming>,
    error: Option<FrameError>,
    /// The bytes not consumed: what was left in the buffer, and the chunks never fed after
    /// an error.
    rest: Vec<u8>,
}

fn drive(side: Side, max: usize, chunks: &[&[u8]]) -> Outcome {
    let mut d = Decoder::new(side, max);
    let mut buf = BytesMut::new();
    let mut out = Outcome {
        messages: Vec::new(),
        error: None,
        rest: Vec::new(),
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while out.error.is_none() {
            let r = d.decode(&mut buf);
            assert!(d.partial_len() <= max, "joined past the limit");
            match r {
                Ok(Decoded::Message(m)) => {
                    match &m {
                        Incoming::Binary(b) => assert!(b.len() <= max, "message over the limit"),
                        Incoming::Ping(p) => assert!(p.len() <= 125, "oversized ping"),
                        _ => {}
                    }
                    out.messages.push(m);
                }
                Ok(Decoded::Incomplete { missing }) => {
                    if let Some(n) = missing {
                        assert!(n > 0);
                        assert!(
                            buf.len() + n <= MAX_HEADER_LEN + max,
                            "asked for more than one frame"
                        );
                    } else {
                        assert!(buf.len() < MAX_HEADER_LEN);
                    }
                    break;
                }
                Err(e) => {
                    let _ = e.to_string();
                    out.error = Some(e);
                }
            }
        }
    }
    out.rest = buf.to_vec();
    out
}

/// The messages framed again as the peer of `side` would send them.
fn reencode(side: Side, seed: u64, messages: &[Incoming]) -> Vec<u8> {
    let from = match side {
        Side::Server => Side::Client,
        Side::Client => Side::Server,
    };
    let mut framer = Framer::new(from, seed);
    let mut wire = Vec::new();
    for m in messages {
        let (header, payload) = match m {
            Incoming::Binary(b) => framer.encode(Outgoing::Binary(b.clone())),
            Incoming::Pong => framer.encode(Outgoing::Pong(Bytes::new())),
            // By hand: the framer sends neither text nor pings with a payload, and its close
            // frame's status code could be over a limit under 2 bytes.
            Incoming::Close => by_hand(from, Opcode::Close, &[]),
            Incoming::Ping(p) => by_hand(from, Opcode::Ping, p),
            Incoming::Text => by_hand(from, Opcode::Text, &[]),
        };
        wire.extend_from_slice(&header);
        wire.extend_from_slice(&payload);
    }
    wire
}

fn by_hand(from: Side, opcode: Opcode, payload: &[u8]) -> (Bytes, Bytes) {
    let mask = (from == Side::Client).then_some([0xA5, 0x01, 0x7F, 0x80]);
    let mut h = BytesMut::new();
    FrameHeader {
        fin: true,
        opcode,
        mask,
        len: payload.len() as u64,
    }
    .encode(&mut h);
    let mut p = payload.to_vec();
    if let Some(m) = mask {
        apply_mask(&mut p, m);
    }
    (h.freeze(), Bytes::from(p))
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, limit, ref input @ ..] = *data else {
        return;
    };
    let max = match flags & 3 {
        0 => usize::from(limit),
        1 => usize::from(limit) * 64,
        2 => 125,
        _ => 32 << 20,
    };

    let chunks = cuts::cuts(
        input,
        u32::from(seed) | (u32::from(flags) << 8),
        if flags & 4 == 4 { 3 } else { 40 },
    );

    for side in [Side::Server, Side::Client] {
        let whole = cuts::same_however_cut(input, &chunks, flags & 8 == 8, |c| drive(side, max, c));

        let again = reencode(side, u64::from(seed), &whole.messages);
        let back = drive(side, max, &[&again]);
        assert_eq!(
            (back.messages, back.error, back.rest.len()),
            (whole.messages, None, 0),
            "{side:?}: re-encoded messages decode differently"
        );
    }

    if let Ok(Some((h, n))) = FrameHeader::parse(input) {
        assert!(n <= MAX_HEADER_LEN && n <= input.len());
        assert!(h.encoded_len() <= n);
        let mut b = BytesMut::new();
        h.encode(&mut b);
        assert_eq!(b.len(), h.encoded_len());
        assert_eq!(FrameHeader::parse(&b), Ok(Some((h, b.len()))));
    }
});

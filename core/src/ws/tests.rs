//! The codec as a whole: RFC 6455's examples, framer to decoder on both sides, and the
//! decoder's outcome not depending on how the stream is cut.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

/// Feeds `chunks` one after another, decoding after each until the decoder wants more:
/// every message, the error that stopped it (if one did), and the bytes of the stream it did
/// not consume (those fed and those it never got to).
fn feed<'a>(
    side: Side,
    max: usize,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Incoming>, Option<FrameError>, Vec<u8>) {
    let mut d = Decoder::new(side, max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut err = None;
    for c in chunks {
        buf.extend_from_slice(c);
        while err.is_none() {
            match d.decode(&mut buf) {
                Ok(Decoded::Message(m)) => out.push(m),
                Ok(Decoded::Incomplete { .. }) => break,
                Err(e) => err = Some(e),
            }
            assert!(d.partial_len() <= max);
        }
    }
    (out, err, buf.to_vec())
}

fn whole(side: Side, max: usize, wire: &[u8]) -> (Vec<Incoming>, Option<FrameError>, Vec<u8>) {
    feed(side, max, [wire])
}

/// `wire` cut at `cuts` (offsets, in any order, duplicates and out-of-range ones allowed).
fn cut(wire: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    at.push(0);
    at.push(wire.len());
    at.sort_unstable();
    at.windows(2).map(|w| wire[w[0]..w[1]].to_vec()).collect()
}

#[test]
fn rfc6455_section_5_7_examples() {
    // A single-frame masked text message "Hello": surfaced as text, for the caller to refuse.
    let masked_hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        whole(Side::Server, 100, &masked_hello),
        (vec![Incoming::Text], None, vec![])
    );
    // The same, unmasked, is a server's to send: a server refuses it, a client takes it.
    let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        whole(Side::Client, 100, &hello),
        (vec![Incoming::Text], None, vec![])
    );
    assert_eq!(
        whole(Side::Server, 100, &hello).1,
        Some(FrameError::Unmasked)
    );
    assert_eq!(
        whole(Side::Client, 100, &masked_hello).1,
        Some(FrameError::Masked)
    );

    // A fragmented unmasked text message, "Hel" + "lo": text is reported at its first
    // fragment, after which its continuation has no message to continue. (The runtime has
    // closed the link by then.)
    let frag_text = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(
        whole(Side::Client, 100, &frag_text),
        (
            vec![Incoming::Text],
            Some(FrameError::OrphanContinuation),
            vec![]
        )
    );
    // The same as binary, which is what LinkSocks joins, with the RFC's ping in between.
    let frag_binary = [
        0x02, 0x03, 0x48, 0x65, 0x6c, 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x80, 0x02, 0x6c,
        0x6f,
    ];
    assert_eq!(
        whole(Side::Client, 100, &frag_binary),
        (
            vec![
                Incoming::Ping(Bytes::from_static(b"Hello")),
                Incoming::Binary(Bytes::from_static(b"Hello"))
            ],
            None,
            vec![]
        )
    );

    // Unmasked ping "Hello", and the masked pong answering it.
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        whole(Side::Client, 100, &ping),
        (
            vec![Incoming::Ping(Bytes::from_static(b"Hello"))],
            None,
            vec![]
        )
    );
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        whole(Side::Server, 100, &pong),
        (vec![Incoming::Pong], None, vec![])
    );

    // 256 bytes of binary data in a single unmasked frame (16-bit length), and 64 KiB
    // (64-bit length).
    let payload: Vec<u8> = (0..=255u8).collect();
    let mut w = vec![0x82, 0x7E, 0x01, 0x00];
    w.extend_from_slice(&payload);
    assert_eq!(
        whole(Side::Client, 1000, &w),
        (vec![Incoming::Binary(Bytes::from(payload))], None, vec![])
    );
    let payload: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
    let mut w = vec![0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];
    w.extend_from_slice(&payload);
    assert_eq!(
        whole(Side::Client, 1 << 20, &w),
        (
            vec![Incoming::Binary(Bytes::from(payload.clone()))],
            None,
            vec![]
        )
    );
    // One byte under the limit it is refused, before its payload.
    assert_eq!(
        whole(Side::Client, 65535, &w[..10]).1,
        Some(FrameError::TooLong {
            size: 65536,
            max: 65535
        })
    );
}

#[test]
fn framer_to_decoder_on_both_sides() {
    let big = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    for (from, to) in [(Side::Client, Side::Server), (Side::Server, Side::Client)] {
        let mut f = Framer::new(from, 42);
        let mut wire = Vec::new();
        for m in [
            Outgoing::Binary(Bytes::from_static(b"hi")),
            Outgoing::Binary(Bytes::from(vec![7u8; 300])),
            Outgoing::Ping,
            Outgoing::Binary(big.clone()),
            Outgoing::Pong(Bytes::from_static(b"p")),
            Outgoing::Binary(Bytes::new()),
            Outgoing::Close,
        ] {
            let (h, p) = f.encode(m);
            wire.extend_from_slice(&h);
            wire.extend_from_slice(&p);
        }
        let want = vec![
            Incoming::Binary(Bytes::from_static(b"hi")),
            Incoming::Binary(Bytes::from(vec![7u8; 300])),
            Incoming::Ping(Bytes::new()),
            Incoming::Binary(big.clone()),
            Incoming::Pong,
            Incoming::Binary(Bytes::new()),
            Incoming::Close,
        ];
        assert_eq!(whole(to, 1 << 20, &wire), (want.clone(), None, vec![]));
        // A byte at a time.
        assert_eq!(
            feed(to, 1 << 20, wire.chunks(1)),
            (want, None, vec![]),
            "{from:?}"
        );
        // The sender's own side refuses it.
        assert!(whole(from, 1 << 20, &wire).1.is_some());
    }
}

/// A message as the test sends it: binary ones in fragments, with control frames between.
#[derive(Clone, Debug)]
enum Spec {
    /// A binary message sent in fragments of these sizes (at least one), with a ping of the
    /// given payload after each fragment flagged `true` except the last.
    Binary(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close,
}

fn spec() -> impl Strategy<Value = Spec> {
    let small = || proptest::collection::vec(any::<u8>(), 0..=125);
    let fragment = (
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::option::weighted(0.2, small()),
    );
    prop_oneof![
        4 => proptest::collection::vec(fragment, 1..5).prop_map(Spec::Binary),
        1 => small().prop_map(Spec::Ping),
        1 => small().prop_map(Spec::Pong),
        1 => Just(Spec::Close),
    ]
}

fn frame(out: &mut Vec<u8>, fin: bool, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) {
    let mut b = BytesMut::new();
    FrameHeader {
        fin,
        opcode,
        mask,
        len: payload.len() as u64,
    }
    .encode(&mut b);
    out.extend_from_slice(&b);
    let mut p = payload.to_vec();
    if let Some(m) = mask {
        apply_mask(&mut p, m);
    }
    out.extend_from_slice(&p);
}

/// The wire bytes of `specs` as `from` sends them, and the messages a receiver must see.
fn encode_specs(
    specs: &[Spec],
    from: Side,
    keys: &mut impl Iterator<Item = [u8; 4]>,
) -> (Vec<u8>, Vec<Incoming>) {
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut key = || (from == Side::Client).then(|| keys.next().unwrap_or([1, 2, 3, 4]));
    for s in specs {
        match s {
            Spec::Binary(frags) => {
                let mut joined = Vec::new();
                for (i, (data, ping)) in frags.iter().enumerate() {
                    let last = i + 1 == frags.len();
                    let op = if i == 0 {
                        Opcode::Binary
                    } else {
                        Opcode::Continuation
                    };
                    frame(&mut wire, last, op, data, key());
                    joined.extend_from_slice(data);
                    if let (false, Some(p)) = (last, ping) {
                        frame(&mut wire, true, Opcode::Ping, p, key());
                        want.push(Incoming::Ping(Bytes::from(p.clone())));
                    }
                }
                want.push(Incoming::Binary(Bytes::from(joined)));
            }
            Spec::Ping(p) => {
                frame(&mut wire, true, Opcode::Ping, p, key());
                want.push(Incoming::Ping(Bytes::from(p.clone())));
            }
            Spec::Pong(p) => {
                frame(&mut wire, true, Opcode::Pong, p, key());
                want.push(Incoming::Pong);
            }
            Spec::Close => {
                frame(&mut wire, true, Opcode::Close, &[0x03, 0xE8], key());
                want.push(Incoming::Close);
            }
        }
    }
    (wire, want)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any cut of a valid frame stream decodes to the messages sent, on both sides.
    #[test]
    fn any_cut_of_a_valid_stream_gives_the_messages_sent(
        specs in proptest::collection::vec(spec(), 0..12),
        keys in proptest::collection::vec(any::<[u8; 4]>(), 64),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        for (from, to) in [(Side::Client, Side::Server), (Side::Server, Side::Client)] {
            let (wire, want) = encode_specs(&specs, from, &mut keys.iter().copied());
            let pieces = cut(&wire, &cuts);
            let got = feed(to, 1 << 20, pieces.iter().map(Vec::as_slice));
            prop_assert_eq!(got, (want, None, vec![]));
        }
    }

    /// Whatever the bytes, the outcome (messages, error, what is left) does not depend on how
    /// they were cut.
    #[test]
    fn the_outcome_of_any_bytes_does_not_depend_on_the_cut(
        wire in proptest::collection::vec(
            prop_oneof![3 => any::<u8>(), 1 => Just(0x82u8), 1 => Just(0x80u8), 1 => Just(0x89u8)],
            0..200,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        max in 0usize..300,
    ) {
        for side in [Side::Client, Side::Server] {
            let once = whole(side, max, &wire);
            let pieces = cut(&wire, &cuts);
            prop_assert_eq!(feed(side, max, pieces.iter().map(Vec::as_slice)), once);
        }
    }
}

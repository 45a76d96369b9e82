//! Property tests of the wire codec: every message we can build survives encode -> decode, and
//! no input makes the decoder panic.

use bytes::{Bytes, BytesMut};
use linksocks_core::ids::{ChannelId, InstanceId};
use linksocks_core::wire::{
    decode, encode, Auth, Compression, Connect, ConnectorOp, Data, DecodeLimits, Message, Protocol,
    UdpTrailer, WireError,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Strategies.

/// Cut to at most 255 bytes at a character boundary.
fn clip(mut s: String) -> String {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// A string that fits a one-byte length: ASCII up to exactly 255 bytes, or any Unicode cut to
/// 255 bytes.
fn short_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:-]{0,255}",
        prop::collection::vec(any::<char>(), 0..=128).prop_map(|cs| clip(cs.into_iter().collect())),
        Just("x".repeat(255)),
    ]
}

/// A non-empty one-byte-length string: an empty text is "no text" on the wire.
fn nonempty_short_string() -> impl Strategy<Value = String> {
    short_string().prop_filter("empty", |s| !s.is_empty())
}

/// An optional text as a decoder gives it back: `None` or a non-empty text.
fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(nonempty_short_string())
}

fn channel() -> impl Strategy<Value = ChannelId> {
    any::<[u8; 16]>().prop_map(ChannelId)
}

/// Payloads up to 64 KiB: arbitrary small ones, pseudo-random (incompressible) large ones,
/// runs of one byte and repetitive text (compressible).
fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Bytes::from),
        1 => (0..=65536usize, any::<u64>(), 0..3u8).prop_map(|(len, seed, kind)| {
            let mut x = seed | 1;
            let mut v = Vec::with_capacity(len);
            match kind {
                0 => {
                    while v.len() < len {
                        // xorshift64
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        v.extend_from_slice(&x.to_le_bytes());
                    }
                    v.truncate(len);
                }
                1 => v.resize(len, seed as u8),
                _ => {
                    let words: [&[u8]; 4] = [b"socks ", b"tunnel ", b"websocket ", b"\r\n"];
                    while v.len() < len {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        v.extend_from_slice(words[(x % 4) as usize]);
                    }
                    v.truncate(len);
                }
            }
            Bytes::from(v)
        }),
    ]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Gzip)]
}

fn udp_trailer() -> impl Strategy<Value = UdpTrailer> {
    (
        short_string(),
        any::<u16>(),
        prop_oneof![
            // The older, short form decodes as an empty target.
            Just((String::new(), 0u16)),
            (short_string(), any::<u16>()),
        ],
    )
        .prop_map(|(addr, port, (target_addr, target_port))| UdpTrailer {
            addr,
            port,
            target_addr,
            target_port,
        })
}

fn data() -> impl Strategy<Value = Message> {
    (
        prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        channel(),
        compression(),
        payload(),
        udp_trailer(),
    )
        .prop_map(|(protocol, channel, compression, payload, trailer)| {
            Message::Data(Data {
                protocol,
                channel,
                compression,
                payload,
                udp: (protocol == Protocol::Udp).then_some(trailer),
            })
        })
}

/// Every kind of message we send, in the canonical form the decoder returns.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        1 => (short_string(), any::<bool>(), any::<[u8; 16]>()).prop_map(|(token, reverse, i)| {
            Message::Auth(Auth {
                token,
                reverse,
                instance: InstanceId(i),
            })
        }),
        1 => Just(Message::AuthResponse {
            success: true,
            error: None
        }),
        1 => opt_text().prop_map(|error| Message::AuthResponse {
            success: false,
            error
        }),
        1 => nonempty_short_string().prop_map(|token| Message::AuthResponseToken { token }),
        1 => (channel(), short_string(), any::<u16>()).prop_map(|(channel, host, port)| {
            Message::Connect(Connect {
                protocol: Protocol::Tcp,
                channel,
                target: Some((host, port)),
            })
        }),
        1 => channel().prop_map(|channel| Message::Connect(Connect {
            protocol: Protocol::Udp,
            channel,
            target: None,
        })),
        1 => (channel(), any::<bool>(), opt_text()).prop_map(|(channel, success, error)| {
            Message::ConnectResponse {
                success,
                channel,
                error: if success { None } else { error },
            }
        }),
        4 => data(),
        1 => (channel(), opt_text()).prop_map(|(channel, error)| Message::Disconnect { channel, error }),
        1 => (
            channel(),
            short_string(),
            prop_oneof![Just(ConnectorOp::Add), Just(ConnectorOp::Remove)]
        )
            .prop_map(|(channel, token, op)| Message::Connector { channel, token, op }),
        1 => (channel(), any::<bool>(), opt_text(), opt_text()).prop_map(
            |(channel, success, error, token)| Message::ConnectorResponse {
                channel,
                success,
                error: if success { None } else { error },
                token: if success { token } else { None },
            }
        ),
        1 => (".{0,16}", ".{0,300}").prop_map(|(level, msg)| Message::Log { level, msg }),
        1 => any::<i64>().prop_map(|count| Message::Partners { count }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(features, window)| Message::Hello { features, window }),
        1 => (channel(), any::<u32>()).prop_map(|(channel, bytes)| Message::ChannelAck { channel, bytes }),
        1 => channel().prop_map(|channel| Message::ChannelNoWindow { channel }),
        1 => (channel(), any::<u64>(), any::<u64>()).prop_map(|(channel, received, written)| {
            Message::ChannelResume { channel, received, written }
        }),
        1 => (channel(), short_string(), any::<u16>(), any::<bool>()).prop_map(
            |(channel, host, port, udp)| {
                Message::ConnectResume(if udp {
                    Connect { protocol: Protocol::Udp, channel, target: None }
                } else {
                    Connect { protocol: Protocol::Tcp, channel, target: Some((host, port)) }
                })
            }
        ),
    ]
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn enc(m: &Message) -> Bytes {
    let mut b = BytesMut::new();
    encode(m, &mut b).unwrap_or_else(|e| panic!("{m:?} does not encode: {e}"));
    b.freeze()
}

/// Decode must not panic; what decodes must survive encode -> decode unchanged.
fn check_decodes_sanely(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = decode(Bytes::copy_from_slice(bytes), &limits()) {
        if !matches!(m, Message::DirectTransport { .. }) {
            let again = enc(&m);
            prop_assert_eq!(decode(again, &limits()), Ok(m));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(m in message()) {
        let frame = enc(&m);
        prop_assert_eq!(decode(frame, &limits()), Ok(m));
    }

    #[test]
    fn any_minor_version_decodes_the_same(m in message(), minor in 0u8..16) {
        let mut frame = BytesMut::from(&enc(&m)[..]);
        frame[0] = minor;
        prop_assert_eq!(decode(frame.freeze(), &limits()), Ok(m));
    }

    #[test]
    fn encoding_appends(m in message(), before in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut dst = BytesMut::from(&before[..]);
        encode(&m, &mut dst).unwrap();
        prop_assert_eq!(&dst[..before.len()], &before[..]);
        prop_assert_eq!(&dst[before.len()..], &enc(&m)[..]);
    }

    #[test]
    fn truncations_never_panic(m in message(), cut in any::<Index>()) {
        let frame = enc(&m);
        let n = cut.index(frame.len());
        check_decodes_sanely(&frame[..n])?;
    }

    #[test]
    fn byte_flips_never_panic(m in message(), at in any::<Index>(), x in 1u8..=255) {
        let mut frame = enc(&m).to_vec();
        let i = at.index(frame.len());
        frame[i] ^= x;
        check_decodes_sanely(&frame)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decodes_sanely(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        version in 0u8..16,
        kind in 0u8..=0x13,
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![version, kind];
        bytes.extend_from_slice(&body);
        check_decodes_sanely(&bytes)?;
    }

    #[test]
    fn long_strings_are_refused(len in 256usize..1024, ch in channel()) {
        let long = "t".repeat(len);
        for m in [
            Message::Auth(Auth { token: long.clone(), reverse: true, instance: InstanceId(ch.0) }),
            Message::Connector { channel: ch, token: long.clone(), op: ConnectorOp::Add },
            Message::Disconnect { channel: ch, error: Some(long.clone()) },
            Message::Connect(Connect {
                protocol: Protocol::Tcp,
                channel: ch,
                target: Some((long.clone(), 1)),
            }),
        ] {
            let mut dst = BytesMut::new();
            let r = encode(&m, &mut dst);
            let refused = matches!(r, Err(WireError::TooLong { len: l, .. }) if l == len);
            prop_assert!(refused, "{:?} gave {:?}", m.name(), r);
            prop_assert!(dst.is_empty());
        }
    }
}

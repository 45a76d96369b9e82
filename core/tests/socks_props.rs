//! Property tests over the SOCKS5 codecs: UDP headers round-trip, arbitrary datagrams never
//! panic the decoder, and the server handshake's outcome does not depend on how a valid
//! conversation is split.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use linksocks_core::addr::TargetAddr;
use linksocks_core::socks::{
    decode_udp_header, encode_udp_header, udp_header_len, Command, Credentials, Request,
    SocksServer,
};
use proptest::prelude::*;

fn target() -> impl Strategy<Value = TargetAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(o, p)| TargetAddr::Ip(SocketAddr::from((Ipv4Addr::from(o), p)))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(o, p)| TargetAddr::Ip(SocketAddr::from((Ipv6Addr::from(o), p)))),
        ("[a-z0-9.-]{1,255}", any::<u16>()).prop_map(|(d, p)| TargetAddr::Domain(d, p)),
        // Any UTF-8 whose encoding fits the length byte.
        (any::<String>(), any::<u16>())
            .prop_filter("1..=255 bytes", |(d, _)| (1..=255).contains(&d.len()))
            .prop_map(|(d, p)| TargetAddr::Domain(d, p)),
    ]
}

/// The request bytes a client sends for `t` (ATYP and all).
fn request_bytes(cmd: u8, t: &TargetAddr) -> Vec<u8> {
    let mut hdr = BytesMut::new();
    encode_udp_header(&mut hdr, t);
    // The UDP header is `00 00 00 ATYP ...`; a request is `05 CMD 00 ATYP ...`.
    let mut v = vec![5, cmd, 0];
    v.extend_from_slice(&hdr[3..]);
    v
}

proptest! {
    #[test]
    fn udp_header_round_trips(t in target(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut b = BytesMut::new();
        encode_udp_header(&mut b, &t);
        prop_assert_eq!(b.len(), udp_header_len(&t));
        b.extend_from_slice(&payload);
        let (got, len) = decode_udp_header(&b).unwrap();
        prop_assert_eq!(got, t);
        prop_assert_eq!(&b[len..], &payload[..]);
    }

    #[test]
    fn udp_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok((addr, len)) = decode_udp_header(&data) {
            prop_assert!(len <= data.len());
            prop_assert_eq!(udp_header_len(&addr), len);
        }
    }

    #[test]
    fn server_outcome_is_split_independent(
        t in target(),
        udp in any::<bool>(),
        auth in any::<bool>(),
        early in proptest::collection::vec(any::<u8>(), 0..16),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let creds = auth.then(|| Arc::new(Credentials::new("user", "pass")));
        let mut bytes = if auth { vec![5, 2, 0, 2, 1, 4] } else { vec![5, 1, 0] };
        if auth {
            bytes.extend_from_slice(b"user\x04pass");
        }
        bytes.extend(request_bytes(if udp { 3 } else { 1 }, &t));
        bytes.extend_from_slice(&early);

        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();

        let mut s = SocksServer::new(creds);
        let mut written = Vec::new();
        let mut rest = Vec::new();
        let mut request = None;
        for w in points.windows(2) {
            let chunk = &bytes[w[0]..w[1]];
            let n = s.feed(chunk).unwrap();
            while let Some(b) = s.poll_transmit() {
                written.extend_from_slice(&b);
            }
            if request.is_none() {
                request = s.take_request();
            }
            if request.is_some() {
                rest.extend_from_slice(&chunk[n..]);
            } else {
                prop_assert_eq!(n, chunk.len());
            }
        }
        let expect_written: &[u8] = if auth { &[5, 2, 1, 0] } else { &[5, 0] };
        prop_assert_eq!(&written[..], expect_written);
        let command = if udp { Command::UdpAssociate } else { Command::Connect };
        prop_assert_eq!(request, Some(Request { command, target: t }));
        prop_assert_eq!(rest, early);
    }
}

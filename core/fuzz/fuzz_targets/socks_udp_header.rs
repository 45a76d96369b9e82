//! Decode arbitrary datagrams as SOCKS5 UDP headers; whatever decodes must re-encode to the
//! same bytes (the two RSV bytes aside, which decoding ignores) and report the same length.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use linksocks_core::socks::{decode_udp_header, encode_udp_header, udp_header_len, UdpHeaderError};

fuzz_target!(|data: &[u8]| {
    match decode_udp_header(data) {
        Ok((addr, len)) => {
            assert!(len <= data.len());
            assert_eq!(udp_header_len(&addr), len);
            let mut out = BytesMut::new();
            encode_udp_header(&mut out, &addr);
            assert_eq!(out.len(), len);
            assert_eq!(&out[..2], &[0, 0]);
            assert_eq!(&out[2..], &data[2..len]);
            let (again, len2) = decode_udp_header(&out).expect("re-encoded header decodes");
            assert_eq!((again, len2), (addr, len));
        }
        Err(UdpHeaderError::Fragmented) => assert_ne!(data[2], 0),
        Err(UdpHeaderError::DomainNotEncodable(_)) => panic!("an encoding-only error"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

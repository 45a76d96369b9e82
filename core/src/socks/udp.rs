//! The SOCKS5 UDP request header (RFC 1928 section 7) on relay datagrams:
//! `RSV(2) FRAG(1) ATYP(1) DST.ADDR DST.PORT DATA`.
//!
//! Applications put it in front of every datagram they send to the relay; we put it (with the
//! source the reply came from) in front of every datagram we return.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::addr::{self, AddrError};
use crate::addr::TargetAddr;

/// The longest header: `RSV RSV FRAG ATYP LEN DOMAIN(255) PORT(2)`.
pub const MAX_UDP_HEADER_LEN: usize = 3 + 2 + 255 + 2;

/// Why a SOCKS5 UDP request header (RFC 1928 section 7) could not be read or written.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum UdpHeaderError {
    /// FRAG != 0. Fragment reassembly is optional in RFC 1928 and neither we nor the reference
    /// do it: the caller drops the datagram and counts it.
    #[error("fragmented SOCKS5 UDP datagram (FRAG != 0)")]
    Fragmented,

    /// The datagram ends inside its header.
    #[error("SOCKS5 UDP datagram shorter than its header")]
    Truncated,

    /// An `ATYP` other than 0x01, 0x03 and 0x04 (carried).
    #[error("SOCKS5 UDP header has unsupported address type {0:#04x}")]
    BadAddressType(u8),

    /// A domain name of length zero.
    #[error("SOCKS5 UDP header has an empty domain name")]
    EmptyDomain,

    /// A domain name that is not UTF-8.
    #[error("SOCKS5 UDP header has a domain name that is not UTF-8")]
    DomainNotUtf8,

    /// Encoding only: a domain that is empty or longer than 255 bytes has no SOCKS5 form.
    #[error("domain name of {0} bytes cannot be written in a SOCKS5 UDP header")]
    DomainNotEncodable(usize),
}

/// Parse the header at the front of `datagram`. Returns the destination (from the application)
/// or source (towards it) address, and the header length: the payload is
/// `datagram[len..]`. The two RSV bytes are not checked (the reference does not either).
///
/// A domain is returned as sent, even when it is an IP literal.
pub fn decode_udp_header(datagram: &[u8]) -> Result<(TargetAddr, usize), UdpHeaderError> {
    let Some(&frag) = datagram.get(2) else {
        return Err(UdpHeaderError::Truncated);
    };
    if frag != 0 {
        return Err(UdpHeaderError::Fragmented);
    }
    let block = &datagram[3..];
    // The block's length is learnt a byte at a time (ATYP, then a domain's length byte).
    let mut len = 0;
    loop {
        let need = addr::wire_len(&block[..len]).map_err(addr_error)?;
        if need == len {
            break;
        }
        if need > block.len() {
            return Err(UdpHeaderError::Truncated);
        }
        len = need;
    }
    let target = addr::parse(&block[..len]).map_err(addr_error)?;
    Ok((target, 3 + len))
}

/// Append the header `RSV RSV FRAG=0 ATYP ADDR PORT` for `addr`.
///
/// An address with no SOCKS5 form (a domain that is empty or over 255 bytes; the wire's
/// one-byte lengths make this unreachable for addresses that came from a peer) is written as
/// `0.0.0.0` with the port, so the datagram stays parseable; [`try_encode_udp_header`]
/// reports it instead.
pub fn encode_udp_header(dst: &mut BytesMut, addr: &TargetAddr) {
    if try_encode_udp_header(dst, addr).is_err() {
        let fallback = TargetAddr::Ip(std::net::SocketAddr::from(([0, 0, 0, 0], addr.port())));
        let _ = try_encode_udp_header(dst, &fallback);
    }
}

/// [`encode_udp_header`] that refuses (writing nothing) an address with no SOCKS5 form.
pub fn try_encode_udp_header(dst: &mut BytesMut, addr: &TargetAddr) -> Result<(), UdpHeaderError> {
    let Some(n) = addr::encoded_len(addr) else {
        let len = match addr {
            TargetAddr::Domain(d, _) => d.len(),
            TargetAddr::Ip(_) => 0,
        };
        return Err(UdpHeaderError::DomainNotEncodable(len));
    };
    dst.reserve(3 + n);
    dst.put_slice(&[0, 0, 0]);
    addr::put(dst, addr);
    Ok(())
}

/// The number of bytes [`encode_udp_header`] writes for `addr`.
pub fn udp_header_len(addr: &TargetAddr) -> usize {
    3 + addr::encoded_len(addr).unwrap_or(1 + 4 + 2)
}

fn addr_error(e: AddrError) -> UdpHeaderError {
    match e {
        AddrError::BadType(t) => UdpHeaderError::BadAddressType(t),
        AddrError::EmptyDomain => UdpHeaderError::EmptyDomain,
        AddrError::NotUtf8 => UdpHeaderError::DomainNotUtf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(addr: TargetAddr, expect_len: usize) {
        let mut b = BytesMut::new();
        encode_udp_header(&mut b, &addr);
        assert_eq!(b.len(), expect_len);
        assert_eq!(udp_header_len(&addr), expect_len);
        b.extend_from_slice(b"payload");
        let (got, len) = decode_udp_header(&b).unwrap();
        assert_eq!(got, addr);
        assert_eq!(&b[len..], b"payload");
        // Every shorter prefix of the header is truncated, never a panic or a wrong parse.
        for cut in 0..expect_len {
            assert_eq!(
                decode_udp_header(&b[..cut]),
                Err(UdpHeaderError::Truncated),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn round_trips_every_address_type() {
        round_trip(TargetAddr::Ip("8.8.8.8:53".parse().unwrap()), 10);
        round_trip(TargetAddr::Ip("[2001:4860::8888]:53".parse().unwrap()), 22);
        round_trip(TargetAddr::Domain("dns.google".into(), 53), 7 + 10);
        round_trip(TargetAddr::Domain("x".repeat(255), 1), MAX_UDP_HEADER_LEN);
    }

    #[test]
    fn exact_bytes() {
        let mut b = BytesMut::new();
        encode_udp_header(&mut b, &TargetAddr::Ip("1.2.3.4:258".parse().unwrap()));
        assert_eq!(&b[..], &[0, 0, 0, 1, 1, 2, 3, 4, 1, 2]);
        let mut b = BytesMut::new();
        encode_udp_header(&mut b, &TargetAddr::Domain("ab".into(), 80));
        assert_eq!(&b[..], &[0, 0, 0, 3, 2, b'a', b'b', 0, 80]);
    }

    #[test]
    fn header_without_payload_is_fine() {
        let (a, len) = decode_udp_header(&[0, 0, 0, 1, 1, 2, 3, 4, 0, 9]).unwrap();
        assert_eq!(a, TargetAddr::Ip("1.2.3.4:9".parse().unwrap()));
        assert_eq!(len, 10);
    }

    #[test]
    fn rsv_is_ignored() {
        let (_, len) = decode_udp_header(&[0xff, 0xee, 0, 1, 1, 2, 3, 4, 0, 9, 42]).unwrap();
        assert_eq!(len, 10);
    }

    #[test]
    fn errors() {
        assert_eq!(decode_udp_header(&[]), Err(UdpHeaderError::Truncated));
        assert_eq!(decode_udp_header(&[0, 0]), Err(UdpHeaderError::Truncated));
        assert_eq!(
            decode_udp_header(&[0, 0, 0]),
            Err(UdpHeaderError::Truncated)
        );
        for frag in [1u8, 0x7f, 0x80, 0xff] {
            assert_eq!(
                decode_udp_header(&[0, 0, frag, 1, 1, 2, 3, 4, 0, 9]),
                Err(UdpHeaderError::Fragmented)
            );
        }
        assert_eq!(
            decode_udp_header(&[0, 0, 1]),
            Err(UdpHeaderError::Fragmented)
        );
        for atyp in [0u8, 2, 5, 0xff] {
            assert_eq!(
                decode_udp_header(&[0, 0, 0, atyp, 1, 2, 3, 4, 0, 9]),
                Err(UdpHeaderError::BadAddressType(atyp))
            );
        }
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 3, 0, 0, 9]),
            Err(UdpHeaderError::EmptyDomain)
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 3, 1, 0xff, 0, 9]),
            Err(UdpHeaderError::DomainNotUtf8)
        );
        assert_eq!(
            decode_udp_header(&[0, 0, 0, 3, 5, b'a', 0, 9]),
            Err(UdpHeaderError::Truncated)
        );
    }

    #[test]
    fn unencodable_domains() {
        for d in [String::new(), "y".repeat(256)] {
            let a = TargetAddr::Domain(d.clone(), 7);
            let mut b = BytesMut::new();
            assert_eq!(
                try_encode_udp_header(&mut b, &a),
                Err(UdpHeaderError::DomainNotEncodable(d.len()))
            );
            assert!(b.is_empty());
            encode_udp_header(&mut b, &a);
            assert_eq!(&b[..], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 7]);
            assert_eq!(udp_header_len(&a), 10);
        }
    }
}

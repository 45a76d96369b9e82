//! `ATYP DST.ADDR DST.PORT`, the address block shared by requests, replies and UDP headers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::BufMut;

use super::{ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6};
use crate::addr::TargetAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrError {
    BadType(u8),
    EmptyDomain,
    NotUtf8,
}

/// The length of the address block starting at `b[0]` (the ATYP byte), as far as the bytes
/// present tell: a lower bound until the domain length byte is in, exact after.
pub(crate) fn wire_len(b: &[u8]) -> Result<usize, AddrError> {
    let Some(&atyp) = b.first() else { return Ok(1) };
    match atyp {
        ATYP_IPV4 => Ok(1 + 4 + 2),
        ATYP_IPV6 => Ok(1 + 16 + 2),
        ATYP_DOMAIN => match b.get(1) {
            None => Ok(2),
            Some(&n) => Ok(2 + n as usize + 2),
        },
        other => Err(AddrError::BadType(other)),
    }
}

/// Parse a complete address block (`b.len() == wire_len(b)`).
///
/// A domain is returned as sent, even when it spells an IP literal: the dialling side
/// resolves names, and keeping the client's form keeps the wire's text identical to it.
pub(crate) fn parse(b: &[u8]) -> Result<TargetAddr, AddrError> {
    let port_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    match b.first().copied() {
        Some(ATYP_IPV4) => {
            let ip = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
            Ok(TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(
                ip,
                port_at(5),
            ))))
        }
        Some(ATYP_IPV6) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[1..17]);
            let sa = SocketAddrV6::new(Ipv6Addr::from(o), port_at(17), 0, 0);
            Ok(TargetAddr::Ip(SocketAddr::V6(sa)))
        }
        Some(ATYP_DOMAIN) => {
            let n = b[1] as usize;
            if n == 0 {
                return Err(AddrError::EmptyDomain);
            }
            let name = std::str::from_utf8(&b[2..2 + n]).map_err(|_| AddrError::NotUtf8)?;
            Ok(TargetAddr::Domain(name.to_owned(), port_at(2 + n)))
        }
        Some(other) => Err(AddrError::BadType(other)),
        None => Err(AddrError::BadType(0)),
    }
}

/// Length of the block `put` writes, `None` when the address cannot be carried (a domain that
/// is empty or longer than the 255 bytes a length byte can say).
pub(crate) fn encoded_len(addr: &TargetAddr) -> Option<usize> {
    match addr {
        TargetAddr::Ip(SocketAddr::V4(_)) => Some(1 + 4 + 2),
        TargetAddr::Ip(SocketAddr::V6(_)) => Some(1 + 16 + 2),
        TargetAddr::Domain(d, _) if (1..=255).contains(&d.len()) => Some(2 + d.len() + 2),
        TargetAddr::Domain(..) => None,
    }
}

/// Write the block; returns `false` (writing nothing) when [`encoded_len`] is `None`.
pub(crate) fn put(dst: &mut impl BufMut, addr: &TargetAddr) -> bool {
    match addr {
        TargetAddr::Ip(SocketAddr::V4(a)) => {
            dst.put_u8(ATYP_IPV4);
            dst.put_slice(&a.ip().octets());
        }
        TargetAddr::Ip(SocketAddr::V6(a)) => {
            dst.put_u8(ATYP_IPV6);
            dst.put_slice(&a.ip().octets());
        }
        TargetAddr::Domain(d, _) => {
            if encoded_len(addr).is_none() {
                return false;
            }
            dst.put_u8(ATYP_DOMAIN);
            dst.put_u8(d.len() as u8);
            dst.put_slice(d.as_bytes());
        }
    }
    dst.put_u16(addr.port());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(wire_len(&[]), Ok(1));
        assert_eq!(wire_len(&[1]), Ok(7));
        assert_eq!(wire_len(&[4]), Ok(19));
        assert_eq!(wire_len(&[3]), Ok(2));
        assert_eq!(wire_len(&[3, 255]), Ok(259));
        assert_eq!(wire_len(&[3, 0]), Ok(4));
        assert_eq!(wire_len(&[2]), Err(AddrError::BadType(2)));
        assert_eq!(wire_len(&[0]), Err(AddrError::BadType(0)));
    }

    #[test]
    fn round_trips() {
        for a in [
            TargetAddr::Ip("1.2.3.4:5".parse().unwrap()),
            TargetAddr::Ip("[::1]:65535".parse().unwrap()),
            TargetAddr::Domain("example.com".into(), 443),
            TargetAddr::Domain("127.0.0.1".into(), 80),
            TargetAddr::Domain("x".repeat(255), 1),
        ] {
            let mut v = Vec::new();
            assert!(put(&mut v, &a));
            assert_eq!(Some(v.len()), encoded_len(&a));
            assert_eq!(wire_len(&v), Ok(v.len()));
            assert_eq!(parse(&v), Ok(a));
        }
    }

    #[test]
    fn refuses_what_cannot_be_carried() {
        for d in [String::new(), "x".repeat(256)] {
            let a = TargetAddr::Domain(d, 1);
            let mut v = Vec::new();
            assert!(!put(&mut v, &a));
            assert!(v.is_empty());
            assert_eq!(encoded_len(&a), None);
        }
        assert_eq!(parse(&[3, 0, 0, 80]), Err(AddrError::EmptyDomain));
        assert_eq!(parse(&[3, 1, 0xff, 0, 80]), Err(AddrError::NotUtf8));
    }
}

//! RFC 1928 replies: `VER REP RSV ATYP BND.ADDR BND.PORT`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bytes::{BufMut, Bytes, BytesMut};

use super::{ATYP_IPV4, ATYP_IPV6, SOCKS5_VERSION};

/// The bound address the reference puts in CONNECT replies and in every failure reply.
pub const UNSPECIFIED_BOUND: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Reply codes of RFC 1928 section 6.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reply {
    /// 0x00: success; the tunnel is open.
    Succeeded = 0,
    /// 0x01: general failure (also our answer to a malformed request or a lost link).
    GeneralFailure = 1,
    /// 0x02: not allowed by the rule set (access rules refused the destination).
    NotAllowed = 2,
    /// 0x03: network unreachable; in reverse mode, no provider is connected (spec §4).
    NetworkUnreachable = 3,
    /// 0x04: host unreachable; what a failed ConnectResponse becomes (spec §4).
    HostUnreachable = 4,
    /// 0x05: connection refused.
    ConnectionRefused = 5,
    /// 0x06: TTL expired.
    TtlExpired = 6,
    /// 0x07: command not supported (neither CONNECT nor UDP ASSOCIATE).
    CommandNotSupported = 7,
    /// 0x08: address type not supported.
    AddressTypeNotSupported = 8,
}

impl Reply {
    /// The code byte of the reply (`REP`).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reply for a code, `None` for the unassigned codes 0x09–0xFF.
    pub fn from_code(code: u8) -> Option<Reply> {
        Some(match code {
            0 => Reply::Succeeded,
            1 => Reply::GeneralFailure,
            2 => Reply::NotAllowed,
            3 => Reply::NetworkUnreachable,
            4 => Reply::HostUnreachable,
            5 => Reply::ConnectionRefused,
            6 => Reply::TtlExpired,
            7 => Reply::CommandNotSupported,
            8 => Reply::AddressTypeNotSupported,
            _ => return None,
        })
    }

    /// The RFC's wording, for log lines and error messages.
    pub fn description(self) -> &'static str {
        match self {
            Reply::Succeeded => "succeeded",
            Reply::GeneralFailure => "general SOCKS server failure",
            Reply::NotAllowed => "connection not allowed by ruleset",
            Reply::NetworkUnreachable => "network unreachable",
            Reply::HostUnreachable => "host unreachable",
            Reply::ConnectionRefused => "connection refused",
            Reply::TtlExpired => "TTL expired",
            Reply::CommandNotSupported => "command not supported",
            Reply::AddressTypeNotSupported => "address type not supported",
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#04x})", self.description(), self.code())
    }
}

/// Encode a reply: `05 REP 00 ATYP ADDR PORT`. 10 bytes for an IPv4 bound address, 22 for IPv6.
pub fn encode_reply(reply: Reply, bound: SocketAddr) -> Bytes {
    let mut out = BytesMut::with_capacity(22);
    encode_reply_to(&mut out, reply, bound);
    out.freeze()
}

/// [`encode_reply`] appending to a buffer the caller already has.
pub fn encode_reply_to(dst: &mut BytesMut, reply: Reply, bound: SocketAddr) {
    dst.reserve(22);
    dst.put_u8(SOCKS5_VERSION);
    dst.put_u8(reply.code());
    dst.put_u8(0);
    match bound {
        SocketAddr::V4(a) => {
            dst.put_u8(ATYP_IPV4);
            dst.put_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            dst.put_u8(ATYP_IPV6);
            dst.put_slice(&a.ip().octets());
        }
    }
    dst.put_u16(bound.port());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_reference_connect_reply() {
        assert_eq!(
            &encode_reply(Reply::Succeeded, UNSPECIFIED_BOUND)[..],
            &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            &encode_reply(Reply::HostUnreachable, UNSPECIFIED_BOUND)[..],
            &[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn encodes_a_relay_address() {
        assert_eq!(
            &encode_reply(Reply::Succeeded, "127.0.0.1:40000".parse().unwrap())[..],
            &[5, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40]
        );
        let v6 = encode_reply(Reply::GeneralFailure, "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(v6.len(), 22);
        assert_eq!(&v6[..4], &[5, 1, 0, 4]);
        assert_eq!(&v6[4..6], &[0x20, 0x01]);
        assert_eq!(&v6[19..], &[1, 0x01, 0xbb]);
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..=255u8 {
            match Reply::from_code(code) {
                Some(r) => assert_eq!(r.code(), code),
                None => assert!(code > 8),
            }
        }
        assert_eq!(Reply::CommandNotSupported as u8, 7);
        assert_eq!(
            Reply::AddressTypeNotSupported.to_string(),
            "address type not supported (0x08)"
        );
    }
}

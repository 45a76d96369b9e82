//! The application side of SOCKS5 (RFC 1928 / RFC 1929) as raw bytes, written independently of
//! the core's server machine so that the simulation checks the real byte layouts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use linksocks_core::addr::TargetAddr;

pub const CMD_CONNECT: u8 = 0x01;
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// `VER NMETHODS METHODS...`
pub fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut v = vec![5, methods.len() as u8];
    v.extend_from_slice(methods);
    v
}

/// RFC 1929 `VER ULEN UNAME PLEN PASSWD`.
pub fn userpass(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut v = vec![1, user.len() as u8];
    v.extend_from_slice(user);
    v.push(pass.len() as u8);
    v.extend_from_slice(pass);
    v
}

/// Append `ATYP ADDR PORT`.
pub fn put_addr(v: &mut Vec<u8>, addr: &TargetAddr) {
    match addr {
        TargetAddr::Ip(SocketAddr::V4(a)) => {
            v.push(1);
            v.extend_from_slice(&a.ip().octets());
        }
        TargetAddr::Ip(SocketAddr::V6(a)) => {
            v.push(4);
            v.extend_from_slice(&a.ip().octets());
        }
        TargetAddr::Domain(d, _) => {
            v.push(3);
            v.push(d.len() as u8);
            v.extend_from_slice(d.as_bytes());
        }
    }
    v.extend_from_slice(&addr.port().to_be_bytes());
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT`
pub fn request(cmd: u8, addr: &TargetAddr) -> Vec<u8> {
    let mut v = vec![5, cmd, 0];
    put_addr(&mut v, addr);
    v
}

/// `RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA`
pub fn udp_datagram(addr: &TargetAddr, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0];
    put_addr(&mut v, addr);
    v.extend_from_slice(data);
    v
}

/// Result of parsing a message at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// More bytes are needed.
    Need,
    /// The message and how many bytes it took.
    Done(T, usize),
    /// Not a valid message.
    Bad(String),
}

/// Parse `ATYP ADDR PORT` at the front of `b`.
pub fn parse_addr(b: &[u8]) -> Parsed<TargetAddr> {
    let Some(&atyp) = b.first() else {
        return Parsed::Need;
    };
    let (len, addr_len) = match atyp {
        1 => (1 + 4 + 2, 4),
        4 => (1 + 16 + 2, 16),
        3 => match b.get(1) {
            None => return Parsed::Need,
            Some(&n) => (2 + n as usize + 2, n as usize),
        },
        other => return Parsed::Bad(format!("address type {other:#04x}")),
    };
    if b.len() < len {
        return Parsed::Need;
    }
    let port = u16::from_be_bytes([b[len - 2], b[len - 1]]);
    let addr = match atyp {
        1 => TargetAddr::Ip(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4])),
            port,
        )),
        4 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[1..17]);
            TargetAddr::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => match std::str::from_utf8(&b[2..2 + addr_len]) {
            Ok(s) => TargetAddr::Domain(s.to_string(), port),
            Err(_) => return Parsed::Bad("domain not UTF-8".into()),
        },
    };
    Parsed::Done(addr, len)
}

/// The method selection answer `05 METHOD`.
pub fn parse_method(b: &[u8]) -> Parsed<u8> {
    if b.len() < 2 {
        return Parsed::Need;
    }
    if b[0] != 5 {
        return Parsed::Bad(format!("method selection version {:#04x}", b[0]));
    }
    Parsed::Done(b[1], 2)
}

/// The RFC 1929 status `01 STATUS`.
pub fn parse_auth_status(b: &[u8]) -> Parsed<u8> {
    if b.len() < 2 {
        return Parsed::Need;
    }
    if b[0] != 1 {
        return Parsed::Bad(format!("auth status version {:#04x}", b[0]));
    }
    Parsed::Done(b[1], 2)
}

/// The request reply `05 REP 00 ATYP BND.ADDR BND.PORT`: the code and the bound address.
pub fn parse_reply(b: &[u8]) -> Parsed<(u8, TargetAddr)> {
    if b.len() < 4 {
        return Parsed::Need;
    }
    if b[0] != 5 {
        return Parsed::Bad(format!("reply version {:#04x}", b[0]));
    }
    if b[2] != 0 {
        return Parsed::Bad(format!("reply RSV {:#04x}", b[2]));
    }
    match parse_addr(&b[3..]) {
        Parsed::Need => Parsed::Need,
        Parsed::Bad(e) => Parsed::Bad(e),
        Parsed::Done(a, n) => Parsed::Done((b[1], a), 3 + n),
    }
}

/// A SOCKS5 UDP datagram from the relay: the source address and the payload offset.
pub fn parse_udp(b: &[u8]) -> Result<(TargetAddr, usize), String> {
    if b.len() < 3 {
        return Err("UDP datagram shorter than its header".into());
    }
    if b[0] != 0 || b[1] != 0 || b[2] != 0 {
        return Err(format!("UDP header RSV/FRAG {:02x?}", &b[..3]));
    }
    match parse_addr(&b[3..]) {
        Parsed::Done(a, n) => Ok((a, 3 + n)),
        Parsed::Need => Err("UDP header truncated".into()),
        Parsed::Bad(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(greeting(&[0, 2]), vec![5, 2, 0, 2]);
        assert_eq!(userpass(b"u", b"pw"), vec![1, 1, b'u', 2, b'p', b'w']);
        let a = TargetAddr::Ip("1.2.3.4:80".parse().unwrap());
        assert_eq!(request(1, &a), vec![5, 1, 0, 1, 1, 2, 3, 4, 0, 80]);
        let d = TargetAddr::Domain("ab".into(), 443);
        assert_eq!(request(1, &d), vec![5, 1, 0, 3, 2, b'a', b'b', 1, 187]);
        let r = [5, 0, 0, 1, 127, 0, 0, 1, 0x14, 0xe9, 9];
        assert_eq!(
            parse_reply(&r),
            Parsed::Done((0, TargetAddr::Ip("127.0.0.1:5353".parse().unwrap())), 10)
        );
        assert_eq!(parse_reply(&r[..9]), Parsed::Need);
        let v6 = TargetAddr::Ip("[fd00::1]:53".parse().unwrap());
        let dg = udp_datagram(&v6, b"xy");
        assert_eq!(parse_udp(&dg), Ok((v6, 22)));
    }
}

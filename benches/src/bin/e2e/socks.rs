//! The SOCKS5 client side of the load generator (RFC 1928, no authentication): CONNECT and
//! UDP ASSOCIATE, IPv4 targets. Also the address codec the relay uses.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

pub const CMD_CONNECT: u8 = 1;
pub const CMD_UDP: u8 = 3;

/// How long any single handshake step may take before the attempt fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// `ATYP ADDR PORT` of a socket address.
pub fn encode_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Reads `ATYP ADDR PORT` from a stream. Domain names are resolved (the relay only).
pub fn read_addr(r: &mut impl Read) -> io::Result<SocketAddr> {
    let mut atyp = [0u8; 1];
    r.read_exact(&mut atyp)?;
    let ip: IpAddr = match atyp[0] {
        1 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            Ipv4Addr::from(b).into()
        }
        4 => {
            let mut b = [0u8; 16];
            r.read_exact(&mut b)?;
            Ipv6Addr::from(b).into()
        }
        3 => {
            let mut n = [0u8; 1];
            r.read_exact(&mut n)?;
            let mut name = vec![0u8; n[0] as usize];
            r.read_exact(&mut name)?;
            let mut p = [0u8; 2];
            r.read_exact(&mut p)?;
            let host = String::from_utf8_lossy(&name).into_owned();
            let port = u16::from_be_bytes(p);
            return std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))?
                .next()
                .ok_or_else(|| io::Error::other("name did not resolve"));
        }
        t => return Err(io::Error::other(format!("bad address type {t}"))),
    };
    let mut p = [0u8; 2];
    r.read_exact(&mut p)?;
    Ok(SocketAddr::new(ip, u16::from_be_bytes(p)))
}

/// Parses `ATYP ADDR PORT` at the start of a datagram: (address, header length).
pub fn parse_addr(b: &[u8]) -> Option<(SocketAddr, usize)> {
    match *b.first()? {
        1 if b.len() >= 7 => {
            let ip = Ipv4Addr::new(b[1], b[2], b[3], b[4]);
            Some((
                SocketAddr::new(ip.into(), u16::from_be_bytes([b[5], b[6]])),
                7,
            ))
        }
        4 if b.len() >= 19 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[1..17]);
            Some((
                SocketAddr::new(Ipv6Addr::from(o).into(), u16::from_be_bytes([b[17], b[18]])),
                19,
            ))
        }
        _ => None,
    }
}

fn handshake(s: &mut TcpStream, cmd: u8, addr: SocketAddr) -> io::Result<SocketAddr> {
    s.write_all(&[5, 1, 0])?;
    let mut m = [0u8; 2];
    s.read_exact(&mut m)?;
    if m != [5, 0] {
        return Err(io::Error::other(format!("method reply {m:?}")));
    }
    let mut req = vec![5, cmd, 0];
    encode_addr(&mut req, addr);
    s.write_all(&req)?;
    let mut h = [0u8; 3];
    s.read_exact(&mut h)?;
    let bound = read_addr(s)?;
    if h[0] != 5 || h[1] != 0 {
        return Err(io::Error::other(format!("SOCKS5 reply code {}", h[1])));
    }
    Ok(bound)
}

/// A TCP stream to `target`, through the SOCKS5 proxy if there is one.
pub fn connect(proxy: Option<SocketAddr>, target: SocketAddr) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&proxy.unwrap_or(target), STEP_TIMEOUT)?;
    s.set_nodelay(true)?;
    if let Some(_p) = proxy {
        s.set_read_timeout(Some(STEP_TIMEOUT))?;
        handshake(&mut s, CMD_CONNECT, target)?;
        s.set_read_timeout(None)?;
    }
    Ok(s)
}

/// A UDP association: the control connection (keep it open), the relay address, and a bound
/// local socket.
pub struct UdpAssoc {
    pub _control: Option<TcpStream>,
    pub relay: Option<SocketAddr>,
    pub sock: UdpSocket,
}

impl UdpAssoc {
    pub fn open(proxy: Option<SocketAddr>) -> io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let Some(p) = proxy else {
            return Ok(UdpAssoc {
                _control: None,
                relay: None,
                sock,
            });
        };
        let mut c = TcpStream::connect_timeout(&p, STEP_TIMEOUT)?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(STEP_TIMEOUT))?;
        let mut bound = handshake(&mut c, CMD_UDP, "0.0.0.0:0".parse().unwrap())?;
        if bound.ip().is_unspecified() {
            bound.set_ip(p.ip());
        }
        Ok(UdpAssoc {
            _control: Some(c),
            relay: Some(bound),
            sock,
        })
    }

    /// Sends one datagram to `target` (with the SOCKS5 UDP header when proxied).
    pub fn send(&self, target: SocketAddr, payload: &[u8], buf: &mut Vec<u8>) -> io::Result<()> {
        match self.relay {
            None => self.sock.send_to(payload, target).map(drop),
            Some(r) => {
                buf.clear();
                buf.extend_from_slice(&[0, 0, 0]);
                encode_addr(buf, target);
                buf.extend_from_slice(payload);
                self.sock.send_to(buf, r).map(drop)
            }
        }
    }

    /// Receives one datagram; returns the payload range in `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<std::ops::Range<usize>> {
        let (n, _) = self.sock.recv_from(buf)?;
        if self.relay.is_none() {
            return Ok(0..n);
        }
        if n < 3 {
            return Err(io::Error::other("short SOCKS5 UDP datagram"));
        }
        let (_, hl) = parse_addr(&buf[3..n]).ok_or_else(|| io::Error::other("bad UDP header"))?;
        Ok(3 + hl..n)
    }
}

//! A blocking SOCKS5 client for tests, written from RFC 1928 and RFC 1929 and deliberately
//! independent of `linksocks-core`: a shared misreading of the RFC would cancel out otherwise.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// How long one handshake step or one test read may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// What an application asks the proxy to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    Ip(SocketAddr),
    Domain(String, u16),
}

impl From<SocketAddr> for Dest {
    fn from(a: SocketAddr) -> Self {
        Dest::Ip(a)
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Ip(a) => write!(f, "{a}"),
            Dest::Domain(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

impl Dest {
    pub fn domain(host: &str, port: u16) -> Dest {
        Dest::Domain(host.into(), port)
    }

    /// `ATYP ADDR PORT`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Dest::Ip(a) => {
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
            Dest::Domain(h, p) => {
                out.push(3);
                out.push(u8::try_from(h.len()).expect("domain over 255 bytes"));
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
    }

    /// Parses `ATYP ADDR PORT` at the start of `b`; the address and its length.
    pub fn decode(b: &[u8]) -> io::Result<(Dest, usize)> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad SOCKS5 address");
        let port_at = |i: usize| -> io::Result<u16> {
            Ok(u16::from_be_bytes([
                *b.get(i).ok_or_else(bad)?,
                *b.get(i + 1).ok_or_else(bad)?,
            ]))
        };
        match b.first() {
            Some(1) => {
                let ip: [u8; 4] = b.get(1..5).ok_or_else(bad)?.try_into().unwrap();
                Ok((
                    Dest::Ip(SocketAddr::new(Ipv4Addr::from(ip).into(), port_at(5)?)),
                    7,
                ))
            }
            Some(4) => {
                let ip: [u8; 16] = b.get(1..17).ok_or_else(bad)?.try_into().unwrap();
                Ok((
                    Dest::Ip(SocketAddr::new(Ipv6Addr::from(ip).into(), port_at(17)?)),
                    19,
                ))
            }
            Some(3) => {
                let n = *b.get(1).ok_or_else(bad)? as usize;
                let name = b.get(2..2 + n).ok_or_else(bad)?;
                let host = String::from_utf8(name.to_vec()).map_err(|_| bad())?;
                Ok((Dest::Domain(host, port_at(2 + n)?), 4 + n))
            }
            _ => Err(bad()),
        }
    }
}

/// Why a SOCKS5 request did not give a tunnel.
#[derive(Debug)]
pub enum SocksError {
    /// The proxy accepted none of the offered methods (`05 FF`).
    NoMethod,
    /// The proxy refused the username/password (RFC 1929 status).
    AuthRefused(u8),
    /// The proxy answered the request with this reply code.
    Reply(u8),
    Io(io::Error),
}

impl From<io::Error> for SocksError {
    fn from(e: io::Error) -> Self {
        SocksError::Io(e)
    }
}

impl fmt::Display for SocksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocksError::NoMethod => write!(f, "no acceptable method"),
            SocksError::AuthRefused(s) => write!(f, "authentication refused (status {s})"),
            SocksError::Reply(r) => write!(f, "reply code {r:#04x}"),
            SocksError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A SOCKS5 proxy as an application sees it.
#[derive(Clone, Debug)]
pub struct Socks5 {
    pub proxy: SocketAddr,
    pub auth: Option<(String, String)>,
}

impl Socks5 {
    pub fn new(proxy: SocketAddr) -> Socks5 {
        Socks5 { proxy, auth: None }
    }

    pub fn with_auth(proxy: SocketAddr, user: &str, pass: &str) -> Socks5 {
        Socks5 {
            proxy,
            auth: Some((user.into(), pass.into())),
        }
    }

    /// Greeting and (when configured) username/password, on a fresh connection.
    fn handshake(&self) -> Result<TcpStream, SocksError> {
        let mut s = TcpStream::connect_timeout(&self.proxy, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        let greeting: &[u8] = if self.auth.is_some() {
            &[5, 1, 2]
        } else {
            &[5, 1, 0]
        };
        s.write_all(greeting)?;
        let mut m = [0u8; 2];
        s.read_exact(&mut m)?;
        if m[0] != 5 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not SOCKS5").into());
        }
        match (m[1], &self.auth) {
            (0, None) => {}
            (2, Some((u, p))) => {
                let mut a = vec![1, u.len() as u8];
                a.extend_from_slice(u.as_bytes());
                a.push(p.len() as u8);
                a.extend_from_slice(p.as_bytes());
                s.write_all(&a)?;
                let mut st = [0u8; 2];
                s.read_exact(&mut st)?;
                if st[1] != 0 {
                    return Err(SocksError::AuthRefused(st[1]));
                }
            }
            (0xff, _) => return Err(SocksError::NoMethod),
            (other, _) => {
                let e = format!("proxy chose method {other:#04x}, not offered");
                return Err(io::Error::new(io::ErrorKind::InvalidData, e).into());
            }
        }
        Ok(s)
    }

    /// Sends a request and reads the reply; the bound address.
    fn request(s: &mut TcpStream, cmd: u8, dest: &Dest) -> Result<Dest, SocksError> {
        let mut req = vec![5, cmd, 0];
        dest.encode(&mut req);
        s.write_all(&req)?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head)?;
        if head[1] != 0 {
            return Err(SocksError::Reply(head[1]));
        }
        let rest = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut n = [0u8; 1];
                s.read_exact(&mut n)?;
                let mut name = vec![0u8; n[0] as usize + 2];
                s.read_exact(&mut name)?;
                let mut b = vec![3, n[0]];
                b.extend_from_slice(&name);
                return Ok(Dest::decode(&b)?.0);
            }
            t => {
                let e = format!("reply with address type {t}");
                return Err(io::Error::new(io::ErrorKind::InvalidData, e).into());
            }
        };
        let mut b = vec![0u8; rest + 1];
        b[0] = head[3];
        s.read_exact(&mut b[1..])?;
        Ok(Dest::decode(&b)?.0)
    }

    /// CONNECT: a stream to `dest` through the proxy (read/write timeouts set).
    pub fn connect(&self, dest: impl Into<Dest>) -> Result<TcpStream, SocksError> {
        let mut s = self.handshake()?;
        Self::request(&mut s, 1, &dest.into())?;
        Ok(s)
    }

    /// UDP ASSOCIATE from a socket bound on `local` (e.g. `127.0.0.1:0` or `[::1]:0`).
    pub fn udp_associate(&self, local: SocketAddr) -> Result<UdpAssociation, SocksError> {
        self.udp_associate_announcing(local, None)
    }

    /// UDP ASSOCIATE from a socket bound on `local`, naming `announce` in the request as the
    /// address the application will send from (`None`: the socket's own address, as RFC 1928
    /// asks; `0.0.0.0:0` is what an application that does not know it yet sends).
    pub fn udp_associate_announcing(
        &self,
        local: SocketAddr,
        announce: Option<SocketAddr>,
    ) -> Result<UdpAssociation, SocksError> {
        let sock = UdpSocket::bind(local)?;
        sock.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut ctrl = self.handshake()?;
        let me = announce.unwrap_or(sock.local_addr()?);
        let bound = Self::request(&mut ctrl, 3, &Dest::Ip(me))?;
        let mut relay = match bound {
            Dest::Ip(a) => a,
            Dest::Domain(..) => {
                let e = "relay named by a domain";
                return Err(io::Error::new(io::ErrorKind::InvalidData, e).into());
            }
        };
        if relay.ip().is_unspecified() {
            relay.set_ip(self.proxy.ip());
        }
        Ok(UdpAssociation { ctrl, sock, relay })
    }
}

/// An open UDP association: datagrams go through `relay` while `ctrl` stays open.
pub struct UdpAssociation {
    pub ctrl: TcpStream,
    pub sock: UdpSocket,
    pub relay: SocketAddr,
}

impl UdpAssociation {
    /// Sends `data` to `dest` through the relay.
    pub fn send_to(&self, dest: &Dest, data: &[u8]) -> io::Result<()> {
        let mut d = vec![0, 0, 0];
        dest.encode(&mut d);
        d.extend_from_slice(data);
        self.sock.send_to(&d, self.relay)?;
        Ok(())
    }

    /// The next datagram from the relay: its source and payload (timeout: `IO_TIMEOUT`, or
    /// what was set on `sock`).
    pub fn recv(&self) -> io::Result<(Dest, Vec<u8>)> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = self.sock.recv_from(&mut buf)?;
            if from != self.relay {
                continue;
            }
            let b = &buf[..n];
            if b.len() < 4 || b[2] != 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad UDP header"));
            }
            let (src, len) = Dest::decode(&b[3..])?;
            return Ok((src, b[3 + len..].to_vec()));
        }
    }
}

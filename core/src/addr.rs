//! Target addresses as SOCKS5 and the LinkSocks wire carry them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Where a channel should go: an IP socket address or a host name still to be resolved
/// (resolution happens on the dialling side, as the spec requires).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum TargetAddr {
    /// An IP address and port (SOCKS5 ATYP 0x01 or 0x04, or an IP literal on the wire).
    Ip(SocketAddr),
    /// A host name and port (SOCKS5 ATYP 0x03); resolved by the dialling side.
    Domain(String, u16),
}

impl TargetAddr {
    /// The port, whichever the form.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(a) => a.port(),
            TargetAddr::Domain(_, p) => *p,
        }
    }

    /// The host part as the wire writes it: a dotted quad, an IPv6 literal without brackets,
    /// or the domain name.
    pub fn host_string(&self) -> String {
        match self {
            TargetAddr::Ip(a) => a.ip().to_string(),
            TargetAddr::Domain(d, _) => d.clone(),
        }
    }

    /// Parse a wire host (text) and port. IP literals become [`TargetAddr::Ip`]; IPv6 may come
    /// with or without brackets.
    pub fn from_host_port(host: &str, port: u16) -> TargetAddr {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
            Err(_) => TargetAddr::Domain(host.to_string(), port),
        }
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(a) => write!(f, "{a}"),
            TargetAddr::Domain(d, p) => write!(f, "{d}:{p}"),
        }
    }
}

impl From<SocketAddr> for TargetAddr {
    fn from(a: SocketAddr) -> Self {
        TargetAddr::Ip(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts() {
        assert_eq!(
            TargetAddr::from_host_port("::1", 80),
            TargetAddr::Ip("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            TargetAddr::from_host_port("[::1]", 80),
            TargetAddr::Ip("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            TargetAddr::from_host_port("localhost", 8),
            TargetAddr::Domain("localhost".into(), 8)
        );
        assert_eq!(TargetAddr::from_host_port("::1", 80).host_string(), "::1");
    }
}

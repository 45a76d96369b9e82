//! Which protocol an application speaks on a local proxy port, told from its first byte.
//!
//! Every local SOCKS port also serves HTTP proxy clients, as the reference does: its listener
//! peeks at exactly one byte and dispatches on it (`local_proxy.go`, `detectLocalProxyProtocol`).
//! Both protocols have the client speak first, so one byte is always enough and nothing has to
//! be written before the choice is made:
//! - a SOCKS5 greeting starts with its version byte, `0x05`;
//! - an HTTP request starts with its method, and every registered method is an uppercase ASCII
//!   token, so the reference takes any of `A`..=`Z` as HTTP.
//!
//! Anything else is closed without a reply, as the reference does. That includes SOCKS4
//! (`0x04`), which neither side supports: answering it in its own format would only suggest it
//! might work, and a SOCKS5 or HTTP answer would be gibberish to it.

/// The protocol a connection to a local proxy port speaks.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum LocalProtocol {
    /// Hand the connection to [`super::SocksServer`].
    Socks5,
    /// Hand the connection to [`super::HttpProxyServer`].
    Http,
    /// Close the connection without writing anything.
    Unknown,
}

/// Tell the protocol from the first byte the application sent (see the
/// [module documentation](self) for why one byte, and why these ranges).
pub fn detect(first_byte: u8) -> LocalProtocol {
    match first_byte {
        super::SOCKS5_VERSION => LocalProtocol::Socks5,
        b'A'..=b'Z' => LocalProtocol::Http,
        _ => LocalProtocol::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        assert_eq!(detect(0x05), LocalProtocol::Socks5);
        assert_eq!(detect(b'A'), LocalProtocol::Http);
        assert_eq!(detect(b'C'), LocalProtocol::Http);
        assert_eq!(detect(b'G'), LocalProtocol::Http);
        assert_eq!(detect(b'Z'), LocalProtocol::Http);
        assert_eq!(
            detect(b'a'),
            LocalProtocol::Unknown,
            "methods are case-sensitive"
        );
        assert_eq!(detect(0x04), LocalProtocol::Unknown, "SOCKS4");
        assert_eq!(detect(0x00), LocalProtocol::Unknown);
        assert_eq!(detect(b'@'), LocalProtocol::Unknown);
        assert_eq!(detect(b'['), LocalProtocol::Unknown);
        assert_eq!(detect(0x16), LocalProtocol::Unknown, "a TLS ClientHello");
        assert_eq!(detect(0xff), LocalProtocol::Unknown);
    }

    #[test]
    fn every_byte_has_one_answer() {
        let http = (0..=255u8)
            .filter(|&b| detect(b) == LocalProtocol::Http)
            .count();
        let socks = (0..=255u8)
            .filter(|&b| detect(b) == LocalProtocol::Socks5)
            .count();
        assert_eq!((http, socks), (26, 1));
    }
}

//! Errors of the SOCKS5 machines.
//!
//! A server-side error carries what the application should be told before the connection is
//! closed, because the right answer depends on how far the handshake got (`05 FF` during
//! method selection, `01 01` during authentication, a reply with a code after the request).

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::reply::{encode_reply_to, Reply, UNSPECIFIED_BOUND};
use super::{AUTH_VERSION, METHOD_NONE_ACCEPTABLE, SOCKS5_VERSION};

/// What went wrong in the server-side handshake.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SocksErrorKind {
    /// First byte of the greeting is not 5. Closed without a reply, as the reference does (its
    /// listener sniffs the first byte and drops anything that is neither SOCKS5 nor HTTP).
    #[error("not a SOCKS5 client: greeting version byte {0:#04x}")]
    BadVersion(u8),

    /// The client offered no method we accept (`05 FF` is sent): with credentials configured, 0x02
    /// was not offered.
    #[error("the client offers no acceptable authentication method")]
    NoAcceptableMethod,

    /// The RFC 1929 sub-negotiation did not start with 0x01 (`01 01` is sent).
    #[error("username/password sub-negotiation version {0:#04x}, expected 0x01")]
    BadAuthVersion(u8),

    /// Wrong username or password (`01 01` is sent).
    #[error("wrong SOCKS5 username or password")]
    AuthFailed,

    /// The request's version byte is not 5 (reply 0x01).
    #[error("request version byte {0:#04x}, expected 0x05")]
    BadRequestVersion(u8),

    /// A command other than CONNECT and UDP ASSOCIATE (reply 0x07).
    #[error("unsupported SOCKS5 command {0:#04x}")]
    CommandNotSupported(u8),

    /// An address type other than 0x01, 0x03 and 0x04 (reply 0x08).
    #[error("unsupported SOCKS5 address type {0:#04x}")]
    AddressTypeNotSupported(u8),

    /// A domain name of length zero (reply 0x04, as the reference ends up answering).
    #[error("empty domain name in the SOCKS5 request")]
    EmptyDomain,

    /// A domain name that is not UTF-8 (reply 0x04).
    #[error("domain name in the SOCKS5 request is not UTF-8")]
    DomainNotUtf8,

    /// Input fed after an earlier error; the connection should already be closing.
    #[error("the SOCKS5 handshake already failed")]
    AlreadyFailed,
}

impl SocksErrorKind {
    /// The reply code sent for errors in the request phase.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            SocksErrorKind::BadRequestVersion(_) => Some(Reply::GeneralFailure),
            SocksErrorKind::CommandNotSupported(_) => Some(Reply::CommandNotSupported),
            SocksErrorKind::AddressTypeNotSupported(_) => Some(Reply::AddressTypeNotSupported),
            // The reference passes an empty name on and fails to dial it, answering 0x04; a
            // name we cannot even represent gets the same answer.
            SocksErrorKind::EmptyDomain | SocksErrorKind::DomainNotUtf8 => {
                Some(Reply::HostUnreachable)
            }
            _ => None,
        }
    }

    fn wire_response(&self, dst: &mut BytesMut) {
        match self {
            SocksErrorKind::BadVersion(_) | SocksErrorKind::AlreadyFailed => {}
            SocksErrorKind::NoAcceptableMethod => {
                dst.extend_from_slice(&[SOCKS5_VERSION, METHOD_NONE_ACCEPTABLE])
            }
            // RFC 1929: any non-zero status is a failure; 01 is what the reference sends.
            SocksErrorKind::BadAuthVersion(_) | SocksErrorKind::AuthFailed => {
                dst.extend_from_slice(&[AUTH_VERSION, 0x01])
            }
            other => {
                if let Some(reply) = other.reply() {
                    encode_reply_to(dst, reply, UNSPECIFIED_BOUND);
                }
            }
        }
    }
}

/// A failed server-side handshake: the reason, and the bytes to write before closing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{kind}")]
pub struct SocksError {
    kind: SocksErrorKind,
    response: Option<Bytes>,
}

impl SocksError {
    /// Build the error, putting `pending` (handshake answers queued but not yet handed out by
    /// `poll_transmit`) in front of the error's own bytes, so that a caller who writes only
    /// `response()` still keeps the conversation in order.
    pub(crate) fn new(kind: SocksErrorKind, pending: &[Bytes]) -> Self {
        let mut out = BytesMut::new();
        for p in pending {
            out.extend_from_slice(p);
        }
        kind.wire_response(&mut out);
        let response = (!out.is_empty()).then(|| out.freeze());
        SocksError { kind, response }
    }

    /// What went wrong.
    pub fn kind(&self) -> &SocksErrorKind {
        &self.kind
    }

    /// Bytes to send to the application before closing (e.g. `05 FF`, `01 01`, a reply with
    /// code 07/08/01), if any. Includes any handshake bytes `poll_transmit` had not handed out
    /// yet, in order; `poll_transmit` returns nothing more after an error.
    pub fn response(&self) -> Option<Bytes> {
        self.response.clone()
    }

    /// The reply code the response carries, when the error happened in the request phase.
    pub fn reply(&self) -> Option<Reply> {
        self.kind.reply()
    }
}

impl From<SocksError> for SocksErrorKind {
    fn from(e: SocksError) -> Self {
        e.kind
    }
}

/// What can go wrong while reaching a host through an upstream SOCKS5 or HTTP CONNECT proxy.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProxyClientError {
    /// The proxy's greeting answer or reply does not start with 5.
    #[error("SOCKS5 proxy answered with version byte {0:#04x}, expected 0x05")]
    BadVersion(u8),

    /// The proxy answered `05 FF`.
    #[error("SOCKS5 proxy accepts none of the offered authentication methods")]
    NoAcceptableMethod,

    /// The proxy chose a method we did not offer.
    #[error("SOCKS5 proxy chose authentication method {0:#04x}, which we did not offer")]
    UnexpectedMethod(u8),

    /// The proxy refused the credentials; carries its RFC 1929 status byte.
    #[error("SOCKS5 proxy refused the username/password (status {0:#04x})")]
    AuthRejected(u8),

    /// The proxy answered the CONNECT with a non-zero reply code (carried).
    #[error("SOCKS5 proxy refused the request: {}", describe_reply(*.0))]
    Refused(u8),

    /// The proxy's reply carries an address type other than 0x01, 0x03 and 0x04.
    #[error("SOCKS5 proxy reply has unsupported address type {0:#04x}")]
    BadAddressType(u8),

    /// A username, password or host name too long for its one-byte length.
    #[error("{field} is {len} bytes; SOCKS5 carries at most 255")]
    TooLong {
        /// Which field (`target host name`, `proxy username`, `proxy password`).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },

    /// The target host name is empty.
    #[error("empty target host name")]
    EmptyDomain,

    /// The target host name has a byte that is not printable ASCII (CR, LF, space, ...), which
    /// would break the CONNECT request line; carries the name, cut short.
    #[error("target host name {0:?} cannot be written into an HTTP CONNECT request")]
    InvalidHost(String),

    /// The HTTP proxy answered CONNECT with a status other than 2xx.
    #[error("HTTP proxy answered CONNECT with {code} {reason}")]
    HttpStatus {
        /// The HTTP status code (anything but 2xx).
        code: u16,
        /// The reason phrase of the status line.
        reason: String,
    },

    /// The HTTP proxy's response head could not be parsed; carries what was wrong.
    #[error("malformed HTTP proxy response: {0}")]
    HttpMalformed(String),

    /// The HTTP proxy's response head did not end within the limit.
    #[error("HTTP proxy response head exceeds {limit} bytes")]
    HttpHeadTooLarge {
        /// The most bytes a response head may have.
        limit: usize,
    },
}

fn describe_reply(code: u8) -> String {
    match Reply::from_code(code) {
        Some(r) => r.to_string(),
        None => format!("unassigned reply code {code:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_per_phase() {
        let r = |k: SocksErrorKind| SocksError::new(k, &[]).response().map(|b| b.to_vec());
        assert_eq!(r(SocksErrorKind::BadVersion(4)), None);
        assert_eq!(r(SocksErrorKind::AlreadyFailed), None);
        assert_eq!(r(SocksErrorKind::NoAcceptableMethod), Some(vec![5, 0xFF]));
        assert_eq!(r(SocksErrorKind::AuthFailed), Some(vec![1, 1]));
        assert_eq!(r(SocksErrorKind::BadAuthVersion(5)), Some(vec![1, 1]));
        assert_eq!(
            r(SocksErrorKind::CommandNotSupported(2)),
            Some(vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            r(SocksErrorKind::AddressTypeNotSupported(9)),
            Some(vec![5, 8, 0, 1, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            r(SocksErrorKind::BadRequestVersion(4)),
            Some(vec![5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            r(SocksErrorKind::EmptyDomain),
            Some(vec![5, 4, 0, 1, 0, 0, 0, 0, 0, 0])
        );
    }

    #[test]
    fn pending_bytes_go_first() {
        let e = SocksError::new(SocksErrorKind::AuthFailed, &[Bytes::from_static(&[5, 2])]);
        assert_eq!(e.response().unwrap().to_vec(), vec![5, 2, 1, 1]);
        assert_eq!(e.to_string(), "wrong SOCKS5 username or password");
    }

    #[test]
    fn refused_names_the_code() {
        assert_eq!(
            ProxyClientError::Refused(5).to_string(),
            "SOCKS5 proxy refused the request: connection refused (0x05)"
        );
        assert!(ProxyClientError::Refused(0x42).to_string().contains("0x42"));
    }
}

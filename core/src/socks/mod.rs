//! SOCKS5, and the HTTP proxy served on the same local ports, as sans-IO state machines: no
//! sockets, no async, no clock.
//!
//! - [`server`]: the handshake applications run against our SOCKS5 listener (RFC 1928 method
//!   selection, RFC 1929 username/password, the request), fed bytes in any split.
//! - [`detect`](mod@detect): which of SOCKS5 and HTTP a local proxy port is spoken to in, from
//!   the first byte.
//! - [`http_proxy`]: the HTTP proxy (CONNECT and absolute-form `http://`) that every local SOCKS
//!   port also serves, fed bytes in any split.
//! - [`reply`]: reply codes and the reply encoder the session layer answers requests with.
//! - [`udp`]: the SOCKS5 UDP request header carried on relay datagrams.
//! - [`client`] and [`http_connect`]: the handshakes for reaching a host through an upstream
//!   SOCKS5 or HTTP CONNECT proxy.
//! - [`credentials`]: a username/password pair compared in constant time.
//! - [`error`]: what can go wrong, and what (if anything) to tell the peer before closing.
//!
//! Every parser here treats its input as hostile: nothing panics, and nothing allocates in
//! proportion to a length field before the bytes it announces have arrived.

mod addr;
mod buf;
pub mod client;
pub mod credentials;
pub mod detect;
pub mod error;
pub mod http_connect;
pub mod http_proxy;
pub mod reply;
pub mod server;
pub mod udp;

pub use client::{ClientProgress, Socks5Client};
pub use credentials::Credentials;
pub use detect::{detect, LocalProtocol};
pub use error::{ProxyClientError, SocksError, SocksErrorKind};
pub use http_connect::HttpConnectClient;
pub use http_proxy::{
    connect_established, error_response, HttpFailure, HttpProxyError, HttpProxyErrorKind,
    HttpProxyServer, HttpRequest, HttpRequestKind,
};
pub use reply::{encode_reply, encode_reply_to, Reply, UNSPECIFIED_BOUND};
pub use server::{Command, Request, SocksServer};
pub use udp::{
    decode_udp_header, encode_udp_header, try_encode_udp_header, udp_header_len, UdpHeaderError,
};

/// The version byte of every SOCKS5 message except the RFC 1929 sub-negotiation.
pub const SOCKS5_VERSION: u8 = 0x05;
/// RFC 1928 method: no authentication required.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// RFC 1928 method: username/password (RFC 1929).
pub const METHOD_USERNAME_PASSWORD: u8 = 0x02;
/// RFC 1928 method-selection answer: none of the offered methods is acceptable.
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// Version byte of the RFC 1929 username/password sub-negotiation.
pub const AUTH_VERSION: u8 = 0x01;

/// Address types of RFC 1928 section 5. `ATYP` 0x01: 4 bytes of IPv4 address.
pub const ATYP_IPV4: u8 = 0x01;
/// `ATYP` 0x03: a length byte and a domain name.
pub const ATYP_DOMAIN: u8 = 0x03;
/// `ATYP` 0x04: 16 bytes of IPv6 address.
pub const ATYP_IPV6: u8 = 0x04;

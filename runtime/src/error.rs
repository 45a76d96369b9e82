//! What can go wrong, as one enum a program can match on: [`Error`].

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use linksocks_core::session::client::{ConnectorError, UrlError};
use linksocks_core::session::TokenError;

/// Why a server or client could not start, stopped, or refused a call.
///
/// Each case's text is one line a user can act on; the underlying error, when there is one,
/// is its [`source`](std::error::Error::source). Cloneable, so every caller waiting on the same
/// server or client gets the same answer.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused our token (and [`retry_auth`](crate::ClientBuilder::retry_auth) is
    /// off).
    #[error("authentication failed: {reason}")]
    AuthRefused {
        /// The server's words.
        reason: String,
    },
    /// A listening socket could not be opened: the WebSocket port, a SOCKS5 port.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for, `host:port`.
        addr: String,
        /// What the system said.
        #[source]
        source: Arc<io::Error>,
    },
    /// The TLS setup (certificate, key or CA file) or a TLS handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The upstream proxy could not be reached or refused the tunnel to the server.
    #[error("{reason}")]
    UpstreamProxy {
        /// What happened, naming the proxy.
        reason: String,
    },
    /// The client gave up: the server could not be reached, or its link was lost, with
    /// reconnection off.
    #[error("{reason}")]
    Disconnected {
        /// Whether the client had been connected before (else it never got through).
        was_connected: bool,
        /// What happened, in full.
        reason: String,
        /// Why the last attempt to reach the server failed, when one did: [`Error::Tls`],
        /// [`Error::UpstreamProxy`], [`Error::Protocol`] or [`Error::Unreachable`]. Not a
        /// `source()`: `reason` already says it, and an error chain would print it twice.
        cause: Option<Box<Error>>,
    },
    /// The server's address could not be resolved or connected to.
    #[error("{reason}")]
    Unreachable {
        /// What the system said, naming the address.
        reason: String,
    },
    /// The server did not speak the protocol: the WebSocket handshake failed, too many
    /// redirects.
    #[error("{reason}")]
    Protocol {
        /// What the server did.
        reason: String,
    },
    /// A setting cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A token operation was refused (it exists, is unknown, ...).
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The server refused a connector request of this provider.
    #[error("the server refused the connector request: {reason}")]
    ConnectorRefused {
        /// The server's words.
        reason: String,
    },
    /// A connector request could not be made (not a provider, too many awaiting an answer).
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The call needs an authenticated link and there is none right now.
    #[error("not connected to the server")]
    NotConnected,
    /// No answer within the time allowed.
    #[error("{what} did not complete within {secs} s")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long, in seconds.
        secs: u64,
    },
    /// The server or client has stopped.
    #[error("stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn bind(addr: impl Into<String>, source: io::Error) -> Self {
        Error::Bind {
            addr: addr.into(),
            source: Arc::new(source),
        }
    }
}

/// A setting that cannot be used (found before anything starts).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The server URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A token the server was to start with.
    #[error("cannot add token: {0}")]
    Token(TokenError),
    /// An option out of its range or in conflict with another.
    #[error("{option}: {reason}")]
    Invalid {
        /// The option, as the builder method names it.
        option: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// An upstream proxy URL that cannot be used
/// ([`parse_proxy_url`](crate::proxy_url::parse_proxy_url)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyUrlError {
    /// A scheme other than socks5, socks5h, http and https.
    #[error("unsupported upstream proxy scheme {scheme:?} (supported: socks5, http, https)")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// The URL is malformed.
    #[error("invalid upstream proxy URL {url:?}: {reason}")]
    Invalid {
        /// The URL, its password replaced by `***`.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// TLS setup or handshake failures.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} {}: {reason}", path.display())]
    File {
        /// `certificate`, `private key` or `CA file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the configuration (a key that does not fit the certificate, ...).
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// rustls's reason.
        #[source]
        source: Arc<futures_rustls::rustls::Error>,
    },
    /// A host name that cannot be a TLS server name.
    #[error("invalid TLS server name {host:?}")]
    ServerName {
        /// The host.
        host: String,
    },
    /// The handshake with the server failed (certificate not trusted, ...).
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// `host:port`.
        peer: String,
        /// Why.
        reason: String,
    },
}

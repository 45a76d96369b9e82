//! What the CLI (or an embedding program) hands the runtime: the machine configuration plus
//! the settings that belong to sockets rather than to the protocol.

use linksocks_core::access::AccessRules;
use linksocks_core::session::{ClientConfig, DataConfig, ReverseTokenSpec, ServerConfig};
use linksocks_core::wire::DATA_HEADER_LEN;

use crate::ConfigError;

/// An upstream proxy (`--upstream-proxy`): `socks5://[user[:pass]@]host[:port]` or
/// `http://[user[:pass]@]host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Which protocol the proxy speaks.
    pub kind: ProxyKind,
    /// Its host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The user name to present, if any.
    pub username: Option<String>,
    /// The password to present, if any.
    pub password: Option<String>,
}

/// The protocol of an upstream proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 (RFC 1928), names resolved by the proxy.
    Socks5,
    /// HTTP CONNECT.
    Http,
}

/// Tokens a server starts with.
#[derive(Clone, Debug)]
pub enum TokenSpec {
    /// A forward token (`None`: generated).
    Forward(Option<String>),
    /// A reverse token.
    Reverse(ReverseTokenSpec),
    /// A connector token for the reverse token named second.
    Connector(Option<String>, String),
    /// One of the others with its own access rules (`server -r --access-rule` gives the
    /// reverse token's): see `ServerMachine::add_forward_token_with_rules` and its siblings
    /// for what they mean for each kind of token.
    WithRules(Box<TokenSpec>, AccessRules),
}

/// Everything `linksocks-cli server` needs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Where the HTTP/WebSocket port listens (default 0.0.0.0:8765) ...
    pub ws_host: String,
    /// ... and its port (0: the system picks one).
    pub ws_port: u16,
    /// The protocol machine's settings.
    pub machine: ServerConfig,
    /// Tokens the server starts with.
    pub tokens: Vec<TokenSpec>,
    /// Enables the HTTP API with this key ...
    pub api_key: Option<String>,
    /// ... and these (`-k` repeated, a comma-separated `LINKSOCKS_API_KEY`): every key opens
    /// the API with the same rights, and any one of them enables it. Empty keys are ignored.
    pub api_keys: Vec<String>,
    /// Host the SOCKS5 listeners of reverse tokens added through the API bind.
    pub socks_host: String,
    /// Reach targets through this proxy.
    pub upstream_proxy: Option<ProxyUrl>,
    /// Largest WebSocket message accepted.
    pub max_message_size: usize,
    /// Serve TLS (https/wss) with this certificate chain and key (PEM files).
    pub tls: Option<ServerTls>,
}

impl ServerOptions {
    /// Every API key configured (`api_key` first), empty ones left out; the API is served
    /// when there is at least one.
    pub fn all_api_keys(&self) -> Vec<String> {
        self.api_key
            .iter()
            .chain(&self.api_keys)
            .filter(|k| !k.is_empty())
            .cloned()
            .collect()
    }
}

/// PEM files of the server's certificate chain and private key.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key of the leaf certificate.
    pub key: std::path::PathBuf,
}

/// How the client checks a wss:// server.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// Trust this CA (PEM) in addition to the built-in roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any certificate. For testing only: it defeats TLS's protection.
    pub insecure: bool,
}

/// Everything `linksocks-cli client|provider|connector` needs.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The protocol machine's settings (server URL, token, role, SOCKS5 port, timers).
    pub machine: ClientConfig,
    /// Reach the WebSocket server through this proxy.
    pub upstream_proxy: Option<ProxyUrl>,
    /// Without `upstream_proxy`, the proxy these environment values name (`HTTPS_PROXY` for
    /// wss, `HTTP_PROXY` for ws, `ALL_PROXY`, `NO_PROXY`), as the reference does. `None`:
    /// connect directly.
    pub env_proxy: Option<crate::ProxyEnv>,
    /// Largest WebSocket message accepted.
    pub max_message_size: usize,
    /// How wss:// servers are checked.
    pub tls: ClientTls,
}

/// A batch of one channel's data and its header must fit in one WebSocket message: a batch
/// size the user chose (`explicit`, `--buffer-size`) that does not is refused; the default
/// shrinks to fit a small `max_message_size`, as the CLI's does.
pub(crate) fn fit_batch(
    data: &mut DataConfig,
    max_message_size: usize,
    explicit: bool,
) -> Result<(), ConfigError> {
    let room = max_message_size.saturating_sub(DATA_HEADER_LEN);
    if room == 0 {
        return Err(ConfigError::Invalid {
            option: "max_message_size",
            reason: "too small to carry any data",
        });
    }
    if data.max_batch > room {
        if explicit {
            return Err(ConfigError::Invalid {
                option: "buffer_size",
                reason: "a batch and its header must fit in one message of max_message_size",
            });
        }
        data.max_batch = room;
    }
    if data.max_batch == 0 {
        return Err(ConfigError::Invalid {
            option: "buffer_size",
            reason: "must be at least 1 byte",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_in_a_message() {
        let mut d = DataConfig::default();
        // The default shrinks to fit a small message ...
        fit_batch(&mut d, 16 << 10, false).unwrap();
        assert_eq!(d.max_batch, (16 << 10) - DATA_HEADER_LEN);
        // ... a size the user chose does not: it is refused.
        let mut d = DataConfig {
            max_batch: 64 << 10,
            ..DataConfig::default()
        };
        assert!(matches!(
            fit_batch(&mut d, 16 << 10, true),
            Err(ConfigError::Invalid {
                option: "buffer_size",
                ..
            })
        ));
        // A batch that fits is kept; a message too small for any data is refused.
        fit_batch(&mut d, 32 << 20, true).unwrap();
        assert_eq!(d.max_batch, 64 << 10);
        assert!(fit_batch(&mut d, DATA_HEADER_LEN, false).is_err());
        d.max_batch = 0;
        assert!(fit_batch(&mut d, 32 << 20, true).is_err());
    }
}

//! Command-line flags. Names, short letters and defaults follow the reference CLI (spec
//! section 9, reference notes section 17) so existing scripts keep working.
//!
//! Flags that have a `LINKSOCKS_*` fallback are `Option`s without a clap default: the
//! fallback applies only when the flag was not given, which a filled-in default would hide.
//! Their defaults are applied in `config.rs` and shown in the help text by hand. clap's own
//! `env` support is not used because the reference trims values, ignores blank ones and
//! parses booleans leniently, and none of that can be expressed there.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use linksocks_core::session::BatchPolicy;

use crate::parse::{parse_duration, parse_size};

#[derive(Parser, Debug)]
#[command(
    name = "linksocks-cli",
    about = "SOCKS5 over WebSocket: forward, reverse (provider) and agent (connector) proxies",
    long_about = "SOCKS5 over WebSocket, wire-compatible with LinkSocks.\n\n\
        Forward:  linksocks-cli server -t TOKEN      +  linksocks-cli client -t TOKEN -u ws://HOST:8765\n\
        Reverse:  linksocks-cli server -t TOKEN -r   +  linksocks-cli provider -t TOKEN -u ws://HOST:8765\n\
        Agent:    linksocks-cli server -t TOKEN -r -c CTOKEN  +  provider -t TOKEN  +  connector -t CTOKEN\n\n\
        Without a subcommand, LINKSOCKS_MODE (server|client|provider|connector, or forward|reverse) picks one.\n\
        LINKSOCKS_THREADS=N runs the proxy on N threads (smol build; default 1, enough for a client).",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the WebSocket server (forward; with -r reverse/agent; with -r -a autonomy)
    Server(ServerArgs),
    /// Run a client: a local SOCKS5 port tunnelled to the server (with -r: a provider)
    Client(ClientArgs),
    /// Run a reverse provider (same as `client -r`): the server's SOCKS5 users exit here
    Provider(ClientArgs),
    /// Run a connector: a client with a connector token, reaching the network of a provider
    Connector(ClientArgs),
    /// Print the version, protocol and runtime
    Version,
}

/// `--batch`: how Data messages are cut from what local sockets deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Batch {
    /// Send at once while the link keeps up; coalesce small reads only while frames queue
    LinkPaced,
    /// The reference's rate-driven delay of 0 or 20..500 ms
    Adaptive,
    /// Every read becomes a message at once
    Immediate,
}

impl From<Batch> for BatchPolicy {
    fn from(b: Batch) -> Self {
        match b {
            Batch::LinkPaced => BatchPolicy::LinkPaced,
            Batch::Adaptive => BatchPolicy::Adaptive,
            Batch::Immediate => BatchPolicy::Immediate,
        }
    }
}

/// Flags every running subcommand has.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Show debug logs (-dd for trace logs); RUST_LOG overrides
    #[arg(short = 'd', long = "debug", action = ArgAction::Count)]
    pub debug: u8,

    /// How Data messages are cut from socket reads
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = Batch::LinkPaced)]
    pub batch: Batch,

    /// Largest WebSocket message accepted (bytes, or e.g. 32MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "32MiB")]
    pub max_message_size: usize,

    /// How long open connections survive a lost WebSocket, suspended, waiting for the link to
    /// come back (0: they end with the link). Between two linksocks-rs peers nothing is lost
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub transport_grace: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Auth token (forward, or reverse with -r); generated if absent [env: LINKSOCKS_TOKEN]
    #[arg(short = 't', long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// WebSocket listen address [default: 0.0.0.0] [env: LINKSOCKS_WEBSOCKET_HOST]
    #[arg(short = 'H', long, value_name = "HOST")]
    pub ws_host: Option<String>,

    /// WebSocket listen port [default: 8765] [env: LINKSOCKS_WEBSOCKET_PORT]
    #[arg(short = 'P', long, value_name = "PORT")]
    pub ws_port: Option<u16>,

    /// Reverse mode: the SOCKS5 port is on the server, providers reach the network
    #[arg(short = 'r', long)]
    pub reverse: bool,

    /// SOCKS5 listen address for reverse mode [default: 127.0.0.1] [env: LINKSOCKS_SOCKS_HOST]
    #[arg(short = 's', long, value_name = "HOST")]
    pub socks_host: Option<String>,

    /// SOCKS5 listen port for reverse mode; it serves HTTP proxy requests too (CONNECT and
    /// plain http://) [default: 9870] [env: LINKSOCKS_SOCKS_PORT]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub socks_port: Option<u16>,

    /// Connector token for reverse mode; generated if absent [env: LINKSOCKS_CONNECTOR_TOKEN]
    #[arg(short = 'c', long, value_name = "TOKEN")]
    pub connector_token: Option<String>,

    /// Let providers manage their own connector tokens (no server SOCKS5 port)
    /// [env: LINKSOCKS_CONNECTOR_AUTONOMY]
    #[arg(short = 'a', long)]
    pub connector_autonomy: bool,

    /// Username required on the reverse SOCKS5 port (HTTP proxy: Basic Proxy-Authorization,
    /// with -w) [env: LINKSOCKS_SOCKS_USERNAME]
    #[arg(short = 'n', long, value_name = "USER")]
    pub socks_username: Option<String>,

    /// SOCKS5 password required on the reverse SOCKS5 port [env: LINKSOCKS_SOCKS_PASSWORD]
    #[arg(short = 'w', long, value_name = "PASS")]
    pub socks_password: Option<String>,

    /// Open the reverse SOCKS5 port at once instead of at the first provider
    #[arg(short = 'i', long, visible_alias = "socks-no-wait")]
    pub socks_nowait: bool,

    /// Enable the HTTP API with this key; repeat it for several keys, all with the same rights
    /// [env: LINKSOCKS_API_KEY, comma-separated]
    #[arg(short = 'k', long, value_name = "KEY")]
    pub api_key: Vec<String>,

    /// Largest Data message cut from socket reads (bytes or e.g. 64KiB) [default: 64KiB]
    #[arg(short = 'b', long, value_name = "SIZE", value_parser = parse_size)]
    pub buffer_size: Option<usize>,

    /// Reach targets through this proxy: socks5://[user[:pass]@]host[:port] or
    /// http://[user[:pass]@]host[:port] [env: LINKSOCKS_UPSTREAM_PROXY]
    #[arg(short = 'x', long, value_name = "URL")]
    pub upstream_proxy: Option<String>,

    /// Report SOCKS5 success before the target is reached, so data flows at once
    /// [env: LINKSOCKS_FASTOPEN]
    #[arg(short = 'f', long)]
    pub fast_open: bool,

    /// How long a connector's request waits for a provider (seconds, or e.g. 500ms, 5s, 2m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub connector_wait_provider: Duration,

    /// Allow only this destination, ADDR:PORT (e.g. 10.0.0.0/8:22, ::1:443,
    /// 192.168.1.1-255:8000-9000); repeatable, any rule may match. Without -r: checked before
    /// the server dials for forward clients; with -r: at the reverse SOCKS5 port. Not allowed
    /// with --api-key (use PUT /api/config/access and token rules instead)
    #[arg(long, value_name = "ADDR:PORT")]
    pub access_rule: Vec<String>,

    /// Serve https/wss with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<String>,

    /// Private key (PEM) for --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<String>,

    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub p2p: ServerP2pArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Auth token (forward, reverse or connector token) [env: LINKSOCKS_TOKEN]
    #[arg(short = 't', long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// WebSocket server URL (ws://, wss://, http://, https://) [default: ws://localhost:8765]
    /// [env: LINKSOCKS_URL]
    #[arg(short = 'u', long, value_name = "URL")]
    pub url: Option<String>,

    /// Reverse mode: act as a provider (implied by `provider`)
    #[arg(short = 'r', long)]
    pub reverse: bool,

    /// Provider: connector token to register with the server (autonomy mode); connector:
    /// the token, when -t is absent [env: LINKSOCKS_CONNECTOR_TOKEN]
    #[arg(short = 'c', long, value_name = "TOKEN")]
    pub connector_token: Option<String>,

    /// Local SOCKS5 listen address [default: 127.0.0.1] [env: LINKSOCKS_SOCKS_HOST]
    #[arg(short = 's', long, value_name = "HOST")]
    pub socks_host: Option<String>,

    /// Local SOCKS5 listen port; it serves HTTP proxy requests too (CONNECT and plain
    /// http://, e.g. curl -x http://127.0.0.1:9870) [default: 9870] [env: LINKSOCKS_SOCKS_PORT]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub socks_port: Option<u16>,

    /// Username required on the local port (HTTP proxy: Basic Proxy-Authorization, with -w)
    /// [env: LINKSOCKS_SOCKS_USERNAME]
    #[arg(short = 'n', long, value_name = "USER")]
    pub socks_username: Option<String>,

    /// SOCKS5 password required on the local port [env: LINKSOCKS_SOCKS_PASSWORD]
    #[arg(short = 'w', long, value_name = "PASS")]
    pub socks_password: Option<String>,

    /// Open the local SOCKS5 port at once instead of after the first link is up
    #[arg(short = 'i', long, visible_alias = "socks-nowait")]
    pub socks_no_wait: bool,

    /// Exit when the link drops instead of reconnecting
    #[arg(short = 'R', long)]
    pub no_reconnect: bool,

    /// Keep retrying after the server refused the token (default: give up)
    #[arg(long)]
    pub retry_auth: bool,

    /// WebSocket links to open (values <= 0 mean 1; at most 100)
    #[arg(
        short = 'T',
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub threads: i64,

    /// Reach the WebSocket server through this proxy: socks5://[user[:pass]@]host[:port] or
    /// http://[user[:pass]@]host[:port] [env: LINKSOCKS_UPSTREAM_PROXY]
    #[arg(short = 'x', long, value_name = "URL")]
    pub upstream_proxy: Option<String>,

    /// Ignore HTTP_PROXY / HTTPS_PROXY / ALL_PROXY when connecting to the server
    #[arg(short = 'E', long)]
    pub no_env_proxy: bool,

    /// Report SOCKS5 success before the target is reached, so data flows at once
    /// [env: LINKSOCKS_FASTOPEN]
    #[arg(short = 'f', long)]
    pub fast_open: bool,

    /// Allow only this destination, ADDR:PORT (e.g. 10.0.0.0/8:22, ::1:443,
    /// 192.168.1.1-255:8000-9000); repeatable, any rule may match. Client and connector:
    /// checked at the local SOCKS5/HTTP port (SOCKS5 reply 0x02, HTTP 403); provider (-r):
    /// checked before dialling (the far side's SOCKS5 reply 0x04)
    #[arg(long, value_name = "ADDR:PORT")]
    pub access_rule: Vec<String>,

    /// wss://: also trust this CA certificate (PEM)
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<String>,

    /// wss://: accept any server certificate (testing only: defeats TLS)
    #[arg(long)]
    pub tls_insecure: bool,

    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub p2p: ClientP2pArgs,
}

/// The reference server's peer-to-peer ("direct transport") flags: accepted so scripts written
/// for it still start, but hidden and only warned about, since we relay everything.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerP2pArgs {
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub direct_enable: Option<String>,
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub direct_rendezvous_udp: Option<String>,
    #[arg(long, hide = true)]
    pub direct_rendezvous_host: Option<String>,
    #[arg(long, hide = true)]
    pub direct_rendezvous_port: Option<String>,
}

/// The reference client's peer-to-peer flags (Go and Python CLIs); see [`ServerP2pArgs`].
#[derive(Args, Debug, Clone, Default)]
pub struct ClientP2pArgs {
    #[arg(long, hide = true)]
    pub direct_mode: Option<String>,
    #[arg(long, hide = true)]
    pub direct_discovery: Option<String>,
    #[arg(long, hide = true)]
    pub direct_host_candidates: Option<String>,
    #[arg(long, hide = true)]
    pub stun_server: Vec<String>,
    #[arg(long, hide = true)]
    pub direct_only_action: Option<String>,
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub direct_upnp: Option<String>,
    #[arg(long, hide = true)]
    pub direct_upnp_lease: Option<String>,
    #[arg(long, hide = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub direct_upnp_keep: Option<String>,
    #[arg(long, hide = true)]
    pub direct_upnp_external_port: Option<String>,
}

/// Flags to warn about: a flag turning off a peer-to-peer feature asks for what we do anyway
/// and is not worth a warning.
fn off(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| crate::env::parse_bool(v) == Some(false))
}

impl ServerP2pArgs {
    pub fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.direct_enable.is_some() && !off(&self.direct_enable) {
            v.push("--direct-enable");
        }
        if self.direct_rendezvous_udp.is_some() && !off(&self.direct_rendezvous_udp) {
            v.push("--direct-rendezvous-udp");
        }
        if self.direct_rendezvous_host.is_some() {
            v.push("--direct-rendezvous-host");
        }
        if self.direct_rendezvous_port.is_some() {
            v.push("--direct-rendezvous-port");
        }
        v
    }
}

impl ClientP2pArgs {
    pub fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let relay_only = self
            .direct_mode
            .as_deref()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("relay-only"));
        if self.direct_mode.is_some() && !relay_only {
            v.push("--direct-mode");
        }
        for (set, name) in [
            (self.direct_discovery.is_some(), "--direct-discovery"),
            (
                self.direct_host_candidates.is_some(),
                "--direct-host-candidates",
            ),
            (!self.stun_server.is_empty(), "--stun-server"),
            (self.direct_only_action.is_some(), "--direct-only-action"),
            (
                self.direct_upnp.is_some() && !off(&self.direct_upnp),
                "--direct-upnp",
            ),
            (self.direct_upnp_lease.is_some(), "--direct-upnp-lease"),
            (
                self.direct_upnp_keep.is_some() && !off(&self.direct_upnp_keep),
                "--direct-upnp-keep",
            ),
            (
                self.direct_upnp_external_port.is_some(),
                "--direct-upnp-external-port",
            ),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(a: &[&str]) -> Cli {
        Cli::try_parse_from(a).unwrap_or_else(|e| panic!("{a:?}: {e}"))
    }

    #[test]
    fn server_short_flags_and_defaults() {
        let Command::Server(s) = parse(&[
            "x",
            "server",
            "-t",
            "tok",
            "-H",
            "::",
            "-P",
            "1",
            "-r",
            "-s",
            "0.0.0.0",
            "-p",
            "2",
            "-c",
            "ct",
            "-a",
            "-n",
            "u",
            "-w",
            "pw",
            "-i",
            "-k",
            "key",
            "-b",
            "4096",
            "-x",
            "socks5://h",
            "-f",
            "-dd",
        ])
        .command
        else {
            panic!("not server")
        };
        assert_eq!(s.token.as_deref(), Some("tok"));
        assert_eq!(s.ws_host.as_deref(), Some("::"));
        assert_eq!((s.ws_port, s.socks_port), (Some(1), Some(2)));
        assert!(s.reverse && s.connector_autonomy && s.socks_nowait && s.fast_open);
        assert_eq!(s.buffer_size, Some(4096));
        assert_eq!(s.api_key, ["key"]);
        assert_eq!(s.common.debug, 2);
        assert_eq!(s.connector_wait_provider, Duration::from_secs(5));
        assert_eq!(s.common.batch, Batch::LinkPaced);
        assert_eq!(s.common.max_message_size, 32 << 20);
    }

    #[test]
    fn client_short_flags_and_defaults() {
        let Command::Client(c) = parse(&[
            "x",
            "client",
            "-t",
            "tok",
            "-u",
            "ws://h:1",
            "-r",
            "-c",
            "ct",
            "-s",
            "::1",
            "-p",
            "3",
            "-n",
            "u",
            "-w",
            "p",
            "-i",
            "-R",
            "--retry-auth",
            "-T",
            "-4",
            "-x",
            "http://p",
            "-E",
            "-f",
            "-d",
            "--batch",
            "adaptive",
        ])
        .command
        else {
            panic!("not client")
        };
        assert_eq!(c.url.as_deref(), Some("ws://h:1"));
        assert!(
            c.reverse
                && c.socks_no_wait
                && c.no_reconnect
                && c.retry_auth
                && c.no_env_proxy
                && c.fast_open
        );
        assert_eq!(c.threads, -4);
        assert_eq!(c.common.batch, Batch::Adaptive);
        let Command::Provider(c) = parse(&["x", "provider"]).command else {
            panic!()
        };
        assert_eq!(c.threads, 1);
        assert!(c.token.is_none() && c.url.is_none());
    }

    #[test]
    fn long_aliases_and_hidden_p2p_flags() {
        let Command::Server(s) = parse(&[
            "x",
            "server",
            "--socks-no-wait",
            "--direct-enable",
            "--connector-wait-provider",
            "250ms",
        ])
        .command
        else {
            panic!()
        };
        assert!(s.socks_nowait);
        assert_eq!(s.p2p.given(), vec!["--direct-enable"]);
        assert_eq!(s.connector_wait_provider, Duration::from_millis(250));
        let Command::Connector(c) = parse(&[
            "x",
            "connector",
            "--socks-nowait",
            "--direct-mode",
            "relay-only",
            "--stun-server",
            "a:1",
            "--stun-server",
            "b:2",
            "--direct-upnp",
            "--access-rule",
            "10.0.0.0/8:22",
            "--access-rule",
            "::1:443",
        ])
        .command
        else {
            panic!()
        };
        assert!(c.socks_no_wait);
        assert_eq!(c.p2p.given(), vec!["--stun-server", "--direct-upnp"]);
        assert_eq!(c.access_rule, ["10.0.0.0/8:22", "::1:443"]);
        let Command::Client(c) = parse(&[
            "x",
            "client",
            "--direct-mode",
            "auto",
            "--direct-upnp=false",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(c.p2p.given(), vec!["--direct-mode"]);
    }

    #[test]
    fn out_of_range_values_are_usage_errors() {
        for a in [
            &["x", "server", "-P", "70000"][..],
            &["x", "server", "-p", "-1"],
            &["x", "client", "-p", "65536"],
            &["x", "server", "--connector-wait-provider", "soon"],
            &["x", "server", "-b", "0"],
            &["x", "client", "--batch", "sometimes"],
            &["x", "client", "--max-message-size", "lots"],
        ] {
            assert!(Cli::try_parse_from(a).is_err(), "{a:?} accepted");
        }
    }
}

//! A LinkSocks server embedded in a program: [`ServerBuilder`] and the [`Server`] handle.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use linksocks_core::access::{AccessConfig, AccessRules};
use linksocks_core::session::{
    BatchPolicy, ListenerState, Machine, ReverseTokenSpec, ServerConfig, ServerMachine, Snapshot,
    SocksListen, TokenError, TokenStatus,
};
use linksocks_core::socks::Credentials;

use super::events::Events;
use super::task::Outcome;
use crate::driver::Driver;
use crate::server::{pick_port, settle_listener, start_server, ServerRole};
use crate::stop::{stop_pair, StopHandle};
use crate::{Error, ProxyUrl, Rt, Runtime, ServerOptions, ServerTls, TokenSpec};

/// Where the HTTP/WebSocket port listens unless told otherwise (all IPv4 interfaces).
pub const DEFAULT_WS_HOST: &str = "0.0.0.0";
/// The HTTP/WebSocket port unless told otherwise.
pub const DEFAULT_WS_PORT: u16 = 8765;
/// Where SOCKS5 ports listen unless told otherwise (this host only).
pub const DEFAULT_SOCKS_HOST: &str = "127.0.0.1";

/// Settings of a [`Server`], with the CLI's defaults: `0.0.0.0:8765`, no tokens, no API, no
/// TLS.
///
/// ```no_run
/// use linksocks_runtime::{Runtime, Server};
///
/// async fn serve(rt: impl Runtime) -> Result<(), linksocks_runtime::Error> {
///     let server = Server::builder()
///         .ws_addr("127.0.0.1", 0)
///         .forward_token("my-token")
///         .start(rt)
///         .await?;
///     println!("clients connect to ws://{}", server.ws_addr());
///     server.wait().await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    opts: ServerOptions,
    /// Reverse tokens to start with, made into token specs at start (with the final
    /// SOCKS5 host, whatever the order of the builder calls).
    reverse: Vec<ReverseToken>,
    /// `buffer_size` was set (a size that does not fit is then an error, not shrunk).
    explicit_batch: bool,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            opts: ServerOptions {
                ws_host: DEFAULT_WS_HOST.into(),
                ws_port: DEFAULT_WS_PORT,
                machine: ServerConfig::default(),
                tokens: Vec::new(),
                api_key: None,
                api_keys: Vec::new(),
                socks_host: DEFAULT_SOCKS_HOST.into(),
                upstream_proxy: None,
                max_message_size: linksocks_core::wire::MAX_MESSAGE_SIZE,
                tls: None,
            },
            reverse: Vec::new(),
            explicit_batch: false,
        }
    }
}

impl From<ServerOptions> for ServerBuilder {
    fn from(opts: ServerOptions) -> Self {
        ServerBuilder {
            opts,
            reverse: Vec::new(),
            explicit_batch: false,
        }
    }
}

impl ServerBuilder {
    /// Listen for HTTP/WebSocket on `host:port` (`--ws-host`, `--ws-port`; port 0: the system
    /// picks one, [`Server::ws_addr`] tells which).
    pub fn ws_addr(mut self, host: impl Into<String>, port: u16) -> Self {
        self.opts.ws_host = host.into();
        self.opts.ws_port = port;
        self
    }

    /// Start with a forward token (`-t`).
    pub fn forward_token(mut self, token: impl Into<String>) -> Self {
        self.opts
            .tokens
            .push(TokenSpec::Forward(Some(token.into())));
        self
    }

    /// Start with a forward token whose clients may reach only what `rules` allow.
    pub fn forward_token_with_rules(
        mut self,
        token: impl Into<String>,
        rules: AccessRules,
    ) -> Self {
        let spec = TokenSpec::Forward(Some(token.into()));
        self.opts
            .tokens
            .push(TokenSpec::WithRules(Box::new(spec), rules));
        self
    }

    /// Start with a reverse token (`-r`), named (a token of `None` is generated; see
    /// [`Server::tokens`]). Its SOCKS5 port opens at the first provider unless
    /// [`ServerBuilder::socks_nowait`].
    pub fn reverse_token(mut self, token: ReverseToken) -> Self {
        self.reverse.push(token);
        self
    }

    /// Start with a connector token for the reverse token `reverse` (`-c`).
    pub fn connector_token(mut self, token: impl Into<String>, reverse: impl Into<String>) -> Self {
        self.opts
            .tokens
            .push(TokenSpec::Connector(Some(token.into()), reverse.into()));
        self
    }

    /// Serve the HTTP API (`/api/*`, `/metrics`) to requests carrying this key (`-k`; may be
    /// given several times).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.opts.api_keys.push(key.into());
        self
    }

    /// Where SOCKS5 ports of reverse tokens listen (`--socks-host`, default `127.0.0.1`).
    pub fn socks_host(mut self, host: impl Into<String>) -> Self {
        self.opts.socks_host = host.into();
        self
    }

    /// Reach targets through this proxy (`--upstream-proxy`; see
    /// [`parse_proxy_url`](crate::proxy_url::parse_proxy_url)).
    pub fn upstream_proxy(mut self, proxy: ProxyUrl) -> Self {
        self.opts.upstream_proxy = Some(proxy);
        self
    }

    /// Largest WebSocket message accepted (`--max-message-size`, default 32 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.opts.max_message_size = bytes;
        self
    }

    /// Serve https/wss with this certificate chain and private key, PEM files (`--tls-cert`,
    /// `--tls-key`).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.opts.tls = Some(ServerTls {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Let providers add their own connector tokens (`-a`, default off).
    pub fn connector_autonomy(mut self, on: bool) -> Self {
        self.opts.machine.connector_autonomy = on;
        self
    }

    /// Open reverse tokens' SOCKS5 ports at once, not at their first provider (`-i`).
    pub fn socks_nowait(mut self, on: bool) -> Self {
        self.opts.machine.socks_nowait = on;
        self
    }

    /// Reply success to a SOCKS CONNECT on a reverse port before the provider has dialled
    /// (`-f`, FastOpen).
    pub fn fast_open(mut self, on: bool) -> Self {
        self.opts.machine.fast_open = on;
        self
    }

    /// How long channels outlive a lost link, waiting for the peer to come back
    /// (`--transport-grace`, default 30 s; zero: they end with the link).
    pub fn transport_grace(mut self, grace: Duration) -> Self {
        self.opts.machine.timings.transport_grace = grace;
        self
    }

    /// How long a connector's request waits for a provider (`--connector-wait-provider`,
    /// default 5 s).
    pub fn connector_wait_provider(mut self, wait: Duration) -> Self {
        self.opts.machine.timings.connector_wait_provider = wait;
        self
    }

    /// How reads are cut into messages (`--batch`, default link-paced).
    pub fn batch(mut self, policy: BatchPolicy) -> Self {
        self.opts.machine.data.batch = policy;
        self
    }

    /// Largest batch of one channel's data in a message (`--buffer-size`).
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.opts.machine.data.max_batch = bytes;
        self.explicit_batch = true;
        self
    }

    /// The server-wide access rules (`--access-rule`: `dial` in forward mode; both can be
    /// changed at run time with [`Server::set_access`]).
    pub fn access(mut self, access: AccessConfig) -> Self {
        self.opts.machine.access = access;
        self
    }

    /// Every machine setting at once (timers, data path, access), replacing those set so far.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.opts.machine = config;
        self
    }

    /// The settings so far (reverse tokens of [`ServerBuilder::reverse_token`] join
    /// `tokens` at start).
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// A port of the pool (1024-10240) free on the SOCKS5 host right now: what
    /// [`Server::add_reverse_token`] takes for a token that names no port.
    pub fn pick_socks_port(&self) -> Option<u16> {
        pick_port(&self.opts.socks_host)
    }

    /// Bind the HTTP/WebSocket port and start serving on `rt`. Returns once the port
    /// listens; the server runs on `rt`'s tasks until [`Server::stop`] (or until the handle is
    /// dropped).
    pub async fn start(mut self, rt: impl Runtime) -> Result<Server, Error> {
        let max = self.opts.max_message_size;
        crate::options::fit_batch(&mut self.opts.machine.data, max, self.explicit_batch)?;
        let host = self.opts.socks_host.clone();
        let reverse = self.reverse.drain(..).map(|r| r.into_spec(&host));
        self.opts.tokens.extend(reverse);
        let (stop, stopper) = stop_pair();
        let (tx, events) = Events::new();
        let outcome = Arc::new(Outcome::default());
        let started =
            start_server(Rt::new(rt), self.opts.clone(), tx, stopper, outcome.clone()).await?;
        Ok(Server {
            driver: started.driver,
            ws_addr: started.ws_addr,
            socks_host: self.opts.socks_host,
            events,
            stop,
            outcome,
        })
    }
}

/// A reverse token to add ([`ServerBuilder::reverse_token`], [`Server::add_reverse_token`]).
#[derive(Clone, Debug, Default)]
pub struct ReverseToken {
    token: Option<String>,
    port: Option<u16>,
    no_socks: bool,
    credentials: Option<(String, String)>,
    allow_manage_connector: bool,
    rules: AccessRules,
}

impl ReverseToken {
    /// A reverse token the server generates, with a SOCKS5 port from the pool 1024-10240.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Its SOCKS5 port on the server (`-p`).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// No SOCKS5 port: its providers serve connectors only.
    pub fn without_socks(mut self) -> Self {
        self.no_socks = true;
        self
    }

    /// SOCKS5 users must give these (`--socks-username`, `--socks-password`).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((username.into(), password.into()));
        self
    }

    /// Its providers may add and remove connector tokens.
    pub fn allow_manage_connector(mut self, on: bool) -> Self {
        self.allow_manage_connector = on;
        self
    }

    /// Requests entering its SOCKS5 port may reach only what these allow.
    pub fn rules(mut self, rules: AccessRules) -> Self {
        self.rules = rules;
        self
    }

    fn into_spec(self, host: &str) -> TokenSpec {
        let socks = (!self.no_socks).then(|| SocksListen {
            host: host.to_string(),
            port: self
                .port
                .or_else(|| pick_port(host))
                .unwrap_or(crate::embed::client::DEFAULT_SOCKS_PORT),
            credentials: self
                .credentials
                .map(|(u, p)| Arc::new(Credentials::new(u, p))),
        });
        TokenSpec::WithRules(
            Box::new(TokenSpec::Reverse(ReverseTokenSpec {
                token: self.token,
                socks,
                allow_manage_connector: self.allow_manage_connector,
            })),
            self.rules,
        )
    }
}

/// A reverse token added: the token and its SOCKS5 port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReverseTokenInfo {
    /// The token, in clear.
    pub token: String,
    /// Its SOCKS5 port on the server, if it has one.
    pub port: Option<u16>,
}

/// A running server. Dropping the handle stops the server (as [`Server::stop`] would, without
/// waiting).
pub struct Server {
    driver: Arc<Driver<ServerRole>>,
    ws_addr: SocketAddr,
    socks_host: String,
    events: Events,
    stop: StopHandle,
    outcome: Arc<Outcome>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("ws_addr", &self.ws_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Settings for a server, with the CLI's defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the HTTP/WebSocket port is bound to (with the real port when 0 was asked).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// This server's events from its start (see [`Events`]).
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Add a forward token (`None`: generate one). Returns the token.
    pub fn add_forward_token(&self, token: Option<&str>) -> Result<String, Error> {
        self.add_forward_token_with_rules(token, AccessRules::default())
    }

    /// Add a forward token whose clients may reach only what `rules` allow.
    pub fn add_forward_token_with_rules(
        &self,
        token: Option<&str>,
        rules: AccessRules,
    ) -> Result<String, Error> {
        self.machine(|m| m.add_forward_token_with_rules(token.map(str::to_string), rules))
    }

    /// Add a reverse token. Returns once its SOCKS5 port is open (with `socks_nowait`) or
    /// reserved; a port that cannot be bound is [`Error::Bind`] and the token is not kept.
    pub async fn add_reverse_token(&self, token: ReverseToken) -> Result<ReverseTokenInfo, Error> {
        let TokenSpec::WithRules(spec, rules) = token.into_spec(&self.socks_host) else {
            unreachable!("into_spec wraps the token in its rules")
        };
        let TokenSpec::Reverse(spec) = *spec else {
            unreachable!("into_spec makes a reverse token")
        };
        let socks = spec.socks.clone();
        let token = self.machine(|m| m.add_reverse_token_with_rules(spec, rules))?;
        settle_listener(&self.driver, &token).await;
        let state = self.driver.lock().machine.listener_state(&token);
        let port = match state {
            ListenerState::Failed(failure) => {
                self.driver.with(|m, now| m.remove_token(now, &token)).ok();
                let socks = socks.expect("a listener was asked for");
                return Err(Error::bind(
                    crate::host_port(&socks.host, socks.port),
                    failure.to_io_error(),
                ));
            }
            ListenerState::Bound(a) => Some(a.port()),
            ListenerState::None | ListenerState::Opening => socks.map(|s| s.port),
        };
        Ok(ReverseTokenInfo { token, port })
    }

    /// Add a connector token for the reverse token `reverse` (`None`: generate one).
    pub fn add_connector_token(&self, token: Option<&str>, reverse: &str) -> Result<String, Error> {
        self.add_connector_token_with_rules(token, reverse, AccessRules::default())
    }

    /// Add a connector token whose requests may reach only what `rules` allow.
    pub fn add_connector_token_with_rules(
        &self,
        token: Option<&str>,
        reverse: &str,
        rules: AccessRules,
    ) -> Result<String, Error> {
        self.machine(|m| {
            m.add_connector_token_with_rules(token.map(str::to_string), reverse, rules)
        })
    }

    /// Remove a token of any kind; its links are closed. [`Error::Token`] if unknown.
    pub fn remove_token(&self, token: &str) -> Result<(), Error> {
        self.driver
            .with(|m, now| m.remove_token(now, token))
            .map_err(Error::from)
    }

    /// Every token with its kind, clients and port (what `/api/status` lists).
    pub fn tokens(&self) -> Vec<TokenStatus> {
        self.driver.lock().machine.status()
    }

    /// Links, channels and counters at this moment.
    pub fn snapshot(&self) -> Snapshot {
        self.driver.lock().machine.snapshot()
    }

    /// The server-wide access rules now.
    pub fn access(&self) -> AccessConfig {
        self.driver.lock().machine.access_config()
    }

    /// Replace the server-wide access rules (new channels are checked against them).
    pub fn set_access(&self, access: AccessConfig) {
        self.driver.with(|m, _| m.set_access_config(access));
    }

    /// A handle that stops this server from anywhere (a signal handler, another thread).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Wait until the server has stopped (after [`Server::stop`] or a [`StopHandle`]).
    pub async fn wait(&self) -> Result<(), Error> {
        self.outcome.wait().await
    }

    /// Stop gracefully: close the ports, end channels and links (flushing what was sent, up
    /// to 3 s), and wait until done. Calling it again is harmless.
    pub async fn stop(&self) -> Result<(), Error> {
        self.stop.stop();
        self.wait().await
    }

    fn machine<T>(
        &self,
        f: impl FnOnce(&mut ServerMachine) -> Result<T, TokenError>,
    ) -> Result<T, Error> {
        if self.outcome.get().is_some() {
            return Err(Error::Stopped);
        }
        self.driver.with(|m, _| f(m)).map_err(Error::from)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

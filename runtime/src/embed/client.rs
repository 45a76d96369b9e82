//! A LinkSocks client embedded in a program: [`ClientBuilder`] and the [`Client`] handle. One
//! type serves the three client roles: a forward client (SOCKS5 here, the server dials), a
//! connector (the same, with a connector token), and a reverse provider (we dial for the
//! server's SOCKS5 users).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use linksocks_core::access::AccessRules;
use linksocks_core::ids::{ChannelId, InstanceId};
use linksocks_core::session::client::ConnectorError;
use linksocks_core::session::{
    BatchPolicy, ClientConfig, ClientMachine, ClientRole, ConnectorOutcome, Machine, Snapshot,
    SocksListen,
};
use linksocks_core::socks::Credentials;

use super::events::Events;
use super::task::Outcome;
use crate::client::{start_client, ClientRole as Role};
use crate::driver::Driver;
use crate::stop::{stop_pair, StopHandle};
use crate::{ClientOptions, ClientTls, Error, ProxyEnv, ProxyUrl, Rt, Runtime};

/// The server a client dials unless told otherwise.
pub const DEFAULT_URL: &str = "ws://localhost:8765";
/// The SOCKS5 port of a forward client (and of a server's reverse token) unless told
/// otherwise.
pub const DEFAULT_SOCKS_PORT: u16 = 9870;

/// Settings of a [`Client`], with the CLI's defaults: a forward client of
/// `ws://localhost:8765` with SOCKS5 on `127.0.0.1:9870`, one link, reconnecting, no proxy.
///
/// ```no_run
/// use linksocks_runtime::{Client, Runtime};
///
/// async fn tunnel(rt: impl Runtime) -> Result<(), linksocks_runtime::Error> {
///     let client = Client::builder("my-token")
///         .url("wss://proxy.example.com")
///         .socks_addr("127.0.0.1", 1080)
///         .start(rt)?;
///     client.ready().await?;
///     println!("SOCKS5 and HTTP proxy on {:?}", client.socks_addr());
///     client.wait().await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    opts: ClientOptions,
    /// Access rules, given to the side the role calls for at start (whatever the order of
    /// the builder calls).
    rules: Option<AccessRules>,
}

impl From<ClientOptions> for ClientBuilder {
    fn from(opts: ClientOptions) -> Self {
        ClientBuilder { opts, rules: None }
    }
}

impl ClientBuilder {
    /// A forward client presenting `token`, with the CLI's defaults.
    pub fn new(token: impl Into<String>) -> Self {
        let mut machine = ClientConfig::new(DEFAULT_URL, Some(token.into()), ClientRole::Forward);
        machine.socks = Some(SocksListen {
            host: super::server::DEFAULT_SOCKS_HOST.into(),
            port: DEFAULT_SOCKS_PORT,
            credentials: None,
        });
        ClientBuilder {
            opts: ClientOptions {
                machine,
                upstream_proxy: None,
                env_proxy: None,
                max_message_size: linksocks_core::wire::MAX_MESSAGE_SIZE,
                tls: ClientTls::default(),
            },
            rules: None,
        }
    }

    /// The server's URL (`-u`): `ws://`, `wss://`, `http(s)://`, or a bare host (wss).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.opts.machine.url = url.into();
        self
    }

    /// Be a reverse provider (`-r`): the server's SOCKS5 users reach targets through us. A
    /// provider has no SOCKS5 port of its own.
    pub fn reverse(mut self, on: bool) -> Self {
        self.opts.machine.role = if on {
            ClientRole::Provider
        } else {
            ClientRole::Forward
        };
        self
    }

    /// Listen for SOCKS5 (and HTTP proxy) requests on `host:port` (`--socks-host`,
    /// `--socks-port`; port 0: the system picks, [`Client::socks_addr`] tells which).
    pub fn socks_addr(mut self, host: impl Into<String>, port: u16) -> Self {
        let creds = self.opts.machine.socks.take().and_then(|s| s.credentials);
        self.opts.machine.socks = Some(SocksListen {
            host: host.into(),
            port,
            credentials: creds,
        });
        self
    }

    /// SOCKS5 users must give these (`--socks-username`, `--socks-password`).
    pub fn socks_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        if let Some(s) = self.opts.machine.socks.as_mut() {
            s.credentials = Some(Arc::new(Credentials::new(username.into(), password.into())));
        }
        self
    }

    /// Open the SOCKS5 port before the first link is up (`--socks-no-wait`).
    pub fn socks_no_wait(mut self, on: bool) -> Self {
        self.opts.machine.socks_no_wait = on;
        self
    }

    /// Provider with connector autonomy: register this connector token (`-c`; empty: let the
    /// server generate one, reported as [`Event::ConnectorToken`](crate::Event)).
    pub fn connector_token(mut self, token: impl Into<String>) -> Self {
        self.opts.machine.connector_token = Some(token.into());
        self
    }

    /// Open the links again after they are lost (default on; `--no-reconnect` turns it off,
    /// and a lost link ends the client with [`Error::Disconnected`]).
    pub fn reconnect(mut self, on: bool) -> Self {
        self.opts.machine.reconnect = on;
        self
    }

    /// Keep trying after the server refused the token (`--retry-auth`, default off).
    pub fn retry_auth(mut self, on: bool) -> Self {
        self.opts.machine.retry_auth = on;
        self
    }

    /// WebSocket links to keep open (`-T`, default 1; at least 1).
    pub fn threads(mut self, links: usize) -> Self {
        self.opts.machine.threads = links.max(1);
        self
    }

    /// Reach the server through this proxy (`--upstream-proxy`).
    pub fn upstream_proxy(mut self, proxy: ProxyUrl) -> Self {
        self.opts.upstream_proxy = Some(proxy);
        self
    }

    /// Without an upstream proxy, use the one these environment values name (what the CLI does
    /// unless `--no-env-proxy`; a library reads no environment of its own).
    pub fn env_proxy(mut self, env: ProxyEnv) -> Self {
        self.opts.env_proxy = Some(env);
        self
    }

    /// Reply success to a SOCKS CONNECT before the server has dialled (`-f`, FastOpen).
    pub fn fast_open(mut self, on: bool) -> Self {
        self.opts.machine.fast_open = on;
        self
    }

    /// Forward client: requests entering the SOCKS5 port may reach only what these allow.
    /// Provider: only what these allow is dialled (`--access-rule`).
    pub fn access_rules(mut self, rules: AccessRules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Trust this CA (PEM) for wss:// besides the built-in roots (`--tls-ca`).
    pub fn tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.opts.tls.ca_file = Some(path.into());
        self
    }

    /// Accept any server certificate (`--tls-insecure`). For testing only: it defeats TLS.
    pub fn tls_insecure(mut self, on: bool) -> Self {
        self.opts.tls.insecure = on;
        self
    }

    /// How long channels outlive a lost link (`--transport-grace`, default 30 s).
    pub fn transport_grace(mut self, grace: Duration) -> Self {
        self.opts.machine.timings.transport_grace = grace;
        self
    }

    /// How reads are cut into messages (`--batch`, default link-paced).
    pub fn batch(mut self, policy: BatchPolicy) -> Self {
        self.opts.machine.data.batch = policy;
        self
    }

    /// Largest WebSocket message accepted (`--max-message-size`, default 32 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.opts.max_message_size = bytes;
        self
    }

    /// This process's instance id, which the server resumes channels by (default: a random
    /// one drawn at start).
    pub fn instance(mut self, id: InstanceId) -> Self {
        self.opts.machine.instance = id;
        self
    }

    /// Every machine setting at once (timers, data path, ...), replacing those set so far.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.opts.machine = config;
        self
    }

    /// The settings so far.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Start the client on `rt`: its links open in the background ([`Client::ready`] waits for
    /// them). Fails at once on settings that cannot work (a bad URL, an unreadable CA file).
    pub fn start(mut self, rt: impl Runtime) -> Result<Client, Error> {
        let max = self.opts.max_message_size;
        crate::options::fit_batch(&mut self.opts.machine.data, max, false)?;
        if let Some(rules) = self.rules.take() {
            let rules = Arc::new(rules);
            match self.opts.machine.role {
                ClientRole::Provider => self.opts.machine.data.dial_rules = rules,
                ClientRole::Forward => self.opts.machine.entry_rules = rules,
            }
        }
        if self.opts.machine.instance == InstanceId::default() {
            let mut bytes = [0u8; 16];
            crate::server::os_ids().fill(&mut bytes);
            self.opts.machine.instance = InstanceId(bytes);
        }
        let (stop, stopper) = stop_pair();
        let (tx, events) = Events::new();
        let outcome = Arc::new(Outcome::default());
        let forward = self.opts.machine.role == ClientRole::Forward;
        let wants_socks = forward && self.opts.machine.socks.is_some();
        let wait = self.opts.machine.timings.connect_timeout;
        let driver = start_client(Rt::new(rt), self.opts, tx, stopper, outcome.clone())?;
        Ok(Client {
            driver,
            events,
            stop,
            outcome,
            wants_socks,
            answer_wait: wait,
        })
    }
}

/// A running client (forward client, connector or provider). Dropping the handle stops it (as
/// [`Client::stop`] would, without waiting).
pub struct Client {
    driver: Arc<Driver<Role>>,
    events: Events,
    stop: StopHandle,
    outcome: Arc<Outcome>,
    wants_socks: bool,
    answer_wait: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socks_addr", &self.socks_addr())
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Settings for a forward client presenting `token`, with the CLI's defaults.
    pub fn builder(token: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(token)
    }

    /// Wait until a link is authenticated and, for a forward client, its SOCKS5 port is open.
    /// Fails with the reason the client stopped, if it stopped first (a refused token, a port
    /// in use, the server unreachable with reconnection off).
    pub async fn ready(&self) -> Result<(), Error> {
        loop {
            let changed = self.driver.fatal_event.listen();
            if let Some(r) = self.outcome.get() {
                return Err(r.err().unwrap_or(Error::Stopped));
            }
            if self.is_connected() && (!self.wants_socks || self.socks_addr().is_some()) {
                return Ok(());
            }
            futures_lite::future::or(changed, async {
                let _ = self.outcome.wait().await;
            })
            .await;
        }
    }

    /// Whether a link is authenticated now.
    pub fn is_connected(&self) -> bool {
        self.driver.lock().machine.snapshot().links_ready > 0
    }

    /// The SOCKS5 (and HTTP proxy) port, once open.
    pub fn socks_addr(&self) -> Option<SocketAddr> {
        self.driver.lock().socks_addr
    }

    /// Provider with autonomy: the connector token the server registered at start.
    pub fn connector_token(&self) -> Option<String> {
        self.driver.lock().connector_token.clone()
    }

    /// How many partners the server last reported: providers of our token (a forward client
    /// or connector) or connectors (a provider); 0 before any report.
    pub fn partners(&self) -> i64 {
        self.driver.lock().partners
    }

    /// This client's events from its start (see [`Events`]).
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Links, channels and counters at this moment.
    pub fn snapshot(&self) -> Snapshot {
        self.driver.lock().machine.snapshot()
    }

    /// Provider: have the server register a connector token for our reverse token (`None`:
    /// the server generates one). Returns the token. The server must allow it (autonomy, or
    /// a reverse token that lets providers manage connectors).
    pub async fn add_connector(&self, token: Option<&str>) -> Result<String, Error> {
        let token = token.map(str::to_string);
        match self.connector_call(|m| m.add_connector(token)).await? {
            ConnectorOutcome::Added { token } => Ok(token),
            other => Err(unexpected(other)),
        }
    }

    /// Provider: have the server remove a connector token of our reverse token.
    pub async fn remove_connector(&self, token: &str) -> Result<(), Error> {
        let token = token.to_string();
        match self.connector_call(|m| m.remove_connector(token)).await? {
            ConnectorOutcome::Removed { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn connector_call(
        &self,
        ask: impl FnOnce(&mut ClientMachine) -> Result<ChannelId, ConnectorError>,
    ) -> Result<ConnectorOutcome, Error> {
        if self.outcome.get().is_some() {
            return Err(Error::Stopped);
        }
        let request = self.driver.with(|m, _| ask(m)).map_err(|e| match e {
            ConnectorError::NotConnected => Error::NotConnected,
            e => Error::Connector(e),
        })?;
        let deadline = StdInstant::now() + self.answer_wait;
        loop {
            let changed = self.driver.fatal_event.listen();
            if let Some(outcome) = self.driver.lock().connector_answers.remove(&request) {
                return match outcome {
                    ConnectorOutcome::Refused { reason } => Err(Error::ConnectorRefused { reason }),
                    ok => Ok(ok),
                };
            }
            if self.outcome.get().is_some() {
                return Err(Error::Stopped);
            }
            if StdInstant::now() >= deadline {
                self.driver.with(|m, _| m.forget_connector_request(request));
                self.driver.lock().connector_answers.remove(&request);
                return Err(Error::Timeout {
                    what: "the connector request",
                    secs: self.answer_wait.as_secs(),
                });
            }
            let sleep = self.driver.rt.sleep_until(deadline);
            let stopped = async {
                let _ = self.outcome.wait().await;
            };
            futures_lite::future::or(futures_lite::future::or(changed, sleep), stopped).await;
        }
    }

    /// A handle that stops this client from anywhere (a signal handler, another thread).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Wait until the client has stopped: `Ok` after [`Client::stop`], the reason otherwise.
    pub async fn wait(&self) -> Result<(), Error> {
        self.outcome.wait().await
    }

    /// Stop gracefully: close the SOCKS5 port, end channels and links (flushing what was sent,
    /// up to 3 s), and wait until done. Calling it again is harmless.
    pub async fn stop(&self) -> Result<(), Error> {
        self.stop.stop();
        self.wait().await
    }
}

fn unexpected(outcome: ConnectorOutcome) -> Error {
    Error::Protocol {
        reason: format!("the server answered a connector request with {outcome:?}"),
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

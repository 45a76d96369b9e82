//! Settings of the machines, with the reference's defaults (spec section 8).

use std::sync::Arc;
use std::time::Duration;

use crate::access::{AccessConfig, AccessRules};
use crate::ids::InstanceId;
use crate::socks::Credentials;

/// Timers, all from the spec unless noted.
#[derive(Clone, Debug)]
pub struct Timings {
    /// A dial (or the far side's ConnectResponse) must finish within this.
    pub connect_timeout: Duration,
    /// FastOpen: a channel with no ConnectResponse after `connect_timeout + fast_open_grace`
    /// is closed.
    pub fast_open_grace: Duration,
    /// Idle channels are removed after this ...
    pub idle_timeout: Duration,
    /// ... by a sweep that runs this often.
    pub cleaner_interval: Duration,
    /// First reconnect delay; multiplied by `reconnect_factor` per failure, capped.
    pub reconnect_delay: Duration,
    /// Factor the reconnect delay grows by after each failed attempt (default 1.5).
    pub reconnect_factor: f64,
    /// Cap of the reconnect delay.
    pub reconnect_max: Duration,
    /// Liveness: both sides ping every `ping_interval` (and answer pings at once); a pong is
    /// expected within `ping_timeout` ...
    pub ping_interval: Duration,
    /// How long a pong may take before the link counts as dead.
    pub ping_timeout: Duration,
    /// ... and a link on which nothing at all (frame, ping or pong) arrived for this long is
    /// dead: it enters the transport grace. A half-open link (a NAT that forgot it) is thus
    /// found within a minute.
    pub dead_after: Duration,
    /// How long channels outlive a lost link, suspended, waiting for the peer to come back
    /// (spec 12.2). Zero: channels end with their link.
    pub transport_grace: Duration,
    /// Reverse mode: how long a SOCKS request waits for a provider before reply 0x03.
    pub provider_wait: Duration,
    /// Agent mode: how long a connector's Connect waits for a provider.
    pub connector_wait_provider: Duration,
    /// A SOCKS request on a client whose links are all down waits this long for one.
    pub link_wait: Duration,
    /// An application must finish its SOCKS5 handshake within this (slow-loris guard).
    pub handshake_timeout: Duration,
    /// Reverse mode: a provider not heard from for this long is pinged before it gets a new
    /// channel, and passed over for the next one if it does not answer within this long (the
    /// reference pings before every use, with this deadline).
    pub provider_probe: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            connect_timeout: Duration::from_secs(10),
            fast_open_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(12 * 3600),
            cleaner_interval: Duration::from_secs(60),
            reconnect_delay: Duration::from_secs(1),
            reconnect_factor: 1.5,
            reconnect_max: Duration::from_secs(600),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            dead_after: Duration::from_secs(60),
            transport_grace: Duration::from_secs(30),
            provider_wait: Duration::from_secs(10),
            connector_wait_provider: Duration::from_secs(5),
            link_wait: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            provider_probe: Duration::from_secs(1),
        }
    }
}

/// How Data messages are cut from what local sockets deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchPolicy {
    /// Ours: send at once while the link keeps up (no added latency for interactive traffic);
    /// while frames are queued on the link, coalesce small reads into one message, bounded by
    /// `max_delay` and `max_batch`.
    LinkPaced,
    /// The reference's SendManager: a rate-driven delay of 0 or 20..500 ms.
    Adaptive,
    /// Every read is a message at once.
    Immediate,
}

/// Data-path settings.
#[derive(Clone, Debug)]
pub struct DataConfig {
    /// How reads from local sockets are cut into Data messages.
    pub batch: BatchPolicy,
    /// Longest a small read may wait for company (LinkPaced).
    pub max_delay: Duration,
    /// A batch this large is sent at once; also the reference's "buffer full".
    pub max_batch: usize,
    /// Data payloads at or over this size are gzip candidates (spec default 512 KiB).
    pub compression_threshold: usize,
    /// Skip gzip for payloads a sample shows to be incompressible (the wire is the same).
    pub compression_sampling: bool,
    /// Stop reading local sockets of a link whose unsent frames exceed this many bytes.
    pub link_high_water: usize,
    /// Resume them when it drains below this.
    pub link_low_water: usize,
    /// Stop reading a link when a local socket has this many unwritten bytes queued.
    pub conn_high_water: usize,
    /// Read the link again when every such socket has drained below this.
    pub conn_low_water: usize,
    /// Largest inflated gzip payload accepted.
    pub max_inflated: usize,
    /// UDP datagrams for a link with more than this queued are dropped (UDP is lossy anyway;
    /// memory is not).
    pub udp_drop_water: usize,
    /// Per-channel flow control with peers that speak our extension: a channel's sender has at
    /// most `channel_window` bytes of it unacknowledged, so a slow local writer holds back only
    /// its own channel, never the whole link. Reference peers never see the extension; with
    /// them a slow writer pauses the link.
    pub channel_flow: bool,
    /// The window we offer (the two ends use the smaller, and at least 64 KiB): about what a
    /// flow-controlled channel may hold unwritten on the receiving side. Past
    /// `conn_high_water + 2 windows + 1 MiB` the link is paused as well, so memory stays bounded
    /// even against a peer that ignores the window. It caps one channel's throughput at
    /// `window / round trip`: 8 MiB is 160 MB/s at a 50 ms round trip.
    pub channel_window: usize,
    /// Most bytes of one channel's Data queued on its link, unwritten: past it the channel's
    /// local socket waits (fairness among channels: one bulk transfer cannot fill the queue
    /// ahead of the others' requests).
    pub channel_link_share: usize,
    /// Access rules every TCP dial of this side must pass (empty: any destination), the
    /// reference's `DialAccessControl`: a provider's (or `client -r`'s) `--access-rule`. A
    /// denied Connect is answered with ConnectResponse failure
    /// [`DIAL_BLOCKED`](super::output::DIAL_BLOCKED). An IP target is checked at once; a domain
    /// is resolved by the driver, which connects only to the addresses every rule set allows
    /// (see [`Output::Dial`](super::Output::Dial)). UDP associations are not checked (their
    /// Connect names no destination), as in the reference.
    ///
    /// A server's own dial rules are [`ServerConfig::access`] (changeable at run time); this
    /// one applies as well when set on a server.
    pub dial_rules: Arc<AccessRules>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            batch: BatchPolicy::LinkPaced,
            max_delay: Duration::from_millis(1),
            max_batch: 64 << 10,
            compression_threshold: crate::wire::DEFAULT_COMPRESSION_THRESHOLD,
            compression_sampling: true,
            link_high_water: 4 << 20,
            link_low_water: 1 << 20,
            conn_high_water: 1 << 20,
            conn_low_water: 256 << 10,
            max_inflated: crate::wire::MAX_MESSAGE_SIZE,
            udp_drop_water: 16 << 20,
            channel_flow: true,
            channel_window: 8 << 20,
            channel_link_share: 1 << 20,
            dial_rules: Arc::default(),
        }
    }
}

/// A SOCKS5 listener to run.
#[derive(Clone, Debug)]
pub struct SocksListen {
    /// Address to bind: an IP literal or a host name.
    pub host: String,
    /// Port to bind; 0 lets the system choose (the bound port comes back in
    /// [`Event::Listening`](super::Event::Listening)).
    pub port: u16,
    /// Username and password the SOCKS5 clients must give (RFC 1929); `None`: no authentication.
    pub credentials: Option<Arc<Credentials>>,
}

/// Which client this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRole {
    /// SOCKS5 here, the server dials (also a connector: same wire, a connector token).
    Forward,
    /// Reverse provider: the server's SOCKS5 users reach targets through us.
    Provider,
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server URL as the user gave it (`ws://`, `wss://`, `http(s)://`; empty path = /socket).
    pub url: String,
    /// Our token; `None` presents the literal `anonymous`.
    pub token: Option<String>,
    /// Forward client (or connector) or reverse provider.
    pub role: ClientRole,
    /// Forward / connector: the local SOCKS5 listener.
    pub socks: Option<SocksListen>,
    /// Start the SOCKS listener before the first link is authenticated.
    pub socks_no_wait: bool,
    /// Provider in autonomy mode: connector token to register (empty string = let the server
    /// generate one).
    pub connector_token: Option<String>,
    /// WebSocket links to open.
    pub threads: usize,
    /// Open the links again after they are lost (with the backoff of [`Timings`]); `false`: a lost
    /// link is fatal.
    pub reconnect: bool,
    /// Keep retrying after the server refused the token.
    pub retry_auth: bool,
    /// Reply success to a SOCKS CONNECT at once, before the server's ConnectResponse (FastOpen,
    /// spec §4).
    pub fast_open: bool,
    /// This client's instance id, sent with every link; the server resumes channels and counts
    /// reconnects by it. The default is all zeros: a caller should draw a random one (UUID v4) per
    /// process.
    pub instance: InstanceId,
    /// Timeouts and intervals.
    pub timings: Timings,
    /// Data-path settings.
    pub data: DataConfig,
    /// Forward client and connector: access rules checked where a SOCKS5 or HTTP request
    /// enters the local port, before anything is sent (`--access-rule`, the reference's
    /// `EntryAccessControl`); empty allows every destination. A provider's rules are
    /// [`DataConfig::dial_rules`] instead.
    pub entry_rules: Arc<AccessRules>,
}

impl ClientConfig {
    /// Settings with the CLI's defaults: one link, reconnect on, no SOCKS listener, all-zero
    /// instance id, no access rules.
    pub fn new(url: impl Into<String>, token: Option<String>, role: ClientRole) -> Self {
        ClientConfig {
            url: url.into(),
            token,
            role,
            socks: None,
            socks_no_wait: false,
            connector_token: None,
            threads: 1,
            reconnect: true,
            retry_auth: false,
            fast_open: false,
            instance: InstanceId::default(),
            timings: Timings::default(),
            data: DataConfig::default(),
            entry_rules: Arc::default(),
        }
    }
}

/// Server settings. Tokens are added with the `ServerMachine` token methods.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// Providers may add their own connector tokens (`-a`).
    pub connector_autonomy: bool,
    /// Open reverse SOCKS listeners at once, not at the first provider.
    pub socks_nowait: bool,
    /// Reply success to a SOCKS CONNECT at once, before the provider's ConnectResponse (reverse
    /// mode).
    pub fast_open: bool,
    /// Timeouts and intervals.
    pub timings: Timings,
    /// Data-path settings.
    pub data: DataConfig,
    /// The server-wide access rules it starts with (`server --access-rule` without `-r` gives
    /// `dial`); `GET`/`PUT /api/config/access` read and replace them at run time
    /// ([`ServerMachine::access_config`](super::ServerMachine::access_config)). `entry` applies
    /// at the SOCKS5 port of every reverse token that has no rules of its own, `dial` to every
    /// Connect a forward client sends (together with its token's rules).
    pub access: AccessConfig,
}

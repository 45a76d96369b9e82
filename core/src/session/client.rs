//! The client role: a forward client or connector (SOCKS5 here, the server side dials) or a
//! reverse provider (we dial for the server's SOCKS5 users). One machine drives all of the
//! client's WebSocket links (`threads`), their authentication and reconnection.

use crate::session::IoFailure;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::{debug, info, trace, warn};

use super::config::{ClientConfig, ClientRole};
use super::output::{ConnectorOutcome, Event, Fatal, Output};
use super::plane::{EntryCheck, PeerKey, Plane, Resume, Routed, Snapshot, SocksRequest, Timer};
use super::{ConnId, LinkId, ListenerId, Machine, UdpId};
use crate::ids::{ChannelId, IdSource};
use crate::socks::Reply;
use crate::time::Instant;
use crate::wire::{feature, Auth, ConnectorOp, Message};

/// Token a client without one presents.
pub const ANONYMOUS: &str = "anonymous";

/// Connector requests ([`ClientMachine::add_connector`]) awaiting an answer at most: a server
/// that never answers cannot make the machine grow.
pub const MAX_CONNECTOR_REQUESTS: usize = 64;

/// Why a connector request could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// Only a reverse provider manages connector tokens.
    #[error("only a reverse provider manages connector tokens")]
    NotProvider,
    /// No link is authenticated right now.
    #[error("not connected to the server")]
    NotConnected,
    /// [`MAX_CONNECTOR_REQUESTS`] are awaiting an answer.
    #[error("too many connector requests awaiting an answer")]
    TooManyPending,
}

/// The URL-query value (`ext=flow`) by which our client tells a server of ours that it speaks
/// per-channel flow control; the server answers with [`Message::Hello`].
pub const EXT_FLOW: &str = "flow";
/// ... and (`ext=flow,resume`) that it resumes channels across a lost link.
pub const EXT_RESUME: &str = "resume";

/// Our version as a liveness pong reports it, in the reference's style (`v1.10.3`): the
/// crate's version, as the server's `/api/status` reports it too.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
/// A Log message of level [`PROBE_LEVEL`] whose msg starts with this is a liveness probe
/// (reference 1.10.x, `ProviderLivenessProbe`): the client answers on the same link with a
/// Log of the same level whose msg is [`PONG_PREFIX`] followed by `{"version":"<VERSION>"}`.
pub const PROBE_PREFIX: &str = "probe:";
/// See [`PROBE_PREFIX`].
pub const PONG_PREFIX: &str = "pong:";
/// Level of a liveness probe and of its pong (exact, as the reference compares it).
pub const PROBE_LEVEL: &str = "trace";

/// The msg of our liveness pong: `pong:{"version":"v…"}`, JSON as the reference writes it
/// (one key, no spaces).
pub fn pong_msg() -> String {
    format!("{PONG_PREFIX}{}", serde_json::json!({ "version": VERSION }))
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum LinkPhase {
    /// WebSocket handshake running.
    Opening,
    /// Waiting for AuthResponse.
    Authenticating,
    Ready,
}

struct Slot {
    link: Option<LinkId>,
    phase: LinkPhase,
    /// Delay before the next reconnect attempt of this slot.
    delay: Duration,
}

/// The client machine.
pub struct ClientMachine {
    cfg: ClientConfig,
    plane: Plane,
    /// One slot per WebSocket link (`threads`).
    slots: Vec<Slot>,
    slot_of: BTreeMap<LinkId, usize>,
    /// The URL to open, query included (rebuilt when the server assigns us a token).
    url: String,
    /// The URL as normalized, before our query parameters.
    base: String,
    /// Our extension parameters (`ext=…&flow_window=…`), or empty.
    ext: String,
    /// The token we present: the configured one (or `anonymous`) until a successful
    /// AuthResponse hands us another, which later links present instead (as the reference).
    token: String,
    /// Authenticate with an Auth message (URL path other than /socket) rather than the query.
    auth_message: bool,
    listener: Option<ListenerId>,
    /// SOCKS requests waiting for a ready link.
    waiting: VecDeque<ConnId>,
    next_link: usize,
    /// Request id of our pending Connector add (autonomy).
    connector_request: Option<ChannelId>,
    /// Connector requests made with [`ClientMachine::add_connector`] and
    /// [`ClientMachine::remove_connector`], awaiting the server's answer. Bounded by
    /// [`MAX_CONNECTOR_REQUESTS`].
    connector_calls: BTreeMap<ChannelId, (ConnectorOp, String)>,
    /// The connector token the server confirmed, re-added after each reconnect.
    connector_token: Option<String>,
    stopped: bool,
}

/// Why a server URL cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `scheme://host...`.
    #[error("invalid server URL {url:?}: expected ws://, wss://, http:// or https://")]
    NoScheme {
        /// The URL as given.
        url: String,
    },
    /// A scheme other than ws, wss, http and https.
    #[error("invalid server URL {url:?}: unsupported scheme {scheme:?}")]
    Scheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// Nothing between `://` and the path.
    #[error("invalid server URL {url:?}: no host")]
    NoHost {
        /// The URL as given.
        url: String,
    },
}

/// What the URL the user gave becomes: scheme ws/wss, empty path `/socket`.
pub fn normalize_url(url: &str) -> Result<String, UrlError> {
    let url = url.trim();
    // Like the reference, a bare host means wss:// (what a server behind a CDN speaks).
    let owned;
    let url = if url.contains("://") {
        url
    } else {
        owned = format!("wss://{url}");
        owned.as_str()
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| UrlError::NoScheme { url: url.into() })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(UrlError::Scheme {
                url: url.into(),
                scheme: other.into(),
            })
        }
    };
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(UrlError::NoHost { url: url.into() });
    }
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let path = if path.is_empty() || path == "/" {
        "/socket"
    } else {
        path
    };
    Ok(match query {
        Some(q) if !q.is_empty() => format!("{scheme}://{authority}{path}?{q}"),
        _ => format!("{scheme}://{authority}{path}"),
    })
}

/// The URL a link opens: `base` with our extension parameters and, unless we authenticate
/// with an Auth message, the query authentication for `token`.
fn link_url(base: &str, ext: &str, auth_message: bool, token: &str, cfg: &ClientConfig) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    if auth_message {
        if ext.is_empty() {
            base.to_string()
        } else {
            format!("{base}{sep}{ext}")
        }
    } else {
        let ext = if ext.is_empty() {
            String::new()
        } else {
            format!("&{ext}")
        };
        format!(
            "{base}{sep}token={}&reverse={}&instance={}{ext}",
            token_hash(token),
            cfg.role == ClientRole::Provider,
            cfg.instance
        )
    }
}

/// Lowercase hex SHA-256 of a token, as the URL-query authentication carries it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl ClientMachine {
    /// A client. Call [`ClientMachine::start`] to open its links. Fails on a URL that cannot be
    /// used.
    pub fn new(cfg: ClientConfig, ids: Box<dyn IdSource>, now: Instant) -> Result<Self, UrlError> {
        let base = normalize_url(&cfg.url)?;
        let token = cfg.token.clone().unwrap_or_else(|| ANONYMOUS.to_string());
        let path = base
            .split_once("://")
            .map(|(_, r)| r)
            .and_then(|r| r.find('/').map(|i| &r[i..]))
            .unwrap_or("/socket");
        let path_only = path.split('?').next().unwrap_or(path);
        let auth_message = path_only != "/socket";
        // `ext`: our extensions, for a server of ours to answer with Hello; the reference
        // ignores query parameters it does not know.
        // With the window we would like; the server answers with the one both will use.
        let ext = if cfg.data.channel_flow {
            let window = cfg.data.channel_window.max(super::plane::MIN_WINDOW);
            // Resuming replays what the window keeps: it needs flow control.
            let resume = if cfg.timings.transport_grace.is_zero() {
                String::new()
            } else {
                format!(",{EXT_RESUME}")
            };
            format!("ext={EXT_FLOW}{resume}&flow_window={window}")
        } else {
            String::new()
        };
        let url = link_url(&base, &ext, auth_message, &token, &cfg);
        let slots = (0..cfg.threads.max(1))
            .map(|_| Slot {
                link: None,
                phase: LinkPhase::Opening,
                delay: cfg.timings.reconnect_delay,
            })
            .collect();
        let plane = Plane::new(
            cfg.data.clone(),
            cfg.timings.clone(),
            cfg.fast_open,
            ids,
            now,
        );
        Ok(ClientMachine {
            connector_token: cfg.connector_token.clone(),
            cfg,
            plane,
            slots,
            slot_of: BTreeMap::new(),
            url,
            base,
            ext,
            token,
            auth_message,
            listener: None,
            waiting: VecDeque::new(),
            next_link: 0,
            connector_request: None,
            connector_calls: BTreeMap::new(),
            stopped: false,
        })
    }

    /// Open the links (and the SOCKS listener at once with `socks_no_wait`).
    pub fn start(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            self.open_slot(now, slot);
        }
        if self.cfg.socks_no_wait {
            self.start_listener();
        }
    }

    /// The URL links are opened with (token hash in the query when that is how we authenticate).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data plane, for counters and invariants.
    #[cfg(feature = "internals")]
    pub fn plane(&self) -> &Plane {
        &self.plane
    }

    /// Stop: end every channel, close links and the listener; no reconnection afterwards.
    pub fn close(&mut self, now: Instant) {
        self.stopped = true;
        for slot in &self.slots {
            if let Some(link) = slot.link {
                self.plane.timers.cancel(Timer::Reconnect(link));
            }
        }
        while let Some(conn) = self.waiting.pop_front() {
            self.plane.fail_socks(conn, Reply::GeneralFailure);
        }
        self.plane.shutdown(now);
        self.listener = None;
    }

    /// Whether [`ClientMachine::close`] was called: the machine opens no more links.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Provider: ask the server to register a connector token for our reverse token (`None`:
    /// let the server generate one). The answer comes as [`Event::ConnectorAnswer`] with the
    /// returned request id. The server grants it only with connector autonomy (`-a`) or a
    /// reverse token that allows it; it does not outlive the server, and unlike the
    /// configured [`ClientConfig::connector_token`] it is not registered again after a
    /// reconnect.
    pub fn add_connector(&mut self, token: Option<String>) -> Result<ChannelId, ConnectorError> {
        self.connector_call(ConnectorOp::Add, token.unwrap_or_default())
    }

    /// Provider: ask the server to remove a connector token of our reverse token; answered
    /// like [`ClientMachine::add_connector`].
    pub fn remove_connector(&mut self, token: String) -> Result<ChannelId, ConnectorError> {
        self.connector_call(ConnectorOp::Remove, token)
    }

    fn connector_call(
        &mut self,
        op: ConnectorOp,
        token: String,
    ) -> Result<ChannelId, ConnectorError> {
        if self.cfg.role != ClientRole::Provider {
            return Err(ConnectorError::NotProvider);
        }
        if self.connector_calls.len() >= MAX_CONNECTOR_REQUESTS {
            return Err(ConnectorError::TooManyPending);
        }
        let link = self
            .slots
            .iter()
            .filter(|s| s.phase == LinkPhase::Ready)
            .find_map(|s| s.link)
            .ok_or(ConnectorError::NotConnected)?;
        let request = ChannelId::random(self.plane.ids.as_mut());
        self.connector_calls.insert(request, (op, token.clone()));
        self.plane.send(
            link,
            &Message::Connector {
                channel: request,
                token,
                op,
            },
        );
        Ok(request)
    }

    /// Forget a connector request whose answer is no longer awaited (the caller gave up).
    pub fn forget_connector_request(&mut self, request: ChannelId) {
        self.connector_calls.remove(&request);
    }

    fn open_slot(&mut self, now: Instant, slot: usize) {
        let link = self.plane.new_link_id();
        self.plane.add_link(now, link);
        self.slots[slot].link = Some(link);
        self.slots[slot].phase = LinkPhase::Opening;
        self.slot_of.insert(link, slot);
        self.plane.emit(Output::OpenLink {
            link,
            url: self.url.clone(),
        });
    }

    fn start_listener(&mut self) {
        if self.listener.is_some() || self.cfg.role != ClientRole::Forward {
            return;
        }
        if let Some(socks) = self.cfg.socks.clone() {
            self.listener = Some(self.plane.listen(socks, String::new()));
        }
    }

    /// The WebSocket handshake of `link` completed.
    pub fn handle_link_opened(&mut self, _now: Instant, link: LinkId) {
        let Some(&slot) = self.slot_of.get(&link) else {
            return;
        };
        self.slots[slot].phase = LinkPhase::Authenticating;
        if self.auth_message {
            self.plane.send(
                link,
                &Message::Auth(Auth {
                    token: self.token.clone(),
                    reverse: self.cfg.role == ClientRole::Provider,
                    instance: self.cfg.instance,
                }),
            );
        }
    }

    fn ready_links(&self) -> Vec<LinkId> {
        self.slots
            .iter()
            .filter(|s| s.phase == LinkPhase::Ready)
            .filter_map(|s| s.link)
            .collect()
    }

    fn pick_link(&mut self) -> Option<LinkId> {
        let all = self.ready_links();
        // New channels avoid a link stalled behind a slow reader when another can carry them.
        let free: Vec<LinkId> = all
            .iter()
            .copied()
            .filter(|l| !self.plane.link_congested(*l))
            .collect();
        let ready = if free.is_empty() { all } else { free };
        if ready.is_empty() {
            return None;
        }
        self.next_link = (self.next_link + 1) % ready.len();
        Some(ready[self.next_link])
    }

    fn route(&mut self, now: Instant, req: SocksRequest) {
        if self.plane.check_entry(req.conn, &self.cfg.entry_rules) != EntryCheck::Allowed {
            return;
        }
        self.route_checked(now, req);
    }

    /// Route a request that passed the entry rules.
    fn route_checked(&mut self, now: Instant, req: SocksRequest) {
        match self.pick_link() {
            Some(link) => self.plane.start_socks_channel(now, req.conn, link),
            None => {
                self.waiting.push_back(req.conn);
                self.plane
                    .timers
                    .set(Timer::Conn(req.conn), now + self.cfg.timings.link_wait);
            }
        }
    }

    fn serve_waiting(&mut self, now: Instant) {
        while let Some(conn) = self.waiting.pop_front() {
            if !self.plane.is_waiting(conn) {
                continue;
            }
            match self.pick_link() {
                Some(link) => self.plane.start_socks_channel(now, conn, link),
                None => {
                    self.waiting.push_front(conn);
                    break;
                }
            }
        }
    }

    fn on_auth_response(
        &mut self,
        now: Instant,
        link: LinkId,
        success: bool,
        error: Option<String>,
        token: Option<String>,
    ) {
        let Some(&slot) = self.slot_of.get(&link) else {
            return;
        };
        if self.slots[slot].phase != LinkPhase::Authenticating {
            return;
        }
        if success {
            if let Some(token) = token.filter(|t| !t.is_empty()) {
                self.adopt_token(link, token);
            }
            self.slots[slot].phase = LinkPhase::Ready;
            self.slots[slot].delay = self.cfg.timings.reconnect_delay;
            self.plane.set_link_ready(now, link);
            info!(%link, "authenticated with the server");
            // Channels that lost their link continue on this one (or end, if the server can
            // no longer resume them).
            self.plane.resume_suspended(now);
            self.start_listener();
            if self.cfg.role == ClientRole::Provider {
                if let Some(token) = self.connector_token.clone() {
                    let request = ChannelId::random(self.plane.ids.as_mut());
                    self.connector_request = Some(request);
                    self.plane.send(
                        link,
                        &Message::Connector {
                            channel: request,
                            token,
                            op: ConnectorOp::Add,
                        },
                    );
                }
            }
            self.serve_waiting(now);
            return;
        }
        let reason = error.unwrap_or_else(|| "invalid token".into());
        self.plane.event(Event::AuthRefused {
            link,
            reason: reason.clone(),
        });
        if self.cfg.retry_auth && !self.stopped {
            warn!(%link, %reason, "authentication failed; retrying");
            self.plane.emit(Output::CloseLink { link });
            return;
        }
        self.fatal(now, Fatal::AuthRefused { reason });
    }

    /// The server assigned us `token` (a successful AuthResponse carrying one): links opened
    /// from now on present it, by the URL query or the Auth message, as the reference client
    /// does (client.go, "use it for reconnects so the same relay is reused"). Links already
    /// open keep theirs. The token itself is not logged.
    fn adopt_token(&mut self, link: LinkId, token: String) {
        if token == self.token {
            return;
        }
        info!(%link, "the server assigned us a token; reconnects present it");
        self.token = token;
        self.url = link_url(
            &self.base,
            &self.ext,
            self.auth_message,
            &self.token,
            &self.cfg,
        );
    }

    /// A liveness probe (see [`PROBE_PREFIX`]): answer with one pong on the same link. Not
    /// logged above trace: a server may probe often. The probe's text is not echoed, so the
    /// answer has the same small size whatever came (the transport bounds the probe itself).
    fn answer_probe(&mut self, link: LinkId) {
        trace!(%link, "liveness probe answered");
        self.plane.send(
            link,
            &Message::Log {
                level: PROBE_LEVEL.to_string(),
                msg: pong_msg(),
            },
        );
    }

    fn fatal(&mut self, now: Instant, reason: Fatal) {
        if self.stopped {
            return;
        }
        self.close(now);
        self.plane.event(Event::Fatal { reason });
    }

    fn on_control(&mut self, now: Instant, link: LinkId, msg: Message) {
        match msg {
            Message::AuthResponse { success, error } => {
                self.on_auth_response(now, link, success, error, None)
            }
            Message::AuthResponseToken { token } => {
                self.on_auth_response(now, link, true, None, Some(token))
            }
            Message::Partners { count } => self.plane.event(Event::Partners { count }),
            Message::Log { level, msg }
                if level == PROBE_LEVEL && msg.starts_with(PROBE_PREFIX) =>
            {
                self.answer_probe(link)
            }
            Message::Log { level, msg } => self.plane.event(Event::PeerLog { level, msg }),
            Message::ConnectorResponse {
                channel,
                success,
                error,
                token,
            } => {
                if let Some((op, asked)) = self.connector_calls.remove(&channel) {
                    let outcome = match (success, op) {
                        (true, ConnectorOp::Add) => ConnectorOutcome::Added {
                            token: token.filter(|t| !t.is_empty()).unwrap_or(asked),
                        },
                        (true, ConnectorOp::Remove) => ConnectorOutcome::Removed { token: asked },
                        (false, _) => ConnectorOutcome::Refused {
                            reason: error.unwrap_or_default(),
                        },
                    };
                    self.plane.event(Event::ConnectorAnswer {
                        request: channel,
                        outcome,
                    });
                    return;
                }
                if self.connector_request != Some(channel) {
                    return;
                }
                self.connector_request = None;
                if success {
                    let token = token
                        .or_else(|| self.connector_token.clone())
                        .unwrap_or_default();
                    self.connector_token = Some(token.clone());
                    self.plane.event(Event::ConnectorToken { token });
                } else {
                    let reason = error.unwrap_or_default();
                    warn!(%link, %reason, "the server refused our connector token");
                }
            }
            Message::DirectTransport { .. } => {
                debug!(%link, "direct-transport message ignored (not supported)");
            }
            Message::Hello { features, window } => {
                if features & feature::CHANNEL_FLOW != 0 {
                    debug!(%link, window, "the server speaks per-channel flow control");
                    self.plane.set_flow_window(link, window as usize);
                    if features & feature::RESUME != 0 {
                        // Our only peer is the server: one owner for all our channels.
                        self.plane
                            .set_link_resume(link, PeerKey::default(), Resume::Exact);
                    }
                }
            }
            other => debug!(%link, "unexpected {} from the server ignored", other.name()),
        }
    }

    fn slot_lost(&mut self, now: Instant, link: LinkId, reason: &str) {
        let Some(slot) = self.slot_of.remove(&link) else {
            return;
        };
        let was_ready = self.slots[slot].phase == LinkPhase::Ready;
        self.slots[slot].link = None;
        if self.stopped {
            return;
        }
        if !self.cfg.reconnect {
            if self.slots.iter().all(|s| s.link.is_none()) {
                let reason = Fatal::LinkLost {
                    was_connected: was_ready,
                    reason: reason.to_string(),
                };
                self.fatal(now, reason);
            }
            return;
        }
        let delay = self.slots[slot].delay;
        if !was_ready {
            // Failed attempts back off; a link that was up retries at the base delay.
            let next = delay.mul_f64(self.cfg.timings.reconnect_factor);
            self.slots[slot].delay = next.min(self.cfg.timings.reconnect_max);
        }
        // The slot is named by its lost link until the timer opens a new one.
        self.slots[slot].link = Some(link);
        self.slots[slot].phase = LinkPhase::Opening;
        self.slot_of.insert(link, slot);
        self.plane.timers.set(Timer::Reconnect(link), now + delay);
        debug!(%link, ?delay, "reconnecting");
    }
}

impl Machine for ClientMachine {
    plane_inputs!();

    fn handle_resolved(&mut self, now: Instant, conn: ConnId, addrs: Vec<std::net::IpAddr>) {
        let rules = self.cfg.entry_rules.clone();
        if let Some(req) = self.plane.entry_resolved(conn, &addrs, &rules) {
            self.route_checked(now, req);
        }
    }

    fn handle_link_pong(&mut self, now: Instant, link: LinkId) {
        self.plane.link_alive(now, link);
    }

    fn handle_link_message(&mut self, now: Instant, link: LinkId, frame: Bytes) {
        if !self.plane.links.contains_key(&link) {
            return;
        }
        match self.plane.link_frame(now, link, frame) {
            Routed::Done => {}
            Routed::Control(msg) => self.on_control(now, link, msg),
            Routed::Connect(c) => {
                let ready = self
                    .slot_of
                    .get(&link)
                    .is_some_and(|s| self.slots[*s].phase == LinkPhase::Ready);
                if self.cfg.role == ClientRole::Provider && ready {
                    self.plane.dial(now, link, c);
                } else {
                    self.plane.refuse_connect(
                        link,
                        c.channel,
                        "this client does not accept connections",
                    );
                }
            }
        }
    }

    fn handle_link_closed(&mut self, now: Instant, link: LinkId, reason: &str) {
        if !self.plane.links.contains_key(&link) {
            return;
        }
        debug!(%link, %reason, "link closed");
        self.plane
            .remove_link(now, link, "connection to the server lost");
        self.slot_lost(now, link, reason);
    }

    fn handle_listener_bound(
        &mut self,
        now: Instant,
        listener: ListenerId,
        result: Result<SocketAddr, IoFailure>,
    ) {
        self.plane.listener_bound(listener, &result);
        if let Err(e) = result {
            if self.listener == Some(listener) {
                let addr = self
                    .cfg
                    .socks
                    .as_ref()
                    .map(|s| format!("{}:{}", s.host, s.port))
                    .unwrap_or_default();
                self.fatal(now, Fatal::Listen { addr, error: e });
            }
        }
    }

    fn handle_conn_data(&mut self, now: Instant, conn: ConnId, data: Bytes) {
        if let Some(req) = self.plane.conn_data(now, conn, data) {
            self.route(now, req);
        }
    }

    fn handle_conn_read(&mut self, now: Instant, conn: ConnId, buf: bytes::BytesMut) {
        if let Some(req) = self.plane.conn_read(now, conn, buf) {
            self.route(now, req);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.plane.timers.pop_due(now) {
            match timer {
                Timer::Reconnect(old) => {
                    let Some(slot) = self.slot_of.remove(&old) else {
                        continue;
                    };
                    if self.stopped {
                        continue;
                    }
                    self.plane.stats.reconnects += 1;
                    self.open_slot(now, slot);
                }
                Timer::Conn(conn) => {
                    if self.plane.conn_deadline(conn) {
                        self.waiting.retain(|c| *c != conn);
                        self.plane.fail_socks(conn, Reply::NetworkUnreachable);
                    }
                }
                other => self.plane.fire(now, other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstanceId, SeededIds};
    use crate::wire;

    fn machine(url: &str, token: Option<&str>, role: ClientRole) -> ClientMachine {
        let cfg = ClientConfig::new(url, token.map(str::to_owned), role);
        ClientMachine::new(cfg, Box::new(SeededIds::new(7)), Instant::ZERO).unwrap()
    }

    fn drain(m: &mut ClientMachine) -> Vec<Output> {
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    fn frame(msg: &Message) -> Bytes {
        wire::encode::encode_to_bytes(msg).unwrap()
    }

    /// The links the machine asked to open, with their URLs.
    fn opened(out: &[Output]) -> Vec<(LinkId, String)> {
        out.iter()
            .filter_map(|o| match o {
                Output::OpenLink { link, url } => Some((*link, url.clone())),
                _ => None,
            })
            .collect()
    }

    fn transmitted(out: &[Output]) -> Vec<(LinkId, Bytes)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit { link, frame } => Some((*link, frame.clone())),
                _ => None,
            })
            .collect()
    }

    /// Start a client, open its one link and answer its authentication with `response`.
    fn authenticated(m: &mut ClientMachine, response: &Message) -> LinkId {
        m.start(Instant::ZERO);
        let links = opened(&drain(m));
        assert_eq!(links.len(), 1);
        let link = links[0].0;
        m.handle_link_opened(Instant::ZERO, link);
        m.handle_link_message(Instant::ZERO, link, frame(response));
        let out = drain(m);
        assert!(
            out.contains(&Output::Event(Event::LinkReady { link })),
            "not ready: {out:?}"
        );
        link
    }

    fn ok() -> Message {
        Message::AuthResponse {
            success: true,
            error: None,
        }
    }

    fn log(level: &str, msg: &str) -> Message {
        Message::Log {
            level: level.into(),
            msg: msg.into(),
        }
    }

    /// Lose `link` and let the reconnect timer open the next one: its URL, and what it sends
    /// once open.
    fn reconnect(m: &mut ClientMachine, link: LinkId) -> (String, Vec<(LinkId, Bytes)>) {
        m.handle_link_closed(Instant::ZERO, link, "gone");
        drain(m);
        let at = m.poll_timeout().expect("reconnect timer");
        m.handle_timeout(at);
        let links = opened(&drain(m));
        assert_eq!(links.len(), 1, "one new link");
        let (next, url) = links[0].clone();
        assert_ne!(next, link);
        m.handle_link_opened(at, next);
        (url, transmitted(&drain(m)))
    }

    #[test]
    fn version_is_the_crate_version_in_reference_style() {
        assert_eq!(VERSION, format!("v{}", env!("CARGO_PKG_VERSION")));
        assert_eq!(pong_msg(), format!("pong:{{\"version\":\"{VERSION}\"}}"));
    }

    #[test]
    fn a_probe_gets_exactly_one_pong_on_the_same_link() {
        for role in [ClientRole::Forward, ClientRole::Provider] {
            let mut m = machine("ws://h:1", Some("tok"), role);
            let link = authenticated(&mut m, &ok());
            m.handle_link_message(
                Instant::ZERO,
                link,
                frame(&log("trace", "probe:{\"id\":1}")),
            );
            let out = drain(&mut m);
            let sent = transmitted(&out);
            assert_eq!(sent.len(), 1, "{role:?}: {out:?}");
            assert_eq!(sent[0].0, link);
            // Written out by hand: version 01, type 09 (Log), length, the reference's JSON.
            let json = format!(r#"{{"level":"trace","msg":"pong:{{\"version\":\"{VERSION}\"}}"}}"#);
            let mut want = vec![0x01, 0x09];
            want.extend_from_slice(&(json.len() as u32).to_be_bytes());
            want.extend_from_slice(json.as_bytes());
            assert_eq!(&sent[0].1[..], &want[..], "{role:?}");
            // Not surfaced as a peer log: a server may probe often.
            assert!(
                !out.iter()
                    .any(|o| matches!(o, Output::Event(Event::PeerLog { .. }))),
                "{out:?}"
            );
            // A bare "probe:" is a probe too; each probe gets its own single pong.
            m.handle_link_message(Instant::ZERO, link, frame(&log("trace", "probe:")));
            assert_eq!(transmitted(&drain(&mut m)), vec![(link, Bytes::from(want))]);
        }
    }

    #[test]
    fn a_probe_on_one_of_several_links_is_answered_on_that_link() {
        let mut cfg = ClientConfig::new("ws://h:1", Some("tok".into()), ClientRole::Provider);
        cfg.threads = 3;
        let mut m = ClientMachine::new(cfg, Box::new(SeededIds::new(7)), Instant::ZERO).unwrap();
        m.start(Instant::ZERO);
        let links: Vec<LinkId> = opened(&drain(&mut m)).into_iter().map(|l| l.0).collect();
        assert_eq!(links.len(), 3);
        for &l in &links {
            m.handle_link_opened(Instant::ZERO, l);
            m.handle_link_message(Instant::ZERO, l, frame(&ok()));
        }
        drain(&mut m);
        m.handle_link_message(Instant::ZERO, links[1], frame(&log("trace", "probe:x")));
        let sent = transmitted(&drain(&mut m));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, links[1]);
    }

    #[test]
    fn other_logs_get_no_answer() {
        let mut m = machine("ws://h:1", Some("tok"), ClientRole::Forward);
        let link = authenticated(&mut m, &ok());
        for (level, msg) in [
            ("debug", "probe:x"),
            ("info", "probe:x"),
            ("TRACE", "probe:x"),
            ("trace ", "probe:x"),
            ("trace", "probe"),
            ("trace", " probe:x"),
            ("trace", "Probe:x"),
            ("trace", "pong:{\"version\":\"v1.10.3\"}"),
            ("trace", "hello"),
            ("trace", ""),
        ] {
            m.handle_link_message(Instant::ZERO, link, frame(&log(level, msg)));
            let out = drain(&mut m);
            assert!(transmitted(&out).is_empty(), "{level:?} {msg:?}: {out:?}");
            // ... and is shown as before.
            assert!(
                out.contains(&Output::Event(Event::PeerLog {
                    level: level.into(),
                    msg: msg.into()
                })),
                "{level:?} {msg:?}: {out:?}"
            );
        }
    }

    #[test]
    fn an_assigned_token_is_presented_on_reconnect_by_query() {
        let mut m = machine("ws://h:1", None, ClientRole::Provider);
        assert!(m
            .url()
            .contains(&format!("token={}", token_hash(ANONYMOUS))));
        let link = authenticated(
            &mut m,
            &Message::AuthResponseToken {
                token: "assigned".into(),
            },
        );
        let (url, sent) = reconnect(&mut m, link);
        assert!(
            url.contains(&format!("?token={}&", token_hash("assigned"))),
            "{url}"
        );
        assert!(!url.contains(&token_hash(ANONYMOUS)), "{url}");
        assert!(
            sent.is_empty(),
            "query authentication sends no Auth: {sent:?}"
        );
        assert_eq!(m.url(), url);
    }

    #[test]
    fn an_assigned_token_is_presented_on_reconnect_by_auth_message() {
        let mut m = machine("ws://h:1/custom", Some("mine"), ClientRole::Forward);
        m.start(Instant::ZERO);
        let link = opened(&drain(&mut m))[0].0;
        m.handle_link_opened(Instant::ZERO, link);
        let auth = transmitted(&drain(&mut m));
        assert_eq!(auth.len(), 1);
        assert!(matches!(
            wire::decode(auth[0].1.clone(), &Default::default()),
            Ok(Message::Auth(Auth { ref token, .. })) if token == "mine"
        ));
        // The AuthResponse as the reference writes it: 02 | 01 | 03 "new".
        let mut resp = vec![0x02, 0x02, 0x01, 0x03];
        resp.extend_from_slice(b"new");
        m.handle_link_message(Instant::ZERO, link, Bytes::from(resp));
        assert!(drain(&mut m).contains(&Output::Event(Event::LinkReady { link })));
        let (url, sent) = reconnect(&mut m, link);
        assert!(url.starts_with("ws://h:1/custom"), "{url}");
        assert!(!url.contains("token="), "{url}");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            wire::decode(sent[0].1.clone(), &Default::default()).unwrap(),
            Message::Auth(Auth {
                token: "new".into(),
                reverse: false,
                instance: InstanceId::default(),
            })
        );
    }

    #[test]
    fn a_plain_or_late_auth_response_keeps_the_token() {
        let mut m = machine("ws://h:1", Some("mine"), ClientRole::Forward);
        let before = m.url().to_string();
        let link = authenticated(&mut m, &ok());
        let (url, _) = reconnect(&mut m, link);
        assert_eq!(url, before);
        // A token-carrying AuthResponse on a link that is not authenticating changes nothing.
        let link = m.slots[0].link.unwrap();
        m.handle_link_message(Instant::ZERO, link, frame(&ok()));
        m.handle_link_message(
            Instant::ZERO,
            link,
            frame(&Message::AuthResponseToken {
                token: "late".into(),
            }),
        );
        drain(&mut m);
        assert_eq!(m.url(), before);
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(normalize_url("http://h:1").unwrap(), "ws://h:1/socket");
        assert_eq!(normalize_url("https://h/").unwrap(), "wss://h/socket");
        assert_eq!(normalize_url("ws://h/x?a=1").unwrap(), "ws://h/x?a=1");
        assert_eq!(normalize_url("h:1").unwrap(), "wss://h:1/socket");
        assert!(normalize_url("ftp://h").is_err());
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

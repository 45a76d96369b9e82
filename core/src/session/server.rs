//! The server role: the token table, authentication of links, forward dialling, reverse SOCKS5
//! listeners served by providers (round robin), connectors relayed to providers (agent mode),
//! and providers managing their own connector tokens (autonomy).

use crate::session::IoFailure;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::client::{token_hash, EXT_FLOW, EXT_RESUME};
use super::config::{ServerConfig, SocksListen};
use super::output::{Output, DIAL_BLOCKED};
use super::plane::{EntryCheck, PeerKey, Plane, Resume, Routed, Snapshot, SocksRequest, Timer};
use super::{ConnId, LinkId, ListenerId, Machine, UdpId};
use crate::access::{AccessConfig, AccessConfigUpdate, AccessRules};
use crate::ids::{IdSource, InstanceId};
use crate::socks::credentials::ct_eq;
use crate::socks::Reply;
use crate::time::Instant;
use crate::wire::{feature, Connect, ConnectorOp, Message};

/// Why a token operation was refused. The texts are the reference API's error strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Adding a token the server already has.
    #[error("token already exists")]
    Exists,
    /// Adding a connector token that already exists.
    #[error("connector token already exists")]
    ConnectorExists,
    /// Removing (or looking up) a token the server does not have.
    #[error("token not found")]
    NotFound,
    /// A connector token was asked for without its reverse token.
    #[error("reverse_token is required for connector token")]
    NoReverseToken,
    /// A connector token names a reverse token the server does not have.
    #[error("reverse token not found")]
    ReverseNotFound,
    /// The literal `anonymous` (what a client without a token presents) cannot be added.
    #[error("'anonymous' is reserved and cannot be used as a token")]
    Anonymous,
    /// The token does not fit the one-byte length of the Auth message.
    #[error("token is longer than 255 bytes")]
    TooLong,
    /// An empty token.
    #[error("token must not be empty")]
    Empty,
}

/// A reverse token's settings.
#[derive(Clone, Debug)]
pub struct ReverseTokenSpec {
    /// `None`: generate one.
    pub token: Option<String>,
    /// Where its SOCKS5 listener goes (`None`: no listener, providers serve connectors only).
    pub socks: Option<SocksListen>,
    /// Providers of this token may add/remove connector tokens even without `-a`.
    pub allow_manage_connector: bool,
}

/// The kind of a token, as the HTTP API's status reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// Forward clients authenticate with it; the server dials for them.
    Forward,
    /// Reverse providers authenticate with it; it may have a SOCKS5 listener on the server.
    Reverse,
    /// Connectors authenticate with it; their channels are relayed to a provider of its reverse
    /// token.
    Connector,
}

/// One token's line of status (the HTTP API's `/api/status`).
#[derive(Clone, Debug)]
pub struct TokenStatus {
    /// The token, in clear.
    pub token: String,
    /// Its kind.
    pub kind: TokenType,
    /// Links currently authenticated with it (clients, providers or connectors).
    pub clients_count: usize,
    /// Reverse: the SOCKS5 port.
    pub port: Option<u16>,
    /// Reverse: its connector tokens.
    pub connector_tokens: Vec<String>,
    /// Connector: its reverse token.
    pub reverse_token: Option<String>,
}

enum Kind {
    Forward,
    Reverse(Reverse),
    Connector {
        reverse: String,
        /// Autonomy: only this provider serves it ...
        owner: Option<LinkId>,
        /// ... and the client instance it belongs to, which may take it over after a
        /// reconnect (another provider of the same reverse token may not).
        owner_instance: Option<InstanceId>,
    },
}

struct Reverse {
    socks: Option<SocksListen>,
    allow_manage_connector: bool,
    listener: Option<ListenerId>,
    providers: Vec<LinkId>,
    next: usize,
    /// SOCKS requests on its listener waiting for a provider.
    waiting_socks: VecDeque<ConnId>,
    /// Connector Connects waiting for a provider: (relay channel, Connect, connector token).
    waiting_relays: VecDeque<(u64, Connect, String)>,
    /// Why the last attempt to open the listener failed.
    listen_error: Option<IoFailure>,
}

/// Where a reverse token's SOCKS5 listener stands (the HTTP API answers once it has settled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerState {
    /// Not a reverse token, or one without a listener (autonomy, not started yet).
    None,
    /// The listener was asked for and the driver has not reported yet.
    Opening,
    /// Serving on this address.
    Bound(SocketAddr),
    /// The driver could not bind it; carries the failure.
    Failed(IoFailure),
}

/// Whose channels a link carries, for resuming them: the same token and client instance. A
/// peer that named no instance can resume nothing (its key is its link's alone).
fn peer_key(token: &str, instance: Option<InstanceId>, link: LinkId) -> PeerKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    match instance {
        Some(i) => {
            h.update([1]);
            h.update(i.0);
        }
        None => {
            h.update([0]);
            h.update(link.0.to_be_bytes());
        }
    }
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    PeerKey(k)
}

/// Client instances remembered for counting reconnections, beyond which the oldest are forgotten.
const DEPARTED_MAX: usize = 4096;

struct Token {
    kind: Kind,
    links: Vec<LinkId>,
    /// Its own access rules (empty: none). Forward: checked, with the server-wide dial rules,
    /// before dialling for its clients. Reverse: checked at its SOCKS5 port instead of the
    /// server-wide entry rules. Connector: checked before a Connect is relayed to a provider.
    rules: Arc<AccessRules>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    /// Accepted, no valid credentials yet.
    Pending,
    Forward,
    Provider,
    Connector,
}

struct Peer {
    role: Role,
    token: Option<String>,
    instance: Option<InstanceId>,
    /// Its URL query announced our extensions (`ext=flow`): it is one of ours ...
    ext_flow: bool,
    /// ... with this flow-control window (`flow_window=N`) ...
    flow_window: Option<usize>,
    /// ... and resumes its channels across a lost link (`ext=flow,resume`).
    ext_resume: bool,
}

/// The server machine.
/// What a connector token's rules say of a request.
enum Verdict {
    Allowed,
    Denied,
    /// Decided once this name is resolved.
    Resolve(String),
}

/// The server role's protocol machine: authenticates links, keeps the tokens, dials for forward
/// clients, relays connectors' channels to providers and serves reverse tokens' SOCKS5 listeners.
/// Driven through [`Machine`] plus the token-management methods below.
pub struct ServerMachine {
    cfg: ServerConfig,
    plane: Plane,
    /// Ordered, so that what is sent to several links goes out in a reproducible order.
    tokens: BTreeMap<String, Token>,
    by_hash: BTreeMap<String, String>,
    peers: BTreeMap<LinkId, Peer>,
    /// Which reverse token a listener serves.
    listener_token: BTreeMap<ListenerId, String>,
    /// Reverse SOCKS requests held while the provider picked for them answers a ping: its
    /// reverse token and the requests, by provider.
    probing: BTreeMap<LinkId, (String, Vec<ConnId>)>,
    /// Providers that did not answer that ping in time: passed over until heard from again.
    suspect: BTreeSet<LinkId>,
    /// Authenticated links lost per client instance: that instance's next links are
    /// reconnections (metrics). `departed_order` is oldest first, for forgetting.
    departed: BTreeMap<InstanceId, u32>,
    /// Connector requests held (relay channels with no provider yet) while the name their
    /// token's rules need is resolved, by the query handle of the lookup.
    resolving: BTreeMap<ConnId, (u64, Connect, String)>,
    departed_order: VecDeque<InstanceId>,
    /// The server-wide access rules (`ServerConfig::access`, replaced at run time through
    /// [`ServerMachine::set_access_config`]).
    entry_rules: Arc<AccessRules>,
    dial_rules: Arc<AccessRules>,
}

impl ServerMachine {
    /// A server with no tokens yet; add them with the `add_*` methods before or while running.
    pub fn new(cfg: ServerConfig, ids: Box<dyn IdSource>, now: Instant) -> Self {
        let plane = Plane::new(
            cfg.data.clone(),
            cfg.timings.clone(),
            cfg.fast_open,
            ids,
            now,
        );
        ServerMachine {
            plane,
            tokens: BTreeMap::new(),
            by_hash: BTreeMap::new(),
            peers: BTreeMap::new(),
            listener_token: BTreeMap::new(),
            probing: BTreeMap::new(),
            suspect: BTreeSet::new(),
            departed: BTreeMap::new(),
            resolving: BTreeMap::new(),
            departed_order: VecDeque::new(),
            entry_rules: Arc::new(cfg.access.entry.clone()),
            dial_rules: Arc::new(cfg.access.dial.clone()),
            cfg,
        }
    }

    /// The data plane, for status, counters and tests.
    #[cfg(feature = "internals")]
    pub fn plane(&self) -> &Plane {
        &self.plane
    }

    pub(crate) fn data_plane(&self) -> &Plane {
        &self.plane
    }

    /// A random token as the reference generates them: 8 random bytes in lowercase hex.
    pub fn generate_token(&mut self) -> String {
        let mut b = [0u8; 8];
        self.plane.ids.fill(&mut b);
        hex::encode(b)
    }

    fn check_new(&mut self, token: Option<String>) -> Result<String, TokenError> {
        let token = match token {
            Some(t) if t.is_empty() => return Err(TokenError::Empty),
            Some(t) => t,
            None => self.generate_token(),
        };
        if token == super::client::ANONYMOUS {
            return Err(TokenError::Anonymous);
        }
        if token.len() > 255 {
            return Err(TokenError::TooLong);
        }
        if self.tokens.contains_key(&token) {
            return Err(TokenError::Exists);
        }
        Ok(token)
    }

    fn insert(&mut self, token: String, kind: Kind) {
        self.by_hash.insert(token_hash(&token), token.clone());
        self.tokens.insert(
            token,
            Token {
                kind,
                links: Vec::new(),
                rules: Arc::default(),
            },
        );
    }

    /// Add a forward token (`None`: generate). Returns the token.
    pub fn add_forward_token(&mut self, token: Option<String>) -> Result<String, TokenError> {
        self.add_forward_token_with_rules(token, AccessRules::default())
    }

    /// Add a forward token with its own access rules (empty: none): every Connect of its
    /// clients must pass them **and** the server-wide dial rules. As in the reference, token
    /// rules also refuse a UDP associate (its Connect names no destination to check).
    pub fn add_forward_token_with_rules(
        &mut self,
        token: Option<String>,
        rules: AccessRules,
    ) -> Result<String, TokenError> {
        let token = self.check_new(token)?;
        self.insert(token.clone(), Kind::Forward);
        self.set_rules(&token, rules);
        Ok(token)
    }

    /// Add a reverse token with its own access rules (empty: none), checked at its SOCKS5
    /// port **instead of** the server-wide entry rules (see
    /// [`entry_rules_for_token`](Self::entry_rules_for_token)). They are not applied to
    /// connector requests, as in the reference.
    pub fn add_reverse_token_with_rules(
        &mut self,
        spec: ReverseTokenSpec,
        rules: AccessRules,
    ) -> Result<String, TokenError> {
        // The listener may be asked for already, but no request reaches the machine before
        // this returns.
        let token = self.add_reverse_token(spec)?;
        self.set_rules(&token, rules);
        Ok(token)
    }

    /// Add a connector token with its own access rules (empty: none), checked on the server
    /// before a Connect of its connectors is relayed to a provider (the reference's
    /// server-side connector check).
    ///
    /// A domain target is resolved on the server, as in the reference (the request is held
    /// meanwhile, like one waiting for a provider): allowed if the rules allow any of its
    /// addresses, denied if it does not resolve. UDP associates are refused, as in the
    /// reference.
    pub fn add_connector_token_with_rules(
        &mut self,
        token: Option<String>,
        reverse: &str,
        rules: AccessRules,
    ) -> Result<String, TokenError> {
        let token = self.add_connector_token(token, reverse)?;
        self.set_rules(&token, rules);
        Ok(token)
    }

    fn set_rules(&mut self, token: &str, rules: AccessRules) {
        if let Some(t) = self.tokens.get_mut(token) {
            t.rules = Arc::new(rules);
        }
    }

    /// The access rules of `token` itself (empty when it has none); `None` for an unknown
    /// token.
    pub fn token_rules(&self, token: &str) -> Option<&AccessRules> {
        self.tokens.get(token).map(|t| &*t.rules)
    }

    /// The rules the front checks a request on reverse token `token`'s SOCKS5 (or HTTP) port
    /// against, before anything is sent to a provider: the token's own rules when it has
    /// any, otherwise the server-wide entry rules. As in the reference, a token rule applies
    /// *instead of* the server-wide one, not in addition to it (relay.go `checkEntryAccess`).
    /// An unknown token gets the server-wide entry rules. A denial answers SOCKS5 0x02 or
    /// HTTP 403. For a SOCKS5 UDP association the reference checks each datagram's
    /// destination against the same rules and drops a denied one silently (relay.go
    /// 1867-1870).
    pub fn entry_rules_for_token(&self, token: &str) -> &AccessRules {
        match self.tokens.get(token) {
            Some(t) if !t.rules.is_empty() => &t.rules,
            _ => &self.entry_rules,
        }
    }

    /// The server-wide access rules in force (`GET /api/config/access`).
    pub fn access_config(&self) -> AccessConfig {
        AccessConfig {
            entry: (*self.entry_rules).clone(),
            dial: (*self.dial_rules).clone(),
        }
    }

    /// Replace the server-wide access rules. They apply to requests and Connects from now
    /// on; channels already open stay.
    pub fn set_access_config(&mut self, access: AccessConfig) {
        info!(entry = %access.entry, dial = %access.dial, "server-wide access rules set");
        self.entry_rules = Arc::new(access.entry);
        self.dial_rules = Arc::new(access.dial);
    }

    /// Replace the sides of the server-wide access rules that `update` names
    /// (`PUT /api/config/access`).
    pub fn update_access_config(&mut self, update: AccessConfigUpdate) {
        let mut access = self.access_config();
        update.apply_to(&mut access);
        self.set_access_config(access);
    }

    /// Add a reverse token; its SOCKS5 listener opens now with `socks_nowait`, else with the
    /// first provider. A token whose providers manage their own connectors gets none, as in
    /// the reference (its port reads -1): such providers serve only their own connectors, and
    /// a shared SOCKS5 port would reach them all (spec 11.11).
    pub fn add_reverse_token(&mut self, spec: ReverseTokenSpec) -> Result<String, TokenError> {
        let token = self.check_new(spec.token)?;
        let socks = spec.socks.filter(|_| !spec.allow_manage_connector);
        self.insert(
            token.clone(),
            Kind::Reverse(Reverse {
                socks,
                allow_manage_connector: spec.allow_manage_connector,
                listener: None,
                providers: Vec::new(),
                next: 0,
                waiting_socks: VecDeque::new(),
                waiting_relays: VecDeque::new(),
                listen_error: None,
            }),
        );
        if self.cfg.socks_nowait {
            self.open_listener(&token);
        }
        Ok(token)
    }

    /// Add a connector token for an existing reverse token.
    pub fn add_connector_token(
        &mut self,
        token: Option<String>,
        reverse: &str,
    ) -> Result<String, TokenError> {
        if reverse.is_empty() {
            return Err(TokenError::NoReverseToken);
        }
        if !matches!(
            self.tokens.get(reverse).map(|t| &t.kind),
            Some(Kind::Reverse(_))
        ) {
            return Err(TokenError::ReverseNotFound);
        }
        let token = self.check_new(token)?;
        self.insert(
            token.clone(),
            Kind::Connector {
                reverse: reverse.to_string(),
                owner: None,
                owner_instance: None,
            },
        );
        Ok(token)
    }

    /// Remove a token: its links are closed, its listener too; a reverse token takes its
    /// connector tokens with it.
    pub fn remove_token(&mut self, now: Instant, token: &str) -> Result<(), TokenError> {
        let Some(t) = self.tokens.remove(token) else {
            return Err(TokenError::NotFound);
        };
        self.by_hash.remove(&token_hash(token));
        for link in &t.links {
            // Its peer cannot come back: its channels end now rather than wait for it.
            self.plane
                .set_link_resume(*link, PeerKey::default(), Resume::Off);
            self.plane.emit(Output::CloseLink { link: *link });
            self.drop_peer(now, *link, "token removed");
        }
        if let Kind::Reverse(r) = t.kind {
            if let Some(l) = r.listener {
                self.listener_token.remove(&l);
                self.plane.unlisten(l);
            }
            for conn in r.waiting_socks {
                self.plane.fail_socks(conn, Reply::NetworkUnreachable);
            }
            for (key, _, _) in r.waiting_relays {
                self.plane.fail_relay(key, "token removed");
            }
            let connectors: Vec<String> = self
                .tokens
                .iter()
                .filter(
                    |(_, c)| matches!(&c.kind, Kind::Connector { reverse, .. } if reverse == token),
                )
                .map(|(k, _)| k.clone())
                .collect();
            for c in connectors {
                let _ = self.remove_token(now, &c);
            }
        }
        Ok(())
    }

    /// What the HTTP API's status shows.
    pub fn status(&self) -> Vec<TokenStatus> {
        let mut out: Vec<TokenStatus> = self
            .tokens
            .iter()
            .map(|(token, t)| {
                let (kind, port, connector_tokens, reverse_token) = match &t.kind {
                    Kind::Forward => (TokenType::Forward, None, vec![], None),
                    Kind::Reverse(r) => {
                        let port = r
                            .listener
                            .and_then(|l| self.plane.listeners.get(&l))
                            .and_then(|l| l.bound.map(|a| a.port()))
                            .or(r.socks.as_ref().map(|s| s.port));
                        let mut conns: Vec<String> = self
                            .tokens
                            .iter()
                            .filter(|(_, c)| matches!(&c.kind, Kind::Connector { reverse, .. } if reverse == token))
                            .map(|(k, _)| k.clone())
                            .collect();
                        conns.sort();
                        (TokenType::Reverse, port, conns, None)
                    }
                    Kind::Connector { reverse, .. } => (TokenType::Connector, None, vec![], Some(reverse.clone())),
                };
                TokenStatus {
                    token: token.clone(),
                    kind,
                    clients_count: t.links.len(),
                    port,
                    connector_tokens,
                    reverse_token,
                }
            })
            .collect();
        out.sort_by(|a, b| a.token.cmp(&b.token));
        out
    }

    /// A WebSocket upgrade on the socket path was accepted; `path_and_query` is the request
    /// target. A token in the query authenticates at once; otherwise the first message must be
    /// Auth. Returns the link's handle.
    pub fn handle_link_accept(&mut self, now: Instant, path_and_query: &str) -> LinkId {
        let link = self.plane.new_link_id();
        self.plane.add_link(now, link);
        self.peers.insert(
            link,
            Peer {
                role: Role::Pending,
                token: None,
                instance: None,
                ext_flow: false,
                flow_window: None,
                ext_resume: false,
            },
        );
        // A connection that upgrades and never authenticates would hold its socket forever.
        self.plane
            .timers
            .set(Timer::Auth(link), now + self.cfg.timings.handshake_timeout);
        let query = path_and_query.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut hash = None;
        let mut reverse = None;
        let mut instance = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "token" => hash = Some(v.to_ascii_lowercase()),
                // Absent or empty: any role the token has (the reference's rule).
                "reverse" if !v.is_empty() => {
                    reverse = Some(v.eq_ignore_ascii_case("true") || v == "1")
                }
                "instance" => {
                    instance = uuid::Uuid::parse_str(v)
                        .ok()
                        .map(|u| InstanceId(*u.as_bytes()))
                }
                "ext" => {
                    if let Some(p) = self.peers.get_mut(&link) {
                        p.ext_flow |= v.split(',').any(|f| f == EXT_FLOW);
                        p.ext_resume |= v.split(',').any(|f| f == EXT_RESUME);
                    }
                }
                "flow_window" => {
                    if let (Some(p), Ok(w)) = (self.peers.get_mut(&link), v.parse::<u32>()) {
                        p.flow_window = Some(w as usize);
                    }
                }
                _ => {}
            }
        }
        if let Some(hash) = hash {
            if hash.len() != 64 {
                self.refuse(link, "invalid token format");
                return link;
            }
            let token = self.token_by_hash(&hash);
            self.authenticate(now, link, token, reverse, instance);
        }
        link
    }

    /// The token whose SHA-256 hex is `offered`. Every token's hash is compared in full, in
    /// constant time, and nothing is looked up by what the peer sent: how long the answer
    /// takes tells a guesser nothing about how close a guess came (a map lookup would stop at
    /// the first differing byte, or order the guess among the real tokens).
    pub fn token_by_hash(&self, offered: &str) -> Option<String> {
        let mut found = None;
        for (hash, token) in &self.by_hash {
            if ct_eq(hash.as_bytes(), offered.as_bytes()) {
                found = Some(token);
            }
        }
        found.cloned()
    }

    fn refuse(&mut self, link: LinkId, reason: &str) {
        // Never the token offered: it may be a near miss of a real one.
        warn!(%link, %reason, "authentication refused");
        self.plane.send(
            link,
            &Message::AuthResponse {
                success: false,
                error: Some(reason.to_string()),
            },
        );
        self.plane.emit(Output::CloseLink { link });
    }

    fn authenticate(
        &mut self,
        now: Instant,
        link: LinkId,
        token: Option<String>,
        reverse: Option<bool>,
        instance: Option<InstanceId>,
    ) {
        let role = token
            .as_ref()
            .and_then(|t| self.tokens.get(t))
            .and_then(|t| match (&t.kind, reverse) {
                (Kind::Forward, Some(false) | None) => Some(Role::Forward),
                (Kind::Reverse(_), Some(true) | None) => Some(Role::Provider),
                (Kind::Connector { .. }, Some(false) | None) => Some(Role::Connector),
                _ => None,
            });
        let (Some(role), Some(token)) = (role, token) else {
            self.refuse(link, "invalid token");
            return;
        };
        if let Some(p) = self.peers.get_mut(&link) {
            p.role = role.clone();
            p.token = Some(token.clone());
            p.instance = instance;
        }
        if let Some(i) = instance {
            if let Some(n) = self.departed.get_mut(&i) {
                *n -= 1;
                if *n == 0 {
                    self.departed.remove(&i);
                    self.departed_order.retain(|d| *d != i);
                }
                self.plane.stats.reconnects += 1;
            }
        }
        if let Some(t) = self.tokens.get_mut(&token) {
            t.links.push(link);
        }
        self.plane.timers.cancel(Timer::Auth(link));
        // Hello goes first: a client serves the requests waiting for this link as soon as it
        // reads AuthResponse, and their channels must know the link speaks flow control.
        let peer = self.peers.get(&link);
        let ext_flow = peer.is_some_and(|p| p.ext_flow);
        let grace = !self.cfg.timings.transport_grace.is_zero();
        let exact = ext_flow && self.cfg.data.channel_flow && grace;
        let exact = exact && peer.is_some_and(|p| p.ext_resume);
        if ext_flow && self.cfg.data.channel_flow {
            let ours = self.plane.own_window();
            let window = peer
                .and_then(|p| p.flow_window)
                .map_or(ours, |w| w.min(ours));
            let window = window.max(super::plane::MIN_WINDOW).min(u32::MAX as usize);
            let features = feature::CHANNEL_FLOW | if exact { feature::RESUME } else { 0 };
            self.plane.send(
                link,
                &Message::Hello {
                    features,
                    window: window as u32,
                },
            );
            self.plane.set_flow_window(link, window);
        }
        // Resuming: our own clients exactly; a reference client (1.10.3) with its resume
        // Connect, for the channels we dial for it.
        let resume = if exact {
            Resume::Exact
        } else if !ext_flow && role == Role::Forward {
            Resume::Legacy
        } else {
            Resume::Off
        };
        let owner = peer_key(&token, instance, link);
        self.plane.set_link_resume(link, owner, resume);
        self.plane.send(
            link,
            &Message::AuthResponse {
                success: true,
                error: None,
            },
        );
        self.plane.set_link_ready(now, link);
        info!(%link, role = ?role, "client authenticated");
        // Channels of this peer that lost their link continue on this one.
        self.plane.resume_suspended(now);
        match role {
            Role::Provider => {
                if let Some(Kind::Reverse(r)) = self.tokens.get_mut(&token).map(|t| &mut t.kind) {
                    r.providers.push(link);
                }
                self.open_listener(&token);
                self.serve_waiting(now, &token);
                self.announce_partners(&token);
            }
            Role::Connector => {
                if let Some(reverse) = self.reverse_of(&token) {
                    self.announce_partners(&reverse);
                }
            }
            _ => {}
        }
    }

    fn reverse_of(&self, connector: &str) -> Option<String> {
        match self.tokens.get(connector).map(|t| &t.kind) {
            Some(Kind::Connector { reverse, .. }) => Some(reverse.clone()),
            _ => None,
        }
    }

    /// Partners: providers learn how many connectors share their token, connectors how many
    /// providers serve theirs.
    fn announce_partners(&mut self, reverse: &str) {
        let providers: Vec<LinkId> = match self.tokens.get(reverse).map(|t| &t.kind) {
            Some(Kind::Reverse(r)) => r.providers.clone(),
            _ => return,
        };
        let connectors: Vec<LinkId> = self
            .tokens
            .values()
            .filter(|t| matches!(&t.kind, Kind::Connector { reverse: r, .. } if r == reverse))
            .flat_map(|t| t.links.iter().copied())
            .collect();
        for p in &providers {
            self.plane.send(
                *p,
                &Message::Partners {
                    count: connectors.len() as i64,
                },
            );
        }
        for c in &connectors {
            self.plane.send(
                *c,
                &Message::Partners {
                    count: providers.len() as i64,
                },
            );
        }
    }

    /// Open a reverse token's SOCKS5 listener now, provider or not (tokens added at run time).
    pub fn open_listener_now(&mut self, token: &str) {
        self.open_listener(token);
    }

    fn open_listener(&mut self, token: &str) {
        let Some(Kind::Reverse(r)) = self.tokens.get_mut(token).map(|t| &mut t.kind) else {
            return;
        };
        if r.listener.is_some() {
            return;
        }
        let Some(socks) = r.socks.clone() else {
            return;
        };
        let l = self.plane.listen(socks, token.to_string());
        if let Some(Kind::Reverse(r)) = self.tokens.get_mut(token).map(|t| &mut t.kind) {
            r.listener = Some(l);
            r.listen_error = None;
        }
        self.listener_token.insert(l, token.to_string());
    }

    /// Where the SOCKS5 listener of reverse token `token` stands.
    pub fn listener_state(&self, token: &str) -> ListenerState {
        let Some(Kind::Reverse(r)) = self.tokens.get(token).map(|t| &t.kind) else {
            return ListenerState::None;
        };
        match (r.listener, &r.listen_error) {
            (Some(l), _) => match self.plane.listeners.get(&l).and_then(|l| l.bound) {
                Some(addr) => ListenerState::Bound(addr),
                None => ListenerState::Opening,
            },
            (None, Some(e)) => ListenerState::Failed(e.clone()),
            (None, None) => ListenerState::None,
        }
    }

    /// Next provider of a reverse token, round robin; `owner` restricts to one link.
    fn pick_provider(&mut self, reverse: &str, owner: Option<LinkId>) -> Option<LinkId> {
        let Some(Kind::Reverse(r)) = self.tokens.get_mut(reverse).map(|t| &mut t.kind) else {
            return None;
        };
        if let Some(o) = owner {
            return r.providers.contains(&o).then_some(o);
        }
        for _ in 0..r.providers.len() {
            r.next = (r.next + 1) % r.providers.len();
            let p = r.providers[r.next];
            if !self.suspect.contains(&p) {
                return Some(p);
            }
        }
        None
    }

    /// Give a SOCKS request to provider `p`: at once if it was heard from within the probe
    /// time, else once it answers a ping (the request is held meanwhile). A provider whose
    /// host died without closing its connection would otherwise take requests into silence.
    fn open_on_provider(&mut self, now: Instant, token: &str, conn: ConnId, p: LinkId) {
        let probe = self.cfg.timings.provider_probe;
        if self.plane.heard_within(p, now, probe) {
            self.plane.start_socks_channel(now, conn, p);
            return;
        }
        let held = &mut self
            .probing
            .entry(p)
            .or_insert_with(|| (token.to_string(), Vec::new()))
            .1;
        held.push(conn);
        if held.len() == 1 {
            self.plane.emit(Output::Ping { link: p });
            self.plane.timers.set(Timer::Probe(p), now + probe);
        }
    }

    /// The peer on `link` showed it is alive: requests held for it go, and a provider passed
    /// over for not answering is used again.
    fn provider_heard(&mut self, now: Instant, link: LinkId) {
        if self.probing.is_empty() && self.suspect.is_empty() {
            return;
        }
        if let Some((_, conns)) = self.probing.remove(&link) {
            self.plane.timers.cancel(Timer::Probe(link));
            for conn in conns {
                self.plane.start_socks_channel(now, conn, link);
            }
        }
        if self.suspect.remove(&link) {
            if let Some(token) = self.peers.get(&link).and_then(|p| p.token.clone()) {
                self.serve_waiting(now, &token);
            }
        }
    }

    /// A provider did not answer the ping in time: pass it over until it is heard from, and
    /// give the requests held for it to the others.
    fn probe_failed(&mut self, now: Instant, link: LinkId) {
        let Some((token, conns)) = self.probing.remove(&link) else {
            return;
        };
        debug!(%link, "provider did not answer a ping in time; trying another");
        self.suspect.insert(link);
        for conn in conns {
            if self.plane.is_waiting(conn) {
                self.route_socks(now, &token, conn);
            }
        }
    }

    fn serve_waiting(&mut self, now: Instant, reverse: &str) {
        loop {
            let Some(Kind::Reverse(r)) = self.tokens.get_mut(reverse).map(|t| &mut t.kind) else {
                return;
            };
            let Some(conn) = r.waiting_socks.pop_front() else {
                break;
            };
            if !self.plane.is_waiting(conn) {
                continue;
            }
            match self.pick_provider(reverse, None) {
                Some(p) => self.open_on_provider(now, reverse, conn, p),
                None => {
                    if let Some(Kind::Reverse(r)) =
                        self.tokens.get_mut(reverse).map(|t| &mut t.kind)
                    {
                        r.waiting_socks.push_front(conn);
                    }
                    return;
                }
            }
        }
        let pending: Vec<(u64, Connect, String)> =
            match self.tokens.get_mut(reverse).map(|t| &mut t.kind) {
                Some(Kind::Reverse(r)) => r.waiting_relays.drain(..).collect(),
                _ => return,
            };
        for (key, connect, token) in pending {
            // The owner is read afresh: it changes when a provider reconnects.
            let owner = match self.tokens.get(&token).map(|t| &t.kind) {
                Some(Kind::Connector { owner, .. }) => *owner,
                _ => {
                    self.plane.fail_relay(key, "connector token removed");
                    continue;
                }
            };
            match self.pick_provider(reverse, owner) {
                Some(p) => self.plane.route_to(now, key, p, &connect),
                None => {
                    if let Some(Kind::Reverse(r)) =
                        self.tokens.get_mut(reverse).map(|t| &mut t.kind)
                    {
                        r.waiting_relays.push_back((key, connect, token));
                    }
                }
            }
        }
    }

    fn on_socks_request(&mut self, now: Instant, req: SocksRequest) {
        let Some(token) = self.listener_token.get(&req.listener).cloned() else {
            self.plane.fail_socks(req.conn, Reply::GeneralFailure);
            return;
        };
        let rules = self.entry_rules_arc(&token);
        if self.plane.check_entry(req.conn, &rules) != EntryCheck::Allowed {
            return;
        }
        self.route_socks(now, &token, req.conn);
    }

    /// The entry rules at `token`'s port, shared ([`ServerMachine::entry_rules_for_token`]).
    fn entry_rules_arc(&self, token: &str) -> Arc<AccessRules> {
        match self.tokens.get(token) {
            Some(t) if !t.rules.is_empty() => t.rules.clone(),
            _ => self.entry_rules.clone(),
        }
    }

    /// Find a provider of `token` for a SOCKS request, or let the request wait for one.
    fn route_socks(&mut self, now: Instant, token: &str, conn: ConnId) {
        match self.pick_provider(token, None) {
            Some(p) => self.open_on_provider(now, token, conn, p),
            None => {
                if let Some(Kind::Reverse(r)) = self.tokens.get_mut(token).map(|t| &mut t.kind) {
                    r.waiting_socks.push_back(conn);
                }
                self.plane
                    .timers
                    .set(Timer::Conn(conn), now + self.cfg.timings.provider_wait);
            }
        }
    }

    fn on_connect(&mut self, now: Instant, link: LinkId, c: Connect) {
        let Some(peer) = self.peers.get(&link) else {
            return;
        };
        match peer.role {
            Role::Forward => {
                let own = peer
                    .token
                    .as_ref()
                    .and_then(|t| self.tokens.get(t))
                    .map(|t| t.rules.clone())
                    .unwrap_or_default();
                if !own.is_empty() && c.protocol == crate::wire::Protocol::Udp {
                    info!(%link, channel = %c.channel, "UDP associate refused: the token has access rules");
                    self.plane.refuse_connect(link, c.channel, DIAL_BLOCKED);
                    return;
                }
                let rules = vec![self.dial_rules.clone(), own];
                self.plane.dial_with_rules(now, link, c, rules)
            }
            Role::Connector => {
                let token = peer.token.clone().unwrap_or_default();
                let (reverse, owner) = match self.tokens.get(&token).map(|t| &t.kind) {
                    Some(Kind::Connector { reverse, owner, .. }) => (reverse.clone(), *owner),
                    _ => return,
                };
                let to = match self.connector_allows(link, &token, &c) {
                    Verdict::Allowed => self.pick_provider(&reverse, owner),
                    Verdict::Denied => {
                        self.plane.refuse_connect(link, c.channel, DIAL_BLOCKED);
                        return;
                    }
                    Verdict::Resolve(host) => {
                        // Held like a request waiting for a provider (what the connector
                        // sends meanwhile is kept), routed once the name passes.
                        let Some(key) = self.plane.relay(now, link, c.clone(), None) else {
                            return;
                        };
                        let query = self.plane.new_query();
                        self.resolving.insert(query, (key, c, token));
                        self.plane.emit(Output::Resolve {
                            conn: query,
                            host,
                            timeout: self.cfg.timings.connect_timeout,
                        });
                        return;
                    }
                };
                let Some(key) = self.plane.relay(now, link, c.clone(), to) else {
                    return;
                };
                if to.is_none() {
                    if let Some(Kind::Reverse(r)) =
                        self.tokens.get_mut(&reverse).map(|t| &mut t.kind)
                    {
                        r.waiting_relays.push_back((key, c, token));
                    }
                }
            }
            Role::Provider | Role::Pending => {
                self.plane
                    .refuse_connect(link, c.channel, "connect not allowed on this link");
            }
        }
    }

    /// Whether connector token `token`'s rules let Connect `c` be relayed: any target when it
    /// has none; otherwise an IP target they allow, or a name once resolved here (the
    /// reference's check resolves on the server too); never a UDP associate. A refusal is
    /// logged.
    fn connector_allows(&self, link: LinkId, token: &str, c: &Connect) -> Verdict {
        let Some(rules) = self.tokens.get(token).map(|t| &t.rules) else {
            return Verdict::Allowed;
        };
        if rules.is_empty() {
            return Verdict::Allowed;
        }
        let verdict = match (&c.protocol, &c.target) {
            (crate::wire::Protocol::Tcp, Some((host, port))) => {
                match rules.check_target(&crate::addr::TargetAddr::from_host_port(host, *port)) {
                    Some(v) => v,
                    None => return Verdict::Resolve(host.clone()),
                }
            }
            _ => false,
        };
        if verdict {
            Verdict::Allowed
        } else {
            let target = c.target.as_ref().map_or_else(
                || "UDP associate".to_string(),
                |(h, p)| crate::addr::TargetAddr::from_host_port(h, *p).to_string(),
            );
            info!(%link, channel = %c.channel, %target, "connector request refused: destination blocked by the token's access rules");
            Verdict::Denied
        }
    }

    /// The name of a held connector request resolved to `addrs` (none: it does not): routed
    /// to a provider if the token's rules allow any of them, else refused.
    fn connector_resolved(
        &mut self,
        now: Instant,
        key: u64,
        connect: Connect,
        token: String,
        addrs: &[std::net::IpAddr],
    ) {
        let (reverse, owner, allowed) = match self.tokens.get(&token) {
            Some(Token {
                kind: Kind::Connector { reverse, owner, .. },
                rules,
                ..
            }) => {
                let port = connect.target.as_ref().map_or(0, |t| t.1);
                (reverse.clone(), *owner, rules.check_resolved(addrs, port))
            }
            _ => {
                self.plane.fail_relay(key, "connector token removed");
                return;
            }
        };
        if !allowed {
            let target = connect.target.as_ref().map_or_else(String::new, |(h, p)| {
                crate::addr::TargetAddr::from_host_port(h, *p).to_string()
            });
            info!(channel = %connect.channel, %target, "connector request refused: destination blocked by the token's access rules");
            self.plane.fail_relay(key, DIAL_BLOCKED);
            return;
        }
        match self.pick_provider(&reverse, owner) {
            Some(p) => self.plane.route_to(now, key, p, &connect),
            None => {
                if let Some(Kind::Reverse(r)) = self.tokens.get_mut(&reverse).map(|t| &mut t.kind) {
                    r.waiting_relays.push_back((key, connect, token));
                }
            }
        }
    }

    fn on_connector(
        &mut self,
        now: Instant,
        link: LinkId,
        channel: crate::ids::ChannelId,
        token: String,
        op: ConnectorOp,
    ) {
        let peer_token = self
            .peers
            .get(&link)
            .filter(|p| p.role == Role::Provider)
            .and_then(|p| p.token.clone());
        let respond = |plane: &mut Plane, result: Result<Option<String>, String>| {
            let msg = match result {
                Ok(token) => Message::ConnectorResponse {
                    channel,
                    success: true,
                    error: None,
                    token,
                },
                Err(e) => Message::ConnectorResponse {
                    channel,
                    success: false,
                    error: Some(e),
                    token: None,
                },
            };
            plane.send(link, &msg);
        };
        let Some(reverse) = peer_token else {
            respond(
                &mut self.plane,
                Err("only providers manage connector tokens".into()),
            );
            return;
        };
        let allowed = self.cfg.connector_autonomy
            || matches!(self.tokens.get(&reverse).map(|t| &t.kind), Some(Kind::Reverse(r)) if r.allow_manage_connector);
        if !allowed {
            respond(
                &mut self.plane,
                Err("connector management is not allowed".into()),
            );
            return;
        }
        match op {
            ConnectorOp::Add => {
                // A provider that reconnects adds its token again and takes it over; another
                // provider of the same reverse token may not (isolation).
                let instance = self.peers.get(&link).and_then(|p| p.instance);
                let owner_alive =
                    |o: LinkId| self.peers.get(&o).is_some_and(|p| p.role == Role::Provider);
                if let Some(Token {
                    kind:
                        Kind::Connector {
                            reverse: r,
                            owner,
                            owner_instance,
                        },
                    ..
                }) = self.tokens.get(&token)
                {
                    let mine = *r == reverse
                        && match owner {
                            None => true,
                            Some(o) => {
                                *o == link
                                    || !owner_alive(*o)
                                    || (instance.is_some() && instance == *owner_instance)
                            }
                        };
                    if !mine {
                        respond(
                            &mut self.plane,
                            Err(TokenError::ConnectorExists.to_string()),
                        );
                        return;
                    }
                    if let Some(Token {
                        kind:
                            Kind::Connector {
                                owner,
                                owner_instance,
                                ..
                            },
                        ..
                    }) = self.tokens.get_mut(&token)
                    {
                        if owner.is_some() {
                            *owner = Some(link);
                            *owner_instance = instance;
                        }
                    }
                    respond(&mut self.plane, Ok(Some(token)));
                    // Connectors that waited for this provider to come back go now.
                    self.serve_waiting(now, &reverse);
                    return;
                }
                let wanted = if token.is_empty() { None } else { Some(token) };
                match self.check_new(wanted) {
                    Ok(t) => {
                        self.insert(
                            t.clone(),
                            Kind::Connector {
                                reverse: reverse.clone(),
                                owner: Some(link),
                                owner_instance: instance,
                            },
                        );
                        info!(%link, "provider added a connector token");
                        respond(&mut self.plane, Ok(Some(t)));
                    }
                    Err(TokenError::Exists) => respond(
                        &mut self.plane,
                        Err(TokenError::ConnectorExists.to_string()),
                    ),
                    Err(TokenError::Anonymous) => respond(
                        &mut self.plane,
                        Err(
                            "'anonymous' is reserved and cannot be used as a connector token"
                                .into(),
                        ),
                    ),
                    Err(e) => respond(&mut self.plane, Err(e.to_string())),
                }
            }
            ConnectorOp::Remove => {
                let owned = matches!(self.tokens.get(&token).map(|t| &t.kind), Some(Kind::Connector { reverse: r, .. }) if *r == reverse);
                // The reference answers success for any removal; only our own tokens go.
                respond(&mut self.plane, Ok(None));
                if !owned {
                    return;
                }
                // Removal closes the connector's links (their channels end with them).
                let links = self
                    .tokens
                    .get(&token)
                    .map(|t| t.links.clone())
                    .unwrap_or_default();
                self.tokens.remove(&token);
                self.by_hash.remove(&token_hash(&token));
                for l in links {
                    self.plane
                        .set_link_resume(l, PeerKey::default(), Resume::Off);
                    self.plane.emit(Output::CloseLink { link: l });
                }
            }
        }
    }

    fn on_control(&mut self, now: Instant, link: LinkId, msg: Message) {
        let pending = self
            .peers
            .get(&link)
            .is_some_and(|p| p.role == Role::Pending);
        match msg {
            Message::Auth(a) if pending => {
                self.authenticate(
                    now,
                    link,
                    self.token_by_hash(&token_hash(&a.token)),
                    Some(a.reverse),
                    Some(a.instance),
                );
            }
            _ if pending => {
                debug!(%link, "message before authentication ignored");
            }
            Message::Connector { channel, token, op } => {
                self.on_connector(now, link, channel, token, op)
            }
            Message::Log { level, msg } => debug!(%link, %level, %msg, "log from client"),
            Message::DirectTransport { .. } => {
                debug!(%link, "direct-transport message ignored (not supported)")
            }
            other => debug!(%link, "unexpected {} ignored", other.name()),
        }
    }

    /// Forget a link's registration (token, provider lists); the plane ends its channels.
    fn drop_peer(&mut self, now: Instant, link: LinkId, reason: &str) {
        let Some(peer) = self.peers.remove(&link) else {
            return;
        };
        if let (Some(i), false) = (peer.instance, peer.role == Role::Pending) {
            let n = self.departed.entry(i).or_insert_with(|| {
                self.departed_order.push_back(i);
                0
            });
            *n += 1;
            if self.departed_order.len() > DEPARTED_MAX {
                if let Some(old) = self.departed_order.pop_front() {
                    self.departed.remove(&old);
                }
            }
        }
        if let Some(token) = &peer.token {
            if let Some(t) = self.tokens.get_mut(token) {
                t.links.retain(|l| *l != link);
                if let Kind::Reverse(r) = &mut t.kind {
                    r.providers.retain(|l| *l != link);
                }
            }
            match peer.role {
                Role::Provider => self.announce_partners(&token.clone()),
                Role::Connector => {
                    if let Some(rev) = self.reverse_of(token) {
                        self.announce_partners(&rev);
                    }
                }
                _ => {}
            }
        }
        self.plane.remove_link(now, link, reason);
        self.plane.timers.cancel(Timer::Auth(link));
        self.suspect.remove(&link);
        if let Some((token, conns)) = self.probing.remove(&link) {
            self.plane.timers.cancel(Timer::Probe(link));
            for conn in conns {
                if self.plane.is_waiting(conn) {
                    self.route_socks(now, &token, conn);
                }
            }
        }
    }

    /// Stop: end every channel, close every link and listener.
    pub fn close(&mut self, now: Instant) {
        self.plane.shutdown(now);
    }
}

impl Machine for ServerMachine {
    plane_inputs!();

    fn handle_resolved(&mut self, now: Instant, conn: ConnId, addrs: Vec<std::net::IpAddr>) {
        if let Some((key, connect, token)) = self.resolving.remove(&conn) {
            self.connector_resolved(now, key, connect, token, &addrs);
            return;
        }
        let Some(listener) = self.plane.waiting_listener(conn) else {
            return;
        };
        let Some(token) = self.listener_token.get(&listener).cloned() else {
            // The token went while its name was looked up.
            self.plane.fail_socks(conn, Reply::NetworkUnreachable);
            return;
        };
        let rules = self.entry_rules_arc(&token);
        if self.plane.entry_resolved(conn, &addrs, &rules).is_some() {
            self.route_socks(now, &token, conn);
        }
    }

    fn handle_link_pong(&mut self, now: Instant, link: LinkId) {
        self.plane.link_alive(now, link);
        self.provider_heard(now, link);
    }

    fn handle_link_message(&mut self, now: Instant, link: LinkId, frame: Bytes) {
        let Some(peer) = self.peers.get(&link) else {
            return;
        };
        if peer.role == Role::Pending {
            // Only Auth is acceptable before authentication.
            if let Some(msg) = self.plane.decode(link, frame) {
                self.on_control(now, link, msg);
            }
            return;
        }
        match self.plane.link_frame(now, link, frame) {
            Routed::Done => {}
            Routed::Control(msg) => self.on_control(now, link, msg),
            Routed::Connect(c) => self.on_connect(now, link, c),
        }
        self.provider_heard(now, link);
    }

    fn handle_link_closed(&mut self, now: Instant, link: LinkId, reason: &str) {
        debug!(%link, %reason, "link closed");
        self.drop_peer(now, link, "provider or client disconnected");
    }

    fn handle_listener_bound(
        &mut self,
        _now: Instant,
        listener: ListenerId,
        result: Result<SocketAddr, IoFailure>,
    ) {
        if let Err(e) = &result {
            let token = self.listener_token.remove(&listener);
            if let Some(Kind::Reverse(r)) = token
                .as_ref()
                .and_then(|t| self.tokens.get_mut(t))
                .map(|t| &mut t.kind)
            {
                r.listener = None;
                r.listen_error = Some(e.clone());
            }
            let addr = self
                .plane
                .listeners
                .get(&listener)
                .map(|l| format!("{}:{}", l.socks.host, l.socks.port));
            tracing::error!(addr = addr.unwrap_or_default(), error = %e, "cannot open SOCKS5 listener");
            self.plane.listeners.remove(&listener);
            return;
        }
        self.plane.listener_bound(listener, &result);
    }

    fn handle_conn_data(&mut self, now: Instant, conn: ConnId, data: Bytes) {
        if let Some(req) = self.plane.conn_data(now, conn, data) {
            self.on_socks_request(now, req);
        }
    }

    fn handle_conn_read(&mut self, now: Instant, conn: ConnId, buf: bytes::BytesMut) {
        if let Some(req) = self.plane.conn_read(now, conn, buf) {
            self.on_socks_request(now, req);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.plane.timers.pop_due(now) {
            match timer {
                Timer::Conn(conn) => {
                    if self.plane.conn_deadline(conn) {
                        for t in self.tokens.values_mut() {
                            if let Kind::Reverse(r) = &mut t.kind {
                                r.waiting_socks.retain(|c| *c != conn);
                            }
                        }
                        // No provider came: the reference's "network unreachable".
                        self.plane.fail_socks(conn, Reply::NetworkUnreachable);
                    }
                }
                Timer::Chan(key) => {
                    for t in self.tokens.values_mut() {
                        if let Kind::Reverse(r) = &mut t.kind {
                            r.waiting_relays.retain(|(k, _, _)| *k != key);
                        }
                    }
                    self.resolving.retain(|_, (k, _, _)| *k != key);
                    self.plane.fire(now, Timer::Chan(key));
                }
                Timer::Probe(link) => self.probe_failed(now, link),
                Timer::Auth(link) => {
                    if self
                        .peers
                        .get(&link)
                        .is_some_and(|p| p.role == Role::Pending)
                    {
                        info!(%link, "no authentication in time; closing the link");
                        self.plane.emit(Output::CloseLink { link });
                    }
                }
                other => self.plane.fire(now, other),
            }
        }
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    fn machine() -> ServerMachine {
        let ids: Box<dyn IdSource> = Box::new(|out: &mut [u8]| out.fill(7));
        let mut m = ServerMachine::new(ServerConfig::default(), ids, Instant::ZERO);
        m.add_forward_token(Some("alpha".into())).unwrap();
        m.add_forward_token(Some("beta".into())).unwrap();
        m
    }

    #[test]
    fn tokens_are_found_by_their_exact_hash_only() {
        let mut m = machine();
        assert_eq!(
            m.token_by_hash(&token_hash("alpha")).as_deref(),
            Some("alpha")
        );
        assert_eq!(
            m.token_by_hash(&token_hash("beta")).as_deref(),
            Some("beta")
        );
        let h = token_hash("alpha");
        for wrong in [
            String::new(),
            h[..63].to_string(),
            format!("{h}0"),
            h.to_ascii_uppercase(),
            token_hash("alphA"),
            "alpha".to_string(),
        ] {
            assert_eq!(m.token_by_hash(&wrong), None, "{wrong:?}");
        }
        m.remove_token(Instant::ZERO, "alpha").unwrap();
        assert_eq!(m.token_by_hash(&token_hash("alpha")), None, "removed");
    }
}

#[cfg(test)]
mod access_tests {
    use super::*;
    use crate::ids::ChannelId;
    use crate::wire::{encode::encode_to_bytes, DecodeLimits, Protocol};

    fn rules(specs: &[&str]) -> AccessRules {
        AccessRules::parse_cli(specs).unwrap()
    }

    fn machine(cfg: ServerConfig) -> ServerMachine {
        let ids: Box<dyn IdSource> = Box::new(|out: &mut [u8]| out.fill(7));
        ServerMachine::new(cfg, ids, Instant::ZERO)
    }

    /// An authenticated link of `token`; what it was sent is drained.
    fn link(m: &mut ServerMachine, token: &str) -> LinkId {
        let link = m.handle_link_accept(
            Instant::ZERO,
            &format!("/socket?token={}", token_hash(token)),
        );
        assert!(m.peers.get(&link).is_some_and(|p| p.role != Role::Pending));
        while m.poll_output().is_some() {}
        link
    }

    fn connect(m: &mut ServerMachine, link: LinkId, n: u8, target: Option<(&str, u16)>) {
        let c = Connect {
            protocol: if target.is_some() {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            channel: ChannelId([n; 16]),
            target: target.map(|(h, p)| (h.to_string(), p)),
        };
        let frame = encode_to_bytes(&Message::Connect(c)).unwrap();
        m.handle_link_message(Instant::ZERO, link, frame);
    }

    /// What the machine did about the last Connect: `Ok(rules)` for a dial (with the rule
    /// sets left to the driver), `Err(error)` for a ConnectResponse failure, `None` for
    /// neither (relayed, or a UDP socket asked for).
    fn outcome(m: &mut ServerMachine) -> Option<Result<Vec<Arc<AccessRules>>, String>> {
        let mut found = None;
        while let Some(o) = m.poll_output() {
            match o {
                Output::Dial { rules, .. } => found = Some(Ok(rules)),
                Output::Transmit { frame, .. } => {
                    if let Ok(Message::ConnectResponse {
                        success: false,
                        error,
                        ..
                    }) = crate::wire::decode(frame, &DecodeLimits::default())
                    {
                        found = Some(Err(error.unwrap_or_default()));
                    }
                }
                _ => {}
            }
        }
        found
    }

    #[test]
    fn forward_token_rules_and_server_dial_rules_both_apply() {
        let mut cfg = ServerConfig::default();
        cfg.access.dial = rules(&["127.0.0.0/8:1-1000"]);
        let mut m = machine(cfg);
        m.add_forward_token_with_rules(Some("fwd".into()), rules(&["0.0.0.0/0:80"]))
            .unwrap();
        m.add_forward_token(Some("open".into())).unwrap();
        let l = link(&mut m, "fwd");
        // Allowed by both: dialled, nothing left for the driver to check.
        connect(&mut m, l, 1, Some(("127.0.0.1", 80)));
        assert_eq!(outcome(&mut m), Some(Ok(vec![])));
        // Denied by the token's rules, then by the server's.
        connect(&mut m, l, 2, Some(("127.0.0.1", 81)));
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));
        connect(&mut m, l, 3, Some(("10.0.0.1", 80)));
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));
        // A name goes to the driver with both sets.
        connect(&mut m, l, 4, Some(("localhost", 80)));
        let Some(Ok(sets)) = outcome(&mut m) else {
            panic!("not dialled")
        };
        assert_eq!(sets.len(), 2);
        // Token rules refuse a UDP associate, as the reference's do.
        connect(&mut m, l, 5, None);
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));

        // A token without rules: only the server's.
        let o = link(&mut m, "open");
        connect(&mut m, o, 1, Some(("127.0.0.1", 81)));
        assert_eq!(outcome(&mut m), Some(Ok(vec![])));
        connect(&mut m, o, 2, Some(("127.0.0.1", 1001)));
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));
        // The server's dial rules do not refuse UDP.
        connect(&mut m, o, 3, None);
        assert_eq!(outcome(&mut m), None);

        // Replaced at run time: from now on, the new rules.
        m.update_access_config(AccessConfigUpdate {
            entry: None,
            dial: Some(AccessRules::default()),
        });
        connect(&mut m, o, 4, Some(("127.0.0.1", 1001)));
        assert_eq!(outcome(&mut m), Some(Ok(vec![])));
    }

    #[test]
    fn a_reverse_token_s_own_rules_replace_the_server_wide_entry_rules() {
        let mut m = machine(ServerConfig::default());
        let spec = |t: &str| ReverseTokenSpec {
            token: Some(t.into()),
            socks: None,
            allow_manage_connector: false,
        };
        m.add_reverse_token_with_rules(spec("ruled"), rules(&["10.0.0.0/8:22"]))
            .unwrap();
        m.add_reverse_token(spec("plain")).unwrap();
        assert!(m.entry_rules_for_token("plain").is_empty());
        m.set_access_config(AccessConfig {
            entry: rules(&["192.168.0.0/16:80"]),
            dial: AccessRules::default(),
        });
        let ip = |s: &str| s.parse().unwrap();
        let ruled = m.entry_rules_for_token("ruled");
        assert!(ruled.check_ip(ip("10.1.1.1"), 22));
        // Instead of, not besides, the server-wide rules.
        assert!(!ruled.check_ip(ip("192.168.1.1"), 80));
        for t in ["plain", "unknown"] {
            let r = m.entry_rules_for_token(t);
            assert!(r.check_ip(ip("192.168.1.1"), 80), "{t}");
            assert!(!r.check_ip(ip("10.1.1.1"), 22), "{t}");
        }
        assert_eq!(m.token_rules("ruled"), Some(&rules(&["10.0.0.0/8:22"])));
        assert_eq!(m.token_rules("plain"), Some(&AccessRules::default()));
        assert_eq!(m.token_rules("unknown"), None);
        assert_eq!(
            m.access_config(),
            AccessConfig {
                entry: rules(&["192.168.0.0/16:80"]),
                dial: AccessRules::default(),
            }
        );
        // Removed with the token.
        m.remove_token(Instant::ZERO, "ruled").unwrap();
        assert_eq!(m.token_rules("ruled"), None);
    }

    /// A request whose name is being looked up for its token's entry rules, when the token
    /// is removed meanwhile: answered (0x03) and closed once the lookup returns, not left
    /// waiting with no timer.
    #[test]
    fn a_request_resolving_when_its_token_goes_is_answered() {
        let mut m = machine(ServerConfig::default());
        let spec = ReverseTokenSpec {
            token: Some("rtok".into()),
            socks: Some(SocksListen {
                host: "127.0.0.1".into(),
                port: 0,
                credentials: None,
            }),
            allow_manage_connector: false,
        };
        m.add_reverse_token_with_rules(spec, rules(&["127.0.0.1:80"]))
            .unwrap();
        m.open_listener_now("rtok");
        let mut listener = None;
        while let Some(o) = m.poll_output() {
            if let Output::Listen { listener: l, .. } = o {
                listener = Some(l);
            }
        }
        let listener = listener.expect("the token's port opens");
        let addr: SocketAddr = "127.0.0.1:1080".parse().unwrap();
        m.handle_listener_bound(Instant::ZERO, listener, Ok(addr));
        let app: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let conn = m.handle_accept(Instant::ZERO, listener, app, addr);
        // Greeting, then CONNECT localhost:80.
        m.handle_conn_data(Instant::ZERO, conn, Bytes::from_static(&[5, 1, 0]));
        let mut req = vec![5, 1, 0, 3, 9];
        req.extend_from_slice(b"localhost");
        req.extend_from_slice(&80u16.to_be_bytes());
        m.handle_conn_data(Instant::ZERO, conn, Bytes::from(req));
        let mut resolving = false;
        while let Some(o) = m.poll_output() {
            resolving |= matches!(o, Output::Resolve { conn: c, ref host, .. } if c == conn && host == "localhost");
        }
        assert!(resolving, "the name is handed to the driver");
        m.remove_token(Instant::ZERO, "rtok").unwrap();
        while m.poll_output().is_some() {}
        m.handle_resolved(Instant::ZERO, conn, vec!["127.0.0.1".parse().unwrap()]);
        let (mut reply, mut closed) = (None, false);
        while let Some(o) = m.poll_output() {
            match o {
                Output::Write { conn: c, data } if c == conn => reply = Some(data[1]),
                Output::Close { conn: c, .. } if c == conn => closed = true,
                _ => {}
            }
        }
        assert_eq!(reply, Some(0x03));
        assert!(closed);
    }

    #[test]
    fn connector_token_rules_are_checked_before_relaying() {
        let mut m = machine(ServerConfig::default());
        m.add_reverse_token(ReverseTokenSpec {
            token: Some("rev".into()),
            socks: None,
            allow_manage_connector: false,
        })
        .unwrap();
        m.add_connector_token_with_rules(Some("con".into()), "rev", rules(&["127.0.0.1:80"]))
            .unwrap();
        m.add_connector_token(Some("free".into()), "rev").unwrap();
        let _provider = link(&mut m, "rev");
        let c = link(&mut m, "con");
        connect(&mut m, c, 1, Some(("127.0.0.1", 80)));
        assert_eq!(outcome(&mut m), None, "relayed");
        connect(&mut m, c, 2, Some(("127.0.0.1", 81)));
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));
        // A name is resolved by the driver, then checked: held, not refused, meanwhile.
        let resolve = |m: &mut ServerMachine, n: u8, host: &str, port: u16, addrs: &[&str]| {
            connect(m, c, n, Some((host, port)));
            let mut query = None;
            while let Some(o) = m.poll_output() {
                match o {
                    Output::Resolve { conn, host: h, .. } if h == host => query = Some(conn),
                    Output::Transmit { frame, .. } => assert!(
                        !matches!(
                            crate::wire::decode(frame, &DecodeLimits::default()),
                            Ok(Message::ConnectResponse { success: false, .. })
                        ),
                        "{host}: refused before it was resolved"
                    ),
                    _ => {}
                }
            }
            let query = query.expect("a lookup is asked for");
            let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
            m.handle_resolved(Instant::ZERO, query, addrs);
            outcome(m)
        };
        assert_eq!(
            resolve(&mut m, 3, "localhost", 80, &["127.0.0.1"]),
            None,
            "relayed"
        );
        assert_eq!(
            resolve(&mut m, 5, "localhost", 81, &["127.0.0.1"]),
            Some(Err(DIAL_BLOCKED.to_string()))
        );
        assert_eq!(
            resolve(&mut m, 6, "nowhere.invalid", 80, &[]),
            Some(Err(DIAL_BLOCKED.to_string())),
            "a name that does not resolve is denied"
        );
        connect(&mut m, c, 4, None);
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));
        let f = link(&mut m, "free");
        connect(&mut m, f, 1, Some(("localhost", 81)));
        assert_eq!(outcome(&mut m), None, "relayed");
    }

    #[test]
    fn a_provider_s_dial_rules_live_in_its_data_config() {
        // The plane checks its own `DataConfig::dial_rules` on every TCP dial; a server's
        // forward dial shows it as well as a provider's would.
        let mut cfg = ServerConfig::default();
        cfg.data.dial_rules = Arc::new(rules(&["::1:443"]));
        let mut m = machine(cfg);
        m.add_forward_token(Some("fwd".into())).unwrap();
        let l = link(&mut m, "fwd");
        connect(&mut m, l, 1, Some(("::1", 443)));
        assert_eq!(outcome(&mut m), Some(Ok(vec![])));
        connect(&mut m, l, 2, Some(("::1", 80)));
        assert_eq!(outcome(&mut m), Some(Err(DIAL_BLOCKED.to_string())));
        connect(&mut m, l, 3, Some(("[::1]", 443)));
        assert_eq!(outcome(&mut m), Some(Ok(vec![])));
    }
}

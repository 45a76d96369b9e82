//! The front end of every local proxy port: listeners, accepted applications, their SOCKS5
//! handshake or HTTP proxy request (the first byte decides, as in the reference), the answers,
//! and the channel a routed request opens.

use crate::session::IoFailure;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tracing::info;

use super::{canonical, unspecified, ConnState, ListenerEntry, Plane, SocksRequest, Timer};
use crate::access::AccessRules;
use crate::addr::TargetAddr;
use crate::ids::ChannelId;
use crate::session::channel::{ChanKey, Channel, Local, Phase, Side, UdpLocal};
use crate::session::config::SocksListen;
use crate::session::output::{Event, Output};
use crate::session::{ConnId, LinkId, ListenerId, UdpId};
use crate::socks::{
    self, connect_established, error_response, Command, HttpFailure, HttpProxyServer,
    HttpRequestKind, LocalProtocol, Reply, Request, SocksServer,
};
use crate::time::Instant;
use crate::wire::{Connect, Message, Protocol};

/// Where an accepted application is in asking for its channel.
pub(super) enum Front {
    /// Nothing read yet: the first byte tells SOCKS5 from HTTP.
    Detect,
    Socks(Box<SocksServer>),
    Http(Box<HttpProxyServer>),
}

/// How an application asked for its channel, and so how it is answered.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum FrontProto {
    Socks,
    /// HTTP CONNECT: `200 Connection Established`, then a raw tunnel.
    HttpConnect,
    /// A plain HTTP request, forwarded: the origin's response is the answer.
    HttpForward,
}

/// How an entry-side access check of a request came out.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum EntryCheck {
    /// Route it.
    Allowed,
    /// Refused (SOCKS5 reply 0x02, HTTP 403) and closed: forget it.
    Denied,
    /// Its name is being resolved: the role hears again in `handle_resolved`.
    Resolving,
}

/// The HTTP answer for a refusal the session gives in SOCKS5 terms (the reference's table).
fn http_failure(reply: Reply) -> HttpFailure {
    match reply {
        Reply::NotAllowed => HttpFailure::Blocked,
        Reply::NetworkUnreachable => HttpFailure::NoBackend,
        _ => HttpFailure::ConnectionFailed,
    }
}

impl Plane {
    /// Ask the driver to open a SOCKS5 listener; `tag` is the role's note on it (e.g. the reverse
    /// token it serves). Returns its handle.
    pub fn listen(&mut self, socks: SocksListen, tag: String) -> ListenerId {
        let listener = self.new_listener_id();
        self.out.push_back(Output::Listen {
            listener,
            host: socks.host.clone(),
            port: socks.port,
        });
        self.listeners.insert(
            listener,
            ListenerEntry {
                socks,
                tag,
                bound: None,
            },
        );
        listener
    }

    /// Forget a listener and ask the driver to close it.
    pub fn unlisten(&mut self, listener: ListenerId) {
        if self.listeners.remove(&listener).is_some() {
            self.out.push_back(Output::Unlisten { listener });
        }
    }

    /// The driver's report of an [`Output::Listen`]: on success record the address and emit
    /// [`Event::Listening`].
    pub fn listener_bound(&mut self, listener: ListenerId, result: &Result<SocketAddr, IoFailure>) {
        if let (Some(l), Ok(addr)) = (self.listeners.get_mut(&listener), result) {
            l.bound = Some(*addr);
            self.out.push_back(Output::Event(Event::Listening {
                listener,
                addr: *addr,
            }));
        }
    }

    /// An application connected to a SOCKS listener.
    pub fn accept(
        &mut self,
        now: Instant,
        listener: ListenerId,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> ConnId {
        let conn = ConnId(self.handle());
        if !self.listeners.contains_key(&listener) {
            // The listener was closed meanwhile: refuse politely.
            self.out.push_back(Output::Close { conn, abort: false });
            return conn;
        }
        let mut entry = self.conn_entry(ConnState::Handshake {
            front: Front::Detect,
            listener,
            peer,
            local,
        });
        entry.peer = Some(peer);
        self.conns.insert(conn, entry);
        self.timers
            .set(Timer::Conn(conn), now + self.timings.handshake_timeout);
        conn
    }

    /// Bytes from an application whose request waits for a route: kept, in order, to go
    /// first on its channel.
    pub(super) fn hold_early(&mut self, conn: ConnId, data: Bytes) {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::Waiting {
            early, early_len, ..
        } = &mut entry.state
        else {
            return;
        };
        *early_len += data.len();
        let over = *early_len >= self.data.conn_high_water;
        early.push(data);
        if over && !entry.read_paused {
            entry.read_paused = true;
            self.out.push_back(Output::PauseRead { conn });
        }
    }

    /// Bytes from an application still asking for its channel. Returns its request once
    /// complete; what came after the request is kept for the channel.
    pub(super) fn handshake(&mut self, conn: ConnId, data: Bytes) -> Option<SocksRequest> {
        let ConnState::Handshake {
            front,
            listener,
            peer,
            ..
        } = &mut self.conns.get_mut(&conn)?.state
        else {
            return None;
        };
        if let Front::Detect = front {
            let (listener, peer) = (*listener, *peer);
            let credentials = self
                .listeners
                .get(&listener)
                .and_then(|l| l.socks.credentials.clone());
            let first = *data.first()?;
            let detected = match socks::detect(first) {
                LocalProtocol::Socks5 => Front::Socks(Box::new(SocksServer::new(credentials))),
                LocalProtocol::Http => Front::Http(Box::new(HttpProxyServer::new(credentials))),
                LocalProtocol::Unknown => {
                    info!(%conn, %peer, first = format_args!("{first:#04x}"),
                        "neither SOCKS5 nor HTTP (first byte); closing");
                    self.drop_conn(conn, false);
                    return None;
                }
            };
            if let Some(ConnState::Handshake { front, .. }) =
                self.conns.get_mut(&conn).map(|e| &mut e.state)
            {
                *front = detected;
            }
        }
        match self.conns.get(&conn).map(|e| &e.state) {
            Some(ConnState::Handshake {
                front: Front::Http(_),
                ..
            }) => self.http_request(conn, data),
            _ => self.socks_handshake(conn, data),
        }
    }

    fn socks_handshake(&mut self, conn: ConnId, data: Bytes) -> Option<SocksRequest> {
        let ConnState::Handshake {
            front: Front::Socks(socks),
            peer,
            ..
        } = &mut self.conns.get_mut(&conn)?.state
        else {
            return None;
        };
        let peer = *peer;
        let result = socks.feed(&data);
        let mut replies = Vec::new();
        while let Some(b) = socks.poll_transmit() {
            replies.push(b);
        }
        let request = socks.take_request();
        for b in replies {
            self.write(conn, b);
        }
        match result {
            Err(e) => {
                info!(%conn, %peer, error = %e, "SOCKS5 handshake refused");
                if let Some(resp) = e.response() {
                    if resp.len() > 3 && resp[0] == 5 {
                        self.count_reply(resp[1]);
                    }
                    self.write(conn, resp);
                }
                self.drop_conn(conn, false);
                None
            }
            Ok(consumed) => {
                let rest = data.slice(consumed.min(data.len())..);
                self.request_ready(conn, request?, FrontProto::Socks, vec![rest])
            }
        }
    }

    fn http_request(&mut self, conn: ConnId, data: Bytes) -> Option<SocksRequest> {
        let ConnState::Handshake {
            front: Front::Http(http),
            peer,
            ..
        } = &mut self.conns.get_mut(&conn)?.state
        else {
            return None;
        };
        let peer = *peer;
        match http.feed(&data) {
            Err(e) => {
                info!(%conn, %peer, error = %e, "HTTP proxy request refused");
                if let Some(resp) = e.response() {
                    self.write(conn, resp);
                }
                self.drop_conn(conn, false);
                None
            }
            Ok(consumed) => {
                let request = http.take_request()?;
                let rest = data.slice(consumed.min(data.len())..);
                // A forwarded request's rewritten head is the first thing the target gets.
                let (proto, early) = match request.kind {
                    HttpRequestKind::Connect => (FrontProto::HttpConnect, vec![rest]),
                    HttpRequestKind::Forward { head } => {
                        (FrontProto::HttpForward, vec![head, rest])
                    }
                };
                let request = Request {
                    command: Command::Connect,
                    target: request.target,
                };
                self.request_ready(conn, request, proto, early)
            }
        }
    }

    /// The application's request is complete: it waits for the role to route it, holding
    /// `early` to go first on its channel.
    fn request_ready(
        &mut self,
        conn: ConnId,
        request: Request,
        proto: FrontProto,
        early: Vec<Bytes>,
    ) -> Option<SocksRequest> {
        let entry = self.conns.get_mut(&conn)?;
        let ConnState::Handshake {
            listener,
            peer,
            local,
            ..
        } = &entry.state
        else {
            return None;
        };
        let (listener, peer, local) = (*listener, *peer, *local);
        let early: Vec<Bytes> = early.into_iter().filter(|b| !b.is_empty()).collect();
        let command = request.command;
        entry.proto = proto;
        entry.state = ConnState::Waiting {
            request,
            listener,
            peer,
            local,
            early_len: early.iter().map(Bytes::len).sum(),
            early,
            eof: false,
        };
        self.timers.cancel(Timer::Conn(conn));
        Some(SocksRequest {
            conn,
            listener,
            command,
        })
    }

    /// The entry-side access check of waiting request `conn` (the reference's
    /// `EntryAccessControl`: a client's or connector's `--access-rule`, a reverse token's
    /// rules at its port), before anything is sent for it. An IP target is decided here; a
    /// name is handed to the driver to resolve ([`Output::Resolve`]), and decided by
    /// [`Plane::entry_resolved`]. A UDP association passes, and its datagrams are checked
    /// one by one (see [`crate::session::channel::UdpLocal::entry_rules`]).
    pub fn check_entry(&mut self, conn: ConnId, rules: &AccessRules) -> EntryCheck {
        if rules.is_empty() {
            return EntryCheck::Allowed;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return EntryCheck::Denied;
        };
        let ConnState::Waiting { request, .. } = &c.state else {
            return EntryCheck::Denied;
        };
        if request.command == Command::UdpAssociate {
            c.udp_rules = Some(Arc::new(rules.clone()));
            return EntryCheck::Allowed;
        }
        match (rules.check_target(&request.target), &request.target) {
            (Some(true), _) => EntryCheck::Allowed,
            (Some(false), _) => {
                self.deny_entry(conn);
                EntryCheck::Denied
            }
            (None, target) => {
                let host = target.host_string();
                self.out.push_back(Output::Resolve {
                    conn,
                    host,
                    timeout: self.timings.connect_timeout,
                });
                EntryCheck::Resolving
            }
        }
    }

    /// The name of waiting request `conn` resolved to `addrs` (none: it does not resolve,
    /// which denies it, as in the reference): allowed if `rules` allow any of them.
    pub fn entry_resolved(
        &mut self,
        conn: ConnId,
        addrs: &[IpAddr],
        rules: &AccessRules,
    ) -> Option<SocksRequest> {
        let ConnState::Waiting {
            request, listener, ..
        } = &self.conns.get(&conn)?.state
        else {
            return None;
        };
        let req = SocksRequest {
            conn,
            listener: *listener,
            command: request.command,
        };
        if rules.check_resolved(addrs, request.target.port()) {
            Some(req)
        } else {
            self.deny_entry(conn);
            None
        }
    }

    /// The listener of waiting request `conn`.
    pub fn waiting_listener(&self, conn: ConnId) -> Option<ListenerId> {
        match &self.conns.get(&conn)?.state {
            ConnState::Waiting { listener, .. } => Some(*listener),
            _ => None,
        }
    }

    fn deny_entry(&mut self, conn: ConnId) {
        if let Some(ConnState::Waiting { request, peer, .. }) =
            self.conns.get(&conn).map(|c| &c.state)
        {
            info!(%conn, %peer, target = %request.target, "request refused: destination blocked by access control");
        }
        self.fail_socks(conn, Reply::NotAllowed);
    }

    /// Answer an application whose channel cannot be had, in its own protocol: a SOCKS5
    /// reply, or the HTTP status the reference gives for the same case. The caller closes.
    pub(super) fn refuse(&mut self, conn: ConnId, reply: Reply) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.count_reply(reply as u8);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let answer = match c.proto {
            FrontProto::Socks => socks::encode_reply(reply, unspecified()),
            FrontProto::HttpConnect | FrontProto::HttpForward => {
                let failure = http_failure(reply);
                let target = match &c.state {
                    ConnState::Waiting { request, .. } => Some(request.target.to_string()),
                    ConnState::Channel(key) => self
                        .channels
                        .get(key)
                        .and_then(|ch| ch.target.as_ref())
                        .map(|(h, p)| TargetAddr::from_host_port(h, *p).to_string()),
                    _ => None,
                };
                let peer = c.peer;
                info!(%conn, peer = ?peer, target = target.as_deref().unwrap_or("?"),
                    status = failure.status(), "HTTP proxy request refused");
                error_response(failure)
            }
        };
        self.write(conn, answer);
    }

    /// Write an answer (a SOCKS reply or an HTTP status; not channel data) to a local socket.
    pub(super) fn write(&mut self, conn: ConnId, data: Bytes) {
        // A channel that lingers after its end has no socket left to answer.
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.backlog.add(data.len());
        c.control += data.len();
        self.out.push_back(Output::Write { conn, data });
    }

    pub(super) fn count_reply(&mut self, code: u8) {
        if let Some(n) = self.stats.socks_replies.get_mut(code as usize) {
            *n += 1;
        }
    }

    /// Answer a waiting SOCKS request with a failure and close it.
    pub fn fail_socks(&mut self, conn: ConnId, reply: Reply) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.refuse(conn, reply);
        self.drop_conn(conn, false);
    }

    /// Whether `conn` has a parsed request waiting for the role to route it.
    pub fn is_waiting(&self, conn: ConnId) -> bool {
        matches!(
            self.conns.get(&conn).map(|c| &c.state),
            Some(ConnState::Waiting { .. })
        )
    }

    /// A handshake or route wait ran out. Returns true if the conn was waiting for a route (the
    /// role then answers it); handshakes are closed here.
    pub fn conn_deadline(&mut self, conn: ConnId) -> bool {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Handshake { peer, .. }) => {
                info!(%conn, %peer, "SOCKS5 handshake not finished in time; closing");
                self.drop_conn(conn, false);
                false
            }
            Some(ConnState::Waiting { .. }) => true,
            _ => false,
        }
    }

    /// Open the channel for a waiting SOCKS request over `link`.
    pub fn start_socks_channel(&mut self, now: Instant, conn: ConnId, link: LinkId) {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::Waiting {
            request,
            local,
            peer,
            early,
            early_len,
            eof,
            ..
        } = &mut entry.state
        else {
            return;
        };
        let request = request.clone();
        let (local, peer) = (*local, *peer);
        let early = std::mem::take(early);
        let early_len = std::mem::take(early_len);
        let eof = *eof;
        self.timers.cancel(Timer::Conn(conn));
        let id = ChannelId::random(self.ids.as_mut());
        let key = self.next_chan;
        self.next_chan += 1;
        self.stats.channels_opened += 1;
        match request.command {
            Command::Connect => {
                let mut ch =
                    Channel::new(id, Protocol::Tcp, link, Local::Conn(conn), Side::Socks, now);
                ch.windowed = self.windowed(link);
                ch.early = early;
                ch.early_len = early_len;
                ch.pending_end = eof.then_some(None);
                let target = (request.target.host_string(), request.target.port());
                ch.target = Some(target.clone());
                self.channels.insert(key, Box::new(ch));
                self.by_wire.insert((link, id), key);
                self.register_owner(key, link);
                if let Some(e) = self.conns.get_mut(&conn) {
                    e.state = ConnState::Channel(key);
                }
                self.send(
                    link,
                    &Message::Connect(Connect {
                        protocol: Protocol::Tcp,
                        channel: id,
                        target: Some(target),
                    }),
                );
                // Without FastOpen the same guard bounds the wait for ConnectResponse.
                self.timers.set(
                    Timer::Chan(key),
                    now + self.timings.connect_timeout + self.timings.fast_open_grace,
                );
                if self.fast_open {
                    if let Some(c) = self.channels.get_mut(&key) {
                        c.fast_open = true;
                    }
                    self.reply_success(key, unspecified());
                    self.open_channel(now, key);
                }
            }
            Command::UdpAssociate => {
                if eof {
                    // The control connection is already gone: so is the association.
                    self.drop_conn(conn, false);
                    return;
                }
                let udp = UdpId(self.handle());
                // Only the application may use its relay: its IP, and its port when it named one.
                let named = match &request.target {
                    TargetAddr::Ip(a) => Some(*a),
                    TargetAddr::Domain(..) => None,
                };
                let allowed_ip = match named {
                    Some(a) if !a.ip().is_unspecified() => Some(a.ip()),
                    _ => Some(peer.ip()),
                };
                let allowed_port = named.map(|a| a.port()).filter(|p| *p != 0);
                let mut ch = Channel::new(
                    id,
                    Protocol::Udp,
                    link,
                    Local::Udp(UdpLocal {
                        udp,
                        control: Some(conn),
                        allowed_ip,
                        allowed_port,
                        app: None,
                        bound: None,
                        entry_rules: self.conns.get_mut(&conn).and_then(|c| c.udp_rules.take()),
                    }),
                    Side::Socks,
                    now,
                );
                ch.phase = Phase::Binding;
                self.channels.insert(key, Box::new(ch));
                self.by_wire.insert((link, id), key);
                self.register_owner(key, link);
                self.udps.insert(udp, key);
                if let Some(e) = self.conns.get_mut(&conn) {
                    e.state = ConnState::UdpControl(key);
                }
                // The relay listens where the application reached us: same family, same interface.
                // An IPv4 application on a dual-stack listener arrives as an IPv4-mapped
                // address; a relay named that way (ATYP 4) is one it cannot send to.
                self.out.push_back(Output::BindUdp {
                    udp,
                    addr: Some(SocketAddr::new(canonical(local).ip(), 0)),
                });
                self.timers.set(
                    Timer::Chan(key),
                    now + self.timings.connect_timeout + self.timings.fast_open_grace,
                );
            }
        }
    }

    pub(super) fn reply_success(&mut self, key: ChanKey, bound: SocketAddr) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.replied || ch.side != Side::Socks {
            return;
        }
        let Some(conn) = ch.conn() else {
            return;
        };
        let answer = match self.conns.get(&conn).map(|c| c.proto) {
            Some(FrontProto::Socks) => socks::encode_reply(Reply::Succeeded, bound),
            Some(FrontProto::HttpConnect) => connect_established(),
            // The origin's response is the answer: the application counts as answered once
            // its first byte is written (`replied` is set there), so a dial that fails before
            // (FastOpen) still gets its 502.
            Some(FrontProto::HttpForward) | None => return,
        };
        ch.replied = true;
        self.count_reply(0);
        self.write(conn, answer);
    }
}

//! The SOCKS5 front end: listeners, accepted applications and their handshake, the replies, and
//! the channel a routed request opens.

use std::net::SocketAddr;

use bytes::Bytes;
use tracing::info;

use super::{canonical, unspecified, ConnState, ListenerEntry, Plane, SocksRequest, Timer};
use crate::addr::TargetAddr;
use crate::ids::ChannelId;
use crate::session::channel::{ChanKey, Channel, Local, Phase, Side, UdpLocal};
use crate::session::config::SocksListen;
use crate::session::output::{Event, Output};
use crate::session::{ConnId, LinkId, ListenerId, UdpId};
use crate::socks::{self, Command, Reply, SocksServer};
use crate::time::Instant;
use crate::wire::{Connect, Message, Protocol};

impl Plane {
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

    pub fn unlisten(&mut self, listener: ListenerId) {
        if self.listeners.remove(&listener).is_some() {
            self.out.push_back(Output::Unlisten { listener });
        }
    }

    pub fn listener_bound(&mut self, listener: ListenerId, result: &Result<SocketAddr, String>) {
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
        let Some(l) = self.listeners.get(&listener) else {
            // The listener was closed meanwhile: refuse politely.
            self.out.push_back(Output::Close { conn, abort: false });
            return conn;
        };
        let socks = Box::new(SocksServer::new(l.socks.credentials.clone()));
        self.conns.insert(
            conn,
            self.conn_entry(ConnState::Handshake {
                socks,
                listener,
                peer,
                local,
            }),
        );
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

    /// Bytes from an application in its SOCKS5 handshake. Returns its request once complete;
    /// what came after the request is kept for the channel.
    pub(super) fn handshake(&mut self, conn: ConnId, data: Bytes) -> Option<SocksRequest> {
        let ConnState::Handshake { socks, peer, .. } = &mut self.conns.get_mut(&conn)?.state else {
            return None;
        };
        let peer = *peer;
        let result = socks.feed(&data);
        let mut replies = Vec::new();
        while let Some(b) = socks.poll_transmit() {
            replies.push(b);
        }
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
                let entry = self.conns.get_mut(&conn)?;
                let ConnState::Handshake {
                    socks,
                    listener,
                    peer,
                    local,
                } = &mut entry.state
                else {
                    return None;
                };
                let request = socks.take_request()?;
                let (listener, peer, local) = (*listener, *peer, *local);
                let rest = data.slice(consumed.min(data.len())..);
                let command = request.command;
                let early_len = rest.len();
                entry.state = ConnState::Waiting {
                    request,
                    peer,
                    local,
                    early: if rest.is_empty() { vec![] } else { vec![rest] },
                    early_len,
                    eof: false,
                };
                self.timers.cancel(Timer::Conn(conn));
                Some(SocksRequest {
                    conn,
                    listener,
                    command,
                })
            }
        }
    }

    /// Write a SOCKS reply (not channel data) to a local socket.
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
        self.count_reply(reply as u8);
        self.write(conn, socks::encode_reply(reply, unspecified()));
        self.drop_conn(conn, false);
    }

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
        ch.replied = true;
        if let Some(conn) = ch.conn() {
            self.count_reply(0);
            self.write(conn, socks::encode_reply(Reply::Succeeded, bound));
        }
    }
}

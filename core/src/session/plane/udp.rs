//! UDP associations: the relay socket of a SOCKS client, the socket a dialling side sends from,
//! and datagrams between them and the link.

use crate::session::IoFailure;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace};

use super::{canonical, same_ip, Plane};
use crate::addr::TargetAddr;
use crate::session::channel::{ChanKey, Local, Phase, Side, UdpLocal};
use crate::session::output::Output;
use crate::session::UdpId;
use crate::socks::{self, Reply};
use crate::time::Instant;
use crate::wire::{Connect, Data, Message, Protocol, UdpTrailer};

impl Plane {
    /// The driver's report of an [`Output::BindUdp`]: go on with the channel's Connect,
    /// ConnectResponse or SOCKS reply, or fail it.
    pub fn udp_bound(&mut self, now: Instant, udp: UdpId, result: Result<SocketAddr, IoFailure>) {
        let Some(&key) = self.udps.get(&udp) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.phase != Phase::Binding {
            return;
        }
        let (link, id, side) = (ch.link, ch.id, ch.side);
        match result {
            Ok(addr) => {
                if let Local::Udp(u) = &mut ch.local {
                    u.bound = Some(addr);
                }
                match side {
                    Side::Socks => {
                        ch.phase = Phase::Connecting;
                        self.send(
                            link,
                            &Message::Connect(Connect {
                                protocol: Protocol::Udp,
                                channel: id,
                                target: None,
                            }),
                        );
                        if self.fast_open {
                            self.reply_success(key, addr);
                            self.open_channel(now, key);
                        }
                    }
                    Side::Dialer => self.confirm_dial(now, key),
                    Side::Relay => {}
                }
            }
            Err(e) => {
                debug!(%udp, error = %e, "UDP bind failed");
                match side {
                    Side::Socks => {
                        if let Some(conn) = ch.conn() {
                            self.refuse(conn, Reply::GeneralFailure);
                        }
                        self.remove_channel(key, false);
                    }
                    _ => {
                        self.refuse_connect(link, id, &e.message);
                        self.remove_channel(key, false);
                    }
                }
            }
        }
    }

    /// A datagram arrived on a UDP socket: from the application (SOCKS5 header, checked and sent on
    /// as Data) or from a destination (sent back with its source in the trailer).
    pub fn udp_datagram(&mut self, now: Instant, udp: UdpId, from: SocketAddr, data: Bytes) {
        let Some(&key) = self.udps.get(&udp) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.phase != Phase::Open {
            return;
        }
        let Local::Udp(u) = &mut ch.local else {
            return;
        };
        let (link, id) = (ch.link, ch.id);
        let trailer = match ch.side {
            Side::Socks => {
                let ip_ok = u.allowed_ip.is_none_or(|ip| same_ip(ip, from.ip()));
                let port_ok = u.allowed_port.is_none_or(|p| p == from.port());
                if !ip_ok || !port_ok {
                    self.stats.udp_dropped_foreign += 1;
                    trace!(%udp, %from, "datagram from a stranger dropped");
                    return;
                }
                let (target, header_len) = match socks::decode_udp_header(&data) {
                    Ok(x) => x,
                    Err(socks::UdpHeaderError::Fragmented) => {
                        self.stats.udp_dropped_fragmented += 1;
                        return;
                    }
                    Err(e) => {
                        trace!(%udp, error = %e, "bad SOCKS5 UDP header");
                        return;
                    }
                };
                // Entry rules drop a denied datagram silently, as the reference does. A name
                // is not resolved per datagram here: with rules set, only IP destinations pass.
                if let Some(rules) = &u.entry_rules {
                    if rules.check_target(&target) != Some(true) {
                        trace!(%udp, %target, "datagram dropped: destination blocked by access control");
                        return;
                    }
                }
                u.app = Some(from);
                ch.last_active = now;
                let payload = data.slice(header_len..);
                // Toward the dialling side the destination travels in the target part (what
                // the reference reads); the address part stays empty.
                (
                    UdpTrailer {
                        addr: String::new(),
                        port: 0,
                        target_addr: target.host_string(),
                        target_port: target.port(),
                    },
                    payload,
                )
            }
            Side::Dialer => {
                ch.last_active = now;
                let from = canonical(from);
                (
                    UdpTrailer {
                        addr: from.ip().to_string(),
                        port: from.port(),
                        target_addr: String::new(),
                        target_port: 0,
                    },
                    data,
                )
            }
            Side::Relay => return,
        };
        if self
            .links
            .get(&link)
            .is_some_and(|l| l.backlog.queued() >= self.data.udp_drop_water)
        {
            self.stats.udp_dropped_backlog += 1;
            return;
        }
        let (trailer, payload) = trailer;
        let frame = self.data_frame(Protocol::Udp, id, payload, Some(trailer));
        self.transmit(link, frame);
    }

    pub(super) fn udp_from_link(&mut self, key: ChanKey, side: Side, u: UdpLocal, d: Data) {
        let Some(t) = d.udp else {
            return;
        };
        match side {
            Side::Dialer => {
                // The reference puts the destination in the target part; older peers wrote
                // only the address part.
                let (host, port) = if t.target_addr.is_empty() {
                    (&t.addr, t.port)
                } else {
                    (&t.target_addr, t.target_port)
                };
                if host.is_empty() {
                    return;
                }
                let to = TargetAddr::from_host_port(host, port);
                self.out.push_back(Output::SendUdp {
                    udp: u.udp,
                    to,
                    data: d.payload,
                });
            }
            Side::Socks => {
                let Some(app) = u.app else {
                    return;
                };
                let source = TargetAddr::from_host_port(&t.addr, t.port);
                let mut b =
                    BytesMut::with_capacity(socks::udp_header_len(&source) + d.payload.len());
                socks::encode_udp_header(&mut b, &source);
                b.extend_from_slice(&d.payload);
                self.out.push_back(Output::SendUdp {
                    udp: u.udp,
                    to: TargetAddr::Ip(app),
                    data: b.freeze(),
                });
            }
            Side::Relay => {}
        }
        let _ = key;
    }
}

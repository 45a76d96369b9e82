//! The dialling side: a Connect from a link becomes a local socket to the target.

use tracing::{debug, trace};

use super::flow::resume::Ending;
use super::{ConnState, Plane, Timer};
use crate::addr::TargetAddr;
use crate::ids::ChannelId;
use crate::session::channel::{ChanKey, Channel, Local, Phase, Side, UdpLocal};
use crate::session::output::Output;
use crate::session::{ConnId, LinkId, UdpId};
use crate::time::Instant;
use crate::wire::{self, Connect, Message, Protocol};

impl Plane {
    /// Accept a Connect received on `link`: dial the target (TCP) or bind a socket (UDP).
    pub fn dial(&mut self, now: Instant, link: LinkId, connect: Connect) {
        // A channel this peer already has (here or on a link it lost) is never dialled twice.
        if self.by_wire.contains_key(&(link, connect.channel))
            || self
                .by_owner
                .contains_key(&(self.link_owner(link), connect.channel))
        {
            debug!(%link, channel = %connect.channel, "duplicate Connect ignored");
            return;
        }
        let key = self.next_chan;
        self.next_chan += 1;
        self.stats.channels_opened += 1;
        match connect.protocol {
            Protocol::Tcp => {
                let Some((host, port)) = connect.target else {
                    return;
                };
                let conn = ConnId(self.handle());
                let mut ch = Channel::new(
                    connect.channel,
                    Protocol::Tcp,
                    link,
                    Local::Conn(conn),
                    Side::Dialer,
                    now,
                );
                ch.windowed = self.windowed(link);
                self.channels.insert(key, Box::new(ch));
                self.by_wire.insert((link, connect.channel), key);
                self.register_owner(key, link);
                self.conns
                    .insert(conn, self.conn_entry(ConnState::Channel(key)));
                let target = TargetAddr::from_host_port(&host, port);
                trace!(%link, channel = %connect.channel, %target, "dial");
                self.out.push_back(Output::Dial {
                    conn,
                    target,
                    timeout: self.timings.connect_timeout,
                });
                self.timers
                    .set(Timer::Chan(key), now + self.timings.connect_timeout);
            }
            Protocol::Udp => {
                let udp = UdpId(self.handle());
                let mut ch = Channel::new(
                    connect.channel,
                    Protocol::Udp,
                    link,
                    Local::Udp(UdpLocal {
                        udp,
                        control: None,
                        allowed_ip: None,
                        allowed_port: None,
                        app: None,
                        bound: None,
                    }),
                    Side::Dialer,
                    now,
                );
                ch.phase = Phase::Binding;
                self.channels.insert(key, Box::new(ch));
                self.by_wire.insert((link, connect.channel), key);
                self.register_owner(key, link);
                self.udps.insert(udp, key);
                self.out.push_back(Output::BindUdp { udp, addr: None });
                self.timers
                    .set(Timer::Chan(key), now + self.timings.connect_timeout);
            }
        }
    }

    /// The dialling side is ready (socket connected or bound): tell the peer, let data flow.
    pub(super) fn confirm_dial(&mut self, now: Instant, key: ChanKey) {
        self.timers.cancel(Timer::Chan(key));
        let Some((link, id, lost)) = self
            .channels
            .get(&key)
            .map(|c| (c.link, c.id, c.suspended.is_some()))
        else {
            return;
        };
        // With the link lost the answer goes with the resume.
        if !lost {
            self.send(
                link,
                &Message::ConnectResponse {
                    success: true,
                    channel: id,
                    error: None,
                },
            );
        }
        self.open_channel(now, key);
    }

    /// Refuse a Connect with a ConnectResponse failure.
    pub fn refuse_connect(&mut self, link: LinkId, channel: ChannelId, error: &str) {
        self.send(
            link,
            &Message::ConnectResponse {
                success: false,
                channel,
                error: Some(wire::encode::clip_text(error).to_string()),
            },
        );
    }

    pub fn dial_result(&mut self, now: Instant, conn: ConnId, result: Result<(), String>) {
        let Some(ConnState::Channel(key)) = self.conns.get(&conn).map(|c| &c.state) else {
            // The channel ended while the dial ran: drop the socket.
            if result.is_ok() {
                self.out.push_back(Output::Close { conn, abort: true });
            }
            return;
        };
        let key = *key;
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if ch.side != Side::Dialer || ch.phase != Phase::Connecting {
            return;
        }
        let (link, id) = (ch.link, ch.id);
        match result {
            Ok(()) => self.confirm_dial(now, key),
            Err(e) => {
                debug!(%link, channel = %id, error = %e, "dial failed");
                self.refuse_connect(link, id, &e);
                self.remember_end(key, Ending::Refused(e));
                self.remove_channel(key, false);
            }
        }
    }
}

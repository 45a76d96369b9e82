//! The dialling side: a Connect from a link becomes a local socket to the target.

use crate::session::IoFailure;
use std::sync::Arc;

use tracing::{debug, info, trace};

use super::flow::resume::Ending;
use super::{ConnState, Plane, Timer};
use crate::access::AccessRules;
use crate::addr::TargetAddr;
use crate::ids::ChannelId;
use crate::session::channel::{ChanKey, Channel, Local, Phase, Side, UdpLocal};
use crate::session::output::{Output, DIAL_BLOCKED};
use crate::session::{ConnId, LinkId, UdpId};
use crate::time::Instant;
use crate::wire::{self, Connect, Message, Protocol};

impl Plane {
    /// Accept a Connect received on `link`: dial the target (TCP) or bind a socket (UDP). A
    /// TCP target must pass this side's own dial rules ([`DataConfig::dial_rules`]).
    ///
    /// [`DataConfig::dial_rules`]: crate::session::DataConfig::dial_rules
    pub fn dial(&mut self, now: Instant, link: LinkId, connect: Connect) {
        self.dial_with_rules(now, link, connect, Vec::new());
    }

    /// [`dial`](Self::dial), where a TCP target must pass `rules` as well (every set must
    /// allow it; the server adds its server-wide dial rules and the forward token's). A target
    /// denied without a lookup (an IP) is refused here with ConnectResponse failure
    /// [`DIAL_BLOCKED`]; for a domain the sets that need a lookup go with [`Output::Dial`],
    /// and the driver resolves and checks. UDP associations are not checked: their Connect
    /// names no destination, and datagrams are not checked on the dialling side (as in the
    /// reference); a role that must refuse them does so before calling this.
    pub fn dial_with_rules(
        &mut self,
        now: Instant,
        link: LinkId,
        connect: Connect,
        rules: Vec<Arc<AccessRules>>,
    ) {
        // A channel this peer already has (here or on a link it lost) is never dialled twice.
        if self.by_wire.contains_key(&(link, connect.channel))
            || self
                .by_owner
                .contains_key(&(self.link_owner(link), connect.channel))
        {
            debug!(%link, channel = %connect.channel, "duplicate Connect ignored");
            return;
        }
        // The rule sets still to check once the name is resolved.
        let pending = match (&connect.protocol, &connect.target) {
            (Protocol::Tcp, Some((host, port))) => {
                let target = TargetAddr::from_host_port(host, *port);
                let own = self.data.dial_rules.clone();
                let Some(pending) = rules_to_resolve(&target, std::iter::once(own).chain(rules))
                else {
                    info!(%link, channel = %connect.channel, %target, "connect refused: destination blocked by access control");
                    self.refuse_connect(link, connect.channel, DIAL_BLOCKED);
                    return;
                };
                pending
            }
            _ => Vec::new(),
        };
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
                    link,
                    target,
                    timeout: self.timings.connect_timeout,
                    rules: pending,
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
                        entry_rules: None,
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

    /// The driver's report of an [`Output::Dial`]: answer the Connect with a ConnectResponse and,
    /// on success, start reading the socket.
    pub fn dial_result(&mut self, now: Instant, conn: ConnId, result: Result<(), IoFailure>) {
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
                // A denial after a lookup was logged by the driver, with the target.
                debug!(%link, channel = %id, error = %e, "dial failed");
                self.refuse_connect(link, id, &e.message);
                self.remember_end(key, Ending::Refused(e.message));
                self.remove_channel(key, false);
            }
        }
    }
}

/// The verdict of `sets` on `target` as far as it goes without a lookup: `None` when one of
/// them denies it, else the non-empty sets that need the name resolved (none for an IP
/// target, or when every set is empty).
fn rules_to_resolve(
    target: &TargetAddr,
    sets: impl IntoIterator<Item = Arc<AccessRules>>,
) -> Option<Vec<Arc<AccessRules>>> {
    let mut pending = Vec::new();
    for set in sets {
        match set.check_target(target) {
            Some(true) => {}
            Some(false) => return None,
            None => pending.push(set),
        }
    }
    Some(pending)
}

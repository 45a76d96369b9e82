//! Ending things: channels and local sockets, the plane's timers, the idle sweep, shutdown.

use tracing::debug;

use super::flow::resume::Ending;
use super::{ConnState, Plane, Timer};
use crate::session::channel::{ChanKey, Local, Phase, Side};
use crate::session::output::Output;
use crate::session::{ConnId, LinkId, ListenerId};
use crate::socks::Reply;
use crate::time::Instant;
use crate::wire::{self, Message};

impl Plane {
    /// A local TCP socket ended (EOF or error).
    pub fn conn_closed(&mut self, now: Instant, conn: ConnId, error: Option<&str>) {
        let Some(entry) = self.conns.get(&conn) else {
            return;
        };
        match entry.state {
            ConnState::Channel(key) => {
                // The application may send its request, its data and its EOF at once: what it
                // sent before the far side answered must still go, then the end.
                if let Some(ch) = self.channels.get_mut(&key) {
                    if ch.side == Side::Socks && ch.phase != Phase::Open && error.is_none() {
                        ch.pending_end = Some(None);
                        return;
                    }
                }
                // No half-close on this wire: the end of either direction ends the channel.
                self.finish_channel(now, key, error);
            }
            ConnState::UdpControl(key) => self.finish_channel(now, key, error),
            ConnState::Waiting { .. } if error.is_none() => {
                // Still waiting for a route: remember the end, send it after the data.
                if let Some(ConnState::Waiting { eof, .. }) =
                    self.conns.get_mut(&conn).map(|c| &mut c.state)
                {
                    *eof = true;
                }
            }
            ConnState::Handshake { .. } | ConnState::Waiting { .. } => {
                self.drop_conn(conn, error.is_some());
            }
        }
    }

    /// Forget a local socket and close it.
    pub(super) fn drop_conn(&mut self, conn: ConnId, abort: bool) {
        self.timers.cancel(Timer::Conn(conn));
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(link) = c.blocking {
                self.unblock_link(link);
            }
            self.out.push_back(Output::Close { conn, abort });
        }
    }

    /// The local side ended: send what is held, tell the far side, forget the channel. One
    /// that resumes exactly lingers until the far side answers with its own end (see
    /// [`super::super::channel::Channel::closing`]); while its link is lost, the end waits
    /// for the resume, after the data.
    pub(super) fn finish_channel(&mut self, now: Instant, key: ChanKey, error: Option<&str>) {
        self.flush_batch(now, key);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let (link, id) = (ch.link, ch.id);
        let text = error.map(|e| wire::encode::clip_text(e).to_string());
        if ch.stream.keep {
            ch.closing = Some(text.clone());
            let lost = ch.suspended.is_some();
            // Lingering is bounded like a suspension: a peer that never answers our end
            // cannot hold what we sent.
            self.timers
                .set_if_earlier(Timer::Grace(key), now + self.timings.transport_grace);
            let conn = ch.conn();
            if !lost {
                self.send(
                    link,
                    &Message::Disconnect {
                        channel: id,
                        error: text,
                    },
                );
            }
            if let Some(conn) = conn {
                self.drop_conn(conn, error.is_some());
            }
            return;
        }
        self.send(
            link,
            &Message::Disconnect {
                channel: id,
                error: text,
            },
        );
        self.remove_channel(key, error.is_some());
    }

    /// End a channel because something failed under it (its link, a deadline, the sweep).
    /// Far ends other than `dead_link` hear a Disconnect with `reason`.
    pub fn abort_channel(
        &mut self,
        now: Instant,
        key: ChanKey,
        dead_link: Option<LinkId>,
        reason: &str,
    ) {
        let _ = now;
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let msg = |id| Message::Disconnect {
            channel: id,
            error: Some(wire::encode::clip_text(reason).to_string()),
        };
        let id = ch.id;
        let mut notify = Vec::new();
        if Some(ch.link) != dead_link {
            notify.push(ch.link);
        }
        if let Local::Route(Some(o)) = ch.local {
            if Some(o) != dead_link {
                notify.push(o);
            }
        }
        // An application still waiting for its reply gets a failure reply and a clean close
        // (a reset could destroy the reply); one told it was connected gets a reset.
        let unanswered = ch.side == Side::Socks && !ch.replied;
        if unanswered {
            if let Some(conn) = ch.conn() {
                self.refuse(conn, Reply::GeneralFailure);
            }
        }
        for l in notify {
            self.send(l, &msg(id));
        }
        self.remember_end(key, Ending::Reset(reason.to_string()));
        self.remove_channel(key, !unanswered);
    }

    /// Forget a channel, closing its local sockets (`abort`: with a reset).
    pub(super) fn remove_channel(&mut self, key: ChanKey, abort: bool) {
        let Some(ch) = self.channels.remove(&key) else {
            return;
        };
        self.timers.cancel(Timer::Batch(key));
        self.timers.cancel(Timer::Chan(key));
        self.timers.cancel(Timer::Grace(key));
        if let Some(l) = ch.holding {
            self.unblock_link(l);
        }
        self.by_wire.remove(&(ch.link, ch.id));
        if let Some(a) = ch.alias {
            self.by_wire.remove(&(a, ch.id));
        }
        self.by_owner.remove(&(ch.owner, ch.id));
        if let Some(r) = &ch.relay {
            self.by_owner.remove(&(r.route_owner, ch.id));
        }
        if let Local::Route(Some(o)) = ch.local {
            self.by_wire.remove(&(o, ch.id));
        }
        if let Some(l) = self.links.get_mut(&ch.link) {
            l.batched.retain(|k| *k != key);
        }
        if let Some(udp) = ch.udp() {
            self.udps.remove(&udp);
            self.out.push_back(Output::CloseUdp { udp });
        }
        if let Some(conn) = ch.conn() {
            self.drop_conn(conn, abort);
        }
    }

    /// Fire a plane timer. Role timers (Reconnect, Conn waits) are the role's.
    pub fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Cleaner => {
                self.sweep(now);
                self.timers
                    .set(Timer::Cleaner, now + self.timings.cleaner_interval);
            }
            Timer::Batch(key) => self.flush_batch(now, key),
            Timer::Grace(key) => self.grace_expired(now, key),
            Timer::Deferred(link) => self.flush_deferred(link),
            Timer::Chan(key) => {
                let Some(ch) = self.channels.get(&key) else {
                    return;
                };
                match (ch.side, ch.phase) {
                    (Side::Relay, _) if matches!(ch.local, Local::Route(None)) => {
                        self.fail_relay(key, "no provider available");
                    }
                    _ => {
                        debug!(channel = %ch.id, "connect timed out");
                        let (link, id, side) = (ch.link, ch.id, ch.side);
                        if side == Side::Dialer {
                            self.refuse_connect(link, id, "connect timeout");
                            self.remember_end(key, Ending::Refused("connect timeout".into()));
                            // Closing the socket handle cancels the dial still running.
                            self.remove_channel(key, true);
                        } else if self.channels.get(&key).is_some_and(|c| c.replied) {
                            // FastOpen: the application was told it is connected; a reset
                            // tells it otherwise.
                            self.abort_channel(now, key, None, "connect timeout");
                        } else {
                            // Not yet answered: reply 0x04 and close cleanly, so the reply is
                            // read rather than lost to a reset.
                            if let Some(conn) = self.channels.get(&key).and_then(|c| c.conn()) {
                                self.refuse(conn, Reply::HostUnreachable);
                            }
                            self.send(
                                link,
                                &Message::Disconnect {
                                    channel: id,
                                    error: Some("connect timeout".into()),
                                },
                            );
                            self.remove_channel(key, false);
                        }
                    }
                }
            }
            Timer::Ping(link) => {
                if self.links.get(&link).is_some_and(|l| l.ready) {
                    self.out.push_back(Output::Ping { link });
                    if self.links.get(&link).is_some_and(|l| l.paused_by == 0) {
                        self.timers
                            .set(Timer::Pong(link), now + self.timings.ping_timeout);
                    }
                    self.timers
                        .set(Timer::Ping(link), now + self.timings.ping_interval);
                }
            }
            Timer::Pong(link) => {
                // No pong yet. The peer may be alive but not reading (one of its sockets is
                // slow, so it paused the link): our ping then waits behind the data we sent,
                // and its pong with it. Such a peer still sends its own pings (every
                // `ping_interval`), so only a silence of `dead_after` means it is gone.
                let Some(heard) = self.links.get(&link).map(|l| l.heard) else {
                    return;
                };
                let limit = heard
                    + self
                        .timings
                        .dead_after
                        .max(self.timings.ping_interval + self.timings.ping_timeout);
                if now < limit {
                    self.timers.set(Timer::Pong(link), limit);
                    return;
                }
                debug!(%link, "peer silent too long: link considered dead");
                self.emit(Output::CloseLink { link });
            }
            Timer::Conn(_) | Timer::Reconnect(_) | Timer::Probe(_) | Timer::Auth(_) => {}
        }
    }

    /// The idle sweep: channels with no traffic for the idle timeout are ended.
    fn sweep(&mut self, now: Instant) {
        let idle: Vec<ChanKey> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.suspended.is_none()
                    && now.saturating_duration_since(c.last_active) >= self.timings.idle_timeout
            })
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            debug!(channel = ?self.channels.get(&key).map(|c| c.id), "idle channel removed");
            self.abort_channel(now, key, None, "idle timeout");
        }
    }

    /// Close everything (shutdown): Disconnect every channel, close sockets and listeners.
    pub fn shutdown(&mut self, now: Instant) {
        let keys: Vec<ChanKey> = self.channels.keys().copied().collect();
        for key in keys {
            self.abort_channel(now, key, None, "shutting down");
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.drop_conn(conn, false);
        }
        let listeners: Vec<ListenerId> = self.listeners.keys().copied().collect();
        for l in listeners {
            self.unlisten(l);
        }
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.emit(Output::CloseLink { link });
        }
    }
}

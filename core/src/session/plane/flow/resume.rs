//! Channels that outlive their link (spec 12.1-12.2).
//!
//! When a link is lost its channels are *suspended*: their local sockets stay open but are not
//! read, what they would send is kept in their replay log, and a grace timer runs. Between two
//! of our peers ([`Resume::Exact`]), once a link between them is up again, each side sends
//! [`Message::ChannelResume`] with its counts for the channels it holds (the other answers
//! with its own, or takes the other's request as the answer when both asked at once); each
//! then sends again what it sent past the byte the other has received. Every byte is thus
//! delivered once and in order, whatever the lost link swallowed: the replay log holds
//! everything not yet acknowledged, and acknowledgements only ever cover bytes the receiver
//! has written out. A side that does not know the channel answers "channel expired": the
//! asking side ends it, or, if the far side never had it (its Connect was lost), connects
//! it again.
//!
//! A relay (the server in agent mode) does not keep data: it forwards the two ends'
//! ChannelResume to each other and lets nothing else of the channel through until both have
//! their counts, so the ends reconcile with each other directly.
//!
//! With a reference 1.10.3 client ([`Resume::Legacy`]) the server honours its resume Connect
//! as 1.10.3 does: the channel moves to the new link, no reply; what was in flight on the lost
//! link is lost, which only that peer's own protocol can be blamed for.

use bytes::Bytes;
use tracing::debug;

use super::super::{PeerKey, Plane, Timer};
use crate::ids::ChannelId;
use crate::session::channel::{ChanKey, Local, Phase, Side, Suspension};
use crate::session::LinkId;
use crate::time::Instant;
use crate::wire::{Connect, Message, Protocol};

/// How the channels of a link survive its loss.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// They end with it.
    #[default]
    Off,
    /// The peer is a reference client that may send its resume Connect: its channels wait
    /// for it, and what was in flight is lost.
    Legacy,
    /// The peer is one of ours and resumes byte-exactly.
    Exact,
}

/// The Disconnect text for a resume of a channel we do not (or no longer) hold: the
/// reference's words.
pub const CHANNEL_EXPIRED: &str = "channel expired";
/// The Disconnect text when the grace ran out.
pub const NOT_RESTORED: &str = "transport link not restored";

/// How many ended channels are remembered for late resumes (about 64 bytes each).
const ENDED_MAX: usize = 16 * 1024;

/// How a channel ended, kept for a peer that asks to resume it after the fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The peer ended it (its Disconnect without error, after all its data).
    Clean,
    /// It failed (Disconnect with this text).
    Reset(String),
    /// Its dial failed (ConnectResponse failure with this text).
    Refused(String),
}

impl Plane {
    /// Whose link `link` is, and how its channels survive its loss. Set by the role once the
    /// peer is known (authenticated), before channels use the link.
    pub fn set_link_resume(&mut self, link: LinkId, owner: PeerKey, resume: Resume) {
        if let Some(l) = self.links.get_mut(&link) {
            l.owner = owner;
            l.resume = if self.timings.transport_grace.is_zero() {
                Resume::Off
            } else {
                resume
            };
        }
    }

    pub(in crate::session::plane) fn link_resume(&self, link: LinkId) -> Resume {
        self.links.get(&link).map_or(Resume::Off, |l| l.resume)
    }

    pub(in crate::session::plane) fn link_owner(&self, link: LinkId) -> PeerKey {
        self.links
            .get(&link)
            .map_or(PeerKey::default(), |l| l.owner)
    }

    /// The channel a message from `link` names: the one on that link, or the one whose peer
    /// sends on that link after a resume in which the two sides asked on different links
    /// (each keeps sending on the link it asked on). Never one on another link: frames still
    /// coming from a link a channel has left would arrive twice.
    pub(in crate::session::plane) fn channel_on(
        &self,
        link: LinkId,
        channel: ChannelId,
    ) -> Option<ChanKey> {
        self.by_wire.get(&(link, channel)).copied()
    }

    /// A new channel on `link`: it keeps what it sends when the link can resume it exactly.
    pub(in crate::session::plane) fn register_owner(&mut self, key: ChanKey, link: LinkId) {
        let owner = self.link_owner(link);
        let keep = self.link_resume(link) == Resume::Exact;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.owner = owner;
        ch.stream.keep = keep && ch.windowed;
        self.by_owner.insert((owner, ch.id), key);
    }

    /// Channel `key` is on lost link `dead`: suspend it if it can be resumed, else end it.
    pub(in crate::session::plane) fn link_lost(
        &mut self,
        now: Instant,
        key: ChanKey,
        dead: LinkId,
        resume: Resume,
        reason: &str,
    ) {
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let can = match (&ch.local, resume) {
            (Local::Route(Some(_)), _) => ch.relay.as_ref().is_some_and(|r| r.exact),
            (Local::Route(None), _) => false,
            (_, Resume::Exact) => ch.stream.keep || ch.protocol == Protocol::Udp,
            // The reference's client resumes channels that the server dialled for it.
            (_, Resume::Legacy) => ch.side == Side::Dialer,
            (_, Resume::Off) => false,
        };
        if !can || self.timings.transport_grace.is_zero() {
            self.abort_channel(now, key, Some(dead), reason);
            return;
        }
        self.suspend(now, key, dead, resume == Resume::Exact);
    }

    fn suspend(&mut self, now: Instant, key: ChanKey, dead: LinkId, exact: bool) {
        let grace = self.timings.transport_grace;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let first = ch.suspended.is_none();
        if first {
            ch.suspended = Some(Suspension {
                awaiting: false,
                exact,
            });
            self.stats.channels_suspended += 1;
        } else if let Some(s) = &mut ch.suspended {
            s.awaiting = false;
        }
        // The leg that died can no longer answer a forwarded resume.
        let dead_leg = (0..2).find(|i| ch.leg(*i) == Some(dead));
        if let Some(r) = &mut ch.relay {
            if r.awaiting.is_some() && r.awaiting == dead_leg {
                r.awaiting = None;
            }
        }
        let id = ch.id;
        // Frames queued on the lost link will never be credited back.
        ch.on_link = 0;
        ch.over_share = false;
        if ch.holding == Some(dead) {
            ch.holding = None;
        }
        let conn = ch.conn();
        self.by_wire.remove(&(dead, id));
        self.set_alias(key, None);
        // A connect deadline waits with the channel; it starts again on resume.
        self.timers.cancel(Timer::Chan(key));
        // What the batch holds goes to the log, to leave on resume.
        self.flush_batch(now, key);
        if let Some(conn) = conn {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.blocking == Some(dead) {
                    c.blocking = None;
                }
                if c.parked_on == Some(dead) {
                    c.parked_on = None;
                }
            }
            self.pause_conn_read(conn, None);
        }
        if first {
            self.timers.set(Timer::Grace(key), now + grace);
        }
    }

    /// The grace of a suspended channel ran out: it ends with an error on this side; a live
    /// link (a relay's other leg, or one a resume was asked on) hears it too.
    pub(in crate::session::plane) fn grace_expired(&mut self, now: Instant, key: ChanKey) {
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if ch.suspended.is_none() && ch.closing.is_none() {
            return;
        }
        debug!(channel = %ch.id, "transport grace over: channel ends");
        if ch.closing.is_some() {
            // Everything was sent and ended; the peer most likely has it all and forgot
            // the channel, its answer lost with the link.
            self.remove_channel(key, true);
            return;
        }
        if ch.relay.as_ref().is_some_and(|r| r.ended != [false; 2]) {
            // One end ended it and the other most likely had that, its answer lost: the
            // end still waiting for that answer hears the end instead.
            let legs = [ch.leg(0), ch.leg(1)];
            let id = ch.id;
            for l in legs.into_iter().flatten() {
                self.send(
                    l,
                    &Message::Disconnect {
                        channel: id,
                        error: None,
                    },
                );
            }
            self.remove_channel(key, false);
            return;
        }
        self.stats.channels_expired += 1;
        let dead = (!self.links.contains_key(&ch.link)).then_some(ch.link);
        self.abort_channel(now, key, dead, NOT_RESTORED);
    }

    /// Ask the peer to resume every suspended channel not yet asked, on the ready links of
    /// the same peer that can resume exactly (spread round robin): a client does it when its
    /// link is back, the server when a peer whose channels it holds is back, either at once
    /// when another link of that peer is still up. Both may ask for the same channel at the
    /// same time; each then takes the other's request as the answer. Channels whose peer came
    /// back unable to resume (it no longer speaks the extension) end.
    pub fn resume_suspended(&mut self, now: Instant) {
        self.forward_held_resumes();
        let keys: Vec<(ChanKey, PeerKey)> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.relay.is_none() && c.suspended.is_some_and(|s| s.exact && !s.awaiting)
            })
            .map(|(k, c)| (*k, c.owner))
            .collect();
        if keys.is_empty() {
            return;
        }
        let ready: Vec<(LinkId, PeerKey, Resume)> = self
            .links
            .iter()
            .filter(|(_, l)| l.ready)
            .map(|(k, l)| (*k, l.owner, l.resume))
            .collect();
        let mut asked = 0;
        for (key, owner) in keys {
            let theirs: Vec<(LinkId, Resume)> = ready
                .iter()
                .filter(|(_, o, _)| *o == owner)
                .map(|(l, _, r)| (*l, *r))
                .collect();
            let exact: Vec<LinkId> = theirs
                .iter()
                .filter(|(_, r)| *r == Resume::Exact)
                .map(|(l, _)| *l)
                .collect();
            if exact.is_empty() {
                if !theirs.is_empty() {
                    debug!("the peer is back but cannot resume: channel ends");
                    self.stats.channels_expired += 1;
                    self.abort_channel(now, key, None, CHANNEL_EXPIRED);
                }
                continue;
            }
            self.next_resume = (self.next_resume + 1) % exact.len();
            self.ask_resume(key, exact[self.next_resume]);
            asked += 1;
        }
        if asked > 0 {
            debug!(channels = asked, "asked the peer to resume channels");
        }
    }

    fn ask_resume(&mut self, key: ChanKey, link: LinkId) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.link = link;
        if let Some(s) = &mut ch.suspended {
            s.awaiting = true;
        }
        let (received, written) = ch.stream.resume_counts();
        let channel = ch.id;
        self.by_wire.insert((link, channel), key);
        self.send(
            link,
            &Message::ChannelResume {
                channel,
                received,
                written,
            },
        );
    }

    /// A ChannelResume arrived on `link`: the answer to ours, a peer asking us, or (relay) one
    /// end asking the other.
    pub(in crate::session::plane) fn channel_resume(
        &mut self,
        now: Instant,
        link: LinkId,
        channel: ChannelId,
        received: u64,
        written: u64,
    ) {
        if self.link_resume(link) != Resume::Exact {
            debug!(%link, "ChannelResume from a peer that did not negotiate it ignored");
            return;
        }
        let here = self.by_wire.get(&(link, channel)).copied();
        let owned = self
            .by_owner
            .get(&(self.link_owner(link), channel))
            .copied();
        let Some(key) = here.or(owned) else {
            self.answer_unknown(link, channel);
            return;
        };
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if ch.relay.is_some() {
            self.relay_resume(now, key, link, received, written);
            return;
        }
        // Asked ourselves, on this link or another of the peer's: this is the answer (or
        // the peer's own request, crossing ours; either carries what we need).
        let awaiting = ch.suspended.is_some_and(|s| s.awaiting);
        if awaiting && ch.link != link {
            // Both asked, on different links: we keep sending on ours, the peer on its own.
            self.set_alias(key, Some(link));
        }
        if !awaiting {
            // The peer asks: the channel moves here (from a lost link, or from one the peer
            // gave up on before we noticed), and we answer with our counts first.
            self.move_to(now, key, link);
            let Some(ch) = self.channels.get_mut(&key) else {
                return;
            };
            let (r, w) = ch.stream.resume_counts();
            self.send(
                link,
                &Message::ChannelResume {
                    channel,
                    received: r,
                    written: w,
                },
            );
        }
        self.complete_resume(now, key, received, written);
    }

    /// The peer continues channel `key` on `link`: it leaves its old link (suspended first if
    /// that one is still up: the peer gave up on it before we noticed).
    fn move_to(&mut self, now: Instant, key: ChanKey, link: LinkId) {
        self.set_alias(key, None);
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let (old, id) = (ch.link, ch.id);
        if old != link {
            if self.links.contains_key(&old) && ch.suspended.is_none() {
                let exact = self.link_resume(old) == Resume::Exact;
                self.suspend(now, key, old, exact);
            }
            self.by_wire.remove(&(old, id));
        }
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.link = link;
        }
        self.by_wire.insert((link, id), key);
    }

    /// The link the peer sends channel `key` on when it is not the channel's own (see
    /// [`crate::session::channel::Channel::alias`]).
    pub(in crate::session::plane) fn set_alias(&mut self, key: ChanKey, alias: Option<LinkId>) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let id = ch.id;
        if let Some(old) = std::mem::replace(&mut ch.alias, alias) {
            if old != ch.link {
                self.by_wire.remove(&(old, id));
            }
        }
        if let Some(a) = alias {
            self.by_wire.insert((a, id), key);
        }
    }

    /// Both sides have the other's counts: send again what the peer lacks, and go on.
    fn complete_resume(&mut self, now: Instant, key: ChanKey, received: u64, written: u64) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let was_suspended = ch.suspended.take().is_some();
        let again = ch.stream.on_peer_resume(received, written);
        if ch.side == Side::Dialer && ch.phase == Phase::Open {
            // Our ConnectResponse may have been lost with the link; a second one is ignored
            // by a peer that had it. It goes before the data, which a peer still connecting
            // would take for its own early data.
            let (link, channel) = (ch.link, ch.id);
            self.send(
                link,
                &Message::ConnectResponse {
                    success: true,
                    channel,
                    error: None,
                },
            );
        }
        self.finish_resume(now, key, again, was_suspended);
    }

    /// Send what the peer lacks, then the end if we ended meanwhile, and read again.
    fn finish_resume(&mut self, now: Instant, key: ChanKey, again: Vec<Bytes>, counted: bool) {
        self.timers.cancel(Timer::Grace(key));
        if counted {
            self.stats.channels_resumed += 1;
        }
        for chunk in again {
            self.resend(key, chunk);
        }
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let (link, id, conn) = (ch.link, ch.id, ch.conn());
        let unconfirmed = match ch.side {
            Side::Socks => !ch.confirmed,
            Side::Dialer => ch.phase != Phase::Open,
            Side::Relay => false,
        };
        if unconfirmed {
            let wait = self.timings.connect_timeout
                + if ch.side == Side::Socks {
                    self.timings.fast_open_grace
                } else {
                    std::time::Duration::ZERO
                };
            self.timers.set(Timer::Chan(key), now + wait);
        }
        if let Some(end) = ch.closing.clone() {
            self.send(
                link,
                &Message::Disconnect {
                    channel: id,
                    error: end,
                },
            );
            return;
        }
        self.refresh_window(key);
        if let Some(conn) = conn {
            self.resume_conn_read(conn);
        }
    }

    /// Frame and queue bytes already counted as sent (a replay).
    fn resend(&mut self, key: ChanKey, payload: Bytes) {
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let (link, id) = (ch.link, ch.id);
        let frame = self.data_frame(Protocol::Tcp, id, payload, None);
        let len = frame.len();
        if self.transmit_for(link, Some(key), frame) {
            if let Some(ch) = self.channels.get_mut(&key) {
                ch.on_link += len;
            }
        }
    }

    /// Our peer lost track of a channel we asked it to resume (it says "channel expired").
    /// One still connecting is asked for again as new: the peer never dialled it, or its dial
    /// failed; the bytes sent so far go again from the start. Any other ends with an error.
    /// Returns false when the Disconnect is not about such a resume.
    pub(in crate::session::plane) fn resume_refused(
        &mut self,
        now: Instant,
        key: ChanKey,
        error: Option<&str>,
    ) -> bool {
        let Some(ch) = self.channels.get_mut(&key) else {
            return false;
        };
        let awaiting = ch.suspended.is_some_and(|s| s.awaiting);
        // Unasked, "channel expired" comes through a relay whose other end lost the channel's
        // Connect with its link: one not yet confirmed connects again.
        let relayed_loss =
            error == Some(CHANNEL_EXPIRED) && ch.side == Side::Socks && !ch.confirmed;
        if !awaiting && !relayed_loss {
            return false;
        }
        if error != Some(CHANNEL_EXPIRED) {
            // The peer had the channel and it ended while the link was down (its answer to
            // our resume tells how): it is no longer suspended, the end is handled as any.
            ch.suspended = None;
            self.timers.cancel(Timer::Grace(key));
            return false;
        }
        if ch.closing.is_some() && (ch.side != Side::Socks || ch.confirmed) {
            // We ended it and the peer forgot it: it had our end (its answer was lost with
            // the link), or it gave up; either way nobody is left to tell.
            self.remove_channel(key, false);
            return true;
        }
        // What it sent (FastOpen) is all still in its log, and goes again after the Connect;
        // an end it already sent goes again after that.
        let retry = ch.side == Side::Socks
            && !ch.confirmed
            && ch.stream.log.start() == 0
            && ch.stream.acked == 0;
        if !retry {
            self.stats.channels_expired += 1;
            self.abort_channel(now, key, None, CHANNEL_EXPIRED);
            return true;
        }
        let connect = Connect {
            protocol: ch.protocol,
            channel: ch.id,
            target: ch.target.clone(),
        };
        ch.suspended = None;
        let again = ch.stream.on_peer_resume(0, 0);
        let link = ch.link;
        debug!(%link, channel = %connect.channel, "the peer never had the channel: connecting again");
        self.send(link, &Message::Connect(connect));
        self.finish_resume(now, key, again, true);
        true
    }

    /// Channel `key`, on a link that resumes exactly, is about to be forgotten: remember how
    /// it ended, so that a peer asking to resume it (its answer lost with a link) learns that
    /// instead of "channel expired" (which would make it connect again).
    pub(in crate::session::plane) fn remember_end(&mut self, key: ChanKey, ending: Ending) {
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        // A relay answers for both ends: each may come back asking.
        let (owner, other) = match &ch.relay {
            Some(r) if r.exact => (ch.owner, Some(r.route_owner)),
            Some(_) => return,
            None if self.link_resume_of(ch) == Resume::Exact => (ch.owner, None),
            None => return,
        };
        let id = ch.id;
        for owner in std::iter::once(owner).chain(other) {
            let k = (owner, id);
            if self.ended.insert(k, ending.clone()).is_none() {
                self.ended_order.push_back(k);
                if self.ended_order.len() > ENDED_MAX {
                    if let Some(old) = self.ended_order.pop_front() {
                        self.ended.remove(&old);
                    }
                }
            }
        }
    }

    /// Whether the channel was on a link that resumes exactly (the link may be gone).
    fn link_resume_of(&self, ch: &crate::session::channel::Channel) -> Resume {
        if ch.stream.keep {
            return Resume::Exact;
        }
        self.link_resume(ch.link)
    }

    /// Answer a resume of a channel we no longer hold: how it ended, or "channel expired".
    fn answer_unknown(&mut self, link: LinkId, channel: ChannelId) {
        let msg = match self.ended.get(&(self.link_owner(link), channel)) {
            Some(Ending::Clean) => Message::Disconnect {
                channel,
                error: None,
            },
            Some(Ending::Reset(e)) => Message::Disconnect {
                channel,
                error: Some(e.clone()),
            },
            Some(Ending::Refused(e)) => Message::ConnectResponse {
                success: false,
                channel,
                error: Some(e.clone()),
            },
            None => {
                debug!(%link, %channel, "resume of a channel we do not hold");
                Message::Disconnect {
                    channel,
                    error: Some(CHANNEL_EXPIRED.into()),
                }
            }
        };
        self.send(link, &msg);
    }

    /// A reference client's resume Connect: the channel it names moves to `link` if we hold
    /// it for the same peer; anything else is expired. Never dialled, never answered.
    pub(in crate::session::plane) fn connect_resume(
        &mut self,
        now: Instant,
        link: LinkId,
        connect: Connect,
    ) {
        let channel = connect.channel;
        let found = self
            .by_owner
            .get(&(self.link_owner(link), channel))
            .copied()
            .filter(|k| {
                self.channels
                    .get(k)
                    .is_some_and(|c| c.relay.is_none() && c.protocol == connect.protocol)
            });
        let Some(key) = found else {
            debug!(%link, %channel, "resume Connect for a channel we do not hold");
            self.answer_unknown(link, channel);
            return;
        };
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if ch.stream.keep || ch.suspended.is_some_and(|s| s.exact) {
            // Between our peers it is our relay asking: the end that lost the channel's
            // other leg is back and did not ask for it itself. We ask, with our counts.
            if ch.suspended.is_some_and(|s| !s.awaiting) && self.link_resume(link) == Resume::Exact
            {
                self.ask_resume(key, link);
            }
            return;
        }
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if ch.link == link && ch.suspended.is_none() {
            return;
        }
        self.move_to(now, key, link);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let was_suspended = ch.suspended.take().is_some();
        let held = ch.stream.take_held();
        self.finish_resume(now, key, held, was_suspended);
    }

    /// A ChannelResume for a relayed channel, from `link` (one end, on its new link or its
    /// live one).
    fn relay_resume(
        &mut self,
        now: Instant,
        key: ChanKey,
        link: LinkId,
        received: u64,
        written: u64,
    ) {
        let owner = self.link_owner(link);
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let Some(r) = ch.relay.as_deref() else {
            return;
        };
        // Which leg speaks: by the link it is on, else by whose channel it is.
        let leg = if ch.leg(0) == Some(link) {
            0
        } else if ch.leg(1) == Some(link) {
            1
        } else if ch.owner == owner {
            0
        } else if r.route_owner == owner {
            1
        } else {
            return;
        };
        let other = 1 - leg;
        let (id, old, other_link) = (ch.id, ch.leg(leg), ch.leg(other));
        let (awaiting, held) = (r.awaiting, r.held);
        if awaiting == Some(leg) && old == Some(link) {
            // The answer we waited for: it goes to the end that asked, and the relay opens.
            self.relay_open(key);
            if let Some(to) = other_link {
                self.forward_resume(to, id, received, written);
            }
            return;
        }
        // An end asks (from a new link, or again): the relay holds the channel until the
        // other end has answered.
        if let Some(old) = old.filter(|o| *o != link) {
            self.by_wire.remove(&(old, id));
        }
        self.by_wire.insert((link, id), key);
        // The other end's link, or, if that one is gone, another of the same peer: the
        // request goes there, whether or not that peer knows the channel still.
        let other_owner = self.leg_owner(key, other);
        let to = other_link
            .filter(|l| self.links.contains_key(l))
            .or_else(|| other_owner.and_then(|o| self.exact_link_of(o)));
        let grace = self.timings.transport_grace;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.set_leg(leg, link);
        if let Some(to) = to.filter(|t| Some(*t) != other_link) {
            if let Some(old) = other_link {
                self.by_wire.remove(&(old, id));
            }
            ch.set_leg(other, to);
            self.by_wire.insert((to, id), key);
        }
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.suspended.is_none() {
            ch.suspended = Some(Suspension {
                awaiting: false,
                exact: true,
            });
            self.timers.set(Timer::Grace(key), now + grace);
        }
        let Some(r) = ch.relay.as_deref_mut() else {
            return;
        };
        match (to, held) {
            (Some(to), Some((h, hr, hw))) if h == other => {
                // Both ends came back: each gets the other's counts.
                self.relay_open(key);
                self.forward_resume(to, id, received, written);
                self.forward_resume(link, id, hr, hw);
            }
            (Some(to), _) => {
                r.awaiting = Some(other);
                r.held = Some((leg, received, written));
                self.forward_resume(to, id, received, written);
            }
            (None, _) => {
                // The other end is gone too: its own resume will take these counts.
                r.awaiting = None;
                r.held = Some((leg, received, written));
            }
        }
    }

    /// Both ends of a relayed channel have each other's counts: frames pass again.
    fn relay_open(&mut self, key: ChanKey) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Some(r) = ch.relay.as_deref_mut() {
            r.awaiting = None;
            r.held = None;
        }
        if ch.suspended.take().is_some() {
            self.stats.channels_resumed += 1;
        }
        self.timers.cancel(Timer::Grace(key));
    }

    /// The owner of a relayed channel's leg `i`.
    fn leg_owner(&self, key: ChanKey, i: usize) -> Option<PeerKey> {
        let ch = self.channels.get(&key)?;
        match i {
            0 => Some(ch.owner),
            _ => ch.relay.as_ref().map(|r| r.route_owner),
        }
    }

    /// A ready link of peer `owner` that resumes exactly.
    fn exact_link_of(&self, owner: PeerKey) -> Option<LinkId> {
        self.links
            .iter()
            .find(|(_, l)| l.ready && l.owner == owner && l.resume == Resume::Exact)
            .map(|(k, _)| *k)
    }

    /// Relayed channels holding one end's resume for the other end, whose peer is back on
    /// a new link: the request goes there (the peer answers with its counts, or with
    /// "channel expired" if it never had the channel, which the relay passes back).
    fn forward_held_resumes(&mut self) {
        let waiting: Vec<(ChanKey, usize, u64, u64)> = self
            .channels
            .iter()
            .filter_map(|(k, c)| {
                let r = c.relay.as_deref()?;
                let (leg, rr, ww) = r.held?;
                let other = 1 - leg;
                let dead = c.leg(other).is_none_or(|l| !self.links.contains_key(&l));
                (r.awaiting.is_none() && dead).then_some((*k, other, rr, ww))
            })
            .collect();
        self.probe_returning_ends();
        for (key, other, received, written) in waiting {
            let Some(owner) = self.leg_owner(key, other) else {
                continue;
            };
            let Some(to) = self.exact_link_of(owner) else {
                continue;
            };
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            let id = ch.id;
            if let Some(old) = ch.leg(other) {
                self.by_wire.remove(&(old, id));
            }
            ch.set_leg(other, to);
            if let Some(r) = ch.relay.as_deref_mut() {
                r.awaiting = Some(other);
            }
            self.by_wire.insert((to, id), key);
            self.forward_resume(to, id, received, written);
        }
    }

    /// Relayed channels one of whose ends lost its link while the other did not (so nobody
    /// asked to resume yet), that end being back: a resume Connect asks it to resume the
    /// channel, or to say it never had it (its Connect was lost), which lets the other end
    /// connect again.
    fn probe_returning_ends(&mut self) {
        let lost: Vec<(ChanKey, usize)> = self
            .channels
            .iter()
            .filter_map(|(k, c)| {
                let r = c.relay.as_deref()?;
                if !r.exact || c.suspended.is_none() || r.held.is_some() || r.awaiting.is_some() {
                    return None;
                }
                let dead = |i: usize| c.leg(i).is_none_or(|l| !self.links.contains_key(&l));
                match (dead(0), dead(1)) {
                    (false, true) => Some((*k, 1)),
                    (true, false) => Some((*k, 0)),
                    _ => None,
                }
            })
            .collect();
        for (key, leg) in lost {
            let Some(owner) = self.leg_owner(key, leg) else {
                continue;
            };
            let Some(to) = self.exact_link_of(owner) else {
                continue;
            };
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            let (id, protocol, target) = (ch.id, ch.protocol, ch.target.clone());
            if let Some(old) = ch.leg(leg) {
                self.by_wire.remove(&(old, id));
            }
            ch.set_leg(leg, to);
            self.by_wire.insert((to, id), key);
            self.send(
                to,
                &Message::ConnectResume(Connect {
                    protocol,
                    channel: id,
                    target,
                }),
            );
        }
    }

    fn forward_resume(&mut self, to: LinkId, channel: ChannelId, received: u64, written: u64) {
        self.send(
            to,
            &Message::ChannelResume {
                channel,
                received,
                written,
            },
        );
    }
}

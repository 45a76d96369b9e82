//! Agent mode: channels passed between a connector's link and a provider's, frames forwarded
//! as they came.

use bytes::Bytes;

use super::{Plane, Resume, Timer};
use crate::session::channel::{ChanKey, Channel, Local, RelayResume, Side};
use crate::session::LinkId;
use crate::time::Instant;
use crate::wire::{Connect, Message, Protocol};

impl Plane {
    /// Start relaying a Connect from `from` (a connector) to `to` (a provider); `to = None`
    /// holds it until [`Plane::route_to`] names a provider.
    pub fn relay(
        &mut self,
        now: Instant,
        from: LinkId,
        connect: Connect,
        to: Option<LinkId>,
    ) -> Option<ChanKey> {
        if self.by_wire.contains_key(&(from, connect.channel))
            || self
                .by_owner
                .contains_key(&(self.link_owner(from), connect.channel))
        {
            return None;
        }
        let key = self.next_chan;
        self.next_chan += 1;
        self.stats.channels_opened += 1;
        let mut ch = Channel::new(
            connect.channel,
            connect.protocol,
            from,
            Local::Route(None),
            Side::Relay,
            now,
        );
        // Kept to ask a provider back from a lost link about it (a resume Connect).
        ch.target = connect.target.clone();
        self.channels.insert(key, Box::new(ch));
        self.by_wire.insert((from, connect.channel), key);
        self.register_owner(key, from);
        self.timers.set(
            Timer::Chan(key),
            now + self.timings.connect_timeout + self.timings.fast_open_grace,
        );
        match to {
            Some(to) => self.route_to(now, key, to, &connect),
            None => self.timers.set(
                Timer::Chan(key),
                now + self
                    .timings
                    .connect_timeout
                    .min(self.timings.connector_wait_provider),
            ),
        }
        Some(key)
    }

    /// Send a held relayed Connect (and the data that came with it) to a provider.
    pub fn route_to(&mut self, now: Instant, key: ChanKey, to: LinkId, connect: &Connect) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if self.by_wire.contains_key(&(to, ch.id)) {
            return;
        }
        ch.local = Local::Route(Some(to));
        let early = std::mem::take(&mut ch.early);
        ch.early_len = 0;
        let hold = ch.holding.take();
        let id = ch.id;
        self.timers.set(
            Timer::Chan(key),
            now + self.timings.connect_timeout + self.timings.fast_open_grace,
        );
        if let Some(l) = hold {
            self.unblock_link(l);
        }
        self.by_wire.insert((to, id), key);
        let from = self.channels.get(&key).map_or(to, |c| c.link);
        self.send(to, &Message::Connect(connect.clone()));
        // Flow control is end to end: when only one side speaks it, or the two agreed on
        // different windows with us, neither may count on acknowledgements from the other.
        let (wf, wt) = (self.flow_window(from), self.flow_window(to));
        if connect.protocol == Protocol::Tcp && wf != wt {
            for (link, w) in [(from, wf), (to, wt)] {
                if w.is_some() {
                    self.send(link, &Message::ChannelNoWindow { channel: id });
                }
            }
        }
        // The relay keeps no data: its channel resumes only if both ends can replay, which
        // takes acknowledgements end to end.
        let both = self.link_resume(from) == Resume::Exact && self.link_resume(to) == Resume::Exact;
        let exact = both && (connect.protocol == Protocol::Udp || (wf.is_some() && wf == wt));
        let route_owner = self.link_owner(to);
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.relay = Some(Box::new(RelayResume {
                exact,
                route_owner,
                ..RelayResume::default()
            }));
        }
        self.by_owner.insert((route_owner, id), key);
        for frame in early {
            self.transmit(to, frame);
        }
        // The connector ended while it waited (its Disconnect went with the held frames). An
        // exact relay still passes the provider's answers (its ConnectResponse, its end),
        // which the connector, lingering, waits for; another one is done.
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.pending_end.is_some() {
            match ch.relay.as_deref_mut() {
                Some(r) if r.exact => r.ended[0] = true,
                _ => self.remove_channel(key, false),
            }
        }
    }

    /// A relayed channel waiting for a provider gave up.
    pub fn fail_relay(&mut self, key: ChanKey, error: &str) {
        if let Some(ch) = self.channels.get(&key) {
            let (link, id) = (ch.link, ch.id);
            self.refuse_connect(link, id, error);
            self.remove_channel(key, false);
        }
    }

    pub(super) fn relay_frame(
        &mut self,
        now: Instant,
        key: ChanKey,
        from: LinkId,
        to: LinkId,
        frame: Bytes,
    ) {
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.last_active = now;
        }
        self.transmit(to, frame);
        if self.link_over(to) {
            let already = self
                .links
                .get(&to)
                .is_some_and(|l| l.paused_links.contains(&from));
            if !already {
                if let Some(l) = self.links.get_mut(&to) {
                    l.paused_links.push(from);
                }
                self.block_link(from);
            }
        }
    }
}

//! Per-channel flow control, with peers that speak our extension. The LinkSocks wire has none:
//! with a reference peer a slow local writer can only pause its whole link. With the extension
//! each channel's sender stops at a window of unacknowledged bytes and the receiver
//! acknowledges what it has written out, so a slow writer holds back its own channel only.

use bytes::Bytes;

use super::{ConnState, Plane};
use crate::ids::ChannelId;
use crate::session::channel::ChanKey;
use crate::session::{ConnId, LinkId};
use crate::wire::Message;

/// The smallest flow-control window: a receiver acknowledges everything it has written once
/// a quarter of this has accumulated, so no sender with at least this window waits forever,
/// whatever the receiver's own window.
pub const MIN_WINDOW: usize = 64 << 10;

/// What a receiver allows a flow-controlled channel beyond twice its window before it pauses
/// the link anyway (against a peer that ignores the window): room for the frame that filled
/// the window, which may be a whole read.
pub const WINDOW_OVERSHOOT: usize = 1 << 20;

impl Plane {
    /// Our own flow-control window (configured, not below [`MIN_WINDOW`]), offered to peers.
    pub fn own_window(&self) -> usize {
        self.data.channel_window.max(MIN_WINDOW)
    }

    /// Whether channels on `link` are flow-controlled (both ends speak the extension).
    pub(super) fn windowed(&self, link: LinkId) -> bool {
        self.flow_window(link).is_some()
    }

    /// The window agreed on `link`, if any.
    pub(super) fn flow_window(&self, link: LinkId) -> Option<usize> {
        self.links.get(&link).and_then(|l| l.flow_window)
    }

    /// The peer on `link` speaks our per-channel flow control, with `window` agreed (no
    /// effect unless we speak it too). Both ends must use the same window: a receiver bounds a
    /// channel's unwritten bytes by it, and past that bound pauses the link, acknowledgements
    /// and all.
    pub fn set_flow_window(&mut self, link: LinkId, window: usize) {
        let on = self.data.channel_flow;
        if let Some(l) = self.links.get_mut(&link) {
            l.flow_window = on.then_some(window.max(MIN_WINDOW));
        }
    }

    /// Sender: `payload` bytes of channel `key` (as read, before any compression) were queued
    /// on its link; they count against its window until the receiver acknowledges them. True
    /// when this fills the window: the channel's local socket must wait for acknowledgements.
    pub(super) fn count_sent(&mut self, key: ChanKey, payload: usize) -> bool {
        let Some(link) = self.channels.get(&key).map(|c| c.link) else {
            return false;
        };
        let window = self.flow_window(link).unwrap_or(usize::MAX);
        let Some(ch) = self.channels.get_mut(&key) else {
            return false;
        };
        if !ch.windowed {
            return false;
        }
        ch.unacked += payload;
        if ch.unacked >= window && !ch.window_full {
            ch.window_full = true;
            return true;
        }
        false
    }

    /// Receiver: how far beyond the high mark the unwritten bytes of local socket `conn` may go
    /// before Data from `link` for it pauses the link. Nothing for a channel without a window.
    pub(super) fn receive_guard(&self, link: LinkId, conn: ConnId) -> usize {
        let windowed = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Channel(key)) => self.channels.get(key).is_some_and(|c| c.windowed),
            _ => false,
        };
        if !windowed {
            return 0;
        }
        // A sender stops once its window is full, but the frame that filled it may be large
        // (a whole read): the guard leaves room for that, since pausing the link would also
        // hold back the acknowledgements other channels wait for.
        self.flow_window(link)
            .map_or(0, |w| 2 * w + WINDOW_OVERSHOOT)
    }

    /// Receiver of a flow-controlled channel: `bytes` were written out to its local socket.
    /// Acknowledged a quarter of our window at a time, and all at once when everything
    /// received is written (so a sender whose window is smaller than ours, at least
    /// [`MIN_WINDOW`], is never left waiting). A SOCKS reply written to the same socket counts
    /// too: a few bytes of extra credit, harmless.
    pub(super) fn acknowledge(&mut self, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let ConnState::Channel(key) = c.state else {
            return;
        };
        let idle = c.backlog.queued() == 0;
        // Acknowledged whenever the link's peer speaks the extension, whether or not this
        // channel counts its own window: the sender's count is what must not stall.
        let Some(link) = self.channels.get(&key).map(|c| c.link) else {
            return;
        };
        let Some(window) = self.flow_window(link) else {
            return;
        };
        let quantum = (window / 4).max(1);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.to_ack += bytes;
        if ch.to_ack >= quantum || (idle && ch.to_ack >= MIN_WINDOW / 4) {
            let n = ch.to_ack.min(u32::MAX as usize);
            ch.to_ack -= n;
            let (link, channel) = (ch.link, ch.id);
            self.send(
                link,
                &Message::ChannelAck {
                    channel,
                    bytes: n as u32,
                },
            );
        }
    }

    /// The receiver acknowledged `bytes` of `channel`: more may be sent. A relay passes the
    /// acknowledgement on when the channel is flow-controlled end to end.
    pub(super) fn channel_ack(
        &mut self,
        link: LinkId,
        channel: ChannelId,
        bytes: usize,
        frame: Bytes,
    ) {
        let Some(&key) = self.by_wire.get(&(link, channel)) else {
            return;
        };
        let window = self.flow_window(link).unwrap_or(usize::MAX);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Some(to) = ch.other_link(link) {
            if self.windowed(to) {
                self.transmit(to, frame);
            }
            return;
        }
        ch.unacked = ch.unacked.saturating_sub(bytes);
        if ch.window_full && ch.unacked < window {
            ch.window_full = false;
            if let Some(conn) = ch.conn() {
                self.resume_conn_read(conn);
            }
        }
    }

    /// A relay says `channel`'s far end does not speak flow control: stop counting its window.
    pub(super) fn channel_no_window(&mut self, link: LinkId, channel: ChannelId) {
        let Some(&key) = self.by_wire.get(&(link, channel)) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.other_link(link).is_some() || !ch.windowed {
            return;
        }
        ch.windowed = false;
        ch.unacked = 0;
        if std::mem::take(&mut ch.window_full) {
            if let Some(conn) = ch.conn() {
                self.resume_conn_read(conn);
            }
        }
    }

    /// Whether the channel of local socket `conn` must not be read: its window is full, or it
    /// has its share of the link queue.
    pub(super) fn channel_holds_reading(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Channel(key)) => self
                .channels
                .get(key)
                .is_some_and(|c| c.window_full || c.over_share),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ids::SeededIds;
    use crate::session::config::{BatchPolicy, DataConfig, Timings};
    use crate::session::output::Output;
    use crate::time::Instant;
    use crate::wire::{self, Connect, DecodeLimits, Protocol};

    const T0: Instant = Instant::ZERO;
    const CHANNEL: ChannelId = ChannelId([7; 16]);
    const K: usize = 1 << 10;

    struct Setup {
        p: Plane,
        link: LinkId,
        conn: ConnId,
        key: ChanKey,
    }

    /// A plane with one link on which `window` was agreed, and one open channel we dialled
    /// for the peer on it. Reads go out at once (no batching), so each read is one frame.
    fn setup(window: usize, tweak: impl FnOnce(&mut DataConfig)) -> Setup {
        let mut data = DataConfig {
            batch: BatchPolicy::Immediate,
            channel_window: window,
            ..DataConfig::default()
        };
        tweak(&mut data);
        let ids = Box::new(SeededIds::new(1));
        let mut p = Plane::new(data, Timings::default(), false, ids, T0);
        let link = p.new_link_id();
        p.add_link(T0, link);
        p.set_link_ready(T0, link);
        p.set_flow_window(link, window);
        let connect = Connect {
            protocol: Protocol::Tcp,
            channel: CHANNEL,
            target: Some(("target.test".into(), 80)),
        };
        p.dial(T0, link, connect);
        let conn = p
            .out
            .iter()
            .find_map(|o| match o {
                Output::Dial { conn, .. } => Some(*conn),
                _ => None,
            })
            .expect("a dial");
        p.dial_result(T0, conn, Ok(()));
        let key = p.by_wire[&(link, CHANNEL)];
        p.out.clear();
        Setup { p, link, conn, key }
    }

    impl Setup {
        /// The application side of our channel sent `n` bytes.
        fn read(&mut self, n: usize) {
            let req = self.p.conn_data(T0, self.conn, Bytes::from(vec![b'x'; n]));
            assert!(req.is_none());
        }

        /// A frame arrived from the peer.
        fn peer_sends(&mut self, msg: &Message) {
            let frame = wire::encode::encode_to_bytes(msg).expect("encodable");
            self.peer_frame(frame);
        }

        fn peer_frame(&mut self, frame: Bytes) {
            let routed = self.p.link_frame(T0, self.link, frame);
            assert!(matches!(routed, super::super::Routed::Done));
        }

        /// The peer sent `n` bytes of Data on the channel.
        fn data_peer_sends(&mut self, n: usize) {
            let payload = Bytes::from(vec![b'y'; n]);
            let frame = self.p.data_frame(Protocol::Tcp, CHANNEL, payload, None);
            self.peer_frame(frame);
        }

        fn ack(&mut self, bytes: u32) {
            let msg = Message::ChannelAck {
                channel: CHANNEL,
                bytes,
            };
            self.peer_sends(&msg);
        }

        fn outputs(&mut self) -> Vec<Output> {
            self.p.out.drain(..).collect()
        }

        fn read_paused(&mut self) -> bool {
            let conn = self.conn;
            let outs = self.outputs();
            assert!(!outs
                .iter()
                .any(|o| matches!(o, Output::ResumeRead { conn: c } if *c == conn)));
            outs.iter()
                .any(|o| matches!(o, Output::PauseRead { conn: c } if *c == conn))
        }

        fn read_resumed(&mut self) -> bool {
            let conn = self.conn;
            self.outputs()
                .iter()
                .any(|o| matches!(o, Output::ResumeRead { conn: c } if *c == conn))
        }

        /// The acknowledgements we sent the peer since the last look.
        fn acks_sent(&mut self) -> Vec<u32> {
            let limits = DecodeLimits::default();
            self.outputs()
                .into_iter()
                .filter_map(|o| match o {
                    Output::Transmit { frame, .. } => match wire::decode(frame, &limits) {
                        Ok(Message::ChannelAck { channel, bytes }) => {
                            assert_eq!(channel, CHANNEL);
                            Some(bytes)
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        }

        fn unacked(&self) -> usize {
            self.p.channels[&self.key].unacked
        }
    }

    #[test]
    fn windows_are_agreed_at_least_min_window_and_only_when_enabled() {
        let mut s = setup(MIN_WINDOW, |_| {});
        assert_eq!(s.p.own_window(), MIN_WINDOW);
        s.p.set_flow_window(s.link, 1000);
        assert_eq!(s.p.flow_window(s.link), Some(MIN_WINDOW));
        s.p.set_flow_window(s.link, 5 * MIN_WINDOW);
        assert_eq!(s.p.flow_window(s.link), Some(5 * MIN_WINDOW));

        let mut off = setup(4 * MIN_WINDOW, |d| d.channel_flow = false);
        assert_eq!(off.p.own_window(), 4 * MIN_WINDOW);
        assert_eq!(off.p.flow_window(off.link), None);
        assert!(!off.p.channels[&off.key].windowed);
        // Without a window nothing is counted and nothing pauses for it.
        for _ in 0..8 {
            off.read(16 * K);
        }
        assert!(!off.read_paused());
        assert_eq!(off.unacked(), 0);
    }

    #[test]
    fn a_full_window_pauses_reading() {
        let mut s = setup(MIN_WINDOW, |_| {});
        assert!(s.p.channels[&s.key].windowed);
        for _ in 0..3 {
            s.read(16 * K);
        }
        assert_eq!(s.unacked(), 48 * K);
        assert!(!s.read_paused());
        s.read(16 * K);
        assert_eq!(s.unacked(), MIN_WINDOW);
        assert!(s.read_paused());
        assert!(s.p.channels[&s.key].window_full);
        assert!(s.p.channel_holds_reading(s.conn));
    }

    #[test]
    fn an_ack_below_the_window_resumes_reading() {
        let mut s = setup(MIN_WINDOW, |_| {});
        s.read(MIN_WINDOW);
        assert!(s.read_paused());
        s.ack(0);
        assert!(!s.read_resumed());
        s.ack(1);
        assert!(s.read_resumed());
        assert_eq!(s.unacked(), MIN_WINDOW - 1);
        // The one byte of room fills again.
        s.read(1);
        assert!(s.read_paused());
        s.ack(MIN_WINDOW as u32);
        assert!(s.read_resumed());
        assert_eq!(s.unacked(), 0);
    }

    #[test]
    fn acks_go_a_quarter_window_at_a_time() {
        let window = 4 * MIN_WINDOW;
        let mut s = setup(window, |_| {});
        s.data_peer_sends(window / 4 + 36 * K);
        assert!(s.acks_sent().is_empty());
        s.p.conn_written(s.conn, 20 * K);
        assert!(s.acks_sent().is_empty());
        // A quarter window written, though more is still queued.
        s.p.conn_written(s.conn, window / 4 - 20 * K);
        assert_eq!(s.acks_sent(), [(window / 4) as u32]);
        s.p.conn_written(s.conn, 30 * K);
        assert!(s.acks_sent().is_empty());
        // Everything written: the rest is acknowledged at once.
        s.p.conn_written(s.conn, 6 * K);
        assert_eq!(s.acks_sent(), [(36 * K) as u32]);
    }

    #[test]
    fn acks_go_when_idle_but_not_for_crumbs() {
        let mut s = setup(4 * MIN_WINDOW, |_| {});
        s.data_peer_sends(20 * K);
        s.p.conn_written(s.conn, 20 * K);
        assert_eq!(s.acks_sent(), [(20 * K) as u32]);
        // Idle, but less than a quarter of the smallest window: wait for more.
        s.data_peer_sends(K);
        s.p.conn_written(s.conn, K);
        assert!(s.acks_sent().is_empty());
        s.data_peer_sends(15 * K);
        s.p.conn_written(s.conn, 15 * K);
        assert_eq!(s.acks_sent(), [(16 * K) as u32]);
    }

    #[test]
    fn no_window_stops_counting() {
        let mut s = setup(MIN_WINDOW, |_| {});
        s.read(MIN_WINDOW);
        assert!(s.read_paused());
        s.peer_sends(&Message::ChannelNoWindow { channel: CHANNEL });
        assert!(s.read_resumed());
        assert!(!s.p.channels[&s.key].windowed);
        assert_eq!(s.unacked(), 0);
        for _ in 0..8 {
            s.read(16 * K);
        }
        assert!(!s.read_paused());
        assert_eq!(s.unacked(), 0);
    }

    #[test]
    fn a_windowed_channel_may_queue_past_the_high_mark_before_the_link_pauses() {
        let mut s = setup(MIN_WINDOW, |d| {
            d.conn_high_water = 64 * K;
            d.conn_low_water = 16 * K;
        });
        let guard = 2 * MIN_WINDOW + WINDOW_OVERSHOOT;
        assert_eq!(s.p.receive_guard(s.link, s.conn), guard);
        let pauses_link =
            |outs: Vec<Output>| outs.iter().any(|o| matches!(o, Output::PauseLink { .. }));
        s.data_peer_sends(64 * K);
        assert!(!pauses_link(s.outputs()));
        // Without a window the high mark alone holds.
        s.peer_sends(&Message::ChannelNoWindow { channel: CHANNEL });
        assert_eq!(s.p.receive_guard(s.link, s.conn), 0);
        s.data_peer_sends(K);
        assert!(pauses_link(s.outputs()));
    }
}

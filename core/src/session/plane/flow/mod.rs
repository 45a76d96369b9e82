//! Per-channel flow control, with peers that speak our extension. The LinkSocks wire has none:
//! with a reference peer a slow local writer can only pause its whole link. With the extension
//! each channel's sender stops at a window of unacknowledged bytes and the receiver
//! acknowledges what it has written out, so a slow writer holds back its own channel only.

pub mod resume;
pub mod stream;

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

pub use resume::Resume;

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

    /// Sender: `payload` (as read, before any compression) of channel `key` was queued on its
    /// link. It counts against the window until the receiver acknowledges it, and a channel
    /// that resumes exactly keeps it until then. True when this fills the window: the
    /// channel's local socket must wait for acknowledgements.
    pub(super) fn count_sent(&mut self, key: ChanKey, payload: &Bytes) -> bool {
        let Some(link) = self.channels.get(&key).map(|c| c.link) else {
            return false;
        };
        let window = self.flow_window(link).unwrap_or(usize::MAX) as u64;
        let Some(ch) = self.channels.get_mut(&key) else {
            return false;
        };
        ch.stream.on_send(payload, false);
        if !ch.windowed {
            return false;
        }
        if ch.stream.unacked() >= window && !ch.window_full {
            ch.window_full = true;
            return true;
        }
        false
    }

    /// After a resume: whether the window is full follows from the counts the peer gave.
    pub(super) fn refresh_window(&mut self, key: ChanKey) {
        let Some(link) = self.channels.get(&key).map(|c| c.link) else {
            return;
        };
        let window = self.flow_window(link).unwrap_or(usize::MAX) as u64;
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.window_full = ch.windowed && ch.stream.unacked() >= window;
        }
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

    /// Receiver: `bytes` of channel data were written out to local socket `conn`.
    /// Acknowledged a quarter of our window at a time, and all at once when everything
    /// received is written (so a sender whose window is smaller than ours, at least
    /// [`MIN_WINDOW`], is never left waiting). Nothing is sent while the channel is
    /// suspended: its resume carries the count.
    pub(super) fn acknowledge(&mut self, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let ConnState::Channel(key) = c.state else {
            return;
        };
        let idle = c.backlog.queued() == 0;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.stream.on_written(bytes);
        let link = ch.link;
        if ch.suspended.is_some() {
            return;
        }
        // Acknowledged whenever the link's peer speaks the extension, whether or not this
        // channel counts its own window: the sender's count is what must not stall.
        let Some(window) = self.flow_window(link) else {
            return;
        };
        let quantum = (window / 4).max(1) as u64;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        let pending = ch.stream.to_ack();
        if pending >= quantum || (idle && pending >= (MIN_WINDOW / 4) as u64) {
            let n = ch.stream.take_ack(u32::MAX as u64);
            let channel = ch.id;
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
        let Some(key) = self.channel_on(link, channel) else {
            return;
        };
        let window = self.flow_window(link).unwrap_or(usize::MAX) as u64;
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if let Some(to) = ch.other_link(link) {
            if ch.suspended.is_none() && self.windowed(to) {
                self.transmit(to, frame);
            }
            return;
        }
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.stream.on_ack(bytes as u64);
        if ch.window_full && ch.stream.unacked() < window {
            ch.window_full = false;
            if let Some(conn) = ch.conn() {
                self.resume_conn_read(conn);
            }
        }
    }

    /// A relay says `channel`'s far end does not speak flow control: stop counting its window.
    pub(super) fn channel_no_window(&mut self, link: LinkId, channel: ChannelId) {
        let Some(key) = self.channel_on(link, channel) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.other_link(link).is_some() || !ch.windowed {
            return;
        }
        ch.windowed = false;
        // Nothing will be acknowledged: nothing can be kept for a resume either.
        ch.stream.keep = false;
        ch.stream.acked = ch.stream.sent;
        let sent = ch.stream.sent;
        ch.stream.log.reset(sent);
        if ch.closing.is_some() {
            // It lingered for the far end's answer, which an end without the window will
            // not send.
            self.remove_channel(key, false);
            return;
        }
        if std::mem::take(&mut ch.window_full) {
            if let Some(conn) = ch.conn() {
                self.resume_conn_read(conn);
            }
        }
    }

    /// Whether the channel of local socket `conn` must not be read: its window is full, it
    /// has its share of the link queue, or its link is lost.
    pub(super) fn channel_holds_reading(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Channel(key)) => self
                .channels
                .get(key)
                .is_some_and(|c| c.window_full || c.over_share || c.suspended.is_some()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;

//! Frames from links: decoding, the channel messages the plane handles itself, and Data
//! written out to local sockets.

use bytes::Bytes;
use tracing::{debug, info, trace};

use super::flow::resume::{Ending, CHANNEL_EXPIRED};
use super::{is_error_text, unspecified, Plane, Routed, Timer};
use crate::ids::ChannelId;
use crate::session::channel::{ChanKey, Local, Phase, Side};
use crate::session::output::Output;
use crate::session::{ConnId, LinkId};
use crate::socks::Reply;
use crate::time::Instant;
use crate::wire::{self, Data, Message, DATA_HEADER_LEN};

impl Plane {
    /// Decode a frame; log and count what cannot be decoded.
    pub fn decode(&mut self, link: LinkId, frame: Bytes) -> Option<Message> {
        self.stats.frames_from_links += 1;
        self.stats.bytes_from_links += frame.len() as u64;
        match wire::decode(frame, &self.limits) {
            Ok(m) => Some(m),
            Err(e) => {
                self.stats.bad_frames += 1;
                let first = self
                    .links
                    .get_mut(&link)
                    .is_some_and(|l| !std::mem::replace(&mut l.malformed_logged, true));
                if first {
                    info!(%link, error = %e, "malformed message ignored (further ones logged at debug)");
                } else {
                    debug!(%link, error = %e, "message ignored");
                }
                None
            }
        }
    }

    /// Handle a frame's channel messages (Data, ConnectResponse, Disconnect); hand the rest to
    /// the role.
    pub fn link_frame(&mut self, now: Instant, link: LinkId, frame: Bytes) -> Routed {
        self.link_alive(now, link);
        // Relayed Data is passed on as the very frame that came, without decoding the payload.
        if frame.len() >= DATA_HEADER_LEN && frame[1] == wire::kind::DATA {
            let mut id = [0u8; 16];
            id.copy_from_slice(&frame[3..19]);
            if let Some(&key) = self.by_wire.get(&(link, ChannelId(id))) {
                if let Some(ch) = self.channels.get(&key) {
                    if let Some(to) = ch.other_link(link) {
                        self.stats.frames_from_links += 1;
                        self.stats.bytes_from_links += frame.len() as u64;
                        // While a leg is lost the ends resume from their counts: what
                        // passes meanwhile would arrive twice.
                        if ch.suspended.is_none() {
                            self.relay_frame(now, key, link, to, frame);
                        }
                        return Routed::Done;
                    }
                }
            }
        }
        let Some(msg) = self.decode(link, frame.clone()) else {
            return Routed::Done;
        };
        match msg {
            Message::Data(d) => {
                self.link_data(now, link, d, frame);
                Routed::Done
            }
            Message::ConnectResponse {
                success,
                channel,
                error,
            } => {
                self.connect_response(now, link, channel, success, error, frame);
                Routed::Done
            }
            Message::Disconnect { channel, error } => {
                self.disconnect(now, link, channel, error, frame);
                Routed::Done
            }
            Message::ChannelAck { channel, bytes } => {
                self.channel_ack(link, channel, bytes as usize, frame);
                Routed::Done
            }
            Message::ChannelNoWindow { channel } => {
                self.channel_no_window(link, channel);
                Routed::Done
            }
            Message::ChannelResume {
                channel,
                received,
                written,
            } => {
                self.channel_resume(now, link, channel, received, written);
                Routed::Done
            }
            Message::ConnectResume(c) => {
                self.connect_resume(now, link, c);
                Routed::Done
            }
            Message::Connect(c) => Routed::Connect(c),
            other => Routed::Control(other),
        }
    }

    fn link_data(&mut self, now: Instant, link: LinkId, d: Data, frame: Bytes) {
        let Some(key) = self.channel_on(link, d.channel) else {
            trace!(%link, channel = %d.channel, "Data for an unknown channel dropped");
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.last_active = now;
        if ch.closing.is_some() {
            return; // we ended it: nobody reads any more
        }
        if matches!(ch.local, Local::Conn(_)) {
            ch.stream.on_receive(d.payload.len());
            if ch.phase == Phase::Open {
                // The far side's bytes are an answer (an HTTP proxy's origin response).
                ch.replied = true;
            }
        }
        match (&ch.local, ch.phase) {
            (Local::Route(None), _) => {
                // FastOpen through a relay still looking for a provider: keep it, in order.
                ch.early_len += frame.len();
                ch.early.push(frame);
                if ch.early_len >= self.data.conn_high_water && ch.holding.is_none() {
                    // Bounded: stop reading the connector until the route exists.
                    let l = ch.link;
                    ch.holding = Some(l);
                    self.block_link(l);
                }
            }
            (Local::Route(Some(_)), _) => {} // handled in link_frame
            (Local::Conn(conn), Phase::Open) => {
                let conn = *conn;
                self.write_to_conn(link, conn, d.payload);
            }
            (Local::Conn(_), _) => {
                // Dialer with the dial still running (the peer uses FastOpen): keep it.
                ch.early_len += d.payload.len();
                ch.early.push(d.payload);
                if ch.early_len >= self.data.conn_high_water && ch.holding.is_none() {
                    let l = ch.link;
                    ch.holding = Some(l);
                    self.block_link(l);
                }
            }
            (Local::Udp(u), _) => {
                let u = u.clone();
                let side = ch.side;
                self.udp_from_link(key, side, u, d);
            }
        }
    }

    /// Queue Data from `link` for a local socket. When the socket's queue reaches its high
    /// mark the whole link is paused: the reference's wire gives no finer way to bound memory
    /// without dropping data. A flow-controlled channel's sender stops at its window instead,
    /// so for it the mark is the window above the high mark, reached only by a peer that
    /// ignores the window.
    pub(super) fn write_to_conn(&mut self, link: LinkId, conn: ConnId, data: Bytes) {
        let limit = self.data.conn_high_water + self.receive_guard(link, conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.backlog.add(data.len());
        self.out.push_back(Output::Write { conn, data });
        if c.blocking.is_none() && c.backlog.queued() >= limit {
            c.blocking = Some(link);
            self.block_link(link);
        }
    }

    /// Writes to a local socket progressed.
    pub fn conn_written(&mut self, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // SOCKS replies are written first; what follows is the peer's data.
        let control = c.control.min(bytes);
        c.control -= control;
        if c.backlog.sub(bytes) {
            if let Some(link) = c.blocking.take() {
                self.unblock_link(link);
            }
        }
        if bytes > control {
            self.acknowledge(conn, bytes - control);
        }
    }

    fn connect_response(
        &mut self,
        now: Instant,
        link: LinkId,
        channel: ChannelId,
        success: bool,
        error: Option<String>,
        frame: Bytes,
    ) {
        let Some(key) = self.channel_on(link, channel) else {
            return;
        };
        if !success {
            // A resume of ours answered with the failure of a dial we never heard of.
            self.resume_refused(now, key, error.as_deref());
        }
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if let Some(to) = ch.other_link(link) {
            if ch.suspended.is_some() {
                return; // a resumed provider sends it again
            }
            // Relay: the provider answered the connector.
            self.transmit(to, frame);
            if success {
                self.timers.cancel(Timer::Chan(key));
                if let Some(ch) = self.channels.get_mut(&key) {
                    ch.phase = Phase::Open;
                }
            } else {
                self.remember_end(key, Ending::Refused(error.unwrap_or_default()));
                self.remove_channel(key, false);
            }
            return;
        }
        if ch.side != Side::Socks || ch.link != link {
            return;
        }
        if ch.closing.is_some() {
            // We ended it meanwhile: a far side that dialled answers our end with its own;
            // one whose dial failed has nothing left to answer.
            if !success {
                self.remove_channel(key, false);
            }
            return;
        }
        if !success {
            let error = error.unwrap_or_default();
            debug!(%link, %channel, %error, "connect refused by the far side");
            // A reset tells an application that was told it is connected (FastOpen); one
            // still waiting gets the failure reply and a clean close, which keeps the reply.
            let told_connected = ch.fast_open && ch.replied;
            if !ch.replied {
                if let Some(conn) = ch.conn() {
                    self.refuse(conn, Reply::HostUnreachable);
                }
                if let Some(c) = self.channels.get_mut(&key) {
                    c.replied = true;
                }
            }
            self.remove_channel(key, told_connected);
            return;
        }
        self.timers.cancel(Timer::Chan(key));
        if let Some(c) = self.channels.get_mut(&key) {
            c.confirmed = true;
        }
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        match &ch.local {
            Local::Udp(u) => {
                let bound = u.bound.unwrap_or_else(unspecified);
                self.reply_success(key, bound);
                self.open_channel(now, key);
            }
            _ => {
                self.reply_success(key, unspecified());
                self.open_channel(now, key);
            }
        }
    }

    fn disconnect(
        &mut self,
        now: Instant,
        link: LinkId,
        channel: ChannelId,
        error: Option<String>,
        frame: Bytes,
    ) {
        let Some(key) = self.channel_on(link, channel) else {
            return;
        };
        if self.resume_refused(now, key, error.as_deref()) {
            return;
        }
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if let Some(to) = ch.other_link(link) {
            if error.as_deref() == Some(CHANNEL_EXPIRED) {
                // One end no longer has it (or never had: its Connect was lost), maybe in
                // answer to the other's resume: the other hears so, and may open it anew,
                // as a new channel through us.
                self.transmit(to, frame);
                self.remove_channel(key, false);
                return;
            }
            if ch.suspended.is_some() {
                return; // the end resumes its channel, then sends it again
            }
            let leg = usize::from(ch.link != link);
            self.transmit(to, frame);
            let Some(ch) = self.channels.get_mut(&key) else {
                return;
            };
            match ch.relay.as_deref_mut() {
                // Each end lingers until it has the other's Disconnect: so does the relay.
                Some(r) if r.exact => {
                    r.ended[leg] = true;
                    if r.ended == [true, true] {
                        self.remember_end(key, Ending::Clean);
                        self.remove_channel(key, false);
                    }
                }
                _ => self.remove_channel(key, false),
            }
            return;
        }
        if ch.closing.is_some() {
            // The answer to our own end: nothing is left to resend.
            self.remove_channel(key, false);
            return;
        }
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Local::Route(None) = ch.local {
            // The connector ended before a provider was found: pass the end on after what
            // it sent, once routed.
            if let Some(ch) = self.channels.get_mut(&key) {
                ch.early.push(frame);
                ch.pending_end = Some(error);
            }
            return;
        }
        if ch.side == Side::Dialer && ch.phase != Phase::Open {
            // The peer (with FastOpen) sent its data and its end while we dial: deliver the
            // data once connected, then close.
            if let Some(ch) = self.channels.get_mut(&key) {
                ch.pending_end = Some(error);
            }
            return;
        }
        // The reference says "EOF" for a clean end; only a real error resets the socket.
        let abort = error.as_deref().is_some_and(is_error_text);
        if ch.side == Side::Socks && !ch.replied {
            if let Some(conn) = ch.conn() {
                self.refuse(conn, Reply::HostUnreachable);
            }
        }
        self.peer_ended(now, key, abort);
    }

    /// The peer ended the channel (its Disconnect, after its data): forget it. A peer that
    /// resumes exactly lingers until it hears our end too, so it gets one.
    pub(super) fn peer_ended(&mut self, now: Instant, key: ChanKey, abort: bool) {
        let ending = if abort {
            Ending::Reset("connection reset".into())
        } else {
            Ending::Clean
        };
        self.remember_end(key, ending);
        if let Some(ch) = self.channels.get(&key) {
            if ch.stream.keep && ch.suspended.is_none() {
                let (link, channel) = (ch.link, ch.id);
                // Nothing here waits for it; the peer only lingers until it comes.
                self.send_deferred(
                    now,
                    link,
                    &Message::Disconnect {
                        channel,
                        error: None,
                    },
                );
            }
        }
        self.remove_channel(key, abort);
    }
}

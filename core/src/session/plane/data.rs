//! The outbound data path: bytes read from local sockets, batched and framed onto links, and
//! the pausing of those reads.

use bytes::{Bytes, BytesMut};
use tracing::debug;

use super::{is_error_text, ConnState, Plane, SocksRequest, Timer};
use crate::ids::ChannelId;
use crate::session::batch::Ready;
use crate::session::channel::{ChanKey, Local, Phase, Side};
use crate::session::output::Output;
use crate::session::{ConnId, LinkId};
use crate::time::Instant;
use crate::wire::{
    self, encode_data_header, gzip, Compression, Data, Message, Protocol, UdpTrailer,
    DATA_HEADER_LEN,
};

impl Plane {
    /// Bytes from a local TCP socket. Returns a parsed SOCKS request for the role to route.
    pub fn conn_data(&mut self, now: Instant, conn: ConnId, data: Bytes) -> Option<SocksRequest> {
        match self.conns.get(&conn)?.state {
            ConnState::Channel(key) => {
                self.channel_input(now, key, data);
                None
            }
            ConnState::UdpControl(_) => None, // nothing is expected on a UDP control connection
            ConnState::Waiting { .. } => {
                self.hold_early(conn, data);
                None
            }
            ConnState::Handshake { .. } => self.handshake(conn, data),
        }
    }

    /// Bytes read from a local socket into a buffer whose first [`DATA_HEADER_LEN`] bytes are
    /// free. When they go out at once as one frame, the header is written in front of them and
    /// the buffer itself becomes the frame: the payload is never copied on the way out.
    pub fn conn_read(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut buf: BytesMut,
    ) -> Option<SocksRequest> {
        if buf.len() <= DATA_HEADER_LEN {
            return None;
        }
        let len = buf.len() - DATA_HEADER_LEN;
        if let Some(ConnState::Channel(key)) = self.conns.get(&conn).map(|c| &c.state) {
            let key = *key;
            let busy = self
                .channels
                .get(&key)
                .is_some_and(|c| self.link_busy(c.link));
            if let Some(ch) = self.channels.get_mut(&key) {
                if ch.phase == Phase::Open
                    && ch.suspended.is_none()
                    && len < self.data.compression_threshold
                    && ch.batch.sends_at_once(len, busy, &self.data)
                {
                    ch.last_active = now;
                    let (link, id) = (ch.link, ch.id);
                    encode_data_header(
                        &mut buf[..DATA_HEADER_LEN],
                        Protocol::Tcp,
                        id,
                        Compression::None,
                        len as u32,
                    );
                    let frame = buf.freeze();
                    let payload = frame.slice(DATA_HEADER_LEN..);
                    self.transmit_data(link, key, frame, &payload);
                    if self.link_over(link) {
                        self.pause_conn_read(conn, Some(link));
                    }
                    return None;
                }
            }
        }
        let data = buf.split_off(DATA_HEADER_LEN).freeze();
        self.conn_data(now, conn, data)
    }

    /// Stream bytes read from a channel's local socket.
    fn channel_input(&mut self, now: Instant, key: ChanKey, data: Bytes) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.last_active = now;
        if ch.phase != Phase::Open {
            // Socks side before ConnectResponse (no FastOpen): hold it.
            ch.early_len += data.len();
            ch.early.push(data);
            if ch.early_len >= self.data.conn_high_water {
                if let Some(conn) = ch.conn() {
                    self.pause_conn_read(conn, None);
                }
            }
            return;
        }
        if ch.suspended.is_some() {
            // Nowhere to send it: it waits in the replay log (reading is paused meanwhile).
            self.send_tcp_data(key, data);
            return;
        }
        let link = ch.link;
        let busy = self.link_busy(link);
        let ch = self.channels.get_mut(&key).expect("present");
        let ready: Ready = ch.batch.push(now, data, busy, &self.data);
        let held = !ch.batch.is_empty();
        let conn = ch.conn();
        for payload in ready {
            self.send_tcp_data(key, payload);
        }
        if held {
            if let Some(deadline) = self
                .channels
                .get(&key)
                .and_then(|c| c.batch.deadline(&self.data))
            {
                self.timers.set_if_earlier(Timer::Batch(key), deadline);
            }
            if let Some(l) = self.links.get_mut(&link) {
                if !l.batched.contains(&key) {
                    l.batched.push(key);
                }
            }
        }
        if self.link_over(link) {
            if let Some(conn) = conn {
                self.pause_conn_read(conn, Some(link));
            }
        }
    }

    /// Move a channel to Open and pass on what waited for it.
    pub(super) fn open_channel(&mut self, now: Instant, key: ChanKey) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.phase = Phase::Open;
        let early = std::mem::take(&mut ch.early);
        ch.early_len = 0;
        let hold = ch.holding.take();
        let side = ch.side;
        let conn = ch.conn();
        let link = ch.link;
        let is_tcp = matches!(ch.local, Local::Conn(_));
        if let Some(l) = hold {
            self.unblock_link(l);
        }
        match side {
            // Socks side: what the application sent early goes to the link.
            Side::Socks => {
                if is_tcp {
                    for chunk in early {
                        self.channel_input(now, key, chunk);
                    }
                    if let Some(conn) = conn {
                        if self.link_over(link) {
                            self.pause_conn_read(conn, Some(link));
                        } else {
                            self.resume_conn_read(conn);
                        }
                    }
                }
            }
            // Dialer: what the peer sent early goes to the target.
            Side::Dialer => {
                if let Some(conn) = conn {
                    for chunk in early {
                        self.write_to_conn(link, conn, chunk);
                    }
                }
            }
            Side::Relay => {}
        }
        // An end that arrived while connecting takes effect now, after the held data.
        if let Some(end) = self
            .channels
            .get_mut(&key)
            .and_then(|c| c.pending_end.take())
        {
            match side {
                Side::Socks => self.finish_channel(now, key, end.as_deref()),
                _ => self.peer_ended(now, key, end.as_deref().is_some_and(is_error_text)),
            }
        }
    }

    /// Stop reading a local socket; with `link`, until that link drains (a socket paused for
    /// another reason is parked on the link all the same, so the drain resumes it).
    pub(super) fn pause_conn_read(&mut self, conn: ConnId, link: Option<LinkId>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(link) = link {
            if c.parked_on.is_none() {
                if let Some(l) = self.links.get_mut(&link) {
                    l.paused_readers.push(conn);
                    c.parked_on = Some(link);
                }
            }
        }
        if !c.read_paused {
            c.read_paused = true;
            self.out.push_back(Output::PauseRead { conn });
        }
    }

    /// Start reading a local socket again, unless something else still holds it: the link it
    /// is parked on, its peer's pause, or its channel's share of the link queue.
    pub(super) fn resume_conn_read(&mut self, conn: ConnId) {
        if self.channel_holds_reading(conn) {
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.parked_on.is_some() {
                return;
            }
            if c.read_paused {
                c.read_paused = false;
                self.out.push_back(Output::ResumeRead { conn });
            }
        }
    }

    /// Frame and queue one TCP payload of a channel; while its link is lost, keep it for
    /// the resume instead.
    fn send_tcp_data(&mut self, key: ChanKey, payload: Bytes) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.closing.is_some() {
            return;
        }
        if ch.suspended.is_some() {
            ch.stream.on_send(&payload, true);
            return;
        }
        let (link, id) = (ch.link, ch.id);
        let frame = self.data_frame(Protocol::Tcp, id, payload.clone(), None);
        self.transmit_data(link, key, frame, &payload);
    }

    /// Build a Data frame, compressing when it pays (never for data a sample shows to be
    /// incompressible: compression must not make a transfer slower).
    pub(super) fn data_frame(
        &self,
        protocol: Protocol,
        channel: ChannelId,
        payload: Bytes,
        udp: Option<UdpTrailer>,
    ) -> Bytes {
        let compress = payload.len() >= self.data.compression_threshold
            && (!self.data.compression_sampling || gzip::worth_compressing(&payload));
        if compress || udp.is_some() {
            let msg = Message::Data(Data {
                protocol,
                channel,
                compression: if compress {
                    Compression::Gzip
                } else {
                    Compression::None
                },
                payload,
                udp,
            });
            let mut b = BytesMut::new();
            if let Err(e) = wire::encode(&msg, &mut b) {
                debug!(%channel, error = %e, "cannot encode Data");
                return Bytes::new();
            }
            return b.freeze();
        }
        let mut b = BytesMut::with_capacity(DATA_HEADER_LEN + payload.len());
        b.resize(DATA_HEADER_LEN, 0);
        encode_data_header(
            &mut b,
            protocol,
            channel,
            Compression::None,
            payload.len() as u32,
        );
        b.extend_from_slice(&payload);
        b.freeze()
    }

    /// Send what a channel holds in its batch.
    pub(super) fn flush_batch(&mut self, now: Instant, key: ChanKey) {
        self.timers.cancel(Timer::Batch(key));
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Some(payload) = ch.batch.flush(now, &self.data) {
            self.send_tcp_data(key, payload);
        }
    }

    /// Queue a frame carrying data read from channel `key`'s local socket. A channel with
    /// more than its share of the link's queue stops being read until the link has written
    /// half of it: one bulk channel cannot fill the queue ahead of the others, and what it
    /// has in flight when its peer asks it to pause stays small.
    ///
    /// With flow control, the `payload` bytes (as read, before any compression) also count
    /// against the channel's window until the receiver acknowledges them.
    fn transmit_data(&mut self, link: LinkId, key: ChanKey, frame: Bytes, payload: &Bytes) {
        let len = frame.len();
        if !self.transmit_for(link, Some(key), frame) {
            return;
        }
        let share = self.data.channel_link_share;
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.on_link += len;
        let mut pause = false;
        if ch.on_link >= share && !ch.over_share {
            ch.over_share = true;
            pause = true;
        }
        let conn = ch.conn();
        if self.count_sent(key, payload) {
            pause = true;
        }
        if pause {
            if let Some(conn) = conn {
                self.pause_conn_read(conn, None);
            }
        }
    }
}

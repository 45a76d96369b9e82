//! The data plane both roles share: the tables of links, local sockets and channels, the SOCKS
//! front end, dialling, the movement of Data, flow control, liveness and the idle sweep.
//!
//! The roles ([`super::client`], [`super::server`]) decide where things go (which link a SOCKS
//! request uses, whether a Connect is dialled or relayed, what authentication means); the plane
//! carries them out. Everything here is role-neutral.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, trace};

use super::batch::Ready;
use super::channel::{ChanKey, Channel, Local, Phase, Side, UdpLocal};
use super::config::{DataConfig, SocksListen, Timings};
use super::flow::Backlog;
use super::output::{Event, Output};
use super::timer::TimerQueue;
use super::{ConnId, LinkId, ListenerId, UdpId};
use crate::addr::TargetAddr;
use crate::ids::{ChannelId, IdSource};
use crate::socks::{self, Command, Reply, Request, SocksServer};
use crate::time::Instant;
use crate::wire::{
    self, encode_data_header, gzip, Compression, Connect, Data, DecodeLimits, Message, Protocol,
    UdpTrailer, DATA_HEADER_LEN,
};

/// The smallest flow-control window: a receiver acknowledges everything it has written once
/// a quarter of this has accumulated, so no sender with at least this window waits forever,
/// whatever the receiver's own window.
pub const MIN_WINDOW: usize = 64 << 10;

/// What a receiver allows a flow-controlled channel beyond twice its window before it pauses
/// the link anyway (against a peer that ignores the window): room for the frame that filled
/// the window, which may be a whole read.
pub const WINDOW_OVERSHOOT: usize = 1 << 20;

/// Deadlines of the plane and of the roles built on it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The idle sweep.
    Cleaner,
    /// A channel's held batch must go out.
    Batch(ChanKey),
    /// A channel's connect / FastOpen / provider-wait deadline.
    Chan(ChanKey),
    /// A local socket's handshake or route-wait deadline.
    Conn(ConnId),
    /// Time to ping a link ...
    Ping(LinkId),
    /// ... and time by which its pong must have come.
    Pong(LinkId),
    /// Client: time to open a link again.
    Reconnect(LinkId),
    /// Server: a provider pinged before it gets new channels must have answered by now.
    Probe(LinkId),
    /// Server: a link must have authenticated by now.
    Auth(LinkId),
}

/// Counters for logs and metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub channels_opened: u64,
    pub bytes_from_links: u64,
    pub bytes_to_links: u64,
    pub frames_from_links: u64,
    pub frames_to_links: u64,
    pub bad_frames: u64,
    pub socks_replies: [u64; 9],
    pub udp_dropped_fragmented: u64,
    pub udp_dropped_foreign: u64,
    pub udp_dropped_backlog: u64,
    pub reconnects: u64,
}

pub struct LinkEntry {
    /// Authenticated: channels may use it.
    pub ready: bool,
    backlog: Backlog,
    /// Local sockets not read because this link is full.
    paused_readers: Vec<ConnId>,
    /// Links not read because this link is full (relayed channels).
    paused_links: Vec<LinkId>,
    /// How many writers (sockets or links) over their mark hold this link's reading paused.
    paused_by: usize,
    /// Channels holding a batch until this link drains.
    batched: Vec<ChanKey>,
    /// When the peer last showed it is alive (any frame, ping or pong).
    heard: Instant,
    /// A malformed message from this peer was already logged at info (later ones at debug:
    /// one line per offending peer, not one per message).
    malformed_logged: bool,
    /// The flow-control window agreed with the peer, when both speak the extension (the
    /// server's Hello names it: the smaller of the two sides' windows).
    pub flow_window: Option<usize>,
    /// Frames queued on the link in order, with the channel whose data each carries, so
    /// that written bytes can be credited back to their channels; `head_written` bytes of
    /// the first are already written.
    in_order: VecDeque<(Option<ChanKey>, usize)>,
    head_written: usize,
}

enum ConnState {
    /// SOCKS5 handshake in progress.
    Handshake {
        socks: Box<SocksServer>,
        listener: ListenerId,
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// Request parsed, waiting for the role to find a link for it.
    Waiting {
        request: Request,
        peer: SocketAddr,
        local: SocketAddr,
        early: Vec<Bytes>,
        early_len: usize,
        /// The application already ended its side.
        eof: bool,
    },
    /// Carries a TCP channel.
    Channel(ChanKey),
    /// Control connection of a UDP association.
    UdpControl(ChanKey),
}

struct ConnEntry {
    state: ConnState,
    /// Bytes handed out in `Write` and not yet written.
    backlog: Backlog,
    read_paused: bool,
    /// The link whose draining will resume this socket's reading (it is on that link's
    /// `paused_readers`).
    parked_on: Option<LinkId>,
    /// The link this socket's full write queue holds paused.
    blocking: Option<LinkId>,
}

pub struct ListenerEntry {
    pub socks: SocksListen,
    /// What the role attached (e.g. the reverse token the listener serves).
    pub tag: String,
    pub bound: Option<SocketAddr>,
}

/// A parsed SOCKS request the role must route.
#[derive(Debug)]
pub struct SocksRequest {
    pub conn: ConnId,
    pub listener: ListenerId,
    pub command: Command,
}

/// How a frame from a link was handled by the plane.
pub enum Routed {
    /// Consumed.
    Done,
    /// Not a channel message: for the role.
    Control(Message),
    /// A Connect: for the role to accept (dial / relay) or refuse.
    Connect(Connect),
}

pub struct Plane {
    pub data: DataConfig,
    pub timings: Timings,
    pub fast_open: bool,
    pub ids: Box<dyn IdSource>,
    pub out: VecDeque<Output>,
    pub timers: TimerQueue<Timer>,
    pub links: HashMap<LinkId, LinkEntry>,
    pub listeners: HashMap<ListenerId, ListenerEntry>,
    pub stats: Stats,
    conns: HashMap<ConnId, ConnEntry>,
    udps: HashMap<UdpId, ChanKey>,
    channels: HashMap<ChanKey, Channel>,
    by_wire: HashMap<(LinkId, ChannelId), ChanKey>,
    next_handle: u64,
    next_chan: ChanKey,
    limits: DecodeLimits,
}

impl Plane {
    pub fn new(
        data: DataConfig,
        timings: Timings,
        fast_open: bool,
        ids: Box<dyn IdSource>,
        now: Instant,
    ) -> Self {
        let limits = DecodeLimits {
            max_inflated: data.max_inflated,
        };
        let mut timers = TimerQueue::default();
        timers.set(Timer::Cleaner, now + timings.cleaner_interval);
        Plane {
            data,
            timings,
            fast_open,
            ids,
            out: VecDeque::new(),
            timers,
            links: HashMap::new(),
            listeners: HashMap::new(),
            stats: Stats::default(),
            conns: HashMap::new(),
            udps: HashMap::new(),
            channels: HashMap::new(),
            by_wire: HashMap::new(),
            next_handle: 1,
            next_chan: 1,
            limits,
        }
    }

    fn handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    pub fn new_link_id(&mut self) -> LinkId {
        LinkId(self.handle())
    }

    pub fn new_listener_id(&mut self) -> ListenerId {
        ListenerId(self.handle())
    }

    pub fn emit(&mut self, o: Output) {
        self.out.push_back(o);
    }

    pub fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    // ---------------------------------------------------------------- introspection

    /// Channels currently open (for status, tests and invariants).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Local TCP sockets currently known.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    pub fn udp_count(&self) -> usize {
        self.udps.len()
    }

    /// Bytes queued toward links and local sockets, and held in batches and early queues.
    pub fn buffered_bytes(&self) -> usize {
        let links: usize = self.links.values().map(|l| l.backlog.queued()).sum();
        let conns: usize = self.conns.values().map(|c| c.backlog.queued()).sum();
        let chans: usize = self
            .channels
            .values()
            .map(|c| c.batch.len() + c.early_len)
            .sum();
        links + conns + chans
    }

    /// Largest number of bytes one channel holds in this machine (batch + early data + its
    /// socket's unwritten queue).
    pub fn max_channel_bytes(&self) -> usize {
        self.channels
            .values()
            .map(|c| {
                let w = c
                    .conn()
                    .and_then(|k| self.conns.get(&k))
                    .map_or(0, |e| e.backlog.queued());
                c.batch.len() + c.early_len + w
            })
            .max()
            .unwrap_or(0)
    }

    pub fn links_ready(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.iter().filter(|(_, l)| l.ready).map(|(k, _)| *k)
    }

    // ---------------------------------------------------------------- links

    /// Register a link (opened by the client, accepted by the server).
    pub fn add_link(&mut self, now: Instant, link: LinkId) {
        self.links.insert(
            link,
            LinkEntry {
                ready: false,
                backlog: Backlog::new(self.data.link_high_water, self.data.link_low_water),
                paused_readers: Vec::new(),
                paused_links: Vec::new(),
                paused_by: 0,
                batched: Vec::new(),
                heard: now,
                malformed_logged: false,
                flow_window: None,
                in_order: VecDeque::new(),
                head_written: 0,
            },
        );
    }

    /// Mark a link authenticated and start its liveness pings.
    pub fn set_link_ready(&mut self, now: Instant, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.ready = true;
            self.timers
                .set(Timer::Ping(link), now + self.timings.ping_interval);
            self.event(Event::LinkReady { link });
        }
    }

    /// Our own flow-control window (configured, not below [`MIN_WINDOW`]), offered to peers.
    pub fn own_window(&self) -> usize {
        self.data.channel_window.max(MIN_WINDOW)
    }

    /// Whether channels on `link` are flow-controlled (both ends speak the extension).
    fn windowed(&self, link: LinkId) -> bool {
        self.flow_window(link).is_some()
    }

    /// The window agreed on `link`, if any.
    fn flow_window(&self, link: LinkId) -> Option<usize> {
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

    /// Queue one frame on a link. Returns false if the link is unknown.
    pub fn transmit(&mut self, link: LinkId, frame: Bytes) -> bool {
        self.transmit_for(link, None, frame)
    }

    /// Queue a frame carrying data read from channel `key`'s local socket. A channel with
    /// more than its share of the link's queue stops being read until the link has written
    /// half of it: one bulk channel cannot fill the queue ahead of the others, and what it
    /// has in flight when its peer asks it to pause stays small.
    ///
    /// With flow control, the `payload` bytes (as read, before any compression) also count
    /// against the channel's window until the receiver acknowledges them.
    fn transmit_data(&mut self, link: LinkId, key: ChanKey, frame: Bytes, payload: usize) {
        let len = frame.len();
        if !self.transmit_for(link, Some(key), frame) {
            return;
        }
        let share = self.data.channel_link_share;
        let window = self.flow_window(link).unwrap_or(usize::MAX);
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.on_link += len;
        let mut pause = false;
        if ch.on_link >= share && !ch.over_share {
            ch.over_share = true;
            pause = true;
        }
        if ch.windowed {
            ch.unacked += payload;
            if ch.unacked >= window && !ch.window_full {
                ch.window_full = true;
                pause = true;
            }
        }
        if pause {
            if let Some(conn) = ch.conn() {
                self.pause_conn_read(conn, None);
            }
        }
    }

    fn transmit_for(&mut self, link: LinkId, key: Option<ChanKey>, frame: Bytes) -> bool {
        let Some(l) = self.links.get_mut(&link) else {
            return false;
        };
        l.backlog.add(frame.len());
        l.in_order.push_back((key, frame.len()));
        self.stats.frames_to_links += 1;
        self.stats.bytes_to_links += frame.len() as u64;
        self.out.push_back(Output::Transmit { link, frame });
        true
    }

    /// Encode and queue a control message.
    pub fn send(&mut self, link: LinkId, msg: &Message) {
        match wire::encode::encode_to_bytes(msg) {
            Ok(frame) => {
                self.transmit(link, frame);
            }
            Err(e) => debug!(%link, error = %e, "cannot encode {}", msg.name()),
        }
    }

    /// A link not worth giving new channels: its reading is paused for a slow local writer,
    /// or its unsent frames are over the high mark.
    pub fn link_congested(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.paused_by > 0 || l.backlog.is_over())
    }

    fn link_busy(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.backlog.queued() >= self.data.max_batch)
    }

    fn link_over(&self, link: LinkId) -> bool {
        self.links.get(&link).is_some_and(|l| l.backlog.is_over())
    }

    /// Frames of `bytes` were written to the link's socket.
    pub fn link_sent(&mut self, now: Instant, link: LinkId, bytes: usize) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let drained = l.backlog.sub(bytes);
        let mut credits: Vec<(ChanKey, usize)> = Vec::new();
        let mut left = bytes + l.head_written;
        l.head_written = 0;
        while let Some(&(key, n)) = l.in_order.front() {
            if n > left {
                l.head_written = left;
                break;
            }
            left -= n;
            l.in_order.pop_front();
            if let Some(key) = key {
                credits.push((key, n));
            }
        }
        let idle = l.backlog.queued() < self.data.max_batch;
        let batched = if idle {
            std::mem::take(&mut l.batched)
        } else {
            Vec::new()
        };
        let (readers, links) = if drained {
            (
                std::mem::take(&mut l.paused_readers),
                std::mem::take(&mut l.paused_links),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let share = self.data.channel_link_share;
        for (key, n) in credits {
            let Some(ch) = self.channels.get_mut(&key) else {
                continue;
            };
            ch.on_link = ch.on_link.saturating_sub(n);
            if ch.over_share && ch.on_link <= share / 2 {
                ch.over_share = false;
                if let Some(conn) = ch.conn() {
                    self.resume_conn_read(conn);
                }
            }
        }
        for key in batched {
            self.flush_batch(now, key);
        }
        for conn in readers {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.parked_on = None;
            }
            self.resume_conn_read(conn);
        }
        for other in links {
            self.unblock_link(other);
        }
    }

    fn block_link(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.paused_by += 1;
            if l.paused_by == 1 {
                // A link we do not read cannot deliver its pong: don't count it as dead.
                self.timers.cancel(Timer::Pong(link));
                self.out.push_back(Output::PauseLink { link });
            }
        }
    }

    fn unblock_link(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.paused_by = l.paused_by.saturating_sub(1);
            if l.paused_by == 0 {
                self.out.push_back(Output::ResumeLink { link });
            }
        }
    }

    /// Liveness: a pong (or any frame) arrived.
    /// The peer showed it is alive: any frame, a pong, or a ping of its own.
    pub fn link_alive(&mut self, now: Instant, link: LinkId) {
        if let Some(l) = self.links.get_mut(&link) {
            l.heard = now;
        }
        self.timers.cancel(Timer::Pong(link));
    }

    /// Whether the peer on `link` showed it is alive less than `within` before `now`.
    pub fn heard_within(&self, link: LinkId, now: Instant, within: std::time::Duration) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| now.saturating_duration_since(l.heard) < within)
    }

    /// Forget a link and end every channel that used it. `reason` goes to the far ends.
    pub fn remove_link(&mut self, now: Instant, link: LinkId, reason: &str) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        self.timers.cancel(Timer::Ping(link));
        self.timers.cancel(Timer::Pong(link));
        for other in l.paused_links {
            self.unblock_link(other);
        }
        for conn in l.paused_readers {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.read_paused {
                    c.read_paused = false;
                    self.out.push_back(Output::ResumeRead { conn });
                }
            }
        }
        let keys: Vec<ChanKey> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                c.link == link || matches!(c.local, Local::Route(Some(o)) if o == link)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.abort_channel(now, key, Some(link), reason);
        }
    }

    // ---------------------------------------------------------------- listeners and accepts

    pub fn listen(&mut self, socks: SocksListen, tag: String) -> ListenerId {
        let listener = self.new_listener_id();
        self.out.push_back(Output::Listen {
            listener,
            host: socks.host.clone(),
            port: socks.port,
        });
        self.listeners.insert(
            listener,
            ListenerEntry {
                socks,
                tag,
                bound: None,
            },
        );
        listener
    }

    pub fn unlisten(&mut self, listener: ListenerId) {
        if self.listeners.remove(&listener).is_some() {
            self.out.push_back(Output::Unlisten { listener });
        }
    }

    pub fn listener_bound(&mut self, listener: ListenerId, result: &Result<SocketAddr, String>) {
        if let (Some(l), Ok(addr)) = (self.listeners.get_mut(&listener), result) {
            l.bound = Some(*addr);
            self.out.push_back(Output::Event(Event::Listening {
                listener,
                addr: *addr,
            }));
        }
    }

    /// An application connected to a SOCKS listener.
    pub fn accept(
        &mut self,
        now: Instant,
        listener: ListenerId,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> ConnId {
        let conn = ConnId(self.handle());
        let Some(l) = self.listeners.get(&listener) else {
            // The listener was closed meanwhile: refuse politely.
            self.out.push_back(Output::Close { conn, abort: false });
            return conn;
        };
        let socks = Box::new(SocksServer::new(l.socks.credentials.clone()));
        self.conns.insert(
            conn,
            ConnEntry {
                state: ConnState::Handshake {
                    socks,
                    listener,
                    peer,
                    local,
                },
                backlog: Backlog::new(self.data.conn_high_water, self.data.conn_low_water),
                read_paused: false,
                parked_on: None,
                blocking: None,
            },
        );
        self.timers
            .set(Timer::Conn(conn), now + self.timings.handshake_timeout);
        conn
    }

    // ---------------------------------------------------------------- local socket input

    /// Bytes from a local TCP socket. Returns a parsed SOCKS request for the role to route.
    pub fn conn_data(&mut self, now: Instant, conn: ConnId, data: Bytes) -> Option<SocksRequest> {
        let entry = self.conns.get_mut(&conn)?;
        match &mut entry.state {
            ConnState::Channel(key) => {
                let key = *key;
                self.channel_input(now, key, data);
                None
            }
            ConnState::UdpControl(_) => None, // nothing is expected on a UDP control connection
            ConnState::Waiting {
                early, early_len, ..
            } => {
                *early_len += data.len();
                let over = *early_len >= self.data.conn_high_water;
                early.push(data);
                if over && !entry.read_paused {
                    entry.read_paused = true;
                    self.out.push_back(Output::PauseRead { conn });
                }
                None
            }
            ConnState::Handshake { socks, peer, .. } => {
                let peer = *peer;
                let result = socks.feed(&data);
                let mut replies = Vec::new();
                while let Some(b) = socks.poll_transmit() {
                    replies.push(b);
                }
                for b in replies {
                    self.write(conn, b);
                }
                match result {
                    Err(e) => {
                        info!(%conn, %peer, error = %e, "SOCKS5 handshake refused");
                        if let Some(resp) = e.response() {
                            if resp.len() > 3 && resp[0] == 5 {
                                self.count_reply(resp[1]);
                            }
                            self.write(conn, resp);
                        }
                        self.drop_conn(conn, false);
                        None
                    }
                    Ok(consumed) => {
                        let entry = self.conns.get_mut(&conn)?;
                        let ConnState::Handshake {
                            socks,
                            listener,
                            peer,
                            local,
                        } = &mut entry.state
                        else {
                            return None;
                        };
                        let request = socks.take_request()?;
                        let (listener, peer, local) = (*listener, *peer, *local);
                        let rest = data.slice(consumed.min(data.len())..);
                        let command = request.command;
                        let early_len = rest.len();
                        entry.state = ConnState::Waiting {
                            request,
                            peer,
                            local,
                            early: if rest.is_empty() { vec![] } else { vec![rest] },
                            early_len,
                            eof: false,
                        };
                        self.timers.cancel(Timer::Conn(conn));
                        Some(SocksRequest {
                            conn,
                            listener,
                            command,
                        })
                    }
                }
            }
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
        if let Some(ConnEntry {
            state: ConnState::Channel(key),
            ..
        }) = self.conns.get(&conn)
        {
            let key = *key;
            let busy = self
                .channels
                .get(&key)
                .is_some_and(|c| self.link_busy(c.link));
            if let Some(ch) = self.channels.get_mut(&key) {
                if ch.phase == Phase::Open
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
                    self.transmit_data(link, key, buf.freeze(), len);
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

    /// Writes to a local socket progressed.
    pub fn conn_written(&mut self, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.backlog.sub(bytes) {
            if let Some(link) = c.blocking.take() {
                self.unblock_link(link);
            }
        }
        self.acknowledge(conn, bytes);
    }

    /// Receiver of a flow-controlled channel: `bytes` were written out to its local socket.
    /// Acknowledged a quarter of our window at a time, and all at once when everything
    /// received is written (so a sender whose window is smaller than ours, at least
    /// [`MIN_WINDOW`], is never left waiting). A SOCKS reply written to the same socket counts
    /// too: a few bytes of extra credit, harmless.
    fn acknowledge(&mut self, conn: ConnId, bytes: usize) {
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

    fn write(&mut self, conn: ConnId, data: Bytes) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.backlog.add(data.len());
        }
        self.out.push_back(Output::Write { conn, data });
    }

    /// Forget a local socket and close it.
    fn drop_conn(&mut self, conn: ConnId, abort: bool) {
        self.timers.cancel(Timer::Conn(conn));
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(link) = c.blocking {
                self.unblock_link(link);
            }
            self.out.push_back(Output::Close { conn, abort });
        }
    }

    fn count_reply(&mut self, code: u8) {
        if let Some(n) = self.stats.socks_replies.get_mut(code as usize) {
            *n += 1;
        }
    }

    /// Answer a waiting SOCKS request with a failure and close it.
    pub fn fail_socks(&mut self, conn: ConnId, reply: Reply) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.count_reply(reply as u8);
        self.write(conn, socks::encode_reply(reply, unspecified()));
        self.drop_conn(conn, false);
    }

    pub fn is_waiting(&self, conn: ConnId) -> bool {
        matches!(
            self.conns.get(&conn).map(|c| &c.state),
            Some(ConnState::Waiting { .. })
        )
    }

    /// A handshake or route wait ran out. Returns true if the conn was waiting for a route (the
    /// role then answers it); handshakes are closed here.
    pub fn conn_deadline(&mut self, conn: ConnId) -> bool {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Handshake { peer, .. }) => {
                info!(%conn, %peer, "SOCKS5 handshake not finished in time; closing");
                self.drop_conn(conn, false);
                false
            }
            Some(ConnState::Waiting { .. }) => true,
            _ => false,
        }
    }

    /// Open the channel for a waiting SOCKS request over `link`.
    pub fn start_socks_channel(&mut self, now: Instant, conn: ConnId, link: LinkId) {
        let Some(entry) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnState::Waiting {
            request,
            local,
            peer,
            early,
            early_len,
            eof,
        } = &mut entry.state
        else {
            return;
        };
        let request = request.clone();
        let (local, peer) = (*local, *peer);
        let early = std::mem::take(early);
        let early_len = std::mem::take(early_len);
        let eof = *eof;
        self.timers.cancel(Timer::Conn(conn));
        let id = ChannelId::random(self.ids.as_mut());
        let key = self.next_chan;
        self.next_chan += 1;
        self.stats.channels_opened += 1;
        match request.command {
            Command::Connect => {
                let mut ch =
                    Channel::new(id, Protocol::Tcp, link, Local::Conn(conn), Side::Socks, now);
                ch.windowed = self.windowed(link);
                ch.early = early;
                ch.early_len = early_len;
                ch.pending_end = eof.then_some(None);
                self.channels.insert(key, ch);
                self.by_wire.insert((link, id), key);
                if let Some(e) = self.conns.get_mut(&conn) {
                    e.state = ConnState::Channel(key);
                }
                let target = (request.target.host_string(), request.target.port());
                self.send(
                    link,
                    &Message::Connect(Connect {
                        protocol: Protocol::Tcp,
                        channel: id,
                        target: Some(target),
                    }),
                );
                // Without FastOpen the same guard bounds the wait for ConnectResponse.
                self.timers.set(
                    Timer::Chan(key),
                    now + self.timings.connect_timeout + self.timings.fast_open_grace,
                );
                if self.fast_open {
                    if let Some(c) = self.channels.get_mut(&key) {
                        c.fast_open = true;
                    }
                    self.reply_success(key, unspecified());
                    self.open_channel(now, key);
                }
            }
            Command::UdpAssociate => {
                if eof {
                    // The control connection is already gone: so is the association.
                    self.drop_conn(conn, false);
                    return;
                }
                let udp = UdpId(self.handle());
                // Only the application may use its relay: its IP, and its port when it named one.
                let named = match &request.target {
                    TargetAddr::Ip(a) => Some(*a),
                    TargetAddr::Domain(..) => None,
                };
                let allowed_ip = match named {
                    Some(a) if !a.ip().is_unspecified() => Some(a.ip()),
                    _ => Some(peer.ip()),
                };
                let allowed_port = named.map(|a| a.port()).filter(|p| *p != 0);
                let mut ch = Channel::new(
                    id,
                    Protocol::Udp,
                    link,
                    Local::Udp(UdpLocal {
                        udp,
                        control: Some(conn),
                        allowed_ip,
                        allowed_port,
                        app: None,
                        bound: None,
                    }),
                    Side::Socks,
                    now,
                );
                ch.phase = Phase::Binding;
                self.channels.insert(key, ch);
                self.by_wire.insert((link, id), key);
                self.udps.insert(udp, key);
                if let Some(e) = self.conns.get_mut(&conn) {
                    e.state = ConnState::UdpControl(key);
                }
                // The relay listens where the application reached us: same family, same interface.
                // An IPv4 application on a dual-stack listener arrives as an IPv4-mapped
                // address; a relay named that way (ATYP 4) is one it cannot send to.
                self.out.push_back(Output::BindUdp {
                    udp,
                    addr: Some(SocketAddr::new(canonical(local).ip(), 0)),
                });
                self.timers.set(
                    Timer::Chan(key),
                    now + self.timings.connect_timeout + self.timings.fast_open_grace,
                );
            }
        }
    }

    fn reply_success(&mut self, key: ChanKey, bound: SocketAddr) {
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if ch.replied || ch.side != Side::Socks {
            return;
        }
        ch.replied = true;
        if let Some(conn) = ch.conn() {
            self.count_reply(0);
            self.write(conn, socks::encode_reply(Reply::Succeeded, bound));
        }
    }

    // ---------------------------------------------------------------- dialling side

    /// Accept a Connect received on `link`: dial the target (TCP) or bind a socket (UDP).
    pub fn dial(&mut self, now: Instant, link: LinkId, connect: Connect) {
        if self.by_wire.contains_key(&(link, connect.channel)) {
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
                self.channels.insert(key, ch);
                self.by_wire.insert((link, connect.channel), key);
                self.conns.insert(
                    conn,
                    ConnEntry {
                        state: ConnState::Channel(key),
                        backlog: Backlog::new(self.data.conn_high_water, self.data.conn_low_water),
                        read_paused: false,
                        parked_on: None,
                        blocking: None,
                    },
                );
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
                self.channels.insert(key, ch);
                self.by_wire.insert((link, connect.channel), key);
                self.udps.insert(udp, key);
                self.out.push_back(Output::BindUdp { udp, addr: None });
                self.timers
                    .set(Timer::Chan(key), now + self.timings.connect_timeout);
            }
        }
    }

    /// The dialling side is ready (socket connected or bound): tell the peer, let data flow.
    fn confirm_dial(&mut self, now: Instant, key: ChanKey) {
        self.timers.cancel(Timer::Chan(key));
        let Some((link, id)) = self.channels.get(&key).map(|c| (c.link, c.id)) else {
            return;
        };
        self.send(
            link,
            &Message::ConnectResponse {
                success: true,
                channel: id,
                error: None,
            },
        );
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
        let Some(ConnEntry {
            state: ConnState::Channel(key),
            ..
        }) = self.conns.get(&conn)
        else {
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
                self.remove_channel(key, false);
            }
        }
    }

    // ---------------------------------------------------------------- relaying (agent mode)

    /// Start relaying a Connect from `from` (a connector) to `to` (a provider); `to = None`
    /// holds it until [`Plane::route_to`] names a provider.
    pub fn relay(
        &mut self,
        now: Instant,
        from: LinkId,
        connect: Connect,
        to: Option<LinkId>,
    ) -> Option<ChanKey> {
        if self.by_wire.contains_key(&(from, connect.channel)) {
            return None;
        }
        let key = self.next_chan;
        self.next_chan += 1;
        self.stats.channels_opened += 1;
        let ch = Channel::new(
            connect.channel,
            connect.protocol,
            from,
            Local::Route(None),
            Side::Relay,
            now,
        );
        self.channels.insert(key, ch);
        self.by_wire.insert((from, connect.channel), key);
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
        for frame in early {
            self.transmit(to, frame);
        }
        if self
            .channels
            .get(&key)
            .is_some_and(|c| c.pending_end.is_some())
        {
            self.remove_channel(key, false);
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

    // ---------------------------------------------------------------- frames from links

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
                if let Some(to) = self.channels.get(&key).and_then(|c| c.other_link(link)) {
                    self.stats.frames_from_links += 1;
                    self.stats.bytes_from_links += frame.len() as u64;
                    self.relay_frame(now, key, link, to, frame);
                    return Routed::Done;
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
            Message::Connect(c) => Routed::Connect(c),
            other => Routed::Control(other),
        }
    }

    fn relay_frame(&mut self, now: Instant, key: ChanKey, from: LinkId, to: LinkId, frame: Bytes) {
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

    fn link_data(&mut self, now: Instant, link: LinkId, d: Data, frame: Bytes) {
        let Some(&key) = self.by_wire.get(&(link, d.channel)) else {
            trace!(%link, channel = %d.channel, "Data for an unknown channel dropped");
            return;
        };
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        ch.last_active = now;
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
    fn write_to_conn(&mut self, link: LinkId, conn: ConnId, data: Bytes) {
        let windowed = match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Channel(key)) => self.channels.get(key).is_some_and(|c| c.windowed),
            _ => false,
        };
        // A sender stops once its window is full, but the frame that filled it may be large
        // (a whole read): the guard leaves room for that, since pausing the link would also
        // hold back the acknowledgements other channels wait for.
        let guard = if windowed {
            self.flow_window(link)
                .map_or(0, |w| 2 * w + WINDOW_OVERSHOOT)
        } else {
            0
        };
        let limit = self.data.conn_high_water + guard;
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

    /// The receiver acknowledged `bytes` of `channel`: more may be sent. A relay passes the
    /// acknowledgement on when the channel is flow-controlled end to end.
    fn channel_ack(&mut self, link: LinkId, channel: ChannelId, bytes: usize, frame: Bytes) {
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
    fn channel_no_window(&mut self, link: LinkId, channel: ChannelId) {
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
    fn channel_holds_reading(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn).map(|c| &c.state) {
            Some(ConnState::Channel(key)) => self
                .channels
                .get(key)
                .is_some_and(|c| c.window_full || c.over_share),
            _ => false,
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
        let Some(&key) = self.by_wire.get(&(link, channel)) else {
            return;
        };
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if let Some(to) = ch.other_link(link) {
            // Relay: the provider answered the connector.
            self.transmit(to, frame);
            if success {
                self.timers.cancel(Timer::Chan(key));
                if let Some(ch) = self.channels.get_mut(&key) {
                    ch.phase = Phase::Open;
                }
            } else {
                self.remove_channel(key, false);
            }
            return;
        }
        if ch.side != Side::Socks || ch.link != link {
            return;
        }
        if !success {
            let error = error.unwrap_or_default();
            debug!(%link, %channel, %error, "connect refused by the far side");
            let fast = ch.fast_open;
            if !ch.replied {
                if let Some(conn) = ch.conn() {
                    self.count_reply(Reply::HostUnreachable as u8);
                    self.write(
                        conn,
                        socks::encode_reply(Reply::HostUnreachable, unspecified()),
                    );
                }
                if let Some(c) = self.channels.get_mut(&key) {
                    c.replied = true;
                }
            }
            self.remove_channel(key, fast);
            return;
        }
        self.timers.cancel(Timer::Chan(key));
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
        let _ = now;
        let Some(&key) = self.by_wire.get(&(link, channel)) else {
            return;
        };
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        if let Some(to) = ch.other_link(link) {
            self.transmit(to, frame);
            self.remove_channel(key, false);
            return;
        }
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
                self.count_reply(Reply::HostUnreachable as u8);
                self.write(
                    conn,
                    socks::encode_reply(Reply::HostUnreachable, unspecified()),
                );
            }
        }
        self.remove_channel(key, abort);
    }

    // ---------------------------------------------------------------- channel data path

    /// Move a channel to Open and pass on what waited for it.
    fn open_channel(&mut self, now: Instant, key: ChanKey) {
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
                _ => self.remove_channel(key, end.as_deref().is_some_and(is_error_text)),
            }
        }
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

    /// Stop reading a local socket; with `link`, until that link drains (a socket paused for
    /// another reason is parked on the link all the same, so the drain resumes it).
    fn pause_conn_read(&mut self, conn: ConnId, link: Option<LinkId>) {
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
    fn resume_conn_read(&mut self, conn: ConnId) {
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

    /// Frame and queue one TCP payload of a channel.
    fn send_tcp_data(&mut self, key: ChanKey, payload: Bytes) {
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let (link, id, len) = (ch.link, ch.id, payload.len());
        let frame = self.data_frame(Protocol::Tcp, id, payload, None);
        self.transmit_data(link, key, frame, len);
    }

    /// Build a Data frame, compressing when it pays (never for data a sample shows to be
    /// incompressible: compression must not make a transfer slower).
    fn data_frame(
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
    fn flush_batch(&mut self, now: Instant, key: ChanKey) {
        self.timers.cancel(Timer::Batch(key));
        let Some(ch) = self.channels.get_mut(&key) else {
            return;
        };
        if let Some(payload) = ch.batch.flush(now, &self.data) {
            self.send_tcp_data(key, payload);
        }
    }

    // ---------------------------------------------------------------- UDP

    pub fn udp_bound(&mut self, now: Instant, udp: UdpId, result: Result<SocketAddr, String>) {
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
                            self.count_reply(Reply::GeneralFailure as u8);
                            self.write(
                                conn,
                                socks::encode_reply(Reply::GeneralFailure, unspecified()),
                            );
                        }
                        self.remove_channel(key, false);
                    }
                    _ => {
                        self.refuse_connect(link, id, &e);
                        self.remove_channel(key, false);
                    }
                }
            }
        }
    }

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

    fn udp_from_link(&mut self, key: ChanKey, side: Side, u: UdpLocal, d: Data) {
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

    // ---------------------------------------------------------------- ending channels

    /// The local side ended: send what is held, tell the far side, forget the channel.
    fn finish_channel(&mut self, now: Instant, key: ChanKey, error: Option<&str>) {
        self.flush_batch(now, key);
        let Some(ch) = self.channels.get(&key) else {
            return;
        };
        let (link, id) = (ch.link, ch.id);
        self.send(
            link,
            &Message::Disconnect {
                channel: id,
                error: error.map(|e| wire::encode::clip_text(e).to_string()),
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
                self.count_reply(Reply::GeneralFailure as u8);
                self.write(
                    conn,
                    socks::encode_reply(Reply::GeneralFailure, unspecified()),
                );
            }
        }
        for l in notify {
            self.send(l, &msg(id));
        }
        self.remove_channel(key, !unanswered);
    }

    /// Forget a channel, closing its local sockets (`abort`: with a reset).
    fn remove_channel(&mut self, key: ChanKey, abort: bool) {
        let Some(ch) = self.channels.remove(&key) else {
            return;
        };
        self.timers.cancel(Timer::Batch(key));
        self.timers.cancel(Timer::Chan(key));
        if let Some(l) = ch.holding {
            self.unblock_link(l);
        }
        self.by_wire.remove(&(ch.link, ch.id));
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

    // ---------------------------------------------------------------- timers

    /// Fire a plane timer. Role timers (Reconnect, Conn waits) are the role's.
    pub fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Cleaner => {
                self.sweep(now);
                self.timers
                    .set(Timer::Cleaner, now + self.timings.cleaner_interval);
            }
            Timer::Batch(key) => self.flush_batch(now, key),
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
                                self.count_reply(Reply::HostUnreachable as u8);
                                self.write(
                                    conn,
                                    socks::encode_reply(Reply::HostUnreachable, unspecified()),
                                );
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
                // and its pong with it. Such a peer still sends its own pings, so only a
                // silence longer than a whole ping interval plus the timeout means it is gone.
                let Some(heard) = self.links.get(&link).map(|l| l.heard) else {
                    return;
                };
                let limit = heard + self.timings.ping_interval + self.timings.ping_timeout;
                if now < limit {
                    self.timers.set(Timer::Pong(link), limit);
                    return;
                }
                debug!(%link, "peer silent too long: link considered dead");
                self.out.push_back(Output::CloseLink { link });
            }
            Timer::Conn(_) | Timer::Reconnect(_) | Timer::Probe(_) | Timer::Auth(_) => {}
        }
    }

    /// The idle sweep: channels with no traffic for the idle timeout are ended.
    fn sweep(&mut self, now: Instant) {
        let mut idle: Vec<ChanKey> = self
            .channels
            .iter()
            .filter(|(_, c)| {
                now.saturating_duration_since(c.last_active) >= self.timings.idle_timeout
            })
            .map(|(k, _)| *k)
            .collect();
        idle.sort_unstable();
        for key in idle {
            debug!(channel = ?self.channels.get(&key).map(|c| c.id), "idle channel removed");
            self.abort_channel(now, key, None, "idle timeout");
        }
    }

    /// Close everything (shutdown): Disconnect every channel, close sockets and listeners.
    pub fn shutdown(&mut self, now: Instant) {
        let mut keys: Vec<ChanKey> = self.channels.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            self.abort_channel(now, key, None, "shutting down");
        }
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            self.drop_conn(conn, false);
        }
        let mut listeners: Vec<ListenerId> = self.listeners.keys().copied().collect();
        listeners.sort_unstable();
        for l in listeners {
            self.unlisten(l);
        }
        let mut links: Vec<LinkId> = self.links.keys().copied().collect();
        links.sort_unstable();
        for link in links {
            self.out.push_back(Output::CloseLink { link });
        }
    }
}

/// Whether a Disconnect text reports a failure (as opposed to the reference's "EOF").
pub fn is_error_text(e: &str) -> bool {
    !e.is_empty() && e != "EOF"
}

fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) shown as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    canonical(SocketAddr::new(a, 0)).ip() == canonical(SocketAddr::new(b, 0)).ip()
}

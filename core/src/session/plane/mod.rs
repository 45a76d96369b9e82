//! The data plane both roles share: the tables of links, local sockets and channels, the SOCKS
//! front end, dialling, the movement of Data, flow control, liveness and the idle sweep.
//!
//! The roles ([`super::client`], [`super::server`]) decide where things go (which link a SOCKS
//! request uses, whether a Connect is dialled or relayed, what authentication means); the plane
//! carries them out. Everything here is role-neutral.
//!
//! One `Plane` owns every table; its methods are spread over the child modules by concern, so
//! that each part of the data path can be read on its own:
//! - `links`: the links themselves: queueing frames, their backlog, pausing, liveness.
//! - `front`: SOCKS listeners and the handshake of an accepted application.
//! - `dial`: the dialling side of a channel; `relay`: channels passed between two links.
//! - `inbound`: frames from links; `data`: bytes from local sockets toward links.
//! - `flow`: per-channel flow control (windows and acknowledgements) and what builds on it:
//!   the replay log and the suspension and resume of channels across a lost link.
//! - `udp`: UDP associations; `lifecycle`: ending channels, timers, the sweep, shutdown.

mod data;
mod dial;
mod flow;
mod front;
pub use front::EntryCheck;
mod inbound;
mod lifecycle;
mod links;
mod relay;
mod udp;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::backlog::Backlog;
use super::channel::{ChanKey, Channel};
use super::config::{DataConfig, SocksListen, Timings};
use super::keyed_hash::{KeyedHash, KeyedMap};
use super::output::{Event, Output};
use super::timer::TimerQueue;
use super::{ConnId, LinkId, ListenerId, UdpId};
use crate::ids::{ChannelId, IdSource};
use crate::socks::{Command, Request};
use crate::time::Instant;
use crate::wire::{Connect, DecodeLimits, Message};

#[cfg_attr(not(feature = "internals"), allow(unused_imports))]
pub use flow::stream::{ReplayLog, Stream};
#[cfg_attr(not(feature = "internals"), allow(unused_imports))]
pub use flow::{Resume, MIN_WINDOW, WINDOW_OVERSHOOT};

/// Who is at the other end of a link, as far as resuming channels goes: a channel suspended
/// with one link may continue only on a link of the same peer. The server derives it from the
/// token and the client instance; a client has one peer, the server (all zeros).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(pub [u8; 16]);

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
    /// A suspended channel's transport grace runs out.
    Grace(ChanKey),
    /// Deferred frames of a link go out even though nothing else did.
    Deferred(LinkId),
}

/// The state of a machine at one moment, for a status display
/// ([`Machine::snapshot`](super::Machine::snapshot)).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// WebSocket links open (authenticated or not).
    pub links: usize,
    /// Of those, the authenticated ones.
    pub links_ready: usize,
    /// Channels alive (suspended ones included).
    pub channels: usize,
    /// Counters since start.
    pub totals: Stats,
}

/// Counters for logs and metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Channels opened, either way, since start.
    pub channels_opened: u64,
    /// Bytes of WebSocket messages received on links.
    pub bytes_from_links: u64,
    /// Bytes of WebSocket messages handed out to be sent on links.
    pub bytes_to_links: u64,
    /// WebSocket messages received on links.
    pub frames_from_links: u64,
    /// WebSocket messages handed out to be sent on links.
    pub frames_to_links: u64,
    /// Messages from links that did not decode (dropped; the link stays).
    pub bad_frames: u64,
    /// SOCKS5 replies sent, indexed by reply code (0x00..=0x08).
    pub socks_replies: [u64; 9],
    /// UDP datagrams dropped because their SOCKS5 header had FRAG ≠ 0.
    pub udp_dropped_fragmented: u64,
    /// UDP datagrams dropped because they came from an address other than the application's.
    pub udp_dropped_foreign: u64,
    /// UDP datagrams dropped because the channel's queue was full.
    pub udp_dropped_backlog: u64,
    /// Links opened again after a loss (client) or re-authenticated by a known peer (server).
    pub reconnects: u64,
    /// Channels suspended when their link was lost ...
    pub channels_suspended: u64,
    /// ... continued on another link ...
    pub channels_resumed: u64,
    /// ... and ended because the grace ran out (or the peer no longer knew them).
    pub channels_expired: u64,
}

/// One WebSocket link in the plane's table: readiness, queues, flow-control window and resume
/// identity. Owned by [`Plane::links`].
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
    /// Who the peer is, for resuming channels.
    pub owner: PeerKey,
    /// How channels of this link survive its loss.
    pub resume: Resume,
    /// Frames nobody waits for at once (answers to the peer's ends), sent ahead of the next
    /// frame or after [`DEFER`]: on a busy link they cost no write of their own.
    deferred: Vec<Bytes>,
}

/// How long a deferred frame may wait for company. Only the peer's memory waits on it (a
/// channel lingering for our answer), bounded by its transport grace, far longer.
const DEFER: std::time::Duration = std::time::Duration::from_millis(20);
/// More deferred frames than this go at once.
const DEFER_MAX: usize = 64;

enum ConnState {
    /// SOCKS5 handshake or HTTP proxy request head in progress.
    Handshake {
        front: front::Front,
        listener: ListenerId,
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// Request parsed, waiting for the role to find a link for it (or, first, for the
    /// name its entry-side access check needs resolved).
    Waiting {
        request: Request,
        listener: ListenerId,
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
    /// Of the bytes handed out, those that are not channel data (SOCKS replies), still to
    /// be written: they come first, and are not acknowledged to the peer as its data.
    control: usize,
    /// How the application asked for its channel: how to answer it.
    proto: front::FrontProto,
    /// A UDP association's entry rules, for the channel to check each datagram with.
    udp_rules: Option<std::sync::Arc<crate::access::AccessRules>>,
    /// An accepted application's address, for the log line of a refusal.
    peer: Option<SocketAddr>,
}

/// A SOCKS listener the plane has asked the driver to open.
pub struct ListenerEntry {
    /// Where it listens and the credentials it asks for.
    pub socks: SocksListen,
    /// What the role attached (e.g. the reverse token the listener serves).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
    pub tag: String,
    /// The address the driver reported bound; `None` until then.
    pub bound: Option<SocketAddr>,
}

/// A parsed SOCKS request the role must route.
#[derive(Debug)]
pub struct SocksRequest {
    /// The accepted socket the request came on.
    pub conn: ConnId,
    /// The listener that accepted it.
    pub listener: ListenerId,
    /// CONNECT to a target or UDP ASSOCIATE.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))] // for the simulation
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

/// The data plane shared by both roles: every table of links, local sockets and channels, the
/// timers and the output queue. Each role machine owns one; read it through `plane()` for status
/// and tests.
pub struct Plane {
    /// Payload sizes, watermarks and compression settings.
    pub data: DataConfig,
    /// Timeouts and intervals.
    pub timings: Timings,
    /// Reply success to a SOCKS CONNECT at once, before the ConnectResponse (FastOpen, spec §4).
    pub fast_open: bool,
    /// Source of fresh link ids, channel ids and hash keys.
    pub ids: Box<dyn IdSource>,
    /// Effects not yet polled by the driver, in order.
    pub out: VecDeque<Output>,
    /// Pending deadlines.
    pub timers: TimerQueue<Timer>,
    /// Links by handle.
    pub links: BTreeMap<LinkId, LinkEntry>,
    /// Listeners by handle.
    pub listeners: BTreeMap<ListenerId, ListenerEntry>,
    /// Counters.
    pub stats: Stats,
    conns: BTreeMap<ConnId, Box<ConnEntry>>,
    udps: BTreeMap<UdpId, ChanKey>,
    channels: BTreeMap<ChanKey, Box<Channel>>,
    by_wire: KeyedMap<(LinkId, ChannelId), ChanKey>,
    /// Every channel by its peer and id, whichever link it is on (or none): where a resume
    /// looks for it.
    by_owner: KeyedMap<(PeerKey, ChannelId), ChanKey>,
    /// Channels of resuming peers that ended, most recent last (bounded), to answer a late
    /// resume with their end.
    ended: KeyedMap<(PeerKey, ChannelId), flow::resume::Ending>,
    ended_order: VecDeque<(PeerKey, ChannelId)>,
    /// Where the next suspended channel is asked to resume (round robin over ready links).
    next_resume: usize,
    next_handle: u64,
    next_chan: ChanKey,
    limits: DecodeLimits,
}

impl Plane {
    /// Counts at this moment.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            links: self.links.len(),
            links_ready: self.links.values().filter(|l| l.ready).count(),
            channels: self.channels.len(),
            totals: self.stats.clone(),
        }
    }

    /// An empty plane; `now` starts the periodic sweep.
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
        let mut ids = ids;
        let hash = KeyedHash::new(ids.as_mut());
        Plane {
            data,
            timings,
            fast_open,
            ids,
            out: VecDeque::new(),
            timers,
            links: BTreeMap::new(),
            listeners: BTreeMap::new(),
            stats: Stats::default(),
            conns: BTreeMap::new(),
            udps: BTreeMap::new(),
            channels: BTreeMap::new(),
            by_wire: KeyedMap::with_hasher(hash.clone()),
            by_owner: KeyedMap::with_hasher(hash.clone()),
            ended: KeyedMap::with_hasher(hash),
            ended_order: VecDeque::new(),
            next_resume: 0,
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

    /// A local socket's entry, nothing queued or paused yet.
    fn conn_entry(&self, state: ConnState) -> Box<ConnEntry> {
        Box::new(ConnEntry {
            state,
            backlog: Backlog::new(self.data.conn_high_water, self.data.conn_low_water),
            read_paused: false,
            parked_on: None,
            blocking: None,
            control: 0,
            proto: front::FrontProto::Socks,
            udp_rules: None,
            peer: None,
        })
    }

    /// A handle for a lookup that is not about a local socket (`Output::Resolve`): drawn
    /// from the same counter, so it never names a socket.
    pub fn new_query(&mut self) -> ConnId {
        ConnId(self.handle())
    }

    /// A fresh handle for a link the driver is asked to open or has accepted.
    pub fn new_link_id(&mut self) -> LinkId {
        LinkId(self.handle())
    }

    /// A fresh handle for a listener.
    pub fn new_listener_id(&mut self) -> ListenerId {
        ListenerId(self.handle())
    }

    /// Queue an effect for the driver (a `CloseLink` first flushes the link's deferred frames).
    pub fn emit(&mut self, o: Output) {
        if let Output::CloseLink { link } = o {
            // Answers still waiting for company go before the close, not with the link.
            self.flush_deferred(link);
        }
        self.out.push_back(o);
    }

    /// Queue an [`Event`] for the driver.
    pub fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    // ---------------------------------------------------------------- introspection

    /// Channels currently open (for status, tests and invariants).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

}

/// Introspection for the simulation's invariants (with the `internals` feature).
#[cfg(feature = "internals")]
impl Plane {
    /// Local TCP sockets currently known.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// UDP sockets currently open.
    pub fn udp_count(&self) -> usize {
        self.udps.len()
    }

    /// Channels waiting, suspended, for their link to come back.
    pub fn suspended_count(&self) -> usize {
        self.channels
            .values()
            .filter(|c| c.suspended.is_some())
            .count()
    }

    /// Bytes queued toward links and local sockets, and held in batches, early queues and
    /// replay logs.
    pub fn buffered_bytes(&self) -> usize {
        let links: usize = self.links.values().map(|l| l.backlog.queued()).sum();
        let conns: usize = self.conns.values().map(|c| c.backlog.queued()).sum();
        let chans: usize = self
            .channels
            .values()
            .map(|c| c.batch.len() + c.early_len + c.stream.log.len())
            .sum();
        links + conns + chans
    }

    /// Largest number of bytes one channel holds in this machine (batch + early data + its
    /// socket's unwritten queue + what it keeps for replay).
    pub fn max_channel_bytes(&self) -> usize {
        self.channels
            .values()
            .map(|c| {
                let w = c
                    .conn()
                    .and_then(|k| self.conns.get(&k))
                    .map_or(0, |e| e.backlog.queued());
                c.batch.len() + c.early_len + c.stream.log.len() + w
            })
            .max()
            .unwrap_or(0)
    }

    /// The wire ids of the channels held, in the order they were opened.
    pub fn channel_ids(&self) -> Vec<ChannelId> {
        self.channels.values().map(|c| c.id).collect()
    }

    /// One line per channel (at most what `Debug` shows of its state), for diagnostics.
    pub fn describe_channels(&self) -> Vec<String> {
        self.channels
            .iter()
            .map(|(k, c)| {
                format!(
                    "chan {k} {} {:?} {:?} {:?} on {} suspended={:?} closing={:?} windowed={} keep={} sent={} acked={} recv={} written={} relay={:?}",
                    c.id, c.protocol, c.side, c.phase, c.link, c.suspended, c.closing,
                    c.windowed, c.stream.keep, c.stream.sent, c.stream.acked,
                    c.stream.received, c.stream.written, c.relay
                )
            })
            .collect()
    }

    /// The links that have authenticated, in handle order.
    pub fn links_ready(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.iter().filter(|(_, l)| l.ready).map(|(k, _)| *k)
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

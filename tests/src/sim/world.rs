//! The simulated world: a virtual clock, an event queue ordered by virtual time, the machines
//! (one server, N clients), simulated WebSocket links between them, simulated local TCP sockets
//! (applications on SOCKS listeners, dialled targets) and UDP sockets.
//!
//! Every input a machine gets is an event taken from the queue; every output it produces is
//! carried out by scheduling further events. Nothing is random except through the world's
//! seeded [`Rng`], so a seed replays exactly.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use linksocks_core::addr::TargetAddr;
use linksocks_core::ids::SeededIds;
use linksocks_core::session::plane::Plane;
use linksocks_core::session::IoFailure;
use linksocks_core::session::{
    ClientConfig, ClientMachine, ConnId, DataConfig, Event, LinkId, ListenerId, Machine, Output,
    ServerConfig, ServerMachine, UdpId,
};
use linksocks_core::time::Instant;
use linksocks_core::wire::DATA_HEADER_LEN;

use super::app::{App, Target};
use super::check::Handles;
use super::pattern::Blocks;
use super::rng::Rng;

pub type NodeIdx = usize;

/// Largest number of steps one `run_*` call may take before the run is declared a livelock.
const MAX_STEPS: u64 = 20_000_000;

/// Network and socket behaviour of one run.
#[derive(Clone, Debug)]
pub struct NetProfile {
    /// One-way latency of a WebSocket link ...
    pub latency: Duration,
    /// ... plus up to this much jitter per frame (frames stay in order).
    pub jitter: Duration,
    /// Bytes per second a link writes; 0 = infinitely fast.
    pub bandwidth: u64,
    /// Bytes a link carries that the receiver has not read yet before the sender's writes
    /// stall (TCP windows and buffers, both ends together).
    pub window: usize,
    /// WebSocket handshake time.
    pub handshake: Duration,
    /// Latency of local sockets (application <-> SOCKS listener, dialling side <-> target).
    pub local_latency: Duration,
    /// Time a dial takes to succeed or be refused.
    pub dial_latency: Duration,
    /// One-way latency of UDP hops.
    pub udp_latency: Duration,
    /// Largest chunk one read of a local socket returns.
    pub max_read: usize,
    /// Largest chunk an endpoint writes at once.
    pub max_write: usize,
    /// Bytes an endpoint may have written that the machine has not read yet.
    pub sndbuf: usize,
    /// A closing link whose frames cannot be written gives up after this.
    pub close_linger: Duration,
}

impl NetProfile {
    /// Zero latency, infinite bandwidth, big reads: what the latency measurement uses.
    pub fn ideal() -> Self {
        NetProfile {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: 0,
            window: 4 << 20,
            handshake: Duration::ZERO,
            local_latency: Duration::ZERO,
            dial_latency: Duration::ZERO,
            udp_latency: Duration::ZERO,
            max_read: 64 << 10,
            max_write: 64 << 10,
            sndbuf: 256 << 10,
            close_linger: Duration::from_secs(1),
        }
    }

    pub fn random(rng: &mut Rng) -> Self {
        let us = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_micros(rng.between(lo, hi));
        let latency = if rng.chance(0.15) {
            Duration::ZERO
        } else {
            Duration::from_micros(rng.log_between(50, 40_000))
        };
        NetProfile {
            latency,
            jitter: if rng.chance(0.5) {
                Duration::ZERO
            } else {
                us(rng, 0, 5_000)
            },
            bandwidth: if rng.chance(0.2) {
                0
            } else {
                rng.log_between(1 << 20, 1 << 30)
            },
            window: rng.log_between(16 << 10, 4 << 20) as usize,
            handshake: us(rng, 0, 20_000),
            local_latency: if rng.chance(0.5) {
                Duration::ZERO
            } else {
                us(rng, 0, 200)
            },
            dial_latency: us(rng, 0, 10_000),
            udp_latency: us(rng, 0, 5_000),
            max_read: rng.log_between(64, 256 << 10) as usize,
            max_write: rng.log_between(64, 256 << 10) as usize,
            sndbuf: rng.log_between(4 << 10, 1 << 20) as usize,
            close_linger: Duration::from_secs(1),
        }
    }
}

/// A data path configuration drawn at random (small water marks make backpressure happen
/// with little data).
pub fn random_data_config(rng: &mut Rng) -> DataConfig {
    use linksocks_core::session::BatchPolicy;
    let mut d = DataConfig::default();
    d.batch = *rng.pick(&[
        BatchPolicy::LinkPaced,
        BatchPolicy::LinkPaced,
        BatchPolicy::LinkPaced,
        BatchPolicy::LinkPaced,
        BatchPolicy::Adaptive,
        BatchPolicy::Immediate,
    ]);
    d.max_batch = *rng.pick(&[4 << 10, 16 << 10, 64 << 10]);
    d.max_delay = Duration::from_micros(rng.between(0, 5_000));
    d.conn_high_water = rng.log_between(16 << 10, 1 << 20) as usize;
    d.conn_low_water = d.conn_high_water / rng.between(2, 8) as usize;
    d.link_high_water = rng.log_between(32 << 10, 4 << 20) as usize;
    d.link_low_water = d.link_high_water / rng.between(2, 8) as usize;
    d.compression_sampling = rng.chance(0.7);
    // Peers with and without the flow-control extension, and windows from the smallest up.
    d.channel_flow = rng.chance(0.8);
    d.channel_window = rng.log_between(64 << 10, 8 << 20) as usize;
    d
}

pub enum Role {
    Server(Box<ServerMachine>),
    Client(Box<ClientMachine>),
}

pub struct Node {
    pub name: String,
    pub role: Role,
    pub data: DataConfig,
    /// Every event the machine emitted, with the time.
    pub events: Vec<(Instant, Event)>,
    /// Handle bookkeeping for the "no output names a dead handle" invariant.
    pub handles: Handles,
    /// Client: when each link was opened (reconnect backoff checks).
    pub opened: Vec<(Instant, LinkId)>,
    /// Client: when each link was refused or lost.
    pub lost: Vec<(Instant, LinkId)>,
    /// Every link id this node ever had (timer accounting).
    pub link_ids: Vec<LinkId>,
    /// First `Event::Fatal`.
    pub fatal: Option<(Instant, String)>,
    /// Number of Listen outputs.
    pub listens: usize,
}

impl Node {
    pub fn machine(&mut self) -> &mut dyn Machine {
        match &mut self.role {
            Role::Server(s) => s.as_mut(),
            Role::Client(c) => c.as_mut(),
        }
    }

    pub fn plane(&self) -> &Plane {
        match &self.role {
            Role::Server(s) => s.plane(),
            Role::Client(c) => c.plane(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.role {
            Role::Server(s) => s.poll_timeout(),
            Role::Client(c) => c.poll_timeout(),
        }
    }

    pub fn server(&mut self) -> &mut ServerMachine {
        match &mut self.role {
            Role::Server(s) => s,
            Role::Client(_) => panic!("{} is not the server", self.name),
        }
    }

    pub fn client(&mut self) -> &mut ClientMachine {
        match &mut self.role {
            Role::Client(c) => c,
            Role::Server(_) => panic!("{} is not a client", self.name),
        }
    }

    pub fn is_server(&self) -> bool {
        matches!(self.role, Role::Server(_))
    }

    /// Events of one kind.
    pub fn count_events(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

// ------------------------------------------------------------------------------- links

#[derive(Debug)]
enum Item {
    Frame(Bytes),
    Ping,
    Pong,
    Close(String),
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Item::Frame(b) => b.len().max(1),
            _ => 2,
        }
    }
}

/// A predicate over frames; a direction drops the frames it matches (a peer that "never
/// answers", a lossy middlebox).
pub type FrameFilter = Box<dyn FnMut(&[u8]) -> bool>;

#[derive(Default)]
struct Dir {
    /// Handed out by the sender, not yet written.
    pending: VecDeque<Item>,
    writing: bool,
    /// Written, on the way or arrived and not read yet.
    flight: VecDeque<(Instant, Item)>,
    /// Bytes written and not yet read by the receiver.
    unread: usize,
    last_arrival: Instant,
    /// The receiver stopped reading (PauseLink).
    paused: bool,
    arrive_scheduled: bool,
    filter: Option<FrameFilter>,
}

/// A simulated WebSocket connection. Side 0 is the client, side 1 the server; direction `d`
/// carries frames from side `d` to side `1 - d`.
pub struct SimLink {
    pub client: NodeIdx,
    pub client_link: LinkId,
    pub server: NodeIdx,
    pub server_link: Option<LinkId>,
    pub path: String,
    dirs: [Dir; 2],
    /// Side `i` still has the link (was not told it closed).
    pub open: [bool; 2],
    closing: [bool; 2],
    pub established: bool,
    pub partitioned: bool,
    pub opened_at: Instant,
}

impl SimLink {
    fn node(&self, side: usize) -> NodeIdx {
        if side == 0 {
            self.client
        } else {
            self.server
        }
    }

    fn link(&self, side: usize) -> Option<LinkId> {
        if side == 0 {
            Some(self.client_link)
        } else {
            self.server_link
        }
    }
}

// ------------------------------------------------------------------------------- sockets

/// How fast an endpoint reads what the machine writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRate {
    Fast,
    /// `bytes` every `every`.
    Slow {
        bytes: usize,
        every: Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A dial still running.
    None,
    App(usize),
    Target(usize),
}

/// A simulated local TCP socket between a machine (`node`, `conn`) and an endpoint.
pub struct Sock {
    pub node: NodeIdx,
    pub conn: ConnId,
    pub owner: Owner,
    /// Endpoint -> machine bytes not read by the machine yet.
    up: VecDeque<Bytes>,
    pub up_len: usize,
    /// Bytes the endpoint wrote, and bytes the machine read.
    pub written: u64,
    pub delivered: u64,
    /// The endpoint ended its side: `Some(None)` clean EOF, `Some(Some(e))` reset.
    up_end: Option<Option<String>>,
    pub read_paused: bool,
    deliver_scheduled: bool,
    /// Machine -> endpoint bytes not consumed by the endpoint yet.
    down: VecDeque<Bytes>,
    pub down_len: usize,
    /// The machine closed the socket (`Close{abort}`).
    down_end: Option<bool>,
    consume_scheduled: bool,
    pub machine_closed: bool,
    /// `handle_conn_closed` (or a failed dial) was reported: the machine must not hear of it again.
    pub reported_closed: bool,
    /// The endpoint closed or reset its side.
    pub endpoint_closed: bool,
    /// The endpoint learnt that the machine closed.
    pub endpoint_notified: bool,
    pub dialing: bool,
    /// Reads are handed in with `handle_conn_read` (header room in front) rather than
    /// `handle_conn_data`.
    pub read_in_place: bool,
    /// The application whose target a dial reaches.
    pub dial_app: Option<usize>,
    pub read: ReadRate,
    pub created: Instant,
}

/// A simulated UDP socket of a machine.
pub struct SimUdp {
    pub node: NodeIdx,
    pub udp: UdpId,
    pub addr: Option<SocketAddr>,
    pub closed: bool,
}

/// One `Dial` output.
#[derive(Clone, Debug)]
pub struct DialRecord {
    pub at: Instant,
    pub node: NodeIdx,
    pub target: TargetAddr,
    /// The application whose target it is.
    pub app: Option<usize>,
}

// ------------------------------------------------------------------------------- events

pub type Action = Box<dyn FnOnce(&mut World)>;

pub(crate) enum Ev {
    LinkEstablish(usize),
    LinkRefused(usize),
    LinkWriteDone(usize, usize),
    LinkArrive(usize, usize),
    LinkLinger(usize, usize),
    LinkClosedNotify(usize, usize, String),
    ListenerBound(NodeIdx, ListenerId, SocketAddr),
    DialDone(usize, Result<(), String>),
    ConnDeliver(usize),
    ConnConsume(usize),
    UdpBound(usize, SocketAddr),
    UdpToMachine(usize, SocketAddr, Bytes),
    UdpToApp(SocketAddr, SocketAddr, Bytes),
    AppStart(usize),
    AppWake(usize),
    Call(Action),
}

impl Ev {
    fn name(&self) -> &'static str {
        match self {
            Ev::LinkEstablish(..) => "link-establish",
            Ev::LinkRefused(..) => "link-refused",
            Ev::LinkWriteDone(..) => "link-write-done",
            Ev::LinkArrive(..) => "link-arrive",
            Ev::LinkLinger(..) => "link-linger",
            Ev::LinkClosedNotify(..) => "link-closed",
            Ev::ListenerBound(..) => "listener-bound",
            Ev::DialDone(..) => "dial-done",
            Ev::ConnDeliver(..) => "conn-deliver",
            Ev::ConnConsume(..) => "conn-consume",
            Ev::UdpBound(..) => "udp-bound",
            Ev::UdpToMachine(..) => "udp-to-machine",
            Ev::UdpToApp(..) => "udp-to-app",
            Ev::AppStart(..) => "app-start",
            Ev::AppWake(..) => "app-wake",
            Ev::Call(..) => "call",
        }
    }
}

struct Sched {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Sched {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sched {
    // BinaryHeap is a max-heap: the earliest (time, seq) must compare greatest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The last lines of a run's trace, shown when it fails.
pub struct Trace {
    pub enabled: bool,
    lines: VecDeque<String>,
    cap: usize,
}

impl Trace {
    fn push(&mut self, s: String) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back(s);
    }
}

// ------------------------------------------------------------------------------- the world

pub struct World {
    pub seed: u64,
    pub now: Instant,
    pub rng: Rng,
    pub net: NetProfile,
    pub blocks: Blocks,
    queue: BinaryHeap<Sched>,
    seq: u64,
    pub nodes: Vec<Node>,
    pub links: Vec<SimLink>,
    link_of: HashMap<(NodeIdx, LinkId), (usize, usize)>,
    pub socks: Vec<Sock>,
    sock_of: HashMap<(NodeIdx, ConnId), usize>,
    pub udps: Vec<SimUdp>,
    udp_of: HashMap<(NodeIdx, UdpId), usize>,
    udp_by_addr: HashMap<SocketAddr, usize>,
    /// Bound listeners by address.
    pub listeners: HashMap<SocketAddr, (NodeIdx, ListenerId)>,
    listener_addr: HashMap<(NodeIdx, ListenerId), SocketAddr>,
    pub apps: Vec<App>,
    pub targets: Vec<Target>,
    /// TCP (and UDP echo) targets: address -> the application it belongs to.
    pub(crate) target_dir: HashMap<TargetAddr, usize>,
    /// Application UDP sockets by address (and stranger sockets, `usize::MAX - app`).
    pub(crate) udp_apps: HashMap<SocketAddr, usize>,
    pub dials: Vec<DialRecord>,
    /// New links are refused until then (server down).
    pub refuse_links_until: Instant,
    pub violations: Vec<String>,
    pub trace: Trace,
    steps: u64,
    next_port: u16,
    /// A hash of everything that happened, to compare two runs of one seed.
    pub fingerprint: u64,
    /// UDP is in use (the memory bound then allows the UDP drop mark).
    pub udp_used: bool,
    /// Nodes called in the current step (checked after it).
    touched: Vec<NodeIdx>,
    /// Outputs named a link after CloseLink (frames that cannot be delivered).
    pub late_link_outputs: u64,
}

fn fnv(h: &mut u64, x: u64) {
    for b in x.to_le_bytes() {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

impl World {
    pub fn new(seed: u64, net: Option<NetProfile>) -> Self {
        let mut rng = Rng::new(seed ^ 0x005E_ED0F_114C_50C5);
        let net = net.unwrap_or_else(|| NetProfile::random(&mut rng));
        let blocks = Blocks::new(&mut rng);
        let trace_on =
            std::env::var_os("SIM_SEED").is_some() || std::env::var_os("SIM_TRACE").is_some();
        World {
            seed,
            now: Instant::ZERO,
            rng,
            net,
            blocks,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes: Vec::new(),
            links: Vec::new(),
            link_of: HashMap::new(),
            socks: Vec::new(),
            sock_of: HashMap::new(),
            udps: Vec::new(),
            udp_of: HashMap::new(),
            udp_by_addr: HashMap::new(),
            listeners: HashMap::new(),
            listener_addr: HashMap::new(),
            apps: Vec::new(),
            targets: Vec::new(),
            target_dir: HashMap::new(),
            udp_apps: HashMap::new(),
            dials: Vec::new(),
            refuse_links_until: Instant::ZERO,
            violations: Vec::new(),
            trace: Trace {
                enabled: trace_on,
                lines: VecDeque::new(),
                cap: if trace_on { 2_000_000 } else { 0 },
            },
            steps: 0,
            next_port: 20_000,
            fingerprint: 0xcbf2_9ce4_8422_2325,
            udp_used: false,
            touched: Vec::new(),
            late_link_outputs: 0,
        }
    }

    // ------------------------------------------------------------------ tracing, violations

    /// Record a trace line (only formatted when tracing is on).
    pub fn tr(&mut self, f: impl FnOnce() -> String) {
        if self.trace.enabled {
            let line = format!("{:?} {}", self.now, f());
            self.trace.push(line);
        }
    }

    pub fn violation(&mut self, msg: impl Into<String>) {
        let msg = format!("at {:?}: {}", self.now, msg.into());
        self.tr(|| format!("VIOLATION {msg}"));
        self.violations.push(msg);
    }

    /// A description of the run for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} at {:?}, net {:?}",
            self.seed, self.now, self.net
        );
        for n in &self.nodes {
            let p = n.plane();
            let _ = writeln!(
                s,
                "  {}: channels {} conns {} udps {} buffered {} timers {} data {:?}",
                n.name,
                p.channel_count(),
                p.conn_count(),
                p.udp_count(),
                p.buffered_bytes(),
                p.timers.len(),
                n.data
            );
        }
        if !self.trace.lines.is_empty() {
            let path = std::env::temp_dir().join(format!("linksocks-sim-{}.trace", self.seed));
            let all: Vec<&str> = self.trace.lines.iter().map(|l| l.as_str()).collect();
            if std::fs::write(&path, all.join("\n")).is_ok() {
                let _ = writeln!(s, "full trace: {}", path.display());
            }
            let _ = writeln!(s, "last trace lines:");
            let skip = self.trace.lines.len().saturating_sub(60);
            for l in self.trace.lines.iter().skip(skip) {
                let _ = writeln!(s, "  {l}");
            }
        } else {
            let _ = writeln!(s, "(replay with SIM_SEED to see a trace)");
        }
        s
    }

    /// Write the trace kept so far (tracing is on with `SIM_TRACE=1` or `SIM_SEED`) to `path`.
    pub fn dump_trace(&self, path: &std::path::Path) -> std::io::Result<()> {
        let all: Vec<&str> = self.trace.lines.iter().map(|l| l.as_str()).collect();
        std::fs::write(path, all.join("\n"))
    }

    /// Panic if an invariant broke.
    pub fn assert_ok(&self) {
        if !self.violations.is_empty() {
            panic!(
                "invariant violated:\n  {}\n{}",
                self.violations.join("\n  "),
                self.describe()
            );
        }
    }

    // ------------------------------------------------------------------ scheduling

    pub(crate) fn at(&mut self, at: Instant, ev: Ev) {
        let at = at.max(self.now);
        self.seq += 1;
        self.queue.push(Sched {
            at,
            seq: self.seq,
            ev,
        });
    }

    pub(crate) fn after(&mut self, d: Duration, ev: Ev) {
        let at = self.now + d;
        self.at(at, ev);
    }

    /// Run `f` at `at` (scenario scripting: faults, token changes, starting applications).
    pub fn call_at(&mut self, at: Instant, f: impl FnOnce(&mut World) + 'static) {
        self.at(at, Ev::Call(Box::new(f)));
    }

    pub fn call_after(&mut self, d: Duration, f: impl FnOnce(&mut World) + 'static) {
        let at = self.now + d;
        self.call_at(at, f);
    }

    pub fn port(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(20_000);
        self.next_port
    }

    // ------------------------------------------------------------------ nodes

    pub fn add_server(&mut self, cfg: ServerConfig) -> NodeIdx {
        let ids = SeededIds::new(self.rng.next_u64());
        let data = cfg.data.clone();
        let m = ServerMachine::new(cfg, Box::new(ids), self.now);
        self.nodes.push(Node {
            name: "server".into(),
            role: Role::Server(Box::new(m)),
            data,
            events: Vec::new(),
            handles: Handles::default(),
            opened: Vec::new(),
            lost: Vec::new(),
            link_ids: Vec::new(),
            fatal: None,
            listens: 0,
        });
        let n = self.nodes.len() - 1;
        self.drain(n);
        n
    }

    /// Add a client and start it.
    pub fn add_client(&mut self, name: &str, mut cfg: ClientConfig) -> NodeIdx {
        let mut ids = SeededIds::new(self.rng.next_u64());
        cfg.instance = linksocks_core::ids::InstanceId::random(&mut ids);
        let data = cfg.data.clone();
        let m = ClientMachine::new(cfg, Box::new(ids), self.now).expect("client config");
        self.nodes.push(Node {
            name: name.into(),
            role: Role::Client(Box::new(m)),
            data,
            events: Vec::new(),
            handles: Handles::default(),
            opened: Vec::new(),
            lost: Vec::new(),
            link_ids: Vec::new(),
            fatal: None,
            listens: 0,
        });
        let n = self.nodes.len() - 1;
        let now = self.now;
        self.nodes[n].client().start(now);
        self.drain(n);
        n
    }

    /// Call the server machine (token management from scenarios), then carry out what it asks.
    pub fn server<R>(&mut self, n: NodeIdx, f: impl FnOnce(&mut ServerMachine, Instant) -> R) -> R {
        self.with(n, |node, now| f(node.server(), now))
    }

    /// Call into a machine and carry out what it asks.
    pub fn with<R>(&mut self, n: NodeIdx, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[n], now);
        self.drain(n);
        r
    }

    // ------------------------------------------------------------------ the loop

    /// Process events and timers up to and including `t`, then set the clock to `t`.
    pub fn run_until(&mut self, t: Instant) {
        let start = self.steps;
        while self.step_before(t) {
            if self.steps - start > MAX_STEPS {
                panic!(
                    "livelock: over {MAX_STEPS} steps before {t:?}\n{}",
                    self.describe()
                );
            }
        }
        if self.now < t {
            self.now = t;
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Run until `pred` holds (checked after every step) or `deadline`. Returns whether it held.
    pub fn run_until_pred(
        &mut self,
        deadline: Instant,
        mut pred: impl FnMut(&World) -> bool,
    ) -> bool {
        let start = self.steps;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step_before(deadline) {
                if self.now < deadline {
                    self.now = deadline;
                }
                return pred(self);
            }
            if self.steps - start > MAX_STEPS {
                panic!("livelock: over {MAX_STEPS} steps\n{}", self.describe());
            }
        }
    }

    /// One step at or before `limit`. False when nothing is due by then.
    fn step_before(&mut self, limit: Instant) -> bool {
        let next_ev = self.queue.peek().map(|s| s.at);
        let mut next_tm: Option<(Instant, NodeIdx)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(t) = n.poll_timeout() {
                if next_tm.is_none_or(|(b, _)| t < b) {
                    next_tm = Some((t, i));
                }
            }
        }
        // Events scheduled for an instant go before machine deadlines at the same instant.
        let take_timer = match (next_ev, next_tm) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(e), Some((t, _))) => t < e,
        };
        if take_timer {
            let (t, n) = next_tm.expect("timer");
            if t > limit {
                return false;
            }
            self.now = self.now.max(t);
            self.steps += 1;
            fnv(&mut self.fingerprint, 1000 + n as u64);
            self.tr(|| format!("timeout node {n}"));
            let now = self.now;
            self.nodes[n].machine().handle_timeout(now);
            self.drain(n);
        } else {
            let Some(e) = next_ev else {
                return false;
            };
            if e > limit {
                return false;
            }
            let s = self.queue.pop().expect("event");
            self.now = self.now.max(s.at);
            self.steps += 1;
            fnv(&mut self.fingerprint, s.at.as_nanos());
            self.dispatch(s.ev);
        }
        self.after_step();
        true
    }

    fn after_step(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        for n in touched {
            // The memory bounds are checked after every step; a machine holding thousands of
            // channels is checked every `channels / 256` steps instead (each check walks every
            // channel: checking each step would make a 10,000-channel run quadratic).
            let channels = self.nodes[n].plane().channel_count() as u64;
            if channels <= 1024 || self.steps.is_multiple_of(channels / 256) {
                self.check_memory(n);
            }
        }
        self.assert_ok();
    }

    /// [`World::run_until_pred`], with `pred` asked every `every` steps only (for predicates
    /// that walk every application of a large world).
    pub fn run_until_pred_every(
        &mut self,
        deadline: Instant,
        every: u64,
        mut pred: impl FnMut(&World) -> bool,
    ) -> bool {
        let mut n = 0u64;
        self.run_until_pred(deadline, |w| {
            n += 1;
            n % every.max(1) == 1 && pred(w)
        }) || pred(self)
    }

    fn dispatch(&mut self, ev: Ev) {
        let name = ev.name();
        self.tr(|| format!("event {name}"));
        match ev {
            Ev::LinkEstablish(li) => self.link_establish(li),
            Ev::LinkRefused(li) => {
                self.link_closed_notify(li, 0, "connection refused".into());
            }
            Ev::LinkWriteDone(li, d) => self.link_write_done(li, d),
            Ev::LinkArrive(li, d) => self.link_arrive(li, d),
            Ev::LinkLinger(li, side) => {
                if self.links[li].closing[side] && self.links[li].open[side] {
                    self.finalize_close(li, side);
                }
            }
            Ev::LinkClosedNotify(li, side, reason) => self.link_closed_notify(li, side, reason),
            Ev::ListenerBound(n, l, addr) => {
                self.tr(|| format!("node {n} {l} bound {addr}"));
                let now = self.now;
                self.nodes[n]
                    .machine()
                    .handle_listener_bound(now, l, Ok(addr));
                self.drain(n);
            }
            Ev::DialDone(s, r) => self.dial_done(s, r),
            Ev::ConnDeliver(s) => self.conn_deliver(s),
            Ev::ConnConsume(s) => self.conn_consume(s),
            Ev::UdpBound(u, addr) => {
                let (n, udp) = (self.udps[u].node, self.udps[u].udp);
                if self.udps[u].closed {
                    return;
                }
                self.udps[u].addr = Some(addr);
                if !addr.ip().is_unspecified() {
                    self.udp_by_addr.insert(addr, u);
                }
                let now = self.now;
                self.nodes[n].machine().handle_udp_bound(now, udp, Ok(addr));
                self.drain(n);
            }
            Ev::UdpToMachine(u, from, data) => {
                if self.udps[u].closed {
                    return;
                }
                let (n, udp) = (self.udps[u].node, self.udps[u].udp);
                fnv(&mut self.fingerprint, data.len() as u64);
                let now = self.now;
                self.nodes[n]
                    .machine()
                    .handle_udp_datagram(now, udp, from, data);
                self.drain(n);
            }
            Ev::UdpToApp(to, from, data) => self.udp_to_app(to, from, data),
            Ev::AppStart(a) => self.app_start(a),
            Ev::AppWake(a) => self.app_wake(a),
            Ev::Call(f) => f(self),
        }
    }

    // ------------------------------------------------------------------ outputs

    /// Carry out everything node `n` asks for.
    pub(crate) fn drain(&mut self, n: NodeIdx) {
        if !self.touched.contains(&n) {
            self.touched.push(n);
        }
        // In the order the machine emitted them, as the real driver applies them: the
        // machines' own order is deterministic, and reordering here would hide an order
        // the real driver would see.
        let mut batch = Vec::new();
        while let Some(o) = self.nodes[n].machine().poll_output() {
            batch.push(o);
        }
        for o in batch {
            self.apply(n, o);
        }
    }

    fn apply(&mut self, n: NodeIdx, o: Output) {
        let (k, id, ch) = output_key(&o);
        fnv(&mut self.fingerprint, k as u64 * 1_000_003 + id);
        fnv(&mut self.fingerprint, ch);
        if self.trace.enabled {
            let d = describe_output(&o);
            self.tr(|| format!("node {n} -> {d}"));
        }
        match o {
            Output::OpenLink { link, url } => self.open_link(n, link, url),
            Output::Transmit { link, frame } => {
                fnv(&mut self.fingerprint, frame.len() as u64);
                if let Some((li, side)) = self.use_link(n, link, "Transmit") {
                    self.link_push(li, side, Item::Frame(frame));
                }
            }
            Output::Ping { link } => {
                if let Some((li, side)) = self.use_link(n, link, "Ping") {
                    self.link_push(li, side, Item::Ping);
                }
            }
            Output::CloseLink { link } => {
                if let Some((li, side)) = self.use_link(n, link, "CloseLink") {
                    if !self.links[li].closing[side] {
                        self.links[li].closing[side] = true;
                        if self.links[li].dirs[side].pending.is_empty()
                            && !self.links[li].dirs[side].writing
                        {
                            self.finalize_close(li, side);
                        } else {
                            let linger = self.net.close_linger;
                            self.after(linger, Ev::LinkLinger(li, side));
                        }
                    }
                }
            }
            Output::PauseLink { link } => {
                if let Some((li, side)) = self.use_link(n, link, "PauseLink") {
                    self.links[li].dirs[1 - side].paused = true;
                }
            }
            Output::ResumeLink { link } => {
                if let Some((li, side)) = self.use_link(n, link, "ResumeLink") {
                    let d = 1 - side;
                    self.links[li].dirs[d].paused = false;
                    self.schedule_arrive(li, d, self.now);
                }
            }
            Output::Listen {
                listener,
                host,
                port,
            } => {
                self.h_create(n, "listener", listener.0);
                self.nodes[n].listens += 1;
                let ip: IpAddr = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
                let ip = if ip.is_unspecified() {
                    match ip {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    }
                } else {
                    ip
                };
                let port = if port == 0 { self.port() } else { port };
                let addr = SocketAddr::new(ip, port);
                if let Some((other, l)) = self.listeners.get(&addr) {
                    self.violation(format!(
                        "node {n} listens on {addr}, already used by node {other} {l}"
                    ));
                }
                self.listeners.insert(addr, (n, listener));
                self.listener_addr.insert((n, listener), addr);
                self.after(Duration::ZERO, Ev::ListenerBound(n, listener, addr));
            }
            Output::Unlisten { listener } => {
                self.h_close(n, "listener", listener.0, "Unlisten");
                if let Some(addr) = self.listener_addr.remove(&(n, listener)) {
                    self.listeners.remove(&addr);
                }
            }
            Output::Dial {
                conn,
                target,
                timeout,
                ..
            } => {
                self.h_create(n, "conn", conn.0);
                self.dial(n, conn, target, timeout);
            }
            Output::Resolve { conn, host, .. } => {
                // The simulated peers run without access rules, so nothing asks for a name.
                self.violation(format!(
                    "node {n} asked to resolve {host} for {conn}: no access rules are simulated"
                ));
            }
            Output::Write { conn, data } => {
                fnv(&mut self.fingerprint, data.len() as u64);
                if !self.h_write(n, conn.0) {
                    return;
                }
                if let Some(&s) = self.sock_of.get(&(n, conn)) {
                    let sk = &mut self.socks[s];
                    if sk.machine_closed {
                        return;
                    }
                    sk.down_len += data.len();
                    sk.down.push_back(data);
                    self.schedule_consume(s, Duration::ZERO);
                }
            }
            Output::PauseRead { conn } | Output::ResumeRead { conn } => {
                let pause = matches!(o, Output::PauseRead { .. });
                let what = if pause { "PauseRead" } else { "ResumeRead" };
                if !self.h_use(n, "conn", conn.0, what) {
                    return;
                }
                if let Some(&s) = self.sock_of.get(&(n, conn)) {
                    self.socks[s].read_paused = pause;
                    if !pause {
                        self.schedule_deliver(s);
                    }
                }
            }
            Output::Close { conn, abort } => {
                if !self.h_close(n, "conn", conn.0, "Close") {
                    return;
                }
                if let Some(&s) = self.sock_of.get(&(n, conn)) {
                    let sk = &mut self.socks[s];
                    sk.machine_closed = true;
                    sk.down_end = Some(abort);
                    self.schedule_consume(s, Duration::ZERO);
                }
            }
            Output::BindUdp { udp, addr } => {
                self.udp_used = true;
                self.h_create(n, "udp", udp.0);
                let port = self.port();
                let bound = match addr {
                    Some(a) => SocketAddr::new(a.ip(), if a.port() == 0 { port } else { a.port() }),
                    None => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                };
                self.udps.push(SimUdp {
                    node: n,
                    udp,
                    addr: None,
                    closed: false,
                });
                let u = self.udps.len() - 1;
                self.udp_of.insert((n, udp), u);
                self.after(Duration::ZERO, Ev::UdpBound(u, bound));
            }
            Output::SendUdp { udp, to, data } => {
                if !self.h_use(n, "udp", udp.0, "SendUdp") {
                    return;
                }
                if let Some(&u) = self.udp_of.get(&(n, udp)) {
                    self.send_udp(u, to, data);
                }
            }
            Output::CloseUdp { udp } => {
                if !self.h_close(n, "udp", udp.0, "CloseUdp") {
                    return;
                }
                if let Some(&u) = self.udp_of.get(&(n, udp)) {
                    self.udps[u].closed = true;
                    if let Some(a) = self.udps[u].addr {
                        if self.udp_by_addr.get(&a) == Some(&u) {
                            self.udp_by_addr.remove(&a);
                        }
                    }
                }
            }
            Output::Event(e) => {
                if let Event::Fatal { reason } = &e {
                    if self.nodes[n].fatal.is_none() {
                        self.nodes[n].fatal = Some((self.now, reason.to_string()));
                    }
                }
                let now = self.now;
                self.nodes[n].events.push((now, e));
            }
        }
    }

    // ------------------------------------------------------------------ links

    fn open_link(&mut self, n: NodeIdx, link: LinkId, url: String) {
        self.h_create(n, "link", link.0);
        self.nodes[n].link_ids.push(link);
        let now = self.now;
        self.nodes[n].opened.push((now, link));
        let server = self
            .nodes
            .iter()
            .position(|x| x.is_server())
            .expect("a server node");
        // ws://host[:port]/path?query -> /path?query
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(&url);
        let path = match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        };
        self.links.push(SimLink {
            client: n,
            client_link: link,
            server,
            server_link: None,
            path,
            dirs: [Dir::default(), Dir::default()],
            open: [true, false],
            closing: [false, false],
            established: false,
            partitioned: false,
            opened_at: now,
        });
        let li = self.links.len() - 1;
        self.link_of.insert((n, link), (li, 0));
        if self.now < self.refuse_links_until {
            let lat = self.net.latency * 2;
            self.after(lat, Ev::LinkRefused(li));
        } else {
            let hs = self.net.handshake + self.net.latency * 2;
            self.after(hs, Ev::LinkEstablish(li));
        }
    }

    fn link_establish(&mut self, li: usize) {
        if !self.links[li].open[0] {
            return; // the client gave up meanwhile
        }
        if self.now < self.refuse_links_until {
            self.link_closed_notify(li, 0, "connection refused".into());
            return;
        }
        let server = self.links[li].server;
        let path = self.links[li].path.clone();
        let now = self.now;
        let sl = self.nodes[server].server().handle_link_accept(now, &path);
        self.h_create(server, "link", sl.0);
        self.nodes[server].link_ids.push(sl);
        let l = &mut self.links[li];
        l.server_link = Some(sl);
        l.open[1] = true;
        l.established = true;
        self.link_of.insert((server, sl), (li, 1));
        self.tr(|| format!("link {li}: server accepted as {sl}"));
        self.drain(server);
        let (client, cl) = (self.links[li].client, self.links[li].client_link);
        if self.links[li].open[0] {
            let now = self.now;
            self.nodes[client].client().handle_link_opened(now, cl);
            self.drain(client);
        }
        // Frames may have been queued for the client before it knew the link was open.
        self.schedule_arrive(li, 1, self.now);
        self.pump(li, 0);
        self.pump(li, 1);
    }

    /// Check an output naming a link; returns the link and side if it can be carried out.
    fn use_link(&mut self, n: NodeIdx, link: LinkId, what: &str) -> Option<(usize, usize)> {
        if !self.h_use(n, "link", link.0, what) {
            return None;
        }
        let (li, side) = *self.link_of.get(&(n, link))?;
        if !self.links[li].open[side] {
            return None;
        }
        if self.links[li].closing[side] && what != "CloseLink" {
            self.late_link_outputs += 1;
            return None;
        }
        Some((li, side))
    }

    fn link_push(&mut self, li: usize, side: usize, item: Item) {
        let l = &self.links[li];
        if l.established && !l.open[1 - side] {
            // Writing to a link whose far end is gone: the writer learns it is broken.
            self.after(
                Duration::ZERO,
                Ev::LinkClosedNotify(li, side, "broken pipe".into()),
            );
            return;
        }
        self.links[li].dirs[side].pending.push_back(item);
        self.pump(li, side);
    }

    fn pump(&mut self, li: usize, d: usize) {
        let l = &self.links[li];
        if !l.established || l.partitioned || !l.open[d] {
            return;
        }
        let dir = &l.dirs[d];
        if dir.writing {
            return;
        }
        let Some(head) = dir.pending.front() else {
            return;
        };
        let size = head.size();
        if dir.unread > 0 && dir.unread + size > self.net.window {
            return; // the receiver is behind: the sender's writes stall
        }
        let t = if self.net.bandwidth == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos((size as u128 * 1_000_000_000 / self.net.bandwidth as u128) as u64)
        };
        self.links[li].dirs[d].writing = true;
        self.after(t, Ev::LinkWriteDone(li, d));
    }

    fn link_write_done(&mut self, li: usize, d: usize) {
        self.links[li].dirs[d].writing = false;
        if !self.links[li].open[d] || self.links[li].partitioned {
            return;
        }
        let Some(item) = self.links[li].dirs[d].pending.pop_front() else {
            return;
        };
        let frame_len = match &item {
            Item::Frame(f) => Some(f.len()),
            _ => None,
        };
        let mut deliver = true;
        if let Item::Frame(f) = &item {
            if let Some(filter) = self.links[li].dirs[d].filter.as_mut() {
                if filter(f) {
                    deliver = false;
                }
            }
        }
        if deliver {
            self.put_flight(li, d, item);
        } else {
            self.tr(|| format!("link {li} dir {d}: frame dropped by filter"));
        }
        if let Some(len) = frame_len {
            // The sender learns its frame is written.
            let node = self.links[li].node(d);
            let link = self.links[li].link(d).expect("established");
            let now = self.now;
            self.nodes[node].machine().handle_link_sent(now, link, len);
            self.drain(node);
        }
        if self.links[li].open[d]
            && self.links[li].closing[d]
            && self.links[li].dirs[d].pending.is_empty()
        {
            self.finalize_close(li, d);
            return;
        }
        self.pump(li, d);
    }

    fn put_flight(&mut self, li: usize, d: usize, item: Item) {
        let size = item.size();
        let jitter = if self.net.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.range(0..self.net.jitter.as_nanos() as u64 + 1))
        };
        let dir = &mut self.links[li].dirs[d];
        let at = (self.now + self.net.latency + jitter).max(dir.last_arrival);
        dir.last_arrival = at;
        dir.unread += size;
        dir.flight.push_back((at, item));
        self.schedule_arrive(li, d, at);
    }

    fn schedule_arrive(&mut self, li: usize, d: usize, at: Instant) {
        let dir = &mut self.links[li].dirs[d];
        if dir.arrive_scheduled || dir.flight.is_empty() {
            return;
        }
        let at = at.max(dir.flight.front().map(|f| f.0).unwrap_or(at));
        dir.arrive_scheduled = true;
        self.at(at, Ev::LinkArrive(li, d));
    }

    fn link_arrive(&mut self, li: usize, d: usize) {
        self.links[li].dirs[d].arrive_scheduled = false;
        let r = 1 - d;
        if !self.links[li].open[r] {
            let dir = &mut self.links[li].dirs[d];
            dir.flight.clear();
            dir.unread = 0;
            return;
        }
        if self.links[li].partitioned || !self.links[li].established {
            return;
        }
        if self.links[li].dirs[d].paused {
            // Held, in order, until ResumeLink. A close behind held frames still waits.
            return;
        }
        let Some((at, _)) = self.links[li].dirs[d].flight.front() else {
            return;
        };
        if *at > self.now {
            let at = *at;
            self.schedule_arrive(li, d, at);
            return;
        }
        let (_, item) = self.links[li].dirs[d].flight.pop_front().expect("head");
        let size = item.size();
        self.links[li].dirs[d].unread -= size;
        let node = self.links[li].node(r);
        let link = self.links[li].link(r).expect("established");
        let now = self.now;
        match item {
            Item::Frame(f) => {
                fnv(&mut self.fingerprint, f.len() as u64);
                self.nodes[node].machine().handle_link_message(now, link, f);
                self.drain(node);
            }
            Item::Ping => {
                // The receiver's WebSocket library answers at once, ahead of queued frames,
                // and the driver tells the machine its peer is alive.
                self.put_flight(li, r, Item::Pong);
                self.nodes[node].machine().handle_link_pong(now, link);
                self.drain(node);
            }
            Item::Pong => {
                self.nodes[node].machine().handle_link_pong(now, link);
                self.drain(node);
            }
            Item::Close(reason) => {
                self.link_closed_notify(li, r, reason);
            }
        }
        self.pump(li, d);
        let next = self.links[li].dirs[d].flight.front().map(|f| f.0);
        if let Some(at) = next {
            self.schedule_arrive(li, d, at);
        }
    }

    /// Side `side` asked to close and its frames are written (or it gave up waiting).
    fn finalize_close(&mut self, li: usize, side: usize) {
        let other = 1 - side;
        {
            let l = &mut self.links[li];
            l.dirs[side].pending.clear();
            // Frames toward the closer are lost.
            l.dirs[other].pending.clear();
            l.dirs[other].flight.clear();
            l.dirs[other].unread = 0;
        }
        self.link_closed_notify(li, side, "closed".into());
        if self.links[li].established && self.links[li].open[other] {
            // The far end sees the close after the frames before it.
            self.put_flight(li, side, Item::Close("closed by peer".into()));
        }
    }

    fn link_closed_notify(&mut self, li: usize, side: usize, reason: String) {
        if !self.links[li].open[side] {
            return;
        }
        self.links[li].open[side] = false;
        let node = self.links[li].node(side);
        let Some(link) = self.links[li].link(side) else {
            return;
        };
        self.h_link_closed(node, link.0);
        let now = self.now;
        if side == 0 {
            self.nodes[node].lost.push((now, link));
        }
        self.tr(|| format!("node {node} {link} closed: {reason}"));
        self.nodes[node]
            .machine()
            .handle_link_closed(now, link, &reason);
        self.drain(node);
    }

    // ------------------------------------------------------------------ faults

    /// Drop a link at once: both sides learn it is gone, frames on the way are lost.
    pub fn drop_link(&mut self, li: usize) {
        self.tr(|| format!("FAULT drop link {li}"));
        for d in 0..2 {
            let dir = &mut self.links[li].dirs[d];
            dir.pending.clear();
            dir.flight.clear();
            dir.unread = 0;
        }
        self.link_closed_notify(li, 0, "connection reset".into());
        self.link_closed_notify(li, 1, "connection reset".into());
    }

    /// Cut a link silently: nothing gets through any more and nobody is told (only missing
    /// pongs reveal it).
    pub fn partition_link(&mut self, li: usize) {
        self.tr(|| format!("FAULT partition link {li}"));
        let l = &mut self.links[li];
        l.partitioned = true;
        for d in 0..2 {
            l.dirs[d].flight.clear();
            l.dirs[d].unread = 0;
        }
    }

    /// Hand `frame` to the machine at `side` of link `li` now, as if its peer had sent it (a
    /// peer that speaks bytes our machines never would).
    pub fn inject_frame(&mut self, li: usize, side: usize, frame: Bytes) {
        let node = self.links[li].node(side);
        let Some(link) = self.links[li].link(side) else {
            return;
        };
        let now = self.now;
        self.nodes[node]
            .machine()
            .handle_link_message(now, link, frame);
        self.drain(node);
    }

    /// Drop the frames matching `f` in the direction from `side` (0 client, 1 server).
    pub fn filter_link(&mut self, li: usize, side: usize, f: FrameFilter) {
        self.links[li].dirs[side].filter = Some(f);
    }

    /// The links of a client that are up (established and open on both ends).
    pub fn live_links(&self, client: NodeIdx) -> Vec<usize> {
        self.links
            .iter()
            .enumerate()
            .filter(|(_, l)| l.client == client && l.established && l.open[0] && l.open[1])
            .map(|(i, _)| i)
            .collect()
    }

    // ------------------------------------------------------------------ local TCP sockets

    pub(crate) fn new_sock(
        &mut self,
        n: NodeIdx,
        conn: ConnId,
        owner: Owner,
        read: ReadRate,
    ) -> usize {
        let read_in_place = self.rng.chance(0.5);
        self.socks.push(Sock {
            node: n,
            conn,
            owner,
            up: VecDeque::new(),
            up_len: 0,
            written: 0,
            delivered: 0,
            up_end: None,
            read_paused: false,
            deliver_scheduled: false,
            down: VecDeque::new(),
            down_len: 0,
            down_end: None,
            consume_scheduled: false,
            machine_closed: false,
            reported_closed: false,
            endpoint_closed: false,
            endpoint_notified: false,
            dialing: false,
            read_in_place,
            dial_app: None,
            read,
            created: self.now,
        });
        let s = self.socks.len() - 1;
        self.sock_of.insert((n, conn), s);
        s
    }

    /// The endpoint writes bytes toward the machine.
    pub(crate) fn endpoint_write(&mut self, s: usize, data: Bytes) {
        let sk = &mut self.socks[s];
        if sk.endpoint_closed || data.is_empty() {
            return;
        }
        sk.up_len += data.len();
        sk.written += data.len() as u64;
        sk.up.push_back(data);
        self.schedule_deliver(s);
    }

    /// The endpoint closes its side: `None` cleanly (EOF after the bytes written), or resets.
    pub(crate) fn endpoint_close(&mut self, s: usize, error: Option<String>) {
        let sk = &mut self.socks[s];
        if sk.endpoint_closed {
            return;
        }
        sk.endpoint_closed = true;
        if error.is_some() {
            sk.up.clear();
            sk.up_len = 0;
        }
        sk.up_end = Some(error);
        self.schedule_deliver(s);
    }

    fn schedule_deliver(&mut self, s: usize) {
        let sk = &mut self.socks[s];
        if sk.deliver_scheduled || sk.reported_closed || sk.machine_closed || sk.dialing {
            return;
        }
        let reset = matches!(sk.up_end, Some(Some(_)));
        if sk.read_paused && !reset {
            return;
        }
        if sk.up.is_empty() && sk.up_end.is_none() {
            return;
        }
        sk.deliver_scheduled = true;
        let lat = self.net.local_latency;
        self.after(lat, Ev::ConnDeliver(s));
    }

    fn conn_deliver(&mut self, s: usize) {
        self.socks[s].deliver_scheduled = false;
        let (n, conn) = (self.socks[s].node, self.socks[s].conn);
        {
            let sk = &self.socks[s];
            if sk.reported_closed || sk.machine_closed {
                return;
            }
        }
        if let Some(Some(err)) = self.socks[s].up_end.clone() {
            // A reset is noticed even by a paused reader.
            self.socks[s].reported_closed = true;
            self.h_reported_closed(n, conn.0, true);
            let now = self.now;
            self.nodes[n]
                .machine()
                .handle_conn_closed(now, conn, Some(&err));
            self.drain(n);
            return;
        }
        if self.socks[s].read_paused {
            return;
        }
        if !self.socks[s].up.is_empty() {
            let max = self.rng.usize(1..self.net.max_read + 1);
            let sk = &mut self.socks[s];
            let front = sk.up.front().map_or(0, |b| b.len());
            let data = if front >= max || sk.up.len() == 1 {
                // One piece: no copy.
                let mut b = sk.up.pop_front().expect("front");
                if b.len() > max {
                    let rest = b.split_off(max);
                    sk.up.push_front(rest);
                }
                b
            } else {
                let mut chunk = BytesMut::with_capacity(max.min(sk.up_len));
                while chunk.len() < max {
                    let Some(mut b) = sk.up.pop_front() else {
                        break;
                    };
                    let take = (max - chunk.len()).min(b.len());
                    if take < b.len() {
                        let rest = b.split_off(take);
                        sk.up.push_front(rest);
                    }
                    chunk.extend_from_slice(&b);
                }
                chunk.freeze()
            };
            sk.up_len -= data.len();
            sk.delivered += data.len() as u64;
            let in_place = sk.read_in_place;
            fnv(&mut self.fingerprint, data.len() as u64);
            let now = self.now;
            if in_place {
                // The runtimes' zero-copy path: the read lands behind room for a Data header.
                let mut buf = BytesMut::with_capacity(DATA_HEADER_LEN + data.len());
                buf.resize(DATA_HEADER_LEN, 0xAA);
                buf.extend_from_slice(&data);
                self.nodes[n].machine().handle_conn_read(now, conn, buf);
            } else {
                self.nodes[n].machine().handle_conn_data(now, conn, data);
            }
            self.drain(n);
            self.after_deliver(s);
            return;
        }
        if let Some(None) = self.socks[s].up_end {
            self.socks[s].reported_closed = true;
            self.h_reported_closed(n, conn.0, false);
            let now = self.now;
            self.nodes[n].machine().handle_conn_closed(now, conn, None);
            self.drain(n);
        }
    }

    fn after_deliver(&mut self, s: usize) {
        self.schedule_deliver(s);
        // The endpoint may write more now that its buffer drained.
        match self.socks[s].owner {
            Owner::App(a) => self.app_writable(a),
            Owner::Target(t) => self.target_writable(t),
            Owner::None => {}
        }
    }

    fn schedule_consume(&mut self, s: usize, delay: Duration) {
        let sk = &mut self.socks[s];
        if sk.consume_scheduled || sk.endpoint_notified || sk.dialing {
            return;
        }
        if sk.down.is_empty() && sk.down_end.is_none() {
            return;
        }
        sk.consume_scheduled = true;
        let lat = self.net.local_latency + delay;
        self.after(lat, Ev::ConnConsume(s));
    }

    fn conn_consume(&mut self, s: usize) {
        self.socks[s].consume_scheduled = false;
        if self.socks[s].endpoint_notified {
            return;
        }
        let (n, conn) = (self.socks[s].node, self.socks[s].conn);
        let owner = self.socks[s].owner;
        // How much the endpoint takes now.
        let mut budget = match self.socks[s].read {
            ReadRate::Fast => usize::MAX,
            ReadRate::Slow { bytes, .. } => bytes,
        };
        // (Once the machine closed the socket, the endpoint's own writes fail: nothing holds
        // its reading back any more.)
        if !self.socks[s].endpoint_closed && !self.socks[s].machine_closed {
            budget = budget.min(match owner {
                Owner::Target(t) => self.target_capacity(t),
                _ => usize::MAX,
            });
        }
        let mut taken = Vec::new();
        let mut total = 0;
        {
            let sk = &mut self.socks[s];
            while total < budget {
                let Some(mut b) = sk.down.pop_front() else {
                    break;
                };
                let take = (budget - total).min(b.len());
                if take < b.len() {
                    let rest = b.split_off(take);
                    sk.down.push_front(rest);
                }
                total += b.len();
                taken.push(b);
            }
            sk.down_len -= total;
        }
        if total > 0 && !self.socks[s].machine_closed && !self.socks[s].reported_closed {
            let now = self.now;
            self.nodes[n]
                .machine()
                .handle_conn_written(now, conn, total);
            self.drain(n);
        }
        if !self.socks[s].endpoint_closed {
            for b in taken {
                match owner {
                    Owner::App(a) => self.app_bytes(a, b),
                    Owner::Target(t) => self.target_bytes(t, b),
                    Owner::None => {}
                }
            }
        }
        let sk = &self.socks[s];
        if sk.down.is_empty() {
            if let Some(abort) = sk.down_end {
                self.socks[s].endpoint_notified = true;
                if !self.socks[s].endpoint_closed {
                    match owner {
                        Owner::App(a) => self.app_closed_by_machine(a, abort),
                        Owner::Target(t) => self.target_closed_by_machine(t, abort),
                        Owner::None => {}
                    }
                }
            }
            return;
        }
        let delay = match self.socks[s].read {
            ReadRate::Fast => Duration::ZERO,
            ReadRate::Slow { every, .. } => every,
        };
        if total == 0 && matches!(self.socks[s].read, ReadRate::Fast) {
            // The endpoint cannot take more now (an echo whose own output is full); it is
            // woken when that drains.
            return;
        }
        self.schedule_consume(s, delay);
    }

    /// Wake a socket's consumer (after the endpoint made room).
    pub(crate) fn kick_consume(&mut self, s: usize) {
        self.schedule_consume(s, Duration::ZERO);
    }

    // ------------------------------------------------------------------ dialling

    fn dial(&mut self, n: NodeIdx, conn: ConnId, target: TargetAddr, timeout: Duration) {
        let app = self.target_dir.get(&target).copied();
        self.dials.push(DialRecord {
            at: self.now,
            node: n,
            target: target.clone(),
            app,
        });
        let s = self.new_sock(n, conn, Owner::None, ReadRate::Fast);
        self.socks[s].dialing = true;
        self.socks[s].dial_app = app;
        let lat = self.net.dial_latency;
        match app.map(|a| self.apps[a].spec.dial) {
            None => self.after(lat, Ev::DialDone(s, Err("no such host".into()))),
            Some(super::app::Dial::Accept) => self.after(lat, Ev::DialDone(s, Ok(()))),
            Some(super::app::Dial::Refuse) => self.after(
                lat,
                Ev::DialDone(
                    s,
                    Err(format!("dial tcp {target}: connect: connection refused")),
                ),
            ),
            Some(super::app::Dial::BlackHole) => {
                // The runtime's own dial timeout fires around the machine's connect timer:
                // just before, at, or just after it.
                let jitter = Duration::from_micros(self.rng.between(0, 2000));
                let at = if self.rng.chance(0.5) {
                    timeout + jitter
                } else {
                    timeout.saturating_sub(jitter)
                };
                self.after(
                    at,
                    Ev::DialDone(s, Err(format!("dial tcp {target}: i/o timeout"))),
                )
            }
        }
    }

    fn dial_done(&mut self, s: usize, r: Result<(), String>) {
        let (n, conn) = (self.socks[s].node, self.socks[s].conn);
        if self.socks[s].machine_closed {
            return; // cancelled by Close
        }
        self.socks[s].dialing = false;
        let now = self.now;
        match r {
            Ok(()) => {
                let app = self.socks[s]
                    .dial_app
                    .expect("accepted dials have a target");
                let t = self.new_target(app, n, s);
                self.socks[s].owner = Owner::Target(t);
                self.socks[s].read = self.apps[app].spec.target_read;
                self.nodes[n]
                    .machine()
                    .handle_dial_result(now, conn, Ok(()));
                self.drain(n);
                self.target_start(t);
            }
            Err(e) => {
                self.socks[s].reported_closed = true;
                self.h_reported_closed(n, conn.0, true);
                self.nodes[n]
                    .machine()
                    .handle_dial_result(now, conn, Err(IoFailure::other(e)));
                self.drain(n);
            }
        }
    }

    // ------------------------------------------------------------------ UDP

    fn send_udp(&mut self, u: usize, to: TargetAddr, data: Bytes) {
        let from_addr = self.udps[u].addr;
        let lat = self.net.udp_latency;
        // To an application (a relay answering it) or a stranger?
        if let TargetAddr::Ip(a) = &to {
            if let Some(&app) = self.udp_apps.get(a) {
                let from = from_addr.expect("bound relay");
                let _ = app;
                self.after(lat, Ev::UdpToApp(*a, from, data));
                return;
            }
        }
        // To an echo target: resolve, echo back from the target's address.
        let app = self.target_dir.get(&to).copied();
        let Some(app) = app else {
            self.tr(|| format!("udp to unknown {to} dropped"));
            return;
        };
        let from = self.apps[app].target_ip_addr(&to);
        self.after(lat * 2, Ev::UdpToMachine(u, from, data));
    }

    /// An application sends a datagram from `from` to `to` (a relay).
    pub(crate) fn app_send_udp(&mut self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        let Some(&u) = self.udp_by_addr.get(&to) else {
            self.tr(|| format!("udp to {to}: no such socket"));
            return;
        };
        let lat = self.net.udp_latency;
        self.after(lat, Ev::UdpToMachine(u, from, data));
    }

    // ------------------------------------------------------------------ listeners

    pub fn listener_of(&self, n: NodeIdx) -> Option<SocketAddr> {
        let mut v: Vec<_> = self
            .listener_addr
            .iter()
            .filter(|((m, _), _)| *m == n)
            .map(|(_, a)| *a)
            .collect();
        v.sort();
        v.first().copied()
    }

    pub(crate) fn listener_at(&self, addr: SocketAddr) -> Option<(NodeIdx, ListenerId)> {
        self.listeners.get(&addr).copied()
    }
}

/// What the fingerprint records of every output: (kind of handle, handle, the channel of a
/// frame: 0 for control messages and for anything but a frame).
fn output_key(o: &Output) -> (u8, u64, u64) {
    match o {
        Output::Transmit { link, frame } => (1, link.0, frame_channel(frame)),
        Output::OpenLink { link, .. }
        | Output::Ping { link }
        | Output::CloseLink { link }
        | Output::PauseLink { link }
        | Output::ResumeLink { link } => (1, link.0, 0),
        Output::Listen { listener, .. } | Output::Unlisten { listener } => (2, listener.0, 0),
        Output::Dial { conn, .. }
        | Output::Resolve { conn, .. }
        | Output::Write { conn, .. }
        | Output::PauseRead { conn }
        | Output::ResumeRead { conn }
        | Output::Close { conn, .. } => (3, conn.0, 0),
        Output::BindUdp { udp, .. } | Output::SendUdp { udp, .. } | Output::CloseUdp { udp } => {
            (4, udp.0, 0)
        }
        Output::Event(_) => (5, 0, 0),
    }
}

/// The channel a frame belongs to (first 8 bytes of its id), 0 for control messages.
fn frame_channel(f: &[u8]) -> u64 {
    let at = match f.get(1) {
        Some(0x03..=0x05) => 3,
        // Disconnect, Connector(Response), and our ChannelAck / ChannelNoWindow.
        Some(0x06..=0x08 | 0x41 | 0x42) => 2,
        _ => return 0,
    };
    f.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .unwrap_or(0)
}

fn describe_output(o: &Output) -> String {
    match o {
        Output::Transmit { link, frame } => {
            let kind = frame.get(1).copied().unwrap_or(0);
            format!("Transmit {link} type {kind:#04x} len {}", frame.len())
        }
        Output::Write { conn, data } => format!("Write {conn} len {}", data.len()),
        Output::SendUdp { udp, to, data } => format!("SendUdp {udp} to {to} len {}", data.len()),
        other => format!("{other:?}"),
    }
}

//! Simulated SOCKS5 applications and the targets they reach.
//!
//! Each application has a target of its own (its own IPv4, IPv6 and domain address), so a
//! dial names the application it serves and both ends of every stream can be checked against
//! each other. Applications speak real SOCKS5 bytes ([`super::socks`]).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use linksocks_core::addr::TargetAddr;
use linksocks_core::time::Instant;

use super::pattern::Pattern;
use super::socks::{self, Parsed};
use super::world::{Ev, NodeIdx, Owner, ReadRate, World};

/// What a dial of the application's target does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dial {
    Accept,
    /// Connection refused.
    Refuse,
    /// Never answers (the dialling side's own timeout ends it).
    BlackHole,
}

/// How the application names its target in the SOCKS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    V4,
    V6,
    Domain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocksAuth {
    NoAuth,
    UserPass { user: String, pass: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpPlan {
    pub datagrams: u32,
    pub max_size: usize,
    pub gap: Duration,
    /// Name the application's UDP address in the request (else `0.0.0.0:0`).
    pub name_addr: bool,
    /// After the exchange close the control connection (else stay idle on it).
    pub close_control: bool,
    /// Also send a datagram from another host's address (the relay must drop it).
    pub stranger: bool,
}

/// What the application does once connected (the target's behaviour follows from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Send `up` bytes, expect them echoed, close.
    Echo { up: u64 },
    /// The target sends `down` bytes, then ends cleanly (or resets with `reset`).
    Download { down: u64, reset: bool },
    /// Send `up` bytes and close.
    Upload { up: u64 },
    /// Both ways at once; the target ends after it sent `down` and received `up`.
    Duplex { up: u64, down: u64 },
    /// Stay idle until the tunnel ends the connection.
    Hold,
    /// After an echoed burst of `burst` bytes, `rounds` echoes of `size` bytes, one at a
    /// time, `think` apart; each round trip time is recorded in `App::rtts`. With `overlap`
    /// the first round starts as soon as the burst is written, before its echo is back.
    PingPong {
        burst: u64,
        rounds: u32,
        size: usize,
        think: Duration,
        overlap: bool,
    },
    /// No request at all: only the greeting (and authentication).
    HandshakeOnly,
    /// UDP ASSOCIATE with echo targets.
    Udp(UdpPlan),
}

#[derive(Clone, Debug)]
pub struct AppSpec {
    /// The SOCKS listener to connect to.
    pub listener: SocketAddr,
    pub auth: SocksAuth,
    /// Offer both "no auth" and username/password.
    pub offer_both: bool,
    /// Send greeting, authentication, request and payload without waiting for answers.
    pub pipelined: bool,
    /// Pipelined uploads: close right after the last byte, before the reply came.
    pub eager_close: bool,
    pub form: Form,
    pub plan: Plan,
    pub dial: Dial,
    pub read: ReadRate,
    pub compressible: bool,
    /// How fast the target reads.
    pub target_read: ReadRate,
    /// Reset the connection this long after the reply (an application that dies).
    pub reset_after: Option<Duration>,
}

impl AppSpec {
    pub fn new(listener: SocketAddr, plan: Plan) -> Self {
        AppSpec {
            listener,
            auth: SocksAuth::NoAuth,
            offer_both: false,
            pipelined: false,
            eager_close: false,
            form: Form::V4,
            plan,
            dial: Dial::Accept,
            read: ReadRate::Fast,
            compressible: false,
            target_read: ReadRate::Fast,
            reset_after: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hs {
    NotStarted,
    Greeting,
    Auth,
    Request,
    Open,
    /// Method or credentials refused (`05 FF` or `01 xx`).
    Refused(String),
    /// A failure reply.
    Failed(u8),
}

pub struct AppUdp {
    pub addr: SocketAddr,
    pub relay: SocketAddr,
    /// Per sequence number: the address the echo must come from and the payload length.
    pub sent: Vec<(SocketAddr, usize)>,
    pub received: HashSet<u32>,
    pub stranger: Option<SocketAddr>,
}

pub struct App {
    pub id: usize,
    pub spec: AppSpec,
    pub node: Option<NodeIdx>,
    pub sock: Option<usize>,
    pub hs: Hs,
    rx: Vec<u8>,
    pub request_sent: bool,
    /// Where the request ends in the bytes written to the socket.
    pub request_end: u64,
    pub replies: u32,
    pub reply: Option<u8>,
    pub reply_at: Option<Instant>,
    pub bound: Option<TargetAddr>,
    pub up_total: u64,
    pub up_pushed: u64,
    pub down_recv: u64,
    /// The application closed: `Some(false)` cleanly, `Some(true)` with a reset.
    pub closed_self: Option<bool>,
    /// The tunnel closed the application's socket: `Some(abort)`.
    pub closed_by_machine: Option<bool>,
    pub started_at: Option<Instant>,
    pub done_at: Option<Instant>,
    pub success: bool,
    pub note: Option<String>,
    /// Target connections (dials that reached this application's target).
    pub targets: Vec<usize>,
    pub up_pattern: Pattern,
    pub down_pattern: Pattern,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub port: u16,
    pub rtts: Vec<Duration>,
    pp_round: u32,
    pp_sent_at: Instant,
    pub udp: Option<AppUdp>,
    udp_next: u32,
}

impl App {
    pub fn finished(&self) -> bool {
        self.closed_self.is_some()
            || self.closed_by_machine.is_some()
            || self.note.as_deref() == Some("no listener")
    }

    pub fn target_addr(&self, form: Form) -> TargetAddr {
        match form {
            Form::V4 => TargetAddr::Ip(SocketAddr::new(IpAddr::V4(self.v4), self.port)),
            Form::V6 => TargetAddr::Ip(SocketAddr::new(IpAddr::V6(self.v6), self.port)),
            Form::Domain => TargetAddr::Domain(format!("t{}.sim", self.id), self.port),
        }
    }

    /// The address the target answers from when reached as `to` (domains resolve to IPv4).
    pub fn target_ip_addr(&self, to: &TargetAddr) -> SocketAddr {
        match to {
            TargetAddr::Ip(a) => *a,
            TargetAddr::Domain(..) => SocketAddr::new(IpAddr::V4(self.v4), self.port),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "plan {:?} form {:?} dial {:?} pipelined {} hs {:?} replies {} up {}/{} down {} closed_self {:?} closed_by_tunnel {:?} started {:?} done {:?} targets {} note {:?}",
            self.spec.plan,
            self.spec.form,
            self.spec.dial,
            self.spec.pipelined,
            self.hs,
            self.replies,
            self.up_pushed,
            self.up_total,
            self.down_recv,
            self.closed_self,
            self.closed_by_machine,
            self.started_at,
            self.done_at,
            self.targets.len(),
            self.note
        )
    }
}

/// The far end of one dial.
pub struct Target {
    pub app: usize,
    pub node: NodeIdx,
    pub sock: usize,
    pub recv: u64,
    pub sent: u64,
    pub down_total: u64,
    pub closed_self: Option<bool>,
    pub closed_by_machine: Option<bool>,
    pub created: Instant,
}

impl World {
    /// Add an application; it connects at `at`.
    pub fn spawn(&mut self, spec: AppSpec, at: Instant) -> usize {
        let id = self.apps.len();
        let port = self.rng.between(1, 65535) as u16;
        let compressible = spec.compressible;
        let up_start = self.rng.next_u64();
        let down_start = self.rng.next_u64();
        let v4 = Ipv4Addr::new(10, (id >> 16) as u8, (id >> 8) as u8, id as u8);
        let v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (id >> 16) as u16, id as u16);
        let app = App {
            id,
            spec,
            node: None,
            sock: None,
            hs: Hs::NotStarted,
            rx: Vec::new(),
            request_sent: false,
            request_end: 0,
            replies: 0,
            reply: None,
            reply_at: None,
            bound: None,
            up_total: 0,
            up_pushed: 0,
            down_recv: 0,
            closed_self: None,
            closed_by_machine: None,
            started_at: None,
            done_at: None,
            success: false,
            note: None,
            targets: Vec::new(),
            up_pattern: Pattern::new(&self.blocks, compressible, up_start),
            down_pattern: Pattern::new(&self.blocks, compressible, down_start),
            v4,
            v6,
            port,
            rtts: Vec::new(),
            pp_round: 0,
            pp_sent_at: Instant::ZERO,
            udp: None,
            udp_next: 0,
        };
        for form in [Form::V4, Form::V6, Form::Domain] {
            self.target_dir.insert(app.target_addr(form), id);
        }
        self.apps.push(app);
        self.at(at, Ev::AppStart(id));
        id
    }

    pub(crate) fn app_start(&mut self, a: usize) {
        let now = self.now;
        self.apps[a].started_at = Some(now);
        let listener = self.apps[a].spec.listener;
        let Some((n, l)) = self.listener_at(listener) else {
            self.apps[a].note = Some("no listener".into());
            self.apps[a].done_at = Some(now);
            return;
        };
        let peer_ip = match listener.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let peer = SocketAddr::new(peer_ip, 30_000 + (a % 30_000) as u16);
        let conn = self.nodes[n]
            .machine()
            .handle_accept(now, l, peer, listener);
        self.h_create(n, "conn", conn.0);
        let read = self.apps[a].spec.read;
        let s = self.new_sock(n, conn, Owner::App(a), read);
        self.apps[a].node = Some(n);
        self.apps[a].sock = Some(s);
        self.drain(n);
        self.tr(|| format!("app {a} connected to node {n} as {conn}"));

        let spec = self.apps[a].spec.clone();
        let methods: Vec<u8> = match (&spec.auth, spec.offer_both && !spec.pipelined) {
            (_, true) => vec![0, 2],
            (SocksAuth::NoAuth, false) => vec![0],
            (SocksAuth::UserPass { .. }, false) => vec![2],
        };
        let mut first = socks::greeting(&methods);
        self.apps[a].hs = Hs::Greeting;
        if let Some(d) = spec.reset_after {
            self.call_after(d, move |w| {
                if !w.apps[a].finished() {
                    w.app_close(a, Some("application reset".into()));
                }
            });
        }
        if spec.pipelined {
            if let SocksAuth::UserPass { user, pass } = &spec.auth {
                first.extend_from_slice(&socks::userpass(user.as_bytes(), pass.as_bytes()));
            }
            if spec.plan != Plan::HandshakeOnly {
                first.extend_from_slice(&self.request_bytes(a));
                self.apps[a].request_sent = true;
                self.apps[a].request_end = first.len() as u64;
            }
        }
        self.endpoint_write(s, Bytes::from(first));
        if spec.pipelined {
            self.plan_start(a);
        }
    }

    fn request_bytes(&mut self, a: usize) -> Vec<u8> {
        let app = &self.apps[a];
        match &app.spec.plan {
            Plan::Udp(p) => {
                let addr = if p.name_addr {
                    let ip = app.spec.listener.ip();
                    let ip = match ip {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    };
                    SocketAddr::new(ip, 50_000 + (a % 10_000) as u16)
                } else {
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
                };
                socks::request(socks::CMD_UDP_ASSOCIATE, &TargetAddr::Ip(addr))
            }
            _ => socks::request(socks::CMD_CONNECT, &app.target_addr(app.spec.form)),
        }
    }

    fn app_write(&mut self, a: usize, data: Vec<u8>) {
        if let Some(s) = self.apps[a].sock {
            self.endpoint_write(s, Bytes::from(data));
        }
    }

    /// The plan starts: after the success reply, or at once when pipelined.
    fn plan_start(&mut self, a: usize) {
        let plan = self.apps[a].spec.plan.clone();
        match plan {
            Plan::Echo { up } | Plan::Upload { up } | Plan::Duplex { up, .. } => {
                self.apps[a].up_total = up;
                self.app_writable(a);
            }
            Plan::PingPong { burst, .. } => {
                if self.apps[a].hs == Hs::Open {
                    self.apps[a].up_total = burst;
                    if burst == 0 {
                        self.pingpong_next(a);
                    } else {
                        self.app_writable(a);
                    }
                }
            }
            Plan::Udp(_) => {
                if self.apps[a].hs == Hs::Open {
                    self.udp_open(a);
                }
            }
            Plan::Download { .. } | Plan::Hold | Plan::HandshakeOnly => {}
        }
    }

    /// Push upload bytes while the socket buffer has room.
    pub(crate) fn app_writable(&mut self, a: usize) {
        let Some(s) = self.apps[a].sock else {
            return;
        };
        if self.apps[a].finished() {
            return;
        }
        let can = self.apps[a].hs == Hs::Open
            || (self.apps[a].spec.pipelined && self.apps[a].request_sent);
        if !can {
            return;
        }
        let limit = self.apps[a].up_total;
        while self.apps[a].up_pushed < limit && self.socks[s].up_len < self.net.sndbuf {
            let left = limit - self.apps[a].up_pushed;
            let room = (self.net.sndbuf - self.socks[s].up_len) as u64;
            let n = self
                .rng
                .between(1, self.net.max_write as u64)
                .min(left)
                .min(room) as usize;
            let off = self.apps[a].up_pushed;
            let data = self.apps[a].up_pattern.bytes(off, n);
            self.apps[a].up_pushed += n as u64;
            self.endpoint_write(s, data);
        }
        if self.apps[a].up_pushed == self.apps[a].up_total {
            if let Plan::PingPong { overlap: true, .. } = self.apps[a].spec.plan {
                if self.apps[a].pp_round == 0 && self.apps[a].up_total > 0 {
                    self.pingpong_next(a);
                    return;
                }
            }
            if let Plan::Upload { .. } = self.apps[a].spec.plan {
                let open = self.apps[a].hs == Hs::Open;
                if open || (self.apps[a].spec.pipelined && self.apps[a].spec.eager_close) {
                    self.app_close(a, None);
                }
            }
        }
    }

    /// The application closes its socket (`error`: with a reset).
    pub fn app_close(&mut self, a: usize, error: Option<String>) {
        if self.apps[a].finished() {
            return;
        }
        self.apps[a].closed_self = Some(error.is_some());
        self.apps[a].done_at = Some(self.now);
        if let Some(s) = self.apps[a].sock {
            self.endpoint_close(s, error);
        }
        self.tr(|| format!("app {a} closes"));
    }

    fn app_violation(&mut self, a: usize, msg: String) {
        let summary = self.apps[a].summary();
        self.violation(format!("app {a}: {msg} [{summary}]"));
    }

    /// Bytes the tunnel wrote to the application.
    pub(crate) fn app_bytes(&mut self, a: usize, b: Bytes) {
        if self.apps[a].hs == Hs::Open {
            self.app_payload(a, b);
            return;
        }
        self.apps[a].rx.extend_from_slice(&b);
        loop {
            let hs = self.apps[a].hs.clone();
            let rx = std::mem::take(&mut self.apps[a].rx);
            let (consumed, again) = match hs {
                Hs::Greeting => match socks::parse_method(&rx) {
                    Parsed::Need => (0, false),
                    Parsed::Bad(e) => {
                        self.app_violation(a, format!("malformed method selection: {e}"));
                        (rx.len(), false)
                    }
                    Parsed::Done(m, n) => {
                        self.on_method(a, m);
                        (n, true)
                    }
                },
                Hs::Auth => match socks::parse_auth_status(&rx) {
                    Parsed::Need => (0, false),
                    Parsed::Bad(e) => {
                        self.app_violation(a, format!("malformed auth status: {e}"));
                        (rx.len(), false)
                    }
                    Parsed::Done(st, n) => {
                        if st == 0 {
                            self.apps[a].hs = Hs::Request;
                            self.send_request(a);
                        } else {
                            self.apps[a].hs = Hs::Refused(format!("auth status {st}"));
                        }
                        (n, true)
                    }
                },
                Hs::Request => match socks::parse_reply(&rx) {
                    Parsed::Need => (0, false),
                    Parsed::Bad(e) => {
                        self.app_violation(a, format!("malformed reply: {e}"));
                        (rx.len(), false)
                    }
                    Parsed::Done((rep, bound), n) => {
                        self.on_reply(a, rep, bound);
                        (n, true)
                    }
                },
                Hs::Open => {
                    if !rx.is_empty() {
                        self.app_payload(a, Bytes::from(rx));
                    }
                    return;
                }
                Hs::Refused(_) | Hs::Failed(_) => {
                    if !rx.is_empty() {
                        self.app_violation(
                            a,
                            format!("{} bytes after a refusal or failure reply", rx.len()),
                        );
                    }
                    (rx.len(), false)
                }
                Hs::NotStarted => (rx.len(), false),
            };
            let rest = rx[consumed..].to_vec();
            self.apps[a].rx = rest;
            if !again || self.apps[a].rx.is_empty() && self.apps[a].hs != Hs::Open {
                return;
            }
        }
    }

    fn on_method(&mut self, a: usize, m: u8) {
        let auth = self.apps[a].spec.auth.clone();
        let offered: &[u8] = match (
            &auth,
            self.apps[a].spec.offer_both && !self.apps[a].spec.pipelined,
        ) {
            (_, true) => &[0, 2],
            (SocksAuth::NoAuth, false) => &[0],
            (SocksAuth::UserPass { .. }, false) => &[2],
        };
        if m == 0xFF {
            self.apps[a].hs = Hs::Refused("no acceptable method".into());
            return;
        }
        if !offered.contains(&m) {
            self.app_violation(
                a,
                format!("the listener chose method {m:#04x}, which was not offered"),
            );
            return;
        }
        if m == 2 {
            self.apps[a].hs = Hs::Auth;
            if !self.apps[a].spec.pipelined {
                let (user, pass) = match &auth {
                    SocksAuth::UserPass { user, pass } => (user.clone(), pass.clone()),
                    SocksAuth::NoAuth => (String::new(), String::new()),
                };
                self.app_write(a, socks::userpass(user.as_bytes(), pass.as_bytes()));
            }
        } else {
            self.apps[a].hs = Hs::Request;
            self.send_request(a);
        }
    }

    fn send_request(&mut self, a: usize) {
        if self.apps[a].spec.pipelined || self.apps[a].request_sent {
            return;
        }
        if self.apps[a].spec.plan == Plan::HandshakeOnly {
            // Authenticated: that is all this application wanted.
            self.apps[a].success = true;
            self.app_close(a, None);
            return;
        }
        let req = self.request_bytes(a);
        self.apps[a].request_sent = true;
        let s = self.apps[a].sock.expect("connected");
        self.apps[a].request_end = self.socks[s].written + req.len() as u64;
        self.app_write(a, req);
    }

    fn on_reply(&mut self, a: usize, rep: u8, bound: TargetAddr) {
        self.apps[a].replies += 1;
        self.apps[a].reply = Some(rep);
        self.apps[a].reply_at = Some(self.now);
        self.apps[a].bound = Some(bound);
        if rep != 0 {
            self.apps[a].hs = Hs::Failed(rep);
            return;
        }
        self.apps[a].hs = Hs::Open;
        if self.apps[a].spec.pipelined {
            // Upload pieces already went; the writer may go on, and some plans start now.
            match self.apps[a].spec.plan {
                Plan::PingPong { .. } | Plan::Udp(_) => self.plan_start(a),
                _ => self.app_writable(a),
            }
        } else {
            self.plan_start(a);
        }
    }

    /// Stream bytes after the reply.
    fn app_payload(&mut self, a: usize, b: Bytes) {
        let off = self.apps[a].down_recv;
        let (pattern, limit, what) = match self.apps[a].spec.plan {
            Plan::Echo { .. } | Plan::PingPong { .. } => (
                self.apps[a].up_pattern.clone(),
                self.apps[a].up_pushed,
                "echoed bytes beyond what was sent",
            ),
            Plan::Download { down, .. } | Plan::Duplex { down, .. } => (
                self.apps[a].down_pattern.clone(),
                down,
                "more bytes than the target sent",
            ),
            _ => {
                self.app_violation(a, format!("{} unexpected bytes", b.len()));
                return;
            }
        };
        if let Err(i) = pattern.check(off, &b) {
            self.app_violation(
                a,
                format!(
                    "downstream byte {} is wrong (stream corrupt or reordered)",
                    off + i as u64
                ),
            );
            return;
        }
        self.apps[a].down_recv += b.len() as u64;
        if self.apps[a].down_recv > limit {
            self.app_violation(a, what.to_string());
            return;
        }
        let done = self.apps[a].down_recv == self.apps[a].up_total;
        match self.apps[a].spec.plan {
            Plan::Echo { up } if self.apps[a].down_recv == up => {
                self.apps[a].success = true;
                self.app_close(a, None);
            }
            Plan::PingPong { think, .. } if done => {
                if self.apps[a].pp_round > 0 {
                    let rtt = self.now - self.apps[a].pp_sent_at;
                    self.apps[a].rtts.push(rtt);
                }
                self.after(think, Ev::AppWake(a));
            }
            _ => {}
        }
    }

    fn pingpong_next(&mut self, a: usize) {
        let Plan::PingPong { rounds, size, .. } = self.apps[a].spec.plan else {
            return;
        };
        if self.apps[a].pp_round == rounds {
            self.apps[a].success = true;
            self.app_close(a, None);
            return;
        }
        self.apps[a].pp_round += 1;
        self.apps[a].pp_sent_at = self.now;
        self.apps[a].up_total += size as u64;
        self.app_writable(a);
    }

    pub(crate) fn app_wake(&mut self, a: usize) {
        if self.apps[a].finished() {
            return;
        }
        match self.apps[a].spec.plan {
            Plan::PingPong { .. } => self.pingpong_next(a),
            Plan::Udp(_) => self.udp_step(a),
            _ => {}
        }
    }

    /// The tunnel closed the application's socket (after everything written before).
    pub(crate) fn app_closed_by_machine(&mut self, a: usize, abort: bool) {
        if self.apps[a].finished() {
            return;
        }
        self.apps[a].closed_by_machine = Some(abort);
        self.apps[a].done_at = Some(self.now);
        self.tr(|| format!("app {a} sees the tunnel close (abort {abort})"));
        // Exactly one reply per request: a request that got through the greeting (and
        // authentication) is answered before the socket closes.
        let read = self.apps[a].sock.map_or(0, |s| self.socks[s].delivered);
        let req_pending = self.apps[a].request_sent
            && read >= self.apps[a].request_end
            && matches!(self.apps[a].hs, Hs::Request);
        if req_pending && self.apps[a].replies == 0 {
            self.app_violation(
                a,
                "the SOCKS request got no reply before the socket closed".into(),
            );
        }
        if abort || self.apps[a].hs != Hs::Open {
            return;
        }
        // A clean end of stream after a success reply: it must mirror the target's own clean
        // end, with every byte the target sent delivered (no silent truncation downstream).
        let t = self.apps[a].targets.last().copied();
        let ok = match t {
            None => false,
            Some(t) => {
                let tg = &self.targets[t];
                tg.closed_self == Some(false) && tg.sent == self.apps[a].down_recv
            }
        };
        if !ok {
            let detail = match t {
                None => "no target was ever connected".to_string(),
                Some(t) => {
                    let tg = &self.targets[t];
                    format!(
                        "target closed_self {:?} closed_by_tunnel {:?} sent {}",
                        tg.closed_self, tg.closed_by_machine, tg.sent
                    )
                }
            };
            let down = self.apps[a].down_recv;
            self.app_violation(
                a,
                format!("silent truncation: clean end of stream after {down} bytes, but {detail}"),
            );
            return;
        }
        match self.apps[a].spec.plan {
            Plan::Download { down, reset: false } if self.apps[a].down_recv == down => {
                self.apps[a].success = true;
            }
            Plan::Duplex { up, down }
                if self.apps[a].down_recv == down && self.apps[a].up_pushed == up =>
            {
                self.apps[a].success = true;
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ targets

    pub(crate) fn new_target(&mut self, app: usize, node: NodeIdx, sock: usize) -> usize {
        let down_total = match self.apps[app].spec.plan {
            Plan::Download { down, .. } | Plan::Duplex { down, .. } => down,
            _ => 0,
        };
        self.targets.push(Target {
            app,
            node,
            sock,
            recv: 0,
            sent: 0,
            down_total,
            closed_self: None,
            closed_by_machine: None,
            created: self.now,
        });
        let t = self.targets.len() - 1;
        self.apps[app].targets.push(t);
        if self.apps[app].targets.len() > 1 {
            self.app_violation(app, "its target was dialled more than once".into());
        }
        t
    }

    pub(crate) fn target_start(&mut self, t: usize) {
        self.target_writable(t);
    }

    /// How many bytes the target takes now: an echo stops reading while its own output is full.
    pub(crate) fn target_capacity(&self, t: usize) -> usize {
        let app = self.targets[t].app;
        match self.apps[app].spec.plan {
            Plan::Echo { .. } | Plan::PingPong { .. } => {
                let s = self.targets[t].sock;
                self.net.sndbuf.saturating_sub(self.socks[s].up_len)
            }
            _ => usize::MAX,
        }
    }

    pub(crate) fn target_writable(&mut self, t: usize) {
        let s = self.targets[t].sock;
        if self.targets[t].closed_self.is_some() || self.targets[t].closed_by_machine.is_some() {
            return;
        }
        let app = self.targets[t].app;
        match self.apps[app].spec.plan {
            Plan::Echo { .. } | Plan::PingPong { .. } => {
                // Room again: read on.
                self.kick_consume(s);
            }
            Plan::Download { .. } | Plan::Duplex { .. } => {
                while self.targets[t].sent < self.targets[t].down_total
                    && self.socks[s].up_len < self.net.sndbuf
                {
                    let left = self.targets[t].down_total - self.targets[t].sent;
                    let room = (self.net.sndbuf - self.socks[s].up_len) as u64;
                    let n = self
                        .rng
                        .between(1, self.net.max_write as u64)
                        .min(left)
                        .min(room) as usize;
                    let data = self.apps[app].down_pattern.bytes(self.targets[t].sent, n);
                    self.targets[t].sent += n as u64;
                    self.endpoint_write(s, data);
                }
                self.target_maybe_end(t);
            }
            _ => {}
        }
    }

    fn target_maybe_end(&mut self, t: usize) {
        let app = self.targets[t].app;
        let tg = &self.targets[t];
        if tg.sent < tg.down_total || tg.closed_self.is_some() {
            return;
        }
        match self.apps[app].spec.plan {
            Plan::Download { reset, .. } => {
                let s = tg.sock;
                self.targets[t].closed_self = Some(reset);
                self.endpoint_close(s, reset.then(|| "connection reset by peer".to_string()));
            }
            Plan::Duplex { up, .. } if tg.recv == up => {
                let s = tg.sock;
                self.targets[t].closed_self = Some(false);
                self.endpoint_close(s, None);
            }
            _ => {}
        }
    }

    /// Bytes the tunnel wrote to the target.
    pub(crate) fn target_bytes(&mut self, t: usize, b: Bytes) {
        let app = self.targets[t].app;
        let off = self.targets[t].recv;
        if let Err(i) = self.apps[app].up_pattern.check(off, &b) {
            let msg = format!(
                "upstream byte {} is wrong at the target (stream corrupt or reordered)",
                off + i as u64
            );
            self.app_violation(app, msg);
            return;
        }
        self.targets[t].recv += b.len() as u64;
        if self.targets[t].recv > self.apps[app].up_pushed {
            self.app_violation(
                app,
                "the target received more than the application sent".into(),
            );
            return;
        }
        match self.apps[app].spec.plan {
            Plan::Echo { .. } | Plan::PingPong { .. } => {
                let s = self.targets[t].sock;
                self.targets[t].sent += b.len() as u64;
                self.endpoint_write(s, b);
            }
            Plan::Duplex { .. } => self.target_maybe_end(t),
            Plan::Upload { .. } | Plan::Hold => {}
            _ => {
                self.app_violation(app, "its target got bytes it should not".into());
            }
        }
    }

    /// The tunnel closed the target's socket.
    pub(crate) fn target_closed_by_machine(&mut self, t: usize, abort: bool) {
        if self.targets[t].closed_self.is_some() || self.targets[t].closed_by_machine.is_some() {
            return;
        }
        self.targets[t].closed_by_machine = Some(abort);
        let app = self.targets[t].app;
        if abort {
            return;
        }
        // A clean end of stream at the target: the application must have closed cleanly after
        // sending exactly what arrived (no silent truncation upstream).
        let recv = self.targets[t].recv;
        let ok = self.apps[app].closed_self == Some(false) && self.apps[app].up_pushed == recv;
        if !ok {
            let (pushed, cs) = (self.apps[app].up_pushed, self.apps[app].closed_self);
            self.app_violation(
                app,
                format!(
                    "silent truncation: the target got a clean end of stream after {recv} bytes, but the application sent {pushed} and closed_self is {cs:?}"
                ),
            );
            return;
        }
        if let Plan::Upload { up } = self.apps[app].spec.plan {
            if recv == up {
                self.apps[app].success = true;
            }
        }
    }

    // ------------------------------------------------------------------ UDP applications

    fn udp_open(&mut self, a: usize) {
        let Some(TargetAddr::Ip(relay)) = self.apps[a].bound.clone() else {
            self.app_violation(a, "UDP ASSOCIATE reply without an IP relay address".into());
            return;
        };
        let Plan::Udp(p) = self.apps[a].spec.plan.clone() else {
            return;
        };
        let ip = match self.apps[a].spec.listener.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let port = if p.name_addr {
            50_000 + (a % 10_000) as u16
        } else {
            self.port()
        };
        let addr = SocketAddr::new(ip, port);
        self.udp_apps.insert(addr, a);
        let stranger = p.stranger.then(|| {
            let ip = match ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9)),
            };
            SocketAddr::new(ip, port)
        });
        if let Some(s) = stranger {
            self.udp_apps.insert(s, usize::MAX);
        }
        self.apps[a].udp = Some(AppUdp {
            addr,
            relay,
            sent: Vec::new(),
            received: HashSet::new(),
            stranger,
        });
        self.after(Duration::ZERO, Ev::AppWake(a));
    }

    fn udp_step(&mut self, a: usize) {
        let Plan::Udp(p) = self.apps[a].spec.plan.clone() else {
            return;
        };
        let Some(u) = self.apps[a].udp.as_ref() else {
            return;
        };
        let (addr, relay, stranger) = (u.addr, u.relay, u.stranger);
        let seq = self.apps[a].udp_next;
        if seq < p.datagrams {
            self.apps[a].udp_next += 1;
            let form = *self.rng.pick(&[Form::V4, Form::V6, Form::Domain]);
            let dst = self.apps[a].target_addr(form);
            let expect_from = self.apps[a].target_ip_addr(&dst);
            let size = self.rng.between(8, p.max_size.max(8) as u64) as usize;
            let mut payload = BytesMut::with_capacity(size);
            payload.put_u32(a as u32);
            payload.put_u32(seq);
            payload.extend_from_slice(&self.apps[a].up_pattern.bytes(seq as u64 * 7919, size - 8));
            let dg = Bytes::from(socks::udp_datagram(&dst, &payload));
            if let Some(u) = self.apps[a].udp.as_mut() {
                u.sent.push((expect_from, size));
            }
            self.app_send_udp(addr, relay, dg.clone());
            if seq == 0 {
                if let Some(s) = stranger {
                    self.app_send_udp(s, relay, dg);
                }
            }
            let gap = p.gap;
            self.after(gap, Ev::AppWake(a));
            return;
        }
        // All sent: wait for the echoes (up to 30 s), then finish.
        let all = self.apps[a]
            .udp
            .as_ref()
            .is_some_and(|u| u.received.len() == u.sent.len());
        let waited = self.now - self.apps[a].reply_at.unwrap_or(self.now);
        if !all && waited < Duration::from_secs(30) {
            self.after(Duration::from_millis(100), Ev::AppWake(a));
            return;
        }
        if all {
            self.apps[a].success = true;
        }
        if p.close_control {
            self.app_close(a, None);
        }
    }

    pub(crate) fn udp_to_app(&mut self, to: SocketAddr, from: SocketAddr, data: Bytes) {
        let Some(&a) = self.udp_apps.get(&to) else {
            return;
        };
        if a == usize::MAX {
            self.violation(format!(
                "a relay sent a datagram to a stranger at {to} (from {from})"
            ));
            return;
        }
        if self.apps[a].closed_self.is_some() {
            return; // the application is gone
        }
        let Some(u) = self.apps[a].udp.as_ref() else {
            return;
        };
        if from != u.relay {
            let relay = u.relay;
            self.app_violation(
                a,
                format!("datagram from {from}, not from the relay {relay}"),
            );
            return;
        }
        let (src, off) = match socks::parse_udp(&data) {
            Ok(x) => x,
            Err(e) => {
                self.app_violation(a, format!("bad SOCKS5 UDP header from the relay: {e}"));
                return;
            }
        };
        let payload = &data[off..];
        if payload.len() < 8 {
            self.app_violation(a, format!("datagram of {} bytes", payload.len()));
            return;
        }
        let who = u32::from_be_bytes(payload[0..4].try_into().expect("4")) as usize;
        let seq = u32::from_be_bytes(payload[4..8].try_into().expect("4"));
        let Some(&(expect_from, size)) = u.sent.get(seq as usize) else {
            self.app_violation(a, format!("echo of datagram {seq}, never sent"));
            return;
        };
        if who != a {
            self.app_violation(a, format!("got the echo meant for app {who}"));
            return;
        }
        if TargetAddr::Ip(expect_from) != src {
            self.app_violation(
                a,
                format!("echo of {seq} says it came from {src}, expected {expect_from}"),
            );
            return;
        }
        if payload.len() != size
            || self.apps[a]
                .up_pattern
                .check(seq as u64 * 7919, &payload[8..])
                .is_err()
        {
            self.app_violation(
                a,
                format!(
                    "echo of datagram {seq} is corrupt ({} of {size} bytes)",
                    payload.len()
                ),
            );
            return;
        }
        let dup = !self.apps[a].udp.as_mut().expect("udp").received.insert(seq);
        if dup {
            self.app_violation(a, format!("echo of datagram {seq} arrived twice"));
        }
    }
}

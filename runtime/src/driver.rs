//! The loop that feeds a machine and carries out its outputs, written once for both roles and
//! both runtimes.
//!
//! The machine sits behind one mutex. Each socket has a reader task that locks it only to hand
//! in what it read, and a writer task fed by a channel; the machine's own byte accounting
//! (`handle_link_sent`, `handle_conn_written`) bounds those channels, so no queue between tasks
//! grows without limit. One timer task sleeps until the machine's next deadline.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant as StdInstant};

use bytes::{Buf, Bytes};
use event_listener::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use linksocks_core::addr::TargetAddr;
use linksocks_core::ids::ChannelId;
use linksocks_core::session::{
    ConnId, ConnectorOutcome, Event as MachineEvent, Fatal, IoFailure, LinkId, ListenerId, Machine,
    Output, UdpId,
};
use linksocks_core::time::Instant;
use tracing::{debug, error, info, warn};

use crate::net::TcpStream;
use crate::read_buf::ReadBuffers;
use crate::{Event as UserEvent, Rt};

/// Smallest and largest read from a local socket. Reads start small so that idle connections
/// hold little memory, and grow while the socket keeps filling them.
const READ_MIN: usize = 4 << 10;
const READ_MAX: usize = 256 << 10;
/// A busy socket's spare read chunks are let go after this long without data.
const READ_QUIET: Duration = Duration::from_millis(250);
/// Largest UDP datagram.
const UDP_MAX: usize = 65_535;
/// Datagrams queued toward one UDP socket before new ones are dropped (UDP is lossy anyway).
const UDP_QUEUE: usize = 1024;

/// A pause switch for a reader task.
#[derive(Default)]
pub struct Gate {
    paused: AtomicBool,
    event: Event,
}

impl Gate {
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    /// Resolves once the gate is open.
    pub async fn wait(&self) {
        loop {
            if !self.paused.load(Ordering::SeqCst) {
                return;
            }
            let l = self.event.listen();
            if !self.paused.load(Ordering::SeqCst) {
                return;
            }
            l.await;
        }
    }
}

/// A one-way alarm: once fired, every waiter (present and future) wakes.
#[derive(Default)]
pub struct Signal {
    fired: AtomicBool,
    event: Event,
}

impl Signal {
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    pub async fn wait(&self) {
        loop {
            if self.is_fired() {
                return;
            }
            let l = self.event.listen();
            if self.is_fired() {
                return;
            }
            l.await;
        }
    }
}

pub enum LinkCmd {
    Frame(Bytes),
    /// The unwritten rest of a frame whose start was written on the spot (see [`LinkHandle`]),
    /// already framed; `sent` is the machine frame's length, reported once it is out.
    Rest {
        bytes: Vec<Bytes>,
        sent: usize,
    },
    Ping,
    /// The answer to the peer's ping.
    Pong(Bytes),
    Close,
}

enum ConnCmd {
    Write(Bytes),
    Close { abort: bool },
}

enum UdpCmd {
    Send(TargetAddr, Bytes),
}

/// A link's writer task and, on a plain TCP link, writes made on the spot.
///
/// As for local sockets (see `TryWrite`), a small frame is written from `dispatch` while the
/// writer task has nothing queued: handing each to the task costs a wake-up, and on a round
/// trip through the tunnel that is one per side. Every write to the link, on the spot or by
/// the task, is decided under the machine's lock and the task counts down `queued` under it
/// too, so frames never interleave. Large frames always go to the task, which then writes
/// while the reader of the local socket goes on reading: two cores at work on a bulk stream.
pub struct LinkHandle {
    tx: async_channel::Sender<LinkCmd>,
    gate: Arc<Gate>,
    /// Fired when the link is done for: its reader stops waiting for the peer.
    closed: Arc<Signal>,
    /// Commands handed to the writer task and not yet written out.
    queued: Arc<AtomicUsize>,
    direct: Option<DirectLink>,
}

/// Writing frames on the spot: the socket's non-blocking vectored write, and a framer of its
/// own (the writer task masks with another generator; mask keys need only vary).
struct DirectLink {
    write: TryWriteVectored,
    framer: crate::ws::Framer,
}

type TryWriteVectored =
    Box<dyn Fn(&[std::io::IoSlice<'_>]) -> std::io::Result<usize> + Send + Sync>;

/// Largest frame written on the spot.
const DIRECT_FRAME_MAX: usize = 16 << 10;
/// Most frames, and bytes, in one write on the spot (an iovec pair each).
const DIRECT_BATCH_FRAMES: usize = 64;
const DIRECT_BATCH_BYTES: usize = 64 << 10;

impl LinkHandle {
    /// Write `cmd` now if it can go out whole at once, else hand it (or its rest) to the writer
    /// task. A frame written whole is added to `sent`, for the caller to report.
    fn send(&mut self, link: LinkId, cmd: LinkCmd, sent: &mut Vec<(LinkId, usize)>) {
        use crate::ws::Outgoing;
        let msg = match cmd {
            LinkCmd::Frame(f) if f.len() <= DIRECT_FRAME_MAX => Outgoing::Binary(f),
            LinkCmd::Ping => Outgoing::Ping,
            LinkCmd::Pong(p) => Outgoing::Pong(p),
            other => return self.queue(other),
        };
        self.write_on_the_spot(link, vec![msg], sent);
    }

    /// Frames for the link, in order: those that fit go out in one vectored write.
    fn send_frames(&mut self, link: LinkId, frames: Vec<Bytes>, sent: &mut Vec<(LinkId, usize)>) {
        use crate::ws::Outgoing;
        let mut group = Vec::new();
        let mut group_len = 0;
        for f in frames {
            if f.len() > DIRECT_FRAME_MAX {
                self.write_on_the_spot(link, std::mem::take(&mut group), sent);
                group_len = 0;
                self.queue(LinkCmd::Frame(f));
                continue;
            }
            if group.len() == DIRECT_BATCH_FRAMES || group_len + f.len() > DIRECT_BATCH_BYTES {
                self.write_on_the_spot(link, std::mem::take(&mut group), sent);
                group_len = 0;
            }
            group_len += f.len();
            group.push(Outgoing::Binary(f));
        }
        self.write_on_the_spot(link, group, sent);
    }

    /// Write `msgs` with one non-blocking vectored write while the writer task has nothing
    /// queued (else queue them behind); what the socket did not take goes to the task.
    fn write_on_the_spot(
        &mut self,
        link: LinkId,
        msgs: Vec<crate::ws::Outgoing>,
        sent: &mut Vec<(LinkId, usize)>,
    ) {
        use crate::ws::Outgoing;
        let frame_len = |m: &Outgoing| match m {
            Outgoing::Binary(f) => f.len(),
            _ => 0,
        };
        let d = match (self.queued.load(Ordering::SeqCst), self.direct.as_mut()) {
            (0, Some(d)) if !msgs.is_empty() => d,
            _ => {
                for m in msgs {
                    self.queue(match m {
                        Outgoing::Binary(f) => LinkCmd::Frame(f),
                        Outgoing::Ping => LinkCmd::Ping,
                        Outgoing::Pong(p) => LinkCmd::Pong(p),
                        Outgoing::Close => LinkCmd::Close,
                    });
                }
                return;
            }
        };
        // Header and payload of each message, and the frame bytes each counts as sent.
        let mut segments = Vec::with_capacity(2 * msgs.len());
        let mut lens = Vec::with_capacity(msgs.len());
        for m in msgs {
            lens.push(frame_len(&m));
            let (header, payload) = d.framer.encode(m);
            segments.push(header);
            segments.push(payload);
        }
        let iov: Vec<std::io::IoSlice<'_>> =
            segments.iter().map(|b| std::io::IoSlice::new(b)).collect();
        // An error is left for the writer task to meet and report.
        let mut n = (d.write)(&iov).unwrap_or(0);
        drop(iov);
        let mut whole = 0;
        let mut done = 0;
        for (pair, len) in segments.chunks_mut(2).zip(&lens) {
            let size = pair[0].len() + pair[1].len();
            if n < size {
                let h = n.min(pair[0].len());
                pair[0].advance(h);
                pair[1].advance(n - h);
                break;
            }
            n -= size;
            whole += len;
            done += 1;
        }
        if whole > 0 {
            sent.push((link, whole));
        }
        if done == lens.len() {
            return;
        }
        self.queue(LinkCmd::Rest {
            bytes: segments.split_off(2 * done),
            sent: lens[done..].iter().sum(),
        });
    }

    /// Hand `cmd` to the writer task.
    fn queue(&mut self, cmd: LinkCmd) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.try_send(cmd);
    }
}

struct ConnHandle {
    tx: async_channel::Sender<ConnCmd>,
    gate: Arc<Gate>,
    /// Fired to reset the socket at once, even while a write to it is blocked.
    kill: Arc<Signal>,
    /// Writes handed to the writer task and not yet carried out (see [`TryWrite`]).
    queued: Arc<AtomicUsize>,
    /// Writes made on the spot, once connected.
    try_write: Option<TryWrite>,
}

/// A non-blocking write of a local socket, made on the spot from `dispatch` while its writer
/// task has nothing queued: most writes (a SOCKS reply, a request, a response) fit in the
/// socket's buffer at once, and handing each to a task costs a wake-up on every hop of every
/// round trip. What does not fit goes to the task, and so does everything after it until the
/// task has caught up (its `queued` count is back to zero), so bytes keep their order.
type TryWrite = Box<dyn Fn(&[u8]) -> std::io::Result<usize> + Send + Sync>;
/// The same for datagrams.
type TrySend = Box<dyn Fn(&[u8], SocketAddr) -> std::io::Result<usize> + Send + Sync>;

struct UdpHandle {
    tx: async_channel::Sender<UdpCmd>,
    /// Datagrams handed to the sender task and not yet sent (see [`TryWrite`]).
    queued: Arc<AtomicUsize>,
    /// Datagrams sent on the spot, once bound.
    try_send: Option<TrySend>,
    closed: Arc<Event>,
    alive: Arc<AtomicBool>,
}

struct ListenerHandle {
    closed: Arc<Event>,
    alive: Arc<AtomicBool>,
}

/// Writes made from `dispatch`, to be reported to the machine as the writer tasks' are.
#[derive(Default)]
struct WrittenOnTheSpot {
    conns: Vec<(ConnId, usize)>,
    links: Vec<(LinkId, usize)>,
}

/// What the driver needs to know of a role beyond the common machine inputs.
pub trait Role: Send + 'static {
    type M: Machine + Send + 'static;
    /// Carry out `OpenLink` (client role); the server never asks for it.
    fn open_link(driver: &Arc<Driver<Self>>, link: LinkId, url: String)
    where
        Self: Sized;
    /// Stop the machine (graceful shutdown).
    fn close(machine: &mut Self::M, now: Instant);
}

/// A running task counted in `.0`: uncounted (and `.1` signalled at zero) when it ends, by
/// whichever path.
struct CountedTask<'a>(&'a AtomicUsize, &'a Event);

impl Drop for CountedTask<'_> {
    fn drop(&mut self) {
        if self.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.1.notify(usize::MAX);
        }
    }
}

pub struct State<M> {
    pub machine: M,
    pub links: HashMap<LinkId, LinkHandle>,
    conns: HashMap<ConnId, ConnHandle>,
    udps: HashMap<UdpId, UdpHandle>,
    listeners: HashMap<ListenerId, ListenerHandle>,
    /// The deadline the timer task sleeps toward.
    timer_target: Option<Instant>,
    /// Why the machine stopped on its own.
    pub fatal: Option<Fatal>,
    /// Client: the client's SOCKS5 listener, once bound.
    pub socks_addr: Option<SocketAddr>,
    /// Client: the connector token registered at start (autonomy).
    pub connector_token: Option<String>,
    /// The peer's last Partners count.
    pub partners: i64,
    /// Answers to connector requests of the handle, until it collects them.
    pub connector_answers: HashMap<ChannelId, ConnectorOutcome>,
    /// Client: why the last attempt to open a link failed (more telling than the machine's
    /// text when the client gives up).
    pub last_link_error: Option<crate::Error>,
}

pub struct Driver<P: Role> {
    pub rt: Rt,
    origin: StdInstant,
    state: Mutex<State<P::M>>,
    timer_wake: async_channel::Sender<()>,
    timer_rx: async_channel::Receiver<()>,
    events: Option<async_channel::Sender<UserEvent>>,
    /// Signalled when the machine reports a fatal error, and whenever the handle's view of the
    /// state changes (a link up or down, the SOCKS5 listener bound, a connector answer).
    pub fatal_event: Event,
    /// Signalled when a listener has been opened, or failed to open.
    pub listener_settled: Event,
    /// Link writer tasks still running (graceful shutdown waits for them).
    live_links: AtomicUsize,
    links_done: Event,
    /// Listener tasks still holding their socket: graceful shutdown waits for them too, so
    /// that the port is free once `run_server`/`run_client` returns (a restart can bind it).
    live_listeners: AtomicUsize,
    listeners_done: Event,
    pub max_message_size: usize,
    /// Dial targets through this proxy.
    pub upstream: Option<crate::ProxyUrl>,
    /// Client: how links are opened.
    pub link: LinkSettings,
}

/// How a client opens its links.
#[derive(Clone, Default)]
pub struct LinkSettings {
    pub tls: Option<futures_rustls::TlsConnector>,
    pub proxy: Option<crate::ProxyUrl>,
    /// Take the proxy from these HTTP(S)_PROXY / ALL_PROXY / NO_PROXY values when none is
    /// given.
    pub env_proxy: Option<crate::ProxyEnv>,
}

impl<P: Role> Driver<P> {
    pub fn new(
        rt: Rt,
        origin: StdInstant,
        machine: P::M,
        events: Option<async_channel::Sender<UserEvent>>,
        max_message_size: usize,
        upstream: Option<crate::ProxyUrl>,
        link: LinkSettings,
    ) -> Arc<Self> {
        let (timer_wake, timer_rx) = async_channel::bounded(1);
        Arc::new(Driver {
            rt,
            origin,
            state: Mutex::new(State {
                machine,
                links: HashMap::new(),
                conns: HashMap::new(),
                udps: HashMap::new(),
                listeners: HashMap::new(),
                timer_target: None,
                fatal: None,
                socks_addr: None,
                connector_token: None,
                partners: 0,
                connector_answers: HashMap::new(),
                last_link_error: None,
            }),
            timer_wake,
            timer_rx,
            events,
            fatal_event: Event::new(),
            listener_settled: Event::new(),
            live_links: AtomicUsize::new(0),
            links_done: Event::new(),
            live_listeners: AtomicUsize::new(0),
            listeners_done: Event::new(),
            max_message_size,
            upstream,
            link,
        })
    }

    pub fn now(&self) -> Instant {
        Instant::from_duration(self.origin.elapsed())
    }

    fn to_std(&self, t: Instant) -> StdInstant {
        self.origin + t.since_origin()
    }

    pub fn lock(&self) -> MutexGuard<'_, State<P::M>> {
        // A panic while holding the lock is a bug that already aborted a task; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn report(&self, e: UserEvent) {
        if let Some(tx) = &self.events {
            // Bounded: when nobody reads the events, the oldest make way for the newest.
            let _ = tx.force_send(e);
        }
    }

    /// Call `f` on the machine, then carry out everything it asked for.
    pub fn with<T>(self: &Arc<Self>, f: impl FnOnce(&mut P::M, Instant) -> T) -> T {
        let mut st = self.lock();
        let now = self.now();
        let out = f(&mut st.machine, now);
        self.dispatch(&mut st);
        out
    }

    /// Carry out the machine's outputs. Called with the lock held; nothing here blocks.
    pub fn dispatch(self: &Arc<Self>, st: &mut State<P::M>) {
        let mut done = WrittenOnTheSpot::default();
        loop {
            self.dispatch_outputs(st, &mut done);
            if done.conns.is_empty() && done.links.is_empty() {
                break;
            }
            // Writes made on the spot are reported like the writer tasks', which may free
            // room and so bring more outputs.
            let now = self.now();
            for (conn, n) in done.conns.drain(..) {
                st.machine.handle_conn_written(now, conn, n);
            }
            for (link, n) in done.links.drain(..) {
                st.machine.handle_link_sent(now, link, n);
            }
        }
        if let Some(next) = st.machine.poll_timeout() {
            if st.timer_target.is_none_or(|t| next < t) {
                st.timer_target = Some(next);
                let _ = self.timer_wake.try_send(());
            }
        }
    }

    fn dispatch_outputs(self: &Arc<Self>, st: &mut State<P::M>, done: &mut WrittenOnTheSpot) {
        // Frames in a row for one link go out in one write (a Data and the end after it, an
        // answer that waited for company).
        let mut frames: Option<(LinkId, Vec<Bytes>)> = None;
        let flush = |st: &mut State<P::M>,
                     frames: &mut Option<(LinkId, Vec<Bytes>)>,
                     done: &mut WrittenOnTheSpot| {
            if let Some((link, list)) = frames.take() {
                if let Some(h) = st.links.get_mut(&link) {
                    h.send_frames(link, list, &mut done.links);
                }
            }
        };
        while let Some(o) = st.machine.poll_output() {
            if let Output::Transmit { link, frame } = o {
                match &mut frames {
                    Some((l, list)) if *l == link => list.push(frame),
                    _ => {
                        flush(st, &mut frames, done);
                        frames = Some((link, vec![frame]));
                    }
                }
                continue;
            }
            flush(st, &mut frames, done);
            match o {
                Output::OpenLink { link, url } => P::open_link(self, link, url),
                Output::Transmit { .. } => {} // taken above
                Output::Ping { link } => {
                    if let Some(h) = st.links.get_mut(&link) {
                        h.send(link, LinkCmd::Ping, &mut done.links);
                    }
                }
                Output::CloseLink { link } => {
                    if let Some(h) = st.links.get_mut(&link) {
                        h.send(link, LinkCmd::Close, &mut done.links);
                        // Nothing may be written on the spot after the close frame (a pong
                        // answered meanwhile would land behind or inside it).
                        h.direct = None;
                        h.gate.resume();
                    }
                }
                Output::PauseLink { link } => {
                    if let Some(h) = st.links.get(&link) {
                        h.gate.pause();
                    }
                }
                Output::ResumeLink { link } => {
                    if let Some(h) = st.links.get(&link) {
                        h.gate.resume();
                    }
                }
                Output::Listen {
                    listener,
                    host,
                    port,
                } => self.listen(st, listener, host, port),
                Output::Unlisten { listener } => {
                    if let Some(h) = st.listeners.remove(&listener) {
                        h.alive.store(false, Ordering::SeqCst);
                        h.closed.notify(usize::MAX);
                    }
                }
                Output::Dial {
                    conn,
                    link,
                    target,
                    timeout,
                    rules,
                } => self.dial(st, conn, link, target, timeout, rules),
                Output::Resolve {
                    conn,
                    host,
                    timeout,
                } => self.resolve(conn, host, timeout),
                Output::Write { conn, mut data } => {
                    if let Some(h) = st.conns.get(&conn) {
                        let idle = h.queued.load(Ordering::SeqCst) == 0;
                        if let (true, Some(w)) = (idle, &h.try_write) {
                            // An error is left for the writer task to meet and report.
                            if let Ok(n) = w(&data) {
                                done.conns.push((conn, n));
                                data.advance(n);
                            }
                        }
                        if !data.is_empty() {
                            h.queued.fetch_add(1, Ordering::SeqCst);
                            let _ = h.tx.try_send(ConnCmd::Write(data));
                        }
                    }
                }
                Output::PauseRead { conn } => {
                    if let Some(h) = st.conns.get(&conn) {
                        h.gate.pause();
                    }
                }
                Output::ResumeRead { conn } => {
                    if let Some(h) = st.conns.get(&conn) {
                        h.gate.resume();
                    }
                }
                Output::Close { conn, abort } => {
                    if let Some(h) = st.conns.remove(&conn) {
                        let _ = h.tx.try_send(ConnCmd::Close { abort });
                        if abort {
                            h.kill.fire();
                        }
                        h.gate.resume();
                    }
                }
                Output::BindUdp { udp, addr } => self.bind_udp(st, udp, addr),
                Output::SendUdp { udp, to, data } => {
                    if let Some(h) = st.udps.get(&udp) {
                        let idle = h.queued.load(Ordering::SeqCst) == 0;
                        if let (true, Some(send), TargetAddr::Ip(a)) = (idle, &h.try_send, &to) {
                            if send(&data, *a).is_ok() {
                                continue;
                            }
                        }
                        if h.tx.try_send(UdpCmd::Send(to, data)).is_ok() {
                            h.queued.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                Output::CloseUdp { udp } => {
                    if let Some(h) = st.udps.remove(&udp) {
                        h.alive.store(false, Ordering::SeqCst);
                        h.closed.notify(usize::MAX);
                    }
                }
                Output::Event(e) => self.event(st, e),
            }
        }
        flush(st, &mut frames, done);
    }

    fn event(&self, st: &mut State<P::M>, e: MachineEvent) {
        match e {
            MachineEvent::LinkReady { link } => {
                debug!(%link, "link ready");
                self.report(UserEvent::LinkUp);
                self.fatal_event.notify(usize::MAX);
            }
            MachineEvent::LinkLost { link, reason } => {
                debug!(%link, "authenticated link lost: {reason}");
                self.report(UserEvent::LinkDown { reason });
                self.fatal_event.notify(usize::MAX);
            }
            MachineEvent::AuthRefused { reason, .. } => {
                self.report(UserEvent::AuthRefused { reason });
            }
            MachineEvent::Listening { addr, .. } => {
                info!("SOCKS5 listening on {addr}");
                st.socks_addr.get_or_insert(addr);
                self.report(UserEvent::SocksListening(addr));
                self.fatal_event.notify(usize::MAX);
            }
            MachineEvent::PeerLog { level, msg } => match level.as_str() {
                "error" => error!(target: "linksocks::peer", "{msg}"),
                "warn" => warn!(target: "linksocks::peer", "{msg}"),
                "info" => info!(target: "linksocks::peer", "{msg}"),
                _ => debug!(target: "linksocks::peer", "{msg}"),
            },
            MachineEvent::Partners { count } => {
                info!("partners: {count}");
                st.partners = count;
                self.report(UserEvent::Partners(count));
            }
            MachineEvent::ConnectorToken { token } => {
                info!("connector token registered: {token}");
                st.connector_token = Some(token.clone());
                self.report(UserEvent::ConnectorToken(token));
                self.fatal_event.notify(usize::MAX);
            }
            MachineEvent::ConnectorAnswer { request, outcome } => {
                st.connector_answers.insert(request, outcome);
                self.fatal_event.notify(usize::MAX);
            }
            MachineEvent::Fatal { reason } => {
                st.fatal.get_or_insert(reason);
                self.fatal_event.notify(usize::MAX);
            }
        }
    }

    /// The timer task: sleep until the machine's next deadline (or until told it moved).
    pub async fn run_timers(self: Arc<Self>, stop: crate::Stop) {
        loop {
            let target = {
                let mut st = self.lock();
                let t = st.machine.poll_timeout();
                st.timer_target = t;
                t
            };
            let wake = self.timer_rx.recv();
            match target {
                Some(t) => {
                    let sleep = self.rt.sleep_until(self.to_std(t));
                    futures_lite::future::or(sleep, async {
                        let _ = wake.await;
                    })
                    .await;
                }
                None => {
                    let _ = futures_lite::future::or(async { wake.await.ok() }, async {
                        stop.wait().await;
                        None
                    })
                    .await;
                }
            }
            if stop.is_stopped() && self.live_links.load(Ordering::SeqCst) == 0 {
                return;
            }
            let mut st = self.lock();
            let now = self.now();
            if st.machine.poll_timeout().is_some_and(|t| t <= now) {
                st.machine.handle_timeout(now);
            }
            // The next turn reads the deadline afresh: a wake-up queued meanwhile (including
            // by this dispatch) has nothing more to say.
            st.timer_target = Some(now);
            self.dispatch(&mut st);
            drop(st);
            while self.timer_rx.try_recv().is_ok() {}
        }
    }

    /// Graceful stop: the machine ends its channels and links; wait (bounded) for the links'
    /// writers to flush what they were given and for the listeners to let their ports go.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        {
            let mut st = self.lock();
            let now = self.now();
            P::close(&mut st.machine, now);
            self.dispatch(&mut st);
        }
        let deadline = StdInstant::now() + grace;
        self.wait_none_left(&self.live_links, &self.links_done, deadline)
            .await;
        self.wait_none_left(&self.live_listeners, &self.listeners_done, deadline)
            .await;
    }

    /// Waits until `count` is zero (`done` is signalled when it gets there), or `deadline`.
    async fn wait_none_left(&self, count: &AtomicUsize, done: &Event, deadline: StdInstant) {
        loop {
            let l = done.listen();
            if count.load(Ordering::SeqCst) == 0 {
                return;
            }
            let sleep = self.rt.sleep_until(deadline);
            let timed_out = futures_lite::future::or(
                async {
                    l.await;
                    false
                },
                async {
                    sleep.await;
                    true
                },
            )
            .await;
            if timed_out {
                return;
            }
        }
    }

    // ------------------------------------------------------------------ links

    /// Register a link's socket, its WebSocket handshake done (`leftover`: bytes read past
    /// it), and start its reader and writer.
    pub fn attach_link(
        self: &Arc<Self>,
        st: &mut State<P::M>,
        link: LinkId,
        stream: crate::tls::MaybeTls<TcpStream>,
        side: crate::ws::Side,
        leftover: Bytes,
    ) {
        let (tx, rx) = async_channel::unbounded();
        let gate = Arc::new(Gate::default());
        let closed = Arc::new(Signal::default());
        let queued = Arc::new(AtomicUsize::new(0));
        // Through TLS a write is a record to seal, which only the stream's owner can do.
        let direct = match &stream {
            crate::tls::MaybeTls::Plain(tcp) => {
                let s = tcp.clone();
                Some(DirectLink {
                    write: Box::new(move |bufs| s.try_write_vectored(bufs)),
                    framer: crate::ws::Framer::new(side, uuid::Uuid::new_v4().as_u64_pair().1),
                })
            }
            _ => None,
        };
        st.links.insert(
            link,
            LinkHandle {
                tx,
                gate: gate.clone(),
                closed: closed.clone(),
                queued: queued.clone(),
                direct,
            },
        );
        self.live_links.fetch_add(1, Ordering::SeqCst);
        let (read_half, write_half) = crate::ws::split(stream);
        let sender = crate::ws::FrameWriter::new(
            write_half,
            side,
            // Mask keys need not be secret, only vary; the OS generator, as for ids.
            uuid::Uuid::new_v4().as_u64_pair().0,
        );
        let receiver =
            crate::ws::FrameReader::new(read_half, side, self.max_message_size, leftover);
        // The link's tasks log in the span of whoever attached it (the server's names the peer).
        let span = tracing::Span::current();
        let me = self.clone();
        let c = closed.clone();
        let writer = async move {
            crate::link::write_loop(&me, link, sender, rx, queued, c).await;
            if me.live_links.fetch_sub(1, Ordering::SeqCst) == 1 {
                me.links_done.notify(usize::MAX);
            }
        };
        self.rt
            .spawn(tracing::Instrument::instrument(writer, span.clone()));
        let me = self.clone();
        let reader = async move {
            crate::link::read_loop(&me, link, receiver, gate, closed).await;
        };
        self.rt.spawn(tracing::Instrument::instrument(reader, span));
    }

    /// The peer pinged: answer, in turn with the frames `dispatch` writes (see [`LinkHandle`]).
    pub fn answer_ping(self: &Arc<Self>, link: LinkId, data: Bytes) {
        let mut st = self.lock();
        let mut done = Vec::new();
        if let Some(h) = st.links.get_mut(&link) {
            h.send(link, LinkCmd::Pong(data), &mut done);
        }
        // A ping from the peer proves it alive as a pong to ours does.
        let now = self.now();
        st.machine.handle_link_pong(now, link);
        self.dispatch(&mut st);
    }

    /// A link ended (read error, close, write error): tell the machine once.
    pub fn link_lost(self: &Arc<Self>, link: LinkId, reason: &str) {
        let mut st = self.lock();
        if let Some(h) = st.links.remove(&link) {
            let _ = h.tx.try_send(LinkCmd::Close);
            // Both tasks stop, whether the reader is paused or the writer is stuck: the
            // socket closes when they have let go of it.
            h.closed.fire();
            h.gate.resume();
            let now = self.now();
            st.machine.handle_link_closed(now, link, reason);
            self.dispatch(&mut st);
        }
    }

    // ------------------------------------------------------------------ listeners

    fn listen(
        self: &Arc<Self>,
        st: &mut State<P::M>,
        listener: ListenerId,
        host: String,
        port: u16,
    ) {
        let closed = Arc::new(Event::new());
        let alive = Arc::new(AtomicBool::new(true));
        st.listeners.insert(
            listener,
            ListenerHandle {
                closed: closed.clone(),
                alive: alive.clone(),
            },
        );
        self.live_listeners.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        self.rt.spawn(async move {
            // Declared before the socket, so dropped after it: the port is free when counted out.
            let _live = CountedTask(&me.live_listeners, &me.listeners_done);
            let bound = match me.rt.resolve(host.clone(), port).await {
                Ok(addrs) if !addrs.is_empty() => me.rt.listen(addrs[0]).await,
                Ok(_) => Err(std::io::Error::other(format!("{host}: no address"))),
                Err(e) => Err(e),
            };
            let l = match bound {
                Ok(l) => l,
                Err(e) => {
                    me.with(|m, now| m.handle_listener_bound(now, listener, Err(e.into())));
                    me.listener_settled.notify(usize::MAX);
                    return;
                }
            };
            let addr = l.local_addr().map_err(IoFailure::from);
            me.with(|m, now| m.handle_listener_bound(now, listener, addr));
            me.listener_settled.notify(usize::MAX);
            loop {
                if !alive.load(Ordering::SeqCst) {
                    return;
                }
                let closed_l = closed.listen();
                if !alive.load(Ordering::SeqCst) {
                    return;
                }
                let accepted = futures_lite::future::or(async { Some(l.accept().await) }, async {
                    closed_l.await;
                    None
                })
                .await;
                match accepted {
                    None => return,
                    Some(Ok((stream, peer))) => {
                        let _ = stream.set_nodelay();
                        let local = stream.local_addr().unwrap_or(peer);
                        let mut st = me.lock();
                        let now = me.now();
                        let conn = st.machine.handle_accept(now, listener, peer, local);
                        me.attach_conn(&mut st, conn, stream);
                        me.dispatch(&mut st);
                    }
                    Some(Err(e)) => {
                        // EMFILE and friends: don't spin.
                        warn!("accept failed: {e}");
                        me.rt
                            .sleep_until(StdInstant::now() + Duration::from_millis(50))
                            .await;
                    }
                }
            }
        });
    }

    // ------------------------------------------------------------------ local TCP sockets

    /// Register a connected local socket and start its reader and writer.
    fn attach_conn(self: &Arc<Self>, st: &mut State<P::M>, conn: ConnId, stream: TcpStream) {
        let (tx, rx) = async_channel::unbounded();
        let gate = Arc::new(Gate::default());
        let kill = Arc::new(Signal::default());
        let queued = Arc::new(AtomicUsize::new(0));
        st.conns.insert(
            conn,
            ConnHandle {
                tx,
                gate: gate.clone(),
                kill: kill.clone(),
                queued: queued.clone(),
                try_write: Some(Self::try_write_of(&stream)),
            },
        );
        self.start_conn(conn, stream, rx, gate, kill, queued);
    }

    fn try_write_of(stream: &TcpStream) -> TryWrite {
        let s = stream.clone();
        Box::new(move |buf| s.try_write(buf))
    }

    fn start_conn(
        self: &Arc<Self>,
        conn: ConnId,
        stream: TcpStream,
        rx: async_channel::Receiver<ConnCmd>,
        gate: Arc<Gate>,
        kill: Arc<Signal>,
        queued: Arc<AtomicUsize>,
    ) {
        let reader = stream.clone();
        let me = self.clone();
        self.rt
            .spawn(async move { me.conn_writer(conn, stream, rx, kill, queued).await });
        let me = self.clone();
        self.rt
            .spawn(async move { me.conn_reader(conn, reader, gate).await });
    }

    async fn conn_reader(self: Arc<Self>, conn: ConnId, mut s: TcpStream, gate: Arc<Gate>) {
        // Reads land behind room for a Data header, so the machine can frame them in place.
        const ROOM: usize = linksocks_core::wire::DATA_HEADER_LEN;
        let mut size = READ_MIN;
        let mut bufs = ReadBuffers::new();
        loop {
            gate.wait().await;
            let r = if bufs.worth_releasing() {
                // Chunks kept for a busy socket go back once it falls quiet.
                let quiet = self.rt.sleep_until(StdInstant::now() + READ_QUIET);
                match futures_lite::future::or(
                    async { Some(s.read(&mut bufs.prepare(ROOM + size)[ROOM..]).await) },
                    async {
                        quiet.await;
                        None
                    },
                )
                .await
                {
                    Some(r) => r,
                    None => {
                        // Nothing was read: the read future gave up nothing when dropped.
                        bufs.take(0);
                        bufs.release_idle();
                        size = READ_MIN;
                        s.read(&mut bufs.prepare(ROOM + size)[ROOM..]).await
                    }
                }
            } else {
                s.read(&mut bufs.prepare(ROOM + size)[ROOM..]).await
            };
            match r {
                Ok(0) => {
                    self.with(|m, now| m.handle_conn_closed(now, conn, None));
                    return;
                }
                Ok(n) => {
                    let data = bufs.take(ROOM + n);
                    size = if n == size {
                        (size * 2).min(READ_MAX)
                    } else if n < size / 8 {
                        (size / 2).max(READ_MIN)
                    } else {
                        size
                    };
                    self.with(|m, now| m.handle_conn_read(now, conn, data));
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.with(|m, now| m.handle_conn_closed(now, conn, Some(&msg)));
                    return;
                }
            }
        }
    }

    async fn conn_writer(
        self: Arc<Self>,
        conn: ConnId,
        mut s: TcpStream,
        rx: async_channel::Receiver<ConnCmd>,
        kill: Arc<Signal>,
        queued: Arc<AtomicUsize>,
    ) {
        // Killed (an aborted channel): even a write blocked on a peer that does not read is
        // abandoned, and the socket is reset rather than ended.
        let reset = |s: &TcpStream| {
            s.set_linger_zero();
            // Wakes the reader (its read returns 0) without sending a FIN; the descriptor
            // closes when the reader lets go, with linger 0: a reset.
            s.shutdown(std::net::Shutdown::Read);
        };
        loop {
            let cmd = futures_lite::future::or(async { rx.recv().await.ok() }, async {
                kill.wait().await;
                None
            })
            .await;
            match cmd {
                Some(ConnCmd::Write(data)) => {
                    let n = data.len();
                    let wrote =
                        futures_lite::future::or(async { Some(s.write_all(&data).await) }, async {
                            kill.wait().await;
                            None
                        })
                        .await;
                    match wrote {
                        None => {
                            reset(&s);
                            return;
                        }
                        Some(Err(e)) => {
                            let msg = e.to_string();
                            self.with(|m, now| m.handle_conn_closed(now, conn, Some(&msg)));
                            s.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        Some(Ok(())) => {
                            // Counted down under the lock, so that `dispatch` cannot write on
                            // the spot between this write and its report.
                            self.with(|m, now| {
                                queued.fetch_sub(1, Ordering::SeqCst);
                                m.handle_conn_written(now, conn, n)
                            })
                        }
                    }
                }
                Some(ConnCmd::Close { abort: true }) => {
                    reset(&s);
                    return;
                }
                Some(ConnCmd::Close { abort: false }) => {
                    let _ = s.flush().await;
                    s.shutdown(std::net::Shutdown::Both);
                    return;
                }
                None if kill.is_fired() => {
                    reset(&s);
                    return;
                }
                None => {
                    // The machine forgot the socket without a Close (it ended meanwhile).
                    s.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }

    /// Carry out [`Output::Dial`]: connect to `target` (through the upstream proxy, if any)
    /// within `timeout`; with access `rules`, only to the addresses of the name that they all
    /// allow (`connect::connect_allowed`).
    /// Resolve a request's name for its entry-side access check; a failure or a lookup past
    /// `timeout` is reported as no address (which denies).
    fn resolve(self: &Arc<Self>, conn: ConnId, host: String, timeout: Duration) {
        let me = self.clone();
        self.rt.spawn(async move {
            let sleep = me.rt.sleep_until(StdInstant::now() + timeout);
            let lookup = me.rt.resolve(host.clone(), 0);
            let addrs = futures_lite::future::or(async { lookup.await.ok() }, async {
                sleep.await;
                None
            })
            .await;
            let ips: Vec<IpAddr> = addrs
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.ip())
                .collect();
            if ips.is_empty() {
                debug!(%conn, %host, "the name does not resolve: the entry rules deny it");
            }
            me.with(|m, now| m.handle_resolved(now, conn, ips));
        });
    }

    fn dial(
        self: &Arc<Self>,
        st: &mut State<P::M>,
        conn: ConnId,
        link: LinkId,
        target: TargetAddr,
        timeout: Duration,
        rules: Vec<Arc<linksocks_core::access::AccessRules>>,
    ) {
        let (tx, rx) = async_channel::unbounded();
        let gate = Arc::new(Gate::default());
        let kill = Arc::new(Signal::default());
        let queued = Arc::new(AtomicUsize::new(0));
        st.conns.insert(
            conn,
            ConnHandle {
                tx: tx.clone(),
                gate: gate.clone(),
                kill: kill.clone(),
                queued: queued.clone(),
                try_write: None,
            },
        );
        // Reported when this side is about to dial: at once without rules, once they passed
        // with them (a denied destination is never "dialled").
        let dialing = {
            let me = self.clone();
            let target = target.to_string();
            move || {
                if me.events.is_some() {
                    me.report(UserEvent::Dialing(target));
                }
            }
        };
        let me = self.clone();
        self.rt.spawn(async move {
            let sleep = me.rt.sleep_until(StdInstant::now() + timeout);
            let attempt = async {
                if !rules.is_empty() {
                    let upstream = me.upstream.as_ref();
                    return crate::connect::connect_allowed(
                        &me.rt, upstream, link, &target, &rules, dialing,
                    )
                    .await;
                }
                dialing();
                match &me.upstream {
                    Some(p) => crate::proxy::connect_via(&me.rt, p, &target).await,
                    None => crate::connect::connect_target(&me.rt, &target)
                        .await
                        .map(|s| (s, Bytes::new())),
                }
            };
            let result = futures_lite::future::or(attempt, async {
                sleep.await;
                Err(format!("dial tcp {target}: i/o timeout"))
            })
            .await;
            match result {
                Ok((stream, early)) => {
                    if tx.is_closed() {
                        // The channel ended while we dialled.
                        stream.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    let _ = stream.set_nodelay();
                    {
                        let mut st = me.lock();
                        if let Some(h) = st.conns.get_mut(&conn) {
                            h.try_write = Some(Self::try_write_of(&stream));
                        }
                        let now = me.now();
                        st.machine.handle_dial_result(now, conn, Ok(()));
                        // Bytes the target sent along with the proxy's answer come first.
                        if !early.is_empty() {
                            st.machine.handle_conn_data(now, conn, early);
                        }
                        me.dispatch(&mut st);
                    }
                    me.start_conn(conn, stream, rx, gate, kill, queued);
                }
                Err(e) => {
                    let mut st = me.lock();
                    st.conns.remove(&conn);
                    let now = me.now();
                    st.machine
                        .handle_dial_result(now, conn, Err(IoFailure::other(e)));
                    me.dispatch(&mut st);
                }
            }
        });
    }

    // ------------------------------------------------------------------ UDP

    fn bind_udp(self: &Arc<Self>, st: &mut State<P::M>, udp: UdpId, addr: Option<SocketAddr>) {
        let (tx, rx) = async_channel::bounded(UDP_QUEUE);
        let closed = Arc::new(Event::new());
        let alive = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(AtomicUsize::new(0));
        st.udps.insert(
            udp,
            UdpHandle {
                tx,
                closed: closed.clone(),
                alive: alive.clone(),
                queued: queued.clone(),
                try_send: None,
            },
        );
        let me = self.clone();
        self.rt.spawn(async move {
            let bound = match addr {
                Some(a) => me.rt.udp_bind(a).await,
                // Dual-stack first, so one socket reaches IPv4 and IPv6 destinations.
                None => match me
                    .rt
                    .udp_bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0))
                    .await
                {
                    Ok(s) => Ok(s),
                    Err(_) => me.rt.udp_bind(SocketAddr::from(([0, 0, 0, 0], 0))).await,
                },
            };
            let sock = match bound {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    me.with(|m, now| m.handle_udp_bound(now, udp, Err(e.into())));
                    return;
                }
            };
            let local = sock.local_addr().map_err(IoFailure::from);
            // Asked once: a `getsockname` per datagram was a syscall on every hop.
            let v6 = matches!(local, Ok(SocketAddr::V6(_)));
            {
                let mut st = me.lock();
                if let Some(h) = st.udps.get_mut(&udp) {
                    let s = sock.clone();
                    h.try_send = Some(Box::new(move |buf, to| {
                        s.try_send_to(buf, fit_family(v6, to))
                    }));
                }
                let now = me.now();
                st.machine.handle_udp_bound(now, udp, local);
                me.dispatch(&mut st);
            }
            let sender = {
                let sock = sock.clone();
                let me = me.clone();
                async move {
                    while let Ok(UdpCmd::Send(to, data)) = rx.recv().await {
                        let to = match to {
                            TargetAddr::Ip(a) => a,
                            TargetAddr::Domain(h, p) => match me.rt.resolve(h, p).await {
                                Ok(a) if !a.is_empty() => a[0],
                                _ => {
                                    // Unresolvable: the datagram is dropped.
                                    queued.fetch_sub(1, Ordering::SeqCst);
                                    continue;
                                }
                            },
                        };
                        let to = fit_family(v6, to);
                        let _ = sock.send_to(&data, to).await;
                        queued.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            };
            me.rt.spawn(sender);
            let mut buf = vec![0u8; UDP_MAX];
            loop {
                if !alive.load(Ordering::SeqCst) {
                    return;
                }
                let closed_l = closed.listen();
                if !alive.load(Ordering::SeqCst) {
                    return;
                }
                let got = futures_lite::future::or(
                    async { Some(sock.recv_from(&mut buf).await) },
                    async {
                        closed_l.await;
                        None
                    },
                )
                .await;
                match got {
                    None => return,
                    Some(Ok((n, from))) => {
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        me.with(|m, now| m.handle_udp_datagram(now, udp, from, data));
                    }
                    Some(Err(e)) => debug!(%udp, "UDP receive error: {e}"),
                }
            }
        });
    }
}

/// A v6 socket (`v6`) sends to v4 destinations through their v4-mapped form.
fn fit_family(v6: bool, to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(v4) if v6 => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{Framer, Side};

    /// A plain link whose socket takes what `take` allows per write; what it took lands in
    /// the returned buffer.
    fn link(
        take: Vec<std::io::Result<usize>>,
    ) -> (
        LinkHandle,
        async_channel::Receiver<LinkCmd>,
        Arc<Mutex<Vec<u8>>>,
    ) {
        let (tx, rx) = async_channel::unbounded();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let take = Mutex::new(take.into_iter());
        let w = wire.clone();
        let write: TryWriteVectored = Box::new(move |bufs| {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = take.lock().unwrap().next().expect("an unplanned write")?;
            let n = n.min(all.len());
            w.lock().unwrap().extend_from_slice(&all[..n]);
            Ok(n)
        });
        let h = LinkHandle {
            tx,
            gate: Arc::new(Gate::default()),
            closed: Arc::new(Signal::default()),
            queued: Arc::new(AtomicUsize::new(0)),
            direct: Some(DirectLink {
                write,
                framer: Framer::new(Side::Server, 1),
            }),
        };
        (h, rx, wire)
    }

    /// What the server side puts on the wire for a binary message (it does not mask).
    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut f = Framer::new(Side::Server, 1);
        let (h, p) = f.encode(crate::ws::Outgoing::Binary(Bytes::copy_from_slice(payload)));
        [&h[..], &p[..]].concat()
    }

    fn rest_bytes(cmd: LinkCmd) -> (Vec<u8>, usize) {
        match cmd {
            LinkCmd::Rest { bytes, sent } => (bytes.concat(), sent),
            _ => panic!("expected the rest of a frame"),
        }
    }

    const L: LinkId = LinkId(7);

    #[test]
    fn a_small_frame_that_fits_is_written_and_reported_at_once() {
        let (mut h, rx, wire) = link(vec![Ok(usize::MAX)]);
        let mut sent = Vec::new();
        h.send(L, LinkCmd::Frame(Bytes::from(vec![5u8; 300])), &mut sent);
        assert_eq!(sent, vec![(L, 300)]);
        assert_eq!(*wire.lock().unwrap(), framed(&[5u8; 300]));
        assert!(rx.try_recv().is_err(), "nothing for the writer task");
        assert_eq!(h.queued.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_partial_write_hands_the_exact_rest_to_the_task_and_later_frames_queue_behind_it() {
        // Splits inside the header and inside the payload.
        for took in [1usize, 2, 3, 4, 150, 303] {
            let (mut h, rx, wire) = link(vec![Ok(took)]);
            let mut sent = Vec::new();
            let payload: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
            h.send(L, LinkCmd::Frame(Bytes::from(payload.clone())), &mut sent);
            assert!(sent.is_empty(), "not reported before it is whole");
            let (rest, n) = rest_bytes(rx.try_recv().expect("the rest"));
            assert_eq!(n, 300, "reported by the task once written");
            let mut whole = wire.lock().unwrap().clone();
            whole.extend_from_slice(&rest);
            assert_eq!(whole, framed(&payload), "split after {took} bytes");
            // The task has not caught up: nothing more is written on the spot, not even a pong.
            h.send(L, LinkCmd::Frame(Bytes::from_static(b"next")), &mut sent);
            h.send(L, LinkCmd::Pong(Bytes::new()), &mut sent);
            assert!(matches!(rx.try_recv(), Ok(LinkCmd::Frame(f)) if &f[..] == b"next"));
            assert!(matches!(rx.try_recv(), Ok(LinkCmd::Pong(_))));
            assert_eq!(h.queued.load(Ordering::SeqCst), 3);
            assert!(sent.is_empty());
        }
    }

    #[test]
    fn a_full_or_failing_socket_hands_the_whole_frame_to_the_task() {
        let would_block = || Err(std::io::ErrorKind::WouldBlock.into());
        let broken = || Err(std::io::ErrorKind::BrokenPipe.into());
        for result in [would_block(), broken(), Ok(0)] {
            let (mut h, rx, wire) = link(vec![result]);
            let mut sent = Vec::new();
            h.send(L, LinkCmd::Frame(Bytes::from_static(b"hello")), &mut sent);
            let (rest, n) = rest_bytes(rx.try_recv().unwrap());
            assert_eq!((rest, n), (framed(b"hello"), 5));
            assert!(wire.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn large_frames_and_close_always_go_to_the_task() {
        let (mut h, rx, wire) = link(vec![]);
        let mut sent = Vec::new();
        let big = Bytes::from(vec![1u8; DIRECT_FRAME_MAX + 1]);
        h.send(L, LinkCmd::Frame(big), &mut sent);
        assert!(matches!(rx.try_recv(), Ok(LinkCmd::Frame(f)) if f.len() == DIRECT_FRAME_MAX + 1));
        let (mut h, rx, _) = link(vec![]);
        h.send(L, LinkCmd::Close, &mut sent);
        assert!(matches!(rx.try_recv(), Ok(LinkCmd::Close)));
        assert!(sent.is_empty() && wire.lock().unwrap().is_empty());
    }
}

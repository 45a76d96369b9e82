//! Structured fuzzing of the session machines: arbitrary sequences of inputs (frames, valid
//! and not, SOCKS bytes, dial and bind results, link events, timer ticks) against a server and
//! a client machine. The machines must never panic, and what they hold (replay logs included)
//! must stay bounded by their configuration however the inputs are ordered.
//!
//! The alphabet reaches the resume paths: links lost with channels open (suspended for the
//! transport grace), new links of the same peer (server: `instance=` and `ext=flow,resume` in
//! the query; client: a reopened link, Hello with the RESUME bit, AuthResponse), resume
//! Connects and ChannelResume with arbitrary counts, for channel ids the machines chose
//! themselves as well as fixed ones, and timers run past the grace.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use linksocks_core::ids::{ChannelId, InstanceId, SeededIds};
use linksocks_core::session::{
    IoFailure,
    ClientConfig, ClientMachine, ClientRole, ConnId, LinkId, ListenerId, Machine, Output,
    ReverseTokenSpec, ServerConfig, ServerMachine, SocksListen, UdpId,
};
use linksocks_core::time::Instant;
use linksocks_core::wire::{self, feature, Auth, Connect, Data, Message, Protocol, UdpTrailer};

#[derive(Arbitrary, Debug)]
enum Frame {
    Raw(Vec<u8>),
    Auth { token: u8, reverse: bool },
    Connect { ch: u8, udp: bool, host: u8, port: u16 },
    /// The reference's resume Connect (trailing non-zero byte).
    ConnectResume { ch: u8, udp: bool, host: u8, port: u16 },
    AuthResponse { ok: bool },
    ConnectResponse { ch: u8, ok: bool },
    Data { ch: u8, udp: bool, len: u16, gzip: bool },
    Disconnect { ch: u8, err: bool },
    Connector { ch: u8, token: u8, add: bool },
    Partners(i64),
    Hello(u32, u32),
    Ack { ch: u8, bytes: u32 },
    NoWindow(u8),
    ChannelResume { ch: u8, received: u64, written: u64 },
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Server: a link accepted with a query built from these (token, extensions, flow window,
    /// client instance). Client: nothing.
    Accept { query: u8, ext: u8, window: Option<u32>, instance: u8 },
    /// Client: link `link` opened, then Hello (CHANNEL_FLOW, RESUME if `resume`, plus `extra`
    /// bits) unless `hello` is false, then AuthResponse `ok`: a reconnect in one op. Server: a
    /// link of client instance 1 with `ext=flow,resume` authenticated by its query (forward
    /// or reverse token by `link`).
    Reconnect { link: u8, hello: bool, resume: bool, extra: u32, window: u32, ok: bool },
    Opened(u8),
    Message(u8, Frame),
    LinkClosed(u8),
    Sent(u8, u32),
    Pong(u8),
    SocksAccept(u8),
    ConnData(u8, Vec<u8>),
    SocksHandshake { conn: u8, udp: bool, domain: bool },
    ConnClosed(u8, bool),
    Written(u8, u32),
    Dial(u8, bool),
    UdpBound(u8, bool),
    Datagram(u8, Vec<u8>),
    Tick(u16),
    Bigtick(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    client_role: u8,
    ops: Vec<Op>,
}

const TOKENS: [&str; 4] = ["fwd", "rev", "con", "nope"];

/// Channel ids by number: below 0x80 one of four fixed ids (a peer's own choice), else one
/// the machine chose itself (SOCKS channels, relayed channels), if it has any.
fn frame(f: &Frame, known: &[ChannelId]) -> Bytes {
    let chan = |c: u8| match known.len() {
        n if c >= 0x80 && n > 0 => known[(c & 0x7f) as usize % n],
        _ => ChannelId([c % 4; 16]),
    };
    let msg = match f {
        Frame::Raw(b) => return Bytes::copy_from_slice(b),
        Frame::Auth { token, reverse } => Message::Auth(Auth {
            token: TOKENS[*token as usize % 4].into(),
            reverse: *reverse,
            instance: InstanceId([1; 16]),
        }),
        Frame::Connect { ch, udp, host, port } => Message::Connect(Connect {
            protocol: if *udp { Protocol::Udp } else { Protocol::Tcp },
            channel: chan(*ch),
            target: (!*udp).then(|| (["127.0.0.1", "::1", "localhost", ""][*host as usize % 4].to_string(), *port)),
        }),
        Frame::ConnectResume { ch, udp, host, port } => Message::ConnectResume(Connect {
            protocol: if *udp { Protocol::Udp } else { Protocol::Tcp },
            channel: chan(*ch),
            target: (!*udp).then(|| (["127.0.0.1", "::1", "localhost", ""][*host as usize % 4].to_string(), *port)),
        }),
        Frame::AuthResponse { ok } => Message::AuthResponse {
            success: *ok,
            error: (!*ok).then(|| "invalid token".into()),
        },
        Frame::ConnectResponse { ch, ok } => Message::ConnectResponse {
            success: *ok,
            channel: chan(*ch),
            error: (!*ok).then(|| "refused".into()),
        },
        Frame::Data { ch, udp, len, gzip } => Message::Data(Data {
            protocol: if *udp { Protocol::Udp } else { Protocol::Tcp },
            channel: chan(*ch),
            compression: if *gzip { wire::Compression::Gzip } else { wire::Compression::None },
            payload: Bytes::from(vec![7u8; *len as usize]),
            udp: udp.then(|| UdpTrailer {
                addr: String::new(),
                port: 0,
                target_addr: "127.0.0.1".into(),
                target_port: 53,
            }),
        }),
        Frame::Disconnect { ch, err } => Message::Disconnect {
            channel: chan(*ch),
            error: err.then(|| "reset".into()),
        },
        Frame::Connector { ch, token, add } => Message::Connector {
            channel: chan(*ch),
            token: TOKENS[*token as usize % 4].into(),
            op: if *add { wire::ConnectorOp::Add } else { wire::ConnectorOp::Remove },
        },
        Frame::Partners(n) => Message::Partners { count: *n },
        Frame::Hello(features, window) => Message::Hello { features: *features, window: *window },
        Frame::Ack { ch, bytes } => Message::ChannelAck { channel: chan(*ch), bytes: *bytes },
        Frame::NoWindow(ch) => Message::ChannelNoWindow { channel: chan(*ch) },
        Frame::ChannelResume { ch, received, written } => Message::ChannelResume {
            channel: chan(*ch),
            received: *received,
            written: *written,
        },
    };
    wire::encode::encode_to_bytes(&msg).unwrap_or_default()
}

/// Handles the machine named in its outputs, so ops can refer to them by index.
#[derive(Default)]
struct Seen {
    links: Vec<LinkId>,
    conns: Vec<ConnId>,
    udps: Vec<UdpId>,
    listeners: Vec<ListenerId>,
    /// Channel ids the machine has held, oldest first (capped).
    chans: Vec<ChannelId>,
}

const CHANS_MAX: usize = 128;

impl Seen {
    fn note_channels(&mut self, m: &linksocks_core::session::plane::Plane) {
        for id in m.channel_ids() {
            if self.chans.len() < CHANS_MAX && !self.chans.contains(&id) {
                self.chans.push(id);
            }
        }
    }
}

/// The `i`th handle modulo their number; 0xF0 and above: the newest (a link just reopened).
fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    match v.len() {
        0 => None,
        n if i >= 0xF0 => Some(v[n - 1]),
        n => Some(v[i as usize % n]),
    }
}

/// Client instances: the Auth frame's is instance 1.
const INSTANCES: [&str; 2] = ["01010101-0101-0101-0101-010101010101", "02020202-0202-0202-0202-020202020202"];

fn query(token: u8, ext: u8, window: Option<u32>, instance: u8) -> String {
    let hash = linksocks_core::session::client::token_hash;
    let mut q: Vec<String> = Vec::new();
    match token % 5 {
        0 => {}
        1 => q.push(format!("token={}&reverse=false", hash("fwd"))),
        2 => q.push(format!("token={}&reverse=true", hash("rev"))),
        3 => q.push(format!("token={}", hash("con"))),
        _ => q.push("token=short".into()),
    }
    match ext % 4 {
        0 => {}
        1 => q.push("ext=flow".into()),
        2 => q.push("ext=flow,resume".into()),
        _ => q.push("ext=resume".into()),
    }
    if let Some(w) = window {
        q.push(format!("flow_window={w}"));
    }
    if instance % 3 != 0 {
        q.push(format!("instance={}", INSTANCES[(instance % 3 - 1) as usize]));
    }
    if q.is_empty() {
        "/socket".into()
    } else {
        format!("/socket?{}", q.join("&"))
    }
}

fn drain(m: &mut dyn Machine, seen: &mut Seen) {
    let mut n = 0;
    while let Some(o) = m.poll_output() {
        n += 1;
        assert!(n < 1_000_000, "a machine produced outputs without end");
        match o {
            Output::OpenLink { link, .. } => seen.links.push(link),
            Output::Listen { listener, .. } => seen.listeners.push(listener),
            Output::Dial { conn, .. } => seen.conns.push(conn),
            Output::BindUdp { udp, .. } => seen.udps.push(udp),
            _ => {}
        }
    }
}

const LIMIT: usize = 64 << 20;

fn run(input: &Input) {
    let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    let mut now = Instant::ZERO;
    let mut server_cfg = ServerConfig::default();
    server_cfg.connector_autonomy = input.client_role & 4 != 0;
    server_cfg.socks_nowait = true;
    let mut server = ServerMachine::new(server_cfg, Box::new(SeededIds::new(1)), now);
    server.add_forward_token(Some("fwd".into())).unwrap();
    server
        .add_reverse_token(ReverseTokenSpec {
            token: Some("rev".into()),
            socks: Some(SocksListen { host: "127.0.0.1".into(), port: 0, credentials: None }),
            allow_manage_connector: true,
        })
        .unwrap();
    server.add_connector_token(Some("con".into()), "rev").unwrap();
    let role = if input.client_role & 1 == 0 { ClientRole::Forward } else { ClientRole::Provider };
    let mut ccfg = ClientConfig::new("ws://h:1", Some(TOKENS[(input.client_role >> 1) as usize % 4].into()), role);
    if role == ClientRole::Forward {
        ccfg.socks = Some(SocksListen { host: "127.0.0.1".into(), port: 0, credentials: None });
    }
    ccfg.fast_open = input.client_role & 8 != 0;
    ccfg.connector_token = (input.client_role & 16 != 0).then(|| "mine".into());
    let mut client = ClientMachine::new(ccfg, Box::new(SeededIds::new(2)), now).unwrap();
    client.start(now);
    let (mut ss, mut cs) = (Seen::default(), Seen::default());
    drain(&mut server, &mut ss);
    drain(&mut client, &mut cs);

    for (i, op) in input.ops.iter().enumerate() {
        // Odd ops go to the client, even ones to the server: both see every kind of input.
        let (m, seen): (&mut dyn Machine, &mut Seen) = if i % 2 == 0 { (&mut server, &mut ss) } else { (&mut client, &mut cs) };
        match op {
            Op::Accept { query: token, ext, window, instance } => {
                if i % 2 == 0 {
                    let l = server.handle_link_accept(now, &query(*token, *ext, *window, *instance));
                    ss.links.push(l);
                }
            }
            Op::Reconnect { link, hello, resume, extra, window, ok } => {
                if i % 2 == 0 {
                    let token = if link % 2 == 0 { 1 } else { 2 };
                    let l = server.handle_link_accept(now, &query(token, 2, Some(*window), 1));
                    ss.links.push(l);
                } else if let Some(l) = pick(&cs.links, *link) {
                    client.handle_link_opened(now, l);
                    if *hello {
                        let features = feature::CHANNEL_FLOW | if *resume { feature::RESUME } else { 0 } | extra;
                        client.handle_link_message(now, l, frame(&Frame::Hello(features, *window), &[]));
                    }
                    client.handle_link_message(now, l, frame(&Frame::AuthResponse { ok: *ok }, &[]));
                }
            }
            Op::Opened(l) => {
                if i % 2 == 1 {
                    if let Some(l) = pick(&cs.links, *l) {
                        client.handle_link_opened(now, l);
                    }
                }
            }
            Op::Message(l, f) => {
                if let Some(l) = pick(&seen.links, *l) {
                    m.handle_link_message(now, l, frame(f, &seen.chans));
                }
            }
            Op::LinkClosed(l) => {
                if let Some(l) = pick(&seen.links, *l) {
                    m.handle_link_closed(now, l, "fuzz");
                }
            }
            Op::Sent(l, n) => {
                if let Some(l) = pick(&seen.links, *l) {
                    m.handle_link_sent(now, l, *n as usize);
                }
            }
            Op::Pong(l) => {
                if let Some(l) = pick(&seen.links, *l) {
                    m.handle_link_pong(now, l);
                }
            }
            Op::SocksAccept(l) => {
                if let Some(l) = pick(&seen.listeners, *l) {
                    m.handle_listener_bound(now, l, Ok(a));
                    let c = m.handle_accept(now, l, b, a);
                    seen.conns.push(c);
                }
            }
            Op::ConnData(c, d) => {
                if let Some(c) = pick(&seen.conns, *c) {
                    m.handle_conn_data(now, c, Bytes::copy_from_slice(d));
                }
            }
            Op::SocksHandshake { conn, udp, domain } => {
                if let Some(c) = pick(&seen.conns, *conn) {
                    let mut b = vec![5, 1, 0, 5, if *udp { 3 } else { 1 }, 0];
                    if *domain {
                        b.extend_from_slice(&[3, 9]);
                        b.extend_from_slice(b"localhost");
                    } else {
                        b.extend_from_slice(&[1, 127, 0, 0, 1]);
                    }
                    b.extend_from_slice(&[0, 80]);
                    m.handle_conn_data(now, c, Bytes::from(b));
                }
            }
            Op::ConnClosed(c, err) => {
                if let Some(c) = pick(&seen.conns, *c) {
                    m.handle_conn_closed(now, c, err.then_some("reset"));
                }
            }
            Op::Written(c, n) => {
                if let Some(c) = pick(&seen.conns, *c) {
                    m.handle_conn_written(now, c, *n as usize);
                }
            }
            Op::Dial(c, ok) => {
                if let Some(c) = pick(&seen.conns, *c) {
                    m.handle_dial_result(now, c, if *ok { Ok(()) } else { Err(IoFailure::other("refused")) });
                }
            }
            Op::UdpBound(u, ok) => {
                if let Some(u) = pick(&seen.udps, *u) {
                    m.handle_udp_bound(now, u, if *ok { Ok(a) } else { Err(IoFailure::other("no")) });
                }
            }
            Op::Datagram(u, d) => {
                if let Some(u) = pick(&seen.udps, *u) {
                    m.handle_udp_datagram(now, u, b, Bytes::copy_from_slice(d));
                }
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(*ms as u64);
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
            Op::Bigtick(h) => {
                now += Duration::from_secs(*h as u64 * 600);
                server.handle_timeout(now);
                client.handle_timeout(now);
            }
        }
        drain(&mut server, &mut ss);
        drain(&mut client, &mut cs);
        ss.note_channels(server.plane());
        cs.note_channels(client.plane());
        for p in [server.plane(), client.plane()] {
            assert!(p.buffered_bytes() < LIMIT, "held {} bytes", p.buffered_bytes());
        }
        if let Some(t) = server.poll_timeout() {
            assert!(t >= now || t + Duration::from_secs(1) >= now, "deadline in the past");
        }
    }
}

fuzz_target!(|input: Input| run(&input));

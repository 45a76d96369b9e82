//! Structured fuzzing of the session machines: arbitrary sequences of inputs (frames, valid
//! and not, SOCKS bytes, dial and bind results, link events, timer ticks) against a server and
//! a client machine. The machines must never panic, and what they hold must stay bounded by
//! their configuration however the inputs are ordered.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use linksocks_core::ids::{ChannelId, InstanceId, SeededIds};
use linksocks_core::session::{
    ClientConfig, ClientMachine, ClientRole, ConnId, LinkId, ListenerId, Machine, Output,
    ReverseTokenSpec, ServerConfig, ServerMachine, SocksListen, UdpId,
};
use linksocks_core::time::Instant;
use linksocks_core::wire::{self, Auth, Connect, Data, Message, Protocol, UdpTrailer};

#[derive(Arbitrary, Debug)]
enum Frame {
    Raw(Vec<u8>),
    Auth { token: u8, reverse: bool },
    Connect { ch: u8, udp: bool, host: u8, port: u16 },
    ConnectResponse { ch: u8, ok: bool },
    Data { ch: u8, udp: bool, len: u16, gzip: bool },
    Disconnect { ch: u8, err: bool },
    Connector { ch: u8, token: u8, add: bool },
    Partners(i64),
    Hello(u32, u32),
    Ack { ch: u8, bytes: u32 },
    NoWindow(u8),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Accept { query: u8 },
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

fn frame(f: &Frame) -> Bytes {
    let chan = |c: u8| ChannelId([c % 4; 16]);
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
}

fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[i as usize % v.len()])
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
            Op::Accept { query } => {
                if i % 2 == 0 {
                    let q = match query % 4 {
                        0 => "/socket".to_string(),
                        1 => format!("/socket?token={}&reverse=false&ext=flow", linksocks_core::session::client::token_hash("fwd")),
                        2 => format!("/socket?token={}&reverse=true", linksocks_core::session::client::token_hash("rev")),
                        _ => "/socket?token=short".to_string(),
                    };
                    let l = server.handle_link_accept(now, &q);
                    ss.links.push(l);
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
                    m.handle_link_message(now, l, frame(f));
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
                    m.handle_dial_result(now, c, if *ok { Ok(()) } else { Err("refused".into()) });
                }
            }
            Op::UdpBound(u, ok) => {
                if let Some(u) = pick(&seen.udps, *u) {
                    m.handle_udp_bound(now, u, if *ok { Ok(a) } else { Err("no".into()) });
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
        for p in [server.plane(), client.plane()] {
            assert!(p.buffered_bytes() < LIMIT, "held {} bytes", p.buffered_bytes());
        }
        if let Some(t) = server.poll_timeout() {
            assert!(t >= now || t + Duration::from_secs(1) >= now, "deadline in the past");
        }
    }
}

fuzz_target!(|input: Input| run(&input));

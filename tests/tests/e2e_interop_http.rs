//! Interoperability of the reference 1.10 surface (issue 18) with the reference 1.10.1
//! ([`RefPeer`]): the HTTP proxy every SOCKS port serves, the port's credentials, and access
//! rules at the entry and dial sides, asked the same questions through three pairings:
//!
//! - the reference's client (or provider) with the reference's server: the baseline, itself
//!   checked against what the reference is documented to answer
//!   (`../shared/spec/reference-1.10.3.md`, sections 3 and 4), so that two sides failing
//!   alike cannot pass;
//! - the reference's client (provider) with our server;
//! - our client (provider) with the reference's server.
//!
//! Each pairing must give the baseline's answers: curl's status codes and body, every byte of
//! a refusal and whether the proxy closed after it, SOCKS5 reply bytes, which targets were
//! reached, and the request head the origin got from a plain proxied request. Where we differ
//! from the reference on purpose (the list at the top of `core/src/socks/http_proxy.rs`), the
//! case asserts the documented difference instead ([`deviation`]): the forwarded head (edited,
//! not re-serialised), `Proxy-Authorization: basic` (any case accepted), and a head over
//! 64 KiB (431). Only the side that owns the port reads the request, so only pairings where
//! that side is ours show them.
//!
//! Configurations ([`Config`]), each a test per runtime of ours:
//! - forward: the client's port with no rules (the file by curl plain GET, curl CONNECT and
//!   SOCKS5; a target nobody listens on: 502 `Connection failed`, SOCKS5 0x04; origin form and
//!   `https://` in a plain request: 400); with `-n/-w` (right, missing and wrong credentials:
//!   407, SOCKS5 method 0xFF or status 1); the server's dial rules (502, 0x04); the client's
//!   entry rules with the server's dial rules (403, 0x02; then 502, 0x04). Rule cases also name
//!   the targets `localhost`, resolved by the side that checks.
//! - reverse: the server's port for the reverse token, the same questions; the provider's dial
//!   rules; the token's rules (`server -r --access-rule`, the entry side at that port) with the
//!   provider's dial rules.
//!
//! The reference-to-reference baseline is taken once per test process and configuration.
//! Everything is on 127.0.0.1 (and `localhost`, which `/etc/hosts` maps there); the reference
//! runs with its peer-to-peer discovery off.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linksocks_core::access::AccessRules;
use linksocks_core::session::ClientRole;
use linksocks_runtime::TokenSpec;
use linksocks_tests::e2e::curl::{curl, escape, raw_exchange, End};
use linksocks_tests::e2e::daemon::free_addr;
use linksocks_tests::e2e::modes::provider_with;
use linksocks_tests::e2e::proxy::{forward, reverse, socks_listen};
use linksocks_tests::e2e::reference::RefPeer;
use linksocks_tests::e2e::socks5::{Dest, Socks5, SocksError};
use linksocks_tests::e2e::target::{pattern, read_request_head, TcpServer};
use linksocks_tests::e2e::{client_options, server_options, Proxy, Rt};

const TOK: &str = "interop-http";
const USER: &str = "http-user";
const PASS: &str = "http-pass";
const WRONG: &str = "not-the-pass";
/// The file every origin serves: several Data messages.
const FILE_LEN: usize = 256 << 10;
const FILE_SEED: u64 = 1810;
/// How long a raw exchange waits for more of the answer, or for the close.
const RAW_WAIT: Duration = Duration::from_secs(5);

fn file() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| pattern(FILE_SEED, FILE_LEN))
}

// ---------------------------------------------------------------------------------------------
// Targets

/// An HTTP origin on 127.0.0.1 answering every request with [`file`], keeping the request
/// heads it received.
struct Origin {
    server: TcpServer,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    fn start() -> Origin {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let log = heads.clone();
        let server = TcpServer::start("127.0.0.1:0", move |mut s| {
            let Some(head) = read_request_head(&mut s) else {
                return;
            };
            log.lock().unwrap().push(head);
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {FILE_LEN}\r\nConnection: close\r\n\r\n"
            );
            if s.write_all(h.as_bytes()).is_ok() {
                let _ = s.write_all(file());
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            // Let the client read to the end before the socket goes.
            let _ = s.read(&mut [0u8; 1024]);
        })
        .unwrap();
        Origin { server, heads }
    }

    fn accepted(&self) -> usize {
        self.server.accepted.load(Ordering::SeqCst)
    }
}

/// Which target a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// Allowed by every rule.
    Web,
    /// Left out of the entry rules (allowed by the dial rules).
    EntryDenied,
    /// Allowed by the entry rules, left out of the dial rules.
    DialDenied,
    /// A port nobody listens on, allowed by every rule.
    Dead,
}

/// One pairing's targets (fresh ones, so that what a request reached is its own).
struct Targets {
    web: Origin,
    entry_denied: Origin,
    dial_denied: Origin,
    dead: SocketAddr,
}

impl Targets {
    fn start() -> Targets {
        Targets {
            web: Origin::start(),
            entry_denied: Origin::start(),
            dial_denied: Origin::start(),
            dead: free_addr(),
        }
    }

    fn addr(&self, who: Who) -> SocketAddr {
        match who {
            Who::Web => self.web.server.addr,
            Who::EntryDenied => self.entry_denied.server.addr,
            Who::DialDenied => self.dial_denied.server.addr,
            Who::Dead => self.dead,
        }
    }

    fn origins(&self) -> [(Who, &Origin); 3] {
        [
            (Who::Web, &self.web),
            (Who::EntryDenied, &self.entry_denied),
            (Who::DialDenied, &self.dial_denied),
        ]
    }

    /// `--access-rule` values of the entry side: everything but `EntryDenied`.
    fn entry_rules(&self) -> Vec<String> {
        [Who::Web, Who::DialDenied, Who::Dead]
            .map(|w| format!("127.0.0.1:{}", self.addr(w).port()))
            .to_vec()
    }

    /// `--access-rule` values of the dial side: everything but `DialDenied`.
    fn dial_rules(&self) -> Vec<String> {
        [Who::Web, Who::EntryDenied, Who::Dead]
            .map(|w| format!("127.0.0.1:{}", self.addr(w).port()))
            .to_vec()
    }
}

fn parse_rules(specs: &[String]) -> AccessRules {
    AccessRules::parse_cli(specs).unwrap()
}

/// `--access-rule A --access-rule B ...`
fn rule_args(specs: &[String]) -> Vec<String> {
    specs
        .iter()
        .flat_map(|s| ["--access-rule".to_string(), s.clone()])
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Configurations and pairings

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Reverse,
}

/// What the two sides are started with.
#[derive(Clone, Copy, Debug)]
struct Config {
    name: &'static str,
    mode: Mode,
    /// `-n/-w` on the port applications use: the forward client's, or the reverse token's on
    /// the server.
    creds: bool,
    /// Entry rules where requests come in: the forward client's `--access-rule`, or the
    /// reverse token's (`server -r --access-rule`), checked at the server's port.
    entry: bool,
    /// Dial rules where the target is dialled: the forward server's `--access-rule`, or the
    /// provider's (`client -r --access-rule`).
    dial: bool,
}

impl Config {
    const fn new(name: &'static str, mode: Mode) -> Config {
        Config {
            name,
            mode,
            creds: false,
            entry: false,
            dial: false,
        }
    }
}

/// Who runs a side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Reference,
    Ours(Rt),
}

/// The side serving the application's port's far end (the server) and the client side (the
/// forward client, or the provider in reverse mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pairing {
    server: Side,
    client: Side,
}

impl Pairing {
    const BASELINE: Pairing = Pairing {
        server: Side::Reference,
        client: Side::Reference,
    };

    /// Which side answers the application on its port: the forward client, or the server in
    /// reverse mode.
    fn port_side(self, mode: Mode) -> Side {
        match mode {
            Mode::Forward => self.client,
            Mode::Reverse => self.server,
        }
    }
}

impl fmt::Display for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: Side| match s {
            Side::Reference => "reference".to_string(),
            Side::Ours(rt) => format!("our ({rt:?})"),
        };
        write!(
            f,
            "{} client/provider, {} server",
            side(self.client),
            side(self.server)
        )
    }
}

/// A running process of either implementation, stopped when dropped.
enum Peer {
    Ours(Proxy),
    Reference(RefPeer),
}

/// The sides started for one pairing, and the port applications use.
struct Setup {
    port: SocketAddr,
    /// The client side first, so that it stops before its server.
    _peers: Vec<Peer>,
}

fn start(cfg: &Config, p: Pairing, t: &Targets) -> Setup {
    match cfg.mode {
        Mode::Forward => start_forward(cfg, p, t),
        Mode::Reverse => start_reverse(cfg, p, t),
    }
}

fn start_forward(cfg: &Config, p: Pairing, t: &Targets) -> Setup {
    let (server, url) = match p.server {
        Side::Reference => {
            let args = if cfg.dial {
                rule_args(&t.dial_rules())
            } else {
                Vec::new()
            };
            let s = RefPeer::server(TOK, &strs(&args));
            let url = s.url();
            (Peer::Reference(s), url)
        }
        Side::Ours(rt) => {
            let mut opts = server_options(vec![forward(TOK)]);
            if cfg.dial {
                opts.machine.access.dial = parse_rules(&t.dial_rules());
            }
            let mut s = Proxy::server(rt, opts);
            let url = s.url();
            (Peer::Ours(s), url)
        }
    };
    let (client, port) = match p.client {
        Side::Reference => {
            let mut args: Vec<String> = Vec::new();
            if cfg.creds {
                args.extend(["-n", USER, "-w", PASS].map(String::from));
            }
            if cfg.entry {
                args.extend(rule_args(&t.entry_rules()));
            }
            let c = RefPeer::client(&url, TOK, &strs(&args));
            let port = c.addr.expect("the reference client's port");
            (Peer::Reference(c), port)
        }
        Side::Ours(rt) => {
            let mut opts = client_options(&url, TOK, ClientRole::Forward);
            if cfg.creds {
                opts.machine.socks = Some(socks_listen(Some((USER, PASS))));
            }
            if cfg.entry {
                opts.machine.entry_rules = Arc::new(parse_rules(&t.entry_rules()));
            }
            let mut c = Proxy::client(rt, opts);
            c.wait_links_ready(1);
            let port = c.socks_addr();
            (Peer::Ours(c), port)
        }
    };
    Setup {
        port,
        _peers: vec![client, server],
    }
}

fn start_reverse(cfg: &Config, p: Pairing, t: &Targets) -> Setup {
    let creds = cfg.creds.then_some((USER, PASS));
    // The server, and how to learn its reverse port once the provider is in.
    let (mut server, url, ref_port) = match p.server {
        Side::Reference => {
            let port = free_addr();
            let mut args: Vec<String> = ["-r", "-s", "127.0.0.1", "-p"].map(String::from).to_vec();
            args.push(port.port().to_string());
            if cfg.creds {
                args.extend(["-n", USER, "-w", PASS].map(String::from));
            }
            if cfg.entry {
                args.extend(rule_args(&t.entry_rules()));
            }
            let s = RefPeer::server(TOK, &strs(&args));
            let url = s.url();
            (Peer::Reference(s), url, Some(port))
        }
        Side::Ours(rt) => {
            let mut spec = reverse(TOK, creds);
            if cfg.entry {
                spec = TokenSpec::WithRules(Box::new(spec), parse_rules(&t.entry_rules()));
            }
            let mut s = Proxy::server(rt, server_options(vec![spec]));
            let url = s.url();
            (Peer::Ours(s), url, None)
        }
    };
    let provider = match p.client {
        Side::Reference => {
            let args = if cfg.dial {
                rule_args(&t.dial_rules())
            } else {
                Vec::new()
            };
            Peer::Reference(RefPeer::provider(&url, TOK, &strs(&args)))
        }
        Side::Ours(rt) => Peer::Ours(provider_with(rt, &url, TOK, |o| {
            if cfg.dial {
                o.machine.data.dial_rules = Arc::new(parse_rules(&t.dial_rules()));
            }
        })),
    };
    // Both servers open the token's port once a provider is in.
    let port = match (&mut server, ref_port) {
        (Peer::Reference(s), Some(port)) => {
            s.wait_port(port);
            port
        }
        (Peer::Ours(s), _) => s.socks_addr(),
        _ => unreachable!(),
    };
    Setup {
        port,
        _peers: vec![provider, server],
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Creds {
    /// The port's credentials, when it has any.
    Right,
    /// None sent to a port that wants some.
    Missing,
    /// The right user with a wrong password.
    Wrong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Req {
    /// curl through the port as an HTTP proxy: a plain absolute-form GET (`-x`) or through
    /// CONNECT (`-p -x`).
    Curl { tunnel: bool },
    /// A request head written by hand from a template (`{TO}`: the target, `{AUTH}`: the
    /// `Proxy-Authorization` line of the credentials sent, `{B64}`: their base64); the
    /// proxy's whole answer, up to its close. For refusals: the reference closes the client
    /// connection of an ended channel seconds late.
    Raw(&'static str),
    /// The same, the answer read by its `Content-Length`: for requests that may get through.
    Fetch(&'static str),
    /// SOCKS5 CONNECT, then a GET of the file through the tunnel.
    SocksFetch,
    /// SOCKS5 greeting, credentials (when sent) and CONNECT written by hand; the proxy's whole
    /// answer. With missing or wrong credentials, only what comes before the refusal is sent.
    RawSocks,
    /// A plain GET with a head of over 64 KiB ([`MAX_REQUEST_HEAD`]) in fields of 1 KB (fewer
    /// than our limit on their number), the answer read by its `Content-Length`.
    HugeHead,
}

const GET: &str = "GET http://{TO}/file.bin HTTP/1.1\r\nHost: {TO}\r\n{AUTH}\r\n";
const CONNECT: &str = "CONNECT {TO} HTTP/1.1\r\nHost: {TO}\r\n{AUTH}\r\n";
/// Not a proxy request: 400 `Absolute-form request URL required`.
const ORIGIN_FORM: &str = "GET /file.bin HTTP/1.1\r\nHost: {TO}\r\n\r\n";
/// 400 `Use CONNECT for HTTPS targets`.
const HTTPS_PLAIN: &str = "GET https://{TO}/file.bin HTTP/1.1\r\nHost: {TO}\r\n\r\n";
/// HTTP/1.0, names in lower case and out of order, no `User-Agent`, a query, a header named
/// by `Connection`: to see what the origin gets.
const EDITED_GET: &str = "GET http://{TO}/file.bin?q=a%20b HTTP/1.0\r\nhost: {TO}\r\n\
                          x-zeta: z\r\nAccept: */*\r\nconnection: x-hop\r\n\
                          x-hop: dropped\r\nx-alpha: a\r\n\r\n";
/// The right credentials with the scheme name in lower case.
const LOWERCASE_BASIC: &str =
    "GET http://{TO}/file.bin HTTP/1.1\r\nHost: {TO}\r\nProxy-Authorization: basic {B64}\r\n\r\n";

/// Our limit on a request head, from `core/src/socks/http_proxy.rs`.
const MAX_REQUEST_HEAD: usize = linksocks_core::socks::http_proxy::MAX_REQUEST_HEAD;

/// What the reference is documented to answer (the baseline is checked against it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 200 and the file, and the target reached.
    File,
    /// The same, and the origin got this head (`{PORT}`: its port).
    FileWithHead(&'static str),
    /// This HTTP status from the proxy (the CONNECT answer for a tunnel), then the close;
    /// nothing reached.
    Http(u16),
    /// This SOCKS5 reply code, then the close; nothing reached.
    Socks(u8),
    /// `05 FF`: no acceptable method (credentials needed, none offered).
    SocksNoMethod,
    /// `05 02`, then a non-zero RFC 1929 status.
    SocksAuthRefused,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    req: Req,
    to: Who,
    /// The target named `localhost` (resolved by the side that checks rules or dials) rather
    /// than 127.0.0.1.
    by_name: bool,
    creds: Creds,
    expect: Expect,
}

impl Case {
    fn host(&self) -> &'static str {
        if self.by_name {
            "localhost"
        } else {
            "127.0.0.1"
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first_line = |t: &str| t.lines().next().unwrap_or_default().to_string();
        let req = match self.req {
            Req::Curl { tunnel: false } => "curl plain GET".to_string(),
            Req::Curl { tunnel: true } => "curl CONNECT".to_string(),
            Req::Raw(t) => format!("raw `{}`", first_line(t)),
            Req::Fetch(t) => format!("fetch `{}`", first_line(t)),
            Req::SocksFetch => "SOCKS5 CONNECT + GET".to_string(),
            Req::RawSocks => "raw SOCKS5 CONNECT".to_string(),
            Req::HugeHead => "plain GET with a head over 64 KiB".to_string(),
        };
        write!(f, "{req} to {:?}", self.to)?;
        if self.by_name {
            f.write_str(" by name")?;
        }
        if self.creds != Creds::Right {
            write!(f, ", credentials {:?}", self.creds)?;
        }
        Ok(())
    }
}

/// The questions asked of a configuration.
fn cases(cfg: &Config) -> Vec<Case> {
    use {Creds::*, Expect::*, Req::*, Who::*};
    let case = |req, to, creds, expect| Case {
        req,
        to,
        by_name: false,
        creds,
        expect,
    };
    let by_name = |req, to, expect| Case {
        by_name: true,
        ..case(req, to, Right, expect)
    };
    // Every way to a refused target, with the answers expected.
    let refused = |to, creds, http: Expect, socks: Expect| {
        vec![
            case(Curl { tunnel: false }, to, creds, http),
            case(Curl { tunnel: true }, to, creds, http),
            case(Raw(GET), to, creds, http),
            case(Raw(CONNECT), to, creds, http),
            case(RawSocks, to, creds, socks),
        ]
    };
    let mut v = vec![
        case(Curl { tunnel: false }, Web, Right, File),
        case(Curl { tunnel: true }, Web, Right, File),
        case(SocksFetch, Web, Right, File),
    ];
    if !(cfg.creds || cfg.entry || cfg.dial) {
        v.push(case(
            Fetch(EDITED_GET),
            Web,
            Right,
            FileWithHead(REFERENCE_EDITED_HEAD),
        ));
        v.push(case(HugeHead, Web, Right, File));
        v.push(case(Raw(ORIGIN_FORM), Web, Right, Http(400)));
        v.push(case(Raw(HTTPS_PLAIN), Web, Right, Http(400)));
        // The far side's dial fails: 502 `Connection failed`, SOCKS5 host unreachable.
        v.extend(refused(Dead, Right, Http(502), Socks(4)));
    }
    if cfg.creds {
        v.extend(refused(Web, Missing, Http(407), SocksNoMethod));
        v.extend(refused(Web, Wrong, Http(407), SocksAuthRefused));
        v.push(case(Fetch(LOWERCASE_BASIC), Web, Right, Http(407)));
    }
    if cfg.entry || cfg.dial {
        // A name is allowed when an address it resolves to is.
        v.push(by_name(Curl { tunnel: false }, Web, File));
        v.push(by_name(SocksFetch, Web, File));
    }
    if cfg.entry {
        // 403 `Destination blocked by access control`, SOCKS5 0x02 (not allowed by ruleset).
        v.extend(refused(EntryDenied, Right, Http(403), Socks(2)));
        v.push(by_name(Curl { tunnel: false }, EntryDenied, Http(403)));
        v.push(by_name(Curl { tunnel: true }, EntryDenied, Http(403)));
        v.push(by_name(RawSocks, EntryDenied, Socks(2)));
    }
    if cfg.dial {
        // The ConnectResponse failure: 502 `Connection failed`, SOCKS5 0x04.
        v.extend(refused(DialDenied, Right, Http(502), Socks(4)));
        v.push(by_name(Curl { tunnel: false }, DialDenied, Http(502)));
        v.push(by_name(Curl { tunnel: true }, DialDenied, Http(502)));
        v.push(by_name(RawSocks, DialDenied, Socks(4)));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Answers

/// A body as compared: the file, or the bytes received.
#[derive(Clone, PartialEq, Eq)]
enum Body {
    File,
    Bytes(Vec<u8>),
}

impl Body {
    fn of(bytes: Vec<u8>) -> Body {
        if bytes == file() {
            Body::File
        } else {
            Body::Bytes(bytes)
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::File => f.write_str("<the file>"),
            Body::Bytes(b) => write!(f, "\"{}\"", escape(b, 160)),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Answer {
    Curl {
        ok: bool,
        status: u16,
        connect: u16,
        body: Body,
    },
    /// Everything the proxy wrote back, and how the connection ended.
    Raw { bytes: Vec<u8>, end: End },
    /// A response read by hand: the status and the body.
    Fetched { status: u16, body: Body },
    /// The SOCKS5 reply code (or the failure before it), then the origin's status and body.
    Socks {
        reply: Result<u8, String>,
        status: u16,
        body: Body,
    },
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Curl {
                ok,
                status,
                connect,
                body,
            } => write!(
                f,
                "curl {} status {status} connect {connect} body {body:?}",
                if *ok { "ok" } else { "failed" }
            ),
            Answer::Raw { bytes, end } => write!(f, "\"{}\" then {end:?}", escape(bytes, 300)),
            Answer::Fetched { status, body } => write!(f, "status {status} body {body:?}"),
            Answer::Socks {
                reply,
                status,
                body,
            } => write!(f, "SOCKS5 reply {reply:?}, status {status}, body {body:?}"),
        }
    }
}

/// What one request gave.
#[derive(Clone, PartialEq, Eq)]
struct Outcome {
    answer: Answer,
    /// The targets that accepted a connection while the request ran.
    reached: Vec<Who>,
    /// For a plain proxied request that got through: the head the origin received, its port
    /// written `{PORT}`.
    head: Option<String>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}; reached {:?}", self.answer, self.reached)?;
        if let Some(h) = &self.head {
            write!(f, "; origin got \"{}\"", escape(h.as_bytes(), 400))?;
        }
        Ok(())
    }
}

/// The RFC 4648 base64 of `s` (for a `Proxy-Authorization` written by hand).
fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The credentials a request sends, given the port's.
fn sent_creds(port_has: bool, c: Creds) -> Option<(&'static str, &'static str)> {
    match (port_has, c) {
        (false, _) | (true, Creds::Missing) => None,
        (true, Creds::Right) => Some((USER, PASS)),
        (true, Creds::Wrong) => Some((USER, WRONG)),
    }
}

fn ask(cfg: &Config, case: &Case, port: SocketAddr, t: &Targets) -> Outcome {
    let to = format!("{}:{}", case.host(), t.addr(case.to).port());
    let creds = sent_creds(cfg.creds, case.creds);
    let before: Vec<(Who, usize, usize)> = t
        .origins()
        .iter()
        .map(|(w, o)| (*w, o.accepted(), o.heads.lock().unwrap().len()))
        .collect();
    let url = format!("http://{to}/file.bin");
    let answer = match case.req {
        Req::Curl { tunnel } => {
            let auth = creds.map_or(String::new(), |(u, p)| format!("{u}:{p}@"));
            let f = curl(&format!("http://{auth}{port}"), &url, tunnel);
            Answer::Curl {
                ok: f.ok,
                status: f.status,
                connect: f.connect_status,
                body: Body::of(f.body),
            }
        }
        Req::Raw(template) => {
            let req = fill(template, &to, creds);
            let (bytes, end) = raw_exchange(port, req.as_bytes(), RAW_WAIT);
            Answer::Raw { bytes, end }
        }
        Req::Fetch(template) => fetch_from(port, fill(template, &to, creds).into_bytes()),
        Req::HugeHead => {
            let mut req = format!("GET {url} HTTP/1.1\r\nHost: {to}\r\n");
            let mut i = 0;
            while req.len() <= MAX_REQUEST_HEAD {
                req += &format!("X-Pad-{i:02}: {}\r\n", "a".repeat(1000));
                i += 1;
            }
            fetch_from(port, format!("{req}\r\n").into_bytes())
        }
        Req::SocksFetch => {
            let socks = match creds {
                Some((u, p)) => Socks5::with_auth(port, u, p),
                None => Socks5::new(port),
            };
            let dest = match case.by_name {
                true => Dest::domain(case.host(), t.addr(case.to).port()),
                false => Dest::Ip(t.addr(case.to)),
            };
            match socks.connect(dest) {
                Ok(mut s) => {
                    let req = format!(
                        "GET /file.bin HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n"
                    );
                    match s
                        .write_all(req.as_bytes())
                        .and_then(|()| read_response(&mut s))
                    {
                        Ok((status, body)) => Answer::Socks {
                            reply: Ok(0),
                            status,
                            body,
                        },
                        Err(e) => Answer::Socks {
                            reply: Err(format!("after the reply: {e}")),
                            status: 0,
                            body: Body::Bytes(Vec::new()),
                        },
                    }
                }
                Err(e) => Answer::Socks {
                    reply: match e {
                        SocksError::Reply(c) => Ok(c),
                        e => Err(e.to_string()),
                    },
                    status: 0,
                    body: Body::Bytes(Vec::new()),
                },
            }
        }
        Req::RawSocks => {
            let mut req = Vec::new();
            match creds {
                None => req.extend([5, 1, 0]),
                Some((u, p)) => {
                    req.extend([5, 1, 2, 1, u.len() as u8]);
                    req.extend(u.as_bytes());
                    req.push(p.len() as u8);
                    req.extend(p.as_bytes());
                }
            }
            // The request only when the proxy will read it: bytes left unread when it closes
            // would make the close a reset, which can destroy the answer before it is read.
            if case.creds == Creds::Right || !cfg.creds {
                match case.by_name {
                    false => req.extend([5, 1, 0, 1, 127, 0, 0, 1]),
                    true => {
                        req.extend([5, 1, 0, 3, 9]);
                        req.extend(b"localhost");
                    }
                }
                req.extend(t.addr(case.to).port().to_be_bytes());
            }
            let (bytes, end) = raw_exchange(port, &req, RAW_WAIT);
            Answer::Raw { bytes, end }
        }
    };
    let mut reached = Vec::new();
    let mut head = None;
    for ((who, o), (_, accepted, heads)) in t.origins().iter().zip(&before) {
        if o.accepted() > *accepted {
            reached.push(*who);
        }
        if matches!(case.req, Req::Curl { tunnel: false } | Req::Fetch(_)) {
            if let Some(h) = o.heads.lock().unwrap().get(*heads) {
                let addr = o.server.addr;
                head = Some(h.replace(&addr.port().to_string(), "{PORT}"));
            }
        }
    }
    Outcome {
        answer,
        reached,
        head,
    }
}

/// `template` with the target and the credentials sent filled in (see [`Req::Raw`]).
fn fill(template: &str, to: &str, creds: Option<(&str, &str)>) -> String {
    let b64 = creds.map_or(String::new(), |(u, p)| base64(&format!("{u}:{p}")));
    let auth = match creds {
        Some(_) => format!("Proxy-Authorization: Basic {b64}\r\n"),
        None => String::new(),
    };
    template
        .replace("{TO}", to)
        .replace("{AUTH}", &auth)
        .replace("{B64}", &b64)
}

/// Writes `req` to the port (from a thread, so that a proxy answering before it has read all
/// of it does not block us) and reads the answer by its `Content-Length`.
fn fetch_from(port: SocketAddr, req: Vec<u8>) -> Answer {
    let failed = |e: std::io::Error| Answer::Fetched {
        status: 0,
        body: Body::Bytes(format!("failed: {e}").into_bytes()),
    };
    let mut s = match std::net::TcpStream::connect(port) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    s.set_read_timeout(Some(RAW_WAIT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let r = read_response(&mut s);
    let _ = writer.join();
    match r {
        Ok((status, body)) => Answer::Fetched { status, body },
        Err(e) => failed(e),
    }
}

/// Reads a response's head and its body by `Content-Length` (not to the close, which the
/// reference delays by seconds after a channel ends): status and body.
fn read_response(s: &mut std::net::TcpStream) -> std::io::Result<(u16, Body)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((status, Body::of(body)))
}

/// Whether `o` is what [`Expect`] says the reference answers `case`.
fn meets(cfg: &Config, case: &Case, o: &Outcome) -> bool {
    let nothing_reached = o.reached.is_empty();
    match (case.expect, &o.answer) {
        (
            Expect::File,
            Answer::Curl {
                ok,
                status,
                connect,
                body,
            },
        ) => {
            let tunnel = case.req == (Req::Curl { tunnel: true });
            *ok && *status == 200
                && *connect == if tunnel { 200 } else { 0 }
                && *body == Body::File
                && o.reached == [Who::Web]
        }
        (
            Expect::File,
            Answer::Socks {
                reply,
                status,
                body,
            },
        ) => *reply == Ok(0) && *status == 200 && *body == Body::File && o.reached == [Who::Web],
        (Expect::File, Answer::Fetched { status, body }) => {
            *status == 200 && *body == Body::File && o.reached == [Who::Web]
        }
        (Expect::FileWithHead(head), Answer::Fetched { status, body }) => {
            *status == 200
                && *body == Body::File
                && o.reached == [Who::Web]
                && o.head.as_deref() == Some(head)
        }
        (Expect::Http(code), Answer::Fetched { status, .. }) => nothing_reached && *status == code,
        (
            Expect::Http(code),
            Answer::Curl {
                status, connect, ..
            },
        ) => {
            let tunnel = case.req == (Req::Curl { tunnel: true });
            nothing_reached
                && if tunnel {
                    *connect == code
                } else {
                    *status == code
                }
        }
        (Expect::Http(code), Answer::Raw { bytes, end }) => {
            nothing_reached
                && *end == End::Closed
                && bytes.starts_with(format!("HTTP/1.1 {code} ").as_bytes())
        }
        (Expect::Socks(code), Answer::Raw { bytes, end }) => {
            // Method selection (and the RFC 1929 status) come first.
            let at = if cfg.creds { 4 } else { 2 };
            nothing_reached
                && *end == End::Closed
                && bytes.get(at) == Some(&5)
                && bytes.get(at + 1) == Some(&code)
        }
        (Expect::SocksNoMethod, Answer::Raw { bytes, end }) => {
            nothing_reached && *end == End::Closed && bytes[..] == [5, 0xff]
        }
        (Expect::SocksAuthRefused, Answer::Raw { bytes, end }) => {
            nothing_reached
                && *end == End::Closed
                && bytes.len() == 4
                && bytes[..3] == [5, 2, 1]
                && bytes[3] != 0
        }
        _ => false,
    }
}

/// Every case of `cfg` through `p`.
fn run(cfg: &Config, p: Pairing) -> Vec<Outcome> {
    let t = Targets::start();
    let setup = start(cfg, p, &t);
    let outcomes: Vec<Outcome> = cases(cfg)
        .iter()
        .map(|c| ask(cfg, c, setup.port, &t))
        .collect();
    for (c, o) in cases(cfg).iter().zip(&outcomes) {
        eprintln!("[{} | {p}] {c}: {o:?}", cfg.name);
    }
    outcomes
}

/// The reference-to-reference answers of `cfg`, once per test process, checked against what
/// the reference is documented to answer.
fn baseline(cfg: &Config) -> Vec<Outcome> {
    static CACHE: Mutex<BTreeMap<&'static str, Vec<Outcome>>> = Mutex::new(BTreeMap::new());
    if let Some(b) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(cfg.name)
    {
        return b.clone();
    }
    let b = run(cfg, Pairing::BASELINE);
    let wrong: Vec<String> = cases(cfg)
        .iter()
        .zip(&b)
        .filter(|(c, o)| !meets(cfg, c, o))
        .map(|(c, o)| format!("  {c}: expected {:?}, got {o:?}", c.expect))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}: the reference with itself does not answer as documented:\n{}",
        cfg.name,
        wrong.join("\n")
    );
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(cfg.name, b.clone());
    b
}

/// What the origin gets from [`EDITED_GET`] through the reference's port: `Request.Write`
/// re-serialises the request, so HTTP/1.1, canonical names, `Host` and `User-Agent` first (one
/// added), the rest sorted; `x-hop`, named by `Connection`, removed.
const REFERENCE_EDITED_HEAD: &str = "GET /file.bin?q=a%20b HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n\
                                     User-Agent: Go-http-client/1.1\r\nAccept: */*\r\n\
                                     Connection: close\r\nX-Alpha: a\r\nX-Zeta: z\r\n\r\n";

/// What the origin gets from [`EDITED_GET`] through our port: the application's head, edited
/// (`Host` first and replaced, `x-hop` removed, `Connection: close` last), its version, names,
/// order and no `User-Agent` kept.
const OUR_EDITED_HEAD: &str = "GET /file.bin?q=a%20b HTTP/1.0\r\nHost: 127.0.0.1:{PORT}\r\n\
                               x-zeta: z\r\nAccept: */*\r\nx-alpha: a\r\n\
                               Connection: close\r\n\r\n";

/// What the origin gets from [`LOWERCASE_BASIC`] through our port.
const OUR_LOWERCASE_BASIC_HEAD: &str =
    "GET /file.bin HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nConnection: close\r\n\r\n";

/// Where pairing `p` answers `case` differently from the reference's `base` on purpose: the
/// deviation (as `core/src/socks/http_proxy.rs` documents it), and the answer expected
/// instead. Only the side that owns the port reads and rewrites the request, so only pairings
/// where that is ours differ.
fn deviation(
    cfg: &Config,
    p: Pairing,
    case: &Case,
    base: &Outcome,
) -> Option<(&'static str, Outcome)> {
    if !matches!(p.port_side(cfg.mode), Side::Ours(_)) {
        return None;
    }
    let through = |head: &str| Outcome {
        answer: Answer::Fetched {
            status: 200,
            body: Body::File,
        },
        reached: vec![Who::Web],
        head: Some(head.to_string()),
    };
    match case.req {
        Req::Fetch(EDITED_GET) => Some((
            "the forwarded head is the application's, edited, not re-serialised: header \
             order, name case and HTTP version kept, no User-Agent added",
            Outcome {
                head: Some(OUR_EDITED_HEAD.to_string()),
                ..base.clone()
            },
        )),
        Req::Fetch(LOWERCASE_BASIC) => Some((
            "Proxy-Authorization accepts the scheme name in any case; the reference wants \
             exactly `Basic `",
            through(OUR_LOWERCASE_BASIC_HEAD),
        )),
        Req::HugeHead => Some((
            "the head is limited to MAX_REQUEST_HEAD bytes, beyond which 431; the reference \
             has no limit",
            Outcome {
                answer: Answer::Fetched {
                    status: 431,
                    body: Body::Bytes(b"Request header fields too large".to_vec()),
                },
                reached: vec![],
                head: None,
            },
        )),
        _ => None,
    }
}

/// Runs `cfg` through both mixed pairings on `rt` and compares each answer with the baseline.
fn check(cfg: &Config, rt: Rt) {
    let base = baseline(cfg);
    let mut differences = Vec::new();
    for p in [
        Pairing {
            server: Side::Ours(rt),
            client: Side::Reference,
        },
        Pairing {
            server: Side::Reference,
            client: Side::Ours(rt),
        },
    ] {
        let got = run(cfg, p);
        for ((c, b), g) in cases(cfg).iter().zip(&base).zip(&got) {
            let (want, why) = match deviation(cfg, p, c, b) {
                Some((why, want)) => (want, Some(why)),
                None => (b.clone(), None),
            };
            if *g == want {
                if let Some(why) = why {
                    eprintln!("[{} | {p}] {c}: differs as documented: {why}", cfg.name);
                }
                continue;
            }
            let mut d = format!("  [{p}] {c}:\n    reference: {b:?}\n");
            if let Some(why) = why {
                d += &format!("    expected:  {want:?} (documented: {why})\n");
            }
            differences.push(d + &format!("    this pair: {g:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{}: answers that differ from the reference's own:\n{}",
        cfg.name,
        differences.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The tests

const FORWARD_OPEN: Config = Config::new("forward", Mode::Forward);
const FORWARD_CREDENTIALS: Config = Config {
    creds: true,
    ..Config::new("forward, -n/-w on the client", Mode::Forward)
};
const FORWARD_DIAL_RULES: Config = Config {
    dial: true,
    ..Config::new("forward, server --access-rule", Mode::Forward)
};
const FORWARD_ENTRY_RULES: Config = Config {
    entry: true,
    dial: true,
    ..Config::new("forward, client and server --access-rule", Mode::Forward)
};
const REVERSE_OPEN: Config = Config::new("reverse", Mode::Reverse);
const REVERSE_CREDENTIALS: Config = Config {
    creds: true,
    ..Config::new("reverse, -n/-w on the server", Mode::Reverse)
};
const REVERSE_PROVIDER_RULES: Config = Config {
    dial: true,
    ..Config::new("reverse, provider --access-rule", Mode::Reverse)
};
const REVERSE_TOKEN_RULES: Config = Config {
    entry: true,
    dial: true,
    ..Config::new(
        "reverse, server -r and provider --access-rule",
        Mode::Reverse,
    )
};

fn forward_open(rt: Rt) {
    check(&FORWARD_OPEN, rt);
}

fn forward_credentials(rt: Rt) {
    check(&FORWARD_CREDENTIALS, rt);
}

fn forward_dial_rules(rt: Rt) {
    check(&FORWARD_DIAL_RULES, rt);
}

fn forward_entry_rules(rt: Rt) {
    check(&FORWARD_ENTRY_RULES, rt);
}

fn reverse_open(rt: Rt) {
    check(&REVERSE_OPEN, rt);
}

fn reverse_credentials(rt: Rt) {
    check(&REVERSE_CREDENTIALS, rt);
}

fn reverse_provider_rules(rt: Rt) {
    check(&REVERSE_PROVIDER_RULES, rt);
}

fn reverse_token_rules(rt: Rt) {
    check(&REVERSE_TOKEN_RULES, rt);
}

linksocks_tests::on_both_runtimes!(
    forward_open,
    forward_credentials,
    forward_dial_rules,
    forward_entry_rules,
    reverse_open,
    reverse_credentials,
    reverse_provider_rules,
    reverse_token_rules,
);

//! The HTTP proxy that every local SOCKS port also serves (CONNECT and absolute-form
//! `http://` requests), as a sans-IO machine: the counterpart of [`super::SocksServer`] for
//! connections whose first byte is an uppercase letter (see [`super::detect()`]).
//!
//! Drive it with whatever bytes arrive, split anywhere:
//!
//! 1. [`HttpProxyServer::feed`] the bytes; it returns how many it consumed.
//! 2. Once [`HttpProxyServer::take_request`] yields the request, the head is over; bytes of the
//!    last `feed` past the consumed count are early data (the request body, pipelined tunnel
//!    bytes) that must be forwarded, not dropped. Open the channel to
//!    [`HttpRequest::target`], then:
//!    - [`HttpRequestKind::Connect`]: write [`connect_established`] to the application and relay
//!      raw both ways, starting with the early data;
//!    - [`HttpRequestKind::Forward`]: write nothing to the application; send `head` to the
//!      target, then the early data, then relay raw both ways (the origin's response reaches
//!      the application untouched).
//!
//!    If the channel cannot be had, write [`error_response`] for the matching [`HttpFailure`]
//!    and close.
//! 3. On an error, write [`HttpProxyError::response`] (if any) and close.
//!
//! One request per connection: the forwarded head carries `Connection: close`, and whatever
//! the application sends after its request goes to the target raw, as in the reference.
//!
//! Behaviour worth knowing (decided against the reference 1.10.3, `local_proxy.go`, which reads
//! the request with Go's `http.ReadRequest` and forwards it with `Request.Write`):
//! - The head is limited to [`MAX_REQUEST_HEAD`] bytes and [`MAX_REQUEST_HEADERS`] fields;
//!   beyond either, `431 Request Header Fields Too Large`. The reference has no limit, so one
//!   client can make it buffer without end.
//! - The body is relayed raw, so `Content-Length` and `Transfer-Encoding` are kept as sent, even
//!   when `Connection` names them. The reference re-frames the body with `Request.Write` and so
//!   strips `Transfer-Encoding`; doing that without re-framing would leave a chunked body that
//!   the origin reads as something else.
//! - The forwarded head is the application's, edited, not re-serialised: header order, name
//!   case, values and the path and query are passed through byte for byte, the HTTP version is
//!   the request's, and no `User-Agent` is added. The reference sorts the headers,
//!   canonicalises their names, percent-encodes the path, writes a non-ASCII host in
//!   punycode, always writes `HTTP/1.1` and adds `User-Agent: Go-http-client/1.1`. Keeping
//!   1.0 matters: the origin must not answer an HTTP/1.0 client in chunked encoding.
//! - `Host` is the first header and brackets an IPv6 literal on every port; the reference
//!   drops the brackets on port 80, writing an invalid `Host: ::1`.
//! - Headers named in every `Connection` field are removed, not only those named in the first.
//! - Only `http://` is forwarded; any other scheme but `https://` gets 400 `Invalid request
//!   target`, where the reference sends such a request to port 80 as if it were `http://`.
//! - Targets are parsed per RFC 3986, and one that cannot be parsed gets 400 `Invalid request
//!   target` (or `Invalid CONNECT target`) where the reference, whose URL parser runs inside
//!   `ReadRequest`, often closes silently. Also refused with 400: an empty host (the reference
//!   asks the peer to dial ""), an IPv6 zone id, an unbracketed IPv6 literal, a percent-encoded
//!   host name, and a host name longer than 255 bytes (the wire cannot carry it).
//! - A CONNECT target comes from the request line only, in authority form (`host:port`,
//!   `[v6]:port`, port 443 if absent). The reference falls back to the `Host` header when the
//!   target starts with `/`.
//! - `Proxy-Authorization` accepts the scheme name in any case and any blanks before the
//!   credentials (RFC 9110 section 11.1); the reference wants exactly `Basic `.
//! - Only HTTP/1.0 and HTTP/1.1 are read (`httparse`); anything else is malformed and closed
//!   silently, as is an empty line before the request line (as in the reference). The
//!   reference also closes silently on a bad `Content-Length` or an unknown transfer coding,
//!   which we do not look at.
//!
//! As in the reference, credentials are checked before the target, so an unauthenticated
//! client learns nothing about which targets would be accepted. The session layer passes
//! credentials only when the port has both a username and a password.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::credentials::Credentials;
use crate::addr::TargetAddr;

/// The largest request head read, request line and blank line included.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The most header fields a request head may have.
pub const MAX_REQUEST_HEADERS: usize = 100;

/// Longest host name accepted: a Connect message carries the address behind a one-byte length.
const MAX_HOST_LEN: usize = 255;

const CONNECT_DEFAULT_PORT: u16 = 443;
const HTTP_DEFAULT_PORT: u16 = 80;

/// Hop-by-hop fields removed from a forwarded request (the reference's list minus
/// `Transfer-Encoding`, see the module documentation), lowercase. `Host` is replaced as well.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "upgrade",
];

/// Fields that frame the body we relay raw: never removed.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// The answer to a CONNECT once the channel is open: exactly what the reference writes.
pub fn connect_established() -> Bytes {
    Bytes::from_static(CONNECT_ESTABLISHED)
}

/// A request head read and accepted.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Where the channel goes. IP literals are [`TargetAddr::Ip`], names [`TargetAddr::Domain`]
    /// as written (at most 255 bytes).
    pub target: TargetAddr,
    /// CONNECT tunnel or plain-HTTP forward.
    pub kind: HttpRequestKind,
}

/// What to do once the channel to the target is open.
#[derive(Clone, PartialEq, Eq)]
pub enum HttpRequestKind {
    /// Write [`connect_established`], then relay raw.
    Connect,
    /// Send `head` (the request line in origin form, `Host`, the end-to-end headers,
    /// `Connection: close`, the blank line) to the target first, then relay raw.
    Forward {
        /// The rewritten request head to send to the target.
        head: Bytes,
    },
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("target", &self.target)
            .field("kind", &self.kind)
            .finish()
    }
}

impl std::fmt::Debug for HttpRequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The head may carry the application's cookies or `Authorization` for the origin, and
        // its request line query tokens: only its size is shown.
        match self {
            HttpRequestKind::Connect => f.write_str("Connect"),
            HttpRequestKind::Forward { head } => f
                .debug_struct("Forward")
                .field("head_len", &head.len())
                .finish(),
        }
    }
}

/// Every answer the HTTP proxy gives short of a tunnel: the reference's table, plus 431.
///
/// The machine answers the 400s, the 407 and the 431 itself (through
/// [`HttpProxyError::response`]); the session layer answers the others once the head has been
/// read, with [`error_response`].
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum HttpFailure {
    /// 400 `Invalid CONNECT target`.
    InvalidConnectTarget,
    /// 400 `Absolute-form request URL required`: an origin-form (`/path`) or `*` target, or one
    /// without an authority.
    AbsoluteFormRequired,
    /// 400 `Use CONNECT for HTTPS targets`.
    HttpsNeedsConnect,
    /// 400 `Invalid request target`.
    InvalidRequestTarget,
    /// 407 `Proxy authentication required`, with `Proxy-Authenticate: Basic realm="LinkSocks"`.
    ProxyAuthRequired,
    /// 431 `Request header fields too large` (ours: the reference has no limit).
    HeadersTooLarge,
    /// 403 `Destination blocked by access control`: the entry rule denies the target.
    Blocked,
    /// 502 `Failed to reach backend`: the Connect could not be sent.
    BackendWriteFailed,
    /// 502 `Connection failed`: the ConnectResponse said no, did not come in time, or
    /// something else came.
    ConnectionFailed,
    /// 503 `No backend available`: no link or no provider. The reference reads the request
    /// head before answering, so that a polite client has finished sending when the socket
    /// closes; feed the machine until it is done or fails, then answer.
    NoBackend,
}

impl HttpFailure {
    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            HttpFailure::InvalidConnectTarget
            | HttpFailure::AbsoluteFormRequired
            | HttpFailure::HttpsNeedsConnect
            | HttpFailure::InvalidRequestTarget => 400,
            HttpFailure::ProxyAuthRequired => 407,
            HttpFailure::HeadersTooLarge => 431,
            HttpFailure::Blocked => 403,
            HttpFailure::BackendWriteFailed | HttpFailure::ConnectionFailed => 502,
            HttpFailure::NoBackend => 503,
        }
    }

    /// The reason phrase of the status line (Go's `http.StatusText`).
    pub fn reason(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            403 => "Forbidden",
            407 => "Proxy Authentication Required",
            431 => "Request Header Fields Too Large",
            502 => "Bad Gateway",
            _ => "Service Unavailable",
        }
    }

    /// The plain-text body, the reference's wording.
    pub fn body(self) -> &'static str {
        match self {
            HttpFailure::InvalidConnectTarget => "Invalid CONNECT target",
            HttpFailure::AbsoluteFormRequired => "Absolute-form request URL required",
            HttpFailure::HttpsNeedsConnect => "Use CONNECT for HTTPS targets",
            HttpFailure::InvalidRequestTarget => "Invalid request target",
            HttpFailure::ProxyAuthRequired => "Proxy authentication required",
            HttpFailure::HeadersTooLarge => "Request header fields too large",
            HttpFailure::Blocked => "Destination blocked by access control",
            HttpFailure::BackendWriteFailed => "Failed to reach backend",
            HttpFailure::ConnectionFailed => "Connection failed",
            HttpFailure::NoBackend => "No backend available",
        }
    }
}

/// The complete response for `f`, byte for byte what the reference's Go `Response.Write`
/// produces: status line, `Content-Length`, `Connection: close`, then the other headers in
/// name order (`Content-Type`, and `Proxy-Authenticate` for 407), the blank line and the body.
/// The connection is to be closed after writing it.
pub fn error_response(f: HttpFailure) -> Bytes {
    let body = f.body();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\n",
        f.status(),
        f.reason(),
        body.len()
    );
    if f == HttpFailure::ProxyAuthRequired {
        out.push_str("Proxy-Authenticate: Basic realm=\"LinkSocks\"\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    Bytes::from(out)
}

/// What went wrong while reading the request head.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HttpProxyErrorKind {
    /// Not an HTTP/1.x request head. Closed without a response, as the reference does when
    /// `http.ReadRequest` fails.
    #[error("malformed HTTP proxy request: {0}")]
    Malformed(String),

    /// The request head did not end within the limit (431).
    #[error("HTTP proxy request head is longer than {limit} bytes")]
    HeadTooLarge {
        /// The most bytes a request head may have.
        limit: usize,
    },

    /// Too many header fields (431).
    #[error("HTTP proxy request has more than {limit} header fields")]
    TooManyHeaders {
        /// The most header fields accepted.
        limit: usize,
    },

    /// Credentials are configured and the request carries none (407).
    #[error("HTTP proxy request without Proxy-Authorization")]
    AuthMissing,

    /// Not `Basic`, not base64, or no `:` in the decoded credentials.
    #[error("malformed Proxy-Authorization (expected Basic base64(user:password))")]
    AuthMalformed,

    /// Wrong username or password (407).
    #[error("wrong HTTP proxy username or password")]
    AuthFailed,

    /// A CONNECT whose target is not `host:port` (400).
    #[error("invalid CONNECT target")]
    InvalidConnectTarget,

    /// A plain request whose target is not `http://host[:port]/...` (400).
    #[error("HTTP proxy request target is not an absolute-form URL")]
    AbsoluteFormRequired,

    /// An absolute-form `https://` request: a client must use CONNECT for HTTPS (400).
    #[error("absolute-form https:// request (HTTPS goes through CONNECT)")]
    HttpsNeedsConnect,

    /// An absolute-form target whose host or port cannot be read (400).
    #[error("invalid HTTP proxy request target")]
    InvalidRequestTarget,

    /// Input fed after an earlier error; the connection should already be closing.
    #[error("the HTTP proxy request already failed")]
    AlreadyFailed,
}

impl HttpProxyErrorKind {
    /// The answer owed to the application, if any.
    pub fn failure(&self) -> Option<HttpFailure> {
        match self {
            HttpProxyErrorKind::Malformed(_) | HttpProxyErrorKind::AlreadyFailed => None,
            HttpProxyErrorKind::HeadTooLarge { .. } | HttpProxyErrorKind::TooManyHeaders { .. } => {
                Some(HttpFailure::HeadersTooLarge)
            }
            HttpProxyErrorKind::AuthMissing
            | HttpProxyErrorKind::AuthMalformed
            | HttpProxyErrorKind::AuthFailed => Some(HttpFailure::ProxyAuthRequired),
            HttpProxyErrorKind::InvalidConnectTarget => Some(HttpFailure::InvalidConnectTarget),
            HttpProxyErrorKind::AbsoluteFormRequired => Some(HttpFailure::AbsoluteFormRequired),
            HttpProxyErrorKind::HttpsNeedsConnect => Some(HttpFailure::HttpsNeedsConnect),
            HttpProxyErrorKind::InvalidRequestTarget => Some(HttpFailure::InvalidRequestTarget),
        }
    }
}

/// A failed request: the reason, and the response to write before closing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{kind}")]
pub struct HttpProxyError {
    kind: HttpProxyErrorKind,
    response: Option<Bytes>,
}

impl HttpProxyError {
    fn new(kind: HttpProxyErrorKind) -> Self {
        let response = kind.failure().map(error_response);
        HttpProxyError { kind, response }
    }

    /// What went wrong.
    pub fn kind(&self) -> &HttpProxyErrorKind {
        &self.kind
    }

    /// The complete response to write before closing (400, 407 or 431), or `None` when the
    /// connection is closed silently (a malformed request, as in the reference).
    pub fn response(&self) -> Option<Bytes> {
        self.response.clone()
    }

    /// The answer the response carries, if any.
    pub fn failure(&self) -> Option<HttpFailure> {
        self.kind.failure()
    }
}

impl From<HttpProxyError> for HttpProxyErrorKind {
    fn from(e: HttpProxyError) -> Self {
        e.kind
    }
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum State {
    Head,
    Done,
    Failed,
}

/// Server side of an HTTP proxy request. See the [module documentation](self).
pub struct HttpProxyServer {
    credentials: Option<Arc<Credentials>>,
    state: State,
    /// The head so far; never longer than [`MAX_REQUEST_HEAD`].
    head: Vec<u8>,
    /// Line ends seen in `head`.
    lines: usize,
    request: Option<HttpRequest>,
}

impl HttpProxyServer {
    /// A fresh request. With `credentials`, `Proxy-Authorization: Basic base64(user:pass)` is
    /// required and compared in constant time ([`Credentials::matches`]); without, any
    /// `Proxy-Authorization` is ignored (and not forwarded).
    pub fn new(credentials: Option<Arc<Credentials>>) -> Self {
        HttpProxyServer {
            credentials,
            state: State::Head,
            head: Vec::new(),
            lines: 0,
            request: None,
        }
    }

    /// Feed whatever bytes arrived (any split, even one byte at a time). Returns how many bytes
    /// of `input` were consumed.
    ///
    /// Consumption stops right after the head, so `input[consumed..]` is early data (a CONNECT's
    /// pipelined tunnel bytes; a forwarded request's body and whatever follows) to forward
    /// after the head; once the head is complete every further call consumes nothing. Until
    /// then, all of `input` is consumed (buffered, at most [`MAX_REQUEST_HEAD`] bytes).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, HttpProxyError> {
        match self.state {
            State::Head => {}
            State::Done => return Ok(0),
            State::Failed => return Err(HttpProxyError::new(HttpProxyErrorKind::AlreadyFailed)),
        }
        match self.read_head(input) {
            Ok(n) => Ok(n),
            Err(kind) => {
                self.state = State::Failed;
                self.head = Vec::new();
                self.request = None;
                Err(HttpProxyError::new(kind))
            }
        }
    }

    /// The accepted request, handed out once.
    pub fn take_request(&mut self) -> Option<HttpRequest> {
        self.request.take()
    }

    /// The head has been read and accepted (whether or not the request was taken yet).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn read_head(&mut self, input: &[u8]) -> Result<usize, HttpProxyErrorKind> {
        let old = self.head.len();
        let take = input.len().min(MAX_REQUEST_HEAD.saturating_sub(old));
        self.head.extend_from_slice(&input[..take]);
        // `ReadRequest` takes the first line as the request line, so a leading blank line is
        // malformed there; httparse would skip it. Refusing it also means every line end below
        // completes a request line, a header or the head, which bounds the parses.
        if old == 0 && matches!(self.head.first(), Some(b'\r' | b'\n')) {
            return Err(HttpProxyErrorKind::Malformed(
                "empty line before the request line".into(),
            ));
        }
        // Parse exactly the prefixes of the head that end a line, each once. Which prefixes get
        // parsed thus depends only on the bytes, never on how they were split, and so does the
        // outcome; and a bad line is refused as soon as it ends, as `ReadRequest` does.
        let mut from = old;
        while let Some(i) = self.head[from..].iter().position(|&b| b == b'\n') {
            let end = from + i + 1;
            from = end;
            self.lines += 1;
            // Request line, MAX_REQUEST_HEADERS fields, blank line: httparse has decided by
            // then. Counted anyway, so that no input can cost more than this many parses.
            if self.lines > MAX_REQUEST_HEADERS + 2 {
                return Err(HttpProxyErrorKind::TooManyHeaders {
                    limit: MAX_REQUEST_HEADERS,
                });
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&self.head[..end]) {
                Ok(httparse::Status::Complete(n)) => {
                    let request = accept(&req, self.credentials.as_deref())?;
                    self.request = Some(request);
                    self.state = State::Done;
                    self.head = Vec::new();
                    // The head began before this input (at `old`); what follows it is early
                    // data. `n == end`: an earlier line end would have completed it already.
                    return Ok(n.saturating_sub(old));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HttpProxyErrorKind::TooManyHeaders {
                        limit: MAX_REQUEST_HEADERS,
                    })
                }
                Err(e) => return Err(HttpProxyErrorKind::Malformed(e.to_string())),
            }
        }
        if self.head.len() >= MAX_REQUEST_HEAD {
            return Err(HttpProxyErrorKind::HeadTooLarge {
                limit: MAX_REQUEST_HEAD,
            });
        }
        Ok(input.len())
    }
}

impl std::fmt::Debug for HttpProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer may hold a Proxy-Authorization being received; leave it out.
        f.debug_struct("HttpProxyServer")
            .field("state", &self.state)
            .field("auth_required", &self.credentials.is_some())
            .field("buffered", &self.head.len())
            .finish_non_exhaustive()
    }
}

/// Check a complete head and turn it into a request.
fn accept(
    req: &httparse::Request<'_, '_>,
    credentials: Option<&Credentials>,
) -> Result<HttpRequest, HttpProxyErrorKind> {
    // A complete parse always sets all three.
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let version = req.version.unwrap_or(1);
    if let Some(c) = credentials {
        check_auth(req.headers, c)?;
    }
    // Methods are case-sensitive (RFC 9110 section 9.1), and the reference compares exactly.
    if method == "CONNECT" {
        let authority =
            parse_connect_target(target).ok_or(HttpProxyErrorKind::InvalidConnectTarget)?;
        return Ok(HttpRequest {
            target: authority.target(),
            kind: HttpRequestKind::Connect,
        });
    }
    let (authority, origin_form) = parse_absolute_target(target)?;
    let head = rewrite(method, &origin_form, version, &authority, req.headers);
    Ok(HttpRequest {
        target: authority.target(),
        kind: HttpRequestKind::Forward { head },
    })
}

fn check_auth(headers: &[httparse::Header<'_>], c: &Credentials) -> Result<(), HttpProxyErrorKind> {
    // The first field counts, as with Go's `Header.Get`.
    let value = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|h| trim_blanks(h.value))
        .ok_or(HttpProxyErrorKind::AuthMissing)?;
    let scheme_end = value
        .iter()
        .position(|&b| is_blank(b))
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(HttpProxyErrorKind::AuthMalformed);
    }
    let decoded = BASE64
        .decode(trim_blanks(rest))
        .map_err(|_| HttpProxyErrorKind::AuthMalformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpProxyErrorKind::AuthMalformed)?;
    let (username, password) = (&decoded[..colon], &decoded[colon + 1..]);
    if c.matches(username, password) {
        Ok(())
    } else {
        Err(HttpProxyErrorKind::AuthFailed)
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_blanks(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_blank(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_blank(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// A target's host and port.
#[derive(Debug)]
struct Authority<'a> {
    /// As written, without brackets.
    host: &'a str,
    ip: Option<IpAddr>,
    port: u16,
}

impl Authority<'_> {
    fn target(&self) -> TargetAddr {
        match self.ip {
            Some(ip) => TargetAddr::Ip(SocketAddr::new(ip, self.port)),
            None => TargetAddr::Domain(self.host.to_owned(), self.port),
        }
    }

    /// The `Host` value for an `http://` request: the port only when it is not 80.
    fn host_field(&self) -> String {
        let host = match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.to_owned(),
        };
        if self.port == HTTP_DEFAULT_PORT {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `[userinfo@]host[:port]` (RFC 3986 section 3.2). The userinfo is dropped, as Go's URL
/// parser does; the reference accepts it on both CONNECT and absolute-form targets.
fn parse_authority(s: &str, default_port: u16) -> Option<Authority<'_>> {
    let hostport = match s.rfind('@') {
        Some(at) => &s[at + 1..],
        None => s,
    };
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        // A zone id (`%25eth0`) names an interface of the dialling machine, which the
        // application cannot know: not parsed, so refused.
        let ip: Ipv6Addr = host.parse().ok()?;
        let port = match after {
            "" => default_port,
            _ => parse_port(after.strip_prefix(':')?)?,
        };
        return Some(Authority {
            host,
            ip: Some(IpAddr::V6(ip)),
            port,
        });
    }
    let (host, port) = match hostport.split_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (hostport, default_port),
    };
    if host.is_empty() || host.len() > MAX_HOST_LEN || !host.bytes().all(is_reg_name_byte) {
        return None;
    }
    let ip = host.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    Some(Authority { host, ip, port })
}

/// RFC 3986 `reg-name` without percent-encoding (unreserved and sub-delims), plus the
/// non-ASCII characters Go's URL parser lets through. Nothing here can end a header line or
/// the host part of a `Host` value.
fn is_reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) || b >= 0x80
}

/// Decimal digits only, 1..=65535 (leading zeros allowed, as Go's `Atoi` does).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() {
        return None;
    }
    let mut port: u32 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        port = port * 10 + u32::from(b - b'0');
        if port > u32::from(u16::MAX) {
            return None;
        }
    }
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// Authority form only: `host:port`, `[v6]:port`, port 443 when absent.
fn parse_connect_target(target: &str) -> Option<Authority<'_>> {
    if target.contains(['/', '?', '#']) {
        return None;
    }
    parse_authority(target, CONNECT_DEFAULT_PORT)
}

/// `http://authority[/path][?query][#fragment]`: the authority, and the target in origin form
/// (`/path?query`, `/` for an empty path; a fragment is not part of a request target).
///
/// The checks come in the reference's order: no authority, then `https`, then the rest.
fn parse_absolute_target(target: &str) -> Result<(Authority<'_>, String), HttpProxyErrorKind> {
    if target.starts_with('/') || target == "*" {
        return Err(HttpProxyErrorKind::AbsoluteFormRequired);
    }
    let (scheme, rest) = target
        .split_once(':')
        .filter(|(scheme, _)| is_scheme(scheme))
        .ok_or(HttpProxyErrorKind::InvalidRequestTarget)?;
    let rest = rest
        .strip_prefix("//")
        .ok_or(HttpProxyErrorKind::AbsoluteFormRequired)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let hostport = authority.rsplit('@').next().unwrap_or_default();
    if hostport.is_empty() {
        return Err(HttpProxyErrorKind::AbsoluteFormRequired);
    }
    if scheme.eq_ignore_ascii_case("https") {
        return Err(HttpProxyErrorKind::HttpsNeedsConnect);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(HttpProxyErrorKind::InvalidRequestTarget);
    }
    let authority = parse_authority(authority, HTTP_DEFAULT_PORT)
        .ok_or(HttpProxyErrorKind::InvalidRequestTarget)?;
    let path = path.split('#').next().unwrap_or_default();
    let origin_form = if path.starts_with('/') {
        path.to_owned()
    } else {
        // Empty, or a bare query.
        format!("/{path}")
    };
    Ok((authority, origin_form))
}

/// RFC 3986 section 3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// The head to send to the origin. See the module documentation for what is kept and why.
fn rewrite(
    method: &str,
    origin_form: &str,
    version: u8,
    authority: &Authority<'_>,
    headers: &[httparse::Header<'_>],
) -> Bytes {
    let named_in_connection: Vec<&[u8]> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(trim_blanks)
        .filter(|t| !t.is_empty())
        .collect();
    let keep = |name: &str| {
        let is = |n: &&str| name.eq_ignore_ascii_case(n);
        FRAMING.iter().any(is)
            || !(name.eq_ignore_ascii_case("host")
                || HOP_BY_HOP.iter().any(is)
                || named_in_connection
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    };
    let host = authority.host_field();
    // Bounded by the head we read, which is at most MAX_REQUEST_HEAD.
    let fields: usize = headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum();
    let mut out =
        BytesMut::with_capacity(method.len() + origin_form.len() + host.len() + fields + 64);
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(origin_form.as_bytes());
    out.put_slice(if version == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    out.put_slice(b"Host: ");
    out.put_slice(host.as_bytes());
    out.put_slice(b"\r\n");
    for h in headers.iter().filter(|h| keep(h.name)) {
        out.put_slice(h.name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Connection: close\r\n\r\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn creds() -> Option<Arc<Credentials>> {
        Some(Arc::new(Credentials::new("user", "pass")))
    }

    /// What one run of the machine over a sequence of chunks produced.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        request: Option<HttpRequest>,
        /// Bytes consumed over all feeds.
        consumed: usize,
        /// Bytes not consumed (early data), in order.
        rest: Vec<u8>,
        error: Option<HttpProxyErrorKind>,
        response: Option<Bytes>,
    }

    /// Feed `chunks` the way a runtime would: stop on error and, once the request is
    /// complete, keep the unconsumed rest of each chunk, checking the consumption contract.
    fn drive(mut s: HttpProxyServer, chunks: &[&[u8]]) -> Outcome {
        let mut out = Outcome {
            request: None,
            consumed: 0,
            rest: Vec::new(),
            error: None,
            response: None,
        };
        for chunk in chunks {
            if out.request.is_some() {
                assert_eq!(s.feed(chunk), Ok(0), "consumes nothing after the head");
                out.rest.extend_from_slice(chunk);
                continue;
            }
            match s.feed(chunk) {
                Ok(n) => {
                    out.consumed += n;
                    if let Some(r) = s.take_request() {
                        assert!(s.is_done());
                        assert!(s.take_request().is_none(), "handed out once");
                        out.request = Some(r);
                        out.rest.extend_from_slice(&chunk[n..]);
                    } else {
                        assert!(!s.is_done());
                        assert_eq!(n, chunk.len(), "consumes everything before the end");
                    }
                }
                Err(e) => {
                    // Consumption means nothing once the connection is to be closed.
                    out.consumed = 0;
                    assert_eq!(e.response(), e.failure().map(error_response));
                    out.response = e.response();
                    out.error = Some(e.kind().clone());
                    let again = s.feed(b"GET").unwrap_err();
                    assert_eq!(again.kind(), &HttpProxyErrorKind::AlreadyFailed);
                    assert_eq!(again.response(), None);
                    assert!(!s.is_done());
                    break;
                }
            }
        }
        out
    }

    /// Every way of cutting `bytes` into two or three pieces, and into single bytes, gives
    /// the outcome of feeding it whole.
    fn check_all_splits(make: impl Fn() -> HttpProxyServer, bytes: &[u8]) -> Outcome {
        let whole = drive(make(), &[bytes]);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(drive(make(), &[a, b]), whole, "split at {i}");
            // Three pieces with a step, to keep this from going cubic on long requests.
            for j in (i..=bytes.len()).step_by(7) {
                let (b1, c) = bytes[i..].split_at(j - i);
                assert_eq!(drive(make(), &[a, b1, c]), whole, "split at {i},{j}");
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(drive(make(), &singles), whole, "one byte at a time");
        whole
    }

    fn no_auth() -> HttpProxyServer {
        HttpProxyServer::new(None)
    }

    fn with_auth() -> HttpProxyServer {
        HttpProxyServer::new(creds())
    }

    fn ip(s: &str) -> TargetAddr {
        TargetAddr::Ip(s.parse().unwrap())
    }

    fn domain(d: &str, port: u16) -> TargetAddr {
        TargetAddr::Domain(d.into(), port)
    }

    fn connect(target: TargetAddr) -> HttpRequest {
        HttpRequest {
            target,
            kind: HttpRequestKind::Connect,
        }
    }

    fn forward_head(out: &Outcome) -> String {
        match &out.request {
            Some(HttpRequest {
                kind: HttpRequestKind::Forward { head },
                ..
            }) => String::from_utf8(head.to_vec()).unwrap(),
            other => panic!("not a forward: {other:?} {:?}", out.error),
        }
    }

    fn error_of(s: HttpProxyServer, bytes: &[u8]) -> (HttpProxyErrorKind, Option<String>) {
        let out = drive(s, &[bytes]);
        assert!(out.request.is_none());
        (
            out.error.expect("an error"),
            out.response.map(|r| String::from_utf8(r.to_vec()).unwrap()),
        )
    }

    // The reference's responses, byte for byte (Go's `Response.Write`: Content-Length and
    // Connection from the transfer writer, then the remaining headers sorted by name).
    const R400_CONNECT: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\n\
        Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        Invalid CONNECT target";
    const R400_ABSOLUTE: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 34\r\n\
        Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        Absolute-form request URL required";
    const R400_HTTPS: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 29\r\n\
        Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        Use CONNECT for HTTPS targets";
    const R400_TARGET: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\n\
        Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        Invalid request target";
    const R407: &str = "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 29\r\n\
        Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
        Proxy-Authenticate: Basic realm=\"LinkSocks\"\r\n\r\nProxy authentication required";
    const R431: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 31\r\n\
        Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
        Request header fields too large";

    #[test]
    fn every_response_byte_for_byte() {
        let r = |f| String::from_utf8(error_response(f).to_vec()).unwrap();
        assert_eq!(r(HttpFailure::InvalidConnectTarget), R400_CONNECT);
        assert_eq!(r(HttpFailure::AbsoluteFormRequired), R400_ABSOLUTE);
        assert_eq!(r(HttpFailure::HttpsNeedsConnect), R400_HTTPS);
        assert_eq!(r(HttpFailure::InvalidRequestTarget), R400_TARGET);
        assert_eq!(r(HttpFailure::ProxyAuthRequired), R407);
        assert_eq!(r(HttpFailure::HeadersTooLarge), R431);
        assert_eq!(
            r(HttpFailure::Blocked),
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 37\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nDestination blocked by access control"
        );
        assert_eq!(
            r(HttpFailure::BackendWriteFailed),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 23\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nFailed to reach backend"
        );
        assert_eq!(
            r(HttpFailure::ConnectionFailed),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 17\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nConnection failed"
        );
        assert_eq!(
            r(HttpFailure::NoBackend),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nNo backend available"
        );
        assert_eq!(
            &connect_established()[..],
            b"HTTP/1.1 200 Connection Established\r\n\r\n"
        );
    }

    #[test]
    fn connect_with_pipelined_bytes_every_split() {
        let head = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                     User-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n";
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"\x16\x03\x01\x02\x00CONNECT x HTTP/1.1\r\n\r\n");
        let out = check_all_splits(no_auth, &bytes);
        assert_eq!(out.request, Some(connect(domain("example.com", 443))));
        assert_eq!(out.consumed, head.len());
        assert_eq!(out.rest, &bytes[head.len()..]);
        assert_eq!(out.error, None);

        // Early data in the same read is left to the caller.
        let mut s = no_auth();
        assert_eq!(s.feed(&bytes), Ok(head.len()));
        assert!(s.is_done());
        assert_eq!(s.feed(b"more"), Ok(0));
        assert_eq!(s.feed(&[]), Ok(0));
    }

    #[test]
    fn connect_targets() {
        let target = |line: &str| {
            let out = drive(no_auth(), &[format!("{line}\r\n\r\n").as_bytes()]);
            match (out.request, out.error) {
                (Some(r), None) => {
                    assert_eq!(r.kind, HttpRequestKind::Connect);
                    Ok(r.target)
                }
                (None, Some(e)) => Err(e),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            target("CONNECT 10.0.0.1:8443 HTTP/1.1"),
            Ok(ip("10.0.0.1:8443"))
        );
        assert_eq!(
            target("CONNECT [2001:db8::7]:443 HTTP/1.1"),
            Ok(ip("[2001:db8::7]:443"))
        );
        assert_eq!(target("CONNECT [::1] HTTP/1.1"), Ok(ip("[::1]:443")));
        assert_eq!(
            target("CONNECT example.com HTTP/1.0"),
            Ok(domain("example.com", 443))
        );
        assert_eq!(
            target("CONNECT Example.COM:22 HTTP/1.1"),
            Ok(domain("Example.COM", 22))
        );
        assert_eq!(target("CONNECT 10.0.0.1 HTTP/1.1"), Ok(ip("10.0.0.1:443")));
        assert_eq!(target("CONNECT h:00080 HTTP/1.1"), Ok(domain("h", 80)));
        assert_eq!(target("CONNECT h:65535 HTTP/1.1"), Ok(domain("h", 65535)));
        assert_eq!(target("CONNECT u:p@h:5 HTTP/1.1"), Ok(domain("h", 5)));
        // Not an IPv4 literal to Rust; the dialling side resolves it.
        assert_eq!(target("CONNECT 127.1:80 HTTP/1.1"), Ok(domain("127.1", 80)));
        assert_eq!(
            target(&format!("CONNECT {}:1 HTTP/1.1", "a".repeat(255))),
            Ok(domain(&"a".repeat(255), 1))
        );
        for bad in [
            "h:0",
            "h:65536",
            "h:99999999999999999999",
            "h:",
            "h:x",
            "h:+80",
            "h:-1",
            ":443",
            "[::1]:0",
            "[::1]x",
            "[::1]:",
            "[::1",
            "[]:443",
            "[fe80::1%25eth0]:443",
            "[10.0.0.1]:443",
            "::1",
            "::1:443",
            "a:b:443",
            "/",
            "/path",
            "h:443/",
            "http://h:443",
            "h?x:443",
            "h#:443",
            "a%2eb:443",
            "a\"b:443",
            "a{b}:443",
            "u@",
            "u@:443",
            &format!("{}:1", "a".repeat(256)),
        ] {
            assert_eq!(
                target(&format!("CONNECT {bad} HTTP/1.1")),
                Err(HttpProxyErrorKind::InvalidConnectTarget),
                "{bad}"
            );
        }
        let (kind, response) = error_of(no_auth(), b"CONNECT h:0 HTTP/1.1\r\n\r\n");
        assert_eq!(kind, HttpProxyErrorKind::InvalidConnectTarget);
        assert_eq!(response.as_deref(), Some(R400_CONNECT));
        // The method is case-sensitive: `Connect` is some other method, whose target has no
        // authority.
        let (kind, response) = error_of(no_auth(), b"Connect h:443 HTTP/1.1\r\n\r\n");
        assert_eq!(kind, HttpProxyErrorKind::AbsoluteFormRequired);
        assert_eq!(response.as_deref(), Some(R400_ABSOLUTE));
    }

    #[test]
    fn forward_rewrite_every_split() {
        let bytes = b"POST http://example.com/upload?x=1&y=%20#frag HTTP/1.1\r\n\
            Host: example.com\r\n\
            Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
            Proxy-Connection: Keep-Alive\r\n\
            Connection: keep-alive, X-Foo\r\n\
            X-Foo: secret hop\r\n\
            Keep-Alive: timeout=5\r\n\
            x-bar:   kept   value  \r\n\
            Transfer-Encoding: chunked\r\n\
            TE: trailers\r\n\
            Trailer: X-Checksum\r\n\
            Upgrade: h2c\r\n\r\n\
            5\r\nhello\r\n0\r\n\r\n";
        let out = check_all_splits(no_auth, bytes);
        assert_eq!(out.error, None);
        assert_eq!(
            out.request.as_ref().unwrap().target,
            domain("example.com", 80)
        );
        assert_eq!(
            forward_head(&out),
            "POST /upload?x=1&y=%20 HTTP/1.1\r\n\
             Host: example.com\r\n\
             x-bar: kept   value\r\n\
             Transfer-Encoding: chunked\r\n\
             Trailer: X-Checksum\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(out.rest, b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(out.consumed, bytes.len() - out.rest.len());
    }

    #[test]
    fn forward_rewrites() {
        let fwd = |req: &str| forward_head(&drive(no_auth(), &[req.as_bytes()]));
        // Minimal HTTP/1.0, no Host: one is added; the version is kept.
        assert_eq!(
            fwd("GET http://10.0.0.1:8080 HTTP/1.0\r\n\r\n"),
            "GET / HTTP/1.0\r\nHost: 10.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
        // curl -x: Host replaced (the port is dropped for 80), header order and case kept.
        assert_eq!(
            fwd(
                "GET HTTP://Example.com:80/a/b.html HTTP/1.1\r\nHost: example.com:80\r\n\
                 User-Agent: curl/8.5.0\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n"
            ),
            "GET /a/b.html HTTP/1.1\r\nHost: Example.com\r\nUser-Agent: curl/8.5.0\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        // IPv6 keeps its brackets on port 80 too; a bare query gets a slash.
        assert_eq!(
            fwd("HEAD http://[2001:db8::1]?q HTTP/1.1\r\nhost: x\r\nHOST: y\r\n\r\n"),
            "HEAD /?q HTTP/1.1\r\nHost: [2001:db8::1]\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            fwd("GET http://[::1]:8080/ HTTP/1.1\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n"
        );
        // Userinfo dropped; headers named in a second Connection field go too; framing
        // fields stay even when named; values with obs-text pass byte for byte.
        let out = drive(
            no_auth(),
            &[
                b"PUT http://u:p@h:81/%7e\xc3\xa9 HTTP/1.1\r\nConnection: close\r\n\
               Connection: X-A ,\tcontent-length, ,x-b\r\nX-A: 1\r\nx-b: 2\r\nX-C: \xff\xfe\r\n\
               Content-Length: 3\r\n\r\nabc",
            ],
        );
        assert_eq!(out.request.as_ref().unwrap().target, domain("h", 81));
        let Some(HttpRequest {
            kind: HttpRequestKind::Forward { head },
            ..
        }) = &out.request
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            &head[..],
            &b"PUT /%7e\xc3\xa9 HTTP/1.1\r\nHost: h:81\r\nX-C: \xff\xfe\r\nContent-Length: 3\r\n\
               Connection: close\r\n\r\n"[..]
        );
        assert_eq!(out.rest, b"abc");
        // Bare line ends are read; the forwarded head uses CRLF.
        assert_eq!(
            fwd("DELETE http://h/x HTTP/1.1\nAccept: a\n\n"),
            "DELETE /x HTTP/1.1\r\nHost: h\r\nAccept: a\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn absolute_form_errors() {
        let err = |target: &str| {
            error_of(
                no_auth(),
                format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            )
        };
        for (target, kind, response) in [
            ("/", HttpProxyErrorKind::AbsoluteFormRequired, R400_ABSOLUTE),
            (
                "/index.html",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            ("*", HttpProxyErrorKind::AbsoluteFormRequired, R400_ABSOLUTE),
            (
                "example.com:80",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            (
                "http:/x",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            (
                "http://",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            (
                "http:///x",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            (
                "http://u@/x",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            (
                "https:///x",
                HttpProxyErrorKind::AbsoluteFormRequired,
                R400_ABSOLUTE,
            ),
            (
                "https://example.com/",
                HttpProxyErrorKind::HttpsNeedsConnect,
                R400_HTTPS,
            ),
            (
                "HTTPS://example.com:443",
                HttpProxyErrorKind::HttpsNeedsConnect,
                R400_HTTPS,
            ),
            (
                "https://[",
                HttpProxyErrorKind::HttpsNeedsConnect,
                R400_HTTPS,
            ),
            (
                "ftp://example.com/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "ws://example.com/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "example.com",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "1http://h/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://h:0/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://h:65536/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://h:/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://:80/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://::1/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://[::1/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://[v1.x]/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://a%2eb/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
            (
                "http://a<b/",
                HttpProxyErrorKind::InvalidRequestTarget,
                R400_TARGET,
            ),
        ] {
            assert_eq!(err(target), (kind, Some(response.to_string())), "{target}");
        }
        let long = format!("http://{}/", "a".repeat(256));
        assert_eq!(
            err(&long),
            (
                HttpProxyErrorKind::InvalidRequestTarget,
                Some(R400_TARGET.to_string())
            )
        );
    }

    /// `Proxy-Authorization: Basic base64(user:pass)`.
    fn basic(user_pass: &str) -> String {
        format!(
            "Proxy-Authorization: Basic {}\r\n",
            BASE64.encode(user_pass)
        )
    }

    fn auth_request(field: &str) -> Vec<u8> {
        format!("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n{field}\r\n").into_bytes()
    }

    #[test]
    fn basic_auth() {
        let ok = |field: &str| {
            let out = drive(with_auth(), &[&auth_request(field)]);
            assert_eq!(out.error, None, "{field}");
            assert_eq!(out.request, Some(connect(domain("h", 443))));
        };
        ok(&basic("user:pass"));
        ok("proxy-authorization: basic dXNlcjpwYXNz\r\n");
        ok("Proxy-Authorization:\tBASIC \t dXNlcjpwYXNz \r\n");
        // The first field counts.
        ok(&format!("{}{}", basic("user:pass"), basic("user:nope")));

        let refused = |field: &str, kind: HttpProxyErrorKind| {
            let (got, response) = error_of(with_auth(), &auth_request(field));
            assert_eq!(got, kind, "{field}");
            assert_eq!(response.as_deref(), Some(R407), "{field}");
        };
        refused("", HttpProxyErrorKind::AuthMissing);
        refused(
            "Authorization: Basic dXNlcjpwYXNz\r\n",
            HttpProxyErrorKind::AuthMissing,
        );
        refused(&basic("usr:pass"), HttpProxyErrorKind::AuthFailed);
        refused(&basic("user:pas"), HttpProxyErrorKind::AuthFailed);
        refused(&basic("user:passs"), HttpProxyErrorKind::AuthFailed);
        refused(&basic(":"), HttpProxyErrorKind::AuthFailed);
        refused(&basic("user:pass:"), HttpProxyErrorKind::AuthFailed);
        refused(
            &format!("{}{}", basic("user:nope"), basic("user:pass")),
            HttpProxyErrorKind::AuthFailed,
        );
        refused(&basic("userpass"), HttpProxyErrorKind::AuthMalformed);
        refused(
            "Proxy-Authorization: Basic dXNlcjpwYXNz=\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: Basic dXNlcjpwYXN\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: Basic !!!!\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: Basic\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: Basic \r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: Bearer dXNlcjpwYXNz\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: BasicdXNlcjpwYXNz\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );
        refused(
            "Proxy-Authorization: Basic dXNlcj pwYXNz\r\n",
            HttpProxyErrorKind::AuthMalformed,
        );

        // Credentials come before the target, as in the reference: a bad target without
        // credentials gets 407, not 400.
        let (kind, response) = error_of(with_auth(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(kind, HttpProxyErrorKind::AuthMissing);
        assert_eq!(response.as_deref(), Some(R407));
        let bad_target = format!("GET / HTTP/1.1\r\n{}\r\n", basic("user:pass"));
        assert_eq!(
            error_of(with_auth(), bad_target.as_bytes()).0,
            HttpProxyErrorKind::AbsoluteFormRequired
        );

        // Forwarded with authentication: the credentials do not reach the origin.
        let req = format!(
            "GET http://h/ HTTP/1.1\r\n{}X: y\r\n\r\n",
            basic("user:pass")
        );
        let out = drive(with_auth(), &[req.as_bytes()]);
        assert_eq!(
            forward_head(&out),
            "GET / HTTP/1.1\r\nHost: h\r\nX: y\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn auth_every_split() {
        let bytes = auth_request(&basic("user:pass"));
        let out = check_all_splits(with_auth, &bytes);
        assert_eq!(out.request, Some(connect(domain("h", 443))));
        let bytes = auth_request(&basic("user:wrong"));
        let out = check_all_splits(with_auth, &bytes);
        assert_eq!(out.error, Some(HttpProxyErrorKind::AuthFailed));
        assert_eq!(out.response.as_deref(), Some(R407.as_bytes()));
    }

    #[test]
    fn without_credentials_any_authorization_is_ignored() {
        for field in [
            basic("user:pass"),
            basic("who:ever"),
            "Proxy-Authorization: Basic !!!\r\n".into(),
            "Proxy-Authorization: Negotiate abc\r\n".into(),
            String::new(),
        ] {
            let out = drive(no_auth(), &[&auth_request(&field)]);
            assert_eq!(out.request, Some(connect(domain("h", 443))), "{field}");
        }
    }

    #[test]
    fn credentials_with_colons_and_non_utf8() {
        let c = Arc::new(Credentials::new(&b"\xffu"[..], &b"p:a:s"[..]));
        let field = format!(
            "Proxy-Authorization: Basic {}\r\n",
            BASE64.encode(b"\xffu:p:a:s")
        );
        let out = drive(HttpProxyServer::new(Some(c)), &[&auth_request(&field)]);
        assert_eq!(out.error, None);
    }

    fn head_with_headers(n: usize) -> Vec<u8> {
        let mut req = b"GET http://h/ HTTP/1.1\r\n".to_vec();
        for i in 0..n {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req
    }

    #[test]
    fn header_count_limit() {
        let out = drive(no_auth(), &[&head_with_headers(MAX_REQUEST_HEADERS)]);
        assert_eq!(out.error, None);
        assert!(forward_head(&out).contains("X-99: v\r\n"));

        let bytes = head_with_headers(MAX_REQUEST_HEADERS + 1);
        let out = drive(no_auth(), &[&bytes]);
        assert_eq!(
            out.error,
            Some(HttpProxyErrorKind::TooManyHeaders {
                limit: MAX_REQUEST_HEADERS
            })
        );
        assert_eq!(out.response.as_deref(), Some(R431.as_bytes()));
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(drive(no_auth(), &singles), out);
        // Refused as soon as the line of the 101st field ends, not only at the blank line.
        let cut = bytes.len() - 2;
        assert_eq!(drive(no_auth(), &[&bytes[..cut]]).error, out.error);
    }

    #[test]
    fn head_size_limit() {
        let filler = |total: usize| {
            let start = b"GET http://h/ HTTP/1.1\r\nX: ";
            let mut req = start.to_vec();
            req.resize(total - 4, b'a');
            req.extend_from_slice(b"\r\n\r\n");
            req
        };
        // Exactly the limit, with early data behind it: accepted, in any split.
        let mut bytes = filler(MAX_REQUEST_HEAD);
        bytes.extend_from_slice(b"body");
        for chunks in [
            vec![&bytes[..]],
            bytes.chunks(1000).collect(),
            bytes.chunks(1).collect(),
        ] {
            let out = drive(no_auth(), &chunks);
            assert_eq!(out.error, None);
            assert_eq!(out.consumed, MAX_REQUEST_HEAD);
            assert_eq!(out.rest, b"body");
        }

        // One byte more: 431, in any split, and without waiting for the end of the head.
        let bytes = filler(MAX_REQUEST_HEAD + 1);
        let expect = Some(HttpProxyErrorKind::HeadTooLarge {
            limit: MAX_REQUEST_HEAD,
        });
        for chunks in [
            vec![&bytes[..]],
            vec![&bytes[..MAX_REQUEST_HEAD]],
            bytes.chunks(999).collect(),
            bytes.chunks(1).collect(),
        ] {
            let out = drive(no_auth(), &chunks);
            assert_eq!(out.error, expect);
            assert_eq!(out.response.as_deref(), Some(R431.as_bytes()));
        }
        let mut s = no_auth();
        assert_eq!(
            s.feed(&bytes[..MAX_REQUEST_HEAD - 1]),
            Ok(MAX_REQUEST_HEAD - 1)
        );
        assert!(s
            .feed(&bytes[MAX_REQUEST_HEAD - 1..MAX_REQUEST_HEAD])
            .is_err());
    }

    #[test]
    fn malformed_requests_close_silently() {
        for bytes in [
            &b"\r\nGET http://h/ HTTP/1.1\r\n\r\n"[..],
            b"\nGET http://h/ HTTP/1.1\r\n\r\n",
            b"GET http://h/ HTTP/2.0\r\n\r\n",
            b"GET http://h/ HTTP/1.1 \r\n\r\n",
            b"GET  http://h/ HTTP/1.1\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET http://h/\r\n\r\n",
            b"G(T http://h/ HTTP/1.1\r\n\r\n",
            b"GET http://h/\xff HTTP/1.1\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nX: \x01\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ] {
            let out = check_all_splits(no_auth, bytes);
            assert!(
                matches!(out.error, Some(HttpProxyErrorKind::Malformed(_))),
                "{:?}: {out:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(out.response, None);
        }
        // A bad request line is refused when it ends, before any header arrives.
        let mut s = no_auth();
        assert!(s.feed(b"GET http://h/ HTTP/3\r\n").is_err());
    }

    #[test]
    fn incomplete_heads_wait() {
        let mut s = no_auth();
        let bytes = b"GET http://h/ HTTP/1.1\r\nX: 1\r\n\r";
        assert_eq!(s.feed(bytes), Ok(bytes.len()));
        assert!(!s.is_done());
        assert_eq!(s.take_request(), None);
        assert_eq!(s.feed(&[]), Ok(0));
        assert_eq!(s.feed(b"\nrest"), Ok(1));
        assert!(s.is_done());
        assert!(s.take_request().is_some());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let mut s = with_auth();
        s.feed(b"GET http://h/ HTTP/1.1\r\nProxy-Authorization: Basic c2VjcmV0")
            .unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("c2VjcmV0"), "{d}");

        let out = drive(
            no_auth(),
            &[b"GET http://h/?token=abc HTTP/1.1\r\nCookie: sid=topsecret\r\n\r\n"],
        );
        let d = format!("{:?}", out.request.unwrap());
        assert!(!d.contains("topsecret") && !d.contains("token"), "{d}");
        assert!(d.contains("head_len"), "{d}");
    }

    #[test]
    fn errors_display() {
        let e = HttpProxyError::new(HttpProxyErrorKind::AuthFailed);
        assert_eq!(e.to_string(), "wrong HTTP proxy username or password");
        assert_eq!(e.failure(), Some(HttpFailure::ProxyAuthRequired));
        assert_eq!(HttpProxyErrorKind::from(e), HttpProxyErrorKind::AuthFailed);
    }

    /// Requests worth cutting up: accepted, refused with a response, malformed, with and
    /// without early data.
    fn sample_requests() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = [
            &b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03"[..],
            b"CONNECT [::1]:22 HTTP/1.0\n\nSSH-2.0",
            b"CONNECT h:0 HTTP/1.1\r\n\r\n",
            b"GET http://h:8080/p?q HTTP/1.1\r\nConnection: X\r\nX: 1\r\nY: 2\r\n\r\n",
            b"POST http://[::1]/ HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET https://h/ HTTP/1.1\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\nX: 1\r\n",
            b"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\nx",
            b"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpwYXN=\r\n\r\n",
        ]
        .iter()
        .map(|b| b.to_vec())
        .collect();
        v.push(head_with_headers(MAX_REQUEST_HEADERS + 1));
        v
    }

    /// The outcome of feeding `bytes` cut at `cuts` (positions modulo the length).
    fn drive_cut(auth: bool, bytes: &[u8], cuts: &[usize]) -> Outcome {
        let make = || HttpProxyServer::new(if auth { creds() } else { None });
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        drive(make(), &chunks)
    }

    proptest! {
        #[test]
        fn split_invariance_on_samples(
            which in 0usize..12,
            auth in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let samples = sample_requests();
            let bytes = &samples[which % samples.len()];
            prop_assert_eq!(drive_cut(auth, bytes, &cuts), drive_cut(auth, bytes, &[]));
        }

        #[test]
        fn split_invariance_on_mutated_requests(
            which in 0usize..12,
            auth in any::<bool>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let samples = sample_requests();
            let mut bytes = samples[which % samples.len()].clone();
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            prop_assert_eq!(drive_cut(auth, &bytes, &cuts), drive_cut(auth, &bytes, &[]));
        }

        #[test]
        fn split_invariance_on_noise(
            auth in any::<bool>(),
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b'/'),
                    b'A'..=b'Z', any::<u8>(),
                ],
                0..200,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            prop_assert_eq!(drive_cut(auth, &bytes, &cuts), drive_cut(auth, &bytes, &[]));
        }
    }
}

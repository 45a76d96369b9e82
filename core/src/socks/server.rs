//! The SOCKS5 server handshake (RFC 1928, RFC 1929) that applications run against our
//! listener, as a sans-IO machine.
//!
//! Drive it with whatever bytes arrive, split anywhere:
//!
//! 1. [`SocksServer::feed`] the bytes; it returns how many it consumed.
//! 2. Write out everything [`SocksServer::poll_transmit`] hands back.
//! 3. Once [`SocksServer::take_request`] yields the request, the handshake is over; bytes of
//!    the last `feed` past the consumed count are early data the application pipelined after
//!    its request and must be forwarded, not dropped. The caller answers the request with
//!    [`super::encode_reply`].
//! 4. On an error, write [`SocksError::response`] (if any) and close.
//!
//! Behaviour worth knowing (decided against the reference 1.10.1, observed on loopback):
//! - A first byte other than 5 closes without a reply. The reference's listener peeks at the
//!   first byte and closes on anything that is neither 5 nor an uppercase HTTP method letter,
//!   so its SOCKS handler's "reply 0x01" path is never reached. (The reference also serves an
//!   HTTP proxy on the same port; that is outside this machine.)
//! - With credentials configured, 0x02 is required (`05 FF` otherwise); without, 0x00 is
//!   required (`05 FF` otherwise, where the reference answers `05 00` whatever was offered).
//!   A greeting with zero methods offers nothing and gets `05 FF` (the reference sends a
//!   ten-byte general-failure reply there).
//! - BIND and unknown commands get reply 0x07 (RFC 1928; the reference closes silently).
//!   The whole request is read before answering, so the close does not race unread input.
//! - Unknown address types get 0x08 as soon as the ATYP byte is seen (the rest cannot be
//!   framed). The RSV byte is ignored, as the reference does.
//! - A domain is returned as [`TargetAddr::Domain`] exactly as sent, even when it spells an IP
//!   literal, so that the dialling side resolves it. An empty or non-UTF-8 name gets 0x04.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::addr::{self, AddrError};
use super::buf::MsgBuf;
use super::credentials::Credentials;
use super::error::{SocksError, SocksErrorKind};
use super::SOCKS5_VERSION;
use super::{AUTH_VERSION, METHOD_NO_AUTH, METHOD_USERNAME_PASSWORD};
use crate::addr::TargetAddr;

/// The SOCKS5 commands we serve.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Command {
    /// CONNECT (0x01): a TCP stream to the target.
    Connect,
    /// UDP ASSOCIATE (0x03): a UDP relay for the application.
    UdpAssociate,
}

impl Command {
    /// The `CMD` byte of the request.
    pub fn code(self) -> u8 {
        match self {
            Command::Connect => 0x01,
            Command::UdpAssociate => 0x03,
        }
    }
}

/// A complete, accepted request.
///
/// For UDP ASSOCIATE, `target` is the address the application says it will send datagrams
/// from (often all zeros, meaning "not known yet").
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Request {
    /// What the application asks for.
    pub command: Command,
    /// The destination (CONNECT) or the application's announced source (UDP ASSOCIATE).
    pub target: TargetAddr,
}

/// Longest message: the RFC 1929 request, `VER ULEN UNAME(255) PLEN PASSWD(255)`.
const BUF_LEN: usize = 3 + 255 + 255;

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum State {
    Greeting,
    Auth,
    Request,
    Done,
    Failed,
}

/// Server side of the SOCKS5 handshake. See the [module documentation](self).
pub struct SocksServer {
    credentials: Option<Arc<Credentials>>,
    state: State,
    authenticated: bool,
    msg: MsgBuf<BUF_LEN>,
    transmit: VecDeque<Bytes>,
    request: Option<Request>,
}

impl SocksServer {
    /// A fresh handshake. With `credentials`, applications must authenticate with exactly
    /// these (RFC 1929); without, only "no authentication" is offered.
    pub fn new(credentials: Option<Arc<Credentials>>) -> Self {
        SocksServer {
            credentials,
            state: State::Greeting,
            authenticated: false,
            msg: MsgBuf::new(),
            transmit: VecDeque::new(),
            request: None,
        }
    }

    /// Feed whatever bytes arrived (any split, even one byte at a time). Returns how many bytes
    /// of `input` were consumed.
    ///
    /// Consumption stops right after a complete request, so `input[consumed..]` is early data
    /// the application sent with or after its request; once the request is complete every
    /// further call consumes nothing. Until then, all of `input` is consumed.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, SocksError> {
        let mut pos = 0;
        loop {
            let step = match self.state {
                State::Greeting => self.greeting(input, &mut pos),
                State::Auth => self.auth(input, &mut pos),
                State::Request => self.request(input, &mut pos),
                State::Done => return Ok(pos),
                State::Failed => Err(SocksErrorKind::AlreadyFailed),
            };
            match step {
                Ok(true) => self.msg.clear(),
                Ok(false) => return Ok(pos),
                Err(kind) => return Err(self.fail(kind)),
            }
        }
    }

    /// Bytes to write to the application now (method selection `05 00`/`05 02`, auth status
    /// `01 00`), each handed out once, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The complete request, handed out once.
    pub fn take_request(&mut self) -> Option<Request> {
        self.request.take()
    }

    /// Method negotiated and, when required, credentials accepted.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The request has been read (whether or not it was taken yet).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn fail(&mut self, kind: SocksErrorKind) -> SocksError {
        let pending: Vec<Bytes> = self.transmit.drain(..).collect();
        self.state = State::Failed;
        self.request = None;
        SocksError::new(kind, &pending)
    }

    /// `VER NMETHODS METHODS...`
    fn greeting(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, SocksErrorKind> {
        let complete = self.msg.collect(input, pos, |b| {
            if let Some(&v) = b.first() {
                if v != SOCKS5_VERSION {
                    return Err(SocksErrorKind::BadVersion(v));
                }
            }
            Ok(match b.get(1) {
                None => 2,
                Some(&n) => 2 + n as usize,
            })
        })?;
        if !complete {
            return Ok(false);
        }
        let methods = &self.msg.bytes()[2..];
        let wanted = if self.credentials.is_some() {
            METHOD_USERNAME_PASSWORD
        } else {
            METHOD_NO_AUTH
        };
        if !methods.contains(&wanted) {
            return Err(SocksErrorKind::NoAcceptableMethod);
        }
        if wanted == METHOD_USERNAME_PASSWORD {
            self.transmit.push_back(Bytes::from_static(&[
                SOCKS5_VERSION,
                METHOD_USERNAME_PASSWORD,
            ]));
            self.state = State::Auth;
        } else {
            self.transmit
                .push_back(Bytes::from_static(&[SOCKS5_VERSION, METHOD_NO_AUTH]));
            self.authenticated = true;
            self.state = State::Request;
        }
        Ok(true)
    }

    /// RFC 1929: `VER ULEN UNAME PLEN PASSWD`.
    fn auth(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, SocksErrorKind> {
        let complete = self.msg.collect(input, pos, |b| {
            if let Some(&v) = b.first() {
                if v != AUTH_VERSION {
                    return Err(SocksErrorKind::BadAuthVersion(v));
                }
            }
            let Some(&ulen) = b.get(1) else { return Ok(2) };
            let plen_at = 2 + ulen as usize;
            Ok(match b.get(plen_at) {
                None => plen_at + 1,
                Some(&plen) => plen_at + 1 + plen as usize,
            })
        })?;
        if !complete {
            return Ok(false);
        }
        let b = self.msg.bytes();
        let ulen = b[1] as usize;
        let username = &b[2..2 + ulen];
        let password = &b[3 + ulen..];
        // Only reachable with credentials configured (the greeting picks 0x02 only then).
        let ok = self
            .credentials
            .as_ref()
            .is_some_and(|c| c.matches(username, password));
        if !ok {
            return Err(SocksErrorKind::AuthFailed);
        }
        self.transmit
            .push_back(Bytes::from_static(&[AUTH_VERSION, 0x00]));
        self.authenticated = true;
        self.state = State::Request;
        Ok(true)
    }

    /// `VER CMD RSV ATYP DST.ADDR DST.PORT`
    fn request(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, SocksErrorKind> {
        let complete = self.msg.collect(input, pos, |b| {
            if let Some(&v) = b.first() {
                if v != SOCKS5_VERSION {
                    return Err(SocksErrorKind::BadRequestVersion(v));
                }
            }
            if b.len() < 4 {
                return Ok(4);
            }
            addr::wire_len(&b[3..]).map(|n| 3 + n).map_err(addr_error)
        })?;
        if !complete {
            return Ok(false);
        }
        let b = self.msg.bytes();
        let command = match b[1] {
            0x01 => Command::Connect,
            0x03 => Command::UdpAssociate,
            other => return Err(SocksErrorKind::CommandNotSupported(other)),
        };
        let target = addr::parse(&b[3..]).map_err(addr_error)?;
        self.request = Some(Request { command, target });
        self.state = State::Done;
        Ok(true)
    }
}

fn addr_error(e: AddrError) -> SocksErrorKind {
    match e {
        AddrError::BadType(t) => SocksErrorKind::AddressTypeNotSupported(t),
        AddrError::EmptyDomain => SocksErrorKind::EmptyDomain,
        AddrError::NotUtf8 => SocksErrorKind::DomainNotUtf8,
    }
}

impl std::fmt::Debug for SocksServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer may hold a password being typed in; leave it out.
        f.debug_struct("SocksServer")
            .field("state", &self.state)
            .field("auth_required", &self.credentials.is_some())
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socks::reply::{encode_reply, Reply, UNSPECIFIED_BOUND};
    use std::net::SocketAddr;

    fn creds() -> Option<Arc<Credentials>> {
        Some(Arc::new(Credentials::new("user", "pass")))
    }

    /// What one run of the machine over a sequence of chunks produced.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        /// Everything written to the application, in order (error response included).
        written: Vec<u8>,
        request: Option<Request>,
        /// Bytes not consumed by the machine (early data), in order.
        rest: Vec<u8>,
        error: Option<SocksErrorKind>,
        authenticated: bool,
    }

    /// Feed `chunks` the way a runtime would: drain transmits after every feed, stop on error
    /// and, once the request is complete, keep the unconsumed rest of each chunk.
    fn drive(mut s: SocksServer, chunks: &[&[u8]]) -> Outcome {
        let mut written = Vec::new();
        let mut rest = Vec::new();
        let mut error = None;
        let mut request = None;
        for chunk in chunks {
            if request.is_some() {
                assert_eq!(s.feed(chunk), Ok(0), "consumes nothing after the request");
                rest.extend_from_slice(chunk);
                continue;
            }
            match s.feed(chunk) {
                Ok(n) => {
                    while let Some(b) = s.poll_transmit() {
                        written.extend_from_slice(&b);
                    }
                    if let Some(r) = s.take_request() {
                        assert!(s.take_request().is_none(), "handed out once");
                        request = Some(r);
                        rest.extend_from_slice(&chunk[n..]);
                    } else {
                        assert_eq!(n, chunk.len(), "consumes everything before the request");
                    }
                }
                Err(e) => {
                    assert!(
                        s.poll_transmit().is_none(),
                        "error response carries the queue"
                    );
                    if let Some(r) = e.response() {
                        written.extend_from_slice(&r);
                    }
                    error = Some(e.kind().clone());
                    assert_eq!(
                        s.feed(b"\x05").map_err(|e| e.kind().clone()),
                        Err(SocksErrorKind::AlreadyFailed)
                    );
                    break;
                }
            }
        }
        Outcome {
            written,
            request,
            rest,
            error,
            authenticated: s.is_authenticated(),
        }
    }

    /// Assert that every way of cutting `bytes` into one, two, three or single-byte pieces
    /// gives the same outcome as feeding it whole.
    fn check_all_splits(make: impl Fn() -> SocksServer, bytes: &[u8]) -> Outcome {
        let whole = drive(make(), &[bytes]);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(drive(make(), &[a, b]), whole, "split at {i}");
            for j in i..=bytes.len() {
                let (b1, c) = bytes[i..].split_at(j - i);
                assert_eq!(drive(make(), &[a, b1, c]), whole, "split at {i},{j}");
            }
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(drive(make(), &singles), whole, "one byte at a time");
        whole
    }

    fn connect_v4() -> Vec<u8> {
        vec![5, 1, 0, 1, 10, 0, 0, 1, 0x1f, 0x90]
    }

    fn ok(written: &[u8], request: Request, rest: &[u8]) -> Outcome {
        Outcome {
            written: written.to_vec(),
            request: Some(request),
            rest: rest.to_vec(),
            error: None,
            authenticated: true,
        }
    }

    fn failed(written: &[u8], error: SocksErrorKind, authenticated: bool) -> Outcome {
        Outcome {
            written: written.to_vec(),
            request: None,
            rest: vec![],
            error: Some(error),
            authenticated,
        }
    }

    fn tcp(target: &str) -> Request {
        Request {
            command: Command::Connect,
            target: TargetAddr::Ip(target.parse().unwrap()),
        }
    }

    #[test]
    fn no_auth_connect_ipv4_every_split() {
        let mut bytes = vec![5, 1, 0];
        bytes.extend(connect_v4());
        let out = check_all_splits(|| SocksServer::new(None), &bytes);
        assert_eq!(out, ok(&[5, 0], tcp("10.0.0.1:8080"), &[]));
    }

    #[test]
    fn no_auth_connect_with_early_data_every_split() {
        let mut bytes = vec![5, 2, 0x02, 0x00];
        bytes.extend(connect_v4());
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let out = check_all_splits(|| SocksServer::new(None), &bytes);
        assert_eq!(
            out,
            ok(&[5, 0], tcp("10.0.0.1:8080"), b"GET / HTTP/1.1\r\n\r\n")
        );
    }

    #[test]
    fn early_data_in_the_same_read_is_not_consumed() {
        let mut s = SocksServer::new(None);
        let mut bytes = vec![5, 1, 0];
        bytes.extend(connect_v4());
        let req_end = bytes.len();
        bytes.extend_from_slice(b"hello");
        assert_eq!(s.feed(&bytes), Ok(req_end));
        assert_eq!(&bytes[req_end..], b"hello");
        assert_eq!(s.poll_transmit().as_deref(), Some(&[5u8, 0][..]));
        assert_eq!(s.poll_transmit(), None);
        assert!(s.is_done());
        assert_eq!(s.take_request(), Some(tcp("10.0.0.1:8080")));
        assert_eq!(s.take_request(), None);
        assert_eq!(s.feed(b"more"), Ok(0));
    }

    #[test]
    fn auth_connect_ipv6_with_early_data_every_split() {
        let mut bytes = vec![5, 2, 0, 2, 1, 4];
        bytes.extend_from_slice(b"user");
        bytes.push(4);
        bytes.extend_from_slice(b"pass");
        bytes.extend_from_slice(&[5, 1, 0, 4]);
        bytes.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        bytes.extend_from_slice(&[0x01, 0xbb, 0xAB, 0xCD]);
        let out = check_all_splits(|| SocksServer::new(creds()), &bytes);
        assert_eq!(
            out,
            ok(&[5, 2, 1, 0], tcp("[2001:db8::7]:443"), &[0xAB, 0xCD])
        );
    }

    #[test]
    fn domain_udp_associate_every_split() {
        let mut bytes = vec![5, 1, 0, 5, 3, 0, 3, 11];
        bytes.extend_from_slice(b"example.com");
        bytes.extend_from_slice(&[0, 53]);
        let out = check_all_splits(|| SocksServer::new(None), &bytes);
        let req = Request {
            command: Command::UdpAssociate,
            target: TargetAddr::Domain("example.com".into(), 53),
        };
        assert_eq!(out, ok(&[5, 0], req, &[]));
    }

    #[test]
    fn udp_associate_zero_address() {
        let out = drive(
            SocksServer::new(None),
            &[&[5, 1, 0], &[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]],
        );
        let req = Request {
            command: Command::UdpAssociate,
            target: TargetAddr::Ip("0.0.0.0:0".parse().unwrap()),
        };
        assert_eq!(out, ok(&[5, 0], req, &[]));
    }

    #[test]
    fn ip_literal_domains_stay_domains() {
        let mut bytes = vec![5, 1, 0, 5, 1, 0, 3, 9];
        bytes.extend_from_slice(b"127.0.0.1");
        bytes.extend_from_slice(&[0, 80]);
        let out = drive(SocksServer::new(None), &[&bytes]);
        assert_eq!(
            out.request.unwrap().target,
            TargetAddr::Domain("127.0.0.1".into(), 80)
        );
    }

    #[test]
    fn longest_messages_fit() {
        let mut bytes = vec![5, 255];
        bytes.extend((0..255u8).map(|i| if i == 254 { 2 } else { 0x80 | i }));
        bytes.extend([1, 255]);
        bytes.extend([b'u'; 255]);
        bytes.push(255);
        bytes.extend([b'p'; 255]);
        bytes.extend([5, 1, 0, 3, 255]);
        bytes.extend([b'd'; 255]);
        bytes.extend([0xff, 0xff]);
        let c = Some(Arc::new(Credentials::new([b'u'; 255], [b'p'; 255])));
        let out = drive(SocksServer::new(c.clone()), &[&bytes]);
        let req = Request {
            command: Command::Connect,
            target: TargetAddr::Domain("d".repeat(255), 65535),
        };
        assert_eq!(out, ok(&[5, 2, 1, 0], req, &[]));
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(drive(SocksServer::new(c), &singles), out);
    }

    #[test]
    fn bad_version_closes_without_reply() {
        for v in [0u8, 4, 6, b'G', 0xff] {
            let out = check_all_splits(|| SocksServer::new(None), &[v, 1, 0]);
            assert_eq!(out, failed(&[], SocksErrorKind::BadVersion(v), false));
            // Detected on the very first byte, before anything else arrives.
            let mut s = SocksServer::new(creds());
            let e = s.feed(&[v]).unwrap_err();
            assert_eq!(e.response(), None);
        }
    }

    #[test]
    fn no_acceptable_method() {
        // No credentials configured, client only offers username/password.
        let out = check_all_splits(|| SocksServer::new(None), &[5, 1, 2, 5, 1]);
        assert_eq!(
            out,
            failed(&[5, 0xFF], SocksErrorKind::NoAcceptableMethod, false)
        );
        // Credentials configured, client only offers no-auth.
        let out = check_all_splits(|| SocksServer::new(creds()), &[5, 2, 0, 1]);
        assert_eq!(
            out,
            failed(&[5, 0xFF], SocksErrorKind::NoAcceptableMethod, false)
        );
        // Zero methods offered.
        let out = check_all_splits(|| SocksServer::new(None), &[5, 0]);
        assert_eq!(
            out,
            failed(&[5, 0xFF], SocksErrorKind::NoAcceptableMethod, false)
        );
    }

    #[test]
    fn wrong_credentials() {
        for (u, p) in [
            ("user", "pasS"),
            ("usr", "pass"),
            ("", ""),
            ("user", "passs"),
        ] {
            let mut bytes = vec![5, 1, 2, 1, u.len() as u8];
            bytes.extend_from_slice(u.as_bytes());
            bytes.push(p.len() as u8);
            bytes.extend_from_slice(p.as_bytes());
            let out = check_all_splits(|| SocksServer::new(creds()), &bytes);
            assert_eq!(
                out,
                failed(&[5, 2, 1, 1], SocksErrorKind::AuthFailed, false)
            );
        }
    }

    #[test]
    fn wrong_auth_version() {
        let out = check_all_splits(|| SocksServer::new(creds()), &[5, 1, 2, 5, 4]);
        assert_eq!(
            out,
            failed(&[5, 2, 1, 1], SocksErrorKind::BadAuthVersion(5), false)
        );
    }

    #[test]
    fn pipelined_failure_keeps_queued_answers_in_front() {
        let mut s = SocksServer::new(creds());
        let e = s.feed(&[5, 1, 2, 1, 1, b'x', 1, b'y']).unwrap_err();
        assert_eq!(e.response().unwrap().to_vec(), vec![5, 2, 1, 1]);
        assert_eq!(s.poll_transmit(), None);
    }

    fn request_error(req: &[u8], kind: SocksErrorKind, reply: Reply) {
        let mut bytes = vec![5, 1, 0];
        bytes.extend_from_slice(req);
        let out = check_all_splits(|| SocksServer::new(None), &bytes);
        let mut written = vec![5, 0];
        written.extend_from_slice(&encode_reply(reply, UNSPECIFIED_BOUND));
        assert_eq!(out, failed(&written, kind, true));
    }

    #[test]
    fn bind_and_unknown_commands() {
        request_error(
            &[5, 2, 0, 1, 1, 2, 3, 4, 0, 80],
            SocksErrorKind::CommandNotSupported(2),
            Reply::CommandNotSupported,
        );
        request_error(
            &[5, 0x09, 0, 3, 1, b'a', 0, 80],
            SocksErrorKind::CommandNotSupported(9),
            Reply::CommandNotSupported,
        );
        request_error(
            &[
                5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80,
            ],
            SocksErrorKind::CommandNotSupported(0),
            Reply::CommandNotSupported,
        );
    }

    #[test]
    fn command_error_waits_for_the_whole_request() {
        let mut s = SocksServer::new(None);
        assert_eq!(s.feed(&[5, 1, 0, 5, 2, 0, 1, 1, 2]), Ok(9));
        assert_eq!(s.feed(&[3, 4, 0]), Ok(3));
        let e = s.feed(&[80]).unwrap_err();
        assert_eq!(e.kind(), &SocksErrorKind::CommandNotSupported(2));
    }

    #[test]
    fn unknown_address_types() {
        for atyp in [0u8, 2, 5, 0xff] {
            request_error(
                &[5, 1, 0, atyp, 1, 2, 3, 4, 0, 80],
                SocksErrorKind::AddressTypeNotSupported(atyp),
                Reply::AddressTypeNotSupported,
            );
        }
    }

    #[test]
    fn bad_request_version() {
        request_error(
            &[4, 1, 0, 1, 1, 2, 3, 4, 0, 80],
            SocksErrorKind::BadRequestVersion(4),
            Reply::GeneralFailure,
        );
    }

    #[test]
    fn bad_domains() {
        request_error(
            &[5, 1, 0, 3, 0, 0, 80],
            SocksErrorKind::EmptyDomain,
            Reply::HostUnreachable,
        );
        request_error(
            &[5, 1, 0, 3, 2, 0xc3, 0x28, 0, 80],
            SocksErrorKind::DomainNotUtf8,
            Reply::HostUnreachable,
        );
    }

    #[test]
    fn authentication_state_is_reported() {
        let mut s = SocksServer::new(creds());
        assert!(!s.is_authenticated());
        s.feed(&[5, 1, 2]).unwrap();
        assert!(
            !s.is_authenticated(),
            "method chosen, credentials not yet checked"
        );
        s.feed(&[1, 4]).unwrap();
        s.feed(b"user\x04pass").unwrap();
        assert!(s.is_authenticated());
        assert!(!s.is_done());

        let mut s = SocksServer::new(None);
        s.feed(&[5, 1, 0]).unwrap();
        assert!(s.is_authenticated());
    }

    #[test]
    fn empty_feeds_are_harmless() {
        let mut s = SocksServer::new(None);
        assert_eq!(s.feed(&[]), Ok(0));
        assert_eq!(s.poll_transmit(), None);
        s.feed(&[5, 1, 0]).unwrap();
        assert_eq!(s.feed(&[]), Ok(0));
        assert_eq!(s.feed(&connect_v4()), Ok(10));
        assert_eq!(s.feed(&[]), Ok(0));
    }

    #[test]
    fn debug_does_not_leak_the_password_being_read() {
        let mut s = SocksServer::new(creds());
        s.feed(&[5, 1, 2, 1, 4]).unwrap();
        s.feed(b"user\x0bsupersecre").unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("supersecre") && !d.contains("pass"), "{d}");
    }

    #[test]
    fn reply_for_a_relay() {
        let relay: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        assert_eq!(
            &encode_reply(Reply::Succeeded, relay)[..],
            &[5, 0, 0, 1, 127, 0, 0, 1, 0x14, 0xe9]
        );
    }
}

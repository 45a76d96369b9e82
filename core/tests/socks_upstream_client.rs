//! The upstream-proxy handshakes, `Socks5Client` and `HttpConnectClient`, against hand-written
//! proxy byte sequences fed in every split, and `Socks5Client` against a real SOCKS5 server
//! implementation (the `fast-socks5` crate) over an in-memory pipe.

use bytes::Bytes;
use linksocks_core::addr::TargetAddr;
use linksocks_core::socks::http_connect::MAX_RESPONSE_HEAD;
use linksocks_core::socks::{
    ClientProgress, Credentials, HttpConnectClient, ProxyClientError, Socks5Client,
};

/// The two machines share their driving surface.
trait Handshake {
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn feed(&mut self, input: &[u8]) -> Result<ClientProgress, ProxyClientError>;
}

impl Handshake for Socks5Client {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        Socks5Client::poll_transmit(self)
    }
    fn feed(&mut self, input: &[u8]) -> Result<ClientProgress, ProxyClientError> {
        Socks5Client::feed(self, input)
    }
}

impl Handshake for HttpConnectClient {
    fn poll_transmit(&mut self) -> Option<Bytes> {
        HttpConnectClient::poll_transmit(self)
    }
    fn feed(&mut self, input: &[u8]) -> Result<ClientProgress, ProxyClientError> {
        HttpConnectClient::feed(self, input)
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Each transmit, in order; left empty on failure, since how much was handed out before
    /// the failure depends on where the input was split.
    sent: Vec<Vec<u8>>,
    result: Result<(), ProxyClientError>,
    /// Proxy bytes left for the tunnel.
    tunnel: Vec<u8>,
}

fn drive<H: Handshake>(mut h: H, chunks: &[&[u8]]) -> Outcome {
    let mut sent = Vec::new();
    let mut tunnel = Vec::new();
    let mut done = false;
    while let Some(b) = h.poll_transmit() {
        sent.push(b.to_vec());
    }
    for chunk in chunks {
        if done {
            assert_eq!(h.feed(chunk), Ok(ClientProgress::Done { consumed: 0 }));
            tunnel.extend_from_slice(chunk);
            continue;
        }
        match h.feed(chunk) {
            Ok(ClientProgress::NeedMore { consumed }) => assert_eq!(consumed, chunk.len()),
            Ok(ClientProgress::Done { consumed }) => {
                done = true;
                tunnel.extend_from_slice(&chunk[consumed..]);
            }
            Err(e) => {
                assert_eq!(h.feed(b"x").as_ref(), Err(&e), "the error sticks");
                assert_eq!(h.poll_transmit(), None);
                return Outcome {
                    sent: Vec::new(),
                    result: Err(e),
                    tunnel,
                };
            }
        }
        while let Some(b) = h.poll_transmit() {
            sent.push(b.to_vec());
        }
    }
    assert!(done, "conversation ended before the handshake did");
    Outcome {
        sent,
        result: Ok(()),
        tunnel,
    }
}

/// Feed `proxy` whole, at every single split, every pair of splits, and byte by byte; all
/// must agree. Returns the outcome.
fn every_split<H: Handshake>(make: impl Fn() -> H, proxy: &[u8]) -> Outcome {
    let whole = drive(make(), &[proxy]);
    for i in 0..=proxy.len() {
        let (a, rest) = proxy.split_at(i);
        assert_eq!(drive(make(), &[a, rest]), whole, "split at {i}");
        for j in 0..=rest.len() {
            let (b, c) = rest.split_at(j);
            assert_eq!(drive(make(), &[a, b, c]), whole, "split at {i},{}", i + j);
        }
    }
    let singles: Vec<&[u8]> = proxy.chunks(1).collect();
    assert_eq!(drive(make(), &singles), whole, "byte by byte");
    whole
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------------------------------------
// SOCKS5 upstream

fn v4_target() -> TargetAddr {
    TargetAddr::Ip("203.0.113.9:8765".parse().unwrap())
}

const V4_REQUEST: &[u8] = &[5, 1, 0, 1, 203, 0, 113, 9, 0x22, 0x3d];
const OK_REPLY_V4: &[u8] = &[5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38];

#[test]
fn socks5_no_auth_every_split() {
    let proxy = cat(&[&[5, 0], OK_REPLY_V4, b"HTTP/1.1 101 upgrade"]);
    let out = every_split(|| Socks5Client::new(v4_target(), None), &proxy);
    assert_eq!(
        out,
        Outcome {
            sent: vec![vec![5, 1, 0], V4_REQUEST.to_vec()],
            result: Ok(()),
            tunnel: b"HTTP/1.1 101 upgrade".to_vec(),
        }
    );
}

#[test]
fn socks5_username_password_every_split() {
    let make = || {
        Socks5Client::new(
            TargetAddr::Domain("ws.example.net".into(), 443),
            Some(Credentials::new("bob", "hunter2")),
        )
    };
    // Bound address as a domain, then as IPv6: both framings must be skipped exactly.
    for reply in [
        cat(&[&[5, 0, 0, 3, 5], b"proxy", &[0, 1]]),
        cat(&[&[5, 0, 0, 4], &[0u8; 15], &[1], &[0, 1]]),
    ] {
        let proxy = cat(&[&[5, 2], &[1, 0], &reply, b"\x81\x05hello"]);
        let out = every_split(make, &proxy);
        let mut req = vec![5, 1, 0, 3, 14];
        req.extend_from_slice(b"ws.example.net");
        req.extend_from_slice(&[1, 0xbb]);
        assert_eq!(
            out,
            Outcome {
                sent: vec![
                    vec![5, 2, 0, 2],
                    cat(&[&[1, 3], b"bob", &[7], b"hunter2"]),
                    req,
                ],
                result: Ok(()),
                tunnel: b"\x81\x05hello".to_vec(),
            }
        );
    }
}

#[test]
fn socks5_proxy_may_choose_no_auth_even_when_we_have_credentials() {
    let proxy = cat(&[&[5, 0], OK_REPLY_V4]);
    let out = every_split(
        || Socks5Client::new(v4_target(), Some(Credentials::new("u", "p"))),
        &proxy,
    );
    assert_eq!(out.sent, vec![vec![5, 2, 0, 2], V4_REQUEST.to_vec()]);
    assert_eq!(out.result, Ok(()));
}

#[test]
fn socks5_reports_the_bound_address() {
    let mut c = Socks5Client::new(v4_target(), None);
    c.feed(&[5, 0]).unwrap();
    assert_eq!(c.bound_addr(), None);
    c.feed(OK_REPLY_V4).unwrap();
    assert_eq!(
        c.bound_addr(),
        Some(&TargetAddr::Ip("127.0.0.1:1080".parse().unwrap()))
    );
}

fn socks5_error(creds: Option<Credentials>, proxy: &[u8], err: ProxyClientError) {
    let out = every_split(|| Socks5Client::new(v4_target(), creds.clone()), proxy);
    assert_eq!(out.result, Err(err));
}

#[test]
fn socks5_auth_refused() {
    let creds = Some(Credentials::new("bob", "wrong"));
    socks5_error(
        creds.clone(),
        &[5, 2, 1, 1],
        ProxyClientError::AuthRejected(1),
    );
    socks5_error(
        creds,
        &[5, 2, 1, 0xff, 9, 9],
        ProxyClientError::AuthRejected(0xff),
    );
}

#[test]
fn socks5_no_acceptable_method() {
    socks5_error(None, &[5, 0xff], ProxyClientError::NoAcceptableMethod);
    socks5_error(
        Some(Credentials::new("a", "b")),
        &[5, 0xff],
        ProxyClientError::NoAcceptableMethod,
    );
}

#[test]
fn socks5_method_we_did_not_offer() {
    socks5_error(None, &[5, 2], ProxyClientError::UnexpectedMethod(2));
    socks5_error(None, &[5, 1], ProxyClientError::UnexpectedMethod(1));
}

#[test]
fn socks5_bad_version() {
    socks5_error(None, &[4, 0], ProxyClientError::BadVersion(4));
    socks5_error(None, b"HTTP/1.1 400", ProxyClientError::BadVersion(b'H'));
    socks5_error(None, &[5, 0, 4, 0, 0, 1], ProxyClientError::BadVersion(4));
}

#[test]
fn socks5_request_refused() {
    for code in [1u8, 2, 3, 4, 5, 6, 7, 8, 0x42] {
        socks5_error(
            None,
            &[5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0],
            ProxyClientError::Refused(code),
        );
    }
}

#[test]
fn socks5_reply_with_unknown_address_type() {
    socks5_error(
        None,
        &[5, 0, 5, 0, 0, 9, 1, 2],
        ProxyClientError::BadAddressType(9),
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT upstream

fn http(target: TargetAddr, creds: Option<Credentials>) -> impl Fn() -> HttpConnectClient {
    move || HttpConnectClient::new(target.clone(), creds.clone())
}

#[test]
fn http_connect_every_split() {
    let proxy = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\n\r\n\x16\x03\x01";
    let out = every_split(
        http(TargetAddr::Domain("example.com".into(), 443), None),
        proxy,
    );
    assert_eq!(
        out,
        Outcome {
            sent: vec![
                b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec()
            ],
            result: Ok(()),
            tunnel: b"\x16\x03\x01".to_vec(),
        }
    );
}

#[test]
fn http_connect_with_basic_auth_and_ipv6() {
    let proxy = b"HTTP/1.0 200 OK\r\n\r\n";
    let out = every_split(
        http(
            TargetAddr::Ip("[2001:db8::1]:8765".parse().unwrap()),
            Some(Credentials::new("Aladdin", "open sesame")),
        ),
        proxy,
    );
    assert_eq!(
        out.sent,
        vec![
            b"CONNECT [2001:db8::1]:8765 HTTP/1.1\r\nHost: [2001:db8::1]:8765\r\n\
               Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
                .to_vec()
        ]
    );
    assert_eq!(out.result, Ok(()));
    assert!(out.tunnel.is_empty());
}

#[test]
fn http_connect_accepts_any_2xx_and_bare_lf() {
    for head in [
        &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
        b"HTTP/1.1 299 Whatever\nX: y\n\n",
        b"HTTP/1.1 200 \r\n\r\n",
    ] {
        let proxy = cat(&[head, b"T"]);
        let out = every_split(http(TargetAddr::Domain("h".into(), 1), None), &proxy);
        assert_eq!(out.result, Ok(()), "{head:?}");
        assert_eq!(out.tunnel, b"T");
    }
    let mut c = HttpConnectClient::new(TargetAddr::Domain("h".into(), 1), None);
    c.feed(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert_eq!(c.status(), Some(204));
}

#[test]
fn http_connect_non_2xx_names_the_status() {
    let proxy = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n";
    let out = every_split(http(TargetAddr::Domain("h".into(), 1), None), proxy);
    let err = out.result.unwrap_err();
    assert_eq!(
        err,
        ProxyClientError::HttpStatus {
            code: 407,
            reason: "Proxy Authentication Required".into()
        }
    );
    assert!(
        err.to_string()
            .contains("407 Proxy Authentication Required"),
        "{err}"
    );
    for (head, code) in [
        (&b"HTTP/1.1 502 Bad Gateway\r\n\r\n"[..], 502),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", 403),
        (b"HTTP/1.1 100 Continue\r\n\r\n", 100),
        (b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n", 301),
    ] {
        let out = drive(http(TargetAddr::Domain("h".into(), 1), None)(), &[head]);
        assert!(
            matches!(out.result, Err(ProxyClientError::HttpStatus { code: c, .. }) if c == code),
            "{out:?}"
        );
    }
}

#[test]
fn http_connect_malformed_response() {
    for head in [
        &b"SOCKS5 is not HTTP\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ] {
        let out = every_split(http(TargetAddr::Domain("h".into(), 1), None), head);
        assert!(
            matches!(out.result, Err(ProxyClientError::HttpMalformed(_))),
            "{head:?}: {out:?}"
        );
    }
}

#[test]
fn http_connect_oversized_head_fails() {
    let make = http(TargetAddr::Domain("h".into(), 1), None);
    // Headers that never end: fail once the limit is reached, whatever the split.
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    while endless.len() < MAX_RESPONSE_HEAD + 100 {
        endless.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let expect = Err(ProxyClientError::HttpHeadTooLarge {
        limit: MAX_RESPONSE_HEAD,
    });
    assert_eq!(drive(make(), &[&endless]).result, expect);
    let singles: Vec<&[u8]> = endless.chunks(1).collect();
    assert_eq!(drive(make(), &singles).result, expect);
    for size in [1000, 4096, 16383] {
        let chunks: Vec<&[u8]> = endless.chunks(size).collect();
        assert_eq!(drive(make(), &chunks).result, expect);
    }
}

#[test]
fn http_connect_head_of_exactly_the_limit_is_accepted() {
    let make = http(TargetAddr::Domain("h".into(), 1), None);
    let mut head = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
    let pad = MAX_RESPONSE_HEAD - head.len() - 4;
    head.extend_from_slice(&vec![b'a'; pad]);
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), MAX_RESPONSE_HEAD);
    let proxy = cat(&[&head, b"tunnel"]);
    let out = drive(make(), &[&proxy]);
    assert_eq!(out.result, Ok(()));
    assert_eq!(out.tunnel, b"tunnel");
    let singles: Vec<&[u8]> = proxy.chunks(1).collect();
    assert_eq!(drive(make(), &singles), out);
    // One byte more and it no longer fits.
    let mut over = b"HTTP/1.1 200 OK\r\nX-Pad: a".to_vec();
    over.extend_from_slice(&head[over.len() - 1..]);
    assert_eq!(over.len(), MAX_RESPONSE_HEAD + 1);
    assert_eq!(
        drive(make(), &[&over]).result,
        Err(ProxyClientError::HttpHeadTooLarge {
            limit: MAX_RESPONSE_HEAD
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Socks5Client against a real SOCKS5 server implementation

mod against_fast_socks5 {
    use super::*;
    use fast_socks5::server::Socks5ServerProtocol;
    use fast_socks5::util::target_addr::TargetAddr as FsTarget;
    use fast_socks5::{ReplyError, Socks5Command};
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// Run our client on one end of a pipe until done; returns the tunnel bytes read past the
    /// handshake and the stream.
    async fn run_client(
        mut io: DuplexStream,
        mut c: Socks5Client,
    ) -> Result<(Vec<u8>, DuplexStream), ProxyClientError> {
        let mut buf = [0u8; 5];
        loop {
            while let Some(out) = c.poll_transmit() {
                io.write_all(&out).await.unwrap();
            }
            let n = io.read(&mut buf).await.unwrap();
            assert!(n > 0, "proxy closed mid-handshake");
            match c.feed(&buf[..n])? {
                ClientProgress::NeedMore { .. } => {}
                ClientProgress::Done { consumed } => return Ok((buf[consumed..n].to_vec(), io)),
            }
        }
    }

    async fn tunnel_roundtrip(tunnel_start: Vec<u8>, mut io: DuplexStream) {
        let mut got = tunnel_start;
        while got.len() < 5 {
            let mut b = [0u8; 8];
            let n = io.read(&mut b).await.unwrap();
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"hello");
        io.write_all(b"back").await.unwrap();
    }

    #[tokio::test]
    async fn connect_without_auth() {
        let (client_io, server_io) = duplex(4096);
        let server = async move {
            let proto = Socks5ServerProtocol::accept_no_auth(server_io)
                .await
                .unwrap();
            let (proto, cmd, target) = proto.read_command().await.unwrap();
            assert_eq!(cmd, Socks5Command::TCPConnect);
            let mut io = proto
                .reply_success("198.51.100.1:1080".parse().unwrap())
                .await
                .unwrap();
            io.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 4];
            io.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"back");
            target
        };
        let client = async move {
            let c = Socks5Client::new(TargetAddr::Domain("target.example".into(), 8443), None);
            let (start, io) = run_client(client_io, c).await.expect("handshake");
            tunnel_roundtrip(start, io).await;
        };
        let (target, ()) = tokio::join!(server, client);
        assert_eq!(target, FsTarget::Domain("target.example".into(), 8443));
    }

    #[tokio::test]
    async fn connect_with_password() {
        let (client_io, server_io) = duplex(4096);
        let server = async move {
            let (proto, ok) = Socks5ServerProtocol::accept_password_auth(server_io, |u, p| {
                u == "carol" && p == "pa55"
            })
            .await
            .unwrap();
            assert!(ok);
            let (proto, _cmd, target) = proto.read_command().await.unwrap();
            let mut io = proto
                .reply_success("[2001:db8::5]:1080".parse().unwrap())
                .await
                .unwrap();
            io.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 4];
            io.read_exact(&mut back).await.unwrap();
            target
        };
        let client = async move {
            let c = Socks5Client::new(
                TargetAddr::Ip("[2001:db8::9]:22".parse().unwrap()),
                Some(Credentials::new("carol", "pa55")),
            );
            let (start, io) = run_client(client_io, c).await.expect("handshake");
            tunnel_roundtrip(start, io).await;
        };
        let (target, ()) = tokio::join!(server, client);
        assert_eq!(target, FsTarget::Ip("[2001:db8::9]:22".parse().unwrap()));
    }

    #[tokio::test]
    async fn wrong_password() {
        let (client_io, server_io) = duplex(4096);
        let server = async move {
            let r = Socks5ServerProtocol::accept_password_auth(server_io, |_, _| false).await;
            assert!(r.is_err());
        };
        let client = run_client(
            client_io,
            Socks5Client::new(v4_target(), Some(Credentials::new("x", "y"))),
        );
        let ((), r) = tokio::join!(server, client);
        assert!(
            matches!(r, Err(ProxyClientError::AuthRejected(s)) if s != 0),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn request_refused() {
        let (client_io, server_io) = duplex(4096);
        let server = async move {
            let proto = Socks5ServerProtocol::accept_no_auth(server_io)
                .await
                .unwrap();
            let (proto, _, _) = proto.read_command().await.unwrap();
            proto
                .reply_error(&ReplyError::ConnectionRefused)
                .await
                .unwrap();
        };
        let client = run_client(client_io, Socks5Client::new(v4_target(), None));
        let ((), r) = tokio::join!(server, client);
        assert_eq!(r.err(), Some(ProxyClientError::Refused(5)));
    }
}

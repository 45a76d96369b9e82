//! `SocksServer` driven by the bytes of an independent, real SOCKS5 client (the `fast-socks5`
//! crate) over an in-memory pipe, with a loop shaped like the one a runtime runs: read, feed,
//! write what the machine transmits, answer the request with `encode_reply`.

use std::net::SocketAddr;
use std::sync::Arc;

use fast_socks5::client::{Config, Socks5Datagram, Socks5Stream};
use fast_socks5::util::target_addr::TargetAddr as FsTarget;
use fast_socks5::{AuthenticationMethod, ReplyError, Socks5Command, SocksError as FsError};
use linksocks_core::addr::TargetAddr;
use linksocks_core::socks::{
    decode_udp_header, encode_reply, encode_udp_header, Command, Credentials, Reply, Request,
    SocksErrorKind, SocksServer, UNSPECIFIED_BOUND,
};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UdpSocket;

/// What the server side of the pipe saw.
struct Served {
    request: Request,
    /// Bytes read past the end of the request (early data).
    early: Vec<u8>,
    io: DuplexStream,
}

/// A handshake the server ended with an error.
#[derive(Debug)]
struct Refused {
    kind: SocksErrorKind,
    _io: DuplexStream,
}

/// Run the handshake on the server end of the pipe. On success the request is answered with
/// a success reply carrying `bound`.
async fn serve(
    mut io: DuplexStream,
    creds: Option<Arc<Credentials>>,
    bound: SocketAddr,
) -> Result<Served, Refused> {
    let mut s = SocksServer::new(creds);
    // Small reads on purpose: the client's messages arrive in several pieces.
    let mut buf = [0u8; 7];
    loop {
        let n = io.read(&mut buf).await.expect("read");
        assert!(n > 0, "client closed mid-handshake");
        match s.feed(&buf[..n]) {
            Ok(consumed) => {
                while let Some(out) = s.poll_transmit() {
                    io.write_all(&out).await.unwrap();
                }
                if let Some(request) = s.take_request() {
                    io.write_all(&encode_reply(Reply::Succeeded, bound))
                        .await
                        .unwrap();
                    return Ok(Served {
                        request,
                        early: buf[consumed..n].to_vec(),
                        io,
                    });
                }
                assert_eq!(consumed, n);
            }
            Err(e) => {
                if let Some(r) = e.response() {
                    io.write_all(&r).await.unwrap();
                }
                // Kept open (not dropped) so the client reads the answer rather than a
                // broken pipe, as a runtime that flushes before closing would have it.
                return Err(Refused {
                    kind: e.kind().clone(),
                    _io: io,
                });
            }
        }
    }
}

fn password(u: &str, p: &str) -> Option<AuthenticationMethod> {
    Some(AuthenticationMethod::Password {
        username: u.into(),
        password: p.into(),
    })
}

fn server_creds() -> Option<Arc<Credentials>> {
    Some(Arc::new(Credentials::new("alice", "s3cret")))
}

/// CONNECT through the real client, then check data flows both ways after the reply.
async fn connect_case(
    target: FsTarget,
    client_auth: Option<AuthenticationMethod>,
    server_creds: Option<Arc<Credentials>>,
) -> Request {
    let (client_io, server_io) = duplex(4096);
    let client = async move {
        let mut s = Socks5Stream::use_stream(client_io, client_auth, Config::default())
            .await
            .expect("handshake");
        let bound = s
            .request(Socks5Command::TCPConnect, target)
            .await
            .expect("connect");
        assert_eq!(bound, FsTarget::Ip(UNSPECIFIED_BOUND));
        s.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        s.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"pong");
    };
    let server = async move {
        let mut served = serve(server_io, server_creds, UNSPECIFIED_BOUND)
            .await
            .expect("server handshake");
        let mut got = served.early.clone();
        while got.len() < 4 {
            let mut b = [0u8; 4];
            let n = served.io.read(&mut b).await.unwrap();
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, b"ping");
        served.io.write_all(b"pong").await.unwrap();
        served.request
    };
    let ((), request) = tokio::join!(client, server);
    request
}

#[tokio::test]
async fn connect_ipv4_no_auth() {
    let r = connect_case(FsTarget::Ip("192.0.2.7:8080".parse().unwrap()), None, None).await;
    assert_eq!(
        r,
        Request {
            command: Command::Connect,
            target: TargetAddr::Ip("192.0.2.7:8080".parse().unwrap()),
        }
    );
}

#[tokio::test]
async fn connect_ipv6_no_auth() {
    let r = connect_case(
        FsTarget::Ip("[2001:db8::42]:443".parse().unwrap()),
        None,
        None,
    )
    .await;
    assert_eq!(
        r.target,
        TargetAddr::Ip("[2001:db8::42]:443".parse().unwrap())
    );
    assert_eq!(r.command, Command::Connect);
}

#[tokio::test]
async fn connect_domain_no_auth() {
    let r = connect_case(FsTarget::Domain("example.org".into(), 80), None, None).await;
    assert_eq!(r.target, TargetAddr::Domain("example.org".into(), 80));
}

#[tokio::test]
async fn connect_with_username_password() {
    for target in [
        FsTarget::Ip("10.1.2.3:22".parse().unwrap()),
        FsTarget::Ip("[::1]:22".parse().unwrap()),
        FsTarget::Domain("intranet.example".into(), 22),
    ] {
        let r = connect_case(target.clone(), password("alice", "s3cret"), server_creds()).await;
        let expect = match target {
            FsTarget::Ip(a) => TargetAddr::Ip(a),
            FsTarget::Domain(d, p) => TargetAddr::Domain(d, p),
        };
        assert_eq!(r.target, expect);
    }
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let (client_io, server_io) = duplex(4096);
    let client = Socks5Stream::use_stream(client_io, password("alice", "guess"), Config::default());
    let server = serve(server_io, server_creds(), UNSPECIFIED_BOUND);
    let (c, s) = tokio::join!(client, server);
    assert!(
        matches!(c, Err(FsError::AuthenticationRejected(_))),
        "{c:?}"
    );
    assert_eq!(s.err().map(|r| r.kind), Some(SocksErrorKind::AuthFailed));
}

#[tokio::test]
async fn client_without_password_gets_no_acceptable_method() {
    let (client_io, server_io) = duplex(4096);
    let client = Socks5Stream::use_stream(client_io, None, Config::default());
    let server = serve(server_io, server_creds(), UNSPECIFIED_BOUND);
    let (c, s) = tokio::join!(client, server);
    // fast-socks5 reports any selected method it cannot use, 0xFF included, this way.
    assert!(
        matches!(c, Err(FsError::AuthMethodUnacceptable(ref m)) if m == &[0xFF]),
        "{c:?}"
    );
    assert_eq!(
        s.err().map(|r| r.kind),
        Some(SocksErrorKind::NoAcceptableMethod)
    );
}

#[tokio::test]
async fn bind_gets_command_not_supported() {
    let (client_io, server_io) = duplex(4096);
    let client = async move {
        let mut s = Socks5Stream::use_stream(client_io, None, Config::default())
            .await
            .unwrap();
        s.request(
            Socks5Command::TCPBind,
            FsTarget::Ip("0.0.0.0:0".parse().unwrap()),
        )
        .await
    };
    let server = serve(server_io, None, UNSPECIFIED_BOUND);
    let (c, s) = tokio::join!(client, server);
    assert!(
        matches!(c, Err(FsError::ReplyError(ReplyError::CommandNotSupported))),
        "{c:?}"
    );
    assert_eq!(
        s.err().map(|r| r.kind),
        Some(SocksErrorKind::CommandNotSupported(2))
    );
}

/// UDP ASSOCIATE end to end on loopback: the real client's datagrams reach our relay socket,
/// `decode_udp_header` reads their destinations, and our `encode_udp_header` replies are
/// understood by the client.
async fn udp_case(client_auth: Option<(&str, &str)>, server_creds: Option<Arc<Credentials>>) {
    let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let out_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let app_addr = out_sock.local_addr().unwrap();
    let (client_io, server_io) = duplex(4096);

    let client = async move {
        let dgram = match client_auth {
            Some((u, p)) => {
                Socks5Datagram::use_socket_with_password(client_io, out_sock, u, p).await
            }
            None => Socks5Datagram::use_socket(client_io, out_sock).await,
        }
        .expect("associate");
        assert_eq!(dgram.proxy_addr().unwrap(), &FsTarget::Ip(relay_addr));
        let cases: [(FsTarget, &[u8]); 3] = [
            (FsTarget::Ip("8.8.8.8:53".parse().unwrap()), b"v4 query"),
            (
                FsTarget::Ip("[2001:4860:4860::8888]:53".parse().unwrap()),
                b"v6 query",
            ),
            (FsTarget::Domain("dns.example".into(), 5353), b"name query"),
        ];
        for (to, payload) in cases {
            let sent = match to {
                FsTarget::Ip(a) => dgram.send_to(payload, a).await,
                FsTarget::Domain(ref d, p) => dgram.send_to(payload, (d.as_str(), p)).await,
            }
            .unwrap();
            assert_eq!(sent, payload.len());
            let mut buf = [0u8; 2048];
            let (n, from) = dgram.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], [b"re: ", payload].concat().as_slice());
            assert_eq!(from, to);
        }
        dgram
    };

    let server = async move {
        let served = serve(server_io, server_creds, relay_addr)
            .await
            .expect("handshake");
        assert_eq!(served.request.command, Command::UdpAssociate);
        // fast-socks5 announces "[::]:0": it does not know its address as we see it.
        assert_eq!(
            served.request.target,
            TargetAddr::Ip("[::]:0".parse().unwrap())
        );
        let mut buf = [0u8; 2048];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (n, from) = relay.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, app_addr);
            let (dst, hlen) = decode_udp_header(&buf[..n]).expect("header");
            let payload = &buf[hlen..n];
            // Answer as if from the destination, the way the SOCKS side returns replies.
            let mut reply = bytes::BytesMut::new();
            encode_udp_header(&mut reply, &dst);
            reply.extend_from_slice(b"re: ");
            reply.extend_from_slice(payload);
            relay.send_to(&reply, from).await.unwrap();
            seen.push((dst, payload.to_vec()));
        }
        (seen, served.io)
    };
    let (_dgram, (seen, _io)) = tokio::join!(client, server);
    assert_eq!(
        seen,
        vec![
            (
                TargetAddr::Ip("8.8.8.8:53".parse().unwrap()),
                b"v4 query".to_vec()
            ),
            (
                TargetAddr::Ip("[2001:4860:4860::8888]:53".parse().unwrap()),
                b"v6 query".to_vec()
            ),
            (
                TargetAddr::Domain("dns.example".into(), 5353),
                b"name query".to_vec()
            ),
        ]
    );
}

#[tokio::test]
async fn udp_associate_no_auth() {
    udp_case(None, None).await;
}

#[tokio::test]
async fn udp_associate_with_username_password() {
    udp_case(Some(("alice", "s3cret")), server_creds()).await;
}

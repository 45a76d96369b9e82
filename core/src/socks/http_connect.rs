//! The client side of an HTTP CONNECT tunnel (RFC 9110 section 9.3.6) with optional Basic
//! `Proxy-Authorization`, for the upstream-proxy feature.
//!
//! Same shape as [`super::Socks5Client`]: write what `poll_transmit` hands out, `feed` what the
//! proxy answers until [`ClientProgress::Done`].

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;

use super::client::ClientProgress;
use super::credentials::Credentials;
use super::error::ProxyClientError;
use crate::addr::TargetAddr;

/// The most response head we buffer. A proxy's answer to CONNECT is a status line and a few
/// headers; anything this large is not a proxy we can talk to.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Headers parsed per response; more is treated as malformed.
const MAX_HEADERS: usize = 64;

/// Longest reason phrase quoted in an error, so a hostile proxy cannot blow up log lines.
const MAX_REASON: usize = 200;

#[derive(Clone, Debug)]
enum State {
    Head,
    Done,
    Failed(ProxyClientError),
}

/// HTTP CONNECT through a proxy, as a sans-IO machine.
pub struct HttpConnectClient {
    state: State,
    transmit: Option<Bytes>,
    head: Vec<u8>,
    status: Option<u16>,
}

impl HttpConnectClient {
    /// A CONNECT to `target`, with `Proxy-Authorization: Basic` when credentials are given.
    ///
    /// A host name that cannot be written into a request line (empty, or with whitespace,
    /// control or non-ASCII bytes, which could otherwise inject headers) does not panic:
    /// nothing is transmitted and the first `feed` (an empty one will do) returns the error.
    /// Use [`HttpConnectClient::try_new`] to find out before dialling.
    pub fn new(target: TargetAddr, credentials: Option<Credentials>) -> Self {
        let (state, transmit) = match build_request(&target, credentials.as_ref()) {
            Ok(req) => (State::Head, Some(Bytes::from(req))),
            Err(e) => (State::Failed(e), None),
        };
        HttpConnectClient {
            state,
            transmit,
            head: Vec::new(),
            status: None,
        }
    }

    /// [`HttpConnectClient::new`], refusing up front a host that cannot be requested.
    pub fn try_new(
        target: TargetAddr,
        credentials: Option<Credentials>,
    ) -> Result<Self, ProxyClientError> {
        let c = Self::new(target, credentials);
        match &c.state {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(c),
        }
    }

    /// The request, handed out once.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.take()
    }

    /// The 2xx status the proxy answered with, once done.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Feed bytes received from the proxy, in any split.
    pub fn feed(&mut self, input: &[u8]) -> Result<ClientProgress, ProxyClientError> {
        match &self.state {
            State::Head => {}
            State::Done => return Ok(ClientProgress::Done { consumed: 0 }),
            State::Failed(e) => return Err(e.clone()),
        }
        match self.read_head(input) {
            Ok(p) => Ok(p),
            Err(e) => {
                self.transmit = None;
                self.head = Vec::new();
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn read_head(&mut self, input: &[u8]) -> Result<ClientProgress, ProxyClientError> {
        let old = self.head.len();
        let room = MAX_RESPONSE_HEAD - old;
        self.head.extend_from_slice(&input[..input.len().min(room)]);
        // A head ends with an empty line, so its last bytes are "\n\n" or "\n\r\n". Only try
        // the parser when such an ending appeared in the new bytes (one-byte feeds would
        // otherwise re-parse the whole buffer each time).
        let scan_from = old.saturating_sub(2);
        if ends_in_window(&self.head[scan_from..]) {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.head) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    if !(200..300).contains(&code) {
                        let reason = resp.reason.unwrap_or("").chars().take(MAX_REASON).collect();
                        return Err(ProxyClientError::HttpStatus { code, reason });
                    }
                    self.status = Some(code);
                    self.state = State::Done;
                    self.head = Vec::new();
                    // The head began before this input (at `old`); what follows it is tunnel.
                    return Ok(ClientProgress::Done {
                        consumed: n.saturating_sub(old),
                    });
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(ProxyClientError::HttpMalformed(e.to_string())),
            }
        }
        if self.head.len() >= MAX_RESPONSE_HEAD {
            return Err(ProxyClientError::HttpHeadTooLarge {
                limit: MAX_RESPONSE_HEAD,
            });
        }
        Ok(ClientProgress::NeedMore {
            consumed: input.len(),
        })
    }
}

/// Whether `w` contains a possible end of a head: `\n\n` or `\n\r\n`.
fn ends_in_window(w: &[u8]) -> bool {
    w.windows(2).any(|p| p == b"\n\n") || w.windows(3).any(|p| p == b"\n\r\n")
}

fn build_request(
    target: &TargetAddr,
    credentials: Option<&Credentials>,
) -> Result<Vec<u8>, ProxyClientError> {
    let authority = match target {
        TargetAddr::Ip(SocketAddr::V4(a)) => format!("{}:{}", a.ip(), a.port()),
        // Without the scope id: the proxy cannot use ours.
        TargetAddr::Ip(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
        TargetAddr::Domain(d, port) => {
            if d.is_empty() {
                return Err(ProxyClientError::EmptyDomain);
            }
            if !d.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ProxyClientError::InvalidHost(
                    d.chars().take(MAX_REASON).collect(),
                ));
            }
            if d.contains(':') {
                // An IPv6 literal that came in as a name.
                format!(
                    "[{}]:{port}",
                    d.trim_start_matches('[').trim_end_matches(']')
                )
            } else {
                format!("{d}:{port}")
            }
        }
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = credentials {
        let mut userpass = Vec::with_capacity(c.username().len() + 1 + c.password().len());
        userpass.extend_from_slice(c.username());
        userpass.push(b':');
        userpass.extend_from_slice(c.password());
        req.push_str("Proxy-Authorization: Basic ");
        req.push_str(&BASE64.encode(&userpass));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    Ok(req.into_bytes())
}

impl std::fmt::Debug for HttpConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `transmit` holds the Basic credentials; leave it out.
        f.debug_struct("HttpConnectClient")
            .field("state", &self.state)
            .field("buffered", &self.head.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes() {
        let r = |t: TargetAddr| String::from_utf8(build_request(&t, None).unwrap()).unwrap();
        assert_eq!(
            r(TargetAddr::Ip("1.2.3.4:80".parse().unwrap())),
            "CONNECT 1.2.3.4:80 HTTP/1.1\r\nHost: 1.2.3.4:80\r\n\r\n"
        );
        assert_eq!(
            r(TargetAddr::Ip("[::1]:443".parse().unwrap())),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
        );
        assert_eq!(
            r(TargetAddr::Domain("::1".into(), 443)),
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
        );
        let with_auth = build_request(
            &TargetAddr::Domain("example.com".into(), 443),
            Some(&Credentials::new("Aladdin", "open sesame")),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(with_auth).unwrap(),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn hosts_that_would_inject_are_refused() {
        for bad in ["a b", "a\r\nX-Evil: 1", "\u{e9}.example", "", "tab\t"] {
            let t = TargetAddr::Domain(bad.into(), 80);
            assert!(
                HttpConnectClient::try_new(t.clone(), None).is_err(),
                "{bad:?}"
            );
            let mut c = HttpConnectClient::new(t, None);
            assert_eq!(c.poll_transmit(), None);
            assert!(c.feed(&[]).is_err());
        }
    }

    #[test]
    fn debug_hides_the_credentials() {
        let c = HttpConnectClient::new(
            TargetAddr::Domain("h".into(), 1),
            Some(Credentials::new("u", "topsecret")),
        );
        let d = format!("{c:?}");
        assert!(
            !d.contains("topsecret") && !d.contains(&BASE64.encode(b"u:topsecret")),
            "{d}"
        );
    }
}

//! The client side of a SOCKS5 CONNECT, for the upstream-proxy feature: reaching the WebSocket
//! server (client role) or the targets (server role) through a SOCKS5 proxy.
//!
//! Drive it like the server machine: write what [`Socks5Client::poll_transmit`] hands out,
//! [`Socks5Client::feed`] what the proxy sends, repeat until [`ClientProgress::Done`]; the
//! bytes of that last input after `consumed` already belong to the tunnel.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::addr::{self, AddrError};
use super::buf::MsgBuf;
use super::credentials::Credentials;
use super::error::ProxyClientError;
use super::SOCKS5_VERSION;
use super::{AUTH_VERSION, METHOD_NONE_ACCEPTABLE, METHOD_NO_AUTH, METHOD_USERNAME_PASSWORD};
use crate::addr::TargetAddr;

/// How far a proxy handshake got with the bytes fed so far.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum ClientProgress {
    /// The handshake goes on; all of the input was consumed.
    NeedMore {
        /// Bytes of the input used (all of it).
        consumed: usize,
    },
    /// The tunnel is open. Input bytes after `consumed` belong to the tunnel. Once done, every
    /// further call reports `Done { consumed: 0 }`.
    Done {
        /// Bytes of the input that were the proxy's last answer.
        consumed: usize,
    },
}

/// Longest proxy message: the reply with a domain, `VER REP RSV ATYP LEN NAME(255) PORT(2)`.
const BUF_LEN: usize = 4 + 1 + 255 + 2;

#[derive(Clone, Debug)]
enum State {
    Method,
    Auth,
    Reply,
    Done,
    Failed(ProxyClientError),
}

/// SOCKS5 CONNECT through a proxy, as a sans-IO machine.
///
/// Offers "no authentication" and, when credentials are given, username/password too (the
/// proxy picks); the request is sent only after the method is settled, never optimistically.
pub struct Socks5Client {
    target: TargetAddr,
    credentials: Option<Credentials>,
    state: State,
    msg: MsgBuf<BUF_LEN>,
    // A queue, not a slot: with a pipelining (or hostile) proxy one `feed` can complete
    // several steps, each with something to send, before the caller drains them.
    transmit: VecDeque<Bytes>,
    bound: Option<TargetAddr>,
}

impl Socks5Client {
    /// A handshake to CONNECT to `target`.
    ///
    /// A target or credentials that SOCKS5 cannot carry (empty domain, domain or credential
    /// over 255 bytes) do not panic: nothing is transmitted and the first `feed` (an empty one
    /// will do) returns the error. Use [`Socks5Client::try_new`] to find out before dialling.
    pub fn new(target: TargetAddr, credentials: Option<Credentials>) -> Self {
        let problem = Self::check(&target, credentials.as_ref()).err();
        let greeting: &'static [u8] = if credentials.is_some() {
            &[SOCKS5_VERSION, 2, METHOD_NO_AUTH, METHOD_USERNAME_PASSWORD]
        } else {
            &[SOCKS5_VERSION, 1, METHOD_NO_AUTH]
        };
        let (state, transmit) = match problem {
            Some(e) => (State::Failed(e), VecDeque::new()),
            None => (
                State::Method,
                VecDeque::from([Bytes::from_static(greeting)]),
            ),
        };
        Socks5Client {
            target,
            credentials,
            state,
            msg: MsgBuf::new(),
            transmit,
            bound: None,
        }
    }

    /// [`Socks5Client::new`], refusing up front what SOCKS5 cannot carry.
    pub fn try_new(
        target: TargetAddr,
        credentials: Option<Credentials>,
    ) -> Result<Self, ProxyClientError> {
        Self::check(&target, credentials.as_ref())?;
        Ok(Self::new(target, credentials))
    }

    fn check(
        target: &TargetAddr,
        credentials: Option<&Credentials>,
    ) -> Result<(), ProxyClientError> {
        if let TargetAddr::Domain(d, _) = target {
            if d.is_empty() {
                return Err(ProxyClientError::EmptyDomain);
            }
            if d.len() > 255 {
                return Err(ProxyClientError::TooLong {
                    field: "target host name",
                    len: d.len(),
                });
            }
        }
        if let Some(c) = credentials {
            for (field, v) in [
                ("proxy username", c.username()),
                ("proxy password", c.password()),
            ] {
                if v.len() > 255 {
                    return Err(ProxyClientError::TooLong {
                        field,
                        len: v.len(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Bytes to write to the proxy now (the greeting, then the credentials and/or the request
    /// as the handshake gets to them), each handed out once.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The address the proxy reported binding for the tunnel, once done.
    pub fn bound_addr(&self) -> Option<&TargetAddr> {
        self.bound.as_ref()
    }

    /// Feed bytes received from the proxy, in any split.
    pub fn feed(&mut self, input: &[u8]) -> Result<ClientProgress, ProxyClientError> {
        let mut pos = 0;
        loop {
            let step = match self.state {
                State::Method => self.method(input, &mut pos),
                State::Auth => self.auth(input, &mut pos),
                State::Reply => self.reply(input, &mut pos),
                State::Done => return Ok(ClientProgress::Done { consumed: pos }),
                State::Failed(ref e) => return Err(e.clone()),
            };
            match step {
                Ok(true) => self.msg.clear(),
                Ok(false) => return Ok(ClientProgress::NeedMore { consumed: pos }),
                Err(e) => {
                    self.transmit.clear();
                    self.state = State::Failed(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// `VER METHOD`
    fn method(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, ProxyClientError> {
        if !self
            .msg
            .collect(input, pos, |b| version_first(b).map(|()| 2))?
        {
            return Ok(false);
        }
        match self.msg.bytes()[1] {
            METHOD_NO_AUTH => self.send_request(),
            METHOD_USERNAME_PASSWORD => {
                let Some(c) = &self.credentials else {
                    return Err(ProxyClientError::UnexpectedMethod(METHOD_USERNAME_PASSWORD));
                };
                let mut out = BytesMut::with_capacity(3 + c.username().len() + c.password().len());
                out.put_u8(AUTH_VERSION);
                out.put_u8(c.username().len() as u8);
                out.put_slice(c.username());
                out.put_u8(c.password().len() as u8);
                out.put_slice(c.password());
                self.transmit.push_back(out.freeze());
                self.state = State::Auth;
            }
            METHOD_NONE_ACCEPTABLE => return Err(ProxyClientError::NoAcceptableMethod),
            other => return Err(ProxyClientError::UnexpectedMethod(other)),
        }
        Ok(true)
    }

    /// RFC 1929 status: `VER STATUS`. Only the status is checked: some proxies answer the
    /// sub-negotiation with version 5 instead of 1, and what matters is the verdict.
    fn auth(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, ProxyClientError> {
        if !self
            .msg
            .collect(input, pos, |_| Ok::<_, ProxyClientError>(2))?
        {
            return Ok(false);
        }
        match self.msg.bytes()[1] {
            0 => {
                self.send_request();
                Ok(true)
            }
            status => Err(ProxyClientError::AuthRejected(status)),
        }
    }

    /// `VER REP RSV ATYP BND.ADDR BND.PORT`
    fn reply(&mut self, input: &[u8], pos: &mut usize) -> Result<bool, ProxyClientError> {
        let complete = self.msg.collect(input, pos, |b| {
            version_first(b)?;
            // A refusal is final whatever follows; no need to wait for the address.
            if let Some(&rep) = b.get(1) {
                if rep != 0 {
                    return Err(ProxyClientError::Refused(rep));
                }
            }
            if b.len() < 4 {
                return Ok(4);
            }
            addr::wire_len(&b[3..]).map(|n| 3 + n).map_err(|e| match e {
                AddrError::BadType(t) => ProxyClientError::BadAddressType(t),
                _ => ProxyClientError::BadAddressType(b[3]),
            })
        })?;
        if !complete {
            return Ok(false);
        }
        // The bound address is informative only; a name we cannot represent does not fail the
        // tunnel the proxy just opened.
        self.bound = addr::parse(&self.msg.bytes()[3..]).ok();
        self.state = State::Done;
        Ok(true)
    }

    fn send_request(&mut self) {
        let mut out = BytesMut::with_capacity(3 + BUF_LEN);
        out.put_slice(&[SOCKS5_VERSION, 0x01, 0x00]);
        // `check` ran in `new`, so the target is encodable here.
        let written = addr::put(&mut out, &self.target);
        debug_assert!(written);
        self.transmit.push_back(out.freeze());
        self.state = State::Reply;
    }
}

fn version_first(b: &[u8]) -> Result<(), ProxyClientError> {
    match b.first() {
        Some(&v) if v != SOCKS5_VERSION => Err(ProxyClientError::BadVersion(v)),
        _ => Ok(()),
    }
}

impl std::fmt::Debug for Socks5Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5Client")
            .field("target", &self.target)
            .field("credentials", &self.credentials)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> TargetAddr {
        TargetAddr::Domain("example.com".into(), 443)
    }

    #[test]
    fn no_auth_connect() {
        let mut c = Socks5Client::new(domain(), None);
        assert_eq!(c.poll_transmit().as_deref(), Some(&[5u8, 1, 0][..]));
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(
            c.feed(&[5, 0]),
            Ok(ClientProgress::NeedMore { consumed: 2 })
        );
        let mut req = vec![5, 1, 0, 3, 11];
        req.extend_from_slice(b"example.com");
        req.extend_from_slice(&[1, 0xbb]);
        assert_eq!(c.poll_transmit().as_deref(), Some(&req[..]));
        assert_eq!(
            c.feed(&[5, 0, 0, 1, 10, 0, 0, 1, 0, 80, b'x']),
            Ok(ClientProgress::Done { consumed: 10 })
        );
        assert_eq!(
            c.bound_addr(),
            Some(&TargetAddr::Ip("10.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(c.feed(b"tunnel"), Ok(ClientProgress::Done { consumed: 0 }));
        assert_eq!(c.poll_transmit(), None);
    }

    #[test]
    fn answers_pipelined_in_one_read_keep_every_transmit() {
        let mut c = Socks5Client::new(domain(), Some(Credentials::new("u", "p")));
        assert_eq!(c.poll_transmit().as_deref(), Some(&[5u8, 2, 0, 2][..]));
        let reply = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let all = [&[5u8, 2, 1, 0][..], &reply].concat();
        assert_eq!(
            c.feed(&all),
            Ok(ClientProgress::Done {
                consumed: all.len()
            })
        );
        assert_eq!(
            c.poll_transmit().as_deref(),
            Some(&[1u8, 1, b'u', 1, b'p'][..])
        );
        assert_eq!(c.poll_transmit().map(|b| b[3]), Some(3), "then the request");
        assert_eq!(c.poll_transmit(), None);
    }

    #[test]
    fn unrepresentable_inputs_fail_without_panicking() {
        let mut c = Socks5Client::new(TargetAddr::Domain(String::new(), 1), None);
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(c.feed(&[]), Err(ProxyClientError::EmptyDomain));
        let long = TargetAddr::Domain("a".repeat(256), 1);
        assert!(matches!(
            Socks5Client::try_new(long, None),
            Err(ProxyClientError::TooLong { len: 256, .. })
        ));
        let creds = Credentials::new(vec![b'u'; 256], "p");
        assert!(matches!(
            Socks5Client::try_new(domain(), Some(creds)),
            Err(ProxyClientError::TooLong {
                field: "proxy username",
                ..
            })
        ));
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Socks5Client::new(domain(), Some(Credentials::new("u", "s3cr3t")));
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}

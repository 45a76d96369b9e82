//! Feed arbitrary bytes, cut into arbitrary chunks, to the HTTP proxy server machine, with and
//! without credentials configured, optionally behind a prefix that gets the fuzzer past the
//! request line sooner.
//!
//! Oracle: besides "no panic", the outcome (the request, the early data left over, the error
//! and its response) must not depend on the cut, the consumption contract of `feed` must hold
//! on every call, and what the machine hands out must be well-formed: a forwarded head is
//! exactly one request head, CRLF throughout, with `Host` first, `Connection: close` last and no
//! hop-by-hop field in between; a target is one the wire can carry; a response is the fixed
//! answer for its failure.
#![no_main]

#[path = "common/cuts.rs"]
mod cuts;

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use linksocks_core::addr::TargetAddr;
use linksocks_core::socks::http_proxy::MAX_REQUEST_HEAD;
use linksocks_core::socks::{
    error_response, Credentials, HttpProxyErrorKind, HttpProxyServer, HttpRequest, HttpRequestKind,
};

const PREFIXES: [&[u8]; 6] = [
    b"",
    b"GET http://",
    b"CONNECT ",
    b"POST http://h/ HTTP/1.1\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nProxy-Authorization: Basic ",
    b"GET http://[::1]:8080/ HTTP/1.0\r\nConnection: ",
];

const REMOVED: [&str; 8] = [
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "upgrade",
    "host",
];

#[derive(Debug, PartialEq)]
struct Outcome {
    request: Option<HttpRequest>,
    consumed: usize,
    rest: Vec<u8>,
    error: Option<HttpProxyErrorKind>,
    response: Option<Vec<u8>>,
}

fn drive(creds: Option<Arc<Credentials>>, chunks: &[&[u8]]) -> Outcome {
    let mut s = HttpProxyServer::new(creds);
    let mut out = Outcome {
        request: None,
        consumed: 0,
        rest: Vec::new(),
        error: None,
        response: None,
    };
    for chunk in chunks {
        if out.request.is_some() {
            assert_eq!(s.feed(chunk).ok(), Some(0));
            out.rest.extend_from_slice(chunk);
            continue;
        }
        match s.feed(chunk) {
            Ok(n) => {
                assert!(n <= chunk.len());
                out.consumed += n;
                match s.take_request() {
                    Some(r) => {
                        assert!(s.is_done());
                        assert!(s.take_request().is_none());
                        out.request = Some(r);
                        out.rest.extend_from_slice(&chunk[n..]);
                    }
                    None => {
                        assert!(!s.is_done());
                        assert_eq!(n, chunk.len());
                    }
                }
            }
            Err(e) => {
                assert_eq!(e.response(), e.failure().map(error_response));
                let _ = e.to_string();
                assert!(!s.is_done());
                let again = s.feed(chunk).unwrap_err();
                assert_eq!(again.kind(), &HttpProxyErrorKind::AlreadyFailed);
                assert!(again.response().is_none());
                out.consumed = 0;
                out.response = e.response().map(|r| r.to_vec());
                out.error = Some(e.kind().clone());
                break;
            }
        }
    }
    assert!(out.consumed <= MAX_REQUEST_HEAD);
    if let Some(r) = &out.request {
        check_request(r, out.consumed);
    }
    out
}

fn check_request(r: &HttpRequest, consumed: usize) {
    assert_ne!(r.target.port(), 0);
    if let TargetAddr::Domain(d, _) = &r.target {
        assert!(!d.is_empty() && d.len() <= 255);
        assert!(!d
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b':'));
    }
    let HttpRequestKind::Forward { head } = &r.kind else {
        return;
    };
    // The request line shrinks to origin form and Host is at most a bracketed 255-byte host
    // with a port: the rewrite cannot grow the head by more than that and the fixed fields.
    assert!(
        head.len() <= consumed + 300,
        "{} > {consumed} + 300",
        head.len()
    );
    // CRLF-terminated lines, no stray CR or LF, the blank line only at the end.
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .expect("ends with a blank line");
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let line = if i + 1 < lines.len() {
            line.strip_suffix(b"\r").expect("CRLF")
        } else {
            line
        };
        assert!(
            !line.is_empty() && !line.contains(&b'\r'),
            "stray CR or blank line"
        );
    }
    let text = |l: &[u8]| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned();
    let request_line = text(lines[0]);
    let mut parts = request_line.split(' ');
    assert!(parts.next().is_some_and(|m| !m.is_empty()));
    assert!(parts.next().is_some_and(|p| p.starts_with('/')));
    assert!(matches!(parts.next(), Some("HTTP/1.0" | "HTTP/1.1")));
    assert!(parts.next().is_none());
    assert!(lines.len() >= 3);
    assert!(text(lines[1]).starts_with("Host: "));
    assert_eq!(text(lines[lines.len() - 1]), "Connection: close");
    for line in &lines[2..lines.len() - 1] {
        let line = text(line);
        let (name, _) = line.split_once(": ").expect("name: value");
        let name = name.to_ascii_lowercase();
        assert!(!REMOVED.contains(&name.as_str()), "{name} forwarded");
        assert_ne!(name, "connection");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, tail)) = rest.split_first() else {
        return;
    };
    let creds = (flags & 1 == 1).then(|| Arc::new(Credentials::new("user", "pass")));
    let prefix = PREFIXES[usize::from(flags >> 3) % PREFIXES.len()];
    let mut input = prefix.to_vec();
    input.extend_from_slice(tail);
    let input = &input[..];

    let chunks = cuts::cuts(
        input,
        u32::from(seed) | (u32::from(flags) << 8),
        if flags & 2 == 2 { 3 } else { 64 },
    );

    cuts::same_however_cut(input, &chunks, flags & 4 == 4, |c| drive(creds.clone(), c));
});

//! Feed arbitrary bytes, cut into arbitrary chunks, to the SOCKS5 server handshake, with and
//! without credentials configured.
//!
//! Oracle: besides "no panic", the outcome (bytes written to the application, the request,
//! the early data left over, the error) must not depend on how the input was split, and the
//! consumption contract of `feed` must hold on every call.
#![no_main]

#[path = "common/cuts.rs"]
mod cuts;

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use linksocks_core::socks::{Credentials, Request, SocksErrorKind, SocksServer};

#[derive(Debug, PartialEq)]
struct Outcome {
    written: Vec<u8>,
    request: Option<Request>,
    rest: Vec<u8>,
    error: Option<SocksErrorKind>,
}

fn drive(creds: Option<Arc<Credentials>>, chunks: &[&[u8]]) -> Outcome {
    let mut s = SocksServer::new(creds);
    let mut out = Outcome {
        written: Vec::new(),
        request: None,
        rest: Vec::new(),
        error: None,
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
                while let Some(b) = s.poll_transmit() {
                    assert!(!b.is_empty());
                    out.written.extend_from_slice(&b);
                }
                match s.take_request() {
                    Some(r) => {
                        assert!(s.is_authenticated());
                        assert!(s.take_request().is_none());
                        out.request = Some(r);
                        out.rest.extend_from_slice(&chunk[n..]);
                    }
                    None => assert_eq!(n, chunk.len()),
                }
            }
            Err(e) => {
                assert!(s.poll_transmit().is_none());
                if let Some(r) = e.response() {
                    assert!(!r.is_empty() && r.len() <= 4 + 22);
                    out.written.extend_from_slice(&r);
                }
                let _ = e.to_string();
                assert!(s.feed(chunk).is_err());
                out.error = Some(e.kind().clone());
                break;
            }
        }
    }
    // Nothing is ever written before the server has seen a full greeting, and a handshake
    // writes at most: method selection, auth status, an error reply.
    assert!(out.written.len() <= 2 + 2 + 22);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&seed, input)) = rest.split_first() else {
        return;
    };
    let creds = (flags & 1 == 1).then(|| Arc::new(Credentials::new("user", "pass")));

    let chunks = cuts::cuts(
        input,
        u32::from(seed) | (u32::from(flags) << 8),
        if flags & 2 == 2 { 3 } else { 24 },
    );

    cuts::same_however_cut(input, &chunks, flags & 4 == 4, |c| drive(creds.clone(), c));
});

//! Fuzz the LinkSocks message decoder with arbitrary bytes.
//!
//! Properties checked on every input:
//! - `decode` never panics and never inflates past the (small) limit;
//! - whatever decodes is encodable again (direct-transport messages excepted: we recognise
//!   them but do not implement them), and decoding the re-encoded frame gives the same message.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use linksocks_core::wire::{decode, encode, DecodeLimits, Message};

/// Small enough that a gzip bomb costs little, large enough for real payloads.
const MAX_INFLATED: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_inflated: MAX_INFLATED,
    };
    let Ok(msg) = decode(Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    if let Message::Data(d) = &msg {
        assert!(d.payload.len() <= MAX_INFLATED, "inflate limit ignored");
    }
    if matches!(msg, Message::DirectTransport { .. }) {
        return;
    }
    let mut again = BytesMut::new();
    if let Err(e) = encode(&msg, &mut again) {
        panic!("decoded message does not encode: {e}: {msg:?}");
    }
    match decode(again.freeze(), &limits) {
        Ok(back) => assert_eq!(back, msg, "re-encoded message decodes differently"),
        Err(e) => panic!("re-encoded message does not decode: {e}: {msg:?}"),
    }
});

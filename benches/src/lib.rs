//! What the criterion benches share: their input data.

use bytes::Bytes;

/// `len` incompressible bytes (xorshift64), like TLS records: what most tunnelled traffic
/// looks like. The same bytes every run.
pub fn noise(len: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

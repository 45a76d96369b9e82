//! gzip (RFC 1952) for Data payloads, on flate2's pure-Rust miniz_oxide backend.
//!
//! Inflating is bounded: a peer cannot make us allocate more than the configured limit, however
//! well its payload compresses.

use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::error::WireError;

/// Level used for outgoing payloads. Level 1 keeps compression cheaper than sending when the
/// link is fast; callers only compress payloads that were judged compressible.
pub const LEVEL: u32 = 1;

/// Append the gzip stream of `plain` to `dst`.
pub fn compress_into(plain: &[u8], dst: &mut BytesMut) {
    let mut enc = GzEncoder::new(dst.writer(), flate2::Compression::new(LEVEL));
    // Writing into a BytesMut cannot fail.
    enc.write_all(plain).expect("write to BytesMut");
    enc.finish().expect("finish into BytesMut");
}

/// gzip `plain` into a fresh buffer.
pub fn compress(plain: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(plain.len() / 2 + 64);
    compress_into(plain, &mut out);
    out.freeze()
}

/// Inflate a gzip payload, refusing to produce more than `limit` bytes.
pub fn decompress(gz: &[u8], limit: usize) -> Result<Bytes, WireError> {
    let mut out = Vec::with_capacity(gz.len().saturating_mul(2).min(limit).min(1 << 20));
    // One byte past the limit tells "exactly the limit" from "more". Saturating: a limit of
    // `usize::MAX` ("unbounded") must not wrap to a take of zero bytes.
    let mut dec = MultiGzDecoder::new(gz).take((limit as u64).saturating_add(1));
    dec.read_to_end(&mut out)
        .map_err(|e| WireError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(WireError::InflateLimit { limit });
    }
    Ok(Bytes::from(out))
}

/// Would gzip pay for itself on this payload? Compresses a sample from the middle and asks for
/// a saving of at least an eighth. Incompressible data (TLS, media, archives) is the common case
/// and is then sent plain: the wire stays valid either way, since compression is per message.
pub fn worth_compressing(plain: &[u8]) -> bool {
    const SAMPLE: usize = 8 << 10;
    if plain.len() < 1024 {
        return false;
    }
    let start = (plain.len() / 2).saturating_sub(SAMPLE / 2);
    let sample = &plain[start..(start + SAMPLE).min(plain.len())];
    let mut enc = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(sample.len()),
        flate2::Compression::new(LEVEL),
    );
    enc.write_all(sample).expect("write to Vec");
    let packed = enc.finish().expect("finish into Vec");
    packed.len() * 8 < sample.len() * 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let plain = vec![b'a'; 100_000];
        let gz = compress(&plain);
        assert!(gz.len() < 1000);
        assert_eq!(decompress(&gz, 100_000).unwrap(), plain);
    }

    #[test]
    fn inflate_is_bounded() {
        let gz = compress(&vec![0u8; 1 << 20]);
        assert_eq!(
            decompress(&gz, 1000),
            Err(WireError::InflateLimit { limit: 1000 })
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            decompress(b"not gzip", 10),
            Err(WireError::Gzip(_))
        ));
    }

    #[test]
    fn sampling_tells_text_from_noise() {
        assert!(worth_compressing(&vec![b'x'; 64 << 10]));
        let mut noise = vec![0u8; 64 << 10];
        let mut ids = crate::ids::SeededIds::new(3);
        crate::ids::IdSource::fill(&mut ids, &mut noise);
        assert!(!worth_compressing(&noise));
    }
}

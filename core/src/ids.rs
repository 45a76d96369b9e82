//! Identifiers. Channel and instance ids are random UUIDs on the wire; the machines draw them
//! from an [`IdSource`] the caller supplies, so a seeded source makes a run reproducible.

use std::fmt;

/// 16 raw bytes of a UUID naming one channel (a proxied stream or UDP association).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChannelId(pub [u8; 16]);

/// 16 raw bytes of a UUID naming one client process (sent in Auth / the URL query).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InstanceId(pub [u8; 16]);

/// Random bytes for ids and generated tokens. The real runtimes use the OS generator; the
/// simulation uses a seeded one.
pub trait IdSource: Send {
    /// Fill `out` with fresh random bytes.
    fn fill(&mut self, out: &mut [u8]);
}

impl<F: FnMut(&mut [u8]) + Send> IdSource for F {
    fn fill(&mut self, out: &mut [u8]) {
        self(out)
    }
}

/// Turn 16 random bytes into a version-4 UUID layout, as the reference's `uuid.New()` does.
fn v4(mut b: [u8; 16]) -> [u8; 16] {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

impl ChannelId {
    /// A fresh random channel id.
    pub fn random(ids: &mut dyn IdSource) -> Self {
        let mut b = [0u8; 16];
        ids.fill(&mut b);
        ChannelId(v4(b))
    }
}

impl InstanceId {
    /// A fresh random instance id.
    pub fn random(ids: &mut dyn IdSource) -> Self {
        let mut b = [0u8; 16];
        ids.fill(&mut b);
        InstanceId(v4(b))
    }
}

/// A random token of `len` characters from `[A-Za-z0-9]`, for generated tokens.
pub fn random_token(ids: &mut dyn IdSource, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = vec![0u8; len];
    ids.fill(&mut raw);
    // 256 % 62 != 0 leaves a bias of under 2 %; acceptable for tokens of 16+ characters.
    raw.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn fmt_uuid(b: &[u8; 16], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}", uuid::Uuid::from_bytes(*b).hyphenated())
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_uuid(&self.0, f)
    }
}
impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_uuid(&self.0, f)
    }
}
impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_uuid(&self.0, f)
    }
}
impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_uuid(&self.0, f)
    }
}

/// A small deterministic generator (SplitMix64) for simulations, fuzzing and tests (with the
/// `internals` feature).
#[derive(Clone, Debug)]
#[cfg(any(test, feature = "internals"))]
pub struct SeededIds(u64);

#[cfg(any(test, feature = "internals"))]
impl SeededIds {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededIds(seed)
    }

    /// The next value of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(any(test, feature = "internals"))]
impl IdSource for SeededIds {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v4_and_reproducible() {
        let a = ChannelId::random(&mut SeededIds::new(7));
        let b = ChannelId::random(&mut SeededIds::new(7));
        assert_eq!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 2);
        assert_eq!(a.to_string().len(), 36);
    }

    #[test]
    fn tokens_use_the_alphabet() {
        let t = random_token(&mut SeededIds::new(1), 32);
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

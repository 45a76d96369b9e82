//! Verifiable byte streams. Every stream in the simulation is a window on a shared block of
//! bytes, starting at an offset of its own, so a receiver checks any chunk at any stream offset
//! with one `memcmp` and without keeping what it received.

use std::sync::Arc;

use bytes::Bytes;

use super::rng::Rng;

/// Length of the shared blocks: prime, so that streams with different starts never line up.
const BLOCK: usize = 65_521;

/// The shared blocks of one simulation run.
#[derive(Clone)]
pub struct Blocks {
    /// Incompressible bytes.
    pub noise: Arc<Vec<u8>>,
    /// Text-like bytes that gzip shrinks (exercises the compressed Data path).
    pub text: Arc<Vec<u8>>,
}

impl Blocks {
    pub fn new(rng: &mut Rng) -> Self {
        // Doubled so any window of up to BLOCK bytes is one contiguous slice.
        let mut noise = vec![0u8; BLOCK];
        rng.fill(&mut noise);
        let words: [&[u8]; 8] = [
            b"linksocks ",
            b"tunnel ",
            b"socks5 ",
            b"websocket ",
            b"channel ",
            b"data ",
            b"\n",
            b"0123456789 ",
        ];
        let mut text = Vec::with_capacity(BLOCK + 16);
        while text.len() < BLOCK {
            let w: &[u8] = words[rng.usize(0..words.len())];
            text.extend_from_slice(w);
        }
        text.truncate(BLOCK);
        let double = |v: Vec<u8>| {
            let mut d = v.clone();
            d.extend_from_slice(&v);
            Arc::new(d)
        };
        Blocks {
            noise: double(noise),
            text: double(text),
        }
    }
}

/// One stream's content: byte `i` is `block[(start + i) % BLOCK]`.
#[derive(Clone)]
pub struct Pattern {
    block: Arc<Vec<u8>>,
    start: usize,
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern(start {})", self.start)
    }
}

impl Pattern {
    pub fn new(blocks: &Blocks, compressible: bool, start: u64) -> Self {
        Pattern {
            block: if compressible {
                blocks.text.clone()
            } else {
                blocks.noise.clone()
            },
            start: (start % BLOCK as u64) as usize,
        }
    }

    /// `len` bytes of the stream from `offset`.
    pub fn bytes(&self, offset: u64, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len);
        let mut pos = self.pos(offset);
        let mut left = len;
        while left > 0 {
            let n = left.min(BLOCK);
            out.extend_from_slice(&self.block[pos..pos + n]);
            pos = (pos + n) % BLOCK;
            left -= n;
        }
        Bytes::from(out)
    }

    /// Whether `data` is the stream's content at `offset`. On a mismatch, the index of the
    /// first wrong byte.
    pub fn check(&self, offset: u64, data: &[u8]) -> Result<(), usize> {
        let mut pos = self.pos(offset);
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(BLOCK);
            let want = &self.block[pos..pos + n];
            let got = &data[done..done + n];
            if want != got {
                let i = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
                return Err(done + i);
            }
            pos = (pos + n) % BLOCK;
            done += n;
        }
        Ok(())
    }

    fn pos(&self, offset: u64) -> usize {
        ((self.start as u64 + offset) % BLOCK as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_check() {
        let mut rng = Rng::new(1);
        let b = Blocks::new(&mut rng);
        for compressible in [false, true] {
            let p = Pattern::new(&b, compressible, 12345);
            let all = p.bytes(0, 200_000);
            assert_eq!(p.check(0, &all), Ok(()));
            assert_eq!(p.check(70_000, &all[70_000..150_000]), Ok(()));
            assert_eq!(p.bytes(99_999, 1000), all.slice(99_999..100_999));
            let mut bad = all[10..20].to_vec();
            bad[3] ^= 1;
            assert_eq!(p.check(10, &bad), Err(3));
            assert!(p.check(11, &all[10..2000]).is_err());
        }
    }
}

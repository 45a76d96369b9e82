//! A small seeded PRNG (xoshiro256**, seeded through SplitMix64). The simulation draws every
//! random choice from one of these; nothing reads global randomness.

use std::ops::Range;

#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Rng {
            s: [
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
            ],
        }
    }

    /// An independent generator derived from this one (for a sub-system that must not shift
    /// the draws of the others when it draws more or less).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `r` (which must not be empty).
    pub fn range(&mut self, r: Range<u64>) -> u64 {
        assert!(r.start < r.end, "empty range {r:?}");
        r.start + self.next_u64() % (r.end - r.start)
    }

    pub fn usize(&mut self, r: Range<usize>) -> usize {
        self.range(r.start as u64..r.end as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if lo >= hi {
            return lo;
        }
        self.range(lo..hi + 1)
    }

    /// Log-uniform in `lo..=hi` (both > 0): small and large values equally likely per decade.
    pub fn log_between(&mut self, lo: u64, hi: u64) -> u64 {
        if lo >= hi {
            return lo;
        }
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        let x = l + (h - l) * self.unit();
        (x.exp() as u64).clamp(lo, hi)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.usize(0..items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.usize(0..i + 1);
            items.swap(i, j);
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
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
    fn reproducible_and_in_range() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            let x = a.range(3..17);
            assert_eq!(x, b.range(3..17));
            assert!((3..17).contains(&x));
            let y = a.log_between(10, 1_000_000);
            assert_eq!(y, b.log_between(10, 1_000_000));
            assert!((10..=1_000_000).contains(&y));
        }
    }
}

//! Hash maps keyed by what a peer chose (channel ids), safe from collisions it could craft.
//!
//! The per-channel indexes are looked up for every frame and changed for every channel; an
//! ordered map there cost a few percent of a short connection's CPU (B-tree descents over
//! 32-byte keys). A hash map is faster, but its hasher must not be predictable by a peer that
//! picks the keys, and the machines draw no randomness they were not given: the key comes
//! from the machine's [`IdSource`], so a seeded run stays reproducible.
//! Nothing iterates these maps, so their order never shows.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::ids::IdSource;

/// SipHash with a secret prefix: the state after the 16 secret bytes is unknown to a peer.
#[derive(Clone)]
pub struct KeyedHash {
    key: [u8; 16],
}

impl KeyedHash {
    /// A hasher keyed with 16 bytes from `ids`.
    pub fn new(ids: &mut dyn IdSource) -> Self {
        let mut key = [0u8; 16];
        ids.fill(&mut key);
        KeyedHash { key }
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        h.write(&self.key);
        h
    }
}

/// A map whose keys a peer may choose.
pub type KeyedMap<K, V> = HashMap<K, V, KeyedHash>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn the_key_changes_the_hash_and_the_same_key_repeats_it() {
        let a = KeyedHash { key: [1; 16] };
        let b = KeyedHash { key: [2; 16] };
        assert_eq!(a.hash_one(42u64), a.clone().hash_one(42u64));
        assert_ne!(a.hash_one(42u64), b.hash_one(42u64));
    }
}

//! The masking XOR of section 5.3. Every byte a client sends goes through it once, and every
//! byte a server receives, so it works a 64-bit word at a time.

/// XORs `data` with the 4-byte `mask`, starting at mask offset 0 (so a payload is masked, or
/// unmasked, by one call over all of it). Its own inverse.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask);
    let m64 = (u64::from(m32) << 32) | u64::from(m32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // Whole words keep the key's phase, so the tail starts at mask offset 0 again.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(data: &[u8], mask: [u8; 4]) -> Vec<u8> {
        data.iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    }

    #[test]
    fn matches_bytewise_xor_at_every_length_and_alignment() {
        let backing: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for start in 0..8 {
            for len in 0..(backing.len() - start).min(80) {
                let data = &backing[start..start + len];
                let mut fast = backing.clone();
                apply_mask(&mut fast[start..start + len], [0x37, 0xfa, 0x21, 0x3d]);
                assert_eq!(
                    &fast[start..start + len],
                    &bytewise(data, [0x37, 0xfa, 0x21, 0x3d])[..],
                    "start {start} len {len}"
                );
                // Nothing outside the slice is touched.
                assert_eq!(&fast[..start], &backing[..start]);
                assert_eq!(&fast[start + len..], &backing[start + len..]);
            }
        }
    }

    #[test]
    fn is_its_own_inverse() {
        let orig: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut d = orig.clone();
        apply_mask(&mut d, [9, 8, 7, 6]);
        assert_ne!(d, orig);
        apply_mask(&mut d, [9, 8, 7, 6]);
        assert_eq!(d, orig);
    }

    #[test]
    fn unmasks_rfc6455_hello() {
        let mut d = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut d, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(&d, b"Hello");
    }
}

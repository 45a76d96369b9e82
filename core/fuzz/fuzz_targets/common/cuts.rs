//! How the stream targets cut their input: the same bytes fed in pieces whose sizes come from
//! a small LCG seeded by the input, so that every input explores many cuts.

/// `input` cut into pieces of 0 to `most` bytes (empty pieces included: a read may return
/// nothing new), from `seed`.
pub fn cuts(input: &[u8], seed: u32, most: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::new();
    let mut state = seed;
    let mut at = 0;
    while at < input.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((state >> 16) as usize % (most + 1)).min(input.len() - at);
        chunks.push(&input[at..at + n]);
        at += n;
    }
    chunks
}

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

/// `drive` on `input` whole, cut into `chunks`, and (with `singles`) a byte at a time: the
/// outcomes must be the same, whatever the cut. Returns the outcome of the whole input.
pub fn same_however_cut<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    chunks: &[&[u8]],
    singles: bool,
    drive: impl Fn(&[&[u8]]) -> T,
) -> T {
    let whole = drive(&[input]);
    assert_eq!(whole, drive(chunks), "the outcome depends on the cut");
    if singles {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(whole, drive(&bytes), "byte at a time");
    }
    whole
}

//! SplitMix64 (Steele, Lea and Flood, 2014; Vigna's reference constants): a tiny PRNG whose
//! stream is fixed by its definition, so seeded results stay byte-identical across psy and
//! dependency versions (unlike `rand`'s `StdRng`, whose algorithm may change).

/// The SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (> 0) by multiply-and-shift: `(x * n) >> 64`. Its bias is
    /// below n / 2^64, negligible for resampling, and it is one line to reproduce elsewhere.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

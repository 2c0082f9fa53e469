//! Activations quantized to 8 bits once per matrix product, as llama.cpp does before its
//! integer dot products.
//!
//! Why: a quantized weight times an 8-bit activation is an integer product, so a block's dot
//! product is a handful of byte multiply-adds (`maddubs`, `vpdpbusd`) instead of converting
//! every weight to f32. The vector is cut into blocks (32 values for the legacy types, 256 for
//! the K-quants, matching their blocks), each with one f32 scale `d = max|x| / 127` and
//! `q = round(x / d)` in [-127, 127] (never -128: the signed-times-signed trick of the Q8_0
//! kernel negates activations), plus integer sums of `q` over groups (32 or 16 values) for the
//! weight types that carry an offset (Q4_0's `-8`, Q4_1's `m`, the K-quants' mins, Q6_K's `-32`).
//!
//! The rounding error per value is at most `d / 2`, so a dot product with weights `w` moves by
//! at most `sum_b d_b / 2 * sum_{i in b} |w_i|` from the f32 one (the bound the tests use).

use rayon::prelude::*;

use crate::runtime::ggml_type::GgmlDType;

/// Activation values from which a batch is quantized across the rayon pool (64 tokens of
/// 1536 values).
const PARALLEL_VALUES: usize = 1 << 17;

/// An activation vector as 8-bit blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Q8Activations {
    /// Values per scale: 32 or 256.
    pub block: usize,
    /// Values per entry of `sums`: 32 for 32-value blocks, 16 for 256-value blocks (the
    /// K-quants' smallest sub-block).
    pub group: usize,
    /// One scale per block.
    pub d: Vec<f32>,
    /// The quantized values, in [-127, 127].
    pub qs: Vec<i8>,
    /// `sum(qs)` over each group.
    pub sums: Vec<i32>,
}

/// Activation block length that matches the weight blocks of `dtype`.
pub fn activation_block(dtype: GgmlDType) -> usize {
    use GgmlDType::*;
    match dtype {
        Q2K | Q3K | Q4K | Q5K | Q6K => 256,
        _ => 32,
    }
}

/// Quantizes one block `xb` into `qb` and returns its scale (the portable reference of
/// `q8_x86.rs`).
fn quantize_block(xb: &[f32], qb: &mut [i8]) -> f32 {
    let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &v) in qb.iter_mut().zip(xb) {
        // `as` maps NaN to 0; the clamp keeps -128 out even if `inv` rounds up.
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl Q8Activations {
    /// Quantizes `x` in blocks of `block` values (32 or 256); `x.len()` must be a multiple of
    /// `block`, which a [`super::QuantMatrix`] row guarantees.
    pub fn quantize(x: &[f32], block: usize) -> Self {
        assert!(
            block == 32 || block == 256,
            "activation blocks are 32 or 256 values"
        );
        assert_eq!(x.len() % block, 0, "activations are not whole blocks");
        let group = if block == 32 { 32 } else { 16 };
        let mut d = Vec::with_capacity(x.len() / block);
        let mut qs = vec![0i8; x.len()];
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        for (xb, qb) in x.chunks_exact(block).zip(qs.chunks_exact_mut(block)) {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 detected; the block and its output have the same length.
                d.push(unsafe { super::q8_x86::quantize_block_avx2(xb, qb) });
                continue;
            }
            d.push(quantize_block(xb, qb));
        }
        let sums = qs
            .chunks_exact(group)
            .map(|g| g.iter().map(|&q| i32::from(q)).sum())
            .collect();
        Self {
            block,
            group,
            d,
            qs,
            sums,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.qs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.qs.is_empty()
    }

    /// The dequantised vector `d_b * q_i` (what the integer products multiply).
    pub fn to_f32(&self) -> Vec<f32> {
        self.qs
            .iter()
            .enumerate()
            .map(|(i, &q)| self.d[i / self.block] * f32::from(q))
            .collect()
    }
}

/// The activations of several tokens, quantized token by token exactly as
/// [`Q8Activations::quantize`] does (the same integers and scales), plus the scales and group
/// sums regrouped by 8 tokens (`[token / 8][block][token % 8]`), so that a kernel working on a
/// tile of tokens reads the tile's scales (or sums) of one block with one vector load. (A
/// `[block][token]` layout put a long prompt's columns 2 KB apart, where they evict each other
/// from L1.)
#[derive(Debug, Clone)]
pub struct Q8Batch {
    /// One entry per token.
    pub tokens: Vec<Q8Activations>,
    /// Blocks per token.
    blocks: usize,
    /// Groups per token.
    groups: usize,
    /// Token `t`'s scale of block `b` at `[(t / 8) * blocks * 8 + b * 8 + t % 8]`; 8 zeros
    /// past the end, so that a vector load at any token stays inside.
    pub d: Vec<f32>,
    /// Token `t`'s sum of group `g` at `[(t / 8) * groups * 8 + g * 8 + t % 8]`; 8 zeros past
    /// the end.
    pub sums: Vec<i32>,
    /// 256-value blocks only (else 8 zeros): token `t`'s sums of groups `2p` and `2p + 1` as
    /// two i16 (low, high half; |sum| <= 16 * 127 fits) at `[(t / 8) * groups / 2 * 8 + p * 8 +
    /// t % 8]`, so that one `vpmaddwd`/`vpdpwssd` weighs both by per-group weights for 8
    /// tokens (the K-quants' mins and Q6_K's offset); 8 zeros past the end.
    pub pairs: Vec<i32>,
}

impl Q8Batch {
    /// Quantizes `x`, row-major `[tokens, cols]`, one token at a time in blocks of `block`.
    pub fn quantize(x: &[f32], cols: usize, block: usize) -> Self {
        assert!(
            cols > 0 && x.len().is_multiple_of(cols),
            "activations are not [tokens, cols]"
        );
        // One thread for short prompts: with the AVX2 quantization this is ~1% of the product,
        // less than what another parallel region costs; the rayon pool for long ones.
        let quantize = |xt: &[f32]| Q8Activations::quantize(xt, block);
        let tokens: Vec<Q8Activations> = if x.len() >= PARALLEL_VALUES {
            x.par_chunks_exact(cols).map(quantize).collect()
        } else {
            x.chunks_exact(cols).map(quantize).collect()
        };
        Self::from_tokens(tokens)
    }

    /// The batch of tokens already quantized (of one width and block size), their scales and
    /// sums regrouped as [`Self::quantize`] does.
    pub fn from_tokens(tokens: Vec<Q8Activations>) -> Self {
        let block = tokens.first().map_or(32, |a| a.block);
        let padded = tokens.len().div_ceil(8) * 8;
        let (blocks, groups) = tokens.first().map_or((0, 0), |a| (a.d.len(), a.sums.len()));
        let mut d = vec![0.0f32; blocks * padded + 8];
        let mut sums = vec![0i32; groups * padded + 8];
        let npairs = if block == 256 { groups / 2 } else { 0 };
        let mut pairs = vec![0i32; npairs * padded + 8];
        for (t, a) in tokens.iter().enumerate() {
            for (b, &v) in a.d.iter().enumerate() {
                d[(t / 8) * blocks * 8 + b * 8 + t % 8] = v;
            }
            for (g, &v) in a.sums.iter().enumerate() {
                sums[(t / 8) * groups * 8 + g * 8 + t % 8] = v;
            }
            for p in 0..npairs {
                let (lo, hi) = (a.sums[2 * p] as i16 as u16, a.sums[2 * p + 1] as i16 as u16);
                pairs[(t / 8) * npairs * 8 + p * 8 + t % 8] =
                    (u32::from(hi) << 16 | u32::from(lo)) as i32;
            }
        }
        Self {
            tokens,
            blocks,
            groups,
            d,
            sums,
            pairs,
        }
    }

    /// Index in `d` of token `t`'s scale of block 0 (block `b` is 8 further per block).
    pub fn d_at(&self, t: usize) -> usize {
        (t / 8) * self.blocks * 8 + t % 8
    }

    /// Index in `sums` of token `t`'s sum of group 0 (group `g` is 8 further per group).
    pub fn sums_at(&self, t: usize) -> usize {
        (t / 8) * self.groups * 8 + t % 8
    }

    /// Index in `pairs` of token `t`'s pair 0 (pair `p` is 8 further per pair).
    pub fn pairs_at(&self, t: usize) -> usize {
        if self.block() == 256 {
            (t / 8) * self.groups / 2 * 8 + t % 8
        } else {
            0
        }
    }

    /// Values per token.
    pub fn cols(&self) -> usize {
        self.tokens.first().map_or(0, Q8Activations::len)
    }

    /// Values per scale (32 or 256).
    pub fn block(&self) -> usize {
        self.tokens.first().map_or(32, |a| a.block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_scale_to_127_and_sum_by_group() {
        // Block 0 peaks at -2.54 -> d = 0.02, so 1.0 -> 50; block 1 is all zero.
        let mut x = vec![0.0f32; 64];
        x[0] = -2.54;
        x[1] = 1.0;
        x[2] = 0.011; // 0.55 -> rounds away from zero to 1
        let a = Q8Activations::quantize(&x, 32);
        assert!((a.d[0] - 0.02).abs() < 1e-9);
        assert_eq!(a.d[1], 0.0);
        assert_eq!(&a.qs[..4], &[-127, 50, 1, 0]);
        assert_eq!(a.sums, vec![-127 + 50 + 1, 0]);
        let k = Q8Activations::quantize(&vec![1.0f32; 256], 256);
        assert_eq!(k.sums, vec![127 * 16; 16]);
        // NaN quantizes to 0 instead of poisoning the integer sums.
        let n = Q8Activations::quantize(&[f32::NAN; 32], 32);
        assert!(n.qs.iter().all(|&q| q == 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The AVX2 block quantization gives the portable loop's scale and integers, bit for
        /// bit: rounding ties of both signs, NaN, infinities, subnormals, zeros.
        #[test]
        fn simd_quantization_equals_the_portable_one(
            x in proptest::collection::vec(prop_oneof![
                -300.0f32..300.0,
                (-254i32..254).prop_map(|h| h as f32 / 2.0),
                Just(f32::NAN),
                Just(f32::INFINITY),
                Just(f32::NEG_INFINITY),
                Just(1e-40f32),
                Just(-0.0f32),
                any::<f32>(),
            ], 256),
            scale in prop_oneof![Just(1.0f32), 1e-6f32..1e6],
        ) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let x: Vec<f32> = x.iter().map(|v| v * scale).collect();
                for block in [32usize, 256] {
                    for xb in x.chunks_exact(block) {
                        let (mut want, mut got) = (vec![0i8; block], vec![0i8; block]);
                        let dw = quantize_block(xb, &mut want);
                        // SAFETY: AVX2 detected; equal lengths.
                        let dg = unsafe { super::super::q8_x86::quantize_block_avx2(xb, &mut got) };
                        prop_assert_eq!(dw.to_bits(), dg.to_bits());
                        prop_assert_eq!(&want, &got);
                    }
                }
            }
        }
    }

    #[test]
    fn a_batch_regroups_each_tokens_scales_and_sums_by_8_tokens() {
        // Token t's first block peaks at t + 1, its second at 2 (t + 1).
        let x: Vec<f32> = (0..10)
            .flat_map(|t| (0..64).map(move |i| (t + 1) as f32 * if i < 32 { 1.0 } else { 2.0 }))
            .collect();
        let b = Q8Batch::quantize(&x, 64, 32);
        assert_eq!(b.tokens[2], Q8Activations::quantize(&x[128..192], 32));
        for t in 0..10 {
            assert_eq!(b.d[b.d_at(t)], (t + 1) as f32 / 127.0);
            assert_eq!(b.d[b.d_at(t) + 8], 2.0 * (t + 1) as f32 / 127.0);
            assert_eq!(b.sums[b.sums_at(t) + 8], 127 * 32);
        }
        // Tokens 8 and 9 start the second group of 8: 2 blocks x 8 further.
        assert_eq!(b.d_at(9), 16 + 1);
        assert_eq!(b.d.len(), 2 * 16 + 8);
        assert_eq!(&b.d[b.d_at(9) + 1..b.d_at(9) + 7], &[0.0; 6]);
    }

    #[test]
    fn a_k_quant_batch_packs_each_pair_of_16_value_sums_as_two_i16() {
        // 9 tokens of 512 values: token t's value i is (i % 7 - 3) * (t + 1), so 16-value sums
        // of both signs; tokens 0..8 and token 8 sit in different groups of 8.
        let x: Vec<f32> = (0..9)
            .flat_map(|t| (0..512).map(move |i| ((i % 7) as f32 - 3.0) * (t + 1) as f32))
            .collect();
        let b = Q8Batch::quantize(&x, 512, 256);
        assert_eq!(b.pairs.len(), 16 * 16 + 8);
        for (t, a) in b.tokens.iter().enumerate() {
            for p in 0..16 {
                let v = b.pairs[b.pairs_at(t) + p * 8];
                assert_eq!(i32::from(v as i16), a.sums[2 * p], "token {t} pair {p} low");
                assert_eq!(v >> 16, a.sums[2 * p + 1], "token {t} pair {p} high");
            }
        }
        assert!(b.tokens[0].sums.iter().any(|&s| s < 0));
        // The 32-value blocks carry no pairs.
        assert_eq!(Q8Batch::quantize(&x[..512], 512, 32).pairs, vec![0; 8]);
    }
}

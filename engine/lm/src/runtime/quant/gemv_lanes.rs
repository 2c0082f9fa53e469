//! The integer GEMM of the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with 16 tokens
//! in the 16 lanes of a 512-bit vector (`gemv_lanes_x86.rs`), every result bit-equal to the
//! GEMV's ([`super::int_dot::dot_row`]) for the same row and token: a prompt gives the same
//! bits whole, in pieces or token by token. (The batch engine keeps its own order for Q4_0,
//! Q4_1 and Q8_0, `lane_gemm`: one float step per block instead of eight, ~10-15% more
//! throughput with 8 requests on the AMD host.)
//!
//! The GEMV's order, per token: 8 partial f32 sums, partial `g` adding `(d_w * d_x) * isum_g`
//! block by block (`isum_g` the exact integer dot product of the block's values `4g..4g + 4`);
//! Q4_1 and Q5_1 add `(m * d_x) * sum_x` to a ninth sum; the result is `hsum8(partials) +
//! ninth`. Here partial `g` is a vector whose lane `l` is token `l`'s: per block, 8 `vpdpbusd`
//! (a 4-weight piece broadcast against the 16 tokens' pieces) give the 8 pieces' integers, and
//! the GEMV's conversion, multiply and add follow lane by lane; the final reduction is the
//! GEMV's with vertical adds. Same integers, same float operations in the same order.
//!
//! The float work per block and token is the GEMV's (8 conversions, multiplies and adds where
//! one per block would do with the block's integer summed first): the price of its bits, paid
//! 16 tokens per instruction. Why not the tiles of `int_gemm_x86.rs`: they pay it 8 lanes (one
//! token) per instruction and decode the weights per tile of 8 tokens.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the activations are kept plus 128 (`x ^
//! 0x80`, in [1, 255] since they are in [-127, 127]) and the weights as signed bytes; each
//! piece's accumulator starts at `-128 * sum(w)` of the piece (one per row, whatever the
//! token), so the integer is exact.

pub use super::gemv_lanes_layout::GemvLanes;
use super::int_dot::IntKernel;
use super::int_gemm;
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// Whether [`gemm_rows`] serves `dtype` with `kernel`: the 32-value types with AVX-512 VNNI
/// (elsewhere the tiles of [`int_gemm`], the same bits).
pub fn has_gemv_lanes(kernel: IntKernel, dtype: GgmlDType) -> bool {
    #[cfg(target_arch = "x86_64")]
    let vnni = kernel == IntKernel::Vnni
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    let vnni = {
        let _ = kernel;
        false
    };
    use GgmlDType::*;
    vnni && matches!(dtype, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0)
}

/// `out[t * n + r] = int_dot::dot_row(row r, token t)` bit for bit, for the `n` consecutive
/// rows of `dtype` in `rows` and every token of `batch`, with `kernel` ([`has_gemv_lanes`]
/// must hold): the tokens in `lanes` (`batch` regrouped) by the lane kernel, the others by the
/// tiles. Lengths are checked here, since the SIMD kernel loads without bounds checks.
pub fn gemm_rows(
    kernel: IntKernel,
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &GemvLanes,
    out: &mut [f32],
) {
    assert!(has_gemv_lanes(kernel, dtype), "a lane kernel for {dtype}");
    let all = batch.tokens.len();
    if all == 0 || out.is_empty() {
        return;
    }
    let (_, bytes) = dtype.block_layout().expect("a block type");
    let cols = batch.cols();
    assert_eq!(batch.block(), 32, "32-value activation blocks");
    assert!(
        batch.tokens.iter().all(|a| a.len() == cols),
        "every token has {cols} values"
    );
    assert_eq!(out.len() % all, 0, "output is [tokens, rows]");
    let n = out.len() / all;
    assert_eq!(
        rows.len(),
        n * cols / 32 * bytes as usize,
        "{dtype} rows vs outputs"
    );
    let tail = all - lanes.tokens;
    assert!(
        lanes.blocks == cols / 32
            && lanes.tokens <= all
            && lanes.tail.as_ref().map_or(0, |t| t.tokens.len()) == tail,
        "lanes regroup this batch"
    );
    let (head, rest) = out.split_at_mut(lanes.tokens * n);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `has_gemv_lanes` holds only with AVX-512 F, BW, VL and VNNI detected; lengths
    // checked above.
    unsafe {
        super::gemv_lanes_x86::gemm_rows_avx512(dtype, rows, lanes, head)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = head;
    if let Some(t) = &lanes.tail {
        int_gemm::gemm_rows(kernel, dtype, rows, t, rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::quant::test_blocks::{assert_each_is_the_gemv, matrix};
    use proptest::prelude::*;

    const TYPES: [GgmlDType; 5] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
    ];

    /// The lane GEMM of every (row, token) equals the scalar GEMV's, bit for bit; returns
    /// whether the lanes ran (no lane kernel on this CPU, or too few tokens: only the tiles).
    fn assert_lanes_equal_the_gemv(
        dtype: GgmlDType,
        rows: usize,
        w: &[u8],
        x: &[f32],
        k: usize,
    ) -> bool {
        let Some(kernel) = IntKernel::available()
            .into_iter()
            .find(|&k| has_gemv_lanes(k, dtype))
        else {
            return false;
        };
        let batch = Q8Batch::quantize(x, k, 32);
        let Some(lanes) = GemvLanes::new(&batch) else {
            return false;
        };
        let tokens = batch.tokens.len();
        let mut out = vec![f32::NAN; rows * tokens];
        gemm_rows(kernel, dtype, w, &batch, &lanes, &mut out);
        assert_each_is_the_gemv(dtype, w, rows, &batch, &out, &format!("{tokens} tokens"));
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// 1-52 tokens (whole groups of 16, a padded group, a tail through the tiles), 3 rows
        /// of 320 values, random quants, scales (0, negative, f16's largest) and activations
        /// (±1e30, zeros, rounding ties).
        #[test]
        fn lanes_equal_the_gemv_token_by_token(
            tokens in 1usize..53,
            bytes in proptest::collection::vec(any::<u8>(), 1..700),
            scales in proptest::collection::vec(
                prop_oneof![-2.0f32..2.0, Just(0.0f32), Just(65504.0f32), Just(-65504.0f32)], 1..9),
            x in proptest::collection::vec(
                prop_oneof![-100.0f32..100.0, Just(0.0f32), Just(1e30f32), Just(-1e30f32), Just(0.5f32)], 320 * 52),
        ) {
            for dtype in TYPES {
                let w = matrix(dtype, 3, 320, &bytes, &scales);
                assert_lanes_equal_the_gemv(dtype, 3, &w, &x[..tokens * 320], 320);
            }
        }
    }

    /// Extreme blocks (every quant 0x00, 0xff, 0x80 or 0x7f; f16's largest scale) against
    /// activations at ±127 and a ramp, over two whole groups and a tail of 3 (the tiles) or 7
    /// (a padded group); and zeros, whose products are -0.0 or +0.0 by the order of the sums.
    #[test]
    fn extreme_quants_and_activations_agree() {
        let k = 256;
        let ramp: Vec<f32> = (0..k).map(|i| i as f32 - 128.0).collect();
        for tokens in [35, 39] {
            let x: Vec<f32> = [
                vec![127.0f32; k],
                vec![-127.0; k],
                ramp.clone(),
                vec![0.0; k],
            ]
            .into_iter()
            .cycle()
            .take(tokens)
            .flatten()
            .collect();
            for dtype in TYPES {
                for fill in [0x00u8, 0xff, 0x80, 0x7f] {
                    let w = matrix(dtype, 2, k, &[fill], &[1.0, -65504.0, -0.0]);
                    let ran = assert_lanes_equal_the_gemv(dtype, 2, &w, &x, k);
                    let kernel = IntKernel::detect();
                    assert_eq!(ran, has_gemv_lanes(kernel, dtype), "{dtype}");
                }
            }
        }
    }

    /// Groups, padding and tail: which tokens take the lanes.
    #[test]
    fn tokens_past_the_groups_take_a_padded_group_or_the_tiles() {
        for (tokens, groups, in_lanes) in [
            (4, 0, 0),
            (5, 1, 5),
            (16, 1, 16),
            (20, 1, 16),
            (21, 2, 21),
            (512, 32, 512),
        ] {
            let batch = Q8Batch::quantize(&vec![0.5f32; tokens * 64], 64, 32);
            let lanes = GemvLanes::new(&batch);
            assert_eq!(lanes.as_ref().map_or(0, |l| l.groups), groups, "{tokens}");
            assert_eq!(lanes.as_ref().map_or(0, |l| l.tokens), in_lanes, "{tokens}");
        }
    }
}

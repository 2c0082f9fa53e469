//! The batch engine's integer GEMM for the 32-value block types (Q4_0, Q4_1, Q8_0 with AVX-512
//! VNNI; Q4_0 and Q4_1 with AVX2 alone), with the tokens of a step in the 8 lanes of a vector
//! (`lane_gemm_x86.rs`), or, from 2 tokens on CPUs with AVX-512 BW and VNNI, 16 rows in the
//! lanes of 512-bit vectors (`lane_gemm512_x86.rs`).
//!
//! Why: the tiles of `int_gemm_x86.rs` keep the GEMV's order (8 partial sums per token, each
//! block's scale applied to all 8), which costs a conversion, two multiplies and an add per
//! block *and token*: at 8 tokens that float work, not the weights, was most of a step. Here
//! each block's integer dot product is finished first, for 8 tokens at once (lane `t` of one
//! `vpdpbusd` accumulator is token `t`'s, fed the block's 8 groups of 4 weights, each broadcast,
//! against the 8 tokens' groups side by side), and one conversion, multiply and add then serve
//! the 8 tokens.
//!
//! The order, for one row and one token (`isum` the block's exact integer dot product):
//! `scaled += (d_w * d_x) * isum` block by block, for Q4_1 also `offset += (m * d_x) * sum_x`,
//! and the result `scaled + offset` (Q4_1) or `scaled`. Not the GEMV's bits; but the engine
//! runs every row of every step through this order (groups of 8 tokens in lanes, a last
//! partial group padded with zero tokens, or one token at a time with the same scalar steps), so a sequence's values are the same
//! bits alone or in any batch. [`dot_row`] is the portable statement of that order.

use super::int_dot::IntKernel;
pub use super::lane_layout::LaneActivations;
use super::lane_layout::{block_form, unsigned_block};
use super::legacy::f16_at;
use super::q8::{Q8Activations, Q8Batch};
use crate::runtime::ggml_type::GgmlDType;

/// Whether the lane GEMM serves `dtype` with `kernel`: Q4_0, Q4_1 and Q8_0 with AVX-512 VNNI,
/// Q4_0 and Q4_1 with AVX2 alone (`lane_gemm_x86.rs` says why not Q8_0); elsewhere the engine
/// keeps the tiles of [`super::int_gemm`].
pub fn has_lane_kernel(kernel: IntKernel, dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    #[cfg(target_arch = "x86_64")]
    return match kernel {
        IntKernel::Vnni => matches!(dtype, Q4_0 | Q4_1 | Q8_0),
        IntKernel::Avx2 => matches!(dtype, Q4_0 | Q4_1),
        IntKernel::Scalar => false,
    };
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, dtype);
        false
    }
}

/// One row times one token in the lane GEMM's order: the portable reference of the SIMD
/// kernels, and what they equal bit for bit.
pub fn dot_row(dtype: GgmlDType, row: &[u8], a: &Q8Activations) -> f32 {
    let (size, c) = block_form(dtype);
    assert_eq!(a.block, 32, "32-value activation blocks");
    assert_eq!(row.len() / size * 32, a.len(), "{dtype} row vs activations");
    let (mut scaled, mut offset) = (0.0f32, 0.0f32);
    for (b, blk) in row.chunks_exact(size).enumerate() {
        let u = unsigned_block(dtype, blk);
        let x = &a.qs[b * 32..(b + 1) * 32];
        let dot: i32 = u
            .iter()
            .zip(x)
            .map(|(&u, &x)| i32::from(u) * i32::from(x))
            .sum();
        let isum = dot - c * a.sums[b];
        scaled += (f16_at(blk, 0) * a.d[b]) * isum as f32;
        if dtype == GgmlDType::Q4_1 {
            offset += (f16_at(blk, 2) * a.d[b]) * a.sums[b] as f32;
        }
    }
    if dtype == GgmlDType::Q4_1 {
        scaled + offset
    } else {
        scaled
    }
}

/// `out[t * n + r] = dot(row r, token t)` in the lane order for the `n` consecutive rows in
/// `rows`, with `kernel` ([`has_lane_kernel`] must hold). `lanes` must be `batch`'s
/// regrouping; lengths are checked here, since the SIMD kernel loads without bounds checks.
pub fn gemm_rows(
    kernel: IntKernel,
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    assert!(has_lane_kernel(kernel, dtype), "a lane kernel for {dtype}");
    let tokens = batch.tokens.len();
    if tokens == 0 || out.is_empty() {
        return;
    }
    let (size, _) = block_form(dtype);
    let cols = batch.cols();
    assert_eq!(batch.block(), 32, "32-value activation blocks");
    assert!(
        batch.tokens.iter().all(|a| a.len() == cols),
        "every token has {cols} values"
    );
    assert_eq!(
        (lanes.groups, lanes.blocks),
        (tokens / 8, cols / 32),
        "lanes regroup this batch"
    );
    assert!(
        lanes.tail == 0 || lanes.groups * 8 + lanes.tail == tokens,
        "the padded group holds the last tokens"
    );
    assert_eq!(out.len() % tokens, 0, "output is [tokens, rows]");
    assert_eq!(
        rows.len(),
        out.len() / tokens * cols / 32 * size,
        "{dtype} rows vs outputs"
    );
    #[cfg(target_arch = "x86_64")]
    if kernel == IntKernel::Vnni && takes_512(tokens) {
        // SAFETY: the VNNI kernel is detected only with AVX-512 F and VNNI, `takes_512` holds
        // only with BW too; lengths checked above.
        unsafe { super::lane_gemm512_x86::lane_rows_512(dtype, rows, batch, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `has_lane_kernel` holds only for a detected x86 kernel (AVX2 and F16C, plus
    // AVX-512 VNNI for `Vnni`) and, for AVX2, Q4_0 or Q4_1; lengths checked above.
    unsafe {
        if kernel == IntKernel::Vnni {
            super::lane_gemm_x86::gemm_rows_vnni(dtype, rows, batch, lanes, out)
        } else {
            super::lane_gemm_x86::gemm_rows_avx2(dtype, rows, batch, lanes, out)
        }
    }
}

/// The fewest tokens of a product that take the 512-bit lane kernel (`lane_gemm512_x86.rs`, 16
/// rows in the lanes); fewer keep the 256-bit one (8 tokens in the lanes). Same bits either way.
pub const LANE512_MIN_TOKENS: usize = 2;

/// Whether a product of `tokens` rows (on a [`has_lane_kernel`] host) takes the 512-bit lane
/// kernel: AVX-512 BW present and `PSY_NO_LANE512` unset, which keeps the 256-bit kernel, to
/// measure one against the other with one binary.
#[cfg(target_arch = "x86_64")]
fn takes_512(tokens: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    tokens >= LANE512_MIN_TOKENS
        && *ON.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512bw")
                && std::env::var_os("PSY_NO_LANE512").is_none_or(|v| v == "0")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// A row of `blocks` blocks of `dtype` from `seed`, with finite scales (and mins).
    fn row(dtype: GgmlDType, blocks: usize, seed: u32) -> Vec<u8> {
        let (size, _) = block_form(dtype);
        let mut s = seed.wrapping_mul(747_796_405).max(1);
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        let mut out: Vec<u8> = (0..blocks * size).map(|_| next() as u8).collect();
        for blk in out.chunks_exact_mut(size) {
            let fields: &[usize] = if dtype == GgmlDType::Q4_1 {
                &[0, 2]
            } else {
                &[0]
            };
            for &at in fields {
                let v = ((next() % 2001) as f32 / 1000.0 - 1.0) * 0.05;
                blk[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        out
    }

    fn dequantized(dtype: GgmlDType, row: &[u8]) -> Vec<f32> {
        let mut out = vec![0.0f32; row.len() / block_form(dtype).0 * 32];
        super::super::dequantize_into(dtype, row, &mut out).unwrap();
        out
    }

    /// The reference order is a dot product of the weights with the 8-bit activations: within
    /// f32 rounding of the dequantised weights times the dequantised activations, and within
    /// the activations' rounding (half a step per value) of the f32 product.
    #[test]
    fn the_lane_order_is_the_dequantised_product() {
        let k = 256;
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for seed in 1..6 {
                let r = row(dtype, k / 32, seed);
                let w = dequantized(dtype, &r);
                let x: Vec<f32> = (0..k)
                    .map(|i| ((i as u32 * 37 + seed * 11) % 97) as f32 * 0.05 - 2.4)
                    .collect();
                let a = Q8Activations::quantize(&x, 32);
                let got = dot_row(dtype, &r, &a);
                let xq = a.to_f32();
                let exact: f64 = w.iter().zip(&xq).map(|(w, x)| *w as f64 * *x as f64).sum();
                let mag: f64 = w
                    .iter()
                    .zip(&xq)
                    .map(|(w, x)| (*w as f64 * *x as f64).abs())
                    .sum();
                // A few f32 roundings of partial sums of at most `mag`.
                assert!(
                    (got as f64 - exact).abs() <= mag * 1e-6 + 1e-6,
                    "{dtype} seed {seed}: {got} vs {exact}"
                );
                let f32_dot: f32 = w.iter().zip(&x).map(|(w, x)| w * x).sum();
                let bound: f32 = w
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w.abs() * a.d[i / 32] / 2.0)
                    .sum();
                assert!(
                    (got - f32_dot).abs() <= bound + 1e-4,
                    "{dtype} seed {seed}: {got} vs f32 {f32_dot}"
                );
            }
        }
    }

    /// Hand-computed: one Q4_1 block, d = 0.5, m = 0.25, nibbles 0..15 and 15..0, activations
    /// all 127 with scale 1/127 (x = 1): isum = 127 * 240, sum_x = 32 * 127.
    #[test]
    fn a_hand_computed_q4_1_block() {
        let mut blk = Vec::new();
        blk.extend(f16::from_f32(0.5).to_le_bytes());
        blk.extend(f16::from_f32(0.25).to_le_bytes());
        blk.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let a = Q8Activations::quantize(&[1.0; 32], 32);
        assert_eq!(a.qs, vec![127i8; 32]);
        let d = 1.0f32 / 127.0;
        let want = (0.5 * d) * (127 * 240) as f32 + (0.25 * d) * (32 * 127) as f32;
        assert_eq!(dot_row(GgmlDType::Q4_1, &blk, &a), want);
        assert!((want - (0.5 * 240.0 + 0.25 * 32.0)).abs() < 1e-4);
    }

    /// Every (row, token) of each SIMD kernel equals [`dot_row`] bit for bit: whole groups of 8
    /// tokens in lanes, a zero-padded last group, and the rest one at a time (8 rows at once, or
    /// one row at a time), extreme activations and scales included.
    #[test]
    fn the_kernel_equals_the_reference_order() {
        let kernels: Vec<IntKernel> = IntKernel::available()
            .into_iter()
            .filter(|&k| has_lane_kernel(k, GgmlDType::Q4_1))
            .collect();
        if kernels.is_empty() {
            println!("no lane kernel on this CPU; nothing to compare");
            return;
        }
        let k = 320;
        // 5 rows: one at a time; 8 and 21: rows 8 at a time for the tokens past the groups (the
        // 256-bit kernel); 5, 21 and 37: a short pass of 16 rows (the 512-bit one).
        for (kernel, dtype, n) in kernels.iter().flat_map(|&kernel| {
            [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0]
                .into_iter()
                .filter(move |&d| has_lane_kernel(kernel, d))
                .flat_map(move |d| {
                    [
                        (kernel, d, 5),
                        (kernel, d, 8),
                        (kernel, d, 21),
                        (kernel, d, 37),
                    ]
                })
        }) {
            let rows: Vec<u8> = (0..n)
                .flat_map(|i| row(dtype, k / 32, 7 + i as u32))
                .collect();
            let row_bytes = rows.len() / n;
            // 1 to 7 tokens past 0, 1 or 2 whole groups.
            for tokens in [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 15, 17] {
                let x: Vec<f32> = (0..tokens * k)
                    .map(|i| match i % 41 {
                        0 => 1e30,
                        1 => -1e30,
                        2 => 0.0,
                        _ => ((i * 29) % 83) as f32 * 0.1 - 4.0,
                    })
                    .collect();
                let batch = Q8Batch::quantize(&x, k, 32);
                let lanes = LaneActivations::new(&batch);
                // What `gemm_rows` takes on this host with `kernel`, and the x86 kernels by
                // name (the 512-bit one only with VNNI and AVX-512 BW).
                let mut runs = Vec::new();
                let mut out = vec![f32::NAN; tokens * n];
                gemm_rows(kernel, dtype, &rows, &batch, &lanes, &mut out);
                runs.push(("gemm_rows", out));
                #[cfg(target_arch = "x86_64")]
                {
                    // The tokens past the whole groups as a padded group (from 1 of them) and
                    // one at a time (a group needs 8).
                    for (name, min) in [("256-bit padded", 1), ("256-bit one at a time", 8)] {
                        let lanes = LaneActivations::padding_from(&batch, min);
                        let mut out = vec![f32::NAN; tokens * n];
                        // SAFETY: `kernel` was detected: AVX2 and F16C, and AVX-512 F and VNNI
                        // for `Vnni`; `has_lane_kernel` holds for `dtype`.
                        unsafe {
                            if kernel == IntKernel::Vnni {
                                super::super::lane_gemm_x86::gemm_rows_vnni(
                                    dtype, &rows, &batch, &lanes, &mut out,
                                )
                            } else {
                                super::super::lane_gemm_x86::gemm_rows_avx2(
                                    dtype, &rows, &batch, &lanes, &mut out,
                                )
                            }
                        };
                        runs.push((name, out));
                    }
                    if kernel == IntKernel::Vnni && std::arch::is_x86_feature_detected!("avx512bw")
                    {
                        let mut out = vec![f32::NAN; tokens * n];
                        // SAFETY: as above, and BW detected.
                        unsafe {
                            super::super::lane_gemm512_x86::lane_rows_512(
                                dtype, &rows, &batch, &mut out,
                            )
                        };
                        runs.push(("512-bit", out));
                    }
                }
                for (name, out) in &runs {
                    for r in 0..n {
                        for (t, a) in batch.tokens.iter().enumerate() {
                            let want = dot_row(dtype, &rows[r * row_bytes..][..row_bytes], a);
                            assert_eq!(
                                out[t * n + r].to_bits(),
                                want.to_bits(),
                                "{name} ({kernel:?}): {dtype} {tokens} tokens, row {r} token {t}: {} vs {want}",
                                out[t * n + r]
                            );
                        }
                    }
                }
            }
        }
    }
}

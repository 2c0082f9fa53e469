//! The integer GEMM of prefill: several tokens' activations quantized once per product
//! ([`Q8Batch`]), each quantized row multiplied with tiles of up to 8 tokens so that its blocks
//! are decoded once per tile instead of once per token (`int_gemm_x86.rs`; llama.cpp's
//! `mul_mat` tiling and llamafile's tinyBLAS do the same for their types).
//!
//! Every result equals [`super::int_dot::dot_row`] of the same row and token, bit for bit: a
//! prompt's logits do not depend on whether it ran through this GEMM or token by token.

use super::int_dot::IntKernel;
use super::int_scalar;
use super::lane_layout::LaneActivations;
use super::q8::{activation_block, Q8Batch};
use crate::runtime::ggml_type::GgmlDType;

/// `out[t * n + r] = dot(row r, token t)` (`[tokens, n]`, token-major as the model's
/// activations, so a caller copies whole token rows) for the `n` consecutive rows in `rows`,
/// with `kernel`, one of [`IntKernel::available`]. `rows` must be whole rows of `dtype`
/// (one of [`super::has_int_kernel`]) for `batch.cols()` values and `batch` quantized with the
/// block of `dtype`; both are checked here, since the SIMD kernels load without bounds checks.
pub fn gemm_rows(
    kernel: IntKernel,
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    out: &mut [f32],
) {
    let tokens = batch.tokens.len();
    if tokens == 0 || out.is_empty() {
        return;
    }
    let (elems, bytes) = dtype.block_layout().expect("a block type");
    let cols = batch.cols();
    assert_eq!(cols % elems as usize, 0, "activations are whole blocks");
    assert!(
        batch.tokens.iter().all(|a| a.len() == cols),
        "every token has {cols} values"
    );
    assert_eq!(batch.block(), activation_block(dtype), "activation blocks");
    assert_eq!(out.len() % tokens, 0, "output is [tokens, rows]");
    let row_bytes = cols / elems as usize * bytes as usize;
    assert_eq!(
        rows.len(),
        out.len() / tokens * row_bytes,
        "{dtype} rows vs outputs"
    );
    match kernel {
        IntKernel::Scalar => gemm_rows_scalar(dtype, rows, row_bytes, batch, out),
        // SAFETY: `kernel` comes from `available()` (features detected); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        IntKernel::Avx2 => unsafe { super::int_gemm_x86::gemm_rows_avx2(dtype, rows, batch, out) },
        #[cfg(target_arch = "x86_64")]
        IntKernel::Vnni => unsafe { super::int_gemm_x86::gemm_rows_vnni(dtype, rows, batch, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => gemm_rows_scalar(dtype, rows, row_bytes, batch, out),
    }
}

/// Whether [`gemm_rows_lanes`] serves `dtype` with `kernel`: Q4_K, Q5_K and Q6_K with AVX-512
/// VNNI (other types and CPUs keep the tiles).
pub fn has_k_lane_kernel(kernel: IntKernel, dtype: GgmlDType) -> bool {
    #[cfg(target_arch = "x86_64")]
    let vnni = kernel == IntKernel::Vnni;
    #[cfg(not(target_arch = "x86_64"))]
    let vnni = {
        let _ = kernel;
        false
    };
    vnni && matches!(dtype, GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K)
}

/// [`gemm_rows`] with the whole groups of 8 tokens in the lanes of one vector
/// (`int_gemm_x86::k_lane_rows_vnni`), `lanes` regrouping `batch`: the same f32 results,
/// bit for bit, with fewer instructions per token. [`has_k_lane_kernel`] must hold; lengths
/// are checked here, since the SIMD kernel loads without bounds checks.
pub fn gemm_rows_lanes(
    kernel: IntKernel,
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    assert!(
        has_k_lane_kernel(kernel, dtype),
        "a lane kernel for {dtype}"
    );
    if !checked_k_batch(dtype, rows, batch, out) {
        return;
    }
    assert_eq!(
        (lanes.groups, lanes.blocks),
        (batch.tokens.len() / 8, batch.cols() / 32),
        "lanes regroup this batch"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `has_k_lane_kernel` holds only with VNNI detected; lengths checked above.
    unsafe {
        super::int_gemm_x86::k_lane_rows_vnni(dtype, rows, batch, lanes, out)
    }
}

/// The lengths the K-quant SIMD kernels rely on, since they load without bounds checks:
/// 256-value activation blocks, every token `batch.cols()` values, `out` `[tokens, rows]` and
/// `rows` whole rows of `dtype` for it. `false` when there is nothing to compute.
fn checked_k_batch(dtype: GgmlDType, rows: &[u8], batch: &Q8Batch, out: &[f32]) -> bool {
    let tokens = batch.tokens.len();
    if tokens == 0 || out.is_empty() {
        return false;
    }
    let cols = batch.cols();
    assert_eq!(batch.block(), 256, "256-value activation blocks");
    assert!(
        batch.tokens.iter().all(|a| a.len() == cols),
        "every token has {cols} values"
    );
    assert_eq!(out.len() % tokens, 0, "output is [tokens, rows]");
    let (_, bytes) = dtype.block_layout().expect("a block type");
    assert_eq!(
        rows.len(),
        out.len() / tokens * cols / 256 * bytes as usize,
        "{dtype} rows vs outputs"
    );
    true
}

/// Whether [`gemm_rows_512`] serves `dtype` with `kernel`: Q4_K, Q5_K and Q6_K with AVX-512
/// VNNI (the [`IntKernel::Vnni`] hosts, which all have AVX-512 F).
pub fn has_k512_kernel(kernel: IntKernel, dtype: GgmlDType) -> bool {
    has_k_lane_kernel(kernel, dtype)
}

/// Whether products may take [`gemm_rows_512`] in this process: `PSY_NO_K512=1` keeps the
/// 8-token lanes (same bits), to measure one against the other with one binary.
pub fn k512_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PSY_NO_K512").is_none_or(|v| v == "0"))
}

/// The fewest tokens of a product that take [`gemm_rows_512`] (fewer keep the tiles): 2, since its panels are decoded by vectors. One 8960 x 1536 projection, 2 threads,
/// Intel Xeon (AMX host), criterion means, tiles vs this kernel (2026-12-04 23:45 and 00:15 UTC):
/// at 2 and 4 tokens Q4_K 917 / 1016 vs 769 / 885 us, Q5_K 918-1015 / 1078-1121 vs 870-911 /
/// 995-1061, Q6_K 1013 / 1133 vs 877 / 1078. (Decoded row by row, on AMD Zen 5 at 2 and 4 tokens
/// it was behind the tiles for Q5_K and Q6_K, 8 tokens was its threshold then; AMD was not
/// measured since.) One token keeps the tiles (a single sequence's token takes the GEMV).
pub const K512_MIN_TOKENS: usize = 2;

/// Whether a product of `tokens` rows multiplies `dtype` by [`gemm_rows_512`] with `kernel`.
pub fn takes_k512(kernel: IntKernel, dtype: GgmlDType, tokens: usize) -> bool {
    tokens >= K512_MIN_TOKENS && has_k512_kernel(kernel, dtype) && k512_enabled()
}

/// [`gemm_rows`] with 16 rows in the lanes of a 512-bit vector (`k_gemm512_x86::k_rows_512`):
/// the same f32 results, bit for bit, for every token, whole groups or not. The first `panels`
/// rows of `rows` (a multiple of 16) are stored as panels (`k_panels.rs`), the rest as rows.
/// [`has_k512_kernel`] must hold; lengths are checked here, since the SIMD kernel loads
/// without bounds checks.
pub fn gemm_rows_512(
    kernel: IntKernel,
    dtype: GgmlDType,
    rows: &[u8],
    panels: usize,
    batch: &Q8Batch,
    out: &mut [f32],
) {
    assert!(
        has_k512_kernel(kernel, dtype),
        "a 512-bit kernel for {dtype}"
    );
    if !checked_k_batch(dtype, rows, batch, out) {
        return;
    }
    assert!(
        panels.is_multiple_of(16) && panels <= out.len() / batch.tokens.len(),
        "{panels} panel rows: whole panels of the rows"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `has_k512_kernel` holds only with AVX-512 F and VNNI detected; lengths checked
    // above.
    unsafe {
        super::k_gemm512_x86::k_rows_512(dtype, rows, panels, batch, out)
    }
}

/// The portable kernel's dot product for every (row, token).
fn gemm_rows_scalar(
    dtype: GgmlDType,
    rows: &[u8],
    row_bytes: usize,
    batch: &Q8Batch,
    out: &mut [f32],
) {
    let n = rows.len() / row_bytes;
    for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
        for (t, a) in batch.tokens.iter().enumerate() {
            out[t * n + r] = int_scalar::dot_row(dtype, row, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::quant::k_panels;
    use crate::runtime::quant::test_blocks::{assert_each_is_the_gemv, matrix};
    use proptest::prelude::*;

    const TYPES: [GgmlDType; 10] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];

    /// Every kernel's tiles (and lanes, where it has them) equal the GEMV's dot product of each
    /// (row, token) on the scalar kernel, bit for bit.
    fn assert_tiles_equal_the_gemv(dtype: GgmlDType, rows: usize, w: &[u8], x: &[f32], k: usize) {
        let batch = Q8Batch::quantize(x, k, activation_block(dtype));
        let tokens = batch.tokens.len();
        let lanes = LaneActivations::new(&batch);
        let mut runs = Vec::new();
        for kernel in IntKernel::available() {
            let mut out = vec![0.0f32; rows * tokens];
            gemm_rows(kernel, dtype, w, &batch, &mut out);
            runs.push((format!("{kernel:?} tiles"), out));
            if has_k_lane_kernel(kernel, dtype) {
                let mut out = vec![0.0f32; rows * tokens];
                gemm_rows_lanes(kernel, dtype, w, &batch, &lanes, &mut out);
                runs.push((format!("{kernel:?} lanes"), out));
            }
            if has_k512_kernel(kernel, dtype) {
                let mut out = vec![0.0f32; rows * tokens];
                gemm_rows_512(kernel, dtype, w, 0, &batch, &mut out);
                runs.push((format!("{kernel:?} 512-bit"), out));
                let whole = rows / 16 * 16;
                if whole > 0 {
                    let row_bytes = w.len() / rows;
                    let mut panels = w.to_vec();
                    k_panels::rows_to_panels(dtype, &mut panels, rows, row_bytes);
                    let mut out = vec![0.0f32; rows * tokens];
                    gemm_rows_512(kernel, dtype, &panels, whole, &batch, &mut out);
                    runs.push((format!("{kernel:?} 512-bit panels"), out));
                }
            }
        }
        for (kernel, out) in runs {
            assert_each_is_the_gemv(dtype, w, rows, &batch, &out, &kernel);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// 1-19 tokens (tiles of 8, 4 and 1), 1-39 rows of 512 values (the 512-bit kernel's
        /// panels of 16 rows whole and partial), random quants, scales (0, negative, f16's
        /// largest) and activations (±1e30, zeros, rounding ties).
        #[test]
        fn integer_gemm_tiles_equal_the_gemv_token_by_token(
            tokens in 1usize..20,
            rows in 1usize..40,
            bytes in proptest::collection::vec(any::<u8>(), 1..700),
            scales in proptest::collection::vec(
                prop_oneof![-2.0f32..2.0, Just(0.0f32), Just(65504.0f32), Just(-65504.0f32)], 1..9),
            x in proptest::collection::vec(
                prop_oneof![-100.0f32..100.0, Just(0.0f32), Just(1e30f32), Just(-1e30f32), Just(0.5f32)], 512 * 19),
        ) {
            for dtype in TYPES {
                let w = matrix(dtype, rows, 512, &bytes, &scales);
                assert_tiles_equal_the_gemv(dtype, rows, &w, &x[..tokens * 512], 512);
            }
        }
    }

    #[test]
    fn extreme_quants_and_activations_agree() {
        let k = 256;
        let ramp: Vec<f32> = (0..k).map(|i| i as f32 - 128.0).collect();
        let x: Vec<f32> = [vec![127.0f32; k], vec![-127.0; k], ramp, vec![0.0; k]]
            .into_iter()
            .cycle()
            .take(9)
            .flatten()
            .collect();
        for dtype in TYPES {
            for fill in [0x00u8, 0xff, 0x80, 0x7f] {
                for rows in [2, 16, 17] {
                    let w = matrix(dtype, rows, k, &[fill], &[1.0, -65504.0]);
                    assert_tiles_equal_the_gemv(dtype, rows, &w, &x, k);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "rows vs outputs")]
    fn a_short_matrix_is_refused_before_any_load() {
        let batch = Q8Batch::quantize(&[1.0; 64], 32, 32);
        let mut out = vec![0.0f32; 2 * 2];
        gemm_rows(
            IntKernel::detect(),
            GgmlDType::Q4_0,
            &[0u8; 18],
            &batch,
            &mut out,
        );
    }
}

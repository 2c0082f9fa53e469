//! The integer GEMM of long prompts on Intel AMX (`amx_gemm_x86.rs`): the weights stay in their
//! GGUF blocks and are unpacked, 16 rows at a time, into a small thread-local panel in the
//! layout of the tile unit's B operand ([`Panel`]), reused for every tile of 16 or 32 tokens;
//! the activations are the prompt's 8-bit blocks ([`Q8Batch`]) copied into one token-major
//! matrix ([`AmxActivations`]), so that a tile of tokens is one strided tile load.
//!
//! One tile product covers one scale step of the weights (32 values; 16 for Q6_K), so each
//! step's int32 sums come out of the tile unit separately and get their scales there after:
//! - the K-quants (Q4_K, Q6_K) sum their steps in i32 with the sub-block scales, exactly as
//!   [`super::int_scalar::dot_row`] does, and then take the same f32 steps: their results equal
//!   the integer tiles and the GEMV, bit for bit;
//! - the 32-value types (Q4_0, Q4_1, Q8_0) add each block as `acc = fma(d_w d_x, isum, acc)`
//!   (and Q4_1's offset as `acc = fma(m, d_x sum(q_x), acc)`), where the GEMV keeps 8 partial
//!   sums of 4 values each: the tile unit sums all 32 products of a block at once, so those
//!   partial sums do not exist here. [`model_rows`] is that order in plain Rust (the tests hold
//!   the tiles to it bit for bit); against the dequantised f32 product the difference is the
//!   8-bit rounding of the activations, as for every integer kernel.
//!
//! AMX exists only on recent Intel Xeons (Sapphire Rapids on); elsewhere [`available`] is false
//! and every product keeps its previous path.

pub use super::amx_panel::AmxActivations;
use super::amx_panel::{at, layout, signed_weights, step, Panel, TILE};
use super::int_dot::IntKernel;
use super::int_gemm;
use crate::runtime::ggml_type::GgmlDType;

/// Whether the AMX GEMM multiplies `dtype`.
pub fn has_amx_kernel(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(dtype, Q4_0 | Q4_1 | Q8_0 | Q4K | Q6K)
}

/// Whether the AMX GEMM's values for `dtype` equal the GEMV's bit for bit: the K-quants (see
/// the module doc).
pub fn keeps_gemv_bits(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K)
}

/// Whether this process runs the AMX GEMM: AMX-INT8 granted by the OS, and AVX-512 (F, BW,
/// VNNI) for the scale steps and the unpacking.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            use std::arch::is_x86_feature_detected as has;
            crate::runtime::amx::support().int8
                && has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vnni")
                && has!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The fewest tokens of a single sequence's prompt that take the AMX GEMM for `dtype`.
/// The 32-value types: the prompts that took Burn's GEMM on dequantised tiles before (above
/// `projection::int_gemm_max_tokens`, 16), so the boundary between the GEMV-order tiles and the
/// long-prompt path stays where it was. The K-quants (the same bits as the tiles) from 16:
/// Qwen2.5-Coder-1.5B Q4_K_M prefill, one window each, lanes vs AMX alternating (`PSY_NO_AMX`,
/// 2 threads, 2026-12-04 10:00 UTC, load 0.4-2.0): 85.4, 86.1 vs 102.2, 102.9 tok/s at 16
/// tokens; 105.5, 105.4 vs 146.0, 140.3 at 32 (fewer tokens were not measured).
pub fn min_tokens(dtype: GgmlDType) -> usize {
    use GgmlDType::*;
    match dtype {
        Q4K | Q6K => 16,
        _ => 17,
    }
}

/// Whether a prompt of `tokens` rows multiplies `dtype` on AMX in this process. Not the
/// K-quants where the 512-bit kernel serves them (every AMX host has AVX-512 VNNI), with the
/// same bits: since its panels are decoded by vectors it is ahead of AMX. Qwen2.5-Coder-1.5B
/// Q4_K_M prefill (`PSY_BENCH_PREFILL=64,512 cargo bench --bench decode --
/// 'qwen2.5-1.5b-q4km-q/prefill/'`), AMX vs `PSY_NO_AMX=1` alternating, two runs each, Intel
/// Xeon, 2026-12-04 23:54-23:57 UTC, load 1.8: 169.0, 169.2 vs 173.3, 179.4 tok/s at 64
/// tokens; 191.6, 190.2 vs 202.6, 199.1 at 512. `PSY_NO_K512=1` gives them back to AMX.
pub fn takes(dtype: GgmlDType, tokens: usize) -> bool {
    has_amx_kernel(dtype)
        && tokens >= min_tokens(dtype)
        && available()
        && !(keeps_gemv_bits(dtype)
            && int_gemm::has_k512_kernel(IntKernel::detect(), dtype)
            && int_gemm::k512_enabled())
}

/// The product of a pair of i16 halves, as `vpdpwssd` sums it.
fn pair_dot(a: i32, b: i32) -> i32 {
    let (a0, a1) = (i32::from(a as i16), a >> 16);
    let (b0, b1) = (i32::from(b as i16), b >> 16);
    a0 * b0 + a1 * b1
}

/// What the tile unit computes for step `s` of token `t` and panel row `n`: the int32 sum of
/// the step's products, read from the VNNI layout.
fn tile_sum(
    dtype: GgmlDType,
    acts: &AmxActivations,
    panel: &Panel,
    t: usize,
    s: usize,
    n: usize,
) -> i32 {
    let st = step(dtype);
    (0..st / 4)
        .map(|kk| {
            let row = (s * st / 4 + kk) * 64 + n * 4;
            (0..4)
                .map(|i| {
                    let a = i32::from(acts.qs[t * acts.cols + s * st + kk * 4 + i]);
                    let w = panel.q[row + i];
                    let w = if signed_weights(dtype) {
                        i32::from(w as i8)
                    } else {
                        i32::from(w)
                    };
                    a * w
                })
                .sum::<i32>()
        })
        .sum()
}

/// `out[t * n + r] = dot(row r, token t)` in the AMX GEMM's order, in plain Rust: the tile
/// products read from [`Panel`]'s layout, then the scale steps of the module doc. The reference
/// of the tiles' bits and of the packing.
pub(super) fn model_rows(dtype: GgmlDType, rows: &[u8], acts: &AmxActivations, out: &mut [f32]) {
    let (elems, size) = layout(dtype);
    let cols = acts.cols;
    let row_bytes = cols / elems * size;
    let n = rows.len() / row_bytes;
    let blocks = cols / elems;
    let mut panel = Panel::default();
    for r0 in (0..n).step_by(TILE) {
        panel.pack(dtype, rows, row_bytes, r0, cols);
        for nr in 0..TILE.min(n - r0) {
            for t in 0..acts.tokens {
                let v = match dtype {
                    GgmlDType::Q4K | GgmlDType::Q6K => {
                        let steps = elems / step(dtype);
                        let mut acc = 0.0f32;
                        for sb in 0..blocks {
                            let mut isum = 0i32;
                            for j in 0..steps {
                                let s = tile_sum(dtype, acts, &panel, t, sb * steps + j, nr);
                                isum += panel.i[at::sc(steps, sb, j) + nr] * s;
                            }
                            let mut pairs = 0i32;
                            for p in 0..8 {
                                let a = acts.pairs[t * cols / 32 + sb * 8 + p];
                                pairs += pair_dot(a, panel.i[at::pair(blocks, steps, sb, p) + nr]);
                            }
                            let dx = acts.d[t * blocks + sb];
                            let d = panel.f[at::dk(sb) + nr];
                            acc += if dtype == GgmlDType::Q4K {
                                let dmin = panel.f[at::dmin(blocks, sb) + nr];
                                (d * dx) * isum as f32 - (dmin * dx) * pairs as f32
                            } else {
                                (d * dx) * (isum - 32 * pairs) as f32
                            };
                        }
                        // The GEMV's `hsum(lanes) + acc` with its lanes at zero.
                        0.0 + acc
                    }
                    _ => {
                        let mut acc = 0.0f32;
                        for b in 0..blocks {
                            let s = tile_sum(dtype, acts, &panel, t, b, nr);
                            let dx = acts.d[t * blocks + b];
                            acc = (panel.f[at::d32(b) + nr] * dx).mul_add(s as f32, acc);
                            if dtype == GgmlDType::Q4_1 {
                                let m = panel.f[at::m32(blocks, b) + nr];
                                acc = m.mul_add(acts.dsum[t * blocks + b], acc);
                            }
                        }
                        acc
                    }
                };
                out[t * n + r0 + nr] = v;
            }
        }
    }
}

/// `out[t * n + r] = dot(row r, token t)` (`[tokens, n]`) for the `n` consecutive rows of
/// `dtype` in `rows`: on AMX where [`available`], else by [`model_rows`] (the same bits, slowly;
/// callers pick the AMX GEMM only where it is available). [`has_amx_kernel`] must hold and
/// `acts` be quantized with the block of `dtype`; lengths are checked here, since the kernel
/// loads without bounds checks.
pub fn gemm_rows(dtype: GgmlDType, rows: &[u8], acts: &AmxActivations, out: &mut [f32]) {
    assert!(has_amx_kernel(dtype), "an AMX kernel for {dtype}");
    let tokens = acts.tokens;
    if tokens == 0 || out.is_empty() {
        return;
    }
    let (elems, size) = layout(dtype);
    assert_eq!(
        acts.block,
        super::q8::activation_block(dtype),
        "activation blocks"
    );
    assert_eq!(acts.cols % elems, 0, "activations are whole blocks");
    assert_eq!(out.len() % tokens, 0, "output is [tokens, rows]");
    let row_bytes = acts.cols / elems * size;
    assert_eq!(
        rows.len(),
        out.len() / tokens * row_bytes,
        "{dtype} rows vs outputs"
    );
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: `available()` checked AMX-INT8 (with the OS permission) and AVX-512; lengths
        // checked above.
        return unsafe { super::amx_gemm_x86::gemm_rows(dtype, rows, row_bytes, acts, out) };
    }
    model_rows(dtype, rows, acts, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::quant::int_scalar;
    use crate::runtime::quant::legacy::f16_at;
    use crate::runtime::quant::q8::Q8Batch;
    use half::f16;
    use proptest::prelude::*;

    const TYPES: [GgmlDType; 5] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q6K,
    ];

    /// `rows` rows of `dtype` for `k` values from `bytes` (cycled), with finite f16 scales from
    /// `scales` (cycled) in the f16 fields.
    fn matrix(dtype: GgmlDType, rows: usize, k: usize, bytes: &[u8], scales: &[f32]) -> Vec<u8> {
        let (elems, size) = layout(dtype);
        let mut out: Vec<u8> = bytes
            .iter()
            .copied()
            .cycle()
            .take(rows * k / elems * size)
            .collect();
        let fields: &[usize] = match dtype {
            GgmlDType::Q4_1 | GgmlDType::Q4K => &[0, 2],
            GgmlDType::Q6K => &[208],
            _ => &[0],
        };
        let mut s = scales.iter().cycle();
        for blk in out.chunks_exact_mut(size) {
            for &at in fields {
                blk[at..at + 2].copy_from_slice(&f16::from_f32(*s.next().unwrap()).to_le_bytes());
            }
        }
        out
    }

    /// The 32-value types' order written directly from the block bytes (no panel): per block
    /// the integer dot of the quants, then the fused steps of the module doc.
    fn direct_32(dtype: GgmlDType, row: &[u8], batch: &Q8Batch, t: usize) -> f32 {
        let (_, size) = layout(dtype);
        let a = &batch.tokens[t];
        let mut acc = 0.0f32;
        for (b, blk) in row.chunks_exact(size).enumerate() {
            let q = |e: usize| -> i32 {
                let nib = |off: usize| {
                    let byte = blk[off + e % 16];
                    i32::from(if e < 16 { byte & 15 } else { byte >> 4 })
                };
                match dtype {
                    GgmlDType::Q4_0 => nib(2) - 8,
                    GgmlDType::Q4_1 => nib(4),
                    _ => i32::from(blk[2 + e] as i8),
                }
            };
            let isum: i32 = (0..32).map(|e| q(e) * i32::from(a.qs[b * 32 + e])).sum();
            acc = (f16_at(blk, 0) * a.d[b]).mul_add(isum as f32, acc);
            if dtype == GgmlDType::Q4_1 {
                acc = f16_at(blk, 2).mul_add(a.d[b] * a.sums[b] as f32, acc);
            }
        }
        acc
    }

    /// The plain-Rust model of the tiles equals, bit for bit, the integer GEMV (K-quants) or
    /// the direct per-block order (32-value types): the panel layout and scale offsets hold on
    /// any CPU. Where AMX runs, the tiles equal the model bit for bit.
    fn check(dtype: GgmlDType, rows: usize, w: &[u8], x: &[f32], k: usize) {
        let batch = Q8Batch::quantize(x, k, super::super::q8::activation_block(dtype));
        let acts = AmxActivations::new(&batch);
        let tokens = batch.tokens.len();
        let row_bytes = w.len() / rows;
        let mut model = vec![0.0f32; rows * tokens];
        model_rows(dtype, w, &acts, &mut model);
        for r in 0..rows {
            let row = &w[r * row_bytes..][..row_bytes];
            for t in 0..tokens {
                let want = match dtype {
                    GgmlDType::Q4K | GgmlDType::Q6K => {
                        int_scalar::dot_row(dtype, row, &batch.tokens[t])
                    }
                    _ => direct_32(dtype, row, &batch, t),
                };
                let got = model[t * rows + r];
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{dtype} model row {r} token {t}: {got} vs {want}"
                );
            }
        }
        if available() {
            // `gemm_rows` runs the tiles here.
            let mut tiles = vec![f32::NAN; rows * tokens];
            gemm_rows(dtype, w, &acts, &mut tiles);
            for (i, (a, b)) in tiles.iter().zip(&model).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{dtype} tiles row {} token {}: {a} vs {b}",
                    i % rows,
                    i / rows
                );
            }
        } else {
            eprintln!("AMX tiles skipped: no AMX-INT8 (or AVX-512) on this CPU/OS");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Ragged shapes: 1-70 tokens (tiles of 32 and 16 and a padded rest), 1-40 rows (a
        /// panel of 16 and a partial one), 256 or 512 values; random quants, scales (0,
        /// negative, f16's largest) and activations (±1e30, zeros, rounding ties).
        #[test]
        fn amx_gemm_equals_its_model_and_the_reference(
            tokens in 1usize..70,
            rows in 1usize..40,
            wide in any::<bool>(),
            bytes in proptest::collection::vec(any::<u8>(), 1..700),
            scales in proptest::collection::vec(
                prop_oneof![-2.0f32..2.0, Just(0.0f32), Just(65504.0f32), Just(-65504.0f32)], 1..9),
            x in proptest::collection::vec(
                prop_oneof![-100.0f32..100.0, Just(0.0f32), Just(1e30f32), Just(-1e30f32), Just(0.5f32)], 512),
        ) {
            let k = if wide { 512 } else { 256 };
            let x: Vec<f32> = x.iter().cycle().skip(tokens).take(tokens * k).copied().collect();
            for dtype in TYPES {
                let w = matrix(dtype, rows, k, &bytes, &scales);
                check(dtype, rows, &w, &x, k);
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
            .take(37)
            .flatten()
            .collect();
        for dtype in TYPES {
            for fill in [0x00u8, 0xff, 0x80, 0x7f] {
                let w = matrix(dtype, 33, k, &[fill], &[1.0, -65504.0]);
                check(dtype, 33, &w, &x, k);
            }
        }
    }

    /// The 32-value types' order stays within the 8-bit rounding of the activations of the
    /// dequantised f32 product (the bound of `q8.rs`, plus f32 rounding).
    #[test]
    fn the_32_value_order_is_within_the_8_bit_bound_of_the_f32_product() {
        let (rows, k, tokens) = (20usize, 512usize, 19usize);
        let x: Vec<f32> = (0..tokens * k)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
            .collect();
        let bytes: Vec<u8> = (0..997u32).map(|i| (i * 31 + 7) as u8).collect();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = matrix(dtype, rows, k, &bytes, &[0.01, -0.02, 0.015]);
            let dense = super::super::dequantize(dtype, &w).unwrap();
            let batch = Q8Batch::quantize(&x, k, 32);
            let acts = AmxActivations::new(&batch);
            let mut got = vec![0.0f32; rows * tokens];
            model_rows(dtype, &w, &acts, &mut got);
            for t in 0..tokens {
                for r in 0..rows {
                    let wr = &dense[r * k..(r + 1) * k];
                    let xt = &x[t * k..(t + 1) * k];
                    let want: f64 = wr
                        .iter()
                        .zip(xt)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    let bound: f64 = (0..k / 32)
                        .map(|b| {
                            let d = f64::from(batch.tokens[t].d[b]);
                            d / 2.0
                                * wr[b * 32..][..32]
                                    .iter()
                                    .map(|v| f64::from(v.abs()))
                                    .sum::<f64>()
                        })
                        .sum::<f64>()
                        + 1e-4 * (1.0 + want.abs());
                    let v = f64::from(got[t * rows + r]);
                    assert!(
                        (v - want).abs() <= bound,
                        "{dtype} t {t} r {r}: {v} vs {want} (bound {bound})"
                    );
                }
            }
        }
    }

    #[test]
    fn a_panel_holds_4_consecutive_k_of_each_row_side_by_side() {
        // Q8_0 rows whose value k of row n is (n * 7 + k) as i8: byte (k/4)*64 + n*4 + k%4.
        let (rows, k) = (18usize, 64usize);
        let mut w = Vec::new();
        for n in 0..rows {
            for b in 0..k / 32 {
                w.extend(f16::from_f32(1.0).to_le_bytes());
                w.extend((0..32).map(|e| (n * 7 + b * 32 + e) as u8));
            }
        }
        let mut p = Panel::default();
        p.pack(GgmlDType::Q8_0, &w, w.len() / rows, 16, k);
        // Rows 16 and 17 of the matrix are panel rows 0 and 1; the rest are zeros.
        assert_eq!(p.q[0..8], [112, 113, 114, 115, 119, 120, 121, 122]);
        assert_eq!(p.q[64 + 4], 119 + 4);
        assert!(p.q[8..64].iter().all(|&v| v == 0));
        assert_eq!(p.f[at::d32(1)], 1.0);
        assert_eq!(p.f[at::d32(1) + 2], 0.0);
    }
}

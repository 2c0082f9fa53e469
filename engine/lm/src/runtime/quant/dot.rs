//! Dot products of one quantized row with f32 activations, reading the blocks directly.
//!
//! Why: dequantising a row to f32 and then taking an f32 dot product costs a store and a load
//! per weight and left the 4-bit GEMV slower than the f32 one. The AVX2 kernels here decode a
//! block into registers (nibbles -> i32 -> f32) and multiply-add it with the activations, with
//! the block scale applied once per block: `sum_b d_b * (q_b . x_b) + m_b * sum(x_b)`. That is
//! the dequantised dot product with the products grouped differently, so it differs from the
//! f32 path only by f32 rounding. Types without a kernel, and CPUs without AVX2/FMA/F16C, use
//! the portable path: dequantise into a scratch row, then [`kernels::dot`].

use super::dequant::dequantize_into;
use crate::runtime::ggml_type::GgmlDType;
use crate::runtime::kernels;

/// Sums of `x` over consecutive groups of 32 (the offset terms of Q4_1 and Q4_K).
pub fn group_sums(x: &[f32]) -> Vec<f32> {
    x.chunks(32).map(|c| c.iter().sum()).collect()
}

/// Whether [`dot_row`] runs a fused SIMD kernel on this machine for `dtype`.
pub fn has_fused_kernel(dtype: GgmlDType) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use GgmlDType::*;
        matches!(dtype, Q4_0 | Q4_1 | Q8_0 | Q4K | Q6K)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = dtype;
        false
    }
}

/// `dot(dequantised row, x)`. `row` is whole blocks of `dtype` covering `x.len()` values,
/// `sums` is [`group_sums`] of `x`, `scratch` holds `x.len()` floats for the portable path;
/// `fused` is [`has_fused_kernel`] (checked once per matrix product by the caller).
#[inline]
pub fn dot_row(
    dtype: GgmlDType,
    row: &[u8],
    x: &[f32],
    sums: &[f32],
    scratch: &mut [f32],
    fused: bool,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if fused {
        // SAFETY: `fused` is only true when AVX2, FMA and F16C were detected; the row holds
        // whole blocks for `x.len()` values (checked by `QuantMatrix::new`), which the kernels
        // rely on for their unchecked loads.
        return unsafe { avx2::dot_row(dtype, row, x, sums) };
    }
    let _ = (fused, sums);
    dequantize_into(dtype, row, scratch).expect("rows are whole blocks by construction");
    kernels::dot(scratch, x)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::runtime::ggml_type::GgmlDType;
    use crate::runtime::quant::kquants::k_scale_min;

    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = u16::from_le_bytes([*p, *p.add(1)]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
    }

    /// `sum_i q_i * x_i` over 16 unsigned byte quants, as 8 lanes.
    #[inline(always)]
    unsafe fn dot16_u8(q: __m128i, x: *const f32) -> __m256 {
        let a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
        let b = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(q)));
        _mm256_fmadd_ps(
            b,
            _mm256_loadu_ps(x.add(8)),
            _mm256_mul_ps(a, _mm256_loadu_ps(x)),
        )
    }

    /// `sum_i q_i * x_i` over 16 signed byte quants, as 8 lanes.
    #[inline(always)]
    unsafe fn dot16_i8(q: __m128i, x: *const f32) -> __m256 {
        let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
        let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
        _mm256_fmadd_ps(
            b,
            _mm256_loadu_ps(x.add(8)),
            _mm256_mul_ps(a, _mm256_loadu_ps(x)),
        )
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_row(dtype: GgmlDType, row: &[u8], x: &[f32], sums: &[f32]) -> f32 {
        let (p, px) = (row.as_ptr(), x.as_ptr());
        let mut acc = _mm256_setzero_ps();
        // Offset terms (mins) accumulate apart, as scalars.
        let mut offs = 0.0f32;
        let low = _mm_set1_epi8(0x0f);
        match dtype {
            // { f16 d; u8 qs[16] }: (q - 8) * d.
            GgmlDType::Q4_0 => {
                let eight = _mm_set1_epi8(8);
                for b in 0..x.len() / 32 {
                    let (blk, xb) = (p.add(b * 18), px.add(b * 32));
                    let qs = _mm_loadu_si128(blk.add(2) as *const __m128i);
                    let lo = _mm_sub_epi8(_mm_and_si128(qs, low), eight);
                    let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(qs), low), eight);
                    let s = _mm256_add_ps(dot16_i8(lo, xb), dot16_i8(hi, xb.add(16)));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(blk)), s, acc);
                }
            }
            // { f16 d; f16 m; u8 qs[16] }: q * d + m.
            GgmlDType::Q4_1 => {
                for (b, &sum) in sums.iter().enumerate().take(x.len() / 32) {
                    let (blk, xb) = (p.add(b * 20), px.add(b * 32));
                    let qs = _mm_loadu_si128(blk.add(4) as *const __m128i);
                    let lo = _mm_and_si128(qs, low);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(qs), low);
                    let s = _mm256_add_ps(dot16_u8(lo, xb), dot16_u8(hi, xb.add(16)));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(blk)), s, acc);
                    offs += f16_at(blk.add(2)) * sum;
                }
            }
            // { f16 d; i8 qs[32] }: q * d.
            GgmlDType::Q8_0 => {
                for b in 0..x.len() / 32 {
                    let (blk, xb) = (p.add(b * 34), px.add(b * 32));
                    let q0 = _mm_loadu_si128(blk.add(2) as *const __m128i);
                    let q1 = _mm_loadu_si128(blk.add(18) as *const __m128i);
                    let s = _mm256_add_ps(dot16_i8(q0, xb), dot16_i8(q1, xb.add(16)));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(blk)), s, acc);
                }
            }
            // { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }: (d * sc) * q - dmin * m per 32.
            GgmlDType::Q4K => {
                let low = _mm256_set1_epi8(0x0f);
                for sb in 0..x.len() / 256 {
                    let (blk, xs) = (p.add(sb * 144), px.add(sb * 256));
                    let (d, dmin) = (f16_at(blk), f16_at(blk.add(2)));
                    let (sc, mn) = k_scale_min(std::slice::from_raw_parts(blk.add(4), 12));
                    for c in 0..4 {
                        let q = _mm256_loadu_si256(blk.add(16 + c * 32) as *const __m256i);
                        for (s, nib) in [
                            _mm256_and_si256(q, low),
                            _mm256_and_si256(_mm256_srli_epi16::<4>(q), low),
                        ]
                        .into_iter()
                        .enumerate()
                        {
                            let sub = 2 * c + s;
                            let xb = xs.add(sub * 32);
                            let v = _mm256_add_ps(
                                dot16_u8(_mm256_castsi256_si128(nib), xb),
                                dot16_u8(_mm256_extracti128_si256::<1>(nib), xb.add(16)),
                            );
                            let dl = d * f32::from(sc[sub]);
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(dl), v, acc);
                            offs -= dmin * f32::from(mn[sub]) * sums[sb * 8 + sub];
                        }
                    }
                }
            }
            // { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }: (d * scale) * (q - 32) per 16.
            GgmlDType::Q6K => {
                let low = _mm256_set1_epi8(0x0f);
                let three = _mm256_set1_epi8(3);
                let bias = _mm256_set1_epi8(32);
                for sb in 0..x.len() / 256 {
                    let (blk, xs) = (p.add(sb * 210), px.add(sb * 256));
                    let d = f16_at(blk.add(208));
                    let scales = blk.add(192) as *const i8;
                    for h in 0..2 {
                        let qh = _mm256_loadu_si256(blk.add(128 + h * 32) as *const __m256i);
                        for j in 0..4 {
                            let ql = _mm256_loadu_si256(
                                blk.add(h * 64 + (j % 2) * 32) as *const __m256i
                            );
                            let lo = if j < 2 {
                                _mm256_and_si256(ql, low)
                            } else {
                                _mm256_and_si256(_mm256_srli_epi16::<4>(ql), low)
                            };
                            let shift = _mm_cvtsi32_si128(2 * j as i32);
                            let hi = _mm256_slli_epi16::<4>(_mm256_and_si256(
                                _mm256_srl_epi16(qh, shift),
                                three,
                            ));
                            let q = _mm256_sub_epi8(_mm256_or_si256(lo, hi), bias);
                            let base = h * 128 + j * 32;
                            let xb = xs.add(base);
                            let s0 = f32::from(*scales.add(base / 16));
                            let s1 = f32::from(*scales.add(base / 16 + 1));
                            acc = _mm256_fmadd_ps(
                                _mm256_set1_ps(d * s0),
                                dot16_i8(_mm256_castsi256_si128(q), xb),
                                acc,
                            );
                            acc = _mm256_fmadd_ps(
                                _mm256_set1_ps(d * s1),
                                dot16_i8(_mm256_extracti128_si256::<1>(q), xb.add(16)),
                                acc,
                            );
                        }
                    }
                }
            }
            other => unreachable!("no fused kernel for {other}"),
        }
        hsum(acc) + offs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// Pseudo-random whole blocks of `dtype` for `k` values, with finite f16 scales.
    fn blocks(dtype: GgmlDType, k: usize, f16_at: &[usize], seed: u64) -> Vec<u8> {
        let (elems, size) = dtype.block_layout().unwrap();
        let mut state = seed;
        let mut out: Vec<u8> = (0..k / elems as usize * size as usize)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        for (b, blk) in out.chunks_exact_mut(size as usize).enumerate() {
            for &at in f16_at {
                let v = f16::from_f32(0.01 + 0.003 * (b % 7) as f32 - 0.02 * (at % 4) as f32);
                blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// The fused kernels give the dot product of the bit-exact dequantised row, to f32 rounding.
    #[test]
    fn fused_dot_equals_dequantised_dot() {
        let k = 1024;
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let sums = group_sums(&x);
        for (dtype, scales) in [
            (GgmlDType::Q4_0, &[0usize][..]),
            (GgmlDType::Q4_1, &[0, 2][..]),
            (GgmlDType::Q8_0, &[0][..]),
            (GgmlDType::Q4K, &[0, 2][..]),
            (GgmlDType::Q6K, &[208][..]),
            (GgmlDType::Q5_0, &[0][..]),
        ] {
            for seed in 0..4 {
                let row = blocks(dtype, k, scales, seed);
                let mut w = vec![0.0f32; k];
                dequantize_into(dtype, &row, &mut w).unwrap();
                let exact: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let scale: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from((a * b).abs()))
                    .sum();
                let mut scratch = vec![0.0f32; k];
                for fused in [false, has_fused_kernel(dtype)] {
                    let got = dot_row(dtype, &row, &x, &sums, &mut scratch, fused);
                    let err = (f64::from(got) - exact).abs() / scale.max(1e-30);
                    // f32 accumulation over 1024 terms: a few 1e-7 of the absolute sum.
                    assert!(
                        err < 1e-5,
                        "{dtype} seed {seed} fused {fused}: {got} vs {exact}"
                    );
                }
            }
        }
    }
}

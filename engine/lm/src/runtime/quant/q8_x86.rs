//! [`super::Q8Activations::quantize`]'s block quantization in AVX2: the same scale and the same
//! integers (bit for bit, NaN and infinities included), 8 values per instruction instead of a
//! call to `roundf` per value (the crate is built for baseline x86-64, which has no rounding
//! instruction). Quantization runs on one thread before every product, so it matters for
//! prefill.

use std::arch::x86_64::*;

/// Quantizes one block `xb` (a multiple of 32 values) into `qb` and returns its scale
/// `max|x| / 127`, exactly as the portable loop of `q8.rs`. SAFETY: the CPU has AVX2;
/// `qb.len() == xb.len()`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_block_avx2(xb: &[f32], qb: &mut [i8]) -> f32 {
    debug_assert_eq!(xb.len(), qb.len());
    debug_assert_eq!(xb.len() % 32, 0);
    let p = xb.as_ptr();
    let sign = _mm256_set1_ps(-0.0);
    // max|x|: `_mm256_max_ps(a, m)` returns `m` when `a` is NaN, as `f32::max` skips NaN.
    let mut m = _mm256_setzero_ps();
    for i in (0..xb.len()).step_by(8) {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(i))), m);
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)));
    let scale = amax / 127.0;
    let inv = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    // `round` (half away from zero), NaN to 0, clamp to [-127, 127]: as the portable loop.
    let quant8 = |i: usize| {
        let y = _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv);
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
        // y - t is exact; a fractional part of at least a half rounds away from zero.
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
        let up = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half);
        let away = _mm256_or_ps(_mm256_and_ps(y, sign), one);
        let r = _mm256_add_ps(t, _mm256_and_ps(up, away));
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
        _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
    };
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for i in (0..xb.len()).step_by(32) {
        let ab = _mm256_packs_epi32(quant8(i), quant8(i + 8));
        let cd = _mm256_packs_epi32(quant8(i + 16), quant8(i + 24));
        let q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
        _mm256_storeu_si256(qb.as_mut_ptr().add(i) as *mut __m256i, q);
    }
    scale
}

//! `g = silu(g) * u` over slices (a gated MLP's activation), bit for bit Burn's `silu` times `u`,
//! and `exp` over a softmax's scores, bit for bit `f32::exp`, 16 values at a time where the CPU
//! allows.
//!
//! Burn's CPU `silu` takes `f32::exp`, glibc's `expf`, one value at a time; in a batched decoding
//! step of Qwen2.5-Coder-1.5B that scalar `expf` and its closure were ~7.5% of the step (perf, 8
//! sequences), of SmolLM2's ~10%. glibc's `expf` (sysdeps/ieee754/flt-32/e_expf.c) is a fixed
//! sequence of double operations, so the same operations in 8 lanes give the same bits: here
//! the sequence of its FMA build (`__expf_fma`, which this glibc picks on FMA CPUs), read from
//! its disassembly: `kd = fma(N/ln2, x, shift)`, `r = fma(N/ln2, x, -(kd - shift))`, `z =
//! fma(C0, r, C1)`, `y = fma(C2, r, 1)`, `y = fma(z, r * r, y)`, times the table's `2^(k/32)`,
//! rounded to f32. Lanes whose exponent argument is 88 or more in magnitude (overflow,
//! underflow, infinities, NaN) take the scalar function for their whole vector.
//!
//! Another libm (a non-FMA build, another C library) may round differently, so the vector path
//! is used only after it has given the scalar function's bits on a probe of 2^16 values spread
//! over the whole range in this process ([`vector_is_exact`]); otherwise every value is scalar.

/// Burn's `silu` on the CPU (flex): `x * sigmoid(x)` with its two-sided sigmoid, so that the
/// fused path gives the same bits.
pub fn silu(x: f32) -> f32 {
    let sigmoid = if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    };
    x * sigmoid
}

/// `g[i] = silu(g[i]) * u[i]`.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "gate and up of one length");
    #[cfg(target_arch = "x86_64")]
    if vector_is_exact() {
        // SAFETY: `vector_is_exact` holds only with AVX-512 F detected.
        return unsafe { x86::silu_mul_512(g, u) };
    }
    for (g, u) in g.iter_mut().zip(u) {
        *g = silu(*g) * u;
    }
}

/// `x[i] = x[i].exp()` for arguments at most 0 (a softmax's `s - max`), bit for bit
/// `f32::exp`, 16 values at a time where [`vector_is_exact`] holds (its probe checks these
/// exponentials on their own; the exhaustive test covers every f32).
pub fn exp_nonpositive(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if vector_is_exact() {
        // SAFETY: `vector_is_exact` holds only with AVX-512 F detected.
        return unsafe { x86::exp_512(x) };
    }
    for v in x.iter_mut() {
        *v = v.exp();
    }
}

/// Whether this process takes the vector path: AVX-512 F, and the vector path equal to the
/// scalar one, bit for bit, on the probe (checked once).
pub fn vector_is_exact() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static EXACT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *EXACT.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::env::var_os("PSY_SCALAR_SILU").is_none_or(|v| v == "0")
                && probe_matches()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The probe: 2^16 values from every part of the f32 range (each 2^16-th bit pattern, both
/// signs) and the interval where `expf` leaves its fast path, through both paths of `silu_mul`
/// and of `exp_nonpositive`.
#[cfg(target_arch = "x86_64")]
fn probe_matches() -> bool {
    let mut g: Vec<f32> = (0..1u32 << 16)
        .map(|i| f32::from_bits(i.wrapping_mul(65_537).rotate_left(13)))
        .chain((0..4096).map(|i| -110.0 + i as f32 * 0.055))
        .collect();
    let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
    let want: Vec<u32> = g
        .iter()
        .zip(&u)
        .map(|(g, u)| (silu(*g) * u).to_bits())
        .collect();
    // The exponentials alone too: a matching SiLU could hide an exp one unit off.
    let mut e = g.clone();
    let want_exp: Vec<u32> = e.iter().map(|v| v.exp().to_bits()).collect();
    // SAFETY: AVX-512 F was detected by the caller first.
    unsafe {
        x86::silu_mul_512(&mut g, &u);
        x86::exp_512(&mut e);
    }
    g.iter().map(|v| v.to_bits()).eq(want) && e.iter().map(|v| v.to_bits()).eq(want_exp)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::runtime::silu_mul::silu;

    /// `2^(i/32)` with `i << 47` taken off its bits (glibc's `__exp2f_data.tab`): adding
    /// `k << 47` to entry `k % 32` gives `2^(k/32)`.
    const TABLE: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// The rounding shift `1.5 * 2^52` (0x1.8p+52).
    const SHIFT: f64 = 6755399441055744.0;

    /// `32 / ln 2` (0x1.71547652b82fep+0 * 32, exact).
    fn inv_ln2_n() -> f64 {
        f64::from_bits(0x3ff71547652b82fe) * 32.0
    }

    /// The polynomial of `2^(r/32)` (glibc's `poly_scaled`).
    fn poly() -> [f64; 3] {
        let n = 32.0f64;
        [
            f64::from_bits(0x3fac6af84b912394) / n / n / n, // 0x1.c6af84b912394p-5
            f64::from_bits(0x3fcebfce50fac4f3) / n / n,     // 0x1.ebfce50fac4f3p-3
            f64::from_bits(0x3fe62e42ff0c52d6) / n,         // 0x1.62e42ff0c52d6p-1
        ]
    }

    /// `expf` of 8 values none of whose magnitudes reaches glibc's slow path (checked by the
    /// caller), as `__expf_fma` computes it.
    #[inline(always)]
    unsafe fn expf8(x: __m256) -> __m256 {
        let [c0, c1, c2] = poly();
        let xd = _mm512_cvtps_pd(x);
        let inv = _mm512_set1_pd(inv_ln2_n());
        let shift = _mm512_set1_pd(SHIFT);
        let kds = _mm512_fmadd_pd(inv, xd, shift);
        let ki = _mm512_castpd_si512(kds);
        let kd = _mm512_sub_pd(kds, shift);
        let r = _mm512_fmsub_pd(inv, xd, kd);
        let idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
        let t = _mm512_i64gather_epi64::<8>(idx, TABLE.as_ptr() as *const i64);
        let s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
        let z = _mm512_fmadd_pd(_mm512_set1_pd(c0), r, _mm512_set1_pd(c1));
        let r2 = _mm512_mul_pd(r, r);
        let y = _mm512_fmadd_pd(r, _mm512_set1_pd(c2), _mm512_set1_pd(1.0));
        let y = _mm512_fmadd_pd(z, r2, y);
        _mm512_cvtpd_ps(_mm512_mul_pd(y, s))
    }

    /// [`expf8`] of both halves of `v`.
    #[inline(always)]
    unsafe fn expf16(v: __m512) -> __m512 {
        let lo = expf8(_mm512_castps512_ps256(v));
        let hi = expf8(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(v),
        )));
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
            _mm256_castps_pd(hi),
        ))
    }

    /// `exp` 16 values at a time; a vector with a lane outside glibc's fast path (positive
    /// arguments included, which `exp_nonpositive` does not promise) goes scalar. SAFETY: the CPU
    /// has AVX-512 F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn exp_512(x: &mut [f32]) {
        let n = x.len() / 16 * 16;
        let limit = _mm512_set1_epi32(0x42a << 20 | 0xfffff);
        let sign = _mm512_set1_epi32(i32::MIN);
        for i in (0..n).step_by(16) {
            let v = _mm512_loadu_ps(x.as_ptr().add(i));
            let abs = _mm512_andnot_si512(sign, _mm512_castps_si512(v));
            if _mm512_cmpgt_epu32_mask(abs, limit) != 0 {
                for e in &mut x[i..i + 16] {
                    *e = e.exp();
                }
                continue;
            }
            _mm512_storeu_ps(x.as_mut_ptr().add(i), expf16(v));
        }
        for e in &mut x[n..] {
            *e = e.exp();
        }
    }

    /// `silu_mul` 16 values at a time. SAFETY: the CPU has AVX-512 F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn silu_mul_512(g: &mut [f32], u: &[f32]) {
        let n = g.len() / 16 * 16;
        let sign = _mm512_set1_epi32(i32::MIN);
        // glibc's fast path: the exponent field of |v| at most 0x42a (|v| < 88).
        let limit = _mm512_set1_epi32(0x42a << 20 | 0xfffff);
        let one = _mm512_set1_ps(1.0);
        for i in (0..n).step_by(16) {
            let x = _mm512_loadu_ps(g.as_ptr().add(i));
            let bits = _mm512_castps_si512(x);
            // The scalar function's argument: -x for x >= 0 (-0.0 included), x below.
            let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_setzero_ps());
            let v = _mm512_castsi512_ps(_mm512_mask_xor_epi32(bits, ge, bits, sign));
            let abs = _mm512_andnot_si512(sign, _mm512_castps_si512(v));
            if _mm512_cmpgt_epu32_mask(abs, limit) != 0 {
                // Some lane leaves the fast path (or is NaN): the scalar function for all.
                for j in i..i + 16 {
                    g[j] = silu(g[j]) * u[j];
                }
                continue;
            }
            let e = expf16(v);
            let den = _mm512_add_ps(one, e);
            let sig = _mm512_mask_div_ps(_mm512_div_ps(e, den), ge, one, den);
            let y = _mm512_mul_ps(_mm512_mul_ps(x, sig), _mm512_loadu_ps(u.as_ptr().add(i)));
            _mm512_storeu_ps(g.as_mut_ptr().add(i), y);
        }
        for j in n..g.len() {
            g[j] = silu(g[j]) * u[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 257th f32 bit pattern (16.7 million values, both signs, NaNs and infinities
    /// included), then a dense grid where `expf` leaves its fast path.
    fn sampled_values() -> Vec<f32> {
        (0..u32::MAX / 257)
            .map(|i| f32::from_bits(i * 257))
            .chain((0..20_000).map(|i| -120.0 + i as f32 * 0.012))
            .collect()
    }

    /// How many of `x`'s values `vector` (in place) gives other bits than `scalar` (each).
    fn differing(
        mut x: Vec<f32>,
        scalar: impl Fn(f32, usize) -> f32,
        vector: impl Fn(&mut [f32]),
    ) -> usize {
        let want: Vec<u32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| scalar(*v, i).to_bits())
            .collect();
        vector(&mut x);
        x.iter()
            .zip(&want)
            .filter(|(v, w)| v.to_bits() != **w)
            .count()
    }

    /// `differing` over every f32 bit pattern, 2^16 chunks across the thread pool.
    fn differing_over_every_f32(
        scalar: impl Fn(f32, usize) -> f32 + Sync,
        vector: impl Fn(&mut [f32]) + Sync,
    ) -> usize {
        use rayon::prelude::*;
        (0..1u64 << 16)
            .into_par_iter()
            .map(|c| {
                let x = (0..1u64 << 16).map(|i| f32::from_bits((c << 16 | i) as u32));
                differing(x.collect(), &scalar, &vector)
            })
            .sum()
    }

    /// `g * u` with `u` cycling through 0.5, 1.5 .. 4.5.
    fn up(i: usize) -> f32 {
        0.5 + (i % 5) as f32
    }

    fn silu_mul_cycled(g: &mut [f32]) {
        let u: Vec<f32> = (0..g.len()).map(up).collect();
        silu_mul(g, &u);
    }

    /// The vector path equals the scalar one on [`sampled_values`]; where the vector path is
    /// not taken this compares the scalar path with itself, and says so.
    #[test]
    fn the_vector_path_gives_the_scalar_bits() {
        if !vector_is_exact() {
            eprintln!("vector SiLU not taken on this CPU / libm: scalar only");
        }
        let bad = differing(sampled_values(), |g, i| silu(g) * up(i), silu_mul_cycled);
        assert_eq!(bad, 0, "{bad} values differ from the scalar silu");
    }

    /// `exp_nonpositive` equals `f32::exp` on [`sampled_values`] (positive arguments too).
    #[test]
    fn the_vector_exp_gives_the_scalar_bits() {
        let bad = differing(sampled_values(), |v, _| v.exp(), exp_nonpositive);
        assert_eq!(bad, 0, "{bad} values differ from f32::exp");
    }

    /// Every f32 bit pattern through `exp_nonpositive` (`--ignored every_f32`).
    #[test]
    #[ignore]
    fn every_f32_gives_the_scalar_exp() {
        let bad = differing_over_every_f32(|v, _| v.exp(), exp_nonpositive);
        assert_eq!(bad, 0, "{bad} of 2^32 values differ");
    }

    /// Every f32 bit pattern through `silu_mul` (`cargo test --release -p psy-lm --lib --
    /// --ignored every_f32`; about a minute on 2 threads).
    #[test]
    #[ignore]
    fn every_f32_gives_the_scalar_bits() {
        let bad = differing_over_every_f32(|g, i| silu(g) * up(i), silu_mul_cycled);
        assert_eq!(bad, 0, "{bad} of 2^32 values differ");
    }
}

//! x86-64 SIMD integer dot products of one quantized row with [`Q8Activations`]: AVX2
//! (`maddubs` unsigned-by-signed byte products summed to i16 pairs, then `madd` to i32), and
//! AVX-512 VNNI (`vpdpbusd`: four byte products summed straight into i32) for the 32-value
//! block types. They compute the integers of `int_scalar.rs` and apply the scales with its
//! `*_value` functions in the same order, so the result equals the portable one bit for bit.
//!
//! No i16 saturation: byte pairs are at most 2 * 63 * 127 = 16,002 (Q6_K) or 2 * 128 * 127 =
//! 32,512 (Q8_0, with activations in [-127, 127]).

use std::arch::x86_64::*;

use super::int_scalar::{min_value, q4k_min_sum, q6k_bias, scaled_value};
use super::kquants::k_scale_min;
use super::q8::Q8Activations;
use crate::runtime::ggml_type::GgmlDType;

#[inline(always)]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// Sum of the 8 i32 lanes (wrapping adds: exact, the sums are far below 2^31).
#[inline(always)]
pub(super) unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// `vpdpbusd ymm` (AVX512-VNNI + VL) from zero, as inline assembly: its intrinsic and the
/// `avx512vnni` target feature need Rust 1.89, above the workspace's MSRV (1.85). SAFETY: the
/// CPU has AVX512-VNNI and AVX512-VL.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn vpdpbusd(u: __m256i, x: __m256i) -> __m256i {
    dpbusd(_mm256_setzero_si256(), u, x)
}

/// `acc + vpdpbusd(u, x)`: four unsigned-by-signed byte products added to each i32 lane (the
/// lane GEMM accumulates a block's pieces in place).
/// SAFETY: the CPU has AVX512-VNNI and AVX512-VL.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dpbusd(acc: __m256i, u: __m256i, x: __m256i) -> __m256i {
    let mut acc = acc;
    std::arch::asm!(
        "vpdpbusd {acc}, {u}, {x}",
        acc = inout(ymm_reg) acc,
        u = in(ymm_reg) u,
        x = in(ymm_reg) x,
        options(pure, nomem, nostack),
    );
    acc
}

/// `sum u_i * x_i` of 32 unsigned weight bytes and 32 signed activation bytes, in 8 i32 lanes.
#[inline(always)]
pub(super) unsafe fn mul_sum<const VNNI: bool>(u: __m256i, x: __m256i) -> __m256i {
    if VNNI {
        vpdpbusd(u, x)
    } else {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1))
    }
}

/// The 32 nibbles of 16 bytes in element order: low nibbles first, then high nibbles.
#[inline(always)]
pub(super) unsafe fn nibbles32(p: *const u8) -> __m256i {
    let qs = _mm_loadu_si128(p as *const __m128i);
    let low = _mm_set1_epi8(0x0f);
    _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16::<4>(qs), low),
        _mm_and_si128(qs, low),
    )
}

/// `lanes += scale * isum` (multiply, then add: as `int_scalar.rs`).
#[inline(always)]
unsafe fn add_block(lanes: &mut __m256, isum: __m256i, scale: f32) {
    *lanes = _mm256_add_ps(
        *lanes,
        _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(isum)),
    );
}

#[inline(always)]
unsafe fn dot_row_impl<const VNNI: bool>(dtype: GgmlDType, row: &[u8], a: &Q8Activations) -> f32 {
    let (p, xq) = (row.as_ptr(), a.qs.as_ptr());
    let x32 = |b: usize| _mm256_loadu_si256(xq.add(b * 32) as *const __m256i);
    let mut acc = 0.0f32;
    // The 32-value types: lane l of `lanes` sums elements 4l..4l+4 of each block, scaled.
    let mut lanes = _mm256_setzero_ps();
    match dtype {
        GgmlDType::Q4_0 => {
            let eight = _mm256_set1_epi8(8);
            for b in 0..a.len() / 32 {
                let blk = p.add(b * 18);
                let w = _mm256_sub_epi8(nibbles32(blk.add(2)), eight);
                // |w| * (x * sign(w)): unsigned-by-signed, as the instructions need.
                let s = mul_sum::<VNNI>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x32(b), w));
                add_block(&mut lanes, s, f16_at(blk) * a.d[b]);
            }
        }
        GgmlDType::Q4_1 => {
            // The same operations as `add_block` and `offset_value` per block, with fewer
            // shuffle-port instructions (the loop was bound by them, not by memory): `d` and `m`
            // converted together, the nibbles split by a shift instead of an insert.
            let low = _mm256_set1_epi8(0x0f);
            let nibble_shift = _mm256_set_epi64x(4, 4, 0, 0);
            let (ds, sums) = (a.d.as_ptr(), a.sums.as_ptr());
            for b in 0..a.len() / 32 {
                let blk = p.add(b * 20);
                // [d, m] in every pair of lanes.
                let dm =
                    _mm256_cvtph_ps(_mm_set1_epi32(std::ptr::read_unaligned(blk as *const i32)));
                let dx = _mm256_set1_ps(*ds.add(b));
                // 16 bytes in both halves; a 64-bit shift by 4 brings each byte's high nibble
                // down in the upper half (the bits it pulls in from the next byte are masked).
                let qs = _mm256_broadcastsi128_si256(_mm_loadu_si128(blk.add(4) as *const __m128i));
                let u = _mm256_and_si256(_mm256_srlv_epi64(qs, nibble_shift), low);
                let s = mul_sum::<VNNI>(u, x32(b));
                let scale = _mm256_mul_ps(_mm256_moveldup_ps(dm), dx);
                lanes = _mm256_add_ps(lanes, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(s)));
                // offset_value(m, d_x, sum): (m * d_x) * sum, in lane 0.
                let m = _mm_movehdup_ps(_mm256_castps256_ps128(dm));
                let xsum = _mm_cvtepi32_ps(_mm_cvtsi32_si128(*sums.add(b)));
                let off = _mm_mul_ps(_mm_mul_ps(m, _mm256_castps256_ps128(dx)), xsum);
                acc += _mm_cvtss_f32(off);
            }
        }
        GgmlDType::Q8_0 => {
            for b in 0..a.len() / 32 {
                let blk = p.add(b * 34);
                let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                let s = mul_sum::<VNNI>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x32(b), w));
                add_block(&mut lanes, s, f16_at(blk) * a.d[b]);
            }
        }
        GgmlDType::Q4K => {
            let low = _mm256_set1_epi8(0x0f);
            for sb in 0..a.len() / 256 {
                let blk = p.add(sb * 144);
                let (sc, mn) = k_scale_min(std::slice::from_raw_parts(blk.add(4), 12));
                let mut iacc = _mm256_setzero_si256();
                for c in 0..4 {
                    let q = _mm256_loadu_si256(blk.add(16 + c * 32) as *const __m256i);
                    let lo = _mm256_maddubs_epi16(_mm256_and_si256(q, low), x32(sb * 8 + 2 * c));
                    let hi = _mm256_maddubs_epi16(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), low),
                        x32(sb * 8 + 2 * c + 1),
                    );
                    let lo = _mm256_madd_epi16(lo, _mm256_set1_epi16(i16::from(sc[2 * c])));
                    let hi = _mm256_madd_epi16(hi, _mm256_set1_epi16(i16::from(sc[2 * c + 1])));
                    iacc = _mm256_add_epi32(iacc, _mm256_add_epi32(lo, hi));
                }
                let imin = q4k_min_sum(&mn, &a.sums[sb * 16..sb * 16 + 16]);
                acc += min_value(
                    f16_at(blk),
                    f16_at(blk.add(2)),
                    a.d[sb],
                    hsum_i32(iacc),
                    imin,
                );
            }
        }
        GgmlDType::Q6K => {
            let low = _mm256_set1_epi8(0x0f);
            let three = _mm256_set1_epi8(3);
            for sb in 0..a.len() / 256 {
                let blk = p.add(sb * 210);
                let scales: [i8; 16] = std::array::from_fn(|g| *blk.add(192 + g) as i8);
                let mut iacc = _mm256_setzero_si256();
                for h in 0..2 {
                    let qh = _mm256_loadu_si256(blk.add(128 + h * 32) as *const __m256i);
                    for j in 0..4 {
                        let ql =
                            _mm256_loadu_si256(blk.add(h * 64 + (j % 2) * 32) as *const __m256i);
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
                        // Unsigned 6-bit quants; the -32 is folded in through the group sums.
                        let q = _mm256_or_si256(lo, hi);
                        let prod = _mm256_maddubs_epi16(q, x32(sb * 8 + h * 4 + j));
                        let g = h * 8 + j * 2;
                        let s = _mm256_set_m128i(
                            _mm_set1_epi16(i16::from(scales[g + 1])),
                            _mm_set1_epi16(i16::from(scales[g])),
                        );
                        iacc = _mm256_add_epi32(iacc, _mm256_madd_epi16(prod, s));
                    }
                }
                let isum = hsum_i32(iacc) - q6k_bias(&scales, &a.sums[sb * 16..sb * 16 + 16]);
                acc += scaled_value(f16_at(blk.add(208)), a.d[sb], isum);
            }
        }
        other => unreachable!("no integer kernel for {other}"),
    }
    hsum_ps(lanes) + acc
}

/// `int_scalar::hsum8` in registers: halves, then pairs, the same adds in the same order.
#[inline(always)]
pub(super) unsafe fn hsum_ps(v: __m256) -> f32 {
    let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
}

/// Rows ahead of the one being multiplied whose bytes a GEMV asks the cache for. Decoding
/// streams every weight from memory once per token, and under perf the kernels stalled on
/// their first load of each block: the hardware prefetcher alone leaves them waiting.
const PREFETCH_ROWS_AHEAD: usize = 2;

/// Asks for the cache lines of `rows[start..start + len]` (the part inside `rows`), without
/// waiting for them.
#[inline(always)]
unsafe fn prefetch_row(rows: &[u8], start: usize, len: usize) {
    let end = (start + len).min(rows.len());
    let mut at = start;
    while at < end {
        _mm_prefetch::<_MM_HINT_T0>(rows.as_ptr().add(at) as *const i8);
        at += 64;
    }
}

/// `out[i] = dot(row i, a)` for the consecutive rows in `rows`, with the type dispatched once
/// (each arm inlines the kernel for a constant type).
#[inline(always)]
unsafe fn dot_rows_impl<const VNNI: bool>(
    dtype: GgmlDType,
    rows: &[u8],
    a: &Q8Activations,
    out: &mut [f32],
) {
    let row_bytes = rows.len() / out.len().max(1);
    macro_rules! each {
        ($t:expr) => {
            for (i, (row, o)) in rows.chunks_exact(row_bytes).zip(out.iter_mut()).enumerate() {
                prefetch_row(rows, (i + PREFETCH_ROWS_AHEAD) * row_bytes, row_bytes);
                *o = dot_row_impl::<VNNI>($t, row, a);
            }
        };
    }
    match dtype {
        GgmlDType::Q4_0 => each!(GgmlDType::Q4_0),
        GgmlDType::Q4_1 => each!(GgmlDType::Q4_1),
        GgmlDType::Q8_0 => each!(GgmlDType::Q8_0),
        GgmlDType::Q4K => each!(GgmlDType::Q4K),
        GgmlDType::Q6K => each!(GgmlDType::Q6K),
        other => unreachable!("no integer kernel for {other}"),
    }
}

/// AVX2 kernel. SAFETY: the CPU has AVX2 and F16C; `row` holds whole blocks of `dtype` for
/// `a.len()` values, and `a` was quantized with the block of `dtype`.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn dot_row_avx2(dtype: GgmlDType, row: &[u8], a: &Q8Activations) -> f32 {
    dot_row_impl::<false>(dtype, row, a)
}

/// [`dot_row_avx2`] over consecutive rows. SAFETY: as [`dot_row_avx2`] for every row;
/// `rows` is `out.len()` whole rows.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn dot_rows_avx2(
    dtype: GgmlDType,
    rows: &[u8],
    a: &Q8Activations,
    out: &mut [f32],
) {
    dot_rows_impl::<false>(dtype, rows, a, out)
}

/// [`dot_row_vnni`] over consecutive rows. SAFETY: as [`dot_rows_avx2`], plus AVX512-VNNI
/// and AVX512-VL (detected by the caller; the instruction is inline assembly).
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn dot_rows_vnni(
    dtype: GgmlDType,
    rows: &[u8],
    a: &Q8Activations,
    out: &mut [f32],
) {
    dot_rows_impl::<true>(dtype, rows, a, out)
}

/// AVX-512 VNNI kernel (256-bit `vpdpbusd`). SAFETY: as [`dot_row_avx2`], plus AVX512-VNNI
/// and AVX512-VL (detected by the caller; the instruction is inline assembly).
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn dot_row_vnni(dtype: GgmlDType, row: &[u8], a: &Q8Activations) -> f32 {
    dot_row_impl::<true>(dtype, row, a)
}

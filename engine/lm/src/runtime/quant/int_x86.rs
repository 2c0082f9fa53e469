//! x86-64 SIMD integer dot products of one quantized row with [`Q8Activations`]: AVX2
//! (`maddubs` unsigned-by-signed byte products summed to i16 pairs, then `madd` to i32), and
//! AVX-512 VNNI (`vpdpbusd`: four byte products summed straight into i32) for the 32-value
//! block types. They compute the integers of `int_scalar.rs` and apply the scales with its
//! `*_value` functions in the same order, so the result equals the portable one bit for bit.
//!
//! No i16 saturation: byte pairs are at most 2 * 63 * 127 = 16,002 (Q6_K) or 2 * 128 * 127 =
//! 32,512 (Q8_0, with activations in [-127, 127]); Q5_K's 31, Q3_K's 7 (its quants plus 4) and
//! Q2_K's 3 stay below Q6_K's.

use std::arch::x86_64::*;

use super::int_scalar::{min_value, offset_value, scaled_value};
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

/// `vpdpbusd ymm` (AVX512-VNNI + VL) from zero, as inline assembly: written when the
/// workspace's minimum Rust was 1.85, below the 1.89 that made its intrinsic and the
/// `avx512vnni` target feature stable (newer kernels, `gemv_lanes_x86.rs`, use them). SAFETY:
/// the CPU has AVX512-VNNI and AVX512-VL.
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

/// `vpdpwssd ymm` (AVX512-VNNI + VL): `acc` plus the sum of each i32 lane's two i16 products,
/// as inline assembly (see [`vpdpbusd`]). SAFETY: the CPU has AVX512-VNNI and -VL.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn vpdpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let mut acc = acc;
    std::arch::asm!(
        "vpdpwssd {acc}, {a}, {b}",
        acc = inout(ymm_reg) acc,
        a = in(ymm_reg) a,
        b = in(ymm_reg) b,
        options(pure, nomem, nostack),
    );
    acc
}

/// `acc + madd(a, b)`: one `vpdpwssd` with VNNI, `vpmaddwd` and an add without. Exact: the i16
/// products here (byte-pair sums times 6-bit scales, 16-value sums times scales) stay far below
/// 2^31.
#[inline(always)]
pub(super) unsafe fn madd_add<const VNNI: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    if VNNI {
        vpdpwssd(acc, a, b)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
}

/// Q4_K's 8 scales and 8 mins (`kquants::k_scale_min` of the 12 bytes at `s`) as two vectors
/// whose dword `j` holds value `j` in both i16 halves (the `b` of [`madd_add`]); the 6-bit
/// fields are unpacked four at a time in u32 words (the scalar unpacking, byte by byte, was a
/// fifth of the GEMV's instructions).
#[inline(always)]
pub(super) unsafe fn k_scale_min_dwords(s: *const u8) -> (__m256i, __m256i) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let w = |i: usize| (s.add(4 * i) as *const u32).read_unaligned();
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let sc = (u0 & LOW6, (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4));
    let mn = (u1 & LOW6, ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4));
    let dwords = |(lo, hi): (u32, u32)| {
        let v = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(
            (u64::from(hi) << 32 | u64::from(lo)) as i64,
        ));
        _mm256_or_si256(v, _mm256_slli_epi32::<16>(v))
    };
    (dwords(sc), dwords(mn))
}

/// Q6_K's 16 scales (at byte 192 of the block `blk`) as i16, dword `p` holding (scale 2p,
/// scale 2p + 1), the weights of activation sum pair `p`; and as two vectors holding scale `g`
/// in both halves of dword `g % 8` of vector `g / 8` (the chunk weights, picked by
/// [`q6k_chunk_scales`]).
#[inline(always)]
pub(super) unsafe fn q6k_scale_dwords(blk: *const u8) -> (__m256i, [__m256i; 2]) {
    let s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192) as *const __m128i));
    let (e_lo, e_hi) = (
        _mm256_unpacklo_epi16(s16, s16),
        _mm256_unpackhi_epi16(s16, s16),
    );
    (
        s16,
        [
            _mm256_permute2x128_si256::<0x20>(e_lo, e_hi),
            _mm256_permute2x128_si256::<0x31>(e_lo, e_hi),
        ],
    )
}

/// The scales of chunk `j` of a Q6_K half (`each` from [`q6k_scale_dwords`]): scale `2j` for
/// the chunk's first 16 values, `2j + 1` for the others.
#[inline(always)]
pub(super) unsafe fn q6k_chunk_scales(each: __m256i, j: usize) -> __m256i {
    let g = 2 * j as i32;
    _mm256_permutevar8x32_epi32(
        each,
        _mm256_setr_epi32(g, g, g, g, g + 1, g + 1, g + 1, g + 1),
    )
}

/// A 256-value super-block's 16 activation group sums (i32 at `sums`) as i16 pairs in 8
/// dwords, pair `j` = (sum 2j, sum 2j + 1): a [`madd_add`] with per-pair weights gives the
/// weighted sums. Exact: a sum of 16 values in [-127, 127] fits an i16.
#[inline(always)]
unsafe fn sum_pairs(sums: *const i32) -> __m256i {
    let packed = _mm256_packs_epi32(
        _mm256_loadu_si256(sums as *const __m256i),
        _mm256_loadu_si256(sums.add(8) as *const __m256i),
    );
    // `packs` works per 128-bit half: pairs [0, 1, 4, 5, 2, 3, 6, 7] back in order.
    _mm256_permute4x64_epi64::<0b11_01_10_00>(packed)
}

/// `[hsum_i32(a), hsum_i32(b), ..]` in the two low lanes (exact integer sums).
#[inline(always)]
unsafe fn hsum2_i32(a: __m256i, b: __m256i) -> __m128i {
    let h = _mm256_hadd_epi32(a, b);
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    _mm_hadd_epi32(s, s)
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

/// The fifth bits of a Q5_0/Q5_1 block (bit e of the little-endian u32 at `qh` belongs to
/// element e) as 32 byte masks in element order: 0xff where the bit is set.
#[inline(always)]
unsafe fn fifth_bit_masks(qh: *const u8) -> __m256i {
    let qh = (qh as *const i32).read_unaligned();
    // Byte e takes byte e / 8 of `qh` (a shuffle stays in its 128-bit half, so `qh` is in
    // every dword), then tests its bit e % 8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh),
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit)
}

/// Q5_0's 32 quants minus 16 as signed bytes in element order. A nibble whose fifth bit is set
/// is already `q - 16`; one whose bit is clear gets its high four bits set, which as a signed
/// byte is `nibble - 16`.
#[inline(always)]
pub(super) unsafe fn q5_0_weights(blk: *const u8) -> __m256i {
    let set = fifth_bit_masks(blk.add(2));
    _mm256_or_si256(
        nibbles32(blk.add(6)),
        _mm256_andnot_si256(set, _mm256_set1_epi8(0xf0u8 as i8)),
    )
}

/// Q5_1's 32 unsigned quants (0..32) in element order: each nibble with its fifth bit.
#[inline(always)]
pub(super) unsafe fn q5_1_weights(blk: *const u8) -> __m256i {
    let set = fifth_bit_masks(blk.add(4));
    _mm256_or_si256(
        nibbles32(blk.add(8)),
        _mm256_and_si256(set, _mm256_set1_epi8(0x10)),
    )
}

/// Q3_K's 16 signed 6-bit scales (`kquants::q3_k_scales` of the 12 bytes at `s`) as i16, the
/// fields unpacked eight at a time in u64 words: low nibbles of bytes 0-7 for scales 0-7, their
/// high nibbles for 8-15, and two high bits from byte `i % 4` of bytes 8-11 at bit `2 (i / 4)`.
/// (Byte by byte, the unpacking cost about as much as the super-block's products.)
#[inline(always)]
unsafe fn q3k_scales_i16(s: *const u8) -> __m256i {
    const LOW4: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let l = (s as *const u64).read_unaligned();
    let h = (s.add(8) as *const u32).read_unaligned();
    let high =
        |a: u32, b: u32| (u64::from((h >> b) & LOW2) << 32 | u64::from((h >> a) & LOW2)) << 4;
    let first = (l & LOW4) | high(0, 2);
    let second = ((l >> 4) & LOW4) | high(4, 6);
    let v = _mm_sub_epi8(
        _mm_set_epi64x(second as i64, first as i64),
        _mm_set1_epi8(32),
    );
    _mm256_cvtepi8_epi16(v)
}

/// A Q3_K (`q3`) or Q2_K super-block's 16 group weights as i16 in element order (dword `p`
/// holds groups 2p and 2p + 1, the `b` of [`madd_add`] against activation sum pair `p`): the
/// weights of the quants (Q3_K's signed scales, Q2_K's low nibbles) and those of the activation
/// group sums (Q3_K's scales again, for its offset of 4; Q2_K's mins, its high nibbles).
#[inline(always)]
pub(super) unsafe fn q23k_group_weights(q3: bool, blk: *const u8) -> (__m256i, __m256i) {
    if q3 {
        let v = q3k_scales_i16(blk.add(96));
        (v, v)
    } else {
        let b = _mm256_cvtepu8_epi16(_mm_loadu_si128(blk as *const __m128i));
        (
            _mm256_and_si256(b, _mm256_set1_epi16(15)),
            _mm256_srli_epi16::<4>(b),
        )
    }
}

/// The group weights `w16` of [`q23k_group_weights`] as Q6_K's chunk weights (scale `g` in
/// both halves of dword `g % 8` of vector `g / 8`), picked by [`q6k_chunk_scales`].
#[inline(always)]
pub(super) unsafe fn q23k_chunk_weights(w16: __m256i) -> [__m256i; 2] {
    let (e_lo, e_hi) = (
        _mm256_unpacklo_epi16(w16, w16),
        _mm256_unpackhi_epi16(w16, w16),
    );
    [
        _mm256_permute2x128_si256::<0x20>(e_lo, e_hi),
        _mm256_permute2x128_si256::<0x31>(e_lo, e_hi),
    ]
}

/// Chunk `j` of half `h` of the Q3_K (`q3`) or Q2_K super-block at `blk`: its 32 unsigned
/// quants in element order (bits 2j of the half's 32 quant bytes; Q3_K's third bit from bit
/// 4h + j of its 32 hmask bytes, so its quants are the stored ones plus 4).
#[inline(always)]
pub(super) unsafe fn q23k_chunk(q3: bool, blk: *const u8, h: usize, j: usize) -> __m256i {
    let qs_at = if q3 { 32 } else { 16 };
    let qs = _mm256_loadu_si256(blk.add(qs_at + h * 32) as *const __m256i);
    let u = _mm256_and_si256(
        _mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j as i32)),
        _mm256_set1_epi8(3),
    );
    if q3 {
        let hmask = _mm256_loadu_si256(blk as *const __m256i);
        let high = _mm256_and_si256(
            _mm256_srl_epi16(hmask, _mm_cvtsi32_si128((4 * h + j) as i32)),
            _mm256_set1_epi8(1),
        );
        _mm256_or_si256(u, _mm256_slli_epi16::<2>(high))
    } else {
        u
    }
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
                prefetch_line_ahead(blk);
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
                prefetch_line_ahead(blk);
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
        GgmlDType::Q5_0 => {
            for b in 0..a.len() / 32 {
                let blk = p.add(b * 22);
                prefetch_line_ahead(blk);
                let w = q5_0_weights(blk);
                let s = mul_sum::<VNNI>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x32(b), w));
                add_block(&mut lanes, s, f16_at(blk) * a.d[b]);
            }
        }
        GgmlDType::Q5_1 => {
            // Q4_1's steps in its plain form: the scaled block, then the offset.
            let (ds, sums) = (a.d.as_ptr(), a.sums.as_ptr());
            for b in 0..a.len() / 32 {
                let blk = p.add(b * 24);
                prefetch_line_ahead(blk);
                let s = mul_sum::<VNNI>(q5_1_weights(blk), x32(b));
                add_block(&mut lanes, s, f16_at(blk) * *ds.add(b));
                acc += offset_value(f16_at(blk.add(2)), *ds.add(b), *sums.add(b));
            }
        }
        GgmlDType::Q8_0 => {
            for b in 0..a.len() / 32 {
                let blk = p.add(b * 34);
                prefetch_line_ahead(blk);
                let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                let s = mul_sum::<VNNI>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x32(b), w));
                add_block(&mut lanes, s, f16_at(blk) * a.d[b]);
            }
        }
        GgmlDType::Q4K => {
            let low = _mm256_set1_epi8(0x0f);
            for sb in 0..a.len() / 256 {
                let blk = p.add(sb * 144);
                prefetch_ahead(blk, 144);
                let (sc, mn) = k_scale_min_dwords(blk.add(4));
                let mut scw = [0i32; 8];
                _mm256_storeu_si256(scw.as_mut_ptr() as *mut __m256i, sc);
                // Two chains of 4 dependent multiply-adds instead of one of 8 (exact integers:
                // the split does not change the sum).
                let (mut ilo, mut ihi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for c in 0..4 {
                    let q = _mm256_loadu_si256(blk.add(16 + c * 32) as *const __m256i);
                    let lo = _mm256_maddubs_epi16(_mm256_and_si256(q, low), x32(sb * 8 + 2 * c));
                    let hi = _mm256_maddubs_epi16(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), low),
                        x32(sb * 8 + 2 * c + 1),
                    );
                    ilo = madd_add::<VNNI>(ilo, lo, _mm256_set1_epi32(scw[2 * c]));
                    ihi = madd_add::<VNNI>(ihi, hi, _mm256_set1_epi32(scw[2 * c + 1]));
                }
                // q4k_min_sum: sum_j mn_j (sums16[2j] + sums16[2j + 1]), one pair per dword.
                let mins = _mm256_madd_epi16(sum_pairs(a.sums.as_ptr().add(sb * 16)), mn);
                // [isum, imin] as f32 times [d d_x, dmin d_x]: `min_value`'s two products,
                // the f16 pair converted at once.
                let ints = _mm_cvtepi32_ps(hsum2_i32(_mm256_add_epi32(ilo, ihi), mins));
                let d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(
                    blk as *const i32,
                )));
                let prods = _mm_mul_ps(_mm_mul_ps(d_dmin, _mm_set1_ps(a.d[sb])), ints);
                acc += _mm_cvtss_f32(_mm_sub_ss(prods, _mm_movehdup_ps(prods)));
            }
        }
        GgmlDType::Q5K => {
            let (low, one) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(1));
            for sb in 0..a.len() / 256 {
                let blk = p.add(sb * 176);
                prefetch_ahead(blk, 176);
                let (sc, mn) = k_scale_min_dwords(blk.add(4));
                let mut scw = [0i32; 8];
                _mm256_storeu_si256(scw.as_mut_ptr() as *mut __m256i, sc);
                let qh = _mm256_loadu_si256(blk.add(16) as *const __m256i);
                // Bit `b` of each qh byte as 16 (the fifth bit of sub-block `b`).
                let fifth = |b: i32| {
                    _mm256_slli_epi16::<4>(_mm256_and_si256(
                        _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b)),
                        one,
                    ))
                };
                let (mut ilo, mut ihi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for c in 0..4 {
                    let q = _mm256_loadu_si256(blk.add(48 + c * 32) as *const __m256i);
                    let ulo = _mm256_or_si256(_mm256_and_si256(q, low), fifth(2 * c as i32));
                    let uhi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), low),
                        fifth(2 * c as i32 + 1),
                    );
                    let lo = _mm256_maddubs_epi16(ulo, x32(sb * 8 + 2 * c));
                    let hi = _mm256_maddubs_epi16(uhi, x32(sb * 8 + 2 * c + 1));
                    ilo = madd_add::<VNNI>(ilo, lo, _mm256_set1_epi32(scw[2 * c]));
                    ihi = madd_add::<VNNI>(ihi, hi, _mm256_set1_epi32(scw[2 * c + 1]));
                }
                let mins = _mm256_madd_epi16(sum_pairs(a.sums.as_ptr().add(sb * 16)), mn);
                let isum = hsum_i32(_mm256_add_epi32(ilo, ihi));
                let imin = hsum_i32(mins);
                acc += min_value(f16_at(blk), f16_at(blk.add(2)), a.d[sb], isum, imin);
            }
        }
        GgmlDType::Q3K | GgmlDType::Q2K => {
            // 16 groups of 16 in Q6_K's element order (chunk j of half h: bits 2j of the 32
            // quant bytes of the half), weighted per chunk by `q6k_chunk_scales`.
            let q3 = dtype == GgmlDType::Q3K;
            let size = if q3 { 110 } else { 84 };
            for sb in 0..a.len() / 256 {
                let blk = p.add(sb * size);
                prefetch_ahead(blk, size);
                let (w16, m16) = q23k_group_weights(q3, blk);
                let each = q23k_chunk_weights(w16);
                let mut halves = [_mm256_setzero_si256(); 2];
                for (h, (iacc, each)) in halves.iter_mut().zip(each).enumerate() {
                    for j in 0..4 {
                        let u = q23k_chunk(q3, blk, h, j);
                        let prod = _mm256_maddubs_epi16(u, x32(sb * 8 + h * 4 + j));
                        *iacc = madd_add::<VNNI>(*iacc, prod, q6k_chunk_scales(each, j));
                    }
                }
                // Q3_K: 4 sum_g scale_g sums16[g] off (its quants are stored plus 4); Q2_K:
                // sum_g min_g sums16[g], its `imin`.
                let weighted = hsum_i32(_mm256_madd_epi16(
                    sum_pairs(a.sums.as_ptr().add(sb * 16)),
                    m16,
                ));
                let isum = hsum_i32(_mm256_add_epi32(halves[0], halves[1]));
                acc += if q3 {
                    scaled_value(f16_at(blk.add(108)), a.d[sb], isum - 4 * weighted)
                } else {
                    min_value(
                        f16_at(blk.add(80)),
                        f16_at(blk.add(82)),
                        a.d[sb],
                        isum,
                        weighted,
                    )
                };
            }
        }
        GgmlDType::Q6K => {
            let low = _mm256_set1_epi8(0x0f);
            let three = _mm256_set1_epi8(3);
            for sb in 0..a.len() / 256 {
                let blk = p.add(sb * 210);
                prefetch_ahead(blk, 210);
                let (s16, each) = q6k_scale_dwords(blk);
                let mut halves = [_mm256_setzero_si256(); 2];
                for (h, (iacc, each)) in halves.iter_mut().zip(each).enumerate() {
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
                        *iacc = madd_add::<VNNI>(*iacc, prod, q6k_chunk_scales(each, j));
                    }
                }
                // q6k_bias: 32 sum_g scale_g sums16[g], one pair of groups per dword, taken
                // off before the one reduction (exact integers).
                let bias = _mm256_madd_epi16(sum_pairs(a.sums.as_ptr().add(sb * 16)), s16);
                let isum = hsum_i32(_mm256_sub_epi32(
                    _mm256_add_epi32(halves[0], halves[1]),
                    _mm256_slli_epi32::<5>(bias),
                ));
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

/// Bytes ahead of the K-quant super-block being multiplied that the GEMV asks the cache for,
/// a super-block at a time. Asking for a whole row ahead at once filled the
/// line-fill buffers: under perf 45% of the Q4_K/Q6_K GEMV's samples sat on those prefetches.
/// Spread over the loop, the 1.5B Q4_K_M decode ran 9-10% faster (Intel host, one window:
/// 1024 bytes ahead +1%, 1536 +6%, 2048-3072 +9-10%, 4096 +2%; with no software prefetch at
/// all, 40% slower than with the whole-row one).
pub(super) const PREFETCH_BYTES_AHEAD: usize = 2560;

/// Asks for the cache lines of the `len` (at most 256) bytes [`PREFETCH_BYTES_AHEAD`] past
/// `blk`. A prefetch never faults, so past the end of the weights it is only a wasted request;
/// the address is formed with wrapping arithmetic for that reason.
#[inline(always)]
pub(super) unsafe fn prefetch_ahead(blk: *const u8, len: usize) {
    let at = blk.wrapping_add(PREFETCH_BYTES_AHEAD);
    let mut line = 0;
    while line < len {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line) as *const i8);
        line += 64;
    }
    // The block's last byte may sit on one more line.
    _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(len - 1) as *const i8);
}

/// Asks for the cache line [`PREFETCH_BYTES_AHEAD`] past `blk`: called once per block of a
/// 32-value type (at most 34 bytes, so every line of the rows ahead is asked for). Before,
/// these types asked for the whole row two ahead at each row's start: bursts of 6 (SmolLM2's
/// 576-wide Q4_1 rows) to 51 lines (a 3072-wide Q8_0 row) that fill the line-fill buffers, as
/// the K-quants' did. Past the end of the weights it is only a wasted request.
#[inline(always)]
pub(super) unsafe fn prefetch_line_ahead(blk: *const u8) {
    _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH_BYTES_AHEAD) as *const i8);
}

/// Asks the cache for share `i` of `ahead` (its cache lines `i * lines..(i + 1) * lines`, those
/// within it): the next rows of a kernel that reads several rows side by side, fetched a share
/// per step while the current rows compute.
#[inline(always)]
pub(super) unsafe fn prefetch_share(ahead: &[u8], i: usize, lines: usize) {
    for l in 0..lines {
        let at = (i * lines + l) * 64;
        if at < ahead.len() {
            _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(at) as *const i8);
        }
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
            for (row, o) in rows.chunks_exact(row_bytes).zip(out.iter_mut()) {
                // Every loop prefetches as it goes (`prefetch_ahead`, `prefetch_line_ahead`).
                *o = dot_row_impl::<VNNI>($t, row, a);
            }
        };
    }
    match dtype {
        GgmlDType::Q4_0 => each!(GgmlDType::Q4_0),
        GgmlDType::Q4_1 => each!(GgmlDType::Q4_1),
        GgmlDType::Q5_0 => each!(GgmlDType::Q5_0),
        GgmlDType::Q5_1 => each!(GgmlDType::Q5_1),
        GgmlDType::Q8_0 => each!(GgmlDType::Q8_0),
        GgmlDType::Q2K => each!(GgmlDType::Q2K),
        GgmlDType::Q3K => each!(GgmlDType::Q3K),
        GgmlDType::Q4K => each!(GgmlDType::Q4K),
        GgmlDType::Q5K => each!(GgmlDType::Q5K),
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

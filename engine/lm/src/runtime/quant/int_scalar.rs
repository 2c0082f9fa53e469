//! Integer dot products of one quantized row with [`Q8Activations`]: the portable reference.
//!
//! Each block (or K-quant super-block) yields exact integers (`sum q_w * q_x`, with the weight
//! offsets folded in through the activation group sums); the f32 scales are applied by the
//! `*_value` functions below, which the SIMD kernels (`int_x86.rs`) call too. The 32-value
//! block types accumulate in 8 lanes exactly as the SIMD kernels' vector registers do
//! ([`hsum8`]); everything is summed in a fixed order with plain f32 multiplies and adds (no
//! fused multiply-add), so a SIMD kernel that gets the same integers returns the very same f32,
//! bit for bit.
//!
//! Weight layouts are those of `legacy.rs` / `kquants.rs`.

use super::kquants::{k_scale_min, q3_k_scales};
use super::legacy::f16_at;
use super::q8::Q8Activations;
use crate::runtime::ggml_type::GgmlDType;

/// K-quants and Q6_K: `(d_w * d_x) * isum`.
#[inline(always)]
pub(super) fn scaled_value(dw: f32, dx: f32, isum: i32) -> f32 {
    (dw * dx) * isum as f32
}

/// Q4_1's and Q5_1's offset term: `x = d q + m`, so `sum x a = d d_x isum + m d_x sum(q_x)`;
/// the SIMD kernels accumulate it beside the vector lanes, as here.
#[inline(always)]
pub(super) fn offset_value(m: f32, dx: f32, xsum: i32) -> f32 {
    (m * dx) * xsum as f32
}

/// The 32-value block types accumulate in 8 f32 lanes, lane `l` taking the integer dot of
/// elements `4l..4l + 4` of every block times the block's `d_w * d_x` (a multiply, then an add:
/// what `maddubs`/`vpdpbusd` lanes and `_mm256_mul_ps`/`_mm256_add_ps` compute).
#[inline(always)]
fn lanes_add(acc: &mut [f32; 8], scale: f32, w: impl Fn(usize) -> i32, x: &[i8]) {
    for (l, a) in acc.iter_mut().enumerate() {
        let isum: i32 = (4 * l..4 * l + 4).map(|e| w(e) * i32::from(x[e])).sum();
        *a += scale * isum as f32;
    }
}

/// Sum of 8 lanes in the order of the SIMD reduction (halves, then pairs).
#[inline(always)]
pub(super) fn hsum8(a: [f32; 8]) -> f32 {
    let s4 = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// Q4_K: `x = (d sc) q - dmin mn` per 32, so `d d_x sum_j sc_j isum_j - dmin d_x sum_j mn_j
/// xsum_j`.
#[inline(always)]
pub(super) fn min_value(d: f32, dmin: f32, dx: f32, isum: i32, imin: i32) -> f32 {
    (d * dx) * isum as f32 - (dmin * dx) * imin as f32
}

/// Q4_K's `sum_j mn_j * xsum_j` over the 8 sub-blocks of 32 (activation groups are 16).
#[inline(always)]
pub(super) fn q4k_min_sum(mn: &[u8; 8], sums16: &[i32]) -> i32 {
    (0..8)
        .map(|j| i32::from(mn[j]) * (sums16[2 * j] + sums16[2 * j + 1]))
        .sum()
}

/// Q6_K's `32 * sum_g scale_g * xsum_g` (its quants are stored plus 32).
#[inline(always)]
pub(super) fn q6k_bias(scales: &[i8], sums16: &[i32]) -> i32 {
    32 * (0..16)
        .map(|g| i32::from(scales[g]) * sums16[g])
        .sum::<i32>()
}

/// Q2_K's and Q3_K's `sum_g w_g * sums16[g]` over the 16 groups of 16 (`w` a group's min for
/// Q2_K, its signed scale for Q3_K's offset of 4).
#[inline(always)]
pub(super) fn group_weighted_sum(w: &[i32; 16], sums16: &[i32]) -> i32 {
    (0..16).map(|g| w[g] * sums16[g]).sum()
}

/// Whether [`dot_row`] handles `dtype` (the others keep f32 activations).
pub fn has_int_kernel(dtype: GgmlDType) -> bool {
    use GgmlDType::*;
    matches!(
        dtype,
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K
    )
}

/// `sum_i u_i * x_i` for unsigned weights `u`.
#[inline(always)]
fn idot(u: impl Iterator<Item = i32>, x: &[i8]) -> i32 {
    u.zip(x).map(|(u, &x)| u * i32::from(x)).sum()
}

/// The dot products of a 256-value super-block's sixteen 16-value groups with `x`, for the
/// K-quants whose quants are laid out as element `h*128 + j*32 + l` (Q2_K, Q3_K, Q6_K):
/// `quant(h, j, l)` decodes that element. Each type then weighs group `g` by its own scale.
fn k_group_dots(x: &[i8], quant: impl Fn(usize, usize, usize) -> i32) -> [i32; 16] {
    let mut dots = [0i32; 16];
    for h in 0..2 {
        for j in 0..4 {
            for half in 0..2 {
                let at = h * 128 + j * 32 + half * 16;
                let q = (0..16).map(|i| quant(h, j, half * 16 + i));
                dots[at / 16] = idot(q, &x[at..at + 16]);
            }
        }
    }
    dots
}

/// The row's dot product with `a`, in portable integer arithmetic. `row` is whole blocks of
/// `dtype` for `a.len()` values, `a` quantized with the block of `dtype`.
pub fn dot_row(dtype: GgmlDType, row: &[u8], a: &Q8Activations) -> f32 {
    let mut acc = 0.0f32;
    let mut lanes = [0.0f32; 8];
    // Element e of a 32-value block of nibbles: low nibble of byte e, high of byte e - 16.
    let nibble = |qs: &[u8], e: usize| {
        if e < 16 {
            i32::from(qs[e] & 15)
        } else {
            i32::from(qs[e - 16] >> 4)
        }
    };
    // Element e of Q5_0/Q5_1's `qh[4]` and nibbles that follow it (at `q`): its nibble, plus
    // bit e of the little-endian `qh` as the fifth bit.
    let five_bits = |q: &[u8], e: usize| {
        let qh = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
        nibble(&q[4..], e) | (((qh >> e) & 1) as i32) << 4
    };
    match dtype {
        GgmlDType::Q4_0 => {
            for (b, blk) in row.chunks_exact(18).enumerate() {
                let x = &a.qs[b * 32..b * 32 + 32];
                let scale = f16_at(blk, 0) * a.d[b];
                lanes_add(&mut lanes, scale, |e| nibble(&blk[2..], e) - 8, x);
            }
        }
        GgmlDType::Q4_1 => {
            for (b, blk) in row.chunks_exact(20).enumerate() {
                let x = &a.qs[b * 32..b * 32 + 32];
                let scale = f16_at(blk, 0) * a.d[b];
                lanes_add(&mut lanes, scale, |e| nibble(&blk[4..], e), x);
                acc += offset_value(f16_at(blk, 2), a.d[b], a.sums[b]);
            }
        }
        GgmlDType::Q5_0 => {
            for (b, blk) in row.chunks_exact(22).enumerate() {
                let x = &a.qs[b * 32..b * 32 + 32];
                let scale = f16_at(blk, 0) * a.d[b];
                lanes_add(&mut lanes, scale, |e| five_bits(&blk[2..], e) - 16, x);
            }
        }
        GgmlDType::Q5_1 => {
            for (b, blk) in row.chunks_exact(24).enumerate() {
                let x = &a.qs[b * 32..b * 32 + 32];
                let scale = f16_at(blk, 0) * a.d[b];
                lanes_add(&mut lanes, scale, |e| five_bits(&blk[4..], e), x);
                acc += offset_value(f16_at(blk, 2), a.d[b], a.sums[b]);
            }
        }
        GgmlDType::Q8_0 => {
            for (b, blk) in row.chunks_exact(34).enumerate() {
                let x = &a.qs[b * 32..b * 32 + 32];
                let scale = f16_at(blk, 0) * a.d[b];
                lanes_add(&mut lanes, scale, |e| i32::from(blk[2 + e] as i8), x);
            }
        }
        GgmlDType::Q4K => {
            for (sb, blk) in row.chunks_exact(144).enumerate() {
                let (sc, mn) = k_scale_min(&blk[4..16]);
                let (qs, x) = (&blk[16..144], &a.qs[sb * 256..sb * 256 + 256]);
                let mut isum = 0i32;
                for c in 0..4 {
                    let q = &qs[c * 32..c * 32 + 32];
                    let lo = idot(
                        q.iter().map(|&v| i32::from(v & 15)),
                        &x[c * 64..c * 64 + 32],
                    );
                    let hi = idot(
                        q.iter().map(|&v| i32::from(v >> 4)),
                        &x[c * 64 + 32..][..32],
                    );
                    isum += i32::from(sc[2 * c]) * lo + i32::from(sc[2 * c + 1]) * hi;
                }
                let imin = q4k_min_sum(&mn, &a.sums[sb * 16..sb * 16 + 16]);
                acc += min_value(f16_at(blk, 0), f16_at(blk, 2), a.d[sb], isum, imin);
            }
        }
        GgmlDType::Q5K => {
            // Q4_K's sums with a fifth bit: element c*64 + s*32 + l is nibble s of
            // qs[c*32 + l] plus bit 2c + s of qh[l] as 16.
            for (sb, blk) in row.chunks_exact(176).enumerate() {
                let (sc, mn) = k_scale_min(&blk[4..16]);
                let (qh, qs) = (&blk[16..48], &blk[48..176]);
                let x = &a.qs[sb * 256..sb * 256 + 256];
                let mut isum = 0i32;
                for c in 0..4 {
                    let q = &qs[c * 32..c * 32 + 32];
                    let five = |s: usize| {
                        (0..32).map(move |l| {
                            i32::from((q[l] >> (4 * s)) & 15)
                                | i32::from((qh[l] >> (2 * c + s)) & 1) << 4
                        })
                    };
                    let lo = idot(five(0), &x[c * 64..c * 64 + 32]);
                    let hi = idot(five(1), &x[c * 64 + 32..][..32]);
                    isum += i32::from(sc[2 * c]) * lo + i32::from(sc[2 * c + 1]) * hi;
                }
                let imin = q4k_min_sum(&mn, &a.sums[sb * 16..sb * 16 + 16]);
                acc += min_value(f16_at(blk, 0), f16_at(blk, 2), a.d[sb], isum, imin);
            }
        }
        GgmlDType::Q3K => {
            // Element h*128 + j*32 + l: bits 2j of qs[h*32 + l] and bit 4h + j of hmask[l]
            // as 4, i.e. the quant plus 4 (0..8); the offset comes off through the group sums.
            for (sb, blk) in row.chunks_exact(110).enumerate() {
                let (hmask, qs) = (&blk[..32], &blk[32..96]);
                let scales = q3_k_scales(&blk[96..108]).map(i32::from);
                let dots = k_group_dots(&a.qs[sb * 256..sb * 256 + 256], |h, j, l| {
                    let low = (qs[h * 32 + l] >> (2 * j)) & 3;
                    let high = (hmask[l] >> (4 * h + j)) & 1;
                    i32::from(low | (high << 2))
                });
                let mut isum: i32 = (0..16).map(|g| scales[g] * dots[g]).sum();
                isum -= 4 * group_weighted_sum(&scales, &a.sums[sb * 16..sb * 16 + 16]);
                acc += scaled_value(f16_at(blk, 108), a.d[sb], isum);
            }
        }
        GgmlDType::Q2K => {
            // Element h*128 + j*32 + l: bits 2j of qs[h*32 + l]; group g has scale
            // `scales[g] & 15` and min `scales[g] >> 4`.
            for (sb, blk) in row.chunks_exact(84).enumerate() {
                let (scales, qs) = (&blk[..16], &blk[16..80]);
                let mins: [i32; 16] = std::array::from_fn(|g| i32::from(scales[g] >> 4));
                let dots = k_group_dots(&a.qs[sb * 256..sb * 256 + 256], |h, j, l| {
                    i32::from((qs[h * 32 + l] >> (2 * j)) & 3)
                });
                let isum: i32 = (0..16).map(|g| i32::from(scales[g] & 15) * dots[g]).sum();
                let imin = group_weighted_sum(&mins, &a.sums[sb * 16..sb * 16 + 16]);
                acc += min_value(f16_at(blk, 80), f16_at(blk, 82), a.d[sb], isum, imin);
            }
        }
        GgmlDType::Q6K => {
            for (sb, blk) in row.chunks_exact(210).enumerate() {
                let (ql, qh) = (&blk[..128], &blk[128..192]);
                let scales: [i8; 16] = std::array::from_fn(|g| blk[192 + g] as i8);
                // Element h*128 + j*32 + l: nibble j/2 of ql[h*64 + (j%2)*32 + l], bits 2j of
                // qh[h*32 + l].
                let dots = k_group_dots(&a.qs[sb * 256..sb * 256 + 256], |h, j, l| {
                    let low = (ql[h * 64 + (j % 2) * 32 + l] >> (4 * (j / 2))) & 15;
                    let high = (qh[h * 32 + l] >> (2 * j)) & 3;
                    i32::from(low | (high << 4))
                });
                let mut isum: i32 = (0..16).map(|g| i32::from(scales[g]) * dots[g]).sum();
                isum -= q6k_bias(&scales, &a.sums[sb * 16..sb * 16 + 16]);
                acc += scaled_value(f16_at(blk, 208), a.d[sb], isum);
            }
        }
        other => unreachable!("no integer kernel for {other}"),
    }
    hsum8(lanes) + acc
}

//! Dequantisation of ggml's K-quants (super-blocks of 256 elements): Q2_K, Q3_K, Q4_K, Q5_K,
//! Q6_K.
//!
//! Layouts are those of ggml's `block_qN_K`; each function follows the `gguf` Python package's
//! `dequantize_blocks` operation by operation (the scale products are rounded to f32 before the
//! quant is applied, as numpy does), so results are bit-exact against it.

use super::legacy::f16_at;

/// Elements per super-block.
pub const QK_K: usize = 256;

/// `block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }` (84 bytes): 16 groups of 16,
/// x = d * (sc & 15) * q - dmin * (sc >> 4), q two bits.
#[inline(always)]
pub fn q2_k(blk: &[u8; 84], out: &mut [f32; QK_K]) {
    let (scales, qs) = (&blk[..16], &blk[16..80]);
    let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
    // Element h*128 + j*32 + l comes from bits 2j of qs[h*32 + l].
    for h in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let i = h * 128 + j * 32 + l;
                let sc = scales[i / 16];
                let dl = d * f32::from(sc & 0x0f);
                let ml = dmin * f32::from(sc >> 4);
                let q = (qs[h * 32 + l] >> (2 * j)) & 3;
                out[i] = dl * f32::from(q) - ml;
            }
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K super-block (12 packed bytes).
#[inline(always)]
pub(super) fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let lo = if i < 8 { s[i] & 0x0f } else { s[i - 8] >> 4 };
        let hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = (lo | (hi << 4)) as i8 - 32;
    }
    out
}

/// `block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }` (110 bytes): 16 groups of
/// 16, x = d * scale * q with q = (two low bits) - 4 where the hmask bit is clear.
#[inline(always)]
pub fn q3_k(blk: &[u8; 110], out: &mut [f32; QK_K]) {
    let (hmask, qs) = (&blk[..32], &blk[32..96]);
    let scales = q3_k_scales(&blk[96..108]);
    let d = f16_at(blk, 108);
    // Element h*128 + j*32 + l: low bits 2j of qs[h*32 + l], high bit (4h + j) of hmask[l].
    for h in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let i = h * 128 + j * 32 + l;
                let dl = d * f32::from(scales[i / 16]);
                let low = ((qs[h * 32 + l] >> (2 * j)) & 3) as i8;
                let high = ((hmask[l] >> (4 * h + j)) & 1) as i8;
                out[i] = dl * f32::from(low - ((high ^ 1) << 2));
            }
        }
    }
}

/// Scales and mins of the 8 sub-blocks of Q4_K / Q5_K, packed as 6-bit values in 12 bytes.
#[inline(always)]
pub(super) fn k_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3f;
        mn[j] = s[j + 4] & 0x3f;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 2) & 0x30);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
    }
    (sc, mn)
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }` (144 bytes): 8 sub-blocks of
/// 32, x = (d * sc) * q - dmin * m.
#[inline(always)]
pub fn q4_k(blk: &[u8; 144], out: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (sc, mn) = k_scale_min(&blk[4..16]);
    let qs = &blk[16..144];
    // Element c*64 + s*32 + l: nibble s of qs[c*32 + l]; sub-block 2c + s.
    for c in 0..4 {
        for s in 0..2 {
            let b = 2 * c + s;
            let (dl, ml) = (d * f32::from(sc[b]), dmin * f32::from(mn[b]));
            for l in 0..32 {
                let q = (qs[c * 32 + l] >> (4 * s)) & 0x0f;
                out[b * 32 + l] = dl * f32::from(q) - ml;
            }
        }
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }` (176 bytes): as
/// Q4_K with a fifth bit, bit b of qh[l] for element b*32 + l.
#[inline(always)]
pub fn q5_k(blk: &[u8; 176], out: &mut [f32; QK_K]) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (sc, mn) = k_scale_min(&blk[4..16]);
    let (qh, qs) = (&blk[16..48], &blk[48..176]);
    for c in 0..4 {
        for s in 0..2 {
            let b = 2 * c + s;
            let (dl, ml) = (d * f32::from(sc[b]), dmin * f32::from(mn[b]));
            for l in 0..32 {
                let q = ((qs[c * 32 + l] >> (4 * s)) & 0x0f) | (((qh[l] >> b) & 1) << 4);
                out[b * 32 + l] = dl * f32::from(q) - ml;
            }
        }
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }` (210 bytes): 16 groups of
/// 16, x = (d * scale) * (q - 32), q = low nibble | two high bits << 4.
#[inline(always)]
pub fn q6_k(blk: &[u8; 210], out: &mut [f32; QK_K]) {
    let (ql, qh, scales) = (&blk[..128], &blk[128..192], &blk[192..208]);
    let d = f16_at(blk, 208);
    // Element h*128 + s*64 + l (l < 64): nibble s of ql[h*64 + l]; element h*128 + j*32 + l
    // (l < 32): bits 2j of qh[h*32 + l].
    for h in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let i = h * 128 + j * 32 + l;
                let (s, lo_idx) = (j / 2, h * 64 + (j % 2) * 32 + l);
                let low = (ql[lo_idx] >> (4 * s)) & 0x0f;
                let high = (qh[h * 32 + l] >> (2 * j)) & 3;
                let q = (low | (high << 4)) as i8 - 32;
                out[i] = d * f32::from(scales[i / 16] as i8) * f32::from(q);
            }
        }
    }
}

//! Dequantisation of ggml's 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! Each function turns one block into 32 f32 values with the same operations, in the same
//! order and f32 rounding, as the `gguf` Python package's `dequantize` (no fused multiply-add),
//! so the result is bit-exact against it. Fixed-size arrays let LLVM vectorise the loops.

use half::f16;

pub(super) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Low nibbles of `qs` are elements 0..16, high nibbles elements 16..32.
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0x0f;
        q[j + 16] = qs[j] >> 4;
    }
    q
}

/// Fifth bits from the little-endian u32 `qh`: bit j belongs to element j.
#[inline(always)]
fn with_high_bits(mut q: [u8; 32], qh: [u8; 4]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> j) & 1) as u8) << 4;
    }
    q
}

/// `block_q4_0 { f16 d; u8 qs[16]; }`: x = (q - 8) * d.
#[inline(always)]
pub fn q4_0(blk: &[u8; 18], out: &mut [f32; 32]) {
    let d = f16_at(blk, 0);
    let q = nibbles(blk[2..18].try_into().expect("16 bytes"));
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = d * f32::from(q as i8 - 8);
    }
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16]; }`: x = q * d + m.
#[inline(always)]
pub fn q4_1(blk: &[u8; 20], out: &mut [f32; 32]) {
    let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
    let q = nibbles(blk[4..20].try_into().expect("16 bytes"));
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = d * f32::from(q) + m;
    }
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }`: x = (q - 16) * d, q = nibble | bit << 4.
#[inline(always)]
pub fn q5_0(blk: &[u8; 22], out: &mut [f32; 32]) {
    let d = f16_at(blk, 0);
    let q = with_high_bits(
        nibbles(blk[6..22].try_into().expect("16 bytes")),
        blk[2..6].try_into().expect("4 bytes"),
    );
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = d * f32::from(q as i8 - 16);
    }
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }`: x = q * d + m.
#[inline(always)]
pub fn q5_1(blk: &[u8; 24], out: &mut [f32; 32]) {
    let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
    let q = with_high_bits(
        nibbles(blk[8..24].try_into().expect("16 bytes")),
        blk[4..8].try_into().expect("4 bytes"),
    );
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = d * f32::from(q) + m;
    }
}

/// `block_q8_0 { f16 d; i8 qs[32]; }`: x = q * d.
#[inline(always)]
pub fn q8_0(blk: &[u8; 34], out: &mut [f32; 32]) {
    let d = f16_at(blk, 0);
    for (o, &q) in out.iter_mut().zip(&blk[2..34]) {
        *o = f32::from(q as i8) * d;
    }
}

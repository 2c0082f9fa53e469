//! The tile layouts of the AMX GEMM (`amx_gemm.rs`, `amx_gemm_x86.rs`): the prompt's 8-bit
//! activations as the A operand ([`AmxActivations`]) and a thread's unpacked weight rows as the
//! B operand ([`Panel`]), shared by the tile kernels and by their plain-Rust model.

use super::kquants::k_scale_min;
use super::legacy::f16_at;
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// Tokens per A tile and weight rows per B tile (and per [`Panel`]).
pub(super) const TILE: usize = 16;
/// Values per tile product: one scale step of `dtype`.
pub(super) fn step(dtype: GgmlDType) -> usize {
    if dtype == GgmlDType::Q6K {
        16
    } else {
        32
    }
}

/// Whether `dtype`'s unpacked weights are signed (`tdpbssd`) rather than unsigned (`tdpbsud`).
pub(super) fn signed_weights(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q8_0)
}

/// A prompt's 8-bit activations as the A operand: token-major, padded with zero tokens to a
/// multiple of [`TILE`], with each token's per-block scale terms beside it.
#[derive(Debug, Clone)]
pub struct AmxActivations {
    pub(super) tokens: usize,
    pub(super) cols: usize,
    /// Values per activation block (32 or 256).
    pub(super) block: usize,
    /// `[padded][cols]`.
    pub(super) qs: Vec<i8>,
    /// `[padded][cols / block]`: the block scales.
    pub(super) d: Vec<f32>,
    /// `[padded][cols / 32]` for 32-value blocks: `d * sum(q)` (Q4_1's offset term).
    pub(super) dsum: Vec<f32>,
    /// `[padded][cols / 32]` for 256-value blocks: the sums of 16-value groups `2p` and `2p + 1`
    /// as two i16 (low, high half), as [`Q8Batch::pairs`] packs them.
    pub(super) pairs: Vec<i32>,
}

impl AmxActivations {
    pub fn new(batch: &Q8Batch) -> Self {
        let (tokens, cols, block) = (batch.tokens.len(), batch.cols(), batch.block());
        let padded = tokens.div_ceil(TILE) * TILE;
        let blocks = cols / block;
        let mut qs = vec![0i8; padded * cols];
        let mut d = vec![0.0f32; padded * blocks];
        let (mut dsum, mut pairs) = (Vec::new(), Vec::new());
        if block == 32 {
            dsum = vec![0.0f32; padded * blocks];
        } else {
            pairs = vec![0i32; padded * cols / 32];
        }
        for (t, a) in batch.tokens.iter().enumerate() {
            qs[t * cols..(t + 1) * cols].copy_from_slice(&a.qs);
            d[t * blocks..(t + 1) * blocks].copy_from_slice(&a.d);
            if block == 32 {
                for (b, (&db, &s)) in a.d.iter().zip(&a.sums).enumerate() {
                    dsum[t * blocks + b] = db * s as f32;
                }
            } else {
                for p in 0..cols / 32 {
                    let (lo, hi) = (a.sums[2 * p] as i16 as u16, a.sums[2 * p + 1] as i16 as u16);
                    pairs[t * cols / 32 + p] = (u32::from(hi) << 16 | u32::from(lo)) as i32;
                }
            }
        }
        Self {
            tokens,
            cols,
            block,
            qs,
            d,
            dsum,
            pairs,
        }
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }
}

/// 16 weight rows unpacked for the tile unit: `q` is the `[cols, 16]` B operand in the VNNI
/// layout (row `k / 4` holds the 4 consecutive k of each of the 16 rows, 64 bytes), so the
/// tile of step `s` starts at byte `s * step * 16` with rows 64 bytes apart; `f` and `i` hold
/// the per-step scale terms of the 16 rows, 16 apart (offsets below). Rows past the matrix
/// are zeros.
#[derive(Debug, Default, Clone)]
pub(super) struct Panel {
    pub q: Vec<u8>,
    pub f: Vec<f32>,
    pub i: Vec<i32>,
}

/// Offsets into [`Panel::f`] and [`Panel::i`] (times 16, plus the row) of the scale terms.
pub(super) mod at {
    /// 32-value types: block `b`'s `d` and Q4_1's `m` (`blocks` blocks).
    pub fn d32(b: usize) -> usize {
        b * 16
    }
    pub fn m32(blocks: usize, b: usize) -> usize {
        (blocks + b) * 16
    }
    /// K-quants: super-block `sb`'s `d`, and Q4_K's `dmin` (`sbs` super-blocks).
    pub fn dk(sb: usize) -> usize {
        sb * 16
    }
    pub fn dmin(sbs: usize, sb: usize) -> usize {
        (sbs + sb) * 16
    }
    /// K-quants: the i32 scale of step `j` of super-block `sb` (8 steps for Q4_K, 16 for Q6_K).
    pub fn sc(steps: usize, sb: usize, j: usize) -> usize {
        (sb * steps + j) * 16
    }
    /// K-quants: pair `p` (0..8) of super-block `sb`: the i16 pair of weights of the activation
    /// group sums `2p`, `2p + 1` (Q4_K's min `mn_p` twice, Q6_K's scales `2p`, `2p + 1`).
    pub fn pair(sbs: usize, steps: usize, sb: usize, p: usize) -> usize {
        (sbs * steps + sb * 8 + p) * 16
    }
}

/// Elements per block (or super-block) and its bytes.
pub(super) fn layout(dtype: GgmlDType) -> (usize, usize) {
    let (e, b) = dtype.block_layout().expect("a block type");
    (e as usize, b as usize)
}

/// The quants of one block of `dtype` in element order, as the tile unit multiplies them
/// (unsigned for Q4_1 and the K-quants, whose offsets go through the activation sums; signed
/// for Q4_0 and Q8_0).
fn block_quants(dtype: GgmlDType, blk: &[u8], out: &mut [u8]) {
    let nibble = |qs: &[u8], e: usize| if e < 16 { qs[e] & 15 } else { qs[e - 16] >> 4 };
    match dtype {
        GgmlDType::Q4_0 => (0..32).for_each(|e| out[e] = (nibble(&blk[2..], e) as i8 - 8) as u8),
        GgmlDType::Q4_1 => (0..32).for_each(|e| out[e] = nibble(&blk[4..], e)),
        GgmlDType::Q8_0 => out[..32].copy_from_slice(&blk[2..34]),
        GgmlDType::Q4K => {
            for c in 0..4 {
                for i in 0..32 {
                    let q = blk[16 + c * 32 + i];
                    out[c * 64 + i] = q & 15;
                    out[c * 64 + 32 + i] = q >> 4;
                }
            }
        }
        GgmlDType::Q6K => {
            // Element h*128 + j*32 + l: nibble j/2 of ql[h*64 + (j%2)*32 + l], bits 2j of
            // qh[h*32 + l] (the -32 goes through the activation sums).
            for h in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        let low = (blk[h * 64 + (j % 2) * 32 + l] >> (4 * (j / 2))) & 15;
                        let high = (blk[128 + h * 32 + l] >> (2 * j)) & 3;
                        out[h * 128 + j * 32 + l] = low | (high << 4);
                    }
                }
            }
        }
        other => unreachable!("no AMX kernel for {other}"),
    }
}

impl Panel {
    /// Q6_K super-block `b`'s 16 signed scales `sc(g)` of row `n`: each alone, and as 8 pairs
    /// packed as two i16 halves (low, high), as [`AmxActivations`] packs its `pairs`.
    pub(super) fn put_q6k_scales(
        &mut self,
        blocks: usize,
        b: usize,
        n: usize,
        sc: impl Fn(usize) -> i32,
    ) {
        for g in 0..16 {
            self.i[at::sc(16, b, g) + n] = sc(g);
        }
        for p in 0..8 {
            let (lo, hi) = (sc(2 * p) as i16 as u16, sc(2 * p + 1) as i16 as u16);
            self.i[at::pair(blocks, 16, b, p) + n] = (u32::from(hi) << 16 | u32::from(lo)) as i32;
        }
    }

    /// Unpacks rows `r0..r0 + 16` of `rows` (`row_bytes` each; rows past the end are zeros)
    /// for `cols` values: the portable packing, which the AVX-512 one must equal.
    pub fn pack(
        &mut self,
        dtype: GgmlDType,
        rows: &[u8],
        row_bytes: usize,
        r0: usize,
        cols: usize,
    ) {
        let (elems, size) = layout(dtype);
        let blocks = cols / elems;
        self.resize(dtype, cols);
        self.q.fill(0);
        self.f.fill(0.0);
        self.i.fill(0);
        let mut quants = vec![0u8; elems];
        let n_rows = (rows.len() / row_bytes).saturating_sub(r0).min(TILE);
        for n in 0..n_rows {
            let row = &rows[(r0 + n) * row_bytes..][..row_bytes];
            for (b, blk) in row.chunks_exact(size).enumerate().take(blocks) {
                block_quants(dtype, blk, &mut quants);
                for (e, &q) in quants.iter().enumerate() {
                    let k = b * elems + e;
                    self.q[(k / 4) * 64 + n * 4 + k % 4] = q;
                }
                self.scales(dtype, blocks, b, n, blk);
            }
        }
    }

    /// Sizes the buffers for `cols` values of `dtype`.
    pub fn resize(&mut self, dtype: GgmlDType, cols: usize) {
        let (elems, _) = layout(dtype);
        let blocks = cols / elems;
        let (nf, ni) = match dtype {
            GgmlDType::Q4K => (2 * blocks, blocks * 16),
            GgmlDType::Q6K => (blocks, blocks * 24),
            _ => (2 * blocks, 0),
        };
        self.q.resize(cols * TILE, 0);
        self.f.resize(nf * TILE, 0.0);
        self.i.resize(ni * TILE, 0);
    }

    /// Block `b`'s scale terms of row `n`.
    fn scales(&mut self, dtype: GgmlDType, blocks: usize, b: usize, n: usize, blk: &[u8]) {
        match dtype {
            GgmlDType::Q4K => {
                let (sc, mn) = k_scale_min(&blk[4..16]);
                self.f[at::dk(b) + n] = f16_at(blk, 0);
                self.f[at::dmin(blocks, b) + n] = f16_at(blk, 2);
                for j in 0..8 {
                    self.i[at::sc(8, b, j) + n] = i32::from(sc[j]);
                    self.i[at::pair(blocks, 8, b, j) + n] = i32::from(mn[j]) * 0x1_0001;
                }
            }
            GgmlDType::Q6K => {
                self.f[at::dk(b) + n] = f16_at(blk, 208);
                self.put_q6k_scales(blocks, b, n, |g| i32::from(blk[192 + g] as i8));
            }
            _ => {
                self.f[at::d32(b) + n] = f16_at(blk, 0);
                if dtype == GgmlDType::Q4_1 {
                    self.f[at::m32(blocks, b) + n] = f16_at(blk, 2);
                }
            }
        }
    }
}

//! x86-64 tiles of the integer GEMM: one quantized row times up to 8 tokens ([`Q8Batch`]).
//!
//! Why: the GEMV of `int_x86.rs` decodes a weight block (nibbles, scales, mins) for every
//! token. Here each block is loaded and decoded once and multiplied with the tile's tokens
//! while it sits in registers, and the per-block scale products, offsets and K-quant minimum
//! sums of the tile's tokens are computed as one vector (the batch keeps scales and sums
//! transposed for that).
//!
//! The K-quants' inner loop is two byte products (`vpmaddubsw`) and two scale products
//! accumulated in i32 (`vpdpwssd` with VNNI) per 64 values and token: 8 accumulators, the
//! decoded weights and their scales fit the 16 vector registers. Each super-block's 8 integer
//! sums are reduced by one tree of horizontal adds ([`hsums`]), and the mins (Q4_K, Q2_K) or the
//! offsets (Q6_K's -32, Q3_K's 4 per scale) weigh the activations' 16-value sums as i16 pairs, 8
//! tokens per instruction. Q2_K and Q3_K take Q6_K's 16-value groups with their 2- and 3-bit
//! quants decoded as the GEMV decodes them (`int_x86::q23k_chunk`).
//!
//! Bit-equal to the GEMV token by token: every token gets the same integers, and its f32
//! arithmetic is the same multiplies and adds in the same order (lane `t` of a vector op does
//! token `t`'s scalar op; IEEE multiplication commutes), so each result equals
//! `int_x86::dot_row_*` and the portable `int_scalar::dot_row`, bit for bit.

use std::arch::x86_64::*;

use super::int_x86::dpbusd;
use super::int_x86::{
    f16_at, hsum_ps, k_scale_min_dwords, madd_add, mul_sum, nibbles32, prefetch_ahead, q23k_chunk,
    q23k_chunk_weights, q23k_group_weights, q5_0_weights, q5_1_weights, q6k_chunk_scales,
    q6k_scale_dwords,
};
use super::lane_layout::LaneActivations;
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// Where a tile's tokens are: their quantized values, and their first entry in the batch's
/// regrouped scales and sums (8 readable values each, 8 apart per block or group).
struct Tile<const T: usize> {
    xs: [*const i8; T],
    d: *const f32,
    sums: *const i32,
    pairs: *const i32,
}

impl<const T: usize> Tile<T> {
    /// Tokens `t0..t0 + T` of `batch`, which must not cross a group of 8 tokens (tiles of 8, 4,
    /// 2 and 1 starting at a multiple of their size do not). SAFETY of later reads: `batch`
    /// holds those tokens.
    fn new(batch: &Q8Batch, t0: usize) -> Self {
        debug_assert_eq!(
            t0 / 8,
            (t0 + T - 1) / 8,
            "a tile inside one group of 8 tokens"
        );
        Self {
            xs: std::array::from_fn(|t| batch.tokens[t0 + t].qs.as_ptr()),
            d: batch.d[batch.d_at(t0)..].as_ptr(),
            sums: batch.sums[batch.sums_at(t0)..].as_ptr(),
            pairs: batch.pairs[batch.pairs_at(t0)..].as_ptr(),
        }
    }

    /// The tile's activation scales of block `b` (lanes past `T` are other tokens or zeros).
    #[inline(always)]
    unsafe fn d(&self, b: usize) -> __m256 {
        _mm256_loadu_ps(self.d.add(b * 8))
    }

    /// The tile's activation sums of group `g`.
    #[inline(always)]
    unsafe fn sums(&self, g: usize) -> __m256i {
        _mm256_loadu_si256(self.sums.add(g * 8) as *const __m256i)
    }

    /// The tile's i16 pairs of 16-value sums, pair `p` (256-value blocks only).
    #[inline(always)]
    unsafe fn pairs(&self, p: usize) -> __m256i {
        _mm256_loadu_si256(self.pairs.add(p * 8) as *const __m256i)
    }

    /// `q6k_bias` of super-block `sb` for every token of the tile, before its factor 32:
    /// `sum_g scale_g sums16[g]`, one i16 pair product per pair of groups (`pair_w`: the
    /// super-block's scales as [`q6k_scale_dwords`] packs them). Shared by the tiles and the
    /// lane kernel, which must give the same integers.
    #[inline(always)]
    unsafe fn q6k_bias<const VNNI: bool>(&self, sb: usize, pair_w: &[i32; 8]) -> __m256i {
        let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for p in (0..8).step_by(2) {
            let (w0, w1) = (
                _mm256_set1_epi32(pair_w[p]),
                _mm256_set1_epi32(pair_w[p + 1]),
            );
            even = madd_add::<VNNI>(even, self.pairs(sb * 8 + p), w0);
            odd = madd_add::<VNNI>(odd, self.pairs(sb * 8 + p + 1), w1);
        }
        _mm256_add_epi32(even, odd)
    }

    /// Token `t`'s scale of block `b` in every lane (a broadcast load).
    #[inline(always)]
    unsafe fn d_of(&self, t: usize, b: usize) -> __m256 {
        _mm256_set1_ps(*self.d.add(b * 8 + t))
    }

    /// Token `t`'s 32 quantized values of 32-value block `b`.
    #[inline(always)]
    unsafe fn x32(&self, t: usize, b: usize) -> __m256i {
        _mm256_loadu_si256(self.xs[t].add(b * 32) as *const __m256i)
    }
}

/// The 8 lanes of `v`, to broadcast one token's value at a time.
#[inline(always)]
unsafe fn lanes_of(v: __m256) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), v);
    out
}

/// `[hsum_i32(v[0]), .., hsum_i32(v[T - 1]), 0, ..]` as one vector (exact integer sums), by a
/// tree of horizontal adds: 9 instructions for 8 tokens instead of a reduction per token.
#[inline(always)]
unsafe fn hsums<const T: usize>(v: &[__m256i; T]) -> __m256i {
    let z = _mm256_setzero_si256();
    let at = |i: usize| if i < T { v[i] } else { z };
    // Per 128-bit half: [v0 (0+1), v0 (2+3), v1 (0+1), v1 (2+3)], then [v0, v1, v2, v3] sums
    // of the half's 4 lanes.
    let q0 = _mm256_hadd_epi32(
        _mm256_hadd_epi32(at(0), at(1)),
        _mm256_hadd_epi32(at(2), at(3)),
    );
    let q1 = _mm256_hadd_epi32(
        _mm256_hadd_epi32(at(4), at(5)),
        _mm256_hadd_epi32(at(6), at(7)),
    );
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(q0, q1),
        _mm256_permute2x128_si256::<0x31>(q0, q1),
    )
}

/// Q4_K's 8 scales and 8 mins (`kquants::k_scale_min` of the 12 bytes at `s`), each as a
/// dword holding the value in both i16 halves (the `b` of [`madd_add`]), in arrays to
/// broadcast one at a time.
#[inline(always)]
unsafe fn k_scale_min_words(s: *const u8) -> ([i32; 8], [i32; 8]) {
    let (sc, mn) = k_scale_min_dwords(s);
    let mut out = ([0i32; 8], [0i32; 8]);
    _mm256_storeu_si256(out.0.as_mut_ptr() as *mut __m256i, sc);
    _mm256_storeu_si256(out.1.as_mut_ptr() as *mut __m256i, mn);
    out
}

/// `out[t] = dot(row, token t of the tile)` for `T` tokens. SAFETY: the CPU has AVX2 and F16C
/// (and AVX512-VNNI/VL with `VNNI`); `row` is `blocks` whole blocks of `dtype`, one of
/// `has_int_kernel`, and every token of `tile` has `blocks` blocks quantized for `dtype`.
#[inline(always)]
unsafe fn tile_row<const VNNI: bool, const T: usize>(
    dtype: GgmlDType,
    row: *const u8,
    blocks: usize,
    tile: &Tile<T>,
    out: &mut [f32],
) {
    // Token t: `lanes[t]` as the GEMV's vector lanes, lane t of `acc` as its scalar `acc`.
    let mut lanes = [_mm256_setzero_ps(); T];
    let mut acc = _mm256_setzero_ps();
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => {
            let eight = _mm256_set1_epi8(8);
            let size = match dtype {
                GgmlDType::Q4_0 => 18,
                GgmlDType::Q5_0 => 22,
                _ => 34,
            };
            for b in 0..blocks {
                let blk = row.add(b * size);
                // Signed weights, as the GEMV's.
                let w = match dtype {
                    GgmlDType::Q4_0 => _mm256_sub_epi8(nibbles32(blk.add(2)), eight),
                    GgmlDType::Q5_0 => q5_0_weights(blk),
                    _ => _mm256_loadu_si256(blk.add(2) as *const __m256i),
                };
                let wabs = _mm256_sign_epi8(w, w);
                let dw = _mm256_set1_ps(f16_at(blk));
                for (t, lanes) in lanes.iter_mut().enumerate() {
                    let s = mul_sum::<VNNI>(wabs, _mm256_sign_epi8(tile.x32(t, b), w));
                    // d_w * d_x in every lane, as the GEMV's scalar product.
                    let scale = _mm256_mul_ps(dw, tile.d_of(t, b));
                    *lanes = _mm256_add_ps(*lanes, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(s)));
                }
            }
        }
        GgmlDType::Q4_1 | GgmlDType::Q5_1 => {
            let size = if dtype == GgmlDType::Q4_1 { 20 } else { 24 };
            for b in 0..blocks {
                let blk = row.add(b * size);
                let w = if dtype == GgmlDType::Q4_1 {
                    nibbles32(blk.add(4))
                } else {
                    q5_1_weights(blk)
                };
                let dw = _mm256_set1_ps(f16_at(blk));
                for (t, lanes) in lanes.iter_mut().enumerate() {
                    let s = mul_sum::<VNNI>(w, tile.x32(t, b));
                    let scale = _mm256_mul_ps(dw, tile.d_of(t, b));
                    *lanes = _mm256_add_ps(*lanes, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(s)));
                }
                let dx = tile.d(b);
                // offset_value: (m * d_x) * sum(q_x).
                let m = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(2))), dx);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(m, _mm256_cvtepi32_ps(tile.sums(b))));
            }
        }
        GgmlDType::Q4K | GgmlDType::Q5K => {
            // Q5_K: Q4_K's steps with each nibble's fifth bit (bit 2c + s of qh[l]) as 16.
            let low = _mm256_set1_epi8(0x0f);
            let one = _mm256_set1_epi8(1);
            let q5 = dtype == GgmlDType::Q5K;
            let (size, qs_at) = if q5 { (176, 48) } else { (144, 16) };
            for sb in 0..blocks {
                let blk = row.add(sb * size);
                prefetch_ahead(blk, size);
                let (sc, mn) = k_scale_min_words(blk.add(4));
                let mut iacc = [_mm256_setzero_si256(); T];
                let qh = if q5 {
                    _mm256_loadu_si256(blk.add(16) as *const __m256i)
                } else {
                    _mm256_setzero_si256()
                };
                let fifth = |b: i32| {
                    _mm256_slli_epi16::<4>(_mm256_and_si256(
                        _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b)),
                        one,
                    ))
                };
                for c in 0..4 {
                    let q = _mm256_loadu_si256(blk.add(qs_at + c * 32) as *const __m256i);
                    let (mut wlo, mut whi) = (
                        _mm256_and_si256(q, low),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), low),
                    );
                    if q5 {
                        wlo = _mm256_or_si256(wlo, fifth(2 * c as i32));
                        whi = _mm256_or_si256(whi, fifth(2 * c as i32 + 1));
                    }
                    let slo = _mm256_set1_epi32(sc[2 * c]);
                    let shi = _mm256_set1_epi32(sc[2 * c + 1]);
                    for (t, iacc) in iacc.iter_mut().enumerate() {
                        let lo = _mm256_maddubs_epi16(wlo, tile.x32(t, sb * 8 + 2 * c));
                        let hi = _mm256_maddubs_epi16(whi, tile.x32(t, sb * 8 + 2 * c + 1));
                        *iacc = madd_add::<VNNI>(madd_add::<VNNI>(*iacc, lo, slo), hi, shi);
                    }
                }
                // q4k_min_sum for every token: sum_j mn_j * (sums16[2j] + sums16[2j + 1]),
                // one i16 pair product per j.
                // Two chains: one of 8 dependent `vpdpwssd` stalled each super-block (exact
                // integers, so the split does not change the sum).
                let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for j in (0..8).step_by(2) {
                    let (m0, m1) = (_mm256_set1_epi32(mn[j]), _mm256_set1_epi32(mn[j + 1]));
                    even = madd_add::<VNNI>(even, tile.pairs(sb * 8 + j), m0);
                    odd = madd_add::<VNNI>(odd, tile.pairs(sb * 8 + j + 1), m1);
                }
                let imin = _mm256_add_epi32(even, odd);
                // min_value: (d d_x) isum - (dmin d_x) imin.
                let dx = tile.d(sb);
                let d = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk)), dx);
                let dmin = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(2))), dx);
                let v = _mm256_sub_ps(
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(hsums(&iacc))),
                    _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(imin)),
                );
                acc = _mm256_add_ps(acc, v);
            }
        }
        GgmlDType::Q6K => {
            let low = _mm256_set1_epi8(0x0f);
            let three = _mm256_set1_epi8(3);
            for sb in 0..blocks {
                let blk = row.add(sb * 210);
                prefetch_ahead(blk, 210);
                let (s16, each) = q6k_scale_dwords(blk);
                let mut pair_w = [0i32; 8];
                _mm256_storeu_si256(pair_w.as_mut_ptr() as *mut __m256i, s16);
                let mut iacc = [_mm256_setzero_si256(); T];
                for (h, each) in each.iter().enumerate() {
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
                        let q = _mm256_or_si256(lo, hi);
                        let s = q6k_chunk_scales(*each, j);
                        for (t, iacc) in iacc.iter_mut().enumerate() {
                            let prod = _mm256_maddubs_epi16(q, tile.x32(t, sb * 8 + h * 4 + j));
                            *iacc = madd_add::<VNNI>(*iacc, prod, s);
                        }
                    }
                }
                let bias = tile.q6k_bias::<VNNI>(sb, &pair_w);
                let isum = _mm256_sub_epi32(hsums(&iacc), _mm256_slli_epi32::<5>(bias));
                // scaled_value: (d d_x) isum.
                let d = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(208))), tile.d(sb));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
            }
        }
        GgmlDType::Q3K | GgmlDType::Q2K => {
            // Q6_K's 16-value groups with 2-bit quants (Q3_K: plus its third bit, so the
            // stored quant plus 4, the offset taken off through the activation group sums).
            let q3 = dtype == GgmlDType::Q3K;
            let size = if q3 { 110 } else { 84 };
            for sb in 0..blocks {
                let blk = row.add(sb * size);
                prefetch_ahead(blk, size);
                let (w16, m16) = q23k_group_weights(q3, blk);
                let each = q23k_chunk_weights(w16);
                let mut pair_w = [0i32; 8];
                _mm256_storeu_si256(pair_w.as_mut_ptr() as *mut __m256i, m16);
                let mut iacc = [_mm256_setzero_si256(); T];
                for (h, each) in each.iter().enumerate() {
                    for j in 0..4 {
                        let u = q23k_chunk(q3, blk, h, j);
                        let s = q6k_chunk_scales(*each, j);
                        for (t, iacc) in iacc.iter_mut().enumerate() {
                            let prod = _mm256_maddubs_epi16(u, tile.x32(t, sb * 8 + h * 4 + j));
                            *iacc = madd_add::<VNNI>(*iacc, prod, s);
                        }
                    }
                }
                // The GEMV's `weighted` for every token: Q3_K's scales or Q2_K's mins times
                // the 16-value sums, as Q6_K's offset.
                let weighted = tile.q6k_bias::<VNNI>(sb, &pair_w);
                let dx = tile.d(sb);
                if q3 {
                    // scaled_value: (d d_x) (isum - 4 weighted).
                    let isum = _mm256_sub_epi32(hsums(&iacc), _mm256_slli_epi32::<2>(weighted));
                    let d = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(108))), dx);
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
                } else {
                    // min_value: (d d_x) isum - (dmin d_x) weighted.
                    let d = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(80))), dx);
                    let dmin = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(82))), dx);
                    let v = _mm256_sub_ps(
                        _mm256_mul_ps(d, _mm256_cvtepi32_ps(hsums(&iacc))),
                        _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(weighted)),
                    );
                    acc = _mm256_add_ps(acc, v);
                }
            }
        }
        other => unreachable!("no integer kernel for {other}"),
    }
    // The GEMV's `hsum_ps(lanes) + acc` (the K-quants leave `lanes` at zero, as it does).
    let acc = lanes_of(acc);
    for t in 0..T {
        out[t] = hsum_ps(lanes[t]) + acc[t];
    }
}

/// `out[t * n + r] = dot(row r, token t)` for the `n` consecutive rows in `rows` and the
/// tokens from `first` (a multiple of 8) on (tokens of a tile innermost: each row's blocks are
/// decoded once per 8 tokens).
#[inline(always)]
unsafe fn gemm_rows_impl<const VNNI: bool>(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    first: usize,
    out: &mut [f32],
) {
    let tokens = batch.tokens.len();
    let n = out.len() / tokens;
    let row_bytes = rows.len() / n;
    let (elems, _) = dtype.block_layout().expect("a block type");
    let blocks = batch.cols() / elems as usize;
    macro_rules! tiles {
        ($t:expr) => {{
            let mut t0 = first;
            while t0 < tokens {
                let left = tokens - t0;
                // Tiles of 8 tokens, then 4, 2 and 1.
                macro_rules! run {
                    ($n:literal) => {{
                        let tile = Tile::<$n>::new(batch, t0);
                        let mut o = [0.0f32; $n];
                        for r in 0..n {
                            tile_row::<VNNI, $n>(
                                $t,
                                rows.as_ptr().add(r * row_bytes),
                                blocks,
                                &tile,
                                &mut o,
                            );
                            for (t, v) in o.iter().enumerate() {
                                out[(t0 + t) * n + r] = *v;
                            }
                        }
                        t0 += $n;
                    }};
                }
                if left >= 8 {
                    run!(8)
                } else if left >= 4 {
                    run!(4)
                } else if left >= 2 {
                    run!(2)
                } else {
                    run!(1)
                }
            }
        }};
    }
    match dtype {
        GgmlDType::Q4_0 => tiles!(GgmlDType::Q4_0),
        GgmlDType::Q4_1 => tiles!(GgmlDType::Q4_1),
        GgmlDType::Q5_0 => tiles!(GgmlDType::Q5_0),
        GgmlDType::Q5_1 => tiles!(GgmlDType::Q5_1),
        GgmlDType::Q8_0 => tiles!(GgmlDType::Q8_0),
        GgmlDType::Q4K => tiles!(GgmlDType::Q4K),
        GgmlDType::Q5K => tiles!(GgmlDType::Q5K),
        GgmlDType::Q6K => tiles!(GgmlDType::Q6K),
        GgmlDType::Q2K => tiles!(GgmlDType::Q2K),
        GgmlDType::Q3K => tiles!(GgmlDType::Q3K),
        other => unreachable!("no integer kernel for {other}"),
    }
}

/// The f32 accumulators (lane `t`: token `t`'s value, as the tiles' `acc`) of `R` Q4_K rows
/// (`rows`, their nibbles decoded in element order at `us`) with the 8 tokens of `group`; Q5_K
/// rows likewise (`size` 176: the same scales, mins and f32 steps, its quants decoded with their
/// fifth bit). SAFETY: as [`k_lane_rows_vnni`]; the rows and their decoded bytes hold `blocks`
/// super-blocks of `size` bytes.
// The loops index several per-row arrays by row and sub-block at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn q4k_lane_group<const R: usize>(
    size: usize,
    rows: [*const u8; R],
    us: [*const u8; R],
    tile: &Tile<8>,
    lanes: &LaneActivations,
    group: usize,
    blocks: usize,
) -> [__m256; R] {
    let low16 = _mm256_set1_epi32(0xffff);
    let mut accs = [_mm256_setzero_ps(); R];
    for sb in 0..blocks {
        let mut scales = [[0i32; 8]; R];
        let mut mins = [[0i32; 8]; R];
        for i in 0..R {
            let (sc, mn) = k_scale_min_dwords(rows[i].add(sb * size + 4));
            _mm256_storeu_si256(
                scales[i].as_mut_ptr() as *mut __m256i,
                _mm256_and_si256(sc, low16),
            );
            _mm256_storeu_si256(mins[i].as_mut_ptr() as *mut __m256i, mn);
        }
        let mut isum = [_mm256_setzero_si256(); R];
        for j in 0..8 {
            let xp = lanes.block_ptr(group, sb * 8 + j);
            // Two chains of 4 dependent `vpdpbusd` per row with up to 2 rows, one chain of 8 with
            // more (registers), exact integers either way.
            let chains = if R > 2 { 1 } else { 2 };
            let mut a = [[_mm256_setzero_si256(); 2]; R];
            for g in 0..8 {
                let x = _mm256_loadu_si256(xp.add(32 * g) as *const __m256i);
                for i in 0..R {
                    let up = us[i].add(sb * 256 + j * 32 + 4 * g);
                    let w = _mm256_set1_epi32((up as *const i32).read_unaligned());
                    a[i][g % chains] = dpbusd(a[i][g % chains], w, x);
                }
            }
            for i in 0..R {
                let s = _mm256_add_epi32(a[i][0], a[i][1]);
                isum[i] = _mm256_add_epi32(
                    isum[i],
                    _mm256_mullo_epi32(s, _mm256_set1_epi32(scales[i][j])),
                );
            }
        }
        for i in 0..R {
            // The tiles' minimum sums and f32 steps, unchanged.
            let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for j in (0..8).step_by(2) {
                let (m0, m1) = (
                    _mm256_set1_epi32(mins[i][j]),
                    _mm256_set1_epi32(mins[i][j + 1]),
                );
                even = madd_add::<true>(even, tile.pairs(sb * 8 + j), m0);
                odd = madd_add::<true>(odd, tile.pairs(sb * 8 + j + 1), m1);
            }
            let imin = _mm256_add_epi32(even, odd);
            let blk = rows[i].add(sb * size);
            let dx = tile.d(sb);
            let d = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk)), dx);
            let dmin = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(2))), dx);
            let v = _mm256_sub_ps(
                _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[i])),
                _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(imin)),
            );
            accs[i] = _mm256_add_ps(accs[i], v);
        }
    }
    accs
}

/// The f32 accumulators of `R` Q6_K rows with the 8 tokens of `group`, as
/// [`q4k_lane_group`]: each 16-value group's integer dot product of 8 tokens is 4 `vpdpbusd`
/// weighed by the group's scale with one `vpmulld`; the -32 offset and the f32 steps are the
/// tiles'. SAFETY: as [`q4k_lane_group`], for Q6_K rows whose 6-bit quants are decoded at `us`.
#[inline(always)]
unsafe fn q6k_lane_group<const R: usize>(
    rows: [*const u8; R],
    us: [*const u8; R],
    tile: &Tile<8>,
    lanes: &LaneActivations,
    group: usize,
    blocks: usize,
) -> [__m256; R] {
    let mut accs = [_mm256_setzero_ps(); R];
    for sb in 0..blocks {
        let mut isum = [_mm256_setzero_si256(); R];
        for b in 0..8 {
            let xp = lanes.block_ptr(group, sb * 8 + b);
            for half in 0..2 {
                let mut a = [_mm256_setzero_si256(); R];
                for p in 0..4 {
                    let x = _mm256_loadu_si256(xp.add(32 * (4 * half + p)) as *const __m256i);
                    for i in 0..R {
                        let up = us[i].add(sb * 256 + b * 32 + half * 16 + 4 * p);
                        let w = _mm256_set1_epi32((up as *const i32).read_unaligned());
                        a[i] = dpbusd(a[i], w, x);
                    }
                }
                for i in 0..R {
                    let scale = *rows[i].add(sb * 210 + 192 + 2 * b + half) as i8;
                    isum[i] = _mm256_add_epi32(
                        isum[i],
                        _mm256_mullo_epi32(a[i], _mm256_set1_epi32(i32::from(scale))),
                    );
                }
            }
        }
        for i in 0..R {
            // The tiles' offset sums and f32 steps, unchanged.
            let blk = rows[i].add(sb * 210);
            let (s16, _) = q6k_scale_dwords(blk);
            let mut pair_w = [0i32; 8];
            _mm256_storeu_si256(pair_w.as_mut_ptr() as *mut __m256i, s16);
            let bias = tile.q6k_bias::<true>(sb, &pair_w);
            let isum = _mm256_sub_epi32(isum[i], _mm256_slli_epi32::<5>(bias));
            let d = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(208))), tile.d(sb));
            accs[i] = _mm256_add_ps(accs[i], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
        }
    }
    accs
}

/// The quants of the K-quant super-block at `blk` (Q4_K, Q5_K or Q6_K) as 256 unsigned bytes
/// in element order at `u`: Q4_K's nibbles (sub-block 2c is chunk c's low nibbles, 2c + 1 its
/// high ones), Q5_K's with the fifth bit (bit 2c + s of `qh[l]`) as 16, as its tiles decode
/// them, Q6_K's 6-bit values (its -32 stays folded into the activation sums).
#[inline(always)]
pub(super) unsafe fn k_unsigned_block(dtype: GgmlDType, blk: *const u8, u: *mut u8) {
    let low = _mm256_set1_epi8(0x0f);
    let store = |at: usize, v: __m256i| _mm256_storeu_si256(u.add(at) as *mut __m256i, v);
    if dtype == GgmlDType::Q4K || dtype == GgmlDType::Q5K {
        let q5 = dtype == GgmlDType::Q5K;
        let qs_at = if q5 { 48 } else { 16 };
        let qh = _mm256_loadu_si256(blk.add(16) as *const __m256i);
        let fifth = |b: usize| {
            _mm256_slli_epi16::<4>(_mm256_and_si256(
                _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b as i32)),
                _mm256_set1_epi8(1),
            ))
        };
        for c in 0..4 {
            let q = _mm256_loadu_si256(blk.add(qs_at + c * 32) as *const __m256i);
            let (mut lo, mut hi) = (
                _mm256_and_si256(q, low),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), low),
            );
            if q5 {
                lo = _mm256_or_si256(lo, fifth(2 * c));
                hi = _mm256_or_si256(hi, fifth(2 * c + 1));
            }
            store(c * 64, lo);
            store(c * 64 + 32, hi);
        }
    } else {
        let three = _mm256_set1_epi8(3);
        for h in 0..2 {
            let qh = _mm256_loadu_si256(blk.add(128 + h * 32) as *const __m256i);
            for j in 0..4 {
                let ql = _mm256_loadu_si256(blk.add(h * 64 + (j % 2) * 32) as *const __m256i);
                let lo = if j < 2 {
                    _mm256_and_si256(ql, low)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql), low)
                };
                let shift = _mm_cvtsi32_si128(2 * j as i32);
                let hi =
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srl_epi16(qh, shift), three));
                store(h * 128 + j * 32, _mm256_or_si256(lo, hi));
            }
        }
    }
}

/// `out[t * n + r] = dot(row r, token t)` for the `n` K-quant rows (Q4_K, Q5_K or Q6_K) in
/// `rows`,
/// the whole groups of 8 tokens in the lanes of one vector (`lanes` regroups `batch`), the
/// other tokens by the tiles. Each row is decoded once into unsigned bytes; then each sub-block
/// (32 values for Q4_K and Q5_K, 16 for Q6_K) of 8 tokens is one `vpdpbusd` per 4 values (4 weights
/// broadcast against the 8 tokens' 4 values), weighed by the sub-block's scale with one
/// `vpmulld`. Where the tiles spend a byte product and a scale product per 32 values *and
/// token*, this spends an eighth of both, per token, on one instruction each.
///
/// Bit-equal to the tiles and the GEMV: a super-block's integers (`isum`, Q4_K's `imin`,
/// Q6_K's offset) are exact whatever the order of their sums, and the f32 steps are the tiles'
/// (lane `t` of each vector op is token `t`'s scalar op).
///
/// SAFETY: the CPU has AVX2, F16C, AVX512-VNNI and AVX512-VL; `dtype` is Q4_K, Q5_K or Q6_K;
/// `rows`
/// is `out.len() / tokens` whole rows of it for `batch.cols()` values; `batch` has 256-value
/// blocks and `lanes` regroups it (checked by `int_gemm::gemm_rows_lanes`).
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn k_lane_rows_vnni(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    let tokens = batch.tokens.len();
    let n = out.len() / tokens;
    let blocks = batch.cols() / 256;
    let size = match dtype {
        GgmlDType::Q4K => 144,
        GgmlDType::Q5K => 176,
        _ => 210,
    };
    let row_bytes = blocks * size;
    // Every row decoded once; then group by group, so that a group's activations stay in cache
    // over the rows (row by row, the activations of every group streamed from L2 for each
    // row, and the Q4_K kernel ran 6% slower than the tiles).
    let mut decoded = vec![0u8; n * blocks * 256];
    for r in 0..n {
        for sb in 0..blocks {
            let blk = rows.as_ptr().add(r * row_bytes + sb * size);
            prefetch_ahead(blk, size);
            let at = decoded.as_mut_ptr().add((r * blocks + sb) * 256);
            match dtype {
                GgmlDType::Q4K => k_unsigned_block(GgmlDType::Q4K, blk, at),
                GgmlDType::Q5K => k_unsigned_block(GgmlDType::Q5K, blk, at),
                _ => k_unsigned_block(GgmlDType::Q6K, blk, at),
            }
        }
    }
    macro_rules! group_of {
        ($r:literal, $rows:expr, $us:expr, $tile:expr, $group:expr) => {
            if dtype == GgmlDType::Q6K {
                q6k_lane_group::<$r>($rows, $us, $tile, lanes, $group, blocks)
            } else {
                q4k_lane_group::<$r>(size, $rows, $us, $tile, lanes, $group, blocks)
            }
        };
    }
    for group in 0..lanes.groups {
        let tile = Tile::<8>::new(batch, group * 8);
        // Four rows at a time (then 2, 1): each load of the group's activations serves them all.
        let mut r = 0;
        while r < n {
            let row = |i: usize| rows.as_ptr().add((r + i) * row_bytes);
            let u = |i: usize| decoded.as_ptr().add((r + i) * blocks * 256);
            let z = _mm256_setzero_ps();
            let (accs, m) = match n - r {
                1 => {
                    let [a] = group_of!(1, [row(0)], [u(0)], &tile, group);
                    ([a, z, z, z], 1)
                }
                2 | 3 => {
                    let [a, b] = group_of!(2, [row(0), row(1)], [u(0), u(1)], &tile, group);
                    ([a, b, z, z], 2)
                }
                _ => (
                    group_of!(
                        4,
                        [row(0), row(1), row(2), row(3)],
                        [u(0), u(1), u(2), u(3)],
                        &tile,
                        group
                    ),
                    4,
                ),
            };
            for (i, acc) in accs.iter().take(m).enumerate() {
                // The tiles' `hsum_ps(lanes) + acc` with their K-quant lanes at zero (+0.0 +
                // acc: a -0.0 becomes +0.0 there too).
                let values = lanes_of(_mm256_add_ps(_mm256_setzero_ps(), *acc));
                for (t, v) in values.iter().enumerate() {
                    out[(group * 8 + t) * n + r + i] = *v;
                }
            }
            r += m;
        }
    }
    // The tokens past the whole groups, by the tiles.
    gemm_rows_impl::<true>(dtype, rows, batch, lanes.groups * 8, out);
}

/// AVX2 tiles. SAFETY: the CPU has AVX2 and F16C; `rows` is `out.len() / tokens` whole rows of
/// `dtype` (one of `has_int_kernel`) for `batch.cols()` values, quantized for `dtype`.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gemm_rows_avx2(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    out: &mut [f32],
) {
    gemm_rows_impl::<false>(dtype, rows, batch, 0, out)
}

/// AVX-512 VNNI tiles (256-bit `vpdpbusd` for the 32-value types). SAFETY: as
/// [`gemm_rows_avx2`], plus AVX512-VNNI and AVX512-VL.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gemm_rows_vnni(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    out: &mut [f32],
) {
    gemm_rows_impl::<true>(dtype, rows, batch, 0, out)
}

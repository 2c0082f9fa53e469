//! The x86 kernels of the lane GEMM (`lane_gemm.rs`): with AVX-512 VNNI, 256-bit `vpdpbusd` as
//! inline assembly (written when its intrinsic, stable from Rust 1.89, was above the workspace's
//! MSRV); with AVX2 alone, `vpmaddubsw` for Q4_0 and Q4_1.
//!
//! Each row is decoded once into unsigned bytes (`u = w + c`), then for every whole group of 8
//! tokens each block is 8 `vpdpbusd` (one 4-weight piece broadcast against the 8 tokens'
//! pieces) giving the 8 tokens' exact integer sums in the 8 lanes, and one conversion and
//! multiply-then-add (as `lane_gemm::dot_row`, lane by lane) apply the scales. Four to seven
//! tokens past the last whole group are a group too, padded with zero tokens whose lanes are
//! dropped (`LaneActivations::tail`); one to three take 8 rows at a time in the lanes
//! ([`rows8_token`]), the rows past the last 8 one at a time (an exact horizontal sum and the
//! same scalar steps). Where AVX-512 BW is
//! present, steps of 2 or more tokens take `lane_gemm512_x86.rs` instead (same bits).
//!
//! Without VNNI each piece is one `vpmaddubsw` (pairs of products in i16) and the block's 8
//! pieces are summed in i16 before one `vpmaddwd` widens them: a 4-bit weight (at most 15)
//! times an activation (at most 127 in size) is at most 1,905, so a lane's 16 products stay
//! within 30,480, below i16's 32,767, and the integers are the VNNI kernel's. On the AVX2-only
//! AMD EPYC Zen 3 host the GEMV-order tiles' float steps per block and token were most of a
//! batched SmolLM2 step (72% of its samples in `int_gemm_x86::gemm_rows_avx2`). Q8_0 keeps the
//! tiles without VNNI: its weights as two halves of 4 bits, or by the GEMV's sign trick, gave
//! the same bits, but a decoded Q8_0 token in the lane order (8 rows side by side) ran 3-22%
//! slower than the GEMV there (0.6B-shape Q8_0 decode bench, two rounds each), for ~6% more
//! throughput at 8 SmolLM2 requests.

use std::arch::x86_64::*;

use super::int_x86::{
    dpbusd, f16_at, hsum_i32, mul_sum, nibbles32, prefetch_line_ahead, prefetch_share,
};
use super::lane_layout::{block_form, LaneActivations};
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// The block at `blk` as 32 unsigned weights (`lane_layout::unsigned_block`).
#[inline(always)]
unsafe fn unsigned32(dtype: GgmlDType, blk: *const u8) -> __m256i {
    match dtype {
        GgmlDType::Q4_0 => nibbles32(blk.add(2)),
        GgmlDType::Q4_1 => nibbles32(blk.add(4)),
        _ => _mm256_xor_si256(
            _mm256_loadu_si256(blk.add(2) as *const __m256i),
            _mm256_set1_epi8(i8::MIN),
        ),
    }
}

/// `c * s` in each lane for the weight constant `c` (0, 8 or 128).
#[inline(always)]
unsafe fn times_c(c: i32, s: __m256i) -> __m256i {
    match c {
        8 => _mm256_slli_epi32::<3>(s),
        128 => _mm256_slli_epi32::<7>(s),
        _ => _mm256_setzero_si256(),
    }
}

/// The exact integer sums of one block for the 8 tokens of a group, token `l` in lane `l`: the
/// block's 8 pieces of 4 unsigned weights at `up`, each broadcast against the 8 tokens' pieces at
/// `xp` (`LaneActivations::block_ptr`). Without VNNI the weights must be at most 15 (module
/// docs: the i16 sums then cannot saturate).
#[inline(always)]
unsafe fn block_isums<const VNNI: bool>(up: *const u8, xp: *const i8) -> __m256i {
    let piece = |g: usize| {
        (
            _mm256_set1_epi32((up.add(4 * g) as *const i32).read_unaligned()),
            _mm256_loadu_si256(xp.add(32 * g) as *const __m256i),
        )
    };
    if VNNI {
        let mut acc = _mm256_setzero_si256();
        for g in 0..8 {
            let (w, x) = piece(g);
            acc = dpbusd(acc, w, x);
        }
        acc
    } else {
        // Two chains of 4 dependent adds rather than one of 8.
        let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for g in (0..8).step_by(2) {
            let (w0, x0) = piece(g);
            let (w1, x1) = piece(g + 1);
            even = _mm256_add_epi16(even, _mm256_maddubs_epi16(w0, x0));
            odd = _mm256_add_epi16(odd, _mm256_maddubs_epi16(w1, x1));
        }
        _mm256_madd_epi16(_mm256_add_epi16(even, odd), _mm256_set1_epi16(1))
    }
}

#[inline(always)]
unsafe fn gemm_rows_impl<const VNNI: bool>(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    let tokens = batch.tokens.len();
    let n = out.len() / tokens;
    let (size, c) = block_form(dtype);
    let offsets = dtype == GgmlDType::Q4_1;
    let blocks = batch.cols() / 32;
    // A row's unsigned weights, for the rows that take the per-row paths below (none for one
    // token when the rows are whole groups of 8).
    let mut u = Vec::new();
    // The groups of 8 tokens in the lanes, a zero-padded last one included when `lanes` has it
    // (its padding lanes are computed and dropped).
    let groups = lanes.groups + usize::from(lanes.tail > 0);
    // Tokens past them: rows 8 at a time in the lanes ([`rows8_token`]), the rows past the last
    // 8 one at a time below.
    let rest = lanes.groups * 8 + lanes.tail..tokens;
    let rows8 = if rest.is_empty() { 0 } else { n / 8 * 8 };
    for r0 in (0..rows8).step_by(8) {
        // The next group of 8 rows, fetched on the first token's pass only.
        let row_bytes = blocks * size;
        let next = &rows[((r0 + 8) * row_bytes).min(rows.len())..];
        let next = &next[..next.len().min(8 * row_bytes)];
        for t in rest.clone() {
            let ahead = if t == rest.start { next } else { &[] };
            let v = rows8_token::<VNNI>(
                dtype,
                rows.as_ptr().add(r0 * blocks * size),
                blocks,
                batch,
                t,
                ahead,
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(t * n + r0), v);
        }
    }
    for r in 0..n {
        if groups == 0 && r < rows8 {
            continue;
        }
        u.resize(blocks * 32, 0u8);
        let row = rows.as_ptr().add(r * blocks * size);
        for b in 0..blocks {
            prefetch_line_ahead(row.add(b * size));
            let w = unsigned32(dtype, row.add(b * size));
            _mm256_storeu_si256(u.as_mut_ptr().add(b * 32) as *mut __m256i, w);
        }
        for q in 0..groups {
            let d = batch.d.as_ptr().add(batch.d_at(q * 8));
            let sums = batch.sums.as_ptr().add(batch.sums_at(q * 8));
            let (mut scaled, mut offset) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for b in 0..blocks {
                let (up, xp) = (u.as_ptr().add(b * 32), lanes.block_ptr(q, b));
                let acc = block_isums::<VNNI>(up, xp);
                let s = _mm256_loadu_si256(sums.add(b * 8) as *const __m256i);
                let isum = _mm256_sub_epi32(acc, times_c(c, s));
                let dx = _mm256_loadu_ps(d.add(b * 8));
                let blk = row.add(b * size);
                let scale = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk)), dx);
                scaled = _mm256_add_ps(scaled, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum)));
                if offsets {
                    let mx = _mm256_mul_ps(_mm256_set1_ps(f16_at(blk.add(2))), dx);
                    offset = _mm256_add_ps(offset, _mm256_mul_ps(mx, _mm256_cvtepi32_ps(s)));
                }
            }
            let v = if offsets {
                _mm256_add_ps(scaled, offset)
            } else {
                scaled
            };
            let mut lanes_out = [0.0f32; 8];
            _mm256_storeu_ps(lanes_out.as_mut_ptr(), v);
            for (l, v) in lanes_out.iter().enumerate().take(tokens - q * 8) {
                out[(q * 8 + l) * n + r] = *v;
            }
        }
        for t in if r < rows8 { 0..0 } else { rest.clone() } {
            let a = &batch.tokens[t];
            let (mut scaled, mut offset) = (0.0f32, 0.0f32);
            for b in 0..blocks {
                let w = _mm256_loadu_si256(u.as_ptr().add(b * 32) as *const __m256i);
                let x = _mm256_loadu_si256(a.qs.as_ptr().add(b * 32) as *const __m256i);
                let isum = hsum_i32(mul_sum::<VNNI>(w, x)) - c * a.sums[b];
                let blk = row.add(b * size);
                scaled += (f16_at(blk) * a.d[b]) * isum as f32;
                if offsets {
                    offset += (f16_at(blk.add(2)) * a.d[b]) * a.sums[b] as f32;
                }
            }
            out[t * n + r] = if offsets { scaled + offset } else { scaled };
        }
    }
}

/// `lane_gemm::dot_row` of the 8 consecutive rows at `rows` (`blocks` blocks each) with token `t`
/// of `batch`, row `j` in lane `j`: each block's 8 exact integer sums (one `vpdpbusd` per row, then
/// an add tree across the 8 vectors) and the scalar steps of `dot_row` lane by lane. Where the
/// per-row path spends a horizontal sum and a chain of dependent scalar adds per block, this
/// spends an eighth of the tree and of the vector adds.
#[inline(always)]
unsafe fn rows8_token<const VNNI: bool>(
    dtype: GgmlDType,
    rows: *const u8,
    blocks: usize,
    batch: &Q8Batch,
    t: usize,
    ahead: &[u8],
) -> __m256 {
    let (size, c) = block_form(dtype);
    let offsets = dtype == GgmlDType::Q4_1;
    let a = &batch.tokens[t];
    let row_bytes = blocks * size;
    let (mut scaled, mut offset) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    // The 8 rows are contiguous, and so is the next group: this loop reads 8 rows side by side,
    // which the hardware prefetcher followed too late on an AMD EPYC (loads were most of its
    // time), so a block's share of the next group is fetched with each block. One group ahead
    // read 11-12 GB/s on one thread there, as the GEMV does; the same block of each next row
    // (the previous way) 10, two or three groups ahead 9.5-10, none 7-8.
    let lines = (8 * size).div_ceil(64);
    for b in 0..blocks {
        prefetch_share(ahead, b, lines);
        let x = _mm256_loadu_si256(a.qs.as_ptr().add(b * 32) as *const __m256i);
        let mut p = [_mm256_setzero_si256(); 8];
        let mut dw = [0u16; 8];
        let mut mw = [0u16; 8];
        for (j, (p, (dw, mw))) in p.iter_mut().zip(dw.iter_mut().zip(&mut mw)).enumerate() {
            let blk = rows.add(j * row_bytes + b * size);
            *p = mul_sum::<VNNI>(unsigned32(dtype, blk), x);
            *dw = (blk as *const u16).read_unaligned();
            *mw = (blk.add(2) as *const u16).read_unaligned();
        }
        // Lane j: the sum of p[j]'s 8 lanes.
        let (t0, t1) = (_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let (t2, t3) = (_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        let (u0, u1) = (_mm256_hadd_epi32(t0, t1), _mm256_hadd_epi32(t2, t3));
        let sums = _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(u0, u1),
            _mm256_permute2x128_si256::<0x31>(u0, u1),
        );
        let isum = _mm256_sub_epi32(sums, _mm256_set1_epi32(c * a.sums[b]));
        let dx = _mm256_set1_ps(a.d[b]);
        let f16s = |h: &[u16; 8]| _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i));
        let scale = _mm256_mul_ps(f16s(&dw), dx);
        scaled = _mm256_add_ps(scaled, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(isum)));
        if offsets {
            let mx = _mm256_mul_ps(f16s(&mw), dx);
            offset = _mm256_add_ps(offset, _mm256_mul_ps(mx, _mm256_set1_ps(a.sums[b] as f32)));
        }
    }
    if offsets {
        _mm256_add_ps(scaled, offset)
    } else {
        scaled
    }
}

/// [`gemm_rows_impl`] with the type dispatched once (each arm inlines the kernel for a constant
/// type).
#[inline(always)]
unsafe fn gemm_rows_typed<const VNNI: bool>(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    // Not Q8_0 without VNNI: its unsigned weights (up to 255) would saturate the i16 sums.
    match dtype {
        GgmlDType::Q4_0 => gemm_rows_impl::<VNNI>(GgmlDType::Q4_0, rows, batch, lanes, out),
        GgmlDType::Q4_1 => gemm_rows_impl::<VNNI>(GgmlDType::Q4_1, rows, batch, lanes, out),
        GgmlDType::Q8_0 if VNNI => gemm_rows_impl::<VNNI>(GgmlDType::Q8_0, rows, batch, lanes, out),
        other => unreachable!("no lane kernel for {other}"),
    }
}

/// `out[t * n + r] = lane_gemm::dot_row(row r, token t)` for the `n` rows in `rows`.
/// SAFETY: the CPU has AVX2, F16C, AVX512-VNNI and AVX512-VL; `dtype` is Q4_0, Q4_1 or Q8_0;
/// `rows` is `out.len() / tokens` whole rows for `batch.cols()` values; `batch` has 32-value
/// blocks and `lanes` regroups it (all checked by `lane_gemm::gemm_rows`).
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gemm_rows_vnni(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    gemm_rows_typed::<true>(dtype, rows, batch, lanes, out)
}

/// [`gemm_rows_vnni`] with AVX2 alone, the same bits. SAFETY: as [`gemm_rows_vnni`], but the
/// CPU needs only AVX2 and F16C, and `dtype` is Q4_0 or Q4_1.
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gemm_rows_avx2(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    lanes: &LaneActivations,
    out: &mut [f32],
) {
    gemm_rows_typed::<false>(dtype, rows, batch, lanes, out)
}

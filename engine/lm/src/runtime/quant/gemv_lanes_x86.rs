//! The AVX-512 VNNI kernel of `gemv_lanes.rs`: 16 tokens in the lanes of 512-bit vectors,
//! two rows at a time (the tokens' activations loaded once for both).
//!
//! Rows are decoded a pass at a time: each block's 32 weights as signed bytes (8 dwords of 4,
//! each broadcast into a `vpdpbusd`), its 8 pieces' starting values `-128 * sum(w)` and its
//! scales as f32. Then every group of 16 tokens runs over the pass's rows, the group's
//! activations (512 bytes a block: 24 KB for 1536 values) staying in L1.

use std::arch::x86_64::*;

use super::gemv_lanes_layout::{GemvLanes, LANES};
use super::int_x86::{f16_at, nibbles32, q5_0_weights, q5_1_weights};
use crate::runtime::ggml_type::GgmlDType;

/// Rows decoded per pass: 72 bytes a block, 221 KB for 64 rows of 1536 values (in L2), as
/// many as a task of `QuantMatrix::matmul_int_tiled_many` hands over.
const ROWS_PER_PASS: usize = 64;

/// A block's 32 weights as signed bytes in element order (the GEMV's values: Q4_0's nibble
/// minus 8, Q5_0's quant minus 16, Q4_1's and Q5_1's unsigned quants, Q8_0's bytes).
#[inline(always)]
unsafe fn weights32(dtype: GgmlDType, blk: *const u8) -> __m256i {
    match dtype {
        GgmlDType::Q4_0 => _mm256_sub_epi8(nibbles32(blk.add(2)), _mm256_set1_epi8(8)),
        GgmlDType::Q4_1 => nibbles32(blk.add(4)),
        GgmlDType::Q5_0 => q5_0_weights(blk),
        GgmlDType::Q5_1 => q5_1_weights(blk),
        _ => _mm256_loadu_si256(blk.add(2) as *const __m256i),
    }
}

/// A pass's rows as the lanes read them, row `r` block `b` piece `g` at `(r * blocks + b) * 8 +
/// g` (scales at `r * blocks + b`).
struct Decoded {
    /// 4 weights as signed bytes in one dword.
    w: Vec<i32>,
    /// `-128 * sum` of those 4 weights: what the activations' `+ 128` adds, taken off first.
    start: Vec<i32>,
    /// The block's scale `d`.
    d: Vec<f32>,
    /// The block's min `m` (Q4_1, Q5_1).
    m: Vec<f32>,
}

impl Decoded {
    #[inline(always)]
    unsafe fn row(&mut self, dtype: GgmlDType, r: usize, row: *const u8, blocks: usize) {
        let (_, size) = dtype.block_layout().expect("a block type");
        let ones = _mm256_set1_epi8(1);
        for b in 0..blocks {
            let blk = row.add(b * size as usize);
            let w = weights32(dtype, blk);
            let sum4 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, w);
            let start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(sum4));
            let at = (r * blocks + b) * 8;
            _mm256_storeu_si256(self.w.as_mut_ptr().add(at) as *mut __m256i, w);
            _mm256_storeu_si256(self.start.as_mut_ptr().add(at) as *mut __m256i, start);
            self.d[r * blocks + b] = f16_at(blk);
            if matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_1) {
                self.m[r * blocks + b] = f16_at(blk.add(2));
            }
        }
    }
}

/// `R` rows (`rs`, rows of `dec`) times one group of 16 tokens (`q`): each lane the GEMV's
/// result for its token. `OFFSET`: Q4_1's and Q5_1's ninth sum.
// The indices run over several arrays of registers at once (`acc[i][g]`, `scale[i]`, `rs[i]`).
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn group_rows<const R: usize, const OFFSET: bool>(
    lanes: &GemvLanes,
    q: usize,
    dec: &Decoded,
    rs: [usize; R],
) -> [__m512; R] {
    let blocks = lanes.blocks;
    let xg = lanes.x.as_ptr().add(q * blocks * 512);
    let dg = lanes.d.as_ptr().add(q * blocks * LANES);
    let sg = lanes.sums.as_ptr().add(q * blocks * LANES);
    let zero = _mm512_setzero_ps();
    let mut acc = [[zero; 8]; R];
    let mut off = [zero; R];
    for b in 0..blocks {
        let dx = _mm512_loadu_ps(dg.add(b * LANES));
        let mut scale = [zero; R];
        for i in 0..R {
            // The GEMV's `d_w * d_x`, per token.
            scale[i] = _mm512_mul_ps(_mm512_set1_ps(*dec.d.get_unchecked(rs[i] * blocks + b)), dx);
        }
        for g in 0..8 {
            let x = _mm512_loadu_si512(xg.add((b * 8 + g) * 64) as *const __m512i);
            for i in 0..R {
                let at = (rs[i] * blocks + b) * 8 + g;
                let isum = _mm512_dpbusd_epi32(
                    _mm512_set1_epi32(*dec.start.get_unchecked(at)),
                    x,
                    _mm512_set1_epi32(*dec.w.get_unchecked(at)),
                );
                // Partial `g`: a multiply, then an add (no fused multiply-add), as the GEMV.
                acc[i][g] =
                    _mm512_add_ps(acc[i][g], _mm512_mul_ps(scale[i], _mm512_cvtepi32_ps(isum)));
            }
        }
        if OFFSET {
            // `offset_value`: `(m * d_x) * sum_x`.
            let sx = _mm512_loadu_ps(sg.add(b * LANES));
            for i in 0..R {
                let mx =
                    _mm512_mul_ps(_mm512_set1_ps(*dec.m.get_unchecked(rs[i] * blocks + b)), dx);
                off[i] = _mm512_add_ps(off[i], _mm512_mul_ps(mx, sx));
            }
        }
    }
    // `hsum8` (halves, then pairs) lane by lane, then the ninth sum (zero without offsets:
    // adding it still turns a -0.0 into +0.0, as the GEMV's `+ acc`).
    let mut v = [zero; R];
    for i in 0..R {
        let a = &acc[i];
        let s = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
            _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])),
        );
        v[i] = _mm512_add_ps(s, off[i]);
    }
    v
}

/// Token `16q + l`'s value of row `r` from lane `l` of `v`, for the group's real tokens.
#[inline(always)]
unsafe fn store(v: __m512, q: usize, r: usize, tokens: usize, n: usize, out: &mut [f32]) {
    let mut each = [0.0f32; LANES];
    _mm512_storeu_ps(each.as_mut_ptr(), v);
    for (l, v) in each.iter().enumerate().take(tokens - q * LANES) {
        out[(q * LANES + l) * n + r] = *v;
    }
}

#[inline(always)]
unsafe fn gemm_rows_impl<const OFFSET: bool>(
    dtype: GgmlDType,
    rows: &[u8],
    lanes: &GemvLanes,
    out: &mut [f32],
) {
    let (tokens, blocks) = (lanes.tokens, lanes.blocks);
    let n = out.len() / tokens;
    let (_, size) = dtype.block_layout().expect("a block type");
    let row_bytes = blocks * size as usize;
    let pass = ROWS_PER_PASS.min(n);
    let mut dec = Decoded {
        w: vec![0; pass * blocks * 8],
        start: vec![0; pass * blocks * 8],
        d: vec![0.0; pass * blocks],
        m: vec![0.0; pass * blocks],
    };
    for base in (0..n).step_by(ROWS_PER_PASS) {
        let m = ROWS_PER_PASS.min(n - base);
        for r in 0..m {
            dec.row(dtype, r, rows.as_ptr().add((base + r) * row_bytes), blocks);
        }
        for q in 0..lanes.groups {
            let mut r = 0;
            while r + 2 <= m {
                let [a, b] = group_rows::<2, OFFSET>(lanes, q, &dec, [r, r + 1]);
                store(a, q, base + r, tokens, n, out);
                store(b, q, base + r + 1, tokens, n, out);
                r += 2;
            }
            if r < m {
                let [a] = group_rows::<1, OFFSET>(lanes, q, &dec, [r]);
                store(a, q, base + r, tokens, n, out);
            }
        }
    }
}

/// `out[t * n + r] = int_dot::dot_row(row r, token t)` for the `n` rows in `rows` and the
/// `lanes.tokens` tokens of `lanes` (`out` is `[lanes.tokens, n]`).
/// SAFETY: the CPU has AVX-512 F, BW, VL and VNNI, AVX2 and F16C; `dtype` is a 32-value type;
/// `rows` is `n` whole rows of `lanes.blocks` blocks (checked by `gemv_lanes::gemm_rows`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
pub(super) unsafe fn gemm_rows_avx512(
    dtype: GgmlDType,
    rows: &[u8],
    lanes: &GemvLanes,
    out: &mut [f32],
) {
    match dtype {
        GgmlDType::Q4_0 => gemm_rows_impl::<false>(GgmlDType::Q4_0, rows, lanes, out),
        GgmlDType::Q4_1 => gemm_rows_impl::<true>(GgmlDType::Q4_1, rows, lanes, out),
        GgmlDType::Q5_0 => gemm_rows_impl::<false>(GgmlDType::Q5_0, rows, lanes, out),
        GgmlDType::Q5_1 => gemm_rows_impl::<true>(GgmlDType::Q5_1, rows, lanes, out),
        GgmlDType::Q8_0 => gemm_rows_impl::<false>(GgmlDType::Q8_0, rows, lanes, out),
        other => unreachable!("no lane kernel for {other}"),
    }
}

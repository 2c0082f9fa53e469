//! The lane GEMM's order (`lane_gemm.rs`: the batch engine's order for Q4_0, Q4_1 and Q8_0) with
//! 16 weight rows in the 16 lanes of a 512-bit vector, each token's 4 activation bytes broadcast
//! into `vpdpbusd`, as the K-quants' `k_gemm512_x86.rs` does.
//!
//! Why: the 256-bit lane kernel puts 8 tokens in the lanes and broadcasts every 4-byte piece of
//! the weights, so each `vpdpbusd` does 32 multiply-adds and needs two loads; at a step of 8
//! sequences that kernel was about two thirds of SmolLM2's step (AMD EPYC). Here a vector of
//! 16 rows' weights, decoded once per pass of 16 rows ([`decode_panel`]), serves every token
//! of the pass from a register, and each `vpdpbusd` does 64.
//!
//! Bit-equal to `lane_gemm::dot_row`: lane `i` of every vector op on token `t` is that function's
//! scalar op for row `i` and token `t` (the block's exact integer sum, `isum - c sum_x`, then
//! `scaled + (d_w d_x) isum` and, for Q4_1, `offset + (m d_x) sum_x`, block by block, and
//! `scaled + offset` at the end; multiplies and adds separate, no fused multiply-add).

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::int_x86::prefetch_share;
use super::k_gemm512_x86::{panel_rows, pass_tokens, transpose16, ROWS, TOKENS};

use super::lane_layout::block_form;
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// Blocks per span of the decode: 16 rows' 16 blocks are at most 9 transposes of 64 bytes.
const SPAN: usize = 16;

/// The 16 rows of a pass, decoded: block `b`'s piece `p` (weights `4p..4p + 4` as the unsigned
/// bytes of `lane_layout::unsigned_block`) of row `i` in lane `i` of `q[b * 8 + p]`, the rows'
/// `d` and (Q4_1) `m` as f32 in `d[b]`, `m[b]`.
struct Panel {
    q: Vec<__m512i>,
    d: Vec<__m512>,
    m: Vec<__m512>,
    /// A span's raw bytes, transposed (kept here: a fresh 9 KB array per panel was zeroed each
    /// time, 3% of a step of 8 sequences).
    raw: Vec<__m512i>,
}

thread_local! {
    /// The panel, reused across products (a 8960-wide row's is 143 KB).
    static PANEL: RefCell<Panel> =
        const { RefCell::new(Panel { q: Vec::new(), d: Vec::new(), m: Vec::new(), raw: Vec::new() }) };
}

/// Decodes the 16 rows `rows` (each `blocks` blocks of `size` bytes of `dtype`) into `panel` by
/// vectors: the raw bytes of 16 blocks of the 16 rows are transposed 64 bytes at a time
/// ([`transpose16`]: lane `i` of vector `k` is dword `k` of row `i`'s span), and each block's
/// fields are read from those dwords, 16 rows per instruction (a field at an odd half-dword, as
/// in Q4_0's and Q8_0's 18- and 34-byte blocks, joins two dwords). Why not a gather per field:
/// on an AMD EPYC (Zen 4) the gathers made this kernel 3x slower than the 256-bit one.
#[inline(always)]
unsafe fn decode_panel(
    dtype: GgmlDType,
    size: usize,
    rows: &[*const u8; ROWS],
    blocks: usize,
    panel: &mut Panel,
) {
    let low4 = _mm512_set1_epi8(0x0f);
    let flip = _mm512_set1_epi8(i8::MIN);
    let q4_1 = dtype == GgmlDType::Q4_1;
    let at = match dtype {
        GgmlDType::Q4_1 => 4,
        _ => 2,
    };
    let raw = panel.raw.as_mut_ptr();
    for b0 in (0..blocks).step_by(SPAN) {
        let nb = SPAN.min(blocks - b0);
        let bytes = nb * size;
        for c in 0..bytes.div_ceil(64) {
            let len = 64.min(bytes - 64 * c);
            // Only the span's own bytes: the last row's may end the weights.
            let mask: u64 = if len == 64 { !0 } else { (1u64 << len) - 1 };
            let mut r = [_mm512_setzero_si512(); ROWS];
            for (v, row) in r.iter_mut().zip(rows) {
                *v = _mm512_maskz_loadu_epi8(mask, row.add(b0 * size + 64 * c) as *const i8);
            }
            let t = transpose16(&r);
            std::ptr::copy_nonoverlapping(t.as_ptr(), raw.add(ROWS * c), ROWS);
        }
        // The dword at byte `at` (even) of every row's span.
        let dword = |at: usize| {
            let k = at / 4;
            // SAFETY: `at + 4` is within the span's bytes, whose dwords were all written above.
            if at.is_multiple_of(4) {
                *raw.add(k)
            } else {
                _mm512_or_si512(
                    _mm512_srli_epi32::<16>(*raw.add(k)),
                    _mm512_slli_epi32::<16>(*raw.add(k + 1)),
                )
            }
        };
        for j in 0..nb {
            let (b, s) = (b0 + j, j * size);
            let dm = dword(s);
            *panel.d.get_unchecked_mut(b) = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            if q4_1 {
                *panel.m.get_unchecked_mut(b) =
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(dm)));
            }
            let q = panel.q.as_mut_ptr().add(b * 8);
            if dtype == GgmlDType::Q8_0 {
                for p in 0..8 {
                    *q.add(p) = _mm512_xor_si512(dword(s + 2 + 4 * p), flip);
                }
            } else {
                // Byte j of the quants holds weight j (low nibble) and weight j + 16 (high).
                for p in 0..4 {
                    let v = dword(s + at + 4 * p);
                    *q.add(p) = _mm512_and_si512(v, low4);
                    *q.add(p + 4) = _mm512_and_si512(_mm512_srli_epi32::<4>(v), low4);
                }
            }
        }
    }
}

/// Token `t` of a batch: its quantized values, block scales and block sums.
struct Token {
    qs: *const i8,
    d: *const f32,
    sums: *const i32,
}

/// The f32 results (lane `i`: row `i`) of the panel's 16 rows with `T` tokens.
#[inline(always)]
unsafe fn panel_tokens<const T: usize>(
    dtype: GgmlDType,
    panel: &Panel,
    blocks: usize,
    tokens: &[Token; T],
    ahead: &[u8],
) -> [__m512; T] {
    let (size, c) = block_form(dtype);
    // `ahead`'s share per block: the next panel's 16 rows are contiguous, as many blocks long.
    let lines = (ROWS * size).div_ceil(64);
    let q4_1 = dtype == GgmlDType::Q4_1;
    let mut scaled = [_mm512_setzero_ps(); T];
    let mut offset = [_mm512_setzero_ps(); T];
    for b in 0..blocks {
        let w = panel.q.as_ptr().add(b * 8);
        let (d, m) = (*panel.d.as_ptr().add(b), *panel.m.as_ptr().add(b));
        // The next panel's bytes, a block's share at a time: its decode read rows from memory
        // and waited there (the row loads were about a third of this kernel on an AMD EPYC).
        prefetch_share(ahead, b, lines);
        // Pieces outside, tokens inside, as in the K-quant kernel: T independent accumulator
        // chains, each weight vector read once (alone, no measurable change on a Zen 4).
        let mut acc = [_mm512_setzero_si512(); T];
        for p in 0..8 {
            let wv = *w.add(p);
            for t in 0..T {
                let x = (tokens[t].qs.add(b * 32 + 4 * p) as *const i32).read_unaligned();
                acc[t] = _mm512_dpbusd_epi32(acc[t], wv, _mm512_set1_epi32(x));
            }
        }
        for t in 0..T {
            let tok = &tokens[t];
            let (sum, dx) = (*tok.sums.add(b), _mm512_set1_ps(*tok.d.add(b)));
            let isum = _mm512_sub_epi32(acc[t], _mm512_set1_epi32(c * sum));
            let scale = _mm512_mul_ps(d, dx);
            scaled[t] = _mm512_add_ps(scaled[t], _mm512_mul_ps(scale, _mm512_cvtepi32_ps(isum)));
            if q4_1 {
                let mx = _mm512_mul_ps(m, dx);
                offset[t] = _mm512_add_ps(offset[t], _mm512_mul_ps(mx, _mm512_set1_ps(sum as f32)));
            }
        }
    }
    if q4_1 {
        for t in 0..T {
            scaled[t] = _mm512_add_ps(scaled[t], offset[t]);
        }
    }
    scaled
}

/// `out[t * n + r] = lane_gemm::dot_row(row r, token t)` for the `n` rows of `dtype` (Q4_0, Q4_1
/// or Q8_0) in `rows` and every token of `batch`: 16 rows at a time, 8 tokens at a time (then
/// 4, 2, 1).
///
/// SAFETY: the CPU has AVX-512 F, BW and VNNI and F16C; `rows` is `out.len() / tokens` whole
/// rows of `dtype` for `batch.cols()` values, and `batch` has 32-value blocks (checked by
/// `lane_gemm::gemm_rows`).
pub(super) unsafe fn lane_rows_512(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    out: &mut [f32],
) {
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        let blocks = batch.cols() / 32;
        // Every block is rewritten by `decode_panel` (`m` only for Q4_1, which alone reads it).
        panel.q.resize(blocks * 8, _mm512_setzero_si512());
        panel.d.resize(blocks, _mm512_setzero_ps());
        panel.m.resize(blocks, _mm512_setzero_ps());
        panel.raw.resize(9 * ROWS, _mm512_setzero_si512());
        // SAFETY: as this function's.
        unsafe { rows_in(dtype, rows, batch, out, &mut panel) }
    })
}

/// [`lane_rows_512`] with the thread's panel, compiled for the vector extensions (a closure
/// would not inherit them: its intrinsics became calls) and inlined once per type.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,f16c")]
unsafe fn rows_in(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    out: &mut [f32],
    panel: &mut Panel,
) {
    match dtype {
        GgmlDType::Q4_0 => rows_typed(GgmlDType::Q4_0, rows, batch, out, panel),
        GgmlDType::Q4_1 => rows_typed(GgmlDType::Q4_1, rows, batch, out, panel),
        GgmlDType::Q8_0 => rows_typed(GgmlDType::Q8_0, rows, batch, out, panel),
        other => unreachable!("no lane kernel for {other}"),
    }
}

/// The body of [`rows_in`] for one constant `dtype`.
#[inline(always)]
unsafe fn rows_typed(
    dtype: GgmlDType,
    rows: &[u8],
    batch: &Q8Batch,
    out: &mut [f32],
    panel: &mut Panel,
) {
    let tokens = batch.tokens.len();
    let n = out.len() / tokens;
    let blocks = batch.cols() / 32;
    let (size, _) = block_form(dtype);
    let row_bytes = blocks * size;
    let mut r0 = 0;
    while r0 < n {
        let (m, ptrs, mask) = panel_rows(rows, r0, n, row_bytes);
        decode_panel(dtype, size, &ptrs, blocks, panel);
        // The next panel's rows, fetched while this one's first pass computes.
        let next = &rows[((r0 + m) * row_bytes).min(rows.len())..];
        let next = &next[..next.len().min(ROWS * row_bytes)];
        let mut t0 = 0;
        while t0 < tokens {
            macro_rules! run {
                ($n:literal) => {{
                    let toks: [Token; $n] = std::array::from_fn(|t| {
                        let a = &batch.tokens[t0 + t];
                        Token {
                            qs: a.qs.as_ptr(),
                            d: a.d.as_ptr(),
                            sums: a.sums.as_ptr(),
                        }
                    });
                    let ahead = if t0 == 0 { next } else { &[] };
                    let v = panel_tokens::<$n>(dtype, panel, blocks, &toks, ahead);
                    for (t, v) in v.iter().enumerate() {
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add((t0 + t) * n + r0), mask, *v);
                    }
                    t0 += $n;
                }};
            }
            match pass_tokens(tokens - t0) {
                TOKENS => run!(8),
                4 => run!(4),
                2 => run!(2),
                _ => run!(1),
            }
        }
        r0 += m;
    }
}

//! The K-quant GEMM of prefill in 512-bit vectors (AVX-512 VNNI): 16 weight rows in the 16 lanes
//! of a vector, each token's 4 activation bytes broadcast into `vpdpbusd`'s memory operand.
//!
//! Why rows in lanes and not 16 tokens: `vpdpbusd` broadcasts only its signed operand, the
//! activations, so one 4-byte piece of a token feeds 16 rows with no broadcast instruction, and a
//! vector of 16 rows' weights serves the 8 tokens of a block from a register. A task's rows are
//! decoded once, 16 at a time, into panels of unsigned bytes ([`Panel`], the values of
//! `int_gemm_x86::k_unsigned_block`) with their sub-block scales, mins and f16 factors as vectors
//! of 16 rows: the raw bytes transposed and unpacked in vectors ([`decode_panel_by_vectors`]).
//! The tokens are read where the batch keeps them; no regrouping.
//!
//! A matrix loaded from a GGUF file on a CPU with this kernel keeps its K-quant rows as panels
//! (`k_panels.rs`: the transpose done once at load). Then a panel's vectors are plain loads, and
//! for up to [`FUSED_MAX_TOKENS`] tokens (a decoding step; one token included; Q5_K up to
//! [`Q5_FUSED_MAX_TOKENS`]) Q4_K's, Q5_K's and Q6_K's passes unpack their quants as they read
//! them ([`Q4Panels`], [`Q5Panels`], [`Q6Panels`]), with the scales
//! decoded per super-block and the bytes ahead fetched linearly, as the GEMV does; longer
//! products decode each panel once for their several passes. One 8960 x 1536 product, 2
//! threads, AMD EPYC (Zen 4), weights cycled through 24 copies so that they come from memory:
//! Q4_K 8 tokens 1.89 ms per row GEMV, 0.64 ms transposing rows, 0.43-0.46 ms from panels; 1
//! token 0.20-0.24 ms (GEMV 0.23-0.24); Q6_K 8 tokens 0.55-0.65 ms (rows 0.68-0.75 with the
//! weights in cache), 1 token
//! 0.36-0.40 ms against the GEMV's 0.30-0.34 (not solved: a longer prefetch distance, an
//! explicit prefetch of the next scales and a layout with the scales first did not help).
//! Q5_K (`cargo bench --bench decode -- prefill-q/Q5_K_8960x1536`, one matrix, in cache):
//! panels unpacked by the passes 0.16 ms at 1 token and 0.47-0.51 at 8, against 0.34-0.38 and
//! 0.53-0.55 decoding the panel first (rows: 0.42-0.44 and 0.61-0.67).
//!
//! Bit-equal to the GEMV: lane `r` of every vector op on token `t` is the GEMV's scalar op for row
//! `r` and token `t`. A super-block's integers (`isum`, Q4_K's and Q5_K's `imin`, Q6_K's offset)
//! are exact in any order, and the f32 steps are the tiles' (`int_gemm_x86::tile_row`): `d = d_w
//! d_x`, `acc + (d isum - dmin imin)` (Q6_K: `acc + d (isum - 32 bias)`), super-block by
//! super-block, then `0 + acc`.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::int_x86::{prefetch_share, PREFETCH_BYTES_AHEAD};
use super::q8::Q8Batch;
use crate::runtime::ggml_type::GgmlDType;

/// Rows per panel: the 16 i32 lanes of a 512-bit vector.
pub(super) const ROWS: usize = 16;

/// The most tokens of a product whose passes unpack Q4_K and Q6_K panels as they read them;
/// more tokens take several passes, which read the panel of pieces decoded once.
const FUSED_MAX_TOKENS: usize = 16;

/// The same for Q5_K, whose fifth bits cost each pass more to unpack: one pass of 8 tokens
/// (an 8960 x 1536 product at 16 tokens, two passes, took 0.98-1.00 ms unpacking against
/// 0.88-0.89 decoding the panel once).
const Q5_FUSED_MAX_TOKENS: usize = 8;

/// Tokens per pass over a panel: each weight vector loaded serves them all; 8 accumulators, 8
/// scaled sums and 8 f32 sums stay in the 32 vector registers.
pub(super) const TOKENS: usize = 8;

/// How many tokens the next pass over a panel takes with `left` to go: [`TOKENS`] while there
/// are, then 4, 2, 1 (the passes' code is instantiated for those counts).
#[inline(always)]
pub(super) fn pass_tokens(left: usize) -> usize {
    match left {
        l if l >= TOKENS => TOKENS,
        4..=7 => 4,
        2 | 3 => 2,
        _ => 1,
    }
}

/// The panel of rows `r0..` of the `n` rows in `rows`, `row_bytes` apart: its rows (at most
/// [`ROWS`]), their pointers (lanes past a short panel's rows repeat its first row; their
/// results are not stored) and the mask of the lanes to store.
#[inline(always)]
pub(super) unsafe fn panel_rows(
    rows: &[u8],
    r0: usize,
    n: usize,
    row_bytes: usize,
) -> (usize, [*const u8; ROWS], __mmask16) {
    let m = ROWS.min(n - r0);
    let ptrs = std::array::from_fn(|i| {
        rows.as_ptr()
            .add((r0 + if i < m { i } else { 0 }) * row_bytes)
    });
    let mask = if m == ROWS { 0xffff } else { (1u16 << m) - 1 };
    (m, ptrs, mask)
}

/// Vectors of per-row values for one super-block of a panel: Q4_K/Q5_K's 8 scales (plain i32),
/// 8 mins (in both i16 halves, the `b` of `vpdpwssd`), `d` and `dmin`; Q6_K's 16 scales (i32),
/// 8 pairs of scales (i16 halves, the weights of the activations' 16-value sum pairs) and `d`.
const META: usize = 26;

/// 16 rows of a task, decoded: for super-block `sb`, weight piece `p` (values `4p..4p + 4`) of
/// row `i` at byte `(sb * 64 + p) * 64 + 4 i`, and `META` vectors per super-block.
struct Panel {
    q: Vec<u8>,
    meta: Vec<__m512i>,
}

thread_local! {
    /// The panel, reused across products (a 8960-wide row's is 140 KB).
    static PANEL: RefCell<Panel> = const { RefCell::new(Panel { q: Vec::new(), meta: Vec::new() }) };
}

/// The 16 x 16 transpose of dwords: `out[j]` lane `i` = `rows[i]` lane `j`.
#[inline(always)]
pub(super) unsafe fn transpose16(r: &[__m512i; 16]) -> [__m512i; 16] {
    let mut t = [_mm512_setzero_si512(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    // u[4k + m], 128-bit lane L: column 4L + m of rows 4k..4k + 4.
    let mut u = [_mm512_setzero_si512(); 16];
    for k in 0..4 {
        u[4 * k] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for m in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0b10_00_10_00>(u[m], u[4 + m]);
        let v1 = _mm512_shuffle_i32x4::<0b11_01_11_01>(u[m], u[4 + m]);
        let w0 = _mm512_shuffle_i32x4::<0b10_00_10_00>(u[8 + m], u[12 + m]);
        let w1 = _mm512_shuffle_i32x4::<0b11_01_11_01>(u[8 + m], u[12 + m]);
        out[m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(v0, w0);
        out[8 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(v0, w0);
        out[4 + m] = _mm512_shuffle_i32x4::<0b10_00_10_00>(v1, w1);
        out[12 + m] = _mm512_shuffle_i32x4::<0b11_01_11_01>(v1, w1);
    }
    out
}

/// Decodes the 16 rows `rows` (each `blocks` super-blocks of `size` bytes of Q4_K, Q5_K or Q6_K)
/// into `panel`, every super-block rewritten, by vectors: each super-block's raw quant bytes of the 16
/// rows transposed 16 dwords at a time ([`transpose16`]: a dword of a row holds 4 consecutive
/// bytes, so after the transpose lane `i` of vector `j` is dword `j` of row `i`) and unpacked
/// there, 16 rows per instruction; the scales, mins and f16 factors gathered 16 rows at a time and
/// unpacked the same way. Each panel byte is the unsigned value `int_gemm_x86::k_unsigned_block`
/// gives (a short panel repeats a row in the lanes past its rows, whose results are not stored).
///
/// Why: at the 8 tokens of a batch engine's step the panel is decoded for 8 tokens only, and
/// decoding row by row (`k_unsigned_block` per row, then a scalar scatter of the scales) was about
/// two thirds of the product (one 8960 x 1536 Q4_K matrix: 1.83 ms at 8 tokens, 2.61 at 16;
/// by vectors 1.18 and 1.62-1.69).
#[inline(always)]
unsafe fn decode_panel_by_vectors<B: Blocks>(
    dtype: GgmlDType,
    src: &B,
    blocks: usize,
    panel: &mut Panel,
) {
    for sb in 0..blocks {
        decode_quants(dtype, src, sb, panel.q.as_mut_ptr().add(sb * 64 * 64));
        decode_meta(dtype, src, sb, panel.meta.as_mut_ptr().add(sb * META));
    }
}

/// Super-block `sb`'s 64 pieces of 16 rows' unsigned values, written at `pieces`.
#[inline(always)]
unsafe fn decode_quants<B: Blocks>(dtype: GgmlDType, src: &B, sb: usize, pieces: *mut u8) {
    let low4 = _mm512_set1_epi8(0x0f);
    let bits45 = _mm512_set1_epi8(0x30);
    if dtype == GgmlDType::Q6K {
        // Value 128n + 32c + 4i + (0..4) is (ql nibble) | (2 qh bits) << 4, from ql dword
        // 16n + i (c = 0, 2: low, high nibble) or 16n + 8 + i (c = 1, 3) and qh dword 8n + i
        // (bits 2c, 2c + 1 of each byte).
        let (ql0, ql1, qh) = (src.dwords(sb, 0), src.dwords(sb, 64), src.dwords(sb, 128));
        for n in 0..2 {
            let ql = if n == 0 { &ql0 } else { &ql1 };
            for i in 0..8 {
                let (a, b, h) = (ql[i], ql[8 + i], qh[8 * n + i]);
                let a_hi = _mm512_srli_epi32::<4>(a);
                let b_hi = _mm512_srli_epi32::<4>(b);
                let k = 32 * n + i;
                let put = |k: usize, nib: __m512i, top: __m512i| {
                    let v =
                        _mm512_or_si512(_mm512_and_si512(nib, low4), _mm512_and_si512(top, bits45));
                    _mm512_storeu_si512(pieces.add(k * 64) as *mut _, v);
                };
                put(k, a, _mm512_slli_epi32::<4>(h));
                put(k + 8, b, _mm512_slli_epi32::<2>(h));
                put(k + 16, a_hi, h);
                put(k + 24, b_hi, _mm512_srli_epi32::<2>(h));
            }
        }
        return;
    }
    // Dword 8g + p of the quants: values 64g + 4p.. in its low nibbles, 64g + 32 + 4p.. in
    // its high ones; Q5_K's fifth bits are bits 2g (low) and 2g + 1 (high) of the bytes of
    // dword p of `qh`.
    let (qs_at, qh) = if dtype == GgmlDType::Q5K {
        (48, Some(src.dwords(sb, 16)))
    } else {
        (16, None)
    };
    let ones = _mm512_set1_epi8(1);
    let fifth = |h: __m512i, bit: usize| {
        _mm512_slli_epi32::<4>(_mm512_and_si512(
            _mm512_srl_epi32(h, _mm_cvtsi32_si128(bit as i32)),
            ones,
        ))
    };
    for half in 0..2 {
        let qs = src.dwords(sb, qs_at + 64 * half);
        for (j, v) in qs.iter().enumerate() {
            let (g, p) = ((16 * half + j) / 8, (16 * half + j) % 8);
            let mut lo = _mm512_and_si512(*v, low4);
            let mut hi = _mm512_and_si512(_mm512_srli_epi32::<4>(*v), low4);
            if let Some(qh) = &qh {
                lo = _mm512_or_si512(lo, fifth(qh[p], 2 * g));
                hi = _mm512_or_si512(hi, fifth(qh[p], 2 * g + 1));
            }
            _mm512_storeu_si512(pieces.add((16 * g + p) * 64) as *mut _, lo);
            _mm512_storeu_si512(pieces.add((16 * g + 8 + p) * 64) as *mut _, hi);
        }
    }
}

/// Super-block `sb`'s `META` vectors of per-row scales, mins and factors, written at `meta`.
#[inline(always)]
unsafe fn decode_meta<B: Blocks>(dtype: GgmlDType, src: &B, sb: usize, meta: *mut __m512i) {
    if dtype == GgmlDType::Q6K {
        let low16 = _mm512_set1_epi32(0xffff);
        // Scale g of each row: byte g % 4 of dword g / 4 at byte 192, sign-extended.
        for w in 0..4 {
            let v = src.word(sb, 192 + 4 * w);
            let byte = |j: usize| match j {
                0 => _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(v)),
                1 => _mm512_srai_epi32::<24>(_mm512_slli_epi32::<16>(v)),
                2 => _mm512_srai_epi32::<24>(_mm512_slli_epi32::<8>(v)),
                _ => _mm512_srai_epi32::<24>(v),
            };
            for j in 0..4 {
                *meta.add(4 * w + j) = byte(j);
            }
        }
        for p in 0..8 {
            *meta.add(16 + p) = _mm512_or_si512(
                _mm512_slli_epi32::<16>(*meta.add(2 * p + 1)),
                _mm512_and_si512(*meta.add(2 * p), low16),
            );
        }
        // `d` is the block's last two bytes.
        *meta.add(24) = f16_lanes(src.q6_d(sb));
        return;
    }
    // The 12 bytes of 6-bit scales and mins (`k_scale_min_dwords`, 16 rows per op):
    // scales 0-3 and mins 0-3 in the low 6 bits of dwords 0 and 1, scales and mins 4-7
    // in the nibbles of dword 2 with their top two bits in dwords 0 and 1.
    let word = |w: usize| src.word(sb, 4 + 4 * w);
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let (low6, low4, low2) = (
        _mm512_set1_epi32(0x3f3f_3f3f),
        _mm512_set1_epi32(0x0f0f_0f0f),
        _mm512_set1_epi32(0x0303_0303),
    );
    let high = |nib: __m512i, top: __m512i| {
        _mm512_or_si512(
            _mm512_and_si512(nib, low4),
            _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srli_epi32::<6>(top), low2)),
        )
    };
    let sc = [_mm512_and_si512(u0, low6), high(u2, u0)];
    let mn = [
        _mm512_and_si512(u1, low6),
        high(_mm512_srli_epi32::<4>(u2), u1),
    ];
    let low8 = _mm512_set1_epi32(0xff);
    let byte = |v: __m512i, j: usize| match j {
        0 => _mm512_and_si512(v, low8),
        1 => _mm512_and_si512(_mm512_srli_epi32::<8>(v), low8),
        2 => _mm512_and_si512(_mm512_srli_epi32::<16>(v), low8),
        _ => _mm512_srli_epi32::<24>(v),
    };
    for h in 0..2 {
        for j in 0..4 {
            *meta.add(4 * h + j) = byte(sc[h], j);
            let m = byte(mn[h], j);
            *meta.add(8 + 4 * h + j) = _mm512_or_si512(m, _mm512_slli_epi32::<16>(m));
        }
    }
    let d = src.word(sb, 0);
    *meta.add(16) = f16_lanes(d);
    *meta.add(17) = f16_lanes(_mm512_srli_epi32::<16>(d));
}

/// The 16 blocks of a panel's rows, super-block by super-block, as the decoder reads them.
trait Blocks {
    /// The 64 bytes at `at` of each row's block `sb`, transposed: lane `i` of vector `j` is
    /// dword `j` of row `i`'s block.
    unsafe fn dwords(&self, sb: usize, at: usize) -> [__m512i; 16];
    /// The dword at byte `at` (a multiple of 4) of each row's block `sb`, lane by lane.
    unsafe fn word(&self, sb: usize, at: usize) -> __m512i;
    /// Q6_K's `d` of each row's block `sb` (its last two bytes) in the low half of every lane.
    unsafe fn q6_d(&self, sb: usize) -> __m512i;
}

/// Rows as the file stores them: transposed in registers, scales gathered.
struct RowBlocks {
    rows: [*const u8; ROWS],
    size: usize,
    /// Each row's distance from the first, for the gathers.
    offsets: __m512i,
}

impl RowBlocks {
    #[inline(always)]
    unsafe fn new(rows: [*const u8; ROWS], size: usize) -> Self {
        let mut distance = [0i32; ROWS];
        for (d, r) in distance.iter_mut().zip(&rows) {
            *d = r.offset_from(rows[0]) as i32;
        }
        let offsets = _mm512_loadu_si512(distance.as_ptr() as *const _);
        Self {
            rows,
            size,
            offsets,
        }
    }
}

impl Blocks for RowBlocks {
    #[inline(always)]
    unsafe fn dwords(&self, sb: usize, at: usize) -> [__m512i; 16] {
        let mut r = [_mm512_setzero_si512(); 16];
        for (v, b) in r.iter_mut().zip(&self.rows) {
            *v = _mm512_loadu_si512(b.add(sb * self.size + at) as *const _);
        }
        transpose16(&r)
    }

    #[inline(always)]
    unsafe fn word(&self, sb: usize, at: usize) -> __m512i {
        let base = self.rows[0].add(sb * self.size + at);
        _mm512_i32gather_epi32::<1>(self.offsets, base as *const i32)
    }

    #[inline(always)]
    unsafe fn q6_d(&self, sb: usize) -> __m512i {
        _mm512_srli_epi32::<16>(self.word(sb, 206))
    }
}

/// A panel stored as panels (`k_panels.rs`): every vector is one load.
struct PanelBlocks {
    panel: *const u8,
    size: usize,
}

impl Blocks for PanelBlocks {
    #[inline(always)]
    unsafe fn dwords(&self, sb: usize, at: usize) -> [__m512i; 16] {
        let first = self.panel.add(sb * ROWS * self.size + at / 4 * 64);
        std::array::from_fn(|j| _mm512_loadu_si512(first.add(64 * j) as *const _))
    }

    #[inline(always)]
    unsafe fn word(&self, sb: usize, at: usize) -> __m512i {
        _mm512_loadu_si512(self.panel.add(sb * ROWS * self.size + at / 4 * 64) as *const _)
    }

    #[inline(always)]
    unsafe fn q6_d(&self, sb: usize) -> __m512i {
        let d = self.panel.add(sb * ROWS * self.size + 52 * 64);
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(d as *const _))
    }
}

/// The f16 in the low half of every dword lane as f32 bits.
#[inline(always)]
unsafe fn f16_lanes(v: __m512i) -> __m512i {
    _mm512_castps_si512(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)))
}

/// Token `t`'s quantized values, scales and i16 sum pairs in `batch`.
struct Token {
    qs: *const i8,
    d: *const f32,
    pairs: *const i32,
}

impl Token {
    fn new(batch: &Q8Batch, t: usize) -> Self {
        Self {
            qs: batch.tokens[t].qs.as_ptr(),
            d: batch.tokens[t].d.as_ptr(),
            pairs: batch.pairs[batch.pairs_at(t)..].as_ptr(),
        }
    }

    /// Values `4k..4k + 4` as one dword in every lane.
    #[inline(always)]
    unsafe fn piece(&self, k: usize) -> __m512i {
        _mm512_set1_epi32((self.qs.add(4 * k) as *const i32).read_unaligned())
    }

    /// Sum pair `p` (over the whole token) in every lane.
    #[inline(always)]
    unsafe fn pair(&self, p: usize) -> __m512i {
        _mm512_set1_epi32(*self.pairs.add(p * 8))
    }

    #[inline(always)]
    unsafe fn d(&self, sb: usize) -> __m512 {
        _mm512_set1_ps(*self.d.add(sb))
    }
}

/// Where a pass over a panel reads its weight pieces: piece `k` of super-block `sb` is the
/// unsigned values `4k..4k + 4` of the 16 rows (lane `i`: row `i`).
trait Pieces {
    unsafe fn piece(&self, sb: usize, k: usize) -> __m512i;

    /// Super-block `sb`'s `META` vectors (decoded into `scratch` if they are not stored).
    unsafe fn meta(&self, sb: usize, scratch: &mut [__m512i; META]) -> *const __m512i;

    /// Called at sub-block `s` of the `subs` of super-block `sb`: asks for the bytes that
    /// the passes will read next.
    unsafe fn prefetch(&self, sb: usize, s: usize, subs: usize);
}

/// The pieces and scales the decoder wrote into the panel; `ahead`, the next panel's rows, is
/// fetched a share per sub-block during the first pass.
struct Decoded<'a> {
    panel: &'a Panel,
    ahead: &'a [u8],
    /// Cache lines of `ahead` per sub-block.
    lines: usize,
}

impl Pieces for Decoded<'_> {
    #[inline(always)]
    unsafe fn piece(&self, sb: usize, k: usize) -> __m512i {
        _mm512_loadu_si512(self.panel.q.as_ptr().add((sb * 64 + k) * 64) as *const _)
    }

    #[inline(always)]
    unsafe fn meta(&self, sb: usize, _: &mut [__m512i; META]) -> *const __m512i {
        self.panel.meta.as_ptr().add(sb * META)
    }

    #[inline(always)]
    unsafe fn prefetch(&self, sb: usize, s: usize, subs: usize) {
        prefetch_share(self.ahead, sb * subs + s, self.lines);
    }
}

/// Bytes between a pass's reading point in panels and the line it asks for: the GEMV's
/// distance. Panels follow one another, so reading linearly ahead reaches into the next panel
/// without knowing where it is.
const PANEL_BYTES_AHEAD: usize = PREFETCH_BYTES_AHEAD;

/// Asks for the lines of the `step` bytes at `at + ahead` (a prefetch never faults: past the
/// weights' end it is a wasted request, so the address wraps).
#[inline(always)]
unsafe fn prefetch_linear(at: *const u8, ahead: usize, step: usize) {
    let mut line = 0;
    while line < step {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(ahead + line) as *const i8);
        line += 64;
    }
}

/// Super-block `sb`'s scales of a panel stored as panels (`size`-byte blocks of `dtype`),
/// decoded into `scratch`.
#[inline(always)]
unsafe fn stored_meta(
    dtype: GgmlDType,
    size: usize,
    panel: *const u8,
    sb: usize,
    scratch: &mut [__m512i; META],
) -> *const __m512i {
    decode_meta(
        dtype,
        &PanelBlocks { panel, size },
        sb,
        scratch.as_mut_ptr(),
    );
    scratch.as_ptr()
}

/// Q4_K stored as panels, unpacked as the pass reads it (no panel of pieces written and read
/// back): piece `k` is sub-block `s = k / 8`'s nibbles (low for even `s`, high for odd) of
/// quant dword `8 (s / 2) + k % 8`, vector `4 + ..` of the super-block (`k_panels.rs`).
struct Q4Panels(*const u8);

impl Pieces for Q4Panels {
    #[inline(always)]
    unsafe fn meta(&self, sb: usize, scratch: &mut [__m512i; META]) -> *const __m512i {
        stored_meta(GgmlDType::Q4K, 144, self.0, sb, scratch)
    }

    #[inline(always)]
    unsafe fn prefetch(&self, sb: usize, s: usize, _: usize) {
        // 36 lines a super-block, 8 sub-blocks: 4.5 lines each.
        prefetch_linear(self.0.add(sb * 36 * 64 + s * 288), PANEL_BYTES_AHEAD, 288);
    }

    #[inline(always)]
    unsafe fn piece(&self, sb: usize, k: usize) -> __m512i {
        let (s, p) = (k / 8, k % 8);
        let raw = _mm512_loadu_si512(self.0.add((sb * 36 + 4 + 8 * (s / 2) + p) * 64) as *const _);
        // One shift by a count in a register (0 or 4): no branch for LLVM to unswitch, which
        // reordered the passes' loads into spills.
        let shift = _mm512_srl_epi32(raw, _mm_cvtsi32_si128(4 * (s % 2) as i32));
        _mm512_and_si512(shift, _mm512_set1_epi8(0x0f))
    }
}

/// Q5_K stored as panels, unpacked as the pass reads it: piece `k` of sub-block `s = k / 8` is
/// that sub-block's nibbles (low for even `s`, high for odd) of quant dword `12 + 8 (s / 2) + k % 8`
/// with bit `s` of each byte of qh dword `4 + k % 8` above them as the fifth bit, as the decoder
/// writes it.
struct Q5Panels(*const u8);

impl Pieces for Q5Panels {
    #[inline(always)]
    unsafe fn meta(&self, sb: usize, scratch: &mut [__m512i; META]) -> *const __m512i {
        stored_meta(GgmlDType::Q5K, 176, self.0, sb, scratch)
    }

    #[inline(always)]
    unsafe fn prefetch(&self, sb: usize, s: usize, _: usize) {
        // 44 lines a super-block, 8 sub-blocks: 5.5 lines each.
        prefetch_linear(self.0.add(sb * 44 * 64 + s * 352), PANEL_BYTES_AHEAD, 352);
    }

    #[inline(always)]
    unsafe fn piece(&self, sb: usize, k: usize) -> __m512i {
        let (s, p) = (k / 8, k % 8);
        let blk = self.0.add(sb * 44 * 64);
        let q = _mm512_loadu_si512(blk.add((12 + 8 * (s / 2) + p) * 64) as *const _);
        let h = _mm512_loadu_si512(blk.add((4 + p) * 64) as *const _);
        // Shifts by counts in registers (as `Q4Panels`): the nibble, and qh's bit `s` of each
        // byte moved to its bit 4; then (nib & 0x0f) | (top & 0x10), as `Q6Panels` does.
        let nib = _mm512_srl_epi32(q, _mm_cvtsi32_si128(4 * (s % 2) as i32));
        let top = _mm512_slli_epi32::<4>(_mm512_srl_epi32(h, _mm_cvtsi32_si128(s as i32)));
        let v = _mm512_ternarylogic_epi32::<0xca>(_mm512_set1_epi8(0x10), top, nib);
        _mm512_and_si512(v, _mm512_set1_epi8(0x1f))
    }
}

/// Q6_K stored as panels, unpacked as the pass reads it: piece `k = 32 n + 8 c + i` is the ql
/// nibble (low for `c` 0, 1, high for 2, 3) of ql dword `16 n + i` (`c` even) or `16 n + 8 + i`
/// (`c` odd) with bits `2c, 2c + 1` of qh dword `8 n + i` above it, as the decoder writes it.
struct Q6Panels(*const u8);

impl Pieces for Q6Panels {
    #[inline(always)]
    unsafe fn meta(&self, sb: usize, scratch: &mut [__m512i; META]) -> *const __m512i {
        stored_meta(GgmlDType::Q6K, 210, self.0, sb, scratch)
    }

    #[inline(always)]
    unsafe fn prefetch(&self, sb: usize, s: usize, _: usize) {
        // 3360 bytes a super-block, 16 sub-blocks: 210 each. A super-block's scales are its
        // last 288 bytes and are read first: one super-block further ahead, so that they
        // are in when it starts.
        prefetch_linear(
            self.0.add(sb * 3360 + s * 210),
            PANEL_BYTES_AHEAD + 3360,
            210,
        );
    }

    #[inline(always)]
    unsafe fn piece(&self, sb: usize, k: usize) -> __m512i {
        let (n, c, i) = (k / 32, (k % 32) / 8, k % 8);
        let blk = self.0.add(sb * 16 * 210);
        let q = _mm512_loadu_si512(blk.add((16 * n + 8 * (c % 2) + i) * 64) as *const _);
        let h = _mm512_loadu_si512(blk.add((32 + 8 * n + i) * 64) as *const _);
        // Shifts by counts in registers, no branches (as `Q4Panels`): the low or high nibble,
        // and qh's bits 2c, 2c + 1 moved to bits 4, 5 of each byte (right first, so that no bit
        // leaves the dword).
        let nib = _mm512_srl_epi32(q, _mm_cvtsi32_si128(4 * (c / 2) as i32));
        let top = _mm512_slli_epi32::<4>(_mm512_srl_epi32(h, _mm_cvtsi32_si128(2 * c as i32)));
        // (nib & 0x0f) | (top & 0x30) in one op: bit by bit, mask ? top : nib, with the
        // nibble's upper bits cleared by the mask 0x3f of the result.
        let v = _mm512_ternarylogic_epi32::<0xca>(_mm512_set1_epi8(0x30), top, nib);
        _mm512_and_si512(v, _mm512_set1_epi8(0x3f))
    }
}

/// The f32 sums (lane `i`: row `i`) of the panel's rows with `T` tokens. SAFETY: as
/// [`k_rows_512`]; the panel holds `blocks` super-blocks and the tokens `blocks * 256` values.
#[inline(always)]
unsafe fn panel_tokens<W: Pieces, const Q6: bool, const T: usize>(
    weights: &W,
    tokens: &[Token; T],
    blocks: usize,
    prefetch: bool,
) -> [__m512; T] {
    let (subs, pieces) = if Q6 { (16, 4) } else { (8, 8) };
    let mut acc = [_mm512_setzero_ps(); T];
    let mut scratch = [_mm512_setzero_si512(); META];
    for sb in 0..blocks {
        let meta = weights.meta(sb, &mut scratch);
        let mut isum = [_mm512_setzero_si512(); T];
        // Q4_K/Q5_K: 8 sub-blocks of 8 pieces; Q6_K: 16 of 4, each weighed by its scale.
        for s in 0..subs {
            // The bytes read next, fetched while these compute (`lane_gemm512_x86.rs`).
            if prefetch {
                weights.prefetch(sb, s, subs);
            }
            let mut a = [_mm512_setzero_si512(); T];
            for p in 0..pieces {
                let k = s * pieces + p;
                let wv = weights.piece(sb, k);
                for t in 0..T {
                    a[t] = _mm512_dpbusd_epi32(a[t], wv, tokens[t].piece(sb * 64 + k));
                }
            }
            let scale = *meta.add(s);
            for t in 0..T {
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(a[t], scale));
            }
        }
        if Q6 {
            let d = _mm512_castsi512_ps(*meta.add(24));
            for t in 0..T {
                // The tiles' `q6k_bias`: sum_p pair_w[p] * pair[p], then isum - 32 bias.
                let (mut even, mut odd) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for p in (0..8).step_by(2) {
                    even = _mm512_dpwssd_epi32(even, tokens[t].pair(sb * 8 + p), *meta.add(16 + p));
                    odd =
                        _mm512_dpwssd_epi32(odd, tokens[t].pair(sb * 8 + p + 1), *meta.add(17 + p));
                }
                let bias = _mm512_add_epi32(even, odd);
                let isum = _mm512_sub_epi32(isum[t], _mm512_slli_epi32::<5>(bias));
                let dd = _mm512_mul_ps(d, tokens[t].d(sb));
                acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(dd, _mm512_cvtepi32_ps(isum)));
            }
        } else {
            let (dw, dmin) = (
                _mm512_castsi512_ps(*meta.add(16)),
                _mm512_castsi512_ps(*meta.add(17)),
            );
            for t in 0..T {
                // q4k_min_sum: sum_j mn_j * (sums16[2j] + sums16[2j + 1]).
                let (mut even, mut odd) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for j in (0..8).step_by(2) {
                    even = _mm512_dpwssd_epi32(even, tokens[t].pair(sb * 8 + j), *meta.add(8 + j));
                    odd =
                        _mm512_dpwssd_epi32(odd, tokens[t].pair(sb * 8 + j + 1), *meta.add(9 + j));
                }
                let imin = _mm512_add_epi32(even, odd);
                let dx = tokens[t].d(sb);
                let (d, dm) = (_mm512_mul_ps(dw, dx), _mm512_mul_ps(dmin, dx));
                let v = _mm512_sub_ps(
                    _mm512_mul_ps(d, _mm512_cvtepi32_ps(isum[t])),
                    _mm512_mul_ps(dm, _mm512_cvtepi32_ps(imin)),
                );
                acc[t] = _mm512_add_ps(acc[t], v);
            }
        }
    }
    acc
}

/// `out[t * n + r] = dot(row r, token t)` for the `n` K-quant rows (Q4_K, Q5_K or Q6_K) in
/// `rows` and every token of `batch`: panel by panel of 16 rows, 8 tokens at a time (then 4, 2,
/// 1). The first `panels` rows (a multiple of 16) are stored as panels (`k_panels.rs`), the
/// others as rows.
///
/// SAFETY: the CPU has AVX2, F16C, AVX512-F and AVX512-VNNI; `dtype` is Q4_K, Q5_K or Q6_K;
/// `rows` is `out.len() / tokens` whole rows of it for `batch.cols()` values, `panels` a
/// multiple of 16 no larger than that, and `batch` has 256-value blocks (checked by
/// `int_gemm::gemm_rows_512`).
pub(super) unsafe fn k_rows_512(
    dtype: GgmlDType,
    rows: &[u8],
    panels: usize,
    batch: &Q8Batch,
    out: &mut [f32],
) {
    let blocks = batch.cols() / 256;
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        // Every super-block is rewritten by `decode_panel`: no clearing between products.
        panel.q.resize(blocks * 256 * ROWS, 0);
        panel.meta.resize(blocks * META, _mm512_setzero_si512());
        // SAFETY: as this function's.
        unsafe { k_rows_with(dtype, rows, panels, batch, out, &mut panel) }
    })
}

/// [`k_rows_512`] with the thread's panel. SAFETY: as [`k_rows_512`].
#[target_feature(enable = "avx512f,avx512vnni,avx2,f16c")]
unsafe fn k_rows_with(
    dtype: GgmlDType,
    rows: &[u8],
    panels: usize,
    batch: &Q8Batch,
    out: &mut [f32],
    panel: &mut Panel,
) {
    let tokens = batch.tokens.len();
    let n = out.len() / tokens;
    let blocks = batch.cols() / 256;
    let size = match dtype {
        GgmlDType::Q4K => 144,
        GgmlDType::Q5K => 176,
        _ => 210,
    };
    let q6 = dtype == GgmlDType::Q6K;
    let row_bytes = blocks * size;
    let mut r0 = 0;
    while r0 < n {
        let (m, ptrs, mask) = panel_rows(rows, r0, n, row_bytes);
        // Panels: only the scales are decoded, the passes unpack the quants as they read them;
        // rows (and more tokens than that): the panel of pieces is written first.
        let most = if dtype == GgmlDType::Q5K {
            Q5_FUSED_MAX_TOKENS
        } else {
            FUSED_MAX_TOKENS
        };
        let fused = r0 < panels && tokens <= most;
        if fused {
            // Nothing to decode ahead: the passes read the panel as it is stored.
        } else if r0 < panels {
            let src = PanelBlocks {
                panel: ptrs[0],
                size,
            };
            match dtype {
                GgmlDType::Q4K => decode_panel_by_vectors(GgmlDType::Q4K, &src, blocks, panel),
                GgmlDType::Q5K => decode_panel_by_vectors(GgmlDType::Q5K, &src, blocks, panel),
                _ => decode_panel_by_vectors(GgmlDType::Q6K, &src, blocks, panel),
            }
        } else {
            let src = RowBlocks::new(ptrs, size);
            match dtype {
                GgmlDType::Q4K => decode_panel_by_vectors(GgmlDType::Q4K, &src, blocks, panel),
                GgmlDType::Q5K => decode_panel_by_vectors(GgmlDType::Q5K, &src, blocks, panel),
                _ => decode_panel_by_vectors(GgmlDType::Q6K, &src, blocks, panel),
            }
        }
        // The next panel's rows, fetched a share per sub-block while this one's first pass
        // computes: the next panel's 16 rows are contiguous, as many super-blocks long. Spread
        // over the sub-blocks: a burst of 36 at each super-block stalled on the fill buffers
        // (a tenth of this kernel's samples sat on those prefetches).
        let next = &rows[((r0 + m) * row_bytes).min(rows.len())..];
        let next = &next[..next.len().min(ROWS * row_bytes)];
        let subs = if q6 { 16 } else { 8 };
        let decoded = Decoded {
            panel: &*panel,
            ahead: next,
            lines: next.len().div_ceil(64).div_ceil(blocks.max(1) * subs),
        };
        let mut t0 = 0;
        while t0 < tokens {
            macro_rules! run {
                ($n:literal) => {{
                    let toks: [Token; $n] = std::array::from_fn(|t| Token::new(batch, t0 + t));
                    let first = t0 == 0;
                    let acc = match (q6, fused) {
                        (true, true) => {
                            panel_tokens::<_, true, $n>(&Q6Panels(ptrs[0]), &toks, blocks, first)
                        }
                        (true, false) => {
                            panel_tokens::<_, true, $n>(&decoded, &toks, blocks, first)
                        }
                        (false, true) if dtype == GgmlDType::Q5K => {
                            panel_tokens::<_, false, $n>(&Q5Panels(ptrs[0]), &toks, blocks, first)
                        }
                        (false, true) => {
                            panel_tokens::<_, false, $n>(&Q4Panels(ptrs[0]), &toks, blocks, first)
                        }
                        (false, false) => {
                            panel_tokens::<_, false, $n>(&decoded, &toks, blocks, first)
                        }
                    };
                    for (t, a) in acc.iter().enumerate() {
                        // The tiles' `hsum_ps(lanes) + acc` with their K-quant lanes at zero
                        // (+0.0 + acc: a -0.0 becomes +0.0 there too).
                        let v = _mm512_add_ps(_mm512_setzero_ps(), *a);
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add((t0 + t) * n + r0), mask, v);
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

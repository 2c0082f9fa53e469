//! The AMX tiles of `amx_gemm.rs`: per 32 weight rows (two [`Panel`]s unpacked with AVX-512
//! gathers) and 16 or 32 tokens, a chunk of scale steps goes through the tile unit (2 A tiles x
//! 2 B tiles -> 4 int32 tiles per step, stored to a 16 KB buffer), then AVX-512 applies each
//! step's scales to f32 accumulators of the 32 x 32 outputs (the K-quants first sum their steps
//! with the sub-block scales in i32). The order of every f32 operation is `amx_gemm::model_rows`.
//!
//! The AVX-512 intrinsics here are stable from Rust 1.89, the workspace's minimum since they
//! came (AMX hosts all have AVX-512; 256-bit scale steps would double the instructions).

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::amx_panel::{at, signed_weights, step, AmxActivations, Panel, TILE};
use super::kquants::k_scale_min;
use crate::runtime::amx::{tile, TileConfig};
use crate::runtime::ggml_type::GgmlDType;

/// Steps whose int32 tiles wait for their scale steps together (divides the 8 or 16 steps of a
/// K-quant super-block).
const CHUNK: usize = 4;

/// The int32 tiles of a chunk: `[step][tile a * 2 + p][16 tokens][16 rows]`.
#[repr(C, align(64))]
struct Sums([[i32; 256]; CHUNK * 4]);

/// f32 (or the K-quants' i32) accumulators of 32 tokens x 32 rows.
#[repr(C, align(64))]
struct Acc<T>([T; 32 * 32]);

thread_local! {
    /// The two panels of 32 rows, reused across products.
    static PANELS: RefCell<[Panel; 2]> = RefCell::new([Panel::default(), Panel::default()]);
}

/// `out[t * n + r] = dot(row r, token t)` for the `n = rows.len() / row_bytes` rows of `dtype`.
///
/// SAFETY: AMX-INT8 is granted to this process and the CPU has AVX-512 F/BW/VNNI and F16C
/// (`amx_gemm::available`); `dtype` has an AMX kernel, `rows` is whole rows of `row_bytes`
/// bytes for `acts.cols` values, `acts` is quantized for `dtype` and `out` is
/// `[acts.tokens, n]` (checked by `amx_gemm::gemm_rows`).
pub(super) unsafe fn gemm_rows(
    dtype: GgmlDType,
    rows: &[u8],
    row_bytes: usize,
    acts: &AmxActivations,
    out: &mut [f32],
) {
    PANELS.with(|panels| {
        let mut panels = panels.borrow_mut();
        // SAFETY: as this function's.
        unsafe { gemm_rows_with(dtype, rows, row_bytes, acts, out, &mut panels) }
    })
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,f16c")]
unsafe fn gemm_rows_with(
    dtype: GgmlDType,
    rows: &[u8],
    row_bytes: usize,
    acts: &AmxActivations,
    out: &mut [f32],
    panels: &mut [Panel; 2],
) {
    let n = rows.len() / row_bytes;
    let st = step(dtype);
    // C tiles 0-3 (16 x 16 i32), A tiles 4-5 (16 tokens x one step), B tiles 6-7 (one step of
    // 16 rows in VNNI rows of 64 bytes).
    let cfg = (0..4)
        .fold(TileConfig::default(), |c, t| c.with_tile(t, 16, 64))
        .with_tile(4, 16, st as u16)
        .with_tile(5, 16, st as u16)
        .with_tile(6, (st / 4) as u8, 64)
        .with_tile(7, (st / 4) as u8, 64);
    cfg.load();
    let [p0, p1] = panels;
    for r0 in (0..n).step_by(2 * TILE) {
        pack(dtype, rows, row_bytes, r0, acts.cols, p0);
        pack(dtype, rows, row_bytes, r0 + TILE, acts.cols, p1);
        let mut t0 = 0;
        while t0 < acts.tokens {
            if acts.tokens - t0 > TILE {
                tokens_by_rows::<2>(dtype, acts, t0, [p0, p1], r0, n, out);
                t0 += 2 * TILE;
            } else {
                tokens_by_rows::<1>(dtype, acts, t0, [p0, p1], r0, n, out);
                t0 += TILE;
            }
        }
    }
}

/// The outputs of tokens `t0..t0 + 16 A` and rows `r0..r0 + 32` (those inside the product).
#[inline(always)]
unsafe fn tokens_by_rows<const A: usize>(
    dtype: GgmlDType,
    acts: &AmxActivations,
    t0: usize,
    panels: [&Panel; 2],
    r0: usize,
    n: usize,
    out: &mut [f32],
) {
    let cols = acts.cols;
    let st = step(dtype);
    let steps = cols / st;
    let kquant = matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K);
    let mut sums = Sums([[0; 256]; CHUNK * 4]);
    let mut acc = Acc([0.0f32; 32 * 32]);
    let mut iacc = Acc([0i32; 32 * 32]);
    let signed = signed_weights(dtype);
    let a_at = |t: usize, s: usize| acts.qs.as_ptr().add(t * cols + s * st) as *const u8;
    let sp: *mut [i32; 256] = sums.0.as_mut_ptr();
    for c0 in (0..steps).step_by(CHUNK) {
        let ns = CHUNK.min(steps - c0);
        for j in 0..ns {
            let s = c0 + j;
            tile::zero::<0>();
            tile::zero::<1>();
            tile::load::<4>(a_at(t0, s), cols);
            tile::load::<6>(panels[0].q.as_ptr().add(s * st * TILE), 64);
            tile::load::<7>(panels[1].q.as_ptr().add(s * st * TILE), 64);
            if A == 2 {
                tile::zero::<2>();
                tile::zero::<3>();
                tile::load::<5>(a_at(t0 + TILE, s), cols);
            }
            if signed {
                tile::dpbssd::<0, 4, 6>();
                tile::dpbssd::<1, 4, 7>();
                if A == 2 {
                    tile::dpbssd::<2, 5, 6>();
                    tile::dpbssd::<3, 5, 7>();
                }
            } else {
                tile::dpbsud::<0, 4, 6>();
                tile::dpbsud::<1, 4, 7>();
                if A == 2 {
                    tile::dpbsud::<2, 5, 6>();
                    tile::dpbsud::<3, 5, 7>();
                }
            }
            let c = |i: usize| sp.add(j * 4 + i) as *mut u8;
            tile::store::<0>(c(0), 64);
            tile::store::<1>(c(1), 64);
            if A == 2 {
                tile::store::<2>(c(2), 64);
                tile::store::<3>(c(3), 64);
            }
        }
        for a in 0..A {
            for (p, panel) in panels.iter().enumerate() {
                for i in 0..TILE {
                    let row = (a * TILE + i) * 32 + p * TILE;
                    let t = t0 + a * TILE + i;
                    let tile_row =
                        |j: usize| (sp.add(j * 4 + a * 2 + p) as *const i32).add(i * TILE);
                    if kquant {
                        kquant_steps(
                            dtype,
                            acts,
                            panel,
                            t,
                            c0,
                            ns,
                            tile_row,
                            &mut iacc.0[row..],
                            &mut acc.0[row..],
                        );
                    } else {
                        block_steps(dtype, acts, panel, t, c0, ns, tile_row, &mut acc.0[row..]);
                    }
                }
            }
        }
    }
    for a in 0..A {
        for i in 0..TILE {
            let t = t0 + a * TILE + i;
            if t >= acts.tokens {
                break;
            }
            for r in 0..(2 * TILE).min(n.saturating_sub(r0)) {
                let v = acc.0[(a * TILE + i) * 32 + r];
                // The K-quants: the GEMV's `hsum(lanes) + acc` with its lanes at zero.
                out[t * n + r0 + r] = if kquant { 0.0 + v } else { v };
            }
        }
    }
}

/// The 32-value types' scale steps of blocks `c0..c0 + ns` for token `t` and the 16 rows of
/// `panel`: `acc = fma(d_w d_x, isum, acc)`, and Q4_1's `acc = fma(m, d_x sum(q_x), acc)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block_steps(
    dtype: GgmlDType,
    acts: &AmxActivations,
    panel: &Panel,
    t: usize,
    c0: usize,
    ns: usize,
    tile_row: impl Fn(usize) -> *const i32,
    acc: &mut [f32],
) {
    let blocks = acts.cols / 32;
    let mut v = _mm512_loadu_ps(acc.as_ptr());
    for j in 0..ns {
        let b = c0 + j;
        let isum = _mm512_cvtepi32_ps(_mm512_load_si512(tile_row(j) as *const _));
        let dx = _mm512_set1_ps(*acts.d.get_unchecked(t * blocks + b));
        let scale = _mm512_mul_ps(_mm512_loadu_ps(panel.f.as_ptr().add(at::d32(b))), dx);
        v = _mm512_fmadd_ps(scale, isum, v);
        if dtype == GgmlDType::Q4_1 {
            let m = _mm512_loadu_ps(panel.f.as_ptr().add(at::m32(blocks, b)));
            v = _mm512_fmadd_ps(
                m,
                _mm512_set1_ps(*acts.dsum.get_unchecked(t * blocks + b)),
                v,
            );
        }
    }
    _mm512_storeu_ps(acc.as_mut_ptr(), v);
}

/// The K-quants' steps `c0..c0 + ns` (inside one super-block) for token `t` and the 16 rows of
/// `panel`: `isum += sc_j * step_j` in i32, and at the super-block's last step its f32 value
/// (the GEMV's `min_value` or `scaled_value`) added to `acc`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn kquant_steps(
    dtype: GgmlDType,
    acts: &AmxActivations,
    panel: &Panel,
    t: usize,
    c0: usize,
    ns: usize,
    tile_row: impl Fn(usize) -> *const i32,
    iacc: &mut [i32],
    acc: &mut [f32],
) {
    let per_sb = 256 / step(dtype);
    let sbs = acts.cols / 256;
    let sb = c0 / per_sb;
    let mut iv = if c0.is_multiple_of(per_sb) {
        _mm512_setzero_si512()
    } else {
        _mm512_loadu_si512(iacc.as_ptr() as *const _)
    };
    for j in 0..ns {
        let sc = _mm512_loadu_si512(
            panel.i.as_ptr().add(at::sc(per_sb, sb, (c0 + j) % per_sb)) as *const _
        );
        iv = _mm512_add_epi32(
            iv,
            _mm512_mullo_epi32(sc, _mm512_load_si512(tile_row(j) as *const _)),
        );
    }
    if !(c0 + ns).is_multiple_of(per_sb) {
        _mm512_storeu_si512(iacc.as_mut_ptr() as *mut _, iv);
        return;
    }
    // The activation group sums weighed by the mins (Q4_K) or scales (Q6_K), as i16 pairs.
    let pairs = acts.pairs.as_ptr().add(t * acts.cols / 32 + sb * 8);
    let (mut even, mut odd) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for p in (0..8).step_by(2) {
        let w = |p: usize| {
            _mm512_loadu_si512(panel.i.as_ptr().add(at::pair(sbs, per_sb, sb, p)) as *const _)
        };
        even = _mm512_dpwssd_epi32(even, _mm512_set1_epi32(*pairs.add(p)), w(p));
        odd = _mm512_dpwssd_epi32(odd, _mm512_set1_epi32(*pairs.add(p + 1)), w(p + 1));
    }
    let psum = _mm512_add_epi32(even, odd);
    let dx = _mm512_set1_ps(*acts.d.get_unchecked(t * sbs + sb));
    let d = _mm512_mul_ps(_mm512_loadu_ps(panel.f.as_ptr().add(at::dk(sb))), dx);
    let v = if dtype == GgmlDType::Q4K {
        let dmin = _mm512_mul_ps(_mm512_loadu_ps(panel.f.as_ptr().add(at::dmin(sbs, sb))), dx);
        _mm512_sub_ps(
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(iv)),
            _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(psum)),
        )
    } else {
        _mm512_mul_ps(
            d,
            _mm512_cvtepi32_ps(_mm512_sub_epi32(iv, _mm512_slli_epi32::<5>(psum))),
        )
    };
    _mm512_storeu_ps(
        acc.as_mut_ptr(),
        _mm512_add_ps(_mm512_loadu_ps(acc.as_ptr()), v),
    );
}

/// [`Panel::pack`] with AVX-512: each B row of a block is one gather of a dword from each of
/// the 16 rows (masked past the matrix), split into nibbles or bit fields in place.
#[inline(always)]
unsafe fn pack(
    dtype: GgmlDType,
    rows: &[u8],
    row_bytes: usize,
    r0: usize,
    cols: usize,
    panel: &mut Panel,
) {
    panel.resize(dtype, cols);
    let n_rows = (rows.len() / row_bytes).saturating_sub(r0).min(TILE);
    if n_rows == 0 {
        panel.q.fill(0);
        panel.f.fill(0.0);
        panel.i.fill(0);
        return;
    }
    let base = rows.as_ptr().add(r0 * row_bytes);
    let mask: __mmask16 = ((1u32 << n_rows) - 1) as __mmask16;
    let idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(row_bytes as i32),
    );
    let gather = |off: usize| {
        _mm512_mask_i32gather_epi32::<1>(
            _mm512_setzero_si512(),
            mask,
            idx,
            base.add(off) as *const _,
        )
    };
    let q = panel.q.as_mut_ptr();
    let put = |brow: usize, v: __m512i| _mm512_storeu_si512(q.add(brow * 64) as *mut _, v);
    let nib = _mm512_set1_epi8(0x0f);
    let low = |v: __m512i| _mm512_and_si512(v, nib);
    let high = |v: __m512i| _mm512_and_si512(_mm512_srli_epi32::<4>(v), nib);
    // Low 16 bits of each dword as f16 -> 16 f32.
    let f16s = |v: __m512i| _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
    let (elems, size) = match dtype {
        GgmlDType::Q4_0 => (32, 18),
        GgmlDType::Q4_1 => (32, 20),
        GgmlDType::Q8_0 => (32, 34),
        GgmlDType::Q4K => (256, 144),
        _ => (256, 210),
    };
    let blocks = cols / elems;
    let f = panel.f.as_mut_ptr();
    for b in 0..blocks {
        let blk = b * size;
        match dtype {
            GgmlDType::Q4_0 | GgmlDType::Q4_1 => {
                let (qs, eight) = (
                    if dtype == GgmlDType::Q4_0 { 2 } else { 4 },
                    _mm512_set1_epi8(8),
                );
                for kk in 0..4 {
                    let g = gather(blk + qs + 4 * kk);
                    let (lo, hi) = if dtype == GgmlDType::Q4_0 {
                        (
                            _mm512_sub_epi8(low(g), eight),
                            _mm512_sub_epi8(high(g), eight),
                        )
                    } else {
                        (low(g), high(g))
                    };
                    put(b * 8 + kk, lo);
                    put(b * 8 + 4 + kk, hi);
                }
                let dm = gather(blk);
                _mm512_storeu_ps(f.add(at::d32(b)), f16s(dm));
                if dtype == GgmlDType::Q4_1 {
                    _mm512_storeu_ps(f.add(at::m32(blocks, b)), f16s(_mm512_srli_epi32::<16>(dm)));
                }
            }
            GgmlDType::Q8_0 => {
                for kk in 0..8 {
                    put(b * 8 + kk, gather(blk + 2 + 4 * kk));
                }
                _mm512_storeu_ps(f.add(at::d32(b)), f16s(gather(blk)));
            }
            GgmlDType::Q4K => {
                // Element c*64 + i: low nibble of qs[c*32 + i]; c*64 + 32 + i: its high one.
                for c in 0..4 {
                    for g4 in 0..8 {
                        let g = gather(blk + 16 + c * 32 + 4 * g4);
                        put(b * 64 + c * 16 + g4, low(g));
                        put(b * 64 + c * 16 + 8 + g4, high(g));
                    }
                }
                let dm = gather(blk);
                _mm512_storeu_ps(f.add(at::dk(b)), f16s(dm));
                _mm512_storeu_ps(
                    f.add(at::dmin(blocks, b)),
                    f16s(_mm512_srli_epi32::<16>(dm)),
                );
                for n in 0..n_rows {
                    let (sc, mn) = k_scale_min(std::slice::from_raw_parts(
                        base.add(n * row_bytes + blk + 4),
                        12,
                    ));
                    for j in 0..8 {
                        panel.i[at::sc(8, b, j) + n] = i32::from(sc[j]);
                        panel.i[at::pair(blocks, 8, b, j) + n] = i32::from(mn[j]) * 0x1_0001;
                    }
                }
                zero_scales_past(panel, n_rows, dtype, blocks, b);
            }
            _ => {
                // Q6_K element h*128 + j*32 + l: nibble j/2 of ql[h*64 + (j%2)*32 + l], bits 2j
                // of qh[h*32 + l] as bits 4-5.
                let three = _mm512_set1_epi8(3);
                for h in 0..2 {
                    for l4 in 0..8 {
                        let ql0 = gather(blk + h * 64 + 4 * l4);
                        let ql1 = gather(blk + h * 64 + 32 + 4 * l4);
                        let qh = gather(blk + 128 + h * 32 + 4 * l4);
                        let hi2 = |j: u32| {
                            let bits = _mm512_and_si512(
                                _mm512_srlv_epi32(qh, _mm512_set1_epi32(2 * j as i32)),
                                three,
                            );
                            _mm512_slli_epi32::<4>(bits)
                        };
                        let lows = [low(ql0), low(ql1), high(ql0), high(ql1)];
                        for (j, lo) in lows.into_iter().enumerate() {
                            put(
                                b * 64 + h * 32 + j * 8 + l4,
                                _mm512_or_si512(lo, hi2(j as u32)),
                            );
                        }
                    }
                }
                // `d` is the block's last 2 bytes: the high half of the dword before them.
                let d = _mm512_srli_epi32::<16>(gather(blk + 206));
                _mm512_storeu_ps(f.add(at::dk(b)), f16s(d));
                for n in 0..n_rows {
                    let s = base.add(n * row_bytes + blk + 192) as *const i8;
                    panel.put_q6k_scales(blocks, b, n, |g| i32::from(*s.add(g)));
                }
                zero_scales_past(panel, n_rows, dtype, blocks, b);
            }
        }
    }
}

/// Zeros the i32 scale terms of super-block `b` for panel rows `n_rows..16` (past the matrix;
/// the panel is reused, so they may hold an earlier matrix's).
#[inline(always)]
fn zero_scales_past(panel: &mut Panel, n_rows: usize, dtype: GgmlDType, sbs: usize, b: usize) {
    if n_rows == TILE {
        return;
    }
    let steps = if dtype == GgmlDType::Q4K { 8 } else { 16 };
    for n in n_rows..TILE {
        for j in 0..steps {
            panel.i[at::sc(steps, b, j) + n] = 0;
        }
        for p in 0..8 {
            panel.i[at::pair(sbs, steps, b, p) + n] = 0;
        }
    }
}

//! f32 products on AMX-BF16 as three bf16 products, for the encoder's projections.
//!
//! AMX multiplies bf16 pairs into f32 about ten times faster than AVX-512 FMA multiplies f32
//! (runtime/amx.rs), but a bf16 keeps 8 bits of mantissa, so a plain bf16 encoder would move
//! every vector by ~1e-3 and with it the risk screen's calibrated scores. Each f32 value `v` is
//! split into `hi = bf16(v)` and `lo = bf16(v - hi)` (v - hi is exact in f32), and
//! `x . w ~ hi(x) hi(w) + hi(x) lo(w) + lo(x) hi(w)`: every bf16 product is exact in f32, and what
//! is dropped (`lo . lo` and lo's own rounding) is about 2^-16 of each term, so a vector moves by
//! ~1e-6 (measured in the tests below and in tests/encoder.rs) instead of ~1e-3.
//!
//! Weights `[out, in]` are split once, into panels of 16 output columns in the tile layout B
//! wants (k pairs side by side); activations are split per product. Tiles: C0, C1 (two 16x16
//! f32 accumulators side by side), hi/lo of 16 activation rows, hi/lo of the two weight panels.

use rayon::prelude::*;

use crate::runtime::amx::{self, vnni_offset_bf16, TileConfig};

/// Output columns per tile, and per pair of accumulators.
const TILE_N: usize = 16;
const PAIR_N: usize = 2 * TILE_N;
/// Rows per tile and k per tile product (32 bf16 = 64 bytes per row).
const TILE_M: usize = 16;
const TILE_K: usize = 32;

/// Multiply-adds (of the f32 product) from which column pairs are spread over the rayon pool:
/// below it one thread finishes before a second would have woken.
const PARALLEL_MACS: usize = 1 << 24;

/// bf16 bits of `v`, rounded to nearest even (as `vcvtneps2bf16`; no NaN occurs here).
#[inline(always)]
fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// Splits `v` into bf16 `hi + lo`.
#[inline(always)]
fn split(v: f32) -> (u16, u16) {
    let hi = bf16_bits(v);
    (hi, bf16_bits(v - f32::from_bits(u32::from(hi) << 16)))
}

/// Splits the `rows x k` values of `x` into `hi` and `lo` rows of `k_pad` (padding untouched).
#[inline(always)]
fn split_rows_plain(x: &[f32], k: usize, k_pad: usize, hi: &mut [u16], lo: &mut [u16]) {
    let rows = x
        .chunks_exact(k)
        .zip(hi.chunks_exact_mut(k_pad))
        .zip(lo.chunks_exact_mut(k_pad));
    for ((row, h), l) in rows {
        for ((v, h), l) in row.iter().zip(&mut h[..k]).zip(&mut l[..k]) {
            (*h, *l) = split(*v);
        }
    }
}

/// [`split_rows_plain`] compiled for AVX-512, which the compiler vectorises the loop with.
///
/// # Safety
/// The CPU must have AVX-512F (every AMX CPU has).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_rows(x: &[f32], k: usize, k_pad: usize, hi: &mut [u16], lo: &mut [u16]) {
    split_rows_plain(x, k, k_pad, hi, lo)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn split_rows(x: &[f32], k: usize, k_pad: usize, hi: &mut [u16], lo: &mut [u16]) {
    split_rows_plain(x, k, k_pad, hi, lo)
}

/// A pointer to the accumulator rows that column-pair tasks share: each writes only its own
/// 32 columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint columns (see `matmul_add`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Through a method, so that closures capture the `Sync` wrapper, not the raw pointer.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// A weight matrix `W [n, k]` split into bf16 panels, for `y += x Wᵀ`.
pub struct SplitBf16Weights {
    n: usize,
    k: usize,
    k_pad: usize,
    n_pad: usize,
    /// `n_pad / 16` panels of `k_pad / 2` rows of 16 k pairs, for the high and low parts.
    hi: Vec<u16>,
    lo: Vec<u16>,
}

impl SplitBf16Weights {
    /// `None` when this process may not use AMX-BF16 (callers keep their f32 path).
    pub fn new(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if !amx::support().bf16 || w.len() != n * k || n == 0 || k == 0 {
            return None;
        }
        let k_pad = k.div_ceil(TILE_K) * TILE_K;
        let n_pad = n.div_ceil(PAIR_N) * PAIR_N;
        let panel = k_pad * TILE_N;
        let (mut hi, mut lo) = (vec![0u16; n_pad * k_pad], vec![0u16; n_pad * k_pad]);
        for (o, row) in w.chunks_exact(k).enumerate() {
            let base = (o / TILE_N) * panel;
            for (i, &v) in row.iter().enumerate() {
                let at = base + vnni_offset_bf16(i, o % TILE_N, TILE_N);
                (hi[at], lo[at]) = split(v);
            }
        }
        Some(Self {
            n,
            k,
            k_pad,
            n_pad,
            hi,
            lo,
        })
    }

    /// `out [rows, n] += x [rows, k] Wᵀ`.
    pub fn matmul_add(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        let (n, k, k_pad, n_pad) = (self.n, self.k, self.k_pad, self.n_pad);
        assert!(
            x.len() == rows * k && out.len() == rows * n,
            "split bf16 product shapes"
        );
        if rows == 0 {
            return;
        }
        let m_pad = rows.div_ceil(TILE_M) * TILE_M;
        let (mut xh, mut xl) = (vec![0u16; m_pad * k_pad], vec![0u16; m_pad * k_pad]);
        // SAFETY: AMX-BF16 (checked in `new`) comes with AVX-512F.
        unsafe { split_rows(x, k, k_pad, &mut xh, &mut xl) };
        // The tiles accumulate onto `out` itself when it has the padded shape, else onto a
        // padded copy.
        let padded = n != n_pad || rows != m_pad;
        let mut acc = if padded {
            let mut acc = vec![0.0f32; m_pad * n_pad];
            for (a, o) in acc.chunks_exact_mut(n_pad).zip(out.chunks_exact(n)) {
                a[..n].copy_from_slice(o);
            }
            acc
        } else {
            Vec::new()
        };
        let target = SharedOut(if padded {
            acc.as_mut_ptr()
        } else {
            out.as_mut_ptr()
        });
        let pair = |p: usize| {
            // SAFETY: `support().bf16` was checked in `new`; tile reads stay inside `xh`/`xl`
            // (m_pad x k_pad) and the panels; each task reads and writes only columns
            // 32p..32p+32 of the m_pad x n_pad accumulator.
            unsafe { self.pair_product(&xh, &xl, m_pad, p, target.ptr()) };
        };
        let pairs = n_pad / PAIR_N;
        if rows * n * k >= PARALLEL_MACS && !psy_core::semantic::this_thread_only() {
            (0..pairs).into_par_iter().for_each(pair);
        } else {
            (0..pairs).for_each(pair);
        }
        if padded {
            for (o, a) in out.chunks_exact_mut(n).zip(acc.chunks_exact(n_pad)) {
                o.copy_from_slice(&a[..n]);
            }
        }
    }

    /// Columns `32 p .. 32 p + 32` of `acc [m_pad, n_pad] += x Wᵀ`, for all `m_pad` rows.
    #[cfg(target_arch = "x86_64")]
    unsafe fn pair_product(&self, xh: &[u16], xl: &[u16], m_pad: usize, p: usize, acc: *mut f32) {
        use amx::tile;
        let k_pad = self.k_pad;
        let panel = k_pad * TILE_N;
        let config = (0..8).fold(TileConfig::default(), |c, t| c.with_tile(t, 16, 64));
        config.load();
        let row_bytes = k_pad * 2;
        let acc_bytes = self.n_pad * 4;
        let (bh0, bl0) = (
            self.hi.as_ptr().add(2 * p * panel),
            self.lo.as_ptr().add(2 * p * panel),
        );
        let (bh1, bl1) = (bh0.add(panel), bl0.add(panel));
        for m0 in (0..m_pad).step_by(TILE_M) {
            let c = acc.add(m0 * self.n_pad + p * PAIR_N) as *mut u8;
            tile::load::<0>(c, acc_bytes);
            tile::load::<1>(c.add(TILE_N * 4), acc_bytes);
            for k0 in (0..k_pad).step_by(TILE_K) {
                let a = m0 * k_pad + k0;
                let b = (k0 / 2) * (2 * TILE_N); // rows of 16 k pairs
                tile::load::<2>(xh.as_ptr().add(a) as *const u8, row_bytes);
                tile::load::<3>(xl.as_ptr().add(a) as *const u8, row_bytes);
                tile::load::<4>(bh0.add(b) as *const u8, 64);
                tile::load::<5>(bl0.add(b) as *const u8, 64);
                tile::load::<6>(bh1.add(b) as *const u8, 64);
                tile::load::<7>(bl1.add(b) as *const u8, 64);
                // Small terms first, then hi . hi.
                tile::dpbf16ps::<0, 2, 5>();
                tile::dpbf16ps::<0, 3, 4>();
                tile::dpbf16ps::<0, 2, 4>();
                tile::dpbf16ps::<1, 2, 7>();
                tile::dpbf16ps::<1, 3, 6>();
                tile::dpbf16ps::<1, 2, 6>();
            }
            tile::store::<0>(c, acc_bytes);
            tile::store::<1>(c.add(TILE_N * 4), acc_bytes);
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn pair_product(&self, _: &[u16], _: &[u16], _: usize, _: usize, _: *mut f32) {
        unreachable!("AMX support is only reported on x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: usize, salt: usize) -> f32 {
        let h = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 10_007;
        h as f32 / 10_007.0 * 2.0 - 1.0
    }

    // Ragged shapes (rows and columns not multiples of a tile, k not a multiple of 32) against
    // f64 products of the f32 inputs: the split keeps ~2^-16 of each product.
    #[test]
    fn split_products_match_f64_to_about_two_to_the_minus_sixteen() {
        for &(rows, n, k) in &[
            (1usize, 5usize, 7usize),
            (17, 33, 40),
            (40, 64, 384),
            (3, 96, 1536),
        ] {
            let w: Vec<f32> = (0..n * k).map(|i| pseudo(i, 1)).collect();
            let x: Vec<f32> = (0..rows * k).map(|i| pseudo(i, 2)).collect();
            let Some(s) = SplitBf16Weights::new(&w, n, k) else {
                eprintln!("skipped: no AMX-BF16 on this CPU/OS");
                return;
            };
            let mut out: Vec<f32> = (0..rows * n).map(|i| pseudo(i, 3)).collect();
            let before = out.clone();
            s.matmul_add(&x, rows, &mut out);
            let mut worst = 0.0f64;
            for r in 0..rows {
                for o in 0..n {
                    let want = before[r * n + o] as f64
                        + (0..k)
                            .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                            .sum::<f64>();
                    // Relative to the sum of |terms|, the scale the rounding works on.
                    let scale: f64 = (0..k)
                        .map(|i| (x[r * k + i] * w[o * k + i]).abs() as f64)
                        .sum();
                    worst = worst.max((out[r * n + o] as f64 - want).abs() / scale.max(1e-30));
                }
            }
            assert!(
                worst < 4e-5,
                "{rows}x{n}x{k}: worst relative error {worst:e}"
            );
        }
    }
}

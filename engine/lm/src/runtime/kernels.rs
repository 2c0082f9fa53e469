//! Hand-written CPU kernels: batch-1 decoding and the cross-entropy of training.
//!
//! Burn's flex backend runs a matrix-vector product single-threaded (its gemm only goes parallel
//! above ~192^3 multiply-adds), which leaves decoding at a fraction of the memory bandwidth.
//! Decoding is bandwidth-bound, so splitting the weight rows across the rayon pool and streaming
//! each row once through a SIMD dot product is what matters.

use rayon::prelude::*;

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance 2-64 cores.
const ROWS_PER_TASK: usize = 64;

/// `y[r] = dot(w[r*k .. (r+1)*k], x)` for every row `r`; `w` is row-major `[y.len(), x.len()]`.
pub fn gemv_rows(w: &[f32], x: &[f32], y: &mut [f32]) {
    let k = x.len();
    debug_assert_eq!(w.len(), k * y.len());
    y.par_chunks_mut(ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let base = chunk * ROWS_PER_TASK;
            let mut quads = out.chunks_exact_mut(4);
            let mut r = base;
            for q in &mut quads {
                q.copy_from_slice(&dot4(&w[r * k..(r + 4) * k], x));
                r += 4;
            }
            for o in quads.into_remainder() {
                *o = dot(&w[r * k..(r + 1) * k], x);
                r += 1;
            }
        });
}

/// Dot product, dispatched once per call to the widest SIMD the CPU offers.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected at run time.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Dot products of four consecutive rows (`w` is `[4, x.len()]`) with `x`: four weight
/// streams in flight per core keep more memory requests outstanding than one.
#[inline]
pub fn dot4(w: &[f32], x: &[f32]) -> [f32; 4] {
    let k = x.len();
    debug_assert_eq!(w.len(), 4 * k);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected at run time.
            return unsafe { dot4_avx2(w, x) };
        }
    }
    [
        dot_portable(&w[..k], x),
        dot_portable(&w[k..2 * k], x),
        dot_portable(&w[2 * k..3 * k], x),
        dot_portable(&w[3 * k..], x),
    ]
}

/// The 16 dot products of four rows `w` (`[4, k]`) with four activation rows `x[j]` (`k` each):
/// `out[i][j] = dot(w row i, x[j])`. Four rows times four tokens keep 16 accumulators in
/// registers and load 8 vectors per 16 multiply-adds, so small-batch products over dequantised
/// weight rows run near the FMA rate instead of the load rate of one dot at a time.
#[inline]
pub fn dot4x4(w: &[f32], x: [&[f32]; 4]) -> [[f32; 4]; 4] {
    let k = x[0].len();
    debug_assert_eq!(w.len(), 4 * k);
    debug_assert!(x.iter().all(|r| r.len() == k));
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected at run time; lengths checked above.
            return unsafe { dot4x4_avx2(w, x) };
        }
    }
    let mut out = [[0.0f32; 4]; 4];
    for (i, o) in out.iter_mut().enumerate() {
        for (j, v) in o.iter_mut().enumerate() {
            *v = dot_portable(&w[i * k..(i + 1) * k], x[j]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4x4_avx2(w: &[f32], x: [&[f32]; 4]) -> [[f32; 4]; 4] {
    use std::arch::x86_64::*;
    let k = x[0].len();
    let pw = [
        w.as_ptr(),
        w.as_ptr().add(k),
        w.as_ptr().add(2 * k),
        w.as_ptr().add(3 * k),
    ];
    let px = [x[0].as_ptr(), x[1].as_ptr(), x[2].as_ptr(), x[3].as_ptr()];
    let mut a = [[_mm256_setzero_ps(); 4]; 4];
    let mut c = 0;
    while c + 8 <= k {
        let xv = [
            _mm256_loadu_ps(px[0].add(c)),
            _mm256_loadu_ps(px[1].add(c)),
            _mm256_loadu_ps(px[2].add(c)),
            _mm256_loadu_ps(px[3].add(c)),
        ];
        for i in 0..4 {
            let wv = _mm256_loadu_ps(pw[i].add(c));
            for j in 0..4 {
                a[i][j] = _mm256_fmadd_ps(wv, xv[j], a[i][j]);
            }
        }
        c += 8;
    }
    let mut out = [[0.0f32; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            let mut s = hsum256(a[i][j]);
            for t in c..k {
                s += *pw[i].add(t) * *px[j].add(t);
            }
            out[i][j] = s;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s4 = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(w: &[f32], x: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let k = x.len();
    let px = x.as_ptr();
    let p = [
        w.as_ptr(),
        w.as_ptr().add(k),
        w.as_ptr().add(2 * k),
        w.as_ptr().add(3 * k),
    ];
    let mut a = [_mm256_setzero_ps(); 8];
    let mut i = 0;
    while i + 16 <= k {
        let x0 = _mm256_loadu_ps(px.add(i));
        let x1 = _mm256_loadu_ps(px.add(i + 8));
        for r in 0..4 {
            a[2 * r] = _mm256_fmadd_ps(_mm256_loadu_ps(p[r].add(i)), x0, a[2 * r]);
            a[2 * r + 1] = _mm256_fmadd_ps(_mm256_loadu_ps(p[r].add(i + 8)), x1, a[2 * r + 1]);
        }
        i += 16;
    }
    let mut out = [0.0f32; 4];
    for r in 0..4 {
        let mut s = hsum256(_mm256_add_ps(a[2 * r], a[2 * r + 1]));
        for j in i..k {
            s += *p[r].add(j) * *px.add(j);
        }
        out[r] = s;
    }
    out
}

/// Eight independent accumulators let the compiler vectorise without reassociation flags.
#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 16];
    let chunks = n / 16;
    for c in 0..chunks {
        let (pa, pb) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for j in 0..16 {
            acc[j] = pa[j].mul_add(pb[j], acc[j]);
        }
    }
    let mut tail = 0.0f32;
    for j in chunks * 16..n {
        tail += a[j] * b[j];
    }
    let mut s = 0.0f32;
    for v in acc {
        s += v;
    }
    s + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 8)),
            _mm256_loadu_ps(pb.add(i + 8)),
            acc1,
        );
        acc2 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 16)),
            _mm256_loadu_ps(pb.add(i + 16)),
            acc2,
        );
        acc3 = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i + 24)),
            _mm256_loadu_ps(pb.add(i + 24)),
            acc3,
        );
        i += 32;
    }
    while i + 8 <= n {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        i += 8;
    }
    let acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    let hi = _mm256_extractf128_ps(acc, 1);
    let lo = _mm256_castps256_ps128(acc);
    let s4 = _mm_add_ps(hi, lo);
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    let mut s = _mm_cvtss_f32(s1);
    while i < n {
        s += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    s
}

/// Vocabulary rows per rayon task in [`xent_columns`]: a block of `[256, 128]` logits (128 KiB)
/// stays in cache between its two passes.
const XENT_BLOCK_ROWS: usize = 256;

/// Weighted cross-entropy of logit columns, and its gradient in place.
///
/// `z` is `[vocab, cols]` row-major: column `c` holds the logits of one token (the layout of
/// `W x^T`, which lets GEMM pack the large head weight in parallel). Returns each column's
/// `weight * (logsumexp(z) - z[target])`; with `grad`, each column is overwritten with the
/// gradient of that value, `weight * (softmax(z) - onehot(target))`.
///
/// Blocks of vocabulary rows run across the rayon pool (Burn's flex element-wise ops are
/// single-threaded): each block keeps `exp(z - block max)` and its per-column sums, the blocks
/// are merged in order (so the result does not depend on scheduling), and the gradient pass only
/// rescales. One `exp` per logit.
pub fn xent_columns(
    z: &mut [f32],
    cols: usize,
    targets: &[usize],
    weights: &[f32],
    grad: bool,
) -> Vec<f64> {
    assert_eq!(targets.len(), cols, "one target per column");
    assert_eq!(weights.len(), cols, "one weight per column");
    assert!(
        cols > 0 && z.len().is_multiple_of(cols),
        "logits are not [vocab, cols]"
    );
    let vocab = z.len() / cols;
    let picked: Vec<f32> = targets
        .iter()
        .enumerate()
        .map(|(c, &t)| {
            assert!(t < vocab, "target {t} outside the vocabulary ({vocab})");
            z[t * cols + c]
        })
        .collect();
    // Pass 1, per block: column maxima, then exp(z - max) in place and its column sums.
    let blocks: Vec<(Vec<f32>, Vec<f64>)> = z
        .par_chunks_mut(XENT_BLOCK_ROWS * cols)
        .map(|block| {
            let mut max = vec![f32::NEG_INFINITY; cols];
            for row in block.chunks_exact(cols) {
                for (m, &x) in max.iter_mut().zip(row) {
                    *m = m.max(x);
                }
            }
            let mut sum = vec![0.0f64; cols];
            for row in block.chunks_exact_mut(cols) {
                for ((x, &m), s) in row.iter_mut().zip(&max).zip(sum.iter_mut()) {
                    *x = (*x - m).exp();
                    *s += f64::from(*x);
                }
            }
            (max, sum)
        })
        .collect();
    // Merge the blocks in order: global max and sum of every column.
    let mut max = vec![f32::NEG_INFINITY; cols];
    for (m, _) in &blocks {
        for (g, &b) in max.iter_mut().zip(m) {
            *g = g.max(b);
        }
    }
    let mut sum = vec![0.0f64; cols];
    for (m, s) in &blocks {
        for c in 0..cols {
            sum[c] += s[c] * f64::from(m[c] - max[c]).exp();
        }
    }
    let losses: Vec<f64> = (0..cols)
        .map(|c| {
            let lse = f64::from(max[c]) + sum[c].ln();
            f64::from(weights[c]) * (lse - f64::from(picked[c]))
        })
        .collect();
    if grad {
        // Pass 2: softmax * weight = exp(z - block max) * weight * exp(block max - max) / sum.
        z.par_chunks_mut(XENT_BLOCK_ROWS * cols)
            .zip(&blocks)
            .for_each(|(block, (bmax, _))| {
                let scale: Vec<f32> = (0..cols)
                    .map(|c| {
                        (f64::from(weights[c]) * f64::from(bmax[c] - max[c]).exp() / sum[c]) as f32
                    })
                    .collect();
                for row in block.chunks_exact_mut(cols) {
                    for (x, &k) in row.iter_mut().zip(&scale) {
                        *x *= k;
                    }
                }
            });
        for (c, &t) in targets.iter().enumerate() {
            z[t * cols + c] -= weights[c];
        }
    }
    losses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_matches_naive() {
        let (rows, k) = (130, 77);
        let w: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let x: Vec<f32> = (0..k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect();
        let mut y = vec![0.0; rows];
        gemv_rows(&w, &x, &mut y);
        for r in 0..rows {
            let naive: f32 = (0..k).map(|j| w[r * k + j] * x[j]).sum();
            assert!((naive - y[r]).abs() < 1e-4, "row {r}: {naive} vs {}", y[r]);
        }
    }

    #[test]
    fn dot4x4_matches_naive() {
        let k = 83; // ten full vectors and a tail
        let w: Vec<f32> = (0..4 * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let xs: Vec<Vec<f32>> = (0..4)
            .map(|j| {
                (0..k)
                    .map(|i| ((i * 13 + j * 7) % 17) as f32 / 8.0 - 1.0)
                    .collect()
            })
            .collect();
        let out = dot4x4(&w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
        for i in 0..4 {
            for j in 0..4 {
                let naive: f32 = (0..k).map(|c| w[i * k + c] * xs[j][c]).sum();
                assert!((naive - out[i][j]).abs() < 1e-4, "{i},{j}");
            }
        }
    }

    #[test]
    fn xent_matches_hand_computed() {
        // Column 0 = [0, ln 2, ln 3], target 2, weight 0.5: p = [1/6, 2/6, 3/6],
        // loss = -0.5 ln(1/2). Column 1 = [1, 1, 1], target 0, weight 2: loss = 2 ln 3.
        let (a, b) = (2f32.ln(), 3f32.ln());
        let mut z = vec![0.0, 1.0, a, 1.0, b, 1.0];
        let losses = xent_columns(&mut z, 2, &[2, 0], &[0.5, 2.0], true);
        assert!((losses[0] - 0.5 * 2f64.ln()).abs() < 1e-6, "{}", losses[0]);
        assert!((losses[1] - 2.0 * 3f64.ln()).abs() < 1e-6, "{}", losses[1]);
        let want = [
            0.5 / 6.0,
            2.0 * (1.0 / 3.0 - 1.0),
            0.5 * 2.0 / 6.0,
            2.0 / 3.0,
            0.5 * (3.0 / 6.0 - 1.0),
            2.0 / 3.0,
        ];
        for (g, w) in z.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{z:?}");
        }
    }

    /// Several row blocks (merged across blocks) against a direct f64 computation.
    #[test]
    fn xent_blocks_merge_exactly() {
        let (vocab, cols) = (3 * XENT_BLOCK_ROWS + 17, 5);
        let z: Vec<f32> = (0..vocab * cols)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * 20.0)
            .collect();
        let targets = [0, vocab - 1, 300, 5, 777];
        let weights = [1.0, 0.25, 2.0, 1.0, 0.5];
        let mut g = z.clone();
        let losses = xent_columns(&mut g, cols, &targets, &weights, true);
        for c in 0..cols {
            let col: Vec<f64> = (0..vocab).map(|v| f64::from(z[v * cols + c])).collect();
            let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = col.iter().map(|x| (x - m).exp()).sum();
            let w = f64::from(weights[c]);
            let want = w * (m + s.ln() - col[targets[c]]);
            assert!(
                (losses[c] - want).abs() < 1e-9 * want.abs().max(1.0),
                "col {c}"
            );
            for v in 0..vocab {
                let p = (col[v] - m).exp() / s;
                let want = w * (p - if v == targets[c] { 1.0 } else { 0.0 });
                let got = f64::from(g[v * cols + c]);
                assert!(
                    (got - want).abs() < 1e-6,
                    "col {c} row {v}: {got} vs {want}"
                );
            }
        }
    }
}

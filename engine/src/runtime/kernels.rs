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

/// Rows of logits per rayon task in [`xent_rows`].
const XENT_ROWS_PER_TASK: usize = 4;

/// Weighted cross-entropy of logit rows, and its gradient in place.
///
/// `z` holds `targets.len()` rows of `vocab` logits. Returns each row's
/// `weight * (logsumexp(z) - z[target])`; with `grad`, each row is overwritten with the gradient
/// of that value, `weight * (softmax(z) - onehot(target))`. Rows are independent, so they run
/// across the rayon pool (Burn's flex element-wise ops are single-threaded), and each row costs
/// one `exp` per logit: `exp(z - max)` is kept and rescaled.
pub fn xent_rows(
    z: &mut [f32],
    vocab: usize,
    targets: &[usize],
    weights: &[f32],
    grad: bool,
) -> Vec<f64> {
    assert_eq!(
        z.len(),
        vocab * targets.len(),
        "logit rows and targets disagree"
    );
    assert_eq!(targets.len(), weights.len(), "targets and weights disagree");
    let mut out = vec![0.0f64; targets.len()];
    z.par_chunks_mut(vocab * XENT_ROWS_PER_TASK)
        .zip(out.par_chunks_mut(XENT_ROWS_PER_TASK))
        .enumerate()
        .for_each(|(task, (rows, losses))| {
            for (i, (row, loss)) in rows.chunks_exact_mut(vocab).zip(losses).enumerate() {
                let r = task * XENT_ROWS_PER_TASK + i;
                *loss = xent_row(row, targets[r], weights[r], grad);
            }
        });
    out
}

fn xent_row(row: &mut [f32], target: usize, weight: f32, grad: bool) -> f64 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let picked = row[target];
    let mut sum = 0.0f64;
    if grad {
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum += f64::from(*x);
        }
    } else {
        for &x in row.iter() {
            sum += f64::from((x - max).exp());
        }
    }
    let lse = f64::from(max) + sum.ln();
    if grad {
        let scale = (f64::from(weight) / sum) as f32;
        for x in row.iter_mut() {
            *x *= scale;
        }
        row[target] -= weight;
    }
    f64::from(weight) * (lse - f64::from(picked))
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
    fn xent_matches_hand_computed() {
        // Row [0, ln 2, ln 3], target 2, weight 0.5: p = [1/6, 2/6, 3/6], loss = -0.5 ln(1/2).
        let (a, b) = (2f32.ln(), 3f32.ln());
        let mut z = vec![0.0, a, b, 1.0, 1.0, 1.0];
        let losses = xent_rows(&mut z, 3, &[2, 0], &[0.5, 2.0], true);
        assert!((losses[0] - 0.5 * 2f64.ln()).abs() < 1e-6, "{}", losses[0]);
        assert!((losses[1] - 2.0 * 3f64.ln()).abs() < 1e-6, "{}", losses[1]);
        let want = [
            0.5 / 6.0,
            0.5 * 2.0 / 6.0,
            0.5 * (3.0 / 6.0 - 1.0),
            2.0 * (1.0 / 3.0 - 1.0),
            2.0 / 3.0,
            2.0 / 3.0,
        ];
        for (g, w) in z.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{z:?}");
        }
        // Without `grad` the logits stay as they were.
        let mut z = vec![0.0, a, b];
        let l = xent_rows(&mut z, 3, &[2], &[0.5], false);
        assert!((l[0] - 0.5 * 2f64.ln()).abs() < 1e-6);
        assert_eq!(z, vec![0.0, a, b]);
    }
}

//! Hand-written CPU kernels for batch-1 decoding.
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
}

//! Attention of the query heads of one grouped-query group over cached keys and values, a span
//! of positions at a time: each span gives a partial softmax (per head the span's largest score,
//! the sum of its exponentials and the unnormalised weighted sum of its values), and the spans'
//! partials merge into the attention over all of them.
//!
//! The heads of a group read the same keys and values, so one pass over a span serves them all
//! while it sits in L1; spans let one sequence's attention split across threads (a model with
//! three key/value heads, SmolLM2's, has only three groups for two or more cores). The span
//! boundaries are fixed ([`SPAN`] positions from 0), so the result does not depend on how many
//! threads run the spans, nor on whether they run in parallel ([`attend_group`]) or not.

use super::silu_mul::exp_nonpositive;

/// Positions per span: 128 keys and 128 values of 64 floats are 64 KiB, the scores of eight
/// heads 4 KiB.
pub(crate) const SPAN: usize = 128;

/// Floats of one span's partial for `n_rep` heads of size `d`: the `n_rep * d` unnormalised
/// outputs, then `n_rep` maxima, then `n_rep` sums.
pub(crate) fn partial_len(n_rep: usize, d: usize) -> usize {
    n_rep * (d + 2)
}

/// The partial softmax attention of the `n_rep` query heads `qs` (`[n_rep, d]`, already rotated)
/// over one span's `keys` and `values` (`[t, d]` each, `t >= 1`) into `partial`
/// ([`partial_len`]): scores `q . k * scale`, per head their maximum `m`, `sum exp(s - m)` and
/// `sum exp(s - m) v`. `scores` is scratch.
pub(crate) fn span_partial(
    qs: &[f32],
    keys: &[f32],
    values: &[f32],
    d: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    partial: &mut [f32],
) {
    let n_rep = qs.len() / d;
    let t = keys.len() / d;
    debug_assert!(t >= 1 && values.len() == t * d && qs.len() == n_rep * d);
    debug_assert_eq!(partial.len(), partial_len(n_rep, d));
    scores.resize(n_rep * t, 0.0);
    let (out, stats) = partial.split_at_mut(n_rep * d);
    let (maxima, sums) = stats.split_at_mut(n_rep);
    for h in 0..n_rep {
        let s = &mut scores[h * t..(h + 1) * t];
        span_scores(&qs[h * d..(h + 1) * d], keys, d, scale, s);
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in s.iter_mut() {
            *x -= max;
        }
        // The exponentials 16 at a time (`f32::exp`'s bits), summed in position order.
        exp_nonpositive(s);
        let sum = s.iter().fold(0.0f32, |a, x| a + x);
        maxima[h] = max;
        sums[h] = sum;
    }
    for h in 0..n_rep {
        weighted_sum(
            &scores[h * t..(h + 1) * t],
            values,
            &mut out[h * d..(h + 1) * d],
        );
    }
}

/// The attention of one group's heads from its spans' partials (`[spans, partial_len]`, in
/// position order): each span's sums scaled by `exp(m_span - m)` for the overall maximum `m`,
/// added in span order, and the output divided by the total. `out` is `[n_rep, d]`.
pub(crate) fn merge_spans(partials: &[f32], n_rep: usize, d: usize, out: &mut [f32]) {
    let len = partial_len(n_rep, d);
    debug_assert!(!partials.is_empty() && partials.len().is_multiple_of(len));
    debug_assert_eq!(out.len(), n_rep * d);
    for h in 0..n_rep {
        let max_of = |p: &[f32]| p[n_rep * d + h];
        let max = partials
            .chunks_exact(len)
            .map(max_of)
            .fold(f32::NEG_INFINITY, f32::max);
        let oh = &mut out[h * d..(h + 1) * d];
        oh.fill(0.0);
        let mut total = 0.0f32;
        for p in partials.chunks_exact(len) {
            let w = (max_of(p) - max).exp();
            total += w * p[n_rep * d + n_rep + h];
            for (o, x) in oh.iter_mut().zip(&p[h * d..(h + 1) * d]) {
                *o += w * x;
            }
        }
        let inv = 1.0 / total;
        for o in oh.iter_mut() {
            *o *= inv;
        }
    }
}

/// Number of spans covering `t` positions.
pub(crate) fn span_count(t: usize) -> usize {
    t.div_ceil(SPAN)
}

/// The attention of the `n_rep` query heads `qs` over all `t` cached `keys` and `values`
/// (`[t, d]` each), span after span on this thread, into `out` (`[n_rep, d]`): the same values
/// as the spans run in parallel and merged by [`merge_spans`]. `scores` and `partials` are
/// scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_group(
    qs: &[f32],
    keys: &[f32],
    values: &[f32],
    d: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    partials: &mut Vec<f32>,
    out: &mut [f32],
) {
    let n_rep = qs.len() / d;
    let t = keys.len() / d;
    let len = partial_len(n_rep, d);
    partials.resize(span_count(t) * len, 0.0);
    for (i, p) in partials.chunks_exact_mut(len).enumerate() {
        let span = i * SPAN * d..((i + 1) * SPAN).min(t) * d;
        span_partial(qs, &keys[span.clone()], &values[span], d, scale, scores, p);
    }
    merge_spans(partials, n_rep, d, out);
}

/// `s[j] = dot(q, keys[j]) * scale` for every key row.
fn span_scores(q: &[f32], keys: &[f32], d: usize, scale: f32, s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if d.is_multiple_of(8)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected at run time; d is a multiple of 8.
            return unsafe { span_scores_avx2(q, keys, d, scale, s) };
        }
    }
    span_scores_portable(q, keys, d, scale, s)
}

fn span_scores_portable(q: &[f32], keys: &[f32], d: usize, scale: f32, s: &mut [f32]) {
    for (x, k) in s.iter_mut().zip(keys.chunks_exact(d)) {
        *x = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
}

/// `out = sum_j w[j] * values[j]` over the value rows.
fn weighted_sum(w: &[f32], values: &[f32], out: &mut [f32]) {
    let d = out.len();
    #[cfg(target_arch = "x86_64")]
    {
        if d.is_multiple_of(64)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected at run time; d is a multiple of 64.
            return unsafe { weighted_sum_avx2(w, values, out) };
        }
    }
    weighted_sum_portable(w, values, out)
}

fn weighted_sum_portable(w: &[f32], values: &[f32], out: &mut [f32]) {
    let d = out.len();
    out.fill(0.0);
    for (&wj, v) in w.iter().zip(values.chunks_exact(d)) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += wj * x;
        }
    }
}

/// Eight keys at a time: eight accumulators keep the FMA units busy (one dot product alone waits
/// on its own additions), and one transpose-and-add reduces all eight at once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn span_scores_avx2(q: &[f32], keys: &[f32], d: usize, scale: f32, s: &mut [f32]) {
    use std::arch::x86_64::*;
    let t = s.len();
    debug_assert!(keys.len() >= t * d && q.len() == d && d.is_multiple_of(8));
    let (pq, pk) = (q.as_ptr(), keys.as_ptr());
    let vscale = _mm256_set1_ps(scale);
    let mut j = 0;
    while j + 8 <= t {
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i < d {
            let qv = _mm256_loadu_ps(pq.add(i));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(pk.add((j + r) * d + i)), *a);
            }
            i += 8;
        }
        // Pairwise horizontal adds: lane halves hold the sums of elements 0-3 and 4-7.
        let h01 = _mm256_hadd_ps(acc[0], acc[1]);
        let h23 = _mm256_hadd_ps(acc[2], acc[3]);
        let h45 = _mm256_hadd_ps(acc[4], acc[5]);
        let h67 = _mm256_hadd_ps(acc[6], acc[7]);
        let x0123 = _mm256_hadd_ps(h01, h23);
        let x4567 = _mm256_hadd_ps(h45, h67);
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(x0123, x4567),
            _mm256_permute2f128_ps::<0x31>(x0123, x4567),
        );
        _mm256_storeu_ps(s.as_mut_ptr().add(j), _mm256_mul_ps(sums, vscale));
        j += 8;
    }
    while j < t {
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < d {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(pq.add(i)),
                _mm256_loadu_ps(pk.add(j * d + i)),
                acc,
            );
            i += 8;
        }
        let s4 = _mm_add_ps(_mm256_extractf128_ps::<1>(acc), _mm256_castps256_ps128(acc));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        s[j] = _mm_cvtss_f32(s1) * scale;
        j += 1;
    }
}

/// 64 outputs at a time in eight accumulators, over every value row: the accumulators stay in
/// registers instead of a load and a store of the output per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_sum_avx2(w: &[f32], values: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let d = out.len();
    let t = w.len();
    debug_assert!(values.len() >= t * d && d.is_multiple_of(64));
    let pv = values.as_ptr();
    let mut strip = 0;
    while strip < d {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, &wj) in w.iter().enumerate() {
            let b = _mm256_set1_ps(wj);
            let row = pv.add(j * d + strip);
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(b, _mm256_loadu_ps(row.add(8 * r)), *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(strip + 8 * r), *a);
        }
        strip += 64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-2, 2).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// Softmax attention of each head over all positions, in f64.
    fn reference(qs: &[f32], keys: &[f32], vals: &[f32], d: usize, scale: f32) -> Vec<f64> {
        let t = keys.len() / d;
        qs.chunks(d)
            .flat_map(|q| {
                let s: Vec<f64> = keys
                    .chunks(d)
                    .map(|k| {
                        q.iter()
                            .zip(k)
                            .map(|(a, b)| f64::from(*a) * f64::from(*b))
                            .sum::<f64>()
                            * f64::from(scale)
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let total: f64 = e.iter().sum();
                (0..d)
                    .map(|i| {
                        (0..t)
                            .map(|j| e[j] * f64::from(vals[j * d + i]))
                            .sum::<f64>()
                            / total
                    })
                    .collect::<Vec<f64>>()
            })
            .collect()
    }

    #[test]
    fn a_group_over_many_spans_matches_an_f64_softmax() {
        // Head sizes of SmolLM2 (64) and Qwen (128) and one the SIMD paths leave to the portable
        // code (40); lengths within a span, at its edge and over several with a ragged tail.
        for (d, n_rep) in [(64, 3), (128, 6), (40, 2), (64, 1)] {
            for t in [1, 7, 8, 9, SPAN, SPAN + 1, 3 * SPAN + 21] {
                let qs = values(n_rep * d, 1 + t as u64);
                let keys = values(t * d, 2 + t as u64);
                let vals = values(t * d, 3 + t as u64);
                let scale = 1.0 / (d as f32).sqrt();
                let mut out = vec![0.0; n_rep * d];
                let (mut scores, mut partials) = (Vec::new(), Vec::new());
                attend_group(
                    &qs,
                    &keys,
                    &vals,
                    d,
                    scale,
                    &mut scores,
                    &mut partials,
                    &mut out,
                );
                let want = reference(&qs, &keys, &vals, d, scale);
                for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-5,
                        "d {d}, n_rep {n_rep}, t {t}, output {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_simd_and_portable_kernels_agree_with_a_scalar_loop() {
        for d in [64, 128] {
            for t in [1, 5, 8, 13, 64] {
                let q = values(d, 7 + t as u64);
                let keys = values(t * d, 8 + t as u64);
                let w = values(t, 9 + t as u64);
                let mut s = vec![0.0; t];
                span_scores(&q, &keys, d, 0.5, &mut s);
                let mut p = vec![0.0; t];
                span_scores_portable(&q, &keys, d, 0.5, &mut p);
                let mut o = vec![0.0; d];
                weighted_sum(&w, &keys, &mut o);
                let mut op = vec![0.0; d];
                weighted_sum_portable(&w, &keys, &mut op);
                for j in 0..t {
                    let want: f64 = (0..d)
                        .map(|i| f64::from(q[i]) * f64::from(keys[j * d + i]))
                        .sum::<f64>()
                        * 0.5;
                    for got in [s[j], p[j]] {
                        assert!((f64::from(got) - want).abs() < 1e-4, "{got} vs {want}");
                    }
                }
                for i in 0..d {
                    let want: f64 = (0..t)
                        .map(|j| f64::from(w[j]) * f64::from(keys[j * d + i]))
                        .sum();
                    for got in [o[i], op[i]] {
                        assert!((f64::from(got) - want).abs() < 1e-4, "{got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn spans_merged_in_parallel_order_equal_the_serial_group() {
        // What decode_attention does: each span's partial separately, then one merge.
        let (d, n_rep, t) = (64, 3, 2 * SPAN + 5);
        let qs = values(n_rep * d, 11);
        let keys = values(t * d, 12);
        let vals = values(t * d, 13);
        let len = partial_len(n_rep, d);
        let mut partials = vec![0.0; span_count(t) * len];
        for (i, p) in partials.chunks_exact_mut(len).rev().enumerate() {
            let i = span_count(t) - 1 - i;
            let span = i * SPAN * d..((i + 1) * SPAN).min(t) * d;
            span_partial(
                &qs,
                &keys[span.clone()],
                &vals[span],
                d,
                0.125,
                &mut Vec::new(),
                p,
            );
        }
        let mut merged = vec![0.0; n_rep * d];
        merge_spans(&partials, n_rep, d, &mut merged);
        let mut serial = vec![0.0; n_rep * d];
        attend_group(
            &qs,
            &keys,
            &vals,
            d,
            0.125,
            &mut Vec::new(),
            &mut Vec::new(),
            &mut serial,
        );
        assert_eq!(merged, serial);
    }
}

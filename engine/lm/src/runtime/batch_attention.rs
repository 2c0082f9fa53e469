//! Attention of one batched step on the CPU's host memory: each sequence's new queries and
//! keys rotated to their positions, its keys and values written into its own KV cache in place,
//! and each new row's query heads attending over that cache up to its own position; rows in
//! parallel.
//!
//! The tensor version of the same step (`model::attend` per sequence) costs some forty small
//! tensor operations per sequence and layer, each allocating; at 8 sequences that overhead
//! outweighed the weight reads that batching saves. Here a row is a few slices.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::host_attention::{rotate, take, Heads, RopeTables};
use super::model::KvCache;
use super::span_attention::attend_group;

/// Attention of a batched step, whose sequences each feed `counts[i]` new positions (one while
/// decoding, a piece of the prompt while prefilling): `q` `[rows, heads * d]` and `k`
/// `[rows, kv_heads * d]` (the sequences' rows one after another) are rotated in place to their
/// positions, `k` and `v` are written at positions `len..len + counts[i]` of each cache's layer
/// `layer`, and each row's heads attend over its sequence's positions up to its own (causal).
/// Returns `[rows, heads * d]`. Does not advance the caches' lengths (the caller does after
/// the last layer).
///
/// A row's result does not depend on the other rows: the same operations on the same cache
/// values, whether its sequence decodes or prefills, alone or in a batch.
///
/// # Panics
/// Off the flex backend (callers check [`RopeTables::read`] first), or when `counts` does not
/// cover the rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn feed_attention(
    q: &mut [f32],
    k: &mut [f32],
    v: &[f32],
    caches: &mut [&mut KvCache],
    counts: &[usize],
    layer: usize,
    heads: Heads,
    rope: &RopeTables,
) -> Vec<f32> {
    let Heads { query, kv, dim: d } = heads;
    let (qw, kw) = (query * d, kv * d);
    let rows: usize = counts.iter().sum();
    assert_eq!(caches.len(), counts.len(), "one row count per sequence");
    assert!(
        q.len() == rows * qw && k.len() == rows * kw && v.len() == rows * kw,
        "queries, keys and values of {rows} rows"
    );
    // 1. Rotate every new row to its position and write its key and value into its cache
    //    (cheap, in order); the buffers stay out of their slots until step 3.
    let mut seqs: Vec<SeqBuffers> = Vec::with_capacity(caches.len());
    let mut row = 0;
    for (cache, &n) in caches.iter_mut().zip(counts) {
        let start = cache.len;
        let lc = &mut cache.layers[layer];
        let (mut kt, mut vt) = (take(&mut lc.k), take(&mut lc.v));
        let cap = kt.layout().shape()[2];
        assert!(start + n <= cap, "KV cache overflow: {start} + {n} > {cap}");
        {
            // Copied first only if something else shares the buffer.
            let (kb, vb) = (kt.storage_mut::<f32>(), vt.storage_mut::<f32>());
            for j in 0..n {
                let (r, pos) = (row + j, start + j);
                rotate(&mut q[r * qw..(r + 1) * qw], d, pos, rope);
                let kr = &mut k[r * kw..(r + 1) * kw];
                rotate(kr, d, pos, rope);
                let vr = &v[r * kw..(r + 1) * kw];
                for g in 0..kv {
                    let at = (g * cap + pos) * d;
                    kb[at..at + d].copy_from_slice(&kr[g * d..(g + 1) * d]);
                    vb[at..at + d].copy_from_slice(&vr[g * d..(g + 1) * d]);
                }
            }
        }
        seqs.push(SeqBuffers {
            k: kt,
            v: vt,
            cap,
            start,
            first_row: row,
        });
        row += n;
    }
    // 2. Every row's query heads over its sequence's keys and values, rows in parallel.
    let owner: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| std::iter::repeat_n(i, n))
        .collect();
    let n_rep = query / kv;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let mut out = vec![0.0f32; q.len()];
    out.par_chunks_mut(qw)
        .zip(q.par_chunks(qw))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(scores, partials), (r, (out, q))| {
                let s = &seqs[owner[r]];
                let t = s.start + r - s.first_row + 1;
                let kb = s.k.as_slice::<f32>().expect("a contiguous f32 cache");
                let vb = s.v.as_slice::<f32>().expect("a contiguous f32 cache");
                let group = n_rep * d;
                for (g, (qs, og)) in q
                    .chunks_exact(group)
                    .zip(out.chunks_exact_mut(group))
                    .enumerate()
                {
                    let base = g * s.cap * d;
                    let keys = &kb[base..base + t * d];
                    let values = &vb[base..base + t * d];
                    attend_group(qs, keys, values, d, scale, scores, partials, og);
                }
            },
        );
    // 3. The buffers go back to their slots.
    for (cache, s) in caches.iter_mut().zip(seqs) {
        let lc = &mut cache.layers[layer];
        lc.k = Some(Tensor::from_primitive::<Flex>(s.k));
        lc.v = Some(Tensor::from_primitive::<Flex>(s.v));
    }
    out
}

/// One sequence's layer cache taken out for a step: its buffers `[1, kv_heads, cap, d]`, the
/// position of its first new row and that row's index among the step's rows.
struct SeqBuffers {
    k: FlexTensor,
    v: FlexTensor,
    cap: usize,
    start: usize,
    first_row: usize,
}

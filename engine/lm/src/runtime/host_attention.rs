//! Attention on the CPU's host memory, for the flex backend: RoPE in the half-split layout,
//! softmax attention of one query head over cached keys and values, and one decoded token of a
//! single sequence (its key and value written into the cache in place, its heads in parallel).
//! The batched step (`batch_attention.rs`) shares these pieces.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::span_attention::{merge_spans, partial_len, span_count, span_partial, SPAN};

/// The RoPE tables as the model keeps them: cosine and sine, `[positions, head_dim]`.
pub(crate) type Rotary<'a> = (&'a Tensor<2>, &'a Tensor<2>);

/// Head counts and size of one layer's attention.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub(crate) query: usize,
    pub(crate) kv: usize,
    pub(crate) dim: usize,
}

/// The RoPE tables as host memory, `[positions, head_dim]` row-major (shared with the model's
/// tensors, not copied).
pub(crate) struct RopeTables {
    cos: FlexTensor,
    sin: FlexTensor,
}

impl RopeTables {
    /// `None` off the flex backend (the tensor path runs there).
    pub(crate) fn read((cos, sin): Rotary<'_>) -> Option<RopeTables> {
        let host = |t: &Tensor<2>| -> Option<FlexTensor> {
            let p = t.clone().try_into_primitive::<Flex>().ok()?;
            p.as_slice::<f32>().is_some().then_some(p)
        };
        Some(RopeTables {
            cos: host(cos)?,
            sin: host(sin)?,
        })
    }

    fn row(t: &FlexTensor, pos: usize, d: usize) -> &[f32] {
        &t.as_slice::<f32>().expect("checked in read")[pos * d..(pos + 1) * d]
    }
}

/// Rotates each `d`-sized head of `x` to position `pos` in the half-split layout:
/// `x * cos + cat(-x2, x1) * sin`, with the products and the sum rounded as the tensor version
/// rounds them.
pub(crate) fn rotate(x: &mut [f32], d: usize, pos: usize, rope: &RopeTables) {
    let cos = RopeTables::row(&rope.cos, pos, d);
    let sin = RopeTables::row(&rope.sin, pos, d);
    let half = d / 2;
    for head in x.chunks_exact_mut(d) {
        for j in 0..half {
            let (x1, x2) = (head[j], head[j + half]);
            head[j] = x1 * cos[j] + (-x2) * sin[j];
            head[j + half] = x2 * cos[j + half] + x1 * sin[j + half];
        }
    }
}

/// A layer cache buffer `[1, kv_heads, capacity, head_dim]` taken out of its slot as a flex
/// primitive, to be read and written as host memory and put back.
pub(crate) fn take(slot: &mut Option<Tensor<4>>) -> FlexTensor {
    slot.take()
        .expect("cache buffer present")
        .try_into_primitive::<Flex>()
        .expect("host attention runs on the flex backend")
}

/// Attention of one decoded token of a single sequence at position `pos`: `q` `[heads * d]` and
/// `k` `[kv_heads * d]` rotated in place, `k` and `v` written at `pos` of a layer's cache buffers `keys`, `values`
/// (`[1, kv_heads, capacity, d]`),
/// and the query heads over positions `0..=pos`, each group of heads and span of positions a
/// parallel task (a single row gives `feed_attention` nothing to split). Returns
/// `[heads * d]`: the same values as `feed_attention`'s for the row (`span_attention.rs`).
/// Instead of Burn's attention, which copied the cached keys and values of every layer into
/// contiguous tensors for each token.
///
/// # Panics
/// Off the flex backend (callers check [`RopeTables::read`] first), or when `pos` is past the
/// cache's capacity.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_attention(
    q: &mut [f32],
    k: &mut [f32],
    v: &[f32],
    keys: &mut Option<Tensor<4>>,
    values: &mut Option<Tensor<4>>,
    pos: usize,
    heads: Heads,
    rope: &RopeTables,
) -> Vec<f32> {
    let Heads { query, kv, dim: d } = heads;
    assert!(
        q.len() == query * d && k.len() == kv * d && v.len() == kv * d,
        "one row of queries, keys and values"
    );
    let (mut kt, mut vt) = (take(keys), take(values));
    let cap = kt.layout().shape()[2];
    assert!(pos < cap, "KV cache overflow: {pos} + 1 > {cap}");
    rotate(q, d, pos, rope);
    rotate(k, d, pos, rope);
    {
        let (kb, vb) = (kt.storage_mut::<f32>(), vt.storage_mut::<f32>());
        for g in 0..kv {
            let at = (g * cap + pos) * d;
            kb[at..at + d].copy_from_slice(&k[g * d..(g + 1) * d]);
            vb[at..at + d].copy_from_slice(&v[g * d..(g + 1) * d]);
        }
    }
    let n_rep = query / kv;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let t = pos + 1;
    let (spans, len) = (span_count(t), partial_len(n_rep, d));
    // One task per group and span: a group's heads share one pass over its keys and values,
    // and the spans give a single sequence more tasks than it has groups.
    let mut partials = vec![0.0f32; kv * spans * len];
    {
        let kb = kt.as_slice::<f32>().expect("a contiguous f32 cache");
        let vb = vt.as_slice::<f32>().expect("a contiguous f32 cache");
        partials.par_chunks_mut(len).enumerate().for_each_init(
            Vec::new,
            |scores: &mut Vec<f32>, (task, p)| {
                let (g, span) = (task / spans, task % spans);
                let first = span * SPAN;
                let range = (g * cap + first) * d..(g * cap + (first + SPAN).min(t)) * d;
                let qs = &q[g * n_rep * d..(g + 1) * n_rep * d];
                span_partial(qs, &kb[range.clone()], &vb[range], d, scale, scores, p);
            },
        );
    }
    let mut out = vec![0.0f32; q.len()];
    for (g, og) in out.chunks_exact_mut(n_rep * d).enumerate() {
        merge_spans(
            &partials[g * spans * len..(g + 1) * spans * len],
            n_rep,
            d,
            og,
        );
    }
    *keys = Some(Tensor::from_primitive::<Flex>(kt));
    *values = Some(Tensor::from_primitive::<Flex>(vt));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn decode_attention_writes_the_cache_and_matches_an_f64_reference() {
        let device = Device::flex();
        let (query, kv, d, cap, pos) = (4, 2, 8, 16, 11);
        let heads = Heads { query, kv, dim: d };
        // Cached keys and values at 0..pos; position pos is written by the call.
        let mut kc = values(kv * cap * d, 1);
        let vc = values(kv * cap * d, 2);
        let positions = 32;
        let table = |seed| {
            Tensor::<2>::from_data(
                TensorData::new(values(positions * d, seed), [positions, d]),
                &device,
            )
        };
        let (cos, sin) = (table(3), table(4));
        let rope = RopeTables::read((&cos, &sin)).expect("flex tables");
        let (q0, k0, v) = (values(query * d, 5), values(kv * d, 6), values(kv * d, 7));
        let buffer = |data: Vec<f32>| {
            Some(Tensor::<4>::from_data(
                TensorData::new(data, [1, kv, cap, d]),
                &device,
            ))
        };
        // The rotation by hand: x * cos + rotate_half(x) * sin at `pos`.
        let c = cos.to_data().try_to_vec::<f32>().unwrap();
        let sn = sin.to_data().try_to_vec::<f32>().unwrap();
        let (c, sn) = (&c, &sn);
        let rot = |x: &[f32]| -> Vec<f32> {
            x.chunks(d)
                .flat_map(|h| {
                    (0..d).map(move |j| {
                        let r = if j < d / 2 {
                            -h[j + d / 2]
                        } else {
                            h[j - d / 2]
                        };
                        h[j] * c[pos * d + j] + r * sn[pos * d + j]
                    })
                })
                .collect()
        };
        let (qr, kr) = (rot(&q0), rot(&k0));
        for g in 0..kv {
            kc[(g * cap + pos) * d..(g * cap + pos + 1) * d]
                .copy_from_slice(&kr[g * d..(g + 1) * d]);
        }
        let (mut keys, mut vals) = (buffer(values(kv * cap * d, 1)), buffer(vc.clone()));
        let (mut q, mut k) = (q0.clone(), k0.clone());
        let out = decode_attention(&mut q, &mut k, &v, &mut keys, &mut vals, pos, heads, &rope);
        let stored_k = keys.unwrap().to_data().try_to_vec::<f32>().unwrap();
        let stored_v = vals.unwrap().to_data().try_to_vec::<f32>().unwrap();
        for g in 0..kv {
            let at = (g * cap + pos) * d;
            assert_eq!(&stored_k[at..at + d], &kr[g * d..(g + 1) * d]);
            assert_eq!(&stored_v[at..at + d], &v[g * d..(g + 1) * d]);
        }
        let mut vref = vc;
        for g in 0..kv {
            vref[(g * cap + pos) * d..(g * cap + pos + 1) * d]
                .copy_from_slice(&v[g * d..(g + 1) * d]);
        }
        for h in 0..query {
            let g = h / (query / kv);
            let qh = &qr[h * d..(h + 1) * d];
            let scores: Vec<f64> = (0..=pos)
                .map(|t| {
                    let key = &kc[(g * cap + t) * d..(g * cap + t + 1) * d];
                    qh.iter()
                        .zip(key)
                        .map(|(a, b)| f64::from(a * b))
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = w.iter().sum();
            for j in 0..d {
                let want: f64 = (0..=pos)
                    .map(|t| w[t] / total * f64::from(vref[(g * cap + t) * d + j]))
                    .sum();
                let got = f64::from(out[h * d + j]);
                assert!((got - want).abs() < 1e-5, "head {h}, {j}: {got} vs {want}");
            }
        }
    }
}

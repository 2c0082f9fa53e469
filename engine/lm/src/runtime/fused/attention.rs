//! Causal grouped-query attention for the flex backend, forward and backward, with the scale,
//! the causal mask and the softmax (and the softmax's backward) fused into one threaded pass
//! over each block of scores.
//!
//! The matrix products are Burn's (gemm, threaded). As Burn ops the rest was a chain of
//! single-threaded passes per query block: the scale, a host-built mask and its add, the
//! softmax's backward (four element-wise ops), and, for every block, zero-filled full-size
//! gradients of the narrowed Q, K and V added together. Here the backward accumulates each
//! block's K and V gradients into one buffer instead.
//!
//! Shapes and order are those of `runtime::model::attend`: queries `[b, heads, s, d]` at
//! positions `first..first+s`, keys and values `[b, kv_heads, t, d]` at `0..t`; query head `i`
//! uses KV head `i / n_rep`, grouped as `[b, kv_heads, n_rep * rows, d]` without copying K or V.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::host::{contiguous, dims, tensor, values, FlexF32, CHUNK};
use super::prefill_attention::{prefill_attention, Layout};

/// Where the queries sit and how they are split.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// Position of the first query (the keys start at 0).
    pub first: usize,
    /// Multiplier of the scores (`1 / sqrt(head_dim)`).
    pub scale: f64,
    /// Query heads per KV head.
    pub n_rep: usize,
    /// Query rows per block: block `j` only computes scores against the keys up to its last
    /// position.
    pub block: usize,
}

/// Causal attention of `q` over `k`, `v`: `[b, heads, s, d]`; `None` unless all three are f32
/// flex tensors (then the caller runs the Burn ops).
pub fn causal_attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    geometry: Geometry,
) -> Option<Tensor<4>> {
    match (FlexF32::of(q)?, FlexF32::of(k)?, FlexF32::of(v)?) {
        (FlexF32::Plain(q), FlexF32::Plain(k), FlexF32::Plain(v)) => {
            // Inference: the threaded host kernel (its `[b, s, heads, d]` output seen as
            // `[b, heads, s, d]`); the Burn-op blocks for layouts it declines.
            let layout = Layout {
                first: geometry.first,
                scale: geometry.scale,
                n_rep: geometry.n_rep,
                block: geometry.block,
            };
            Some(match prefill_attention(&q, &k, &v, layout) {
                Some(out) => Tensor::<4>::from_primitive::<Flex>(out).swap_dims(1, 2),
                None => Tensor::from_primitive::<Flex>(forward(&q, &k, &v, geometry, false).0),
            })
        }
        (FlexF32::Tracked(q), FlexF32::Tracked(k), FlexF32::Tracked(v)) => {
            let values = [
                q.primitive().clone(),
                k.primitive().clone(),
                v.primitive().clone(),
            ];
            let out = match AttentionBackward
                .prepare::<NoCheckpointing>([q.node(), k.node(), v.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (out, probs) = forward(&values[0], &values[1], &values[2], geometry, true);
                    prep.finish(
                        Saved {
                            qkv: values,
                            probs,
                            geometry,
                        },
                        out,
                    )
                }
                OpsKind::UnTracked(prep) => {
                    let (out, _) = forward(&values[0], &values[1], &values[2], geometry, false);
                    prep.finish(out)
                }
            };
            Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
        }
        _ => None,
    }
}

/// A flex primitive as a plain tensor, for Burn's matrix products.
fn plain(t: &FlexTensor) -> Tensor<4> {
    Tensor::from_primitive::<Flex>(t.clone())
}

/// The query blocks: `(first row, rows)`.
fn blocks(s: usize, block: usize) -> impl Iterator<Item = (usize, usize)> {
    let block = block.max(1);
    (0..s).step_by(block).map(move |q0| (q0, block.min(s - q0)))
}

/// Rows `q0..q0+len` of `x` `[b, heads, s, d]` grouped per KV head: `[b, kvh, n_rep * len, d]`.
fn grouped(x: &Tensor<4>, q0: usize, len: usize, kvh: usize) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let x = if len == s {
        x.clone()
    } else {
        x.clone().narrow(2, q0, len)
    };
    x.reshape([b, kvh, (h / kvh) * len, d])
}

/// The first `keys` positions of keys or values `[b, kvh, t, d]`.
fn prefix(x: &Tensor<4>, keys: usize) -> Tensor<4> {
    if keys == x.dims()[2] {
        x.clone()
    } else {
        x.clone().narrow(2, 0, keys)
    }
}

/// The output, and with `keep` each block's probabilities `[b, kvh, n_rep * len, keys]`.
fn forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    g: Geometry,
    keep: bool,
) -> (FlexTensor, Vec<FlexTensor>) {
    let (q, k, v) = (plain(q), plain(k), plain(v));
    let [b, h, s, d] = q.dims();
    let kvh = k.dims()[1];
    let (mut outs, mut kept) = (Vec::new(), Vec::new());
    for (q0, len) in blocks(s, g.block) {
        let keys = g.first + q0 + len;
        let scores = grouped(&q, q0, len, kvh).matmul(prefix(&k, keys).transpose());
        let probs = owned(scores);
        let probs = masked_softmax(probs, len, g.first + q0, g.scale as f32);
        outs.push(
            plain(&probs)
                .matmul(prefix(&v, keys))
                .reshape([b, h, len, d]),
        );
        if keep {
            kept.push(probs);
        }
    }
    let out = if outs.len() == 1 {
        outs.pop().expect("one block")
    } else {
        Tensor::cat(outs, 2)
    };
    (into_flex(out), kept)
}

/// Gradients of Q, K and V from the output gradient `dout` `[b, heads, s, d]`.
fn backward(saved: &Saved, dout: FlexTensor) -> [FlexTensor; 3] {
    let g = saved.geometry;
    let [q, k, v] = saved.qkv.each_ref().map(plain);
    let dout = plain(&dout);
    let [b, h, s, d] = q.dims();
    let [_, kvh, t, _] = k.dims();
    let mut dk = vec![0.0f32; b * kvh * t * d];
    let mut dv = vec![0.0f32; b * kvh * t * d];
    let mut dqs = Vec::new();
    for ((q0, len), probs) in blocks(s, g.block).zip(&saved.probs) {
        let keys = g.first + q0 + len;
        let (qg, dog) = (grouped(&q, q0, len, kvh), grouped(&dout, q0, len, kvh));
        let (kj, vj) = (prefix(&k, keys), prefix(&v, keys));
        add_rows(&mut dv, plain(probs).transpose().matmul(dog.clone()), t);
        let dp = owned(dog.matmul(vj.transpose()));
        let ds = plain(&softmax_backward(dp, probs, g.scale as f32));
        dqs.push(ds.clone().matmul(kj).reshape([b, h, len, d]));
        add_rows(&mut dk, ds.transpose().matmul(qg), t);
    }
    let dq = if dqs.len() == 1 {
        dqs.pop().expect("one block")
    } else {
        Tensor::cat(dqs, 2)
    };
    [
        into_flex(dq),
        tensor(dk, vec![b, kvh, t, d]),
        tensor(dv, vec![b, kvh, t, d]),
    ]
}

fn into_flex(t: Tensor<4>) -> FlexTensor {
    t.try_into_primitive::<Flex>().expect("a flex tensor")
}

/// `t`'s values in a contiguous buffer this tensor alone owns (a fresh matrix product is one
/// already), so a kernel can overwrite them.
fn owned(t: Tensor<4>) -> FlexTensor {
    let mut p = into_flex(t);
    let fresh = p.is_contiguous() && p.layout().start_offset() == 0;
    if fresh && p.try_storage_mut::<f32>().is_some() {
        return p;
    }
    let shape = dims(&p);
    let c = contiguous(p);
    tensor(values(&c).to_vec(), shape)
}

/// The mutable values of a tensor from [`owned`].
fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    let n: usize = dims(t).iter().product();
    &mut t.try_storage_mut::<f32>().expect("an owned tensor")[..n]
}

/// Keys a row of a block may see: row `r` is query `r % len` (rows are `[n_rep, len]` per KV
/// head), at position `pos0 + r % len`, which sees keys `0..=` its position.
#[inline]
fn visible(r: usize, len: usize, pos0: usize, keys: usize) -> usize {
    (pos0 + r % len + 1).min(keys)
}

/// Rows per rayon task for rows of `keys` values.
fn rows_per_task(keys: usize) -> usize {
    (CHUNK / keys.max(1)).max(1)
}

/// `softmax(scale * scores + causal mask)` over the last axis, in place: the scores of block
/// rows `len` whose first query sits at `pos0`.
fn masked_softmax(mut scores: FlexTensor, len: usize, pos0: usize, scale: f32) -> FlexTensor {
    let keys = *dims(&scores).last().expect("rank 4");
    let per = rows_per_task(keys);
    values_mut(&mut scores)
        .par_chunks_mut(per * keys)
        .enumerate()
        .for_each(|(c, rows)| {
            for (i, row) in rows.chunks_mut(keys).enumerate() {
                let (seen, hidden) = row.split_at_mut(visible(c * per + i, len, pos0, keys));
                let mut max = f32::NEG_INFINITY;
                for x in seen.iter_mut() {
                    *x *= scale;
                    max = max.max(*x);
                }
                let mut sum = 0.0f32;
                for x in seen.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                let inv = 1.0 / sum;
                for x in seen.iter_mut() {
                    *x *= inv;
                }
                hidden.fill(0.0);
            }
        });
    scores
}

/// The scores' gradient `scale * p * (dp - rowsum(dp * p))` from the probabilities' gradient
/// `dp`, in place (masked positions have `p = 0`, so a zero gradient).
fn softmax_backward(mut dp: FlexTensor, probs: &FlexTensor, scale: f32) -> FlexTensor {
    let keys = *dims(&dp).last().expect("rank 4");
    let per = rows_per_task(keys);
    let p = values(probs);
    values_mut(&mut dp)
        .par_chunks_mut(per * keys)
        .zip(p.par_chunks(per * keys))
        .for_each(|(drows, prows)| {
            for (dr, pr) in drows.chunks_mut(keys).zip(prows.chunks(keys)) {
                let dot: f32 = dr.iter().zip(pr).map(|(d, p)| d * p).sum();
                for (d, &p) in dr.iter_mut().zip(pr) {
                    *d = scale * (p * (*d - dot));
                }
            }
        });
    dp
}

/// Adds `part` `[b, kvh, keys, d]` to the first `keys` positions of `acc` `[b, kvh, t, d]`.
fn add_rows(acc: &mut [f32], part: Tensor<4>, t: usize) {
    let [_, _, keys, d] = part.dims();
    let part = contiguous(into_flex(part));
    acc.par_chunks_mut(t * d)
        .zip(values(&part).par_chunks(keys * d))
        .for_each(|(a, p)| {
            for (a, p) in a.iter_mut().zip(p) {
                *a += p;
            }
        });
}

/// What the backward needs: Q, K, V and each block's probabilities.
#[derive(Debug, Clone)]
struct Saved {
    qkv: [FlexTensor; 3],
    probs: Vec<FlexTensor>,
    geometry: Geometry,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = grads.consume::<Flex>(&ops.node);
        let d = backward(&ops.state, dout);
        for (parent, grad) in ops.parents.into_iter().zip(d) {
            if let Some(p) = parent {
                grads.register::<Flex>(p.id, grad);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::test_support::{assert_close, random};
    use crate::runtime::model::causal_blocks_ops;
    use burn::tensor::Device;

    /// Three query blocks (the last partial), two query heads per KV head, batch 2: the output
    /// and the gradients of Q, K and V equal the Burn-op blocks'.
    #[test]
    fn fused_attention_matches_burn_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        let (b, h, kvh, s, d) = (2, 4, 2, 150, 16);
        let g = Geometry {
            first: 0,
            scale: 1.0 / (d as f64).sqrt(),
            n_rep: h / kvh,
            block: 64,
        };
        let q0 = random([b, h, s, d], 11, 2.0);
        let k0 = random([b, kvh, s, d], 12, 2.0);
        let v0 = random([b, kvh, s, d], 13, 1.0);
        let w0 = random([b, h, s, d], 14, 1.0);
        let run = |fused: bool| {
            let leaf = |x: &burn::tensor::TensorData| {
                Tensor::<4>::from_data(x.clone(), &device).require_grad()
            };
            let (q, k, v) = (leaf(&q0), leaf(&k0), leaf(&v0));
            let out = if fused {
                causal_attention(&q, &k, &v, g).expect("flex f32")
            } else {
                causal_blocks_ops(q.clone(), k.clone(), v.clone(), g)
            };
            let grads = (out.clone() * Tensor::from_data(w0.clone(), &device))
                .sum()
                .backward();
            [
                out.inner(),
                q.grad(&grads).unwrap(),
                k.grad(&grads).unwrap(),
                v.grad(&grads).unwrap(),
            ]
        };
        let (a, r) = (run(true), run(false));
        for ((name, a), r) in ["forward", "d q", "d k", "d v"].iter().zip(a).zip(r) {
            assert_close(name, a, r, 2e-6);
        }
    }

    /// Inference after cached positions: queries at 50..90 over keys 0..90, without autodiff.
    #[test]
    fn fused_attention_after_cached_positions_matches_burn_ops() {
        let device = Device::flex();
        let (h, kvh, s, t, d) = (4, 2, 40, 90, 16);
        let g = Geometry {
            first: t - s,
            scale: 1.0 / (d as f64).sqrt(),
            n_rep: h / kvh,
            block: 16,
        };
        let q = Tensor::<4>::from_data(random([1, h, s, d], 21, 2.0), &device);
        let k = Tensor::<4>::from_data(random([1, kvh, t, d], 22, 2.0), &device);
        let v = Tensor::<4>::from_data(random([1, kvh, t, d], 23, 1.0), &device);
        let fused = causal_attention(&q, &k, &v, g).expect("flex f32");
        assert_close("forward", fused, causal_blocks_ops(q, k, v, g), 2e-6);
    }
}

//! RMSNorm over the last axis, `x / sqrt(mean(x^2) + eps) * weight`, forward and backward in
//! one threaded pass each (the weight's gradient as per-task partial sums).
//!
//! As Burn ops the f32 norm is seven single-threaded passes forward (square, mean, add, root,
//! reciprocal, two products) and about twice that backward; a decoder layer runs four of them
//! (two on the hidden states, Qwen3's per-head norms of the queries and keys): ~0.4 s of the
//! Qwen3-0.6B LoRA step at 512 tokens.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::host::{contiguous, dims, tensor, values, FlexF32, CHUNK};

/// The norm of `x` over its last axis scaled by `weight` `[last]`; `None` unless both are f32
/// flex autodiff tensors. Without autodiff (inference) Burn's ops run: this kernel sums the
/// squares in another order, and the 8-bit-activation path of `tests/quant_runtime.rs`
/// amplifies that last-bit difference past its bound.
pub fn rms_norm<const D: usize>(x: &Tensor<D>, weight: &Tensor<1>, eps: f64) -> Option<Tensor<D>> {
    if weight.dims()[0] != x.dims()[D - 1] {
        return None;
    }
    match (FlexF32::of(x)?, FlexF32::of(weight)?) {
        (FlexF32::Tracked(x), FlexF32::Tracked(w)) => {
            let state = Saved {
                x: x.primitive().clone(),
                weight: w.primitive().clone(),
                eps,
            };
            let out = forward(&state.x, &state.weight, eps);
            let out = match RmsNormBackward
                .prepare::<NoCheckpointing>([x.node(), w.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
            Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
        }
        _ => None,
    }
}

/// Rows per rayon task for rows of `n` values.
fn rows_per_task(n: usize) -> usize {
    (CHUNK / n.max(1)).max(1)
}

/// `1 / sqrt(mean(row^2) + eps)`.
#[inline]
fn inv_rms(row: &[f32], eps: f64) -> f32 {
    let ms = row.iter().map(|x| x * x).sum::<f32>() / row.len() as f32;
    1.0 / (ms + eps as f32).sqrt()
}

fn forward(x: &FlexTensor, weight: &FlexTensor, eps: f64) -> FlexTensor {
    let shape = dims(x);
    let n = *shape.last().expect("rank >= 1");
    let (x, w) = (contiguous(x.clone()), contiguous(weight.clone()));
    let (x, w) = (values(&x), values(&w));
    let per = rows_per_task(n);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(per * n)
        .zip(x.par_chunks(per * n))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(n).zip(x.chunks(n)) {
                let r = inv_rms(x, eps);
                // Burn's order: `x * r * weight`.
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * r * w;
                }
            }
        });
    tensor(out, shape)
}

/// `(d x, d weight)` from the output gradient `dy`, with `g = dy * weight`, `xh = x * r`:
/// `dx = r * (g - xh * mean(g * xh))`, `d weight = sum over rows of dy * xh`.
fn backward(s: &Saved, dy: FlexTensor, want_weight: bool) -> (FlexTensor, Option<FlexTensor>) {
    let shape = dims(&s.x);
    let n = *shape.last().expect("rank >= 1");
    let (x, w, dy) = (
        contiguous(s.x.clone()),
        contiguous(s.weight.clone()),
        contiguous(dy),
    );
    let (x, w, dy) = (values(&x), values(&w), values(&dy));
    let per = rows_per_task(n);
    let mut dx = vec![0.0f32; x.len()];
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(per * n)
        .zip(x.par_chunks(per * n).zip(dy.par_chunks(per * n)))
        .map(|(dx, (x, dy))| {
            let mut dw = if want_weight {
                vec![0.0f32; n]
            } else {
                Vec::new()
            };
            for ((dx, x), dy) in dx.chunks_mut(n).zip(x.chunks(n)).zip(dy.chunks(n)) {
                let r = inv_rms(x, s.eps);
                let dot: f32 = (0..n).map(|i| dy[i] * w[i] * (x[i] * r)).sum::<f32>() / n as f32;
                for i in 0..n {
                    let xh = x[i] * r;
                    dx[i] = r * (dy[i] * w[i] - xh * dot);
                }
                if want_weight {
                    for i in 0..n {
                        dw[i] += dy[i] * (x[i] * r);
                    }
                }
            }
            dw
        })
        .collect();
    let dw = want_weight.then(|| {
        let mut dw = vec![0.0f32; n];
        for p in &partials {
            for (a, b) in dw.iter_mut().zip(p) {
                *a += b;
            }
        }
        tensor(dw, vec![n])
    });
    (tensor(dx, shape), dw)
}

/// The input, the weight and epsilon.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    weight: FlexTensor,
    eps: f64,
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pw] = ops.parents;
        let (dx, dw) = backward(&ops.state, dy, pw.is_some());
        if let Some(p) = px {
            grads.register::<Flex>(p.id, dx);
        }
        if let (Some(p), Some(dw)) = (pw, dw) {
            grads.register::<Flex>(p.id, dw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::test_support::{assert_close, random};
    use burn::tensor::Device;

    /// Burn's ops, as `RmsNorm::forward` spells them in f32.
    fn rms_norm_ops(x: Tensor<3>, w: Tensor<1>, eps: f64) -> Tensor<3> {
        let ms = (x.clone() * x.clone()).mean_dim(2);
        x * (ms + eps).sqrt().recip() * w.unsqueeze::<3>()
    }

    /// Values and the gradients of the input and of a trained weight equal Burn's ops.
    #[test]
    fn fused_rms_norm_matches_burn_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        let (shape, eps) = ([3, 41, 96], 1e-6);
        let x0 = random(shape, 41, 3.0);
        let w0 = random([96], 42, 1.5);
        let g0 = random(shape, 43, 1.0);
        let run = |fused: bool| {
            let x = Tensor::<3>::from_data(x0.clone(), &device).require_grad();
            let w = Tensor::<1>::from_data(w0.clone(), &device).require_grad();
            let y = if fused {
                rms_norm(&x, &w, eps).expect("flex f32")
            } else {
                rms_norm_ops(x.clone(), w.clone(), eps)
            };
            let grads = (y.clone() * Tensor::from_data(g0.clone(), &device))
                .sum()
                .backward();
            (y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap())
        };
        let (a, r) = (run(true), run(false));
        assert_close("forward", a.0, r.0, 1e-6);
        let plain = Tensor::<3>::from_data(x0.clone(), &Device::flex());
        let w = Tensor::<1>::from_data(w0.clone(), &Device::flex());
        assert!(
            rms_norm(&plain, &w, eps).is_none(),
            "inference runs Burn's ops"
        );
        assert_close("d x", a.1, r.1, 1e-6);
        assert_close("d weight", a.2, r.2, 1e-6);
    }
}

//! A zero that carries a precomputed gradient into the autodiff graph: `carry(x, g)` has the
//! value 0 and the gradient `g` with respect to `x` (scaled by the gradient arriving at it).
//!
//! The fused loss computes `d loss / d hidden` and `d loss / d head` itself and spelled this as
//! `sum((x - detach(x)) * g)`: three single-threaded passes over `x` forward and as many
//! backward; for a tied 32,000 x 256 head that was ~10% of the tiny Qwen3's step. Here the
//! forward is a constant and the backward one threaded pass (none when the arriving gradient
//! is 1).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::host::{contiguous, dims, tensor, values, FlexF32, CHUNK};

/// A `[1]` tensor equal to 0 whose gradient with respect to `x` is `g` (same shape as `x`).
/// Autodiff flex f32 tensors take the fused op; anything else `sum((x - detach(x)) * g)`.
pub fn carry<const D: usize>(x: Tensor<D>, g: Tensor<D>) -> Tensor<1> {
    if x.dims() == g.dims() {
        if let (Some(FlexF32::Tracked(xt)), Some(FlexF32::Plain(gt))) =
            (FlexF32::of(&x), FlexF32::of(&g.clone().inner()))
        {
            let zero = tensor(vec![0.0], vec![1]);
            let out = match CarryBackward
                .prepare::<NoCheckpointing>([xt.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(contiguous(gt), zero),
                OpsKind::UnTracked(prep) => prep.finish(zero),
            };
            return Tensor::from_primitive::<Autodiff<Flex>>(out);
        }
    }
    ((x.clone() - x.detach()) * g).sum()
}

#[derive(Debug)]
struct CarryBackward;

impl Backward<Flex, 1> for CarryBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [Some(p)] = ops.parents else {
            return;
        };
        let factor = values(&dy)[0];
        let g = ops.state;
        let g = if factor == 1.0 {
            g
        } else {
            let shape = dims(&g);
            let mut out = vec![0.0f32; values(&g).len()];
            out.par_chunks_mut(CHUNK)
                .zip(values(&g).par_chunks(CHUNK))
                .for_each(|(o, g)| {
                    for (o, &g) in o.iter_mut().zip(g) {
                        *o = g * factor;
                    }
                });
            tensor(out, shape)
        };
        grads.register::<Flex>(p.id, g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::test_support::{assert_close, random};
    use burn::tensor::Device;

    /// Value and gradient equal `sum((x - detach(x)) * g)`'s, under a scaled loss and as one
    /// term of a larger one.
    #[test]
    fn carry_matches_the_detach_expression() {
        let device = Device::flex().autodiff();
        let (x0, g0, y0) = (
            random([37, 613], 1, 2.0),
            random([37, 613], 2, 1.0),
            random([37, 613], 3, 1.0),
        );
        for scale in [1.0f32, 0.37] {
            let run = |fused: bool| {
                let x = Tensor::<2>::from_data(x0.clone(), &device).require_grad();
                let g = Tensor::<2>::from_data(g0.clone(), &device);
                let other = (x.clone() * Tensor::from_data(y0.clone(), &device)).sum();
                let carried = if fused {
                    carry(x.clone(), g)
                } else {
                    ((x.clone() - x.clone().detach()) * g).sum()
                };
                let loss = (other + carried.clone()) * scale;
                let grads = loss.backward();
                (carried.inner(), x.grad(&grads).unwrap())
            };
            let (a, b) = (run(true), run(false));
            assert_close(&format!("value x{scale}"), a.0, b.0, 0.0);
            assert_close(&format!("d x x{scale}"), a.1, b.1, 1e-6);
        }
    }
}

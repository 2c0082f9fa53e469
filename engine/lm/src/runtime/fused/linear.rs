//! A projection's product `x Wᵀ` (`x` `[m, k]`, `W` `[n, k]` as stored) for training, forward
//! and backward calling `gemm` straight into uninitialised output buffers.
//!
//! Burn flex's matmul allocates each output as a zero-filled byte vector and then copies it into
//! an aligned one, both on the calling thread while the second core waits: on the Qwen3-0.6B
//! LoRA step at 512 tokens that memset and copy were ~6.5% of the samples, all on the step's
//! thread. The products themselves are the same `gemm` calls with the same strides.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;

use super::host::{dims, tensor, FlexF32};

/// Products below this many multiply-adds run on one thread (as burn-flex decides).
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// `x Wᵀ`: `[m, k] x [n, k] -> [m, n]`. Autodiff flex f32 tensors take the fused op; anything
/// else Burn's `x.matmul(W.transpose())`, which it is tested against.
pub fn x_wt(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if x.dims()[1] == w.dims()[1] {
        if let (Some(FlexF32::Tracked(xt)), Some(FlexF32::Tracked(wt))) =
            (FlexF32::of(&x), FlexF32::of(&w))
        {
            let out = product(
                View::rows(xt.primitive()),
                View::rows(wt.primitive()).transposed(),
            );
            let state = (xt.primitive().clone(), wt.primitive().clone());
            let out = match XWtBackward
                .prepare::<NoCheckpointing>([xt.node(), wt.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(state, out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            };
            return Tensor::from_primitive::<Autodiff<Flex>>(out);
        }
    }
    x.matmul(w.transpose())
}

/// A 2-D f32 matrix as `gemm` reads it: the tensor, its shape and strides in elements.
struct View<'a> {
    t: &'a FlexTensor,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> View<'a> {
    /// `t` (2-D) as laid out.
    fn rows(t: &'a FlexTensor) -> Self {
        let shape = dims(t);
        let strides = t.layout().strides();
        View {
            t,
            rows: shape[0],
            cols: shape[1],
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }

    /// The transpose, without moving data.
    fn transposed(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn ptr(&self) -> *const f32 {
        let storage: &[f32] = self.t.storage();
        storage[self.t.layout().start_offset()..].as_ptr()
    }
}

/// `a b` into a new contiguous `[a.rows, b.cols]` tensor.
fn product(a: View, b: View) -> FlexTensor {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "x_wt: inner dimensions");
    if k == 0 || m == 0 || n == 0 {
        return tensor(vec![0.0; m * n], vec![m, n]);
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers cover `a` and `b` as their layouts describe (views of live tensors);
    // `out` has room for `m * n` values, and `gemm` with `read_dst = false` writes every one of
    // them (k > 0) before `set_len`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.ptr(),
            a.col_stride,
            a.row_stride,
            b.ptr(),
            b.col_stride,
            b.row_stride,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    tensor(out, vec![m, n])
}

#[derive(Debug)]
struct XWtBackward;

impl Backward<Flex, 2> for XWtBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pw] = ops.parents;
        if let Some(p) = px {
            // d x = dy W.
            grads.register::<Flex>(p.id, product(View::rows(&dy), View::rows(&w)));
        }
        if let Some(p) = pw {
            // d W = dyᵀ x.
            let dw = product(View::rows(&dy).transposed(), View::rows(&x));
            grads.register::<Flex>(p.id, dw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::test_support::{assert_close, random};
    use burn::tensor::Device;

    /// Values and both gradients equal (bit for bit: the same `gemm` calls) Burn's `x.matmul(W.transpose())`, for a contiguous and a
    /// transposed (strided) `x`, above and below the threading threshold.
    #[test]
    fn x_wt_matches_burn_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        for (m, k, n, strided_x) in [
            (37, 61, 29, false),
            (300, 257, 190, false),
            (64, 96, 80, true),
        ] {
            let (x0, w0, o0) = (
                random([m, k], 1, 1.0),
                random([n, k], 2, 0.5),
                random([m, n], 3, 1.0),
            );
            let xt0 = random([k, m], 4, 1.0);
            let run = |fused: bool| {
                let (x_leaf, x) = if strided_x {
                    let leaf = Tensor::<2>::from_data(xt0.clone(), &device).require_grad();
                    (leaf.clone(), leaf.transpose())
                } else {
                    let leaf = Tensor::<2>::from_data(x0.clone(), &device).require_grad();
                    (leaf.clone(), leaf)
                };
                let w = Tensor::<2>::from_data(w0.clone(), &device).require_grad();
                let y = if fused {
                    x_wt(x, w.clone())
                } else {
                    x.matmul(w.clone().transpose())
                };
                let grads = (y.clone() * Tensor::from_data(o0.clone(), &device))
                    .sum()
                    .backward();
                (
                    y.inner(),
                    x_leaf.grad(&grads).unwrap(),
                    w.grad(&grads).unwrap(),
                )
            };
            let (a, b) = (run(true), run(false));
            let what = format!("{m}x{k}x{n}{}", if strided_x { " strided" } else { "" });
            assert_close(&format!("{what} forward"), a.0, b.0, 0.0);
            assert_close(&format!("{what} d x"), a.1, b.1, 0.0);
            assert_close(&format!("{what} d W"), a.2, b.2, 0.0);
        }
    }

    /// A frozen `W` (no gradient) and plain tensors keep working.
    #[test]
    fn x_wt_with_a_frozen_weight_and_without_autodiff() {
        let device = Device::flex().autodiff();
        let (x0, w0) = (random([33, 40], 5, 1.0), random([24, 40], 6, 1.0));
        let x = Tensor::<2>::from_data(x0.clone(), &device).require_grad();
        let w = Tensor::<2>::from_data(w0.clone(), &device);
        let grads = x_wt(x.clone(), w.clone()).sum().backward();
        let reference = {
            let x = Tensor::<2>::from_data(x0.clone(), &device).require_grad();
            let g = x.clone().matmul(w.clone().transpose()).sum().backward();
            x.grad(&g).unwrap()
        };
        assert_close("frozen W: d x", x.grad(&grads).unwrap(), reference, 0.0);
        assert!(w.grad(&grads).is_none());
        let plain =
            |d: &burn::tensor::TensorData| Tensor::<2>::from_data(d.clone(), &Device::flex());
        assert_close(
            "plain",
            x_wt(plain(&x0), plain(&w0)),
            plain(&x0).matmul(plain(&w0).transpose()),
            0.0,
        );
    }
}

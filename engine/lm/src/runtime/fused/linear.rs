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
    scaled_x_wt(x, w, 1.0)
}

/// `scale · x Wᵀ` (a LoRA adapter's second product): the scale is GEMM's factor on the
/// product, forward and backward, instead of a separate pass over the output and over its
/// gradient. Other backends and dtypes run Burn's `x.matmul(W.transpose()) * scale`.
pub fn scaled_x_wt(x: Tensor<2>, w: Tensor<2>, scale: f64) -> Tensor<2> {
    if x.dims()[1] == w.dims()[1] {
        if let (Some(FlexF32::Tracked(xt)), Some(FlexF32::Tracked(wt))) =
            (FlexF32::of(&x), FlexF32::of(&w))
        {
            let scale = scale as f32;
            let out = product(
                View::rows(xt.primitive()),
                View::rows(wt.primitive()).transposed(),
                scale,
            );
            let state = (xt.primitive().clone(), wt.primitive().clone());
            let out = match (XWtBackward { scale })
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
    let y = x.matmul(w.transpose());
    if scale == 1.0 {
        y
    } else {
        y * scale
    }
}

/// `a b` for plain (non-autodiff) 2-D tensors, `[m, k] x [k, n]`, either possibly a transposed
/// view: on flex f32 the same `gemm` call as Burn's matmul without its zero-fill and copy of the
/// output (the fused loss's `[vocab, rows]` logits are hundreds of MiB a chunk); Burn's matmul
/// otherwise.
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    if a.dims()[1] == b.dims()[0] {
        if let (Some(FlexF32::Plain(at)), Some(FlexF32::Plain(bt))) =
            (FlexF32::of(&a), FlexF32::of(&b))
        {
            return Tensor::from_primitive::<Flex>(product(View::rows(&at), View::rows(&bt), 1.0));
        }
    }
    a.matmul(b)
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

/// `scale · a b` into a new contiguous `[a.rows, b.cols]` tensor.
fn product(a: View, b: View, scale: f32) -> FlexTensor {
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
            scale,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    tensor(out, vec![m, n])
}

/// Backward of `scale · x Wᵀ`.
#[derive(Debug)]
struct XWtBackward {
    scale: f32,
}

impl Backward<Flex, 2> for XWtBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pw] = ops.parents;
        if let Some(p) = px {
            // d x = scale · dy W.
            let dx = product(View::rows(&dy), View::rows(&w), self.scale);
            grads.register::<Flex>(p.id, dx);
        }
        if let Some(p) = pw {
            // d W = scale · dyᵀ x.
            let dw = product(View::rows(&dy).transposed(), View::rows(&x), self.scale);
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

    /// `scale · x Wᵀ` against Burn's `x.matmul(W.transpose()) * scale`, forward and both
    /// gradients: bit for bit at a power-of-two scale (PEFT's r16 alpha 32), within f32 rounding
    /// of the scale's product otherwise (Burn rounds `scale · dy` before the product).
    #[test]
    fn scaled_x_wt_matches_burn_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        for (scale, tol) in [(2.0, 0.0), (0.37, 2e-6)] {
            let (m, k, n) = (300, 16, 190);
            let (x0, w0, o0) = (
                random([m, k], 11, 1.0),
                random([n, k], 12, 0.5),
                random([m, n], 13, 1.0),
            );
            let run = |fused: bool| {
                let x = Tensor::<2>::from_data(x0.clone(), &device).require_grad();
                let w = Tensor::<2>::from_data(w0.clone(), &device).require_grad();
                let y = if fused {
                    scaled_x_wt(x.clone(), w.clone(), scale)
                } else {
                    x.clone().matmul(w.clone().transpose()) * scale
                };
                let grads = (y.clone() * Tensor::from_data(o0.clone(), &device))
                    .sum()
                    .backward();
                (y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap())
            };
            let (a, b) = (run(true), run(false));
            assert_close(&format!("scale {scale} forward"), a.0, b.0, 0.0);
            assert_close(&format!("scale {scale} d x"), a.1, b.1, tol);
            assert_close(&format!("scale {scale} d W"), a.2, b.2, tol);
        }
    }

    /// The plain product equals Burn's bit for bit, with transposed operands too.
    #[test]
    fn plain_matmul_matches_burn() {
        let d = Device::flex();
        let (a0, b0) = (random([300, 257], 7, 1.0), random([257, 190], 8, 1.0));
        let (a, b) = (
            Tensor::<2>::from_data(a0, &d),
            Tensor::<2>::from_data(b0, &d),
        );
        assert_close(
            "plain",
            matmul(a.clone(), b.clone()),
            a.clone().matmul(b.clone()),
            0.0,
        );
        let (at, bt) = (a.transpose(), b.transpose());
        assert_close(
            "transposed",
            matmul(bt.clone(), at.clone()),
            bt.matmul(at),
            0.0,
        );
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

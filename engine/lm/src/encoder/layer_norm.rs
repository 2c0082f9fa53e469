//! Layer normalisation over the last axis with a bias (`nn.LayerNorm`, biased variance).
//!
//! On the flex backend each row is normalised in one pass by a rayon task: Burn's version is
//! about ten element-wise ops over the whole activation, each on one thread, and an encoder
//! layer normalises twice.

use burn::backend::Flex;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 16;

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_rows(&x)
            .unwrap_or_else(|| self.forward_tensor(x))
    }

    /// Burn tensor ops: any backend.
    fn forward_tensor(&self, x: Tensor<3>) -> Tensor<3> {
        let centred = x.clone() - x.mean_dim(2);
        let var = (centred.clone() * centred.clone()).mean_dim(2);
        centred * (var + self.eps).sqrt().recip() * self.weight.val().unsqueeze::<3>()
            + self.bias.val().unsqueeze::<3>()
    }

    /// Row-parallel kernel on the flex backend's f32 data; `None` on other backends.
    fn forward_rows(&self, x: &Tensor<3>) -> Option<Tensor<3>> {
        let xs = x.clone().try_into_primitive::<Flex>().ok()?.to_contiguous();
        let w = self.weight.val().try_into_primitive::<Flex>().ok()?;
        let b = self.bias.val().try_into_primitive::<Flex>().ok()?;
        let (xs, w, b) = (
            xs.as_slice::<f32>()?,
            w.as_slice::<f32>()?,
            b.as_slice::<f32>()?,
        );
        let h = w.len();
        if h == 0 || b.len() != h || xs.len() % h != 0 {
            return None;
        }
        let eps = self.eps as f32;
        let mut out = xs.to_vec();
        out.par_chunks_mut(ROWS_PER_TASK * h).for_each(|o| {
            for row in o.chunks_exact_mut(h) {
                normalize_in_place(row, w, b, eps);
            }
        });
        Some(Tensor::from_data(
            TensorData::new(out, x.dims()),
            &x.device(),
        ))
    }
}

/// Normalises one row in place: `(x - mean) / sqrt(var + eps) * w + b` (biased variance).
pub fn normalize_in_place(row: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let h = row.len();
    let mean = row.iter().sum::<f32>() / h as f32;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, &w), &b) in row.iter_mut().zip(w).zip(b) {
        *v = (*v - mean) * inv * w + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn row_kernel_equals_the_tensor_ops() {
        let d = Device::flex();
        let ln = LayerNorm {
            weight: Param::from_tensor(Tensor::random([24], Distribution::Normal(1.0, 0.2), &d)),
            bias: Param::from_tensor(Tensor::random([24], Distribution::Normal(0.0, 0.2), &d)),
            eps: 1e-12,
        };
        // 3 x 13 rows: more than one task, the last one partial.
        let x = Tensor::<3>::random([3, 13, 24], Distribution::Normal(0.5, 2.0), &d);
        let fast = ln.forward_rows(&x).unwrap().into_data();
        let ops = ln.forward_tensor(x).into_data();
        fast.assert_approx_eq::<f32>(&ops, burn::tensor::Tolerance::absolute(1e-5));
    }
}

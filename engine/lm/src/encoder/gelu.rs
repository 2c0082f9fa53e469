//! GELU (erf form, transformers' `"gelu"`) split across the rayon pool on the flex backend.
//!
//! Burn's flex backend runs element-wise ops on one thread with the `libm` crate's `erff`; on
//! a batch of 64 messages that erf took a fifth of the encoder's CPU time under perf, serially.
//! Here each rayon task evaluates erf with Abramowitz & Stegun 7.1.26 (absolute error below
//! 1.5e-7), the approximation PyTorch's vectorised CPU `erf` uses.

use burn::backend::Flex;
use burn::tensor::{activation, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per rayon task: large enough to amortise scheduling.
const CHUNK: usize = 16 * 1024;

/// erf(x), Abramowitz & Stegun 7.1.26: `1 - poly(t) exp(-x^2)` with `t = 1 / (1 + p|x|)`.
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * (-ax * ax).exp()).copysign(x)
}

/// `0.5 x (1 + erf(x / sqrt 2))` of one value.
pub fn gelu_value(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// `0.5 x (1 + erf(x / sqrt 2))` element-wise.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let Ok(prim) = x.clone().try_into_primitive::<Flex>() else {
        // Other backends (CUDA) run Burn's own kernel.
        return activation::gelu(x);
    };
    let contiguous = prim.to_contiguous();
    let Some(values) = contiguous.as_slice::<f32>() else {
        return activation::gelu(x);
    };
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(o, v)| {
            for (o, &v) in o.iter_mut().zip(v) {
                *o = gelu_value(v);
            }
        });
    Tensor::from_data(TensorData::new(out, x.dims()), &x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// Against Burn's exact-erf GELU over [-12, 12], across several rayon chunks: the error
    /// is the erf approximation's (< 1.5e-7) scaled by |x| / 2, plus a few ulps of rounding
    /// (the tanh form of GELU would be off by up to ~1e-3).
    #[test]
    fn matches_burns_exact_gelu() {
        let n = 3 * CHUNK + 17;
        let data: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32 - 0.5) * 24.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(data.clone(), [n, 1]), &Device::flex());
        let ours = gelu(x.clone()).into_data().try_into_vec::<f32>().unwrap();
        let exact = activation::gelu(x)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        for ((a, b), x) in ours.iter().zip(&exact).zip(&data) {
            assert!(
                (a - b).abs() <= 4e-7 * x.abs().max(1.0),
                "gelu({x}): {a} vs {b}"
            );
        }
    }
}

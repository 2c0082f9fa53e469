//! GELU (erf form, transformers' `"gelu"`) split across the rayon pool on the flex backend.
//!
//! Burn's flex backend runs element-wise ops on one thread with the `libm` crate's `erff`; on
//! a batch of 64 messages that erf took a fifth of the encoder's CPU time under perf, serially.
//! Here each rayon task evaluates erf with Abramowitz & Stegun 7.1.26 (absolute error below
//! 1.5e-7), the approximation PyTorch's vectorised CPU `erf` uses.
//!
//! [`gelu_slice`] computes the same bits as [`gelu_value`] a chunk at a time: the exponentials
//! by the runtime's vector `exp` (bit for bit `f32::exp`), the rest compiled for the widest
//! vectors present; each value takes the same IEEE operations in the same order either way.

use burn::backend::Flex;
use burn::tensor::{activation, Tensor, TensorData};
use rayon::prelude::*;

use crate::runtime::silu_mul::exp_nonpositive;

/// Elements per rayon task: large enough to amortise scheduling.
const CHUNK: usize = 16 * 1024;

/// erf(x), Abramowitz & Stegun 7.1.26: `1 - poly(t) exp(-x^2)` with `t = 1 / (1 + p|x|)`.
fn erf(x: f32) -> f32 {
    let (poly, arg) = erf_parts(x.abs());
    (1.0 - poly * arg.exp()).copysign(x)
}

/// For `|x|`: the polynomial `poly(t)` of [`erf`] and the exponential's argument `-x^2`.
#[inline(always)]
fn erf_parts(ax: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (poly, -ax * ax)
}

/// `0.5 x (1 + erf(x / sqrt 2))` of one value.
pub fn gelu_value(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// Values per chunk of [`gelu_slice`]: the exponentials' arguments stay on the stack.
const SLICE_CHUNK: usize = 256;

/// [`gelu_value`] of every value in place, with the same bits, vectorised.
pub fn gelu_slice(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected.
            return unsafe { gelu_slice_avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was just detected.
            return unsafe { gelu_slice_avx2(x) };
        }
    }
    gelu_chunks(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_slice_avx512(x: &mut [f32]) {
    gelu_chunks(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gelu_slice_avx2(x: &mut [f32]) {
    gelu_chunks(x)
}

/// [`erf`] and [`gelu_value`] taken apart: the polynomial and the exponential's argument for a
/// chunk, its exponentials in one call, then the rest.
#[inline(always)]
fn gelu_chunks(x: &mut [f32]) {
    let mut poly = [0.0f32; SLICE_CHUNK];
    let mut e = [0.0f32; SLICE_CHUNK];
    for c in x.chunks_mut(SLICE_CHUNK) {
        let n = c.len();
        for ((v, p), e) in c.iter().zip(&mut poly[..n]).zip(&mut e[..n]) {
            (*p, *e) = erf_parts((v * std::f32::consts::FRAC_1_SQRT_2).abs());
        }
        exp_nonpositive(&mut e[..n]);
        for ((v, p), e) in c.iter_mut().zip(&poly[..n]).zip(&e[..n]) {
            let erf = (1.0 - p * e).copysign(*v * std::f32::consts::FRAC_1_SQRT_2);
            *v = 0.5 * *v * (1.0 + erf);
        }
    }
}

/// [`gelu_slice`] in place, split across the rayon pool from [`CHUNK`] values (below it,
/// waking the pool costs more than it saves).
pub fn gelu_in_place(x: &mut [f32]) {
    if x.len() >= CHUNK && !psy_core::semantic::this_thread_only() {
        x.par_chunks_mut(CHUNK).for_each(gelu_slice);
    } else {
        gelu_slice(x);
    }
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
    let mut out = values.to_vec();
    gelu_in_place(&mut out);
    Tensor::from_data(TensorData::new(out, x.dims()), &x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// The vector form against the scalar one, bit for bit: every 2^11-th f32 (both signs, NaNs,
    /// infinities, subnormals), a dense sweep of [-12, 12] and a length that ends mid-chunk.
    #[test]
    fn the_slice_form_has_the_scalar_bits() {
        let mut x: Vec<f32> = (0..1u32 << 21)
            .map(|i| f32::from_bits(i << 11 | i >> 10))
            .chain((0..100_003).map(|i| -12.0 + i as f32 * 24.0 / 100_003.0))
            .collect();
        let want: Vec<u32> = x.iter().map(|v| gelu_value(*v).to_bits()).collect();
        gelu_slice(&mut x);
        let differ = x
            .iter()
            .zip(&want)
            .filter(|(g, w)| g.to_bits() != **w && !(g.is_nan() && f32::from_bits(**w).is_nan()))
            .count();
        assert_eq!(differ, 0, "values whose bits differ");
    }

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

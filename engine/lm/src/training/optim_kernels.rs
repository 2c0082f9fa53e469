//! The optimizer's passes over flattened f32 parameters and gradients on flex, each one threaded
//! pass on psy's rayon pool: AdamW's update, the gradients' sum of squares and their scaling for
//! clipping.
//!
//! As Burn ops AdamW's update is about twelve single-threaded passes over each parameter, each
//! allocating its result: on the tiny Qwen3's full fine-tune (11 M parameters) they were about a
//! quarter of the step. Each kernel returns `None` (or the tensors back) for other dtypes and
//! backends, and the caller runs the Burn ops it is tested against.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use crate::runtime::fused::host::{dims, tensor, values, CHUNK};

/// AdamW's per-step constants in f32, as Burn's scalar ops round them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWScalars {
    /// `1 - lr * weight_decay`.
    pub decay: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    pub eps: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
}

/// A plain (non-autodiff) flex f32 tensor, or `t` back (boxed: a tensor handle is large).
fn plain_flex_f32(t: Tensor<1>) -> Result<FlexTensor, Box<Tensor<1>>> {
    if t.dtype() != DType::F32 || t.is_autodiff() || t.clone().try_into_primitive::<Flex>().is_err()
    {
        return Err(Box::new(t));
    }
    t.try_into_primitive::<Flex>()
        .map_err(|_| unreachable!("checked on a clone"))
}

/// `t` contiguous, at offset 0 and not shared, so it can be updated in place (copied otherwise).
fn owned(mut t: FlexTensor) -> FlexTensor {
    let whole = t.is_unique()
        && t.layout()
            .contiguous_offsets()
            .is_some_and(|(start, end)| start == 0 && end == t.storage::<f32>().len());
    if whole && t.try_storage_mut::<f32>().is_some() {
        t
    } else {
        let shape = dims(&t);
        let contiguous = t.to_contiguous();
        let data = match contiguous.as_slice::<f32>() {
            Some(v) => v.to_vec(),
            None => unreachable!("to_contiguous gives a contiguous tensor"),
        };
        tensor(data, shape)
    }
}

/// The values of a tensor made by [`owned`], mutably.
fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    t.try_storage_mut::<f32>()
        .expect("an owned, contiguous f32 tensor")
}

/// `torch.optim.AdamW`'s update of one flattened parameter `p` with gradient `g` and moments
/// `(m, v)`, in the order and f32 rounding of the Burn ops in `optim.rs` (so bit-identical to
/// them): returns `(p, m, v)` updated, or the inputs back when they are not flex f32 tensors of
/// one length.
#[allow(clippy::type_complexity)]
pub(crate) fn adamw_update(
    p: Tensor<1>,
    g: &Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    s: &AdamWScalars,
) -> Result<(Tensor<1>, Tensor<1>, Tensor<1>), Box<(Tensor<1>, Tensor<1>, Tensor<1>)>> {
    let n = p.dims()[0];
    if g.dims()[0] != n || m.dims()[0] != n || v.dims()[0] != n {
        return Err(Box::new((p, m, v)));
    }
    let grad = match plain_flex_f32(g.clone()) {
        Ok(t) => t.to_contiguous(),
        Err(_) => return Err(Box::new((p, m, v))),
    };
    let p = match plain_flex_f32(p) {
        Ok(t) => t,
        Err(p) => return Err(Box::new((*p, m, v))),
    };
    let m = match plain_flex_f32(m) {
        Ok(t) => t,
        Err(m) => return Err(Box::new((Tensor::from_primitive::<Flex>(p), *m, v))),
    };
    let v = match plain_flex_f32(v) {
        Ok(t) => t,
        Err(v) => {
            let (p, m) = (
                Tensor::from_primitive::<Flex>(p),
                Tensor::from_primitive::<Flex>(m),
            );
            return Err(Box::new((p, m, *v)));
        }
    };
    let (mut p, mut m, mut v) = (owned(p), owned(m), owned(v));
    let g = values(&grad);
    let s = *s;
    values_mut(&mut p)
        .par_chunks_mut(CHUNK)
        .zip(values_mut(&mut m).par_chunks_mut(CHUNK))
        .zip(values_mut(&mut v).par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| {
            for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                let decayed = *p * s.decay;
                *m = *m * s.beta1 + g * s.one_minus_beta1;
                *v = *v * s.beta2 + (g * g) * s.one_minus_beta2;
                let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
                *p = decayed - (*m / denom) * s.step_size;
            }
        });
    Ok((
        Tensor::from_primitive::<Flex>(p),
        Tensor::from_primitive::<Flex>(m),
        Tensor::from_primitive::<Flex>(v),
    ))
}

/// The sum of the squares of `g`'s values (f32 products, f64 sums per chunk and across chunks),
/// or `None` when `g` is not a flex f32 tensor.
pub(crate) fn sum_of_squares(g: &Tensor<1>) -> Option<f64> {
    let t = plain_flex_f32(g.clone()).ok()?.to_contiguous();
    Some(
        values(&t)
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&x| f64::from(x * x)).sum::<f64>())
            .sum(),
    )
}

/// `g * factor`, in place when `g` is not shared, or `g` back when it is not a flex f32 tensor.
pub(crate) fn scale(g: Tensor<1>, factor: f32) -> Result<Tensor<1>, Box<Tensor<1>>> {
    let mut t = owned(plain_flex_f32(g)?);
    values_mut(&mut t)
        .par_chunks_mut(CHUNK)
        .for_each(|c| c.iter_mut().for_each(|x| *x *= factor));
    Ok(Tensor::from_primitive::<Flex>(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fused::test_support::random;
    use burn::tensor::Device;

    fn plain(n: usize, seed: u64, scale: f32) -> Tensor<1> {
        Tensor::from_data(random([n], seed, scale), &Device::flex())
    }

    fn bits(t: Tensor<1>) -> Vec<u32> {
        let v = t.into_data().try_to_vec::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The update as the Burn ops of `optim.rs` compute it.
    fn burn_update(
        p: Tensor<1>,
        g: Tensor<1>,
        m: Tensor<1>,
        v: Tensor<1>,
        s: &AdamWScalars,
    ) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
        let p = p * s.decay;
        let m = m * s.beta1 + g.clone() * s.one_minus_beta1;
        let v = v * s.beta2 + (g.clone() * g) * s.one_minus_beta2;
        let denom = v.clone().sqrt() / s.bias_correction2_sqrt + s.eps;
        (p - (m.clone() / denom) * s.step_size, m, v)
    }

    #[test]
    fn adamw_update_is_bit_identical_to_the_burn_ops() {
        // Three chunks and a ragged tail; moments as after a few steps (v >= 0).
        let n = 2 * CHUNK + 1234;
        let s = AdamWScalars {
            decay: (1.0 - 1e-3 * 0.01) as f32,
            beta1: 0.9,
            one_minus_beta1: (1.0 - 0.9f64) as f32,
            beta2: 0.999,
            one_minus_beta2: (1.0 - 0.999f64) as f32,
            bias_correction2_sqrt: (1.0 - 0.999f64.powi(3)).sqrt() as f32,
            eps: 1e-8,
            step_size: (1e-3 / (1.0 - 0.9f64.powi(3))) as f32,
        };
        let (p, g, m) = (plain(n, 1, 1.0), plain(n, 2, 0.1), plain(n, 3, 0.01));
        let v = plain(n, 4, 1e-3).abs();
        let want = burn_update(p.clone(), g.clone(), m.clone(), v.clone(), &s);
        // The inputs are shared here (clones above), so this also covers the copying path.
        let got = adamw_update(p.clone(), &g, m.clone(), v.clone(), &s).expect("flex f32");
        assert_eq!(bits(got.0), bits(want.0), "parameter");
        assert_eq!(bits(got.1), bits(want.1), "first moment");
        assert_eq!(bits(got.2), bits(want.2), "second moment");
        // Unshared inputs: updated in place.
        let want = burn_update(p.clone(), g.clone(), m.clone(), v.clone(), &s);
        let (p, m, v) = (p * 1.0, m * 1.0, v * 1.0);
        let got = adamw_update(p, &g, m, v, &s).expect("flex f32");
        assert_eq!(bits(got.0), bits(want.0), "parameter, in place");
        assert_eq!(bits(got.1), bits(want.1), "first moment, in place");
        assert_eq!(bits(got.2), bits(want.2), "second moment, in place");
    }

    #[test]
    fn adamw_update_hands_back_mismatched_lengths() {
        let s = AdamWScalars {
            decay: 1.0,
            beta1: 0.9,
            one_minus_beta1: 0.1,
            beta2: 0.999,
            one_minus_beta2: 0.001,
            bias_correction2_sqrt: 1.0,
            eps: 1e-8,
            step_size: 1e-3,
        };
        let back = adamw_update(
            plain(8, 1, 1.0),
            &plain(9, 2, 1.0),
            plain(8, 3, 1.0),
            plain(8, 4, 1.0),
            &s,
        );
        assert!(back.is_err());
    }

    #[test]
    fn scale_and_sum_of_squares_match_the_burn_ops() {
        let n = 3 * CHUNK + 77;
        let g = plain(n, 5, 0.5);
        let want = g.clone() * 0.37f32;
        assert_eq!(bits(scale(g.clone(), 0.37).expect("flex f32")), bits(want));
        let burn: f32 = (g.clone() * g.clone()).sum().into_scalar();
        let ours = sum_of_squares(&g).expect("flex f32");
        let rel = (ours - f64::from(burn)).abs() / ours;
        println!("sum of squares: relative difference to Burn's f32 sum {rel:.2e}");
        assert!(rel < 1e-5, "ours {ours}, Burn {burn}");
    }
}

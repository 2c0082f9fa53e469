//! One decoded token of one sequence through the decoder layers on host memory, when every
//! projection is quantized with 8-bit activations: no Burn tensor op between the matrix
//! products.
//!
//! The tensor path runs about 25 Burn ops a layer for one token (the two RMSNorms as seven ops
//! each, the residual adds, reshapes, host copies in and out of the projections), each with its
//! allocation and layout checks, and hands the thread pool one job per projection. Here a layer
//! is five passes over the pool (query, key and value in one; the output projection; the
//! attention; gate and up with SiLU in one; down) and plain loops between them. The values are
//! those of the tensor path bit for bit: the same integer GEMVs, the attention of
//! `host_attention.rs`, and RMSNorm as Burn's ops compute it (`rms_norm_as_burn`).

use burn::backend::flex::simd::kernels::sum_rows_f32;
use burn::backend::Flex;
use burn::tensor::Tensor;

use super::host_attention::{decode_attention, Heads, RopeTables};
use super::projection::{decodes_in_lanes, Projection};
use super::quant::{has_int_kernel, Activations, IntKernel, IntOrder, QuantMatrix};
use super::silu_mul::silu_mul;

/// A layer cache's key and value buffers (`[1, kv_heads, capacity, head_dim]`).
pub(crate) type CacheSlots<'a> = (&'a mut Option<Tensor<4>>, &'a mut Option<Tensor<4>>);

/// An RMSNorm's weight and epsilon.
pub(crate) struct Norm {
    pub(crate) weight: Tensor<1>,
    pub(crate) eps: f64,
}

/// What one decoder layer's host step reads.
pub(crate) struct HostLayer<'a> {
    pub(crate) input_norm: Norm,
    pub(crate) post_norm: Norm,
    /// Per-head query and key norms (Qwen3).
    pub(crate) q_norm: Option<Norm>,
    pub(crate) k_norm: Option<Norm>,
    /// `q, k, v, o, gate, up, down`.
    pub(crate) projections: [&'a Projection; 7],
    pub(crate) heads: Heads,
}

/// The quantized matrix of `p` when the host step can multiply it: held quantized, 8-bit
/// activations with an integer kernel, no LoRA.
fn host_matrix(p: &Projection) -> Option<&QuantMatrix> {
    let q = p.quant.as_deref()?;
    (p.lora.is_none() && p.activations == Activations::Int8 && has_int_kernel(q.dtype()))
        .then_some(q)
}

/// `t`'s host f32 values when it is a contiguous f32 flex tensor.
fn host_values<const D: usize>(t: &Tensor<D>) -> Option<Vec<f32>> {
    let p = t.clone().try_into_primitive::<Flex>().ok()?;
    p.as_slice::<f32>().map(<[f32]>::to_vec)
}

/// A layer's weights and biases as the host step reads them, checked once per token.
pub(crate) struct Ready<'a> {
    pub(crate) mats: [&'a QuantMatrix; 7],
    /// Of the query, key, value and output projections.
    pub(crate) biases: [Option<Vec<f32>>; 4],
    pub(crate) input_norm: Vec<f32>,
    pub(crate) post_norm: Vec<f32>,
    pub(crate) q_norm: Option<Vec<f32>>,
    pub(crate) k_norm: Option<Vec<f32>>,
}

impl<'a> HostLayer<'a> {
    pub(crate) fn ready(&self) -> Option<Ready<'a>> {
        let mut mats = Vec::with_capacity(7);
        for p in self.projections {
            mats.push(host_matrix(p)?);
        }
        // The MLP's projections have no bias in any supported checkpoint.
        if self.projections[4..].iter().any(|p| p.bias.is_some()) {
            return None;
        }
        let mut biases: [Option<Vec<f32>>; 4] = Default::default();
        for (b, p) in biases.iter_mut().zip(self.projections) {
            if let Some(bias) = &p.bias {
                *b = Some(host_values(&bias.val())?);
            }
        }
        let norm = |n: &Option<Norm>| -> Option<Option<Vec<f32>>> {
            match n {
                Some(n) => host_values(&n.weight).map(Some),
                None => Some(None),
            }
        };
        if mats[4].rows() != mats[5].rows() {
            return None;
        }
        Some(Ready {
            mats: mats.try_into().ok()?,
            biases,
            input_norm: host_values(&self.input_norm.weight)?,
            post_norm: host_values(&self.post_norm.weight)?,
            q_norm: norm(&self.q_norm)?,
            k_norm: norm(&self.k_norm)?,
        })
    }
}

/// RMSNorm of each `w.len()`-sized row of `x` into `out`, with the values of
/// `RmsNorm::forward`'s Burn ops on f32 flex tensors bit for bit: `x * x`, its row sum by flex's
/// own kernel (whose order of additions depends on the CPU's vector width), divided by the row
/// length, `+ eps` (as f32), square root, reciprocal, then `x * r * w`.
pub(crate) fn rms_norm_as_burn(x: &[f32], w: &[f32], eps: f64, out: &mut [f32]) {
    let n = w.len();
    debug_assert_eq!(x.len(), out.len());
    let squares: Vec<f32> = x.iter().map(|v| v * v).collect();
    let rows = x.len() / n;
    let mut sums = vec![0.0f32; rows];
    sum_rows_f32(&squares, &mut sums, rows, n);
    for ((o, x), sum) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)).zip(sums) {
        let ms = sum / n as f32;
        let r = 1.0 / (ms + eps as f32).sqrt();
        for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
            *o = x * r * w;
        }
    }
}

/// `y += b` when the projection has a bias (Burn's `y + b`, element by element).
pub(crate) fn add_bias(y: &mut [f32], b: &Option<Vec<f32>>) {
    if let Some(b) = b {
        for (y, b) in y.iter_mut().zip(b) {
            *y += b;
        }
    }
}

/// Whether one token's products of `mats` take the engine's lane order
/// ([`decodes_in_lanes`]), as the tensor path's do.
fn lane_order(mats: &[&QuantMatrix]) -> bool {
    mats.iter().any(|m| decodes_in_lanes(m.dtype()))
}

/// One token's product with each of `mats`, in the engine's order (see [`lane_order`]).
fn products(mats: &[&QuantMatrix], x: &[f32], ys: &mut [&mut [f32]], kernel: IntKernel) {
    if lane_order(mats) {
        QuantMatrix::matmul_int_tiled_many(mats, x, 1, ys, kernel, IntOrder::Lanes);
    } else {
        QuantMatrix::gemv_int_many(mats, x, ys, kernel);
    }
}

/// Runs the hidden state `x` (`[hidden]`) of the token at position `pos` through `layers`,
/// each with its cache slots, in place; `None` (and `x`, the caches untouched) when a layer
/// cannot take the host step, for the tensor path.
pub(crate) fn decode_layers(
    layers: &mut [(HostLayer<'_>, CacheSlots<'_>)],
    x: &mut [f32],
    pos: usize,
    rope: &RopeTables,
) -> Option<()> {
    let ready: Vec<Ready<'_>> = layers
        .iter()
        .map(|(l, _)| l.ready())
        .collect::<Option<_>>()?;
    let kernel = IntKernel::detect();
    let hidden = x.len();
    let mut xn = vec![0.0f32; hidden];
    for ((layer, (keys, values)), r) in layers.iter_mut().zip(&ready) {
        let Heads { query, kv, dim } = layer.heads;
        let [q_m, k_m, v_m, o_m, gate_m, up_m, down_m] = r.mats;
        // Attention: norm, query/key/value in one pass, per-head norms, attention, output.
        rms_norm_as_burn(x, &r.input_norm, layer.input_norm.eps, &mut xn);
        let (mut q, mut k, mut v) = (
            vec![0.0f32; query * dim],
            vec![0.0f32; kv * dim],
            vec![0.0f32; kv * dim],
        );
        products(
            &[q_m, k_m, v_m],
            &xn,
            &mut [&mut q[..], &mut k[..], &mut v[..]],
            kernel,
        );
        add_bias(&mut q, &r.biases[0]);
        add_bias(&mut k, &r.biases[1]);
        add_bias(&mut v, &r.biases[2]);
        for (t, w, norm) in [
            (&mut q, &r.q_norm, &layer.q_norm),
            (&mut k, &r.k_norm, &layer.k_norm),
        ] {
            if let (Some(w), Some(norm)) = (w, norm) {
                let raw = t.clone();
                rms_norm_as_burn(&raw, w, norm.eps, t);
            }
        }
        let heads = decode_attention(&mut q, &mut k, &v, keys, values, pos, layer.heads, rope);
        let mut o = vec![0.0f32; hidden];
        products(&[o_m], &heads, &mut [&mut o[..]], kernel);
        add_bias(&mut o, &r.biases[3]);
        for (x, o) in x.iter_mut().zip(&o) {
            *x += o;
        }
        // MLP: norm, gate and up with SiLU in one pass, down.
        rms_norm_as_burn(x, &r.post_norm, layer.post_norm.eps, &mut xn);
        let mut act = vec![0.0f32; gate_m.rows()];
        if lane_order(&[gate_m, up_m]) {
            QuantMatrix::matmul_int_tiled_gated(
                gate_m,
                up_m,
                &xn,
                1,
                &mut act,
                kernel,
                IntOrder::Lanes,
                silu_mul,
            );
        } else {
            QuantMatrix::gemv_int_gated(gate_m, up_m, &xn, &mut act, kernel, silu_mul);
        }
        let mut down = vec![0.0f32; hidden];
        products(&[down_m], &act, &mut [&mut down[..]], kernel);
        for (x, d) in x.iter_mut().zip(&down) {
            *x += d;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::model::RmsNorm;
    use burn::module::Param;
    use burn::tensor::{Device, TensorData};

    fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// The host norm equals `RmsNorm::forward` (Burn's ops) bit for bit, on a hidden state
    /// (SmolLM2's width, not a multiple of the vector loop's 8 vectors) and per head (Qwen3's
    /// query heads), with values over several orders of magnitude.
    #[test]
    fn rms_norm_as_burn_equals_burns_ops() {
        let device = Device::flex();
        for (rows, n, seed) in [(1, 576, 1), (16, 128, 2), (3, 1000, 3), (1, 7, 4)] {
            for scale in [1e-3, 1.0, 300.0] {
                let x = values(rows * n, seed, scale);
                let w = values(n, seed + 10, 2.0);
                let norm = RmsNorm {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(w.clone(), [n]),
                        &device,
                    )),
                    eps: 1e-5,
                };
                let t =
                    Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 1, rows, n]), &device);
                let want = norm.forward(t).into_data().try_to_vec::<f32>().unwrap();
                let mut got = vec![0.0f32; x.len()];
                rms_norm_as_burn(&x, &w, 1e-5, &mut got);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{rows}x{n} x{scale}, value {i}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

//! The decoder layers of one batched step (`batch_forward.rs`) on host memory, when every
//! projection is quantized with 8-bit activations: no Burn tensor op between the matrix
//! products.
//!
//! The tensor path of a batched step runs about 25 Burn ops a layer (norms, residual adds,
//! reshapes, host copies in and out of the products), each with its allocation, and hands the
//! pool one job per parallel kernel from the engine's thread. For a small model those fixed
//! costs outweigh the products: SmolLM2-135M stepped one request at 65 tok/s in the engine
//! against 176 tok/s on the single-sequence path. Here a layer is the same products in the
//! same order (the engine's lanes, `IntOrder::Lanes`), the attention of `batch_attention.rs`
//! and plain loops between them, so every row has the tensor path's bits
//! (`host_feeds_equal_the_tensor_path` in `batch_forward.rs`).

use super::batch_attention::feed_attention;
use super::host_attention::{Heads, RopeTables};
use super::host_decode::{add_bias, rms_norm_as_burn, HostLayer, Ready};
use super::model::KvCache;
use super::quant::{IntKernel, IntOrder, QuantMatrix};
use super::silu_mul::silu_mul;

/// Runs the hidden states `x` (`[rows, hidden]`, the feeds' rows one after another, `counts[i]`
/// rows for sequence `i`) through `layers`, each sequence at its own positions in its own
/// cache, in place. Does not advance the caches' lengths (the caller does). `None`, with `x`
/// and the caches untouched, when a layer cannot take the host step.
pub(crate) fn feed_layers(
    layers: &[HostLayer<'_>],
    caches: &mut [&mut KvCache],
    x: &mut [f32],
    counts: &[usize],
    rope: &RopeTables,
) -> Option<()> {
    let ready: Vec<Ready<'_>> = layers.iter().map(HostLayer::ready).collect::<Option<_>>()?;
    let kernel = IntKernel::detect();
    let rows: usize = counts.iter().sum();
    let hidden = x.len() / rows.max(1);
    debug_assert_eq!(x.len(), rows * hidden);
    // The engine's order: a row's values do not depend on the other rows of the step.
    let order = IntOrder::Lanes;
    let mut xn = vec![0.0f32; x.len()];
    for (l, (layer, r)) in layers.iter().zip(&ready).enumerate() {
        let heads @ Heads { query, kv, dim } = layer.heads;
        let [q_m, k_m, v_m, o_m, gate_m, up_m, down_m] = r.mats;
        rms_norm_as_burn(x, &r.input_norm, layer.input_norm.eps, &mut xn);
        let (mut q, mut k, mut v) = (
            vec![0.0f32; rows * query * dim],
            vec![0.0f32; rows * kv * dim],
            vec![0.0f32; rows * kv * dim],
        );
        QuantMatrix::matmul_int_tiled_many(
            &[q_m, k_m, v_m],
            &xn,
            rows,
            &mut [&mut q[..], &mut k[..], &mut v[..]],
            kernel,
            order,
        );
        for (t, b, width) in [
            (&mut q, &r.biases[0], query * dim),
            (&mut k, &r.biases[1], kv * dim),
            (&mut v, &r.biases[2], kv * dim),
        ] {
            t.chunks_exact_mut(width).for_each(|row| add_bias(row, b));
        }
        for (t, w, norm) in [
            (&mut q, &r.q_norm, &layer.q_norm),
            (&mut k, &r.k_norm, &layer.k_norm),
        ] {
            if let (Some(w), Some(norm)) = (w, norm) {
                let raw = t.clone();
                rms_norm_as_burn(&raw, w, norm.eps, t);
            }
        }
        let context = feed_attention(&mut q, &mut k, &v, caches, counts, l, heads, rope);
        let mut o = vec![0.0f32; rows * hidden];
        QuantMatrix::matmul_int_tiled_many(
            &[o_m],
            &context,
            rows,
            &mut [&mut o[..]],
            kernel,
            order,
        );
        o.chunks_exact_mut(hidden)
            .for_each(|row| add_bias(row, &r.biases[3]));
        for (x, o) in x.iter_mut().zip(&o) {
            *x += o;
        }
        rms_norm_as_burn(x, &r.post_norm, layer.post_norm.eps, &mut xn);
        let mut act = vec![0.0f32; rows * gate_m.rows()];
        QuantMatrix::matmul_int_tiled_gated(
            gate_m, up_m, &xn, rows, &mut act, kernel, order, silu_mul,
        );
        let mut down = vec![0.0f32; rows * hidden];
        QuantMatrix::matmul_int_tiled_many(
            &[down_m],
            &act,
            rows,
            &mut [&mut down[..]],
            kernel,
            order,
        );
        for (x, d) in x.iter_mut().zip(&down) {
            *x += d;
        }
    }
    Some(())
}

//! The BERT forward on host memory, for inference: texts packed one after another without
//! padding, each block's projections as GEMMs on the packed rows (query, key and value fused
//! into one), and attention, LayerNorm and GELU as loops over rows.
//!
//! A planner's new turn encodes a few texts of 10-80 tokens; through Burn every block is some
//! twenty tensor ops, each with its dispatch, a copy for every transpose and a single-threaded
//! element-wise kernel, and short texts are padded to their batch's longest. Here the same
//! arithmetic runs on plain `f32` slices. Padding never changed a text's embedding (beyond
//! rounding), so packing does not either; every row of a GEMM sums its products in the same
//! order whatever rows are beside it, so a text's embedding does not depend on the texts
//! encoded with it.

use std::ops::Range;
use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::Tensor;
use psy_core::semantic::this_thread_only;
use rayon::prelude::*;

use super::gelu::gelu_in_place;
use super::key_major::KeyMajor;
use super::layer_norm::{normalize_in_place, LayerNorm};
use super::model::{BertLayer, BertModel};
use super::pooling::Pooling;
use super::precision::EncoderPrecision;
use super::split_bf16_gemm::SplitBf16Weights;
use crate::runtime::model::Linear;
use crate::runtime::quant::quantize::q8_0_matrix;
use crate::runtime::quant::{IntKernel, IntOrder, QuantMatrix};
use crate::runtime::silu_mul::exp_nonpositive;

/// GEMMs from this many multiply-adds run on the rayon pool: below it, waking the second
/// thread costs more than it saves (the threshold of the runtime's fused projection).
const PARALLEL_MACS: usize = 192 * 192 * 192;

/// Attention work (query rows times keys times hidden) from which rows are spread over the pool.
const PARALLEL_ATTENTION: usize = 1 << 20;

/// f32 values in host memory: the Burn model's own buffer when it can be read in place
/// (the embedding tables, 47 MB for MiniLM, are not copied), else a copy.
enum Values {
    Shared(FlexTensor),
    Owned(Vec<f32>),
}

impl Values {
    fn of<const D: usize>(t: Tensor<D>) -> Values {
        if let Ok(p) = t.clone().try_into_primitive::<Flex>() {
            let p = p.to_contiguous();
            if p.as_slice::<f32>().is_some() {
                return Values::Shared(p);
            }
        }
        Values::Owned(values(t))
    }

    fn slice(&self) -> &[f32] {
        match self {
            Values::Shared(t) => t.as_slice::<f32>().unwrap_or_default(),
            Values::Owned(v) => v,
        }
    }
}

/// A dense layer's weights: `Wᵀ` row-major `[in, out]` in f32, or `W` `[out, in]` in Q8_0
/// blocks for the integer kernels. The f32 weights are a transposed copy: gemm multiplies
/// `Wᵀ` row-major in place, while the Burn model's `[out, in]` would be repacked at every
/// product (a new turn's plan took ~25% longer reading it in place).
enum Weights {
    F32(Vec<f32>),
    Q8(QuantMatrix),
    SplitBf16(SplitBf16Weights),
}

/// A dense layer, `y = x Wᵀ + b`.
struct Dense {
    weights: Weights,
    bias: Vec<f32>,
    inputs: usize,
}

impl Dense {
    /// Projections side by side (query, key, value): one GEMM instead of three. With
    /// [`EncoderPrecision::Q8`] the weights are quantized to Q8_0 (a width that is not a whole
    /// number of 32-value blocks stays f32).
    fn from_linears(parts: &[&Linear], precision: EncoderPrecision) -> Dense {
        let inputs = parts[0].weight.dims()[1];
        let mut bias = Vec::new();
        for l in parts {
            let [out, inp] = l.weight.dims();
            assert_eq!(inp, inputs, "fused projections take the same input");
            match &l.bias {
                Some(b) => bias.extend(values(b.val())),
                None => bias.extend(std::iter::repeat_n(0.0, out)),
            }
        }
        let outputs = bias.len();
        // Stacked row after row: `[out, in]` of all the parts.
        let w: Vec<f32> = parts.iter().flat_map(|l| values(l.weight.val())).collect();
        if precision == EncoderPrecision::SplitBf16 {
            if let Some(m) = SplitBf16Weights::new(&w, outputs, inputs) {
                return Dense {
                    weights: Weights::SplitBf16(m),
                    bias,
                    inputs,
                };
            }
        }
        if precision == EncoderPrecision::Q8 {
            if let Ok(m) = q8_0_matrix(&w, outputs, inputs) {
                return Dense {
                    weights: Weights::Q8(m),
                    bias,
                    inputs,
                };
            }
        }
        let mut wt = vec![0.0f32; inputs * outputs];
        for (o, row) in w.chunks_exact(inputs).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                wt[i * outputs + o] = v;
            }
        }
        Dense {
            weights: Weights::F32(wt),
            bias,
            inputs,
        }
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `x Wᵀ + b` for the `rows` rows of `x`: the bias is written first and the GEMM adds the
    /// product to it, which rounds as adding the bias afterwards does.
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (k, n) = (self.inputs, self.outputs());
        debug_assert_eq!(x.len(), rows * k);
        let wt = match &self.weights {
            Weights::F32(wt) => wt,
            Weights::Q8(m) => {
                let mut out = vec![0.0f32; rows * n];
                if rows > 0 {
                    QuantMatrix::matmul_int_tiled_many(
                        &[m],
                        x,
                        rows,
                        &mut [&mut out],
                        IntKernel::detect(),
                        IntOrder::Lanes,
                    );
                }
                for row in out.chunks_exact_mut(n) {
                    for (y, b) in row.iter_mut().zip(&self.bias) {
                        *y += b;
                    }
                }
                return out;
            }
            Weights::SplitBf16(m) => {
                let mut out: Vec<f32> = Vec::with_capacity(rows * n);
                for _ in 0..rows {
                    out.extend_from_slice(&self.bias);
                }
                m.matmul_add(x, rows, &mut out);
                return out;
            }
        };
        let mut out: Vec<f32> = Vec::with_capacity(rows * n);
        for _ in 0..rows {
            out.extend_from_slice(&self.bias);
        }
        if rows == 0 {
            return out;
        }
        let parallelism = if rows * n * k >= PARALLEL_MACS && !this_thread_only() {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `out` is `rows x n`, `x` is `rows x k` and `wt` is `k x n`, all row-major and
        // live for the call; `read_dst` keeps the bias written above.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                wt.as_ptr(),
                1,
                n as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                parallelism,
            );
        }
        out
    }
}

/// Scale and shift of a LayerNorm.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn from(ln: &LayerNorm) -> Norm {
        Norm {
            weight: values(ln.weight.val()),
            bias: values(ln.bias.val()),
            eps: ln.eps as f32,
        }
    }

    /// Normalises every row of `x` in place.
    fn apply(&self, x: &mut [f32]) {
        let h = self.weight.len();
        let norm = |row: &mut [f32]| normalize_in_place(row, &self.weight, &self.bias, self.eps);
        if x.len() >= 64 * h && !this_thread_only() {
            x.par_chunks_mut(h).for_each(norm);
        } else {
            x.chunks_mut(h).for_each(norm);
        }
    }
}

/// One transformer block's weights.
pub struct HostLayer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

impl HostLayer {
    fn from(layer: &BertLayer, p: EncoderPrecision) -> HostLayer {
        let sa = &layer.attention.self_attention;
        HostLayer {
            qkv: Dense::from_linears(&[&sa.query, &sa.key, &sa.value], p),
            attention_out: Dense::from_linears(&[&layer.attention.output.dense], p),
            attention_norm: Norm::from(&layer.attention.output.layer_norm),
            intermediate: Dense::from_linears(&[&layer.intermediate.dense], p),
            output: Dense::from_linears(&[&layer.output.dense], p),
            output_norm: Norm::from(&layer.output.layer_norm),
        }
    }
}

/// Embedding tables and their LayerNorm.
struct HostEmbeddings {
    word: Values,
    position: Values,
    token_type: Values,
    norm: Norm,
}

/// A [`BertModel`]'s weights in host memory. Blocks are shared (`Arc`) between a model and a
/// copy with an adapter on its upper blocks.
pub struct HostBert {
    embeddings: Arc<HostEmbeddings>,
    layers: Vec<Arc<HostLayer>>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    precision: EncoderPrecision,
}

/// The tokens of one text as the model reads them.
pub struct TokenRow<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 above")
}

impl HostBert {
    /// Copies `model`'s weights (quantized to Q8_0 with [`EncoderPrecision::Q8`]).
    pub fn from_model(model: &BertModel, precision: EncoderPrecision) -> HostBert {
        let e = &model.embeddings;
        let embeddings = Arc::new(HostEmbeddings {
            word: Values::of(e.word_embeddings.weight.val()),
            position: Values::of(e.position_embeddings.weight.val()),
            token_type: Values::of(e.token_type_embeddings.weight.val()),
            norm: Norm::from(&e.layer_norm),
        });
        HostBert::with_embeddings(model, embeddings, precision, |i| {
            Arc::new(HostLayer::from(&model.layers[i], precision))
        })
    }

    /// `model`'s weights, taking this model's embeddings and the blocks `unchanged(i)` says
    /// are the same as this model's (an adapter's blocks are copied from `model`).
    pub fn sharing(&self, model: &BertModel, unchanged: impl Fn(usize) -> bool) -> HostBert {
        let precision = self.precision;
        HostBert::with_embeddings(model, Arc::clone(&self.embeddings), precision, |i| {
            if unchanged(i) {
                Arc::clone(&self.layers[i])
            } else {
                Arc::new(HostLayer::from(&model.layers[i], precision))
            }
        })
    }

    fn with_embeddings(
        model: &BertModel,
        embeddings: Arc<HostEmbeddings>,
        precision: EncoderPrecision,
        layer: impl Fn(usize) -> Arc<HostLayer>,
    ) -> HostBert {
        let sa = &model.layers[0].attention.self_attention;
        let hidden = embeddings.norm.weight.len();
        HostBert {
            embeddings,
            layers: (0..model.layers.len()).map(layer).collect(),
            heads: sa.num_heads,
            head_dim: sa.head_dim,
            hidden,
            precision,
        }
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Embedding output `[tokens, hidden]` of the texts, packed one after another.
    pub fn embed(&self, texts: &[TokenRow<'_>]) -> Vec<f32> {
        let h = self.hidden;
        let e = &self.embeddings;
        let (word, kind, place) = (e.word.slice(), e.token_type.slice(), e.position.slice());
        let total: usize = texts.iter().map(|t| t.ids.len()).sum();
        let mut x = Vec::with_capacity(total * h);
        for t in texts {
            for (pos, (&id, &ty)) in t.ids.iter().zip(t.type_ids).enumerate() {
                let word = &word[id as usize * h..][..h];
                let kind = &kind[ty as usize * h..][..h];
                let place = &place[pos * h..][..h];
                // (word + type) + position: the order the tensor version adds them in.
                x.extend(
                    word.iter()
                        .zip(kind)
                        .zip(place)
                        .map(|((w, k), p)| w + k + p),
                );
            }
        }
        e.norm.apply(&mut x);
        x
    }

    /// Runs blocks `layers` on packed hidden states `x` of texts with `lengths` tokens each.
    pub fn run(&self, x: &mut Vec<f32>, lengths: &[usize], layers: Range<usize>) {
        for layer in &self.layers[layers] {
            *x = self.block(layer, x, lengths);
        }
    }

    fn block(&self, layer: &HostLayer, x: &[f32], lengths: &[usize]) -> Vec<f32> {
        let rows = x.len() / self.hidden;
        let qkv = layer.qkv.forward(x, rows);
        let context = self.attend(&qkv, lengths);
        let mut y = layer.attention_out.forward(&context, rows);
        for (y, x) in y.iter_mut().zip(x) {
            *y += x;
        }
        layer.attention_norm.apply(&mut y);
        let mut inner = layer.intermediate.forward(&y, rows);
        gelu_in_place(&mut inner);
        let mut out = layer.output.forward(&inner, rows);
        for (o, y) in out.iter_mut().zip(&y) {
            *o += y;
        }
        layer.output_norm.apply(&mut out);
        out
    }

    /// Every head's softmax attention within each text: `[tokens, hidden]` context rows from
    /// the fused `[tokens, 3 hidden]` query-key-value rows.
    fn attend(&self, qkv: &[f32], lengths: &[usize]) -> Vec<f32> {
        let (h, d) = (self.hidden, self.head_dim);
        let scale = 1.0 / (d as f64).sqrt();
        let scale = scale as f32;
        // The text (its index, first row and length) of every row.
        let mut spans = Vec::with_capacity(qkv.len() / (3 * h));
        let mut start = 0;
        for (t, &len) in lengths.iter().enumerate() {
            spans.extend(std::iter::repeat_n((t, start, len), len));
            start += len;
        }
        // Every text's keys per head, transposed once for all its query rows.
        let mut firsts = Vec::with_capacity(lengths.len());
        let mut first = 0;
        for &len in lengths {
            firsts.push(first);
            first += len;
        }
        let keys: Vec<Vec<KeyMajor>> = firsts
            .iter()
            .zip(lengths)
            .map(|(&first, &len)| {
                (0..self.heads)
                    .map(|head| {
                        KeyMajor::new(len, d, |j| &qkv[(first + j) * 3 * h + h + head * d..][..d])
                    })
                    .collect()
            })
            .collect();
        let row = |(i, out): (usize, &mut [f32])| {
            let (text, first, len) = spans[i];
            let mut scores = vec![0.0f32; len];
            let mut q = vec![0.0f32; d];
            for head in 0..self.heads {
                for (q, v) in q.iter_mut().zip(&qkv[i * 3 * h + head * d..][..d]) {
                    *q = v * scale;
                }
                // Each score as `dot` sums it, 16 keys at a time.
                keys[text][head].scores(&q, &mut scores);
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                for s in scores.iter_mut() {
                    *s -= max;
                }
                // `f32::exp`'s bits, 16 at a time; summed in order as before.
                exp_nonpositive(&mut scores);
                let sum = scores.iter().fold(0.0f32, |a, s| a + s);
                let ctx = &mut out[head * d..][..d];
                ctx.fill(0.0);
                for (j, s) in scores.iter().enumerate() {
                    let p = s / sum;
                    let v = &qkv[(first + j) * 3 * h + 2 * h + head * d..][..d];
                    for (c, v) in ctx.iter_mut().zip(v) {
                        *c += p * v;
                    }
                }
            }
        };
        let rows = spans.len();
        let mut context = vec![0.0f32; rows * h];
        let work: usize = lengths.iter().map(|l| l * l).sum::<usize>() * h;
        if work >= PARALLEL_ATTENTION && !this_thread_only() {
            context.par_chunks_mut(h).enumerate().for_each(row);
        } else {
            context.chunks_mut(h).enumerate().for_each(row);
        }
        context
    }

    /// One vector per text from packed last hidden states.
    pub fn pool(
        &self,
        x: &[f32],
        lengths: &[usize],
        pooling: Pooling,
        normalize: bool,
    ) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let mut start = 0;
        let mut out = Vec::with_capacity(lengths.len());
        for &len in lengths {
            let rows = &x[start * h..(start + len) * h];
            start += len;
            let mut v = match pooling {
                Pooling::Cls => rows[..h].to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0.0f32; h];
                    for r in rows.chunks_exact(h) {
                        for (s, v) in sum.iter_mut().zip(r) {
                            *s += v;
                        }
                    }
                    // sentence-transformers clamps the token count at 1e-9.
                    let count = (len as f32).max(1e-9);
                    sum.iter_mut().for_each(|s| *s /= count);
                    sum
                }
            };
            if normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            out.push(v);
        }
        out
    }
}

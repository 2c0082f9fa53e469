//! A BERT encoder (`BertModel` without its pooler) as a Burn module.
//!
//! Struct names follow transformers' `modeling_bert.py` and [`BertModel::load`] reads the
//! checkpoint's own names (`encoder.layer.N.attention.self.query.weight`, ...). Projections reuse
//! the runtime's [`Linear`], which keeps the HF `[out, in]` layout and its GEMM paths.

use burn::module::Module;
use burn::tensor::{activation, Device, Int, Tensor};

use super::config::BertConfig;
use super::gelu::gelu;
use super::layer_norm::LayerNorm;
use crate::runtime::dense::load;
use crate::runtime::model::{Embedding, Linear};
use crate::runtime::weights::TensorSource;
use crate::runtime::RuntimeError;

type Result<T> = std::result::Result<T, RuntimeError>;

fn linear(
    src: &mut dyn TensorSource,
    prefix: &str,
    out: usize,
    inp: usize,
    device: &Device,
) -> Result<Linear> {
    Ok(Linear {
        weight: load(src, &format!("{prefix}.weight"), [out, inp], device)?,
        bias: Some(load(src, &format!("{prefix}.bias"), [out], device)?),
        lora: None,
    })
}

/// Token count from which [`dense`] computes `x W^T` rather than the runtime's `W x^T`.
const ROW_MAJOR_FROM_TOKENS: usize = 256;

/// `y = x W^T + b`. For a batch of texts, `x W^T` (gemm repacks the small weight, the output
/// needs no transpose) took ~20% less CPU than the runtime's [`Linear::forward`] on 64 messages
/// (~1300 tokens a batch); for one ~30-token message the runtime's `W x^T` took ~40% less.
/// A layer with a LoRA adapter (the risk screen's fine-tuning) takes the runtime's path, which
/// applies it.
fn dense(l: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, s, k] = x.dims();
    if b * s < ROW_MAJOR_FROM_TOKENS || l.lora.is_some() {
        return l.forward(x);
    }
    let w = l.weight.val();
    let n = w.dims()[0];
    let y = x
        .reshape([b * s, k])
        .matmul(w.transpose())
        .reshape([b, s, n]);
    match &l.bias {
        Some(bias) => y + bias.val().unsqueeze::<3>(),
        None => y,
    }
}

fn layer_norm(
    src: &mut dyn TensorSource,
    prefix: &str,
    dim: usize,
    eps: f64,
    d: &Device,
) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: load(src, &format!("{prefix}.weight"), [dim], d)?,
        bias: load(src, &format!("{prefix}.bias"), [dim], d)?,
        eps,
    })
}

/// The attention bias of a `[batch, seq]` padding mask (1 for tokens): 0 for real tokens and
/// f32::MIN for padding, `[batch, 1, 1, seq]` (transformers adds `finfo.min` the same way).
pub fn mask_bias(mask: Tensor<2>) -> Tensor<4> {
    let [b, s] = mask.dims();
    (mask - 1.0).mul_scalar(f32::MAX).reshape([b, 1, 1, s])
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn forward(&self, ids: Tensor<2, Int>, type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        let lookup = |table: &Embedding, ids: Tensor<2, Int>| {
            let w = table.weight.val();
            let h = w.dims()[1];
            w.select(0, ids.reshape([b * s])).reshape([b, s, h])
        };
        // Absolute positions 0..s: every text starts at position 0 (right padding).
        let positions = self.position_embeddings.weight.val().narrow(0, 0, s);
        let x = lookup(&self.word_embeddings, ids)
            + lookup(&self.token_type_embeddings, type_ids)
            + positions.unsqueeze::<3>();
        self.layer_norm.forward(x)
    }
}

/// Multi-head self-attention (`attention.self`): every token attends to every unmasked token.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub num_heads: usize,
    pub head_dim: usize,
}

impl BertSelfAttention {
    /// `x` `[batch, seq, hidden]`; `mask_bias` `[batch, 1, 1, seq]` is 0 for real tokens and
    /// a huge negative number for padding, so padding gets zero attention weight.
    fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, d) = (self.num_heads, self.head_dim);
        // 1. project and split heads: [batch, heads, seq, head_dim].
        let heads = |t: Tensor<3>| t.reshape([b, s, h, d]).swap_dims(1, 2);
        let q = heads(dense(&self.query, x.clone())) * (1.0 / (d as f64).sqrt());
        let k = heads(dense(&self.key, x.clone()));
        let v = heads(dense(&self.value, x));
        // 2. scaled scores plus the padding mask, softmax over keys.
        let probs = activation::softmax(q.matmul(k.swap_dims(2, 3)) + mask_bias, 3);
        // 3. weighted values, heads merged back.
        probs.matmul(v).swap_dims(1, 2).reshape([b, s, h * d])
    }
}

/// Output projection of the attention, residual and LayerNorm (`attention.output`).
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

/// `attention.self` then `attention.output`.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// HF `attention.self` (`self` is a Rust keyword).
    pub self_attention: BertSelfAttention,
    pub output: BertSelfOutput,
}

/// Feed-forward expansion with GELU (`intermediate`).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
}

/// Feed-forward contraction, residual and LayerNorm (`output`).
#[derive(Module, Debug)]
pub struct BertOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

/// One post-LayerNorm transformer block (`encoder.layer.N`).
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
}

impl BertLayer {
    /// The projections of the block with their HF names under `encoder.layer.N.`.
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Linear); 6] {
        [
            (
                "attention.self.query",
                &mut self.attention.self_attention.query,
            ),
            ("attention.self.key", &mut self.attention.self_attention.key),
            (
                "attention.self.value",
                &mut self.attention.self_attention.value,
            ),
            ("attention.output.dense", &mut self.attention.output.dense),
            ("intermediate.dense", &mut self.intermediate.dense),
            ("output.dense", &mut self.output.dense),
        ]
    }

    pub fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let attn = self.attention.self_attention.forward(x.clone(), mask_bias);
        let out = &self.attention.output;
        let x = out.layer_norm.forward(dense(&out.dense, attn) + x);
        let inner = gelu(dense(&self.intermediate.dense, x.clone()));
        self.output
            .layer_norm
            .forward(dense(&self.output.dense, inner) + x)
    }
}

/// Embeddings and the encoder stack; `forward` returns the last hidden state.
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub layers: Vec<BertLayer>,
}

impl BertModel {
    /// Builds the model from the checkpoint's tensors; names may carry a `bert.` prefix (as in
    /// `BertFor*` checkpoints). Tensors it does not use (pooler, position ids, task heads) are
    /// left in the file.
    pub fn load(c: &BertConfig, src: &mut dyn TensorSource, device: &Device) -> Result<Self> {
        let root = if src.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let (hd, eps) = (c.hidden_size, c.layer_norm_eps);
        let table = |src: &mut dyn TensorSource, name: &str, rows: usize| -> Result<Embedding> {
            Ok(Embedding {
                weight: load(
                    src,
                    &format!("{root}embeddings.{name}.weight"),
                    [rows, hd],
                    device,
                )?,
            })
        };
        let embeddings = BertEmbeddings {
            word_embeddings: table(src, "word_embeddings", c.vocab_size)?,
            position_embeddings: table(src, "position_embeddings", c.max_position_embeddings)?,
            token_type_embeddings: table(src, "token_type_embeddings", c.type_vocab_size)?,
            layer_norm: layer_norm(src, &format!("{root}embeddings.LayerNorm"), hd, eps, device)?,
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("{root}encoder.layer.{i}");
            let inter = c.intermediate_size;
            layers.push(BertLayer {
                attention: BertAttention {
                    self_attention: BertSelfAttention {
                        query: linear(src, &format!("{p}.attention.self.query"), hd, hd, device)?,
                        key: linear(src, &format!("{p}.attention.self.key"), hd, hd, device)?,
                        value: linear(src, &format!("{p}.attention.self.value"), hd, hd, device)?,
                        num_heads: c.num_attention_heads,
                        head_dim: c.head_dim(),
                    },
                    output: BertSelfOutput {
                        dense: linear(src, &format!("{p}.attention.output.dense"), hd, hd, device)?,
                        layer_norm: layer_norm(
                            src,
                            &format!("{p}.attention.output.LayerNorm"),
                            hd,
                            eps,
                            device,
                        )?,
                    },
                },
                intermediate: BertIntermediate {
                    dense: linear(src, &format!("{p}.intermediate.dense"), inter, hd, device)?,
                },
                output: BertOutput {
                    dense: linear(src, &format!("{p}.output.dense"), hd, inter, device)?,
                    layer_norm: layer_norm(src, &format!("{p}.output.LayerNorm"), hd, eps, device)?,
                },
            });
        }
        tracing::info!(
            layers = c.num_hidden_layers,
            hidden = hd,
            vocab = c.vocab_size,
            origin = %src.origin().display(),
            "encoder loaded"
        );
        Ok(Self { embeddings, layers })
    }

    /// Last hidden state `[batch, seq, hidden]` of right-padded `ids` `[batch, seq]`;
    /// `mask` `[batch, seq]` is 1 for real tokens and 0 for padding. `seq` must not exceed
    /// `max_position_embeddings` ([`super::Encoder`] truncates to at most that).
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        type_ids: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<3> {
        self.forward_until(ids, type_ids, mask, self.layers.len())
    }

    /// The hidden state after the first `layers` blocks (all of them: [`BertModel::forward`]).
    /// The risk screen's fine-tuning runs the frozen lower blocks once with this.
    pub fn forward_until(
        &self,
        ids: Tensor<2, Int>,
        type_ids: Tensor<2, Int>,
        mask: Tensor<2>,
        layers: usize,
    ) -> Tensor<3> {
        let mask_bias = mask_bias(mask);
        let mut x = self.embeddings.forward(ids, type_ids);
        for layer in self.layers.iter().take(layers) {
            x = layer.forward(x, mask_bias.clone());
        }
        x
    }

    /// Device holding the weights.
    pub fn device(&self) -> Device {
        self.embeddings.layer_norm.weight.val().device()
    }
}

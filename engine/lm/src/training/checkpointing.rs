//! The body's backward run one decoder layer at a time: gradient checkpointing per layer, and
//! the seam where memory-efficient attention ([`super::attention_blocked`]) enters the graph.
//!
//! Burn 0.22's own checkpointing (`GradientCheckpointingStrategy::Balanced`, chosen per
//! device) recomputes the element-wise ops it marks memory-bound and keeps every matmul
//! output: it cannot say "keep only each layer's input". So the layers run here on detached
//! inputs. With `gradient_checkpointing`, the forward runs them without autodiff and keeps
//! each layer's input; backward walks the layers in reverse, re-runs each on its input (now a
//! leaf that requires grad, with the same LoRA dropout masks) and back-propagates the upstream
//! gradient `g` through `sum(out * g)`, whose gradient with respect to `out` is exactly `g`.
//! Without it, each layer's graph is built in the forward and kept until its turn.
//!
//! Under bf16 each part is cast from the f32 masters where it is built (a layer, the
//! embeddings, the final norm, the head), so every separate backward pass finds its own cast
//! back to the masters; the scalars backward starts from are f32.

use burn::module::Module;
use burn::tensor::{Gradients, Tensor};
use psy_core::train_spec::{TrainAttention, TrainPrecision, TrainSection};

use super::attention_blocked::{self, Saved};
use super::cast::{compute_dtype, in_dtype, in_f32, to_dtype};
use super::loss::{head_loss, masked_lm_loss, Batch};
use super::optim::{accumulate_grads, NamedGrads};
use crate::runtime::lora::{dropout_position, with_dropout_at};
use crate::runtime::model::{ids_tensor, DecoderLayer, Rotary};
use crate::runtime::CausalLm;

/// How the body trades memory for compute (the `[train]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainMemory {
    pub gradient_checkpointing: bool,
    pub attention: TrainAttention,
    /// Query/key rows per tile of the memory-efficient attention.
    pub block: usize,
    /// The compute dtype (bf16: cast copies of the f32 masters) and the estimate's bytes.
    pub precision: TrainPrecision,
}

impl Default for TrainMemory {
    fn default() -> Self {
        TrainMemory {
            gradient_checkpointing: false,
            attention: TrainAttention::Eager,
            block: attention_blocked::DEFAULT_BLOCK,
            precision: TrainPrecision::F32,
        }
    }
}

impl TrainMemory {
    pub fn from_section(t: &TrainSection) -> Self {
        TrainMemory {
            gradient_checkpointing: t.gradient_checkpointing,
            attention: t.attention,
            precision: t.precision,
            ..Default::default()
        }
    }

    /// Neither feature: the whole step is one autodiff graph (`lm_loss` + `backward`).
    pub fn is_plain(&self) -> bool {
        !self.gradient_checkpointing && self.attention == TrainAttention::Eager
    }
}

/// One decoder layer's autodiff graph from a detached input, ready for backward.
// One value per decoder layer per step: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum LayerGraph {
    Eager {
        input: Tensor<3>,
        out: Tensor<3>,
    },
    /// Projections and norms before the attention core (`input -> q, k, v`), the core on plain
    /// tensors, and the rest of the layer from the core's output (a leaf) and the residual.
    MemoryEfficient(Box<SplitLayer>),
}

/// [`LayerGraph::MemoryEfficient`]'s parts.
struct SplitLayer {
    input: Tensor<3>,
    qkv: [Tensor<4>; 3],
    saved: Saved,
    heads: Tensor<4>,
    residual: Tensor<3>,
    out: Tensor<3>,
}

impl LayerGraph {
    /// Builds the graph of `layer` on the plain input `x`.
    fn build(layer: &DecoderLayer, rotary: &Rotary, x: Tensor<3>, mem: &TrainMemory) -> Self {
        match mem.attention {
            TrainAttention::Eager => {
                let input = Tensor::from_inner(x).require_grad();
                let out = layer.forward_uncached(input.clone(), rotary);
                LayerGraph::Eager { input, out }
            }
            TrainAttention::MemoryEfficient => {
                let input = Tensor::from_inner(x.clone()).require_grad();
                let (q, k, v) = layer.attention_input(input.clone(), rotary);
                let saved = attention_blocked::forward(
                    &q.clone().inner(),
                    &k.clone().inner(),
                    &v.clone().inner(),
                    mem.block,
                );
                let heads = Tensor::from_inner(saved.out.clone()).require_grad();
                let residual = Tensor::from_inner(x).require_grad();
                let out = layer.after_attention(residual.clone(), heads.clone());
                LayerGraph::MemoryEfficient(Box::new(SplitLayer {
                    input,
                    qkv: [q, k, v],
                    saved,
                    heads,
                    residual,
                    out,
                }))
            }
        }
    }

    /// The layer output as a plain tensor (the next layer's input).
    fn output(&self) -> Tensor<3> {
        match self {
            LayerGraph::Eager { out, .. } => out.clone().inner(),
            LayerGraph::MemoryEfficient(split) => split.out.clone().inner(),
        }
    }

    /// Back-propagates `g` (gradient of the layer output, plain), adds the parameter gradients
    /// to `acc` and returns the gradient of the layer input (plain).
    fn backward(
        self,
        model: &CausalLm,
        g: Tensor<3>,
        mem: &TrainMemory,
        acc: &mut NamedGrads,
    ) -> Tensor<3> {
        match self {
            LayerGraph::Eager { input, out } => {
                let grads = backward_into(model, in_f32((out * Tensor::from_inner(g)).sum()), acc);
                grad_of(&input, &grads)
            }
            LayerGraph::MemoryEfficient(split) => {
                let SplitLayer {
                    input,
                    qkv: [q, k, v],
                    saved,
                    heads,
                    residual,
                    out,
                } = *split;
                let grads = backward_into(model, in_f32((out * Tensor::from_inner(g)).sum()), acc);
                let d_heads = grad_of(&heads, &grads);
                let d_residual = grad_of(&residual, &grads);
                let d = attention_blocked::backward(
                    &q.clone().inner(),
                    &k.clone().inner(),
                    &v.clone().inner(),
                    &saved,
                    &d_heads,
                    mem.block,
                );
                let inject = in_f32((q * Tensor::from_inner(d.q)).sum())
                    + in_f32((k * Tensor::from_inner(d.k)).sum())
                    + in_f32((v * Tensor::from_inner(d.v)).sum());
                let grads = backward_into(model, inject, acc);
                grad_of(&input, &grads) + d_residual
            }
        }
    }
}

/// Runs backward from `root` and moves the trained parameters' gradients into `acc`.
fn backward_into(model: &CausalLm, root: Tensor<1>, acc: &mut NamedGrads) -> Gradients {
    let mut grads = root.backward();
    accumulate_grads(model, &mut grads, acc, 1.0);
    grads
}

/// Gradient of a leaf that required grad (zeros when nothing reached it).
fn grad_of<const D: usize>(leaf: &Tensor<D>, grads: &Gradients) -> Tensor<D> {
    leaf.grad(grads)
        .unwrap_or_else(|| leaf.clone().inner().zeros_like())
}

/// What the forward keeps of one layer for backward.
#[allow(clippy::large_enum_variant)]
enum Kept {
    /// Checkpointing: the layer input and where the LoRA dropout stream stood before it.
    Input(Tensor<3>, Option<(u64, u64)>),
    Graph(LayerGraph),
}

/// The layer without autodiff (checkpointing's forward): same ops as [`LayerGraph::build`].
fn forward_plain(
    layer: &DecoderLayer,
    rotary: &Rotary,
    x: Tensor<3>,
    mem: &TrainMemory,
) -> Tensor<3> {
    match mem.attention {
        TrainAttention::Eager => layer.forward_uncached(x, rotary),
        TrainAttention::MemoryEfficient => {
            let (q, k, v) = layer.attention_input(x.clone(), rotary);
            let saved = attention_blocked::forward(&q, &k, &v, mem.block);
            layer.after_attention(x, saved.out)
        }
    }
}

/// Loss (`lm_loss(..) * scale`, as a number) and the gradients of every trained parameter by
/// name, computed layer by layer as `mem` says. Equal to `lm_loss(..) * scale` followed by
/// `backward` (`tests/train_memory.rs`); call inside `with_dropout` as that would be.
pub fn loss_and_grads(
    model: &CausalLm,
    batch: &Batch,
    scale: f64,
    mem: &TrainMemory,
) -> (f64, NamedGrads) {
    let device = model.device();
    let dtype = compute_dtype(mem.precision);
    let plain = mem
        .gradient_checkpointing
        .then(|| in_dtype(&model.valid(), dtype));
    // A quantized (GGUF) table dequantises to f32: cast its rows like the parameters.
    let embedded = to_dtype(
        in_dtype(&model.model.embed_tokens, dtype).lookup(ids_tensor(&batch.input_ids, &device)),
        dtype,
    );
    let mut x = embedded.clone().inner();
    let mut kept = Vec::with_capacity(model.model.layers.len());
    for (i, layer) in model.model.layers.iter().enumerate() {
        match &plain {
            Some(p) => {
                kept.push(Kept::Input(x.clone(), dropout_position()));
                x = forward_plain(&p.model.layers[i], &p.rotary, x, mem);
            }
            None => {
                let graph = LayerGraph::build(&in_dtype(layer, dtype), &model.rotary, x, mem);
                x = graph.output();
                kept.push(Kept::Graph(graph));
            }
        }
    }
    drop(plain);
    // Final norm, head and loss on the last layer's output as a leaf.
    let last = Tensor::from_inner(x).require_grad();
    let hidden = in_dtype(&model.model.norm, dtype).forward(last.clone());
    let loss = if model.head_is_plain() {
        // Rounded to the compute dtype as the plain path's copy is; the loss is formed in f32.
        head_loss(hidden, to_dtype(model.head_weight(), dtype), batch)
    } else {
        let logits = match &model.lm_head {
            Some(head) => in_dtype(head, dtype).forward(hidden),
            None => in_dtype(&model.model.embed_tokens, dtype).as_head(hidden),
        };
        masked_lm_loss(in_f32(logits), batch)
    } * scale;
    let value = f64::from(loss.clone().inner().into_scalar::<f32>());
    let mut acc = NamedGrads::new();
    let grads = backward_into(model, loss, &mut acc);
    let mut g = grad_of(&last, &grads);
    drop(grads);
    for (i, k) in kept.into_iter().enumerate().rev() {
        let graph = match k {
            Kept::Graph(graph) => graph,
            Kept::Input(input, position) => with_dropout_at(position, || {
                let layer = in_dtype(&model.model.layers[i], dtype);
                LayerGraph::build(&layer, &model.rotary, input, mem)
            }),
        };
        g = graph.backward(model, g, mem, &mut acc);
    }
    if embedded.is_tracked() {
        backward_into(
            model,
            in_f32((embedded * Tensor::from_inner(g)).sum()),
            &mut acc,
        );
    }
    (value, acc)
}

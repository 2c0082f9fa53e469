//! What `psy train --dry-run` prints: the memory one training step needs, from `config.json`
//! and the `[train]` section alone (no weights loaded, no device touched).
//!
//! Counted in bytes of the run's precision (f32: 4 a value; bf16: 2 for the weights' compute
//! copy and the layer inputs, 4 for the f32 masters, gradients and AdamW moments, and for the
//! attention scores, whose mask and softmax work in f32). The activation terms count what the
//! autodiff graph keeps for backward per decoder layer (counted from the ops; see
//! [`layer_bytes`]), plus the transient
//! of the step that holds most at once: the head + loss, or backward walking one layer. That
//! transient is the one measured (not counted) part: about one layer's kept values while the
//! plain backward walks a layer, about half of one while a recomputed layer is back-propagated
//! (its graph is freed as backward consumes it). `tests/train_memory.rs` checks the total
//! against the peak a counting allocator measures.

use psy_core::train_spec::{TrainAttention, TrainPrecision};

use super::checkpointing::TrainMemory;
use super::loss::LOGIT_CHUNK_ROWS;
use crate::runtime::memory_check::available_memory;
use crate::runtime::ModelConfig;

/// Bytes needed for training, by part.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    pub grads: u64,
    pub optimizer: u64,
    pub activations: u64,
    pub available: Option<u64>,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.grads + self.optimizer + self.activations
    }
    pub fn describe(&self) -> String {
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "memory estimate: weights {:.1} MiB, grads {:.1} MiB, optimizer {:.1} MiB, activations {:.1} MiB, total {:.1} MiB (available {})",
            mb(self.weights), mb(self.grads), mb(self.optimizer), mb(self.activations), mb(self.total()),
            self.available.map_or("unknown".into(), |a| format!("{:.1} MiB", mb(a)))
        )
    }
}

/// Query rows per block of the eager training attention (the runtime's `QUERY_BLOCK`).
const EAGER_QUERY_BLOCK: u64 = 64;

/// Score entries one head computes in the eager blocked attention at `len` tokens: query
/// block j of `b_j` rows sees the keys up to its last row.
fn eager_score_area(len: u64) -> u64 {
    let mut area = 0;
    let mut q0 = 0;
    while q0 < len {
        let rows = EAGER_QUERY_BLOCK.min(len - q0);
        area += rows * (q0 + rows);
        q0 += rows;
    }
    area
}

/// Bytes a kept activation value of the layers' linear parts takes. bf16 values take 2, but the
/// bf16 step measured 1.5x that on average (`tests/train_memory.rs`, 2,048 tokens: the RMS
/// norms keep f32 copies of their inputs, and the memory-efficient step measured 33.5 MiB
/// against 22.1 MiB counted at 2 bytes), so 3 is counted.
fn activation_bytes(precision: TrainPrecision) -> u64 {
    match precision {
        TrainPrecision::F32 => 4,
        TrainPrecision::Bf16 => 3,
    }
}

/// Bytes one decoder layer's graph keeps for backward, at `tok` tokens of `rows` rows.
fn layer_bytes(
    c: &ModelConfig,
    rows: u64,
    len: u64,
    attention: TrainAttention,
    precision: TrainPrecision,
    fused: bool,
) -> u64 {
    let tok = rows * len;
    let h = c.hidden_size as u64;
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let inter = c.intermediate_size as u64;
    let heads = c.num_attention_heads as u64;
    let linear = if fused {
        // Each fused op keeps only its inputs: the norms theirs (the hidden states twice, the
        // queries and keys), the projections theirs (the normed states, the attention output,
        // SwiGLU's output), the attention Q, K and V, SwiGLU gate and up; RoPE keeps nothing.
        tok * (4 * h + 3 * q + 3 * kv + 3 * inter)
    } else {
        // Norms keep their input and normalised output; projections their input; q/k norms
        // and RoPE each keep an input and a product; SwiGLU keeps gate, up, silu and their
        // product.
        tok * (10 * h + 4 * q + 4 * kv + 4 * inter)
    };
    let b = activation_bytes(precision);
    let attention = match attention {
        // Per block: the softmax's exp and its normalised output (both kept for backward), in
        // f32 whatever the precision (the bf16 step takes the softmax in f32); the fused
        // kernel keeps the probabilities alone.
        TrainAttention::Eager => eager_score_bytes(c, rows, len, if fused { 1 } else { 2 }),
        // The core's output (a leaf of the rest of the layer) and one log-sum-exp per row.
        TrainAttention::MemoryEfficient => b * tok * (q + heads),
    };
    b * linear + attention
}

/// Bytes of `copies` f32 score tensors of the eager blocked attention.
fn eager_score_bytes(c: &ModelConfig, rows: u64, len: u64, copies: u64) -> u64 {
    4 * copies * rows * c.num_attention_heads as u64 * eager_score_area(len)
}

/// Whether the step runs psy's fused CPU kernels ([`crate::runtime::fused`]): in f32 on the
/// CPU (flex); bf16 and CUDA run Burn's ops.
fn fused_kernels(device: &str, precision: TrainPrecision) -> bool {
    precision == TrainPrecision::F32 && !device.starts_with("cuda")
}

/// Memory of training in f32: weights, grads, two AdamW moments, and the activations of one
/// micro-batch of `rows x len` tokens as `mem` keeps them.
///
/// `device` (`cpu`, `cuda:N`) decides where the free memory is read. Under data parallelism the
/// first device also holds its replica's weights besides the master copy (pass `replicas` = 1).
#[allow(clippy::too_many_arguments)]
pub fn estimate_memory(
    c: &ModelConfig,
    params: u64,
    trainable: u64,
    rows: usize,
    len: usize,
    device: &str,
    replicas: u64,
    mem: &TrainMemory,
) -> MemoryEstimate {
    let (rows, len) = (rows as u64, len as u64);
    let tok = rows * len;
    let h = c.hidden_size as u64;
    let layers = c.num_hidden_layers as u64;
    let fused = fused_kernels(device, mem.precision);
    let layer = layer_bytes(c, rows, len, mem.attention, mem.precision, fused);
    // What backward holds besides the kept values while it walks one layer (half of it for a
    // recomputed layer, below), measured (`tests/train_memory.rs`). With the eager attention:
    // about one layer's kept values with Burn's ops; the fused kernels keep fewer values, but
    // their backward passes allocate about what Burn's ops keep, except the eager attention's
    // scores, which the fused backward forms one block at a time. With the memory-efficient
    // attention (no scores kept) less: about one layer's kept values with the fused kernels,
    // half of one with Burn's ops (bf16).
    let walk = match (fused, mem.attention) {
        (true, TrainAttention::Eager) => {
            layer_bytes(c, rows, len, mem.attention, mem.precision, false)
                - eager_score_bytes(c, rows, len, 2)
        }
        (true, TrainAttention::MemoryEfficient) => layer,
        (false, TrainAttention::Eager) => layer,
        (false, TrainAttention::MemoryEfficient) => layer / 2,
    };
    // Values of the compute copy and of the layer inputs: 4 bytes in f32, 2 in bf16.
    let b = mem.precision.compute_bytes();
    // Kept until backward reaches them: every layer's graph, or with checkpointing only every
    // layer's input plus the one layer recomputed at a time.
    let (kept, backward) = if mem.gradient_checkpointing {
        (b * layers * tok * h + layer, walk / 2)
    } else {
        (layers * layer, walk)
    };
    // The fused head + loss runs between the forward and the layers' backward; it holds one
    // chunk of `[vocab, rows]` logits (the gradient is formed in place), never the whole
    // `[tokens, vocab]`.
    let v = c.vocab_size as u64;
    let mut head = tok.min(LOGIT_CHUNK_ROWS as u64) * v;
    if trainable >= v * h {
        // The head trains (full fine-tuning): its gradient and one chunk's share.
        head += 2 * v * h;
    }
    // The f32 master weights, their gradients and the AdamW moments take 4 bytes a value (two
    // moments: 8); a bf16 compute copy 2 more. The head + loss works in f32 under bf16 too
    // (the loss is formed in f32).
    let compute_copy = if b < 4 { b * params } else { 0 };
    MemoryEstimate {
        weights: 4 * params * (1 + replicas) + compute_copy,
        grads: 4 * trainable,
        optimizer: 8 * trainable,
        activations: kept + backward + (4 * head).saturating_sub(backward),
        available: available_memory(device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen3-0.6B's shapes (its `config.json`).
    fn qwen3_0_6b() -> ModelConfig {
        let mut c = ModelConfig::new(
            crate::runtime::config::Architecture::Qwen3,
            151_936,
            1024,
            3072,
            28,
            16,
            8,
            128,
        );
        c.tie_word_embeddings = true;
        c.qk_norm = true;
        c
    }

    /// bf16 counts the layers' kept values at 3 bytes instead of 4 (the scores stay f32) and
    /// adds a 2-byte compute copy of the weights; masters, gradients and moments stay 4 bytes a
    /// value. Hand-computed from the f32 terms of Burn's ops (f32 on CUDA: the fused CPU
    /// kernels keep less).
    #[test]
    fn bf16_counts_activations_and_the_weight_copy_in_two_bytes() {
        let c = qwen3_0_6b();
        let params = c.num_params();
        // LoRA-sized: the head does not train, so its transient is one f32 logit chunk.
        let trainable = 4_000_000;
        let est = |precision, len| {
            let mem = TrainMemory {
                precision,
                ..Default::default()
            };
            estimate_memory(&c, params, trainable, 1, len, "cuda:0", 0, &mem)
        };
        for len in [128, 2048] {
            let (f, h) = (
                est(TrainPrecision::F32, len),
                est(TrainPrecision::Bf16, len),
            );
            assert_eq!(f.weights, 4 * params);
            assert_eq!(
                h.weights,
                4 * params + 2 * params,
                "f32 masters + bf16 copy"
            );
            assert_eq!((h.grads, h.optimizer), (4 * trainable, 8 * trainable));
            assert_eq!((f.grads, f.optimizer), (h.grads, h.optimizer));
            // Linear values at 3/4 of f32, scores equal: between 3/4 of f32's and f32's.
            assert!(
                h.activations >= f.activations * 3 / 4,
                "{len}: {h:?} vs {f:?}"
            );
            assert!(h.activations < f.activations, "{len}: {h:?} vs {f:?}");
        }
        // At 2,048 tokens one layer's backward outweighs the f32 head chunk (512 x 151,936
        // values), so activations = 29 layers' kept bytes: linear values at 3 bytes, the eager
        // attention's two f32 score tensors at 8 bytes an entry.
        let h = est(TrainPrecision::Bf16, 2048);
        let tok = 2048u64;
        let linear = tok * (10 * 1024 + 4 * 2048 + 4 * 1024 + 4 * 3072);
        let area: u64 = (0..32u64).map(|j| 64 * 64 * (j + 1)).sum();
        let scores = 8 * 16 * area;
        assert_eq!(h.activations, 29 * (3 * linear + scores));
    }
}

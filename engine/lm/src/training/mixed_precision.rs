//! bf16 mixed precision (`[train] precision = "bf16"`): forward and backward run on bf16 copies
//! of the weights made by a differentiable cast of the f32 master weights
//! ([`super::cast`]), so gradients arrive on the masters in f32 and AdamW keeps f32 moments.
//! Inside the forward everything follows the activations' dtype: RoPE tables, LoRA dropout
//! masks and dequantised GGUF weights are cast to it; the RMS norms, the attention's mask and
//! softmax, the memory-efficient attention's accumulators, and the LM head with the loss
//! work in f32, as transformers and FlashAttention do.
//!
//! Whether a backend runs it is found out, not assumed: [`probe`] runs one forward and backward
//! of a one-layer model of the run's architecture (8-wide, so it costs nothing) in bf16, with
//! the run's checkpointing and attention, before any real work; a failure becomes an error
//! naming the backend and the failing operation's message.

use burn::tensor::{DType, Device};
use psy_core::train_spec::TrainPrecision;

pub use super::cast::{compute_copy, compute_dtype};
use super::checkpointing::{loss_and_grads, TrainMemory};
use super::loss::{lm_loss, Batch};
use crate::runtime::{CausalLm, ModelConfig};

/// Checks, before any work, that `precision` can train on `device` (an autodiff device) with
/// `mem`'s memory options and `config`'s architecture. `Err` says what failed.
pub fn check_supported(
    precision: TrainPrecision,
    mem: &TrainMemory,
    config: &ModelConfig,
    device: &Device,
) -> Result<(), String> {
    if precision == TrainPrecision::F32 {
        return Ok(());
    }
    probe(config, device, mem, compute_dtype(precision))
}

/// One forward and backward of a one-layer, 8-wide model with `config`'s architecture in
/// `dtype`, through the step `mem` selects; a panic inside the backend is caught and returned
/// as its message.
pub fn probe(
    config: &ModelConfig,
    device: &Device,
    mem: &TrainMemory,
    dtype: DType,
) -> Result<(), String> {
    let mut tiny = config.clone();
    tiny.vocab_size = 8;
    tiny.hidden_size = 8;
    tiny.intermediate_size = 8;
    tiny.num_hidden_layers = 1;
    tiny.num_attention_heads = 1;
    tiny.num_key_value_heads = 1;
    tiny.head_dim = 8;
    tiny.max_position_embeddings = tiny.max_position_embeddings.min(16);
    let batch = Batch {
        input_ids: vec![vec![1, 2, 3]],
        labels: vec![vec![-100, 2, 3]],
        weights: None,
    };
    let run = || {
        let master = CausalLm::random(&tiny, device);
        if mem.is_plain() {
            let loss = lm_loss(&compute_copy(&master, dtype), &tiny, &batch, device);
            let _ = loss.backward();
        } else {
            // The layer-by-layer step casts from the masters itself.
            let _ = loss_and_grads(&master, &batch, 1.0, mem);
        }
    };
    // The default hook would print the backend's panic as if psy had crashed; the error
    // returned below says it instead.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    std::panic::set_hook(hook);
    outcome.map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        format!(
            "{dtype:?} training does not run on device {device:?}: a one-layer probe of the model (forward and backward) failed in the backend with `{msg}`; use precision = \"f32\""
        )
    })
}

//! bf16 mixed precision (`[train] precision = "bf16"`): forward and backward run on a bf16
//! copy of the weights made by a differentiable cast of the f32 master weights, so gradients
//! arrive on the masters in f32, AdamW keeps f32 moments, and the fused head + loss casts the
//! hidden states back to f32 (the loss is formed in f32).
//!
//! Whether a backend runs it is found out, not assumed: [`probe`] runs one forward and backward
//! of a one-layer model of the run's architecture (8-wide, so it costs nothing) in bf16 before
//! any real work, and a failure becomes an error naming the backend and the operation's
//! message. On flex today it fails inside psy's decoder: the runtime's RoPE tables, KV cache
//! and causal mask are f32, and flex refuses an f32 x bf16 product (`storage: dtype mismatch`).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor};
use psy_core::train_spec::TrainPrecision;

use super::checkpointing::TrainMemory;
use super::loss::{lm_loss, Batch};
use crate::runtime::{CausalLm, ModelConfig};

/// The tensor dtype of the compute copy for `precision`.
pub fn compute_dtype(precision: TrainPrecision) -> DType {
    match precision {
        TrainPrecision::F32 => DType::F32,
        TrainPrecision::Bf16 => DType::BF16,
    }
}

/// Casts every float parameter to `dtype` through the autodiff graph (`cast` is
/// differentiable: its backward casts the gradient back to the master's dtype).
struct CastMapper {
    dtype: DType,
}

impl ModuleMapper for CastMapper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.dtype), mapper)
    }
}

/// The compute copy of `master` in `dtype`; the masters stay the graph's leaves, so
/// `accumulate_grads(master, ..)` collects their (f32) gradients after `backward`.
pub fn compute_copy(master: &CausalLm, dtype: DType) -> CausalLm {
    master.clone().map(&mut CastMapper { dtype })
}

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
    if !mem.is_plain() {
        return Err(
            "precision = \"bf16\" runs the plain step only; set gradient_checkpointing = false and attention = \"eager\""
                .into(),
        );
    }
    probe(config, device, compute_dtype(precision))
}

/// One forward and backward of a one-layer, 8-wide model with `config`'s architecture in
/// `dtype`; a panic inside the backend is caught and returned as its message.
pub fn probe(config: &ModelConfig, device: &Device, dtype: DType) -> Result<(), String> {
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
        let copy = compute_copy(&master, dtype);
        let loss = lm_loss(&copy, &tiny, &batch, device);
        let _ = loss.backward();
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
            "{dtype:?} training does not run on device {device:?}: a one-layer probe of the model failed with `{msg}` (psy's decoder keeps its RoPE tables, KV cache and causal mask in f32); use precision = \"f32\""
        )
    })
}

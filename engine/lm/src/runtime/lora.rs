//! LoRA adapters on the projections, in PEFT's conventions: `y = W x + (alpha / r) B A drop(x)`,
//! `A` `[r, in]` Kaiming-uniform, `B` `[out, r]` zero, so attaching changes nothing until training
//! moves `B`.
//!
//! Our own adapter rather than Burn's `apply_lora` reparameterization: PEFT applies dropout to the
//! adapter's *input*, which a weight reparameterization cannot express; the low-rank path never
//! materialises `W + BA` during training; and the tensor names map one-to-one onto PEFT's
//! `adapter_model.safetensors`, so adapters load in `peft` and merged exports in transformers.

use std::cell::Cell;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;

pub use psy_core::train_spec::{LoraConfig, PROJECTIONS};

use super::config::ModelConfig;
use super::fused::dropout::dropout;
pub use super::fused::dropout::dropout_mask;
use super::fused::linear::{scaled_x_wt, x_wt};

/// Adapter parameters for a model of this shape: `rank * (in + out)` per adapted projection.
pub fn trainable_params(cfg: &LoraConfig, c: &ModelConfig) -> Result<u64, String> {
    let h = c.hidden_size;
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let inter = c.intermediate_size;
    let per_layer: usize = cfg
        .targets()?
        .iter()
        .map(|t| match *t {
            "q_proj" => h + q,
            "k_proj" | "v_proj" => h + kv,
            "o_proj" => q + h,
            _ => h + inter,
        })
        .sum();
    Ok((cfg.rank * per_layer * c.num_hidden_layers) as u64)
}

/// The trainable low-rank update of one projection.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `[rank, in]`.
    pub lora_a: Param<Tensor<2>>,
    /// `[out, rank]`.
    pub lora_b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: f64,
}

thread_local! {
    /// `(seed, calls so far)` while a training forward runs inside [`with_dropout`].
    static DROPOUT: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// Runs `f` with adapter dropout active, its masks drawn from `seed` in call order: the same seed
/// and the same forward give the same masks, so a resumed run replays them exactly. Outside this
/// scope (evaluation, inference) adapters apply no dropout.
pub fn with_dropout<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let prev = DROPOUT.with(|d| d.replace(Some((seed, 0))));
    let out = f();
    DROPOUT.with(|d| d.set(prev));
    out
}

/// Where the dropout stream of the enclosing [`with_dropout`] stands: `(seed, calls so far)`.
/// Gradient checkpointing records it before a layer and replays the layer's masks with
/// [`with_dropout_at`] when it recomputes that layer in backward.
pub fn dropout_position() -> Option<(u64, u64)> {
    DROPOUT.with(Cell::get)
}

/// Runs `f` with the dropout stream at `position` (from [`dropout_position`]; `None` = no
/// dropout), restoring the previous stream afterwards.
pub fn with_dropout_at<R>(position: Option<(u64, u64)>, f: impl FnOnce() -> R) -> R {
    let prev = DROPOUT.with(|d| d.replace(position));
    let out = f();
    DROPOUT.with(|d| d.set(prev));
    out
}

fn next_dropout_seed() -> Option<u64> {
    DROPOUT.with(|d| {
        let (seed, n) = d.get()?;
        d.set(Some((seed, n + 1)));
        Some(seed ^ (n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    })
}

impl LoraAdapter {
    /// PEFT's initialisation: `A ~ U(-1/sqrt(in), 1/sqrt(in))` (Kaiming-uniform with `a = sqrt(5)`),
    /// `B = 0`, both trainable.
    pub fn new(out: usize, inp: usize, config: &LoraConfig, rng: &mut StdRng, d: &Device) -> Self {
        let r = config.rank;
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..r * inp)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Self {
            lora_a: Param::from_tensor(Tensor::from_data(TensorData::new(a, [r, inp]), d)),
            lora_b: Param::from_tensor(Tensor::zeros([out, r], d)),
            scale: config.scale(),
            dropout: config.dropout,
        }
    }

    /// `scale * B A drop(x)` for `x` `[batch, seq, in]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, k] = x.dims();
        let x = match next_dropout_seed().filter(|_| self.dropout > 0.0) {
            Some(seed) => dropout(x, seed, 1.0 - self.dropout),
            None => x,
        };
        let bw = self.lora_b.val();
        let n = bw.dims()[0];
        let h = x_wt(x.reshape([b * s, k]), self.lora_a.val());
        scaled_x_wt(h, bw, self.scale).reshape([b, s, n])
    }

    /// `scale * B A`, `[out, in]`: what merging adds to the base weight.
    pub fn delta(&self) -> Tensor<2> {
        self.lora_b.val().matmul(self.lora_a.val()) * self.scale
    }
}

//! Attaching LoRA adapters to a model's projections, merging them back, and listing them.
//!
//! Apart from [`super::lora`] (the adapter itself, which the model's `Projection` holds) so that the
//! model depends on the adapter and this file on both, never the other way round.

use burn::module::Module;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::lora::{LoraAdapter, LoraConfig};
use super::model::CausalLm;
use super::projection::Projection;

impl CausalLm {
    /// Every projection of the decoder with its HF path (`model.layers.N.self_attn.q_proj`).
    /// The LM head is not a LoRA target (PEFT's "all-linear" excludes it too).
    fn projections_mut(&mut self) -> Vec<(String, &'static str, &mut Projection)> {
        let mut out = Vec::new();
        for (i, l) in self.model.layers.iter_mut().enumerate() {
            let a = &mut l.self_attn;
            let m = &mut l.mlp;
            let p = format!("model.layers.{i}");
            for (name, lin) in [
                ("q_proj", &mut a.q_proj),
                ("k_proj", &mut a.k_proj),
                ("v_proj", &mut a.v_proj),
                ("o_proj", &mut a.o_proj),
            ] {
                out.push((format!("{p}.self_attn.{name}"), name, lin));
            }
            for (name, lin) in [
                ("gate_proj", &mut m.gate_proj),
                ("up_proj", &mut m.up_proj),
                ("down_proj", &mut m.down_proj),
            ] {
                out.push((format!("{p}.mlp.{name}"), name, lin));
            }
        }
        out
    }

    /// Freezes every base parameter and attaches fresh adapters (seeded) to the targeted
    /// projections: only the adapters train afterwards.
    pub fn attach_lora(self, config: &LoraConfig, seed: u64) -> Result<Self, String> {
        let targets = config.targets()?;
        let device = self.device();
        let mut model = self.no_grad();
        let mut rng = StdRng::seed_from_u64(seed ^ 0x4C6F_5241);
        for (_, kind, lin) in model.projections_mut() {
            if targets.contains(&kind) {
                let [out, inp] = lin.dims();
                lin.lora = Some(LoraAdapter::new(out, inp, config, &mut rng, &device));
            }
        }
        Ok(model)
    }

    /// Folds every adapter into its f32 base weight (`W += scale * B A`) and removes it: the
    /// result is a plain model with the fine-tuned behaviour. An adapter over a weight kept in
    /// its GGUF block format stays attached beside it (`y = Wq x + scale B A x`): merging would
    /// turn that weight into f32, so an adapted model would differ from its base in number
    /// format as well as in the adapter (and take 4-8x the memory).
    pub fn merge_lora(mut self) -> Self {
        let device = self.device();
        for (_, _, lin) in self.projections_mut() {
            if lin.quant.is_some() {
                continue;
            }
            if let Some(adapter) = lin.lora.take() {
                let merged = lin.weight_f32(&device) + adapter.delta();
                lin.set_weight(merged);
            }
        }
        self
    }

    /// The attached adapters by projection path, in layer order.
    pub fn lora_adapters(&mut self) -> Vec<(String, &mut LoraAdapter)> {
        self.projections_mut()
            .into_iter()
            .filter_map(|(path, _, lin)| lin.lora.as_mut().map(|a| (path, a)))
            .collect()
    }

    pub fn has_lora(&self) -> bool {
        self.model
            .layers
            .iter()
            .any(|l| l.projections().iter().any(|(_, p)| p.lora.is_some()))
    }
}

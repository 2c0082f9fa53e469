//! AdamW as `torch.optim.AdamW` computes it (decoupled weight decay, bias correction folded into
//! the step size and the denominator), with gradients collected by HF parameter name.
//!
//! Our own implementation rather than `burn::optim::AdamW` so that the optimizer state is keyed by
//! the checkpoint's tensor names: checkpoints store it as safetensors next to the weights, and
//! resume restores it exactly.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Gradients, Tensor};
use serde::{Deserialize, Serialize};

use super::optim_kernels::{adamw_update, scale, sum_of_squares, AdamWScalars};

/// Flattened (`[numel]`) gradients by parameter name, on the inner (non-autodiff) backend.
pub type NamedGrads = BTreeMap<String, Tensor<1>>;

/// Hyper-parameters of AdamW; the defaults are PyTorch's except the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
pub struct Moments {
    pub exp_avg: Tensor<1>,
    pub exp_avg_sq: Tensor<1>,
}

/// AdamW state: step count and moments by parameter name.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Optimizer steps taken (PyTorch's `state["step"]`, shared by all parameters here).
    pub step: u64,
    pub moments: BTreeMap<String, Moments>,
}

struct GradCollector<'a> {
    path: Vec<String>,
    grads: &'a mut Gradients,
    out: &'a mut NamedGrads,
    scale: f32,
}

impl ModuleVisitor for GradCollector<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        let Some(g) = param.val().grad_remove(self.grads) else {
            return;
        };
        let n = g.shape().num_elements();
        let g = g.reshape([n]);
        let g = if self.scale == 1.0 { g } else { g * self.scale };
        let name = self.path.join(".");
        let merged = match self.out.remove(&name) {
            Some(acc) => acc + g,
            None => g,
        };
        self.out.insert(name, merged);
    }
}

/// Moves the gradients of `module`'s trainable parameters out of `grads` into `acc`
/// (adding to what is there: gradient accumulation), multiplied by `scale`.
pub fn accumulate_grads<M: Module>(
    module: &M,
    grads: &mut Gradients,
    acc: &mut NamedGrads,
    scale: f32,
) {
    let mut v = GradCollector {
        path: Vec::new(),
        grads,
        out: acc,
        scale,
    };
    module.visit(&mut v);
}

/// Adds `more` into `acc` by name (gradient accumulation of already collected gradients).
pub fn add_grads(acc: &mut NamedGrads, more: NamedGrads) {
    for (name, g) in more {
        let merged = match acc.remove(&name) {
            Some(a) => a + g,
            None => g,
        };
        acc.insert(name, merged);
    }
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_` computes it).
pub fn global_norm(grads: &NamedGrads) -> f64 {
    grads
        .values()
        .map(|g| {
            sum_of_squares(g).unwrap_or_else(|| {
                let sq: f32 = (g.clone() * g.clone()).sum().into_scalar();
                f64::from(sq)
            })
        })
        .sum::<f64>()
        .sqrt()
}

/// Scales every gradient by `max_norm / (norm + 1e-6)` when the norm exceeds `max_norm`;
/// returns the norm before clipping.
pub fn clip_global_norm(grads: &mut NamedGrads, max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        for g in grads.values_mut() {
            let taken = std::mem::replace(g, Tensor::empty([0], &g.device()));
            *g = scale(taken, coef as f32).unwrap_or_else(|g| *g * coef as f32);
        }
    }
    norm
}

struct StepMapper<'a> {
    path: Vec<String>,
    grads: &'a mut NamedGrads,
    opt: &'a mut AdamW,
    lr: f64,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some(grad) = self.grads.remove(&name) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let shape: [usize; D] = tensor.dims();
        let n = grad.dims()[0];
        let p = tensor.inner().reshape([n]);
        let updated = self.opt.update(&name, p, grad, self.lr).reshape(shape);
        let mut t = Tensor::from_inner(updated);
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// One optimizer step on every parameter of `module` that has a gradient in `grads`
    /// (consumed). Parameters without a gradient (frozen) are left untouched.
    pub fn step<M: Module>(&mut self, module: M, grads: &mut NamedGrads, lr: f64) -> M {
        self.step += 1;
        let mut m = StepMapper {
            path: Vec::new(),
            grads,
            opt: self,
            lr,
        };
        module.map(&mut m)
    }

    /// `torch.optim.AdamW` single-tensor update of one flattened parameter: one threaded pass
    /// on flex f32 (`optim_kernels.rs`), Burn's ops otherwise.
    fn update(&mut self, name: &str, p: Tensor<1>, g: Tensor<1>, lr: f64) -> Tensor<1> {
        let c = self.config;
        let t = self.step as i32;
        let s = AdamWScalars {
            decay: (1.0 - lr * c.weight_decay) as f32,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            bias_correction2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
            eps: c.eps as f32,
            step_size: (lr / (1.0 - c.beta1.powi(t))) as f32,
        };
        let Moments {
            exp_avg,
            exp_avg_sq,
        } = self.moments.remove(name).unwrap_or_else(|| Moments {
            exp_avg: g.zeros_like(),
            exp_avg_sq: g.zeros_like(),
        });
        let (p, exp_avg, exp_avg_sq) = match adamw_update(p, &g, exp_avg, exp_avg_sq, &s) {
            Ok(updated) => updated,
            Err(inputs) => {
                let (p, m, v) = *inputs;
                let p = p * s.decay;
                let m = m * s.beta1 + g.clone() * s.one_minus_beta1;
                let v = v * s.beta2 + (g.clone() * g) * s.one_minus_beta2;
                let denom = v.clone().sqrt() / s.bias_correction2_sqrt + s.eps;
                (p - (m.clone() / denom) * s.step_size, m, v)
            }
        };
        self.moments.insert(
            name.to_string(),
            Moments {
                exp_avg,
                exp_avg_sq,
            },
        );
        p
    }
}

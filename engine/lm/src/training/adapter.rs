//! PEFT adapter files, as `peft` saves and loads them: `adapter_model.safetensors` with tensors
//! `base_model.model.<projection path>.lora_A.weight` `[r, in]` and `.lora_B.weight` `[out, r]`,
//! and `adapter_config.json`.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use serde_json::json;

use super::error::{io, Result, TrainError};
use super::params::{named_tensors, NamedTensor};
use super::safetensors_io::{read_safetensors, write_safetensors, HostTensors};
use crate::runtime::{CausalLm, LoraConfig};

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// PEFT's name for one of our adapter parameters (`...q_proj.lora.lora_a`), or `None` for a
/// parameter that is not part of an adapter.
pub fn peft_name(path: &str) -> Option<String> {
    let (proj, which) = path.rsplit_once(".lora.")?;
    let factor = match which {
        "lora_a" => "lora_A",
        "lora_b" => "lora_B",
        _ => return None,
    };
    Some(format!("base_model.model.{proj}.{factor}.weight"))
}

/// The adapter tensors of `model`, under PEFT names.
pub fn adapter_tensors<M: Module>(model: &M) -> Vec<NamedTensor> {
    named_tensors(model)
        .into_iter()
        .filter_map(|t| {
            peft_name(&t.name).map(|name| NamedTensor {
                name,
                shape: t.shape,
                data: t.data,
            })
        })
        .collect()
}

/// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`.
pub fn write_adapter<M: Module>(
    dir: &Path,
    model: &M,
    lora: &LoraConfig,
    base_model: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    write_safetensors(&dir.join(ADAPTER_WEIGHTS), &adapter_tensors(model))?;
    let targets = lora.targets().map_err(TrainError::Invalid)?;
    let cfg = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "inference_mode": true,
    });
    let p = dir.join(ADAPTER_CONFIG);
    std::fs::write(&p, serde_json::to_string_pretty(&cfg).unwrap_or_default()).map_err(io(&p))
}

struct LoadAdapters<'a> {
    path: Vec<String>,
    tensors: &'a HostTensors,
    used: BTreeSet<String>,
    problems: Vec<String>,
}

impl ModuleMapper for LoadAdapters<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(name) = peft_name(&self.path.join(".")) else {
            return param;
        };
        let Some((shape, data)) = self.tensors.get(&name) else {
            self.problems.push(format!("missing tensor `{name}`"));
            return param;
        };
        let want = param.shape().to_vec();
        if *shape != want {
            self.problems.push(format!(
                "tensor `{name}` has shape {shape:?}, expected {want:?}"
            ));
            return param;
        }
        self.used.insert(name);
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let dims: [usize; D] = tensor.dims();
        let mut t = Tensor::<D>::from_data(TensorData::new(data.clone(), dims), &tensor.device());
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Loads the adapter weights of `dir` into a model whose adapters are attached with the same
/// configuration. Every adapter must be present with its shape, and the file may hold nothing else.
pub fn load_adapter(dir: &Path, model: CausalLm) -> Result<CausalLm> {
    let path = dir.join(ADAPTER_WEIGHTS);
    let tensors = read_safetensors(&path)?;
    let mut m = LoadAdapters {
        path: Vec::new(),
        tensors: &tensors,
        used: BTreeSet::new(),
        problems: Vec::new(),
    };
    let model = model.map(&mut m);
    let extra: Vec<&String> = tensors.keys().filter(|k| !m.used.contains(*k)).collect();
    if !extra.is_empty() {
        m.problems.push(format!(
            "{} tensor(s) the configured adapters do not have, e.g. `{}` (rank or target_modules changed?)",
            extra.len(),
            extra[0]
        ));
    }
    if m.used.is_empty() && m.problems.is_empty() {
        m.problems
            .push("the model has no LoRA adapters attached".into());
    }
    if m.problems.is_empty() {
        Ok(model)
    } else {
        Err(TrainError::Checkpoint {
            path,
            msg: m.problems.join("; "),
        })
    }
}

/// The LoRA configuration of a PEFT adapter directory (`adapter_config.json`, as `peft` and
/// LLaMA-Factory's LoRA runs write it). Settings psy does not implement (rsLoRA, DoRA,
/// `fan_in_fan_out`, per-layer rank or alpha patterns) are refused, naming the field.
pub fn read_peft_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path).map_err(super::error::io(&path))?;
    let bad = |msg: String| TrainError::Checkpoint {
        path: path.clone(),
        msg,
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v.get("peft_type").and_then(|t| t.as_str()) != Some("LORA") {
        return Err(bad("`peft_type` is not \"LORA\"".into()));
    }
    for flag in ["use_rslora", "use_dora", "fan_in_fan_out"] {
        if v.get(flag).and_then(|f| f.as_bool()) == Some(true) {
            return Err(bad(format!("`{flag}` = true is not supported")));
        }
    }
    for pattern in ["rank_pattern", "alpha_pattern"] {
        if v.get(pattern)
            .and_then(|p| p.as_object())
            .is_some_and(|p| !p.is_empty())
        {
            return Err(bad(format!("a non-empty `{pattern}` is not supported")));
        }
    }
    let rank = v
        .get("r")
        .and_then(|r| r.as_u64())
        .ok_or_else(|| bad("`r` is missing or not a whole number".into()))?;
    let alpha = v
        .get("lora_alpha")
        .and_then(|a| a.as_f64())
        .ok_or_else(|| bad("`lora_alpha` is missing or not a number".into()))?;
    // PEFT writes a list, or one string: a module name or "all-linear".
    let target_modules: Vec<String> = match v.get("target_modules") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("`target_modules` holds a non-string".into()))?,
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => return Err(bad("`target_modules` is missing".into())),
    };
    let config = LoraConfig {
        enabled: true,
        rank: rank as usize,
        alpha,
        dropout: 0.0,
        target_modules,
    };
    config
        .targets()
        .map_err(|e| bad(e.replace("[train.lora] ", "")))?;
    Ok(config)
}

/// A base model with a PEFT adapter directory applied and merged (`W + alpha/r B A`): what a
/// LoRA run of psy or of LLaMA-Factory produces, ready to decode.
pub fn apply_peft_adapter(model: CausalLm, dir: &Path) -> Result<CausalLm> {
    let config = read_peft_config(dir)?;
    let model = model
        .attach_lora(&config, 0)
        .map_err(|e| TrainError::Checkpoint {
            path: dir.join(ADAPTER_CONFIG),
            msg: e,
        })?;
    Ok(load_adapter(dir, model)?.merge_lora())
}

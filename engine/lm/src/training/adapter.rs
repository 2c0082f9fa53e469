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

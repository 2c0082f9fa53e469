//! Step checkpoints and the HF export.
//!
//! A checkpoint is a directory `step-NNNNNNNN/` holding `model.safetensors` (HF tensor names),
//! `config.json` (or, for LoRA, `adapter_model.safetensors` + `adapter_config.json`),
//! `optimizer.safetensors` (AdamW moments by parameter name), `state.json`
//! (position in the run) and the marker `COMPLETE`. It is written under a temporary name, every
//! file synced, and renamed into place only then: a `kill -9` mid-write leaves a `.tmp-*`
//! directory that is never loaded (and is removed by the next run), never a half checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::adapter::{peft_name, write_adapter};
use super::error::{io, Result, TrainError};
use super::optim::{AdamW, Moments};
use super::params::{named_tensors, NamedTensor};
use super::safetensors_io::write_synced;
pub use super::safetensors_io::{read_safetensors, write_safetensors, HostTensors};
use crate::runtime::LoraConfig;

/// Marker written last: a checkpoint directory without it is not a checkpoint.
pub const COMPLETE: &str = "COMPLETE";

/// Where a run stands; enough to continue it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Optimizer steps done.
    pub step: usize,
    /// Epoch and micro-batch index of the next micro-batch to read.
    pub epoch: usize,
    pub cursor: usize,
    pub total_steps: usize,
    pub seed: u64,
    /// Number of samples the run was planned with (resume refuses a changed dataset).
    pub train_samples: usize,
}

fn ck(path: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Writes the model in HF layout: `model.safetensors` + `config.json` (+ extra files copied).
/// A model with LoRA adapters attached is refused: merge them first (or write the adapter).
pub fn write_hf<M: Module>(dir: &Path, model: &M, config_json: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tensors = named_tensors(model);
    if let Some(t) = tensors.iter().find(|t| peft_name(&t.name).is_some()) {
        return Err(ck(
            dir,
            format!(
                "`{}` is a LoRA adapter: merge the adapters before writing an HF checkpoint",
                t.name
            ),
        ));
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    write_synced(&dir.join("config.json"), config_json.as_bytes())
}

/// Writes a checkpoint atomically (see the module docs) and keeps the newest `keep_last`.
#[allow(clippy::too_many_arguments)]
///
/// With `lora`, only the adapters are written (PEFT layout): the base weights are frozen and
/// reload from the manifest's model.
pub fn save<M: Module>(
    root: &Path,
    model: &M,
    config_json: &str,
    lora: Option<&LoraConfig>,
    opt: &AdamW,
    state: &RunState,
    keep_last: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    match lora {
        Some(cfg) => {
            write_adapter(&tmp, model, cfg, "")?;
            write_synced(&tmp.join("config.json"), config_json.as_bytes())?;
        }
        None => write_hf(&tmp, model, config_json)?,
    }
    let mut moments = Vec::new();
    for (n, m) in &opt.moments {
        for (suffix, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
            moments.push(NamedTensor {
                name: format!("{n}.{suffix}"),
                shape: t.dims().to_vec(),
                data: t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| ck(&tmp, format!("{e:?}")))?,
            });
        }
    }
    write_safetensors(&tmp.join("optimizer.safetensors"), &moments)?;
    let st = serde_json::json!({
        "run": state,
        "adamw_step": opt.step,
        "adamw": opt.config,
    });
    write_synced(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&st)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write_synced(&tmp.join(COMPLETE), b"ok\n")?;
    let dst = root.join(&name);
    if dst.exists() {
        std::fs::remove_dir_all(&dst).map_err(io(&dst))?;
    }
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    if let Ok(d) = std::fs::File::open(root) {
        let _ = d.sync_all();
    }
    // Keep the newest `keep_last` complete checkpoints.
    let mut all = list(root);
    if keep_last > 0 && all.len() > keep_last {
        all.sort();
        for old in &all[..all.len() - keep_last] {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    tracing::info!(path = %dst.display(), "checkpoint written");
    Ok(dst)
}

/// Complete checkpoint directories under `root`, oldest first; removes stale temporaries.
pub fn list(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".tmp-") {
            tracing::warn!(path = %p.display(), "removing an unfinished checkpoint");
            let _ = std::fs::remove_dir_all(&p);
        } else if name.starts_with("step-") && p.join(COMPLETE).is_file() {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Reads the optimizer state and run position of a checkpoint.
pub fn load_state(dir: &Path, opt: &mut AdamW, device: &Device) -> Result<RunState> {
    if !dir.join(COMPLETE).is_file() {
        return Err(ck(dir, "incomplete checkpoint (no COMPLETE marker)"));
    }
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ck(&p, e.to_string()))?;
    let state: RunState = serde_json::from_value(v["run"].clone())
        .map_err(|e| ck(&p, format!("field `run`: {e}")))?;
    opt.step = v["adamw_step"]
        .as_u64()
        .ok_or_else(|| ck(&p, "missing field `adamw_step`"))?;
    let tensors = read_safetensors(&dir.join("optimizer.safetensors"))?;
    opt.moments.clear();
    let to_t = |d: &Vec<f32>| Tensor::<1>::from_data(TensorData::new(d.clone(), [d.len()]), device);
    for (name, (_, data)) in &tensors {
        if let Some(base) = name.strip_suffix(".exp_avg") {
            let sq = tensors
                .get(&format!("{base}.exp_avg_sq"))
                .ok_or_else(|| ck(dir, format!("optimizer tensor `{base}.exp_avg_sq` missing")))?;
            opt.moments.insert(
                base.to_string(),
                Moments {
                    exp_avg: to_t(data),
                    exp_avg_sq: to_t(&sq.1),
                },
            );
        }
    }
    Ok(state)
}

//! Helpers shared by the training tests (`tests/train.rs`, `tests/lora.rs`): the PyTorch step
//! fixture's batch, one loss-and-gradients pass, the tiny-demo manifest made runnable from a
//! temp dir, and safetensors read back by name.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// A training run reviews every sample with the run's modules (`Module::review_sample`), so the
// built-in modules must be linked into the test binary, as they are into `psy train`.
use psy as _;
use psy_lm::runtime::{CausalLm, ModelConfig};
use psy_lm::training::optim::accumulate_grads;
use psy_lm::training::{lm_loss, Batch, NamedGrads};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `tests/fixtures/qwen3-train/tiny-qwen3-untied-step.json` (PyTorch).
pub fn step_reference() -> Value {
    let p = fixtures().join("qwen3-train/tiny-qwen3-untied-step.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The fixture's batch: two right-padded rows, prompt and padding labelled -100.
pub fn reference_batch(r: &Value) -> Batch {
    let rows = |k: &str| -> Vec<Vec<i64>> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect()
    };
    Batch {
        input_ids: rows("input_ids")
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u32).collect())
            .collect(),
        labels: rows("labels"),
        weights: None,
    }
}

/// Mean loss and gradients (by name) of one batch.
pub fn loss_and_grads(model: &CausalLm, config: &ModelConfig, batch: &Batch) -> (f64, NamedGrads) {
    let d = model.device();
    let loss = lm_loss(model, config, batch, &d) / batch.target_count() as f64;
    let value: f32 = loss.clone().inner().into_scalar();
    let mut grads = loss.backward();
    let mut named = NamedGrads::new();
    accumulate_grads(model, &mut grads, &mut named, 1.0);
    (f64::from(value), named)
}

/// `manifests/train/tiny-demo.toml` with absolute paths, plus `extra`, written into `dir`.
pub fn demo_manifest(dir: &Path, extra: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("manifests/train/tiny-demo.toml")).unwrap();
    let text = text
        .replace(
            "\"../psyllm.toml\"",
            &format!("{:?}", root.join("manifests/psyllm.toml")),
        )
        .replace("\"../../tests/", &format!("\"{}/tests/", root.display()))
        .replace(
            "\"data/",
            &format!("\"{}/manifests/train/data/", root.display()),
        );
    let p = dir.join("m.toml");
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

/// Every tensor of a safetensors file by name.
pub fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    psy_lm::training::checkpoint::read_safetensors(path)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.1))
        .collect()
}

/// Quiet options for one `psy train` run of `manifest` into `output`.
pub fn options(manifest: &Path, output: &Path) -> psy_lm::training::RunOptions {
    psy_lm::training::RunOptions {
        manifest: manifest.to_path_buf(),
        output: Some(output.to_path_buf()),
        quiet: true,
        ..Default::default()
    }
}

/// Largest absolute difference between two sets of named tensors with the same names.
pub fn max_diff(a: &BTreeMap<String, Vec<f32>>, b: &BTreeMap<String, Vec<f32>>) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flat_map(|(k, v)| v.iter().zip(&b[k]).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

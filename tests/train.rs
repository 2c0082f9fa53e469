//! Supervised fine-tuning against an independent PyTorch reference
//! (`tests/fixtures/qwen3-train/`, see `tests/fixtures/PROVENANCE.md`): loss, gradients, one
//! AdamW step and a 10-step loss curve; plus masking and padding invariants.
//!
//! Run with `cargo test --release -p psy --test train`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use psy_engine::runtime::burn::tensor::Device;
use psy_engine::runtime::{load_model_on, CausalLm, ModelConfig};
use psy_engine::training::optim::{accumulate_grads, clip_global_norm, global_norm};
use psy_engine::training::params::named_tensors;
use psy_engine::training::{forward_logits, masked_lm_loss, AdamW, AdamWConfig, Batch, NamedGrads};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Value {
    let p = fixtures().join("qwen3-train/tiny-qwen3-untied-step.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn device() -> Device {
    Device::flex().autodiff()
}

fn load(dir: &str, device: &Device) -> (CausalLm, ModelConfig) {
    let m = load_model_on(&fixtures().join("qwen3").join(dir), device).unwrap();
    (m.model, m.config)
}

fn reference_batch(r: &Value) -> Batch {
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
fn loss_and_grads(model: &CausalLm, config: &ModelConfig, batch: &Batch) -> (f64, NamedGrads) {
    let d = model.device();
    let logits = forward_logits(model, config, &batch.input_ids, &d);
    let loss = masked_lm_loss(logits, batch) / batch.target_count() as f64;
    let value: f32 = loss.clone().inner().into_scalar();
    let mut grads = loss.backward();
    let mut named = NamedGrads::new();
    accumulate_grads(model, &mut grads, &mut named, 1.0);
    (f64::from(value), named)
}

fn to_vec(t: &psy_engine::runtime::burn::tensor::Tensor<1>) -> Vec<f32> {
    t.clone().into_data().try_into_vec::<f32>().unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Compares a tensor against the reference summary (first 16 values, sum, L2 norm).
fn check_summary(name: &str, values: &[f32], want: &Value, rel_tol: f64, abs_tol: f64) {
    let first: Vec<f64> = want["first16"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for (i, (&a, &b)) in values.iter().zip(&first).enumerate() {
        let err = (f64::from(a) - b).abs();
        assert!(
            err <= abs_tol + rel_tol * b.abs(),
            "{name}[{i}]: {a} vs {b}"
        );
    }
    let sum: f64 = values.iter().map(|&x| f64::from(x)).sum();
    let l2: f64 = values
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let want_l2 = want["l2"].as_f64().unwrap();
    assert!(rel(l2, want_l2) < rel_tol, "{name} l2 {l2} vs {want_l2}");
    let want_sum = want["sum"].as_f64().unwrap();
    // Sums can cancel to ~0: compare them on the scale of the L1-ish magnitude (l2 * sqrt(n)).
    let scale = want_l2 * (values.len() as f64).sqrt();
    assert!(
        (sum - want_sum).abs() <= rel_tol * scale.max(want_sum.abs()),
        "{name} sum {sum} vs {want_sum}"
    );
}

#[test]
fn sft_loss_and_gradients_match_pytorch() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let (loss, grads) = loss_and_grads(&model, &config, &batch);
    let want = r["loss"].as_f64().unwrap();
    eprintln!(
        "loss {loss} vs {want} (abs err {:.2e})",
        (loss - want).abs()
    );
    assert!((loss - want).abs() < 1e-4);
    let norm = global_norm(&grads);
    let want_norm = r["grad_total_l2"].as_f64().unwrap();
    eprintln!(
        "grad norm {norm} vs {want_norm} (rel err {:.2e})",
        rel(norm, want_norm)
    );
    assert!(rel(norm, want_norm) < 1e-3);
    for (name, want) in r["grads"].as_object().unwrap() {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        check_summary(name, &to_vec(g), want, 1e-3, 1e-6);
    }
}

#[test]
fn one_adamw_step_matches_torch_optim_adamw() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let (_, mut grads) = loss_and_grads(&model, &config, &batch);
    let a = &r["adamw"];
    let mut opt = AdamW::new(AdamWConfig {
        beta1: a["betas"][0].as_f64().unwrap(),
        beta2: a["betas"][1].as_f64().unwrap(),
        eps: a["eps"].as_f64().unwrap(),
        weight_decay: a["weight_decay"].as_f64().unwrap(),
    });
    let model = opt.step(model, &mut grads, a["lr"].as_f64().unwrap());
    let params: BTreeMap<String, Vec<f32>> = named_tensors(&model)
        .into_iter()
        .map(|t| (t.name, t.data))
        .collect();
    for (name, want) in r["params_after_1_step"].as_object().unwrap() {
        let p = &params[name];
        assert_eq!(
            p.len(),
            want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .product::<usize>()
        );
        check_summary(name, p, want, 1e-5, 1e-5);
    }
}

#[test]
fn ten_step_loss_curve_matches_pytorch() {
    let r = reference();
    let d = device();
    let (mut model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let mut opt = AdamW::new(AdamWConfig::default());
    let want: Vec<f64> = r["losses_10_steps_same_batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let mut worst: f64 = 0.0;
    for (step, w) in want.iter().enumerate() {
        let (loss, mut grads) = loss_and_grads(&model, &config, &batch);
        worst = worst.max((loss - w).abs());
        assert!((loss - w).abs() < 1e-3, "step {step}: {loss} vs {w}");
        model = opt.step(model, &mut grads, 1e-3);
    }
    eprintln!("10-step loss curve: worst abs err {worst:.2e}");
}

#[test]
fn masked_and_padded_tokens_change_neither_loss_nor_gradients() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let batch = reference_batch(&r);
    let (loss, grads) = loss_and_grads(&model, &config, &batch);
    // Different ids under the masked prompt labels would change the context: change only the
    // ignored *padding* ids and the (ignored) label slots instead.
    let mut other = batch.clone();
    for t in 9..12 {
        other.input_ids[1][t] = 999 - t as u32;
    }
    let (loss2, grads2) = loss_and_grads(&model, &config, &other);
    assert!((loss - loss2).abs() < 1e-6, "{loss} vs {loss2}");
    for (name, g) in &grads {
        let (a, b) = (to_vec(g), to_vec(&grads2[name]));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        // Embedding rows of the swapped pad ids get zero gradient either way.
        assert!(diff < 1e-6, "{name}: max diff {diff}");
    }
    // A padded row gives the same loss sum as the row alone, unpadded.
    let alone = Batch {
        input_ids: vec![batch.input_ids[1][..9].to_vec()],
        labels: vec![batch.labels[1][..9].to_vec()],
        weights: None,
    };
    let sum_row = |b: &Batch| -> f32 {
        let logits = forward_logits(&model, &config, &b.input_ids, &d);
        masked_lm_loss(logits, b).inner().into_scalar()
    };
    let padded = Batch {
        input_ids: vec![batch.input_ids[1].clone()],
        labels: vec![batch.labels[1].clone()],
        weights: None,
    };
    let (a, b) = (sum_row(&alone), sum_row(&padded));
    assert!((a - b).abs() < 1e-5, "padded {b} vs alone {a}");
}

#[test]
fn clipping_scales_to_the_max_norm() {
    let r = reference();
    let d = device();
    let (model, config) = load("tiny-qwen3-untied", &d);
    let (_, mut grads) = loss_and_grads(&model, &config, &reference_batch(&r));
    let before = clip_global_norm(&mut grads, 1.0);
    assert!(before > 1.0);
    assert!((global_norm(&grads) - 1.0).abs() < 1e-5);
}

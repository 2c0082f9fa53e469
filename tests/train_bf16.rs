//! bf16 mixed precision (`[train] precision = "bf16"`): the compute copy is bf16 while the
//! master weights stay f32 and receive f32 gradients; where the backend cannot run psy's
//! decoder in bf16 (flex today) the run is refused before training, naming the backend and the
//! failing operation.
//!
//! Run with `cargo test --release -p psy --test train_bf16`.

use psy_lm::runtime::burn::tensor::{DType, Device};
use psy_lm::runtime::load_model_on;
use psy_lm::training::mixed_precision::compute_copy;
use psy_lm::training::optim::accumulate_grads;
use psy_lm::training::{run_with, NamedGrads};

#[path = "common/training.rs"]
mod training;

use training::{demo_manifest, fixtures, options};

/// Gradients of `sum(w^2)` over the bf16 copy of the head reach the f32 master as f32 and
/// equal `2 w` within bf16's rounding (w rounded to 8 bits of mantissa, the gradient rounded
/// once more: each at most 2^-9 relative; measured worst 3.9e-3, tolerance 3 * 2^-9 = 5.9e-3).
#[test]
fn master_weights_stay_f32_and_receive_f32_gradients_through_the_bf16_copy() {
    let device = Device::flex().autodiff();
    let master = load_model_on(&fixtures().join("qwen3/tiny-qwen3-untied"), &device)
        .unwrap()
        .model;
    let copy = compute_copy(&master, DType::BF16);
    assert_eq!(master.head_weight().dtype(), DType::F32);
    assert_eq!(copy.head_weight().dtype(), DType::BF16);
    let w = copy.head_weight();
    let loss = (w.clone() * w).sum().cast(DType::F32);
    let mut g = loss.backward();
    let mut grads = NamedGrads::new();
    accumulate_grads(&master, &mut g, &mut grads, 1.0);
    let grad = &grads["lm_head.weight"];
    assert_eq!(grad.dtype(), DType::F32);
    let got = grad.clone().into_data().try_to_vec::<f32>().unwrap();
    let want = master
        .head_weight()
        .inner()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .filter(|(_, w)| w.abs() > 1e-6)
        .map(|(g, w)| ((g - 2.0 * w) / (2.0 * w)).abs())
        .fold(0.0f32, f32::max);
    eprintln!("bf16 copy: worst relative gradient error {worst:e}");
    assert!(worst < 3.0 * 2f32.powi(-9), "{worst}");
    // Only the head was in the loss, so only its master has a gradient.
    assert_eq!(grads.len(), 1);
}

/// On flex, psy's decoder cannot run in bf16 (its RoPE tables are f32 and flex refuses an
/// f32 x bf16 product): the run stops before training with an error naming the manifest, the
/// key, the backend and the operation's message, and writes no metrics or checkpoints.
#[test]
fn bf16_on_flex_is_refused_before_training_naming_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let m = demo_manifest(dir.path(), "");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("precision = \"f32\"", "precision = \"bf16\"");
    std::fs::write(&m, text).unwrap();
    let out = dir.path().join("out");
    let err = run_with(&options(&m, &out)).unwrap_err().to_string();
    eprintln!("{err}");
    for want in ["m.toml", "precision", "Flex", "dtype mismatch", "f32"] {
        assert!(err.contains(want), "`{want}` missing from: {err}");
    }
    assert!(!out.join("metrics.jsonl").exists());
    assert!(!out.join("checkpoints").exists());
}

/// bf16 with gradient checkpointing or memory-efficient attention is refused naming the keys.
#[test]
fn bf16_with_a_memory_saving_body_is_refused_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let m = demo_manifest(dir.path(), "");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("precision = \"f32\"", "precision = \"bf16\"")
        .replace(
            "gradient_checkpointing = false",
            "gradient_checkpointing = true",
        );
    std::fs::write(&m, text).unwrap();
    let err = run_with(&options(&m, &dir.path().join("out")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("precision") && err.contains("gradient_checkpointing"),
        "{err}"
    );
}

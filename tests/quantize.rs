//! f32 weights quantized to Q8_0 at load (`PSY_WEIGHTS=q8_0`): the blocks against gguf-py's
//! `quantize` (bit-exact), a Hugging Face checkpoint loaded that way against its f32 load, the
//! memory estimate, and bad weights refused by name.
//!
//! Run with `cargo test --release --test quantize`.

use std::path::{Path, PathBuf};

use psy_lm::runtime::burn::tensor::Device;
use psy_lm::runtime::ggml_type::GgmlDType;
use psy_lm::runtime::load::use_f32_activations;
use psy_lm::runtime::memory_check::estimate_load_as;
use psy_lm::runtime::model::KvCache;
use psy_lm::runtime::quant::quantize_q8_0;
use psy_lm::runtime::quantize_model::quantize_q8_0_in_place;
use psy_lm::runtime::{load_model_with, LoadedModel, RuntimeError, WeightFormat};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[path = "common/reference.rs"]
mod reference;
use reference::max_abs_diff;

#[path = "common/safetensors.rs"]
mod safetensors_file;
use safetensors_file::{read_safetensors, write_safetensors};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny_qwen3() -> PathBuf {
    fixtures().join("qwen3/tiny-qwen3")
}

/// A fixture file, checked against the sha256 its index records.
fn fixture_file(name: &str) -> Vec<u8> {
    let dir = fixtures().join("quantize");
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(name)).unwrap();
    assert_eq!(
        format!("{:x}", Sha256::digest(&bytes)),
        index["files"][name].as_str().unwrap(),
        "{name} changed since gguf-py made it"
    );
    bytes
}

#[test]
fn q8_0_blocks_equal_gguf_py_quantize_bit_for_bit() {
    let input: Vec<f32> = fixture_file("Q8_0.in.f32")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expected = fixture_file("Q8_0.bin");
    let blocks = input.len() / 32;
    // As one row of every block, and as rows of four blocks (the row split must not matter).
    for (rows, cols) in [(1, input.len()), (blocks / 4, 128)] {
        let got = quantize_q8_0(&input, rows, cols).unwrap();
        assert_eq!(got.len(), expected.len());
        let differ = got
            .chunks_exact(34)
            .zip(expected.chunks_exact(34))
            .position(|(a, b)| a != b);
        assert_eq!(differ, None, "first differing block ({rows} x {cols})");
    }
}

fn load(dir: &Path, weights: WeightFormat) -> LoadedModel {
    load_model_with(dir, &Device::flex(), weights)
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

fn last_logits(m: &LoadedModel, ids: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(&m.config, 1, ids.len(), &m.device);
    m.model.next_logits(ids, &mut cache)
}

#[test]
fn a_safetensors_checkpoint_loads_as_q8_0_and_predicts_as_its_f32_load() {
    let dir = tiny_qwen3();
    let f32_model = load(&dir, WeightFormat::F32);
    let q = load(&dir, WeightFormat::Q8_0);
    // Every matrix is held as Q8_0, none as f32.
    for (name, p) in q.model.model.layers[0].projections() {
        assert!(p.weight.is_none(), "{name}");
        assert_eq!(p.quant.as_ref().unwrap().dtype(), GgmlDType::Q8_0, "{name}");
    }
    assert_eq!(
        q.model.model.embed_tokens.quant.as_ref().unwrap().dtype(),
        GgmlDType::Q8_0
    );
    let ids: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 1000).collect();
    for n in [1, 4, 24] {
        let a = last_logits(&f32_model, &ids[..n]);
        let b = last_logits(&q, &ids[..n]);
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = max_abs_diff(&a, &b);
        eprintln!("{n} tokens: max logit difference {err} on logits up to {scale}");
        // 8-bit weights and 8-bit activations: measured 1.9-3.3% of the largest logit (0.053-
        // 0.083 on logits up to 2.5-3.4) at 1, 4 and 24 tokens.
        assert!(
            err <= 0.05 * scale,
            "{n} tokens: {err} vs logits up to {scale}"
        );
        let argmax = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .unwrap()
                .0
        };
        assert_eq!(argmax(&a), argmax(&b), "{n} tokens");
    }
}

/// Q8_0 bytes back to f32 (an f16 scale times each signed byte), as gguf-py dequantizes.
fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(34)
        .flat_map(|b| {
            let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            b[2..].iter().map(move |&q| d * (q as i8) as f32)
        })
        .collect()
}

#[test]
fn with_f32_activations_q8_0_equals_its_dequantized_weights_in_f32() {
    // The quantization error taken out: a checkpoint whose matrices are already what Q8_0
    // holds, loaded as f32, against the original loaded as Q8_0 and multiplied with f32
    // activations. Only f32 rounding may differ.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rounded");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny_qwen3().join("config.json"), dir.join("config.json")).unwrap();
    let mut tensors = read_safetensors(&tiny_qwen3().join("model.safetensors"));
    for (_, shape, data) in tensors.iter_mut().filter(|t| t.1.len() == 2) {
        *data = dequantize_q8_0(&quantize_q8_0(data, shape[0], shape[1]).unwrap());
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let rounded = load(&dir, WeightFormat::F32);
    let mut q = load(&tiny_qwen3(), WeightFormat::Q8_0);
    use_f32_activations(&mut q.model);
    let ids: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 1000).collect();
    for n in [1, 4, 24] {
        let err = max_abs_diff(
            &last_logits(&rounded, &ids[..n]),
            &last_logits(&q, &ids[..n]),
        );
        eprintln!("{n} tokens: f32 activations vs dequantized f32 weights: {err}");
        assert!(err < 1e-5, "{n} tokens: {err}");
    }
}

#[test]
fn a_model_in_memory_quantized_in_place_equals_one_loaded_as_q8_0() {
    let loaded = load(&tiny_qwen3(), WeightFormat::Q8_0);
    let mut in_place = load(&tiny_qwen3(), WeightFormat::F32);
    quantize_q8_0_in_place(&mut in_place.model).unwrap();
    assert!(in_place.model.model.embed_tokens.weight.is_none());
    let ids: Vec<u32> = (0..12).map(|i| (i * 53 + 1) % 1000).collect();
    for n in [1, 12] {
        assert_eq!(
            last_logits(&loaded, &ids[..n]),
            last_logits(&in_place, &ids[..n]),
            "{n} tokens"
        );
    }
}

#[test]
fn the_load_estimate_counts_q8_0_bytes() {
    let dir = tiny_qwen3();
    let f = estimate_load_as(&dir, true, false, "cpu").unwrap();
    let q = estimate_load_as(&dir, true, true, "cpu").unwrap();
    // 34 bytes per 32 weights against 4 bytes a weight.
    let ratio = q.weights as f64 / f.weights as f64;
    assert!((ratio - 34.0 / 128.0).abs() < 1e-3, "{ratio}");
}

#[test]
fn a_weight_that_is_not_finite_is_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nan");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(tiny_qwen3().join("config.json"), dir.join("config.json")).unwrap();
    let mut tensors = read_safetensors(&tiny_qwen3().join("model.safetensors"));
    let name = "model.layers.1.mlp.down_proj.weight";
    let t = tensors.iter_mut().find(|t| t.0 == name).unwrap();
    t.2[70] = f32::INFINITY;
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let err = match load_model_with(&dir, &Device::flex(), WeightFormat::Q8_0) {
        Ok(_) => panic!("an infinite weight was quantized"),
        Err(e) => e,
    };
    assert!(matches!(err, RuntimeError::Quantize { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(name) && msg.contains(&dir.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("not finite"), "{msg}");
    // The f32 load keeps what the file says.
    assert!(load_model_with(&dir, &Device::flex(), WeightFormat::F32).is_ok());
}

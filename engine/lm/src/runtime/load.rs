//! Loading a model for generation: an HF directory (config.json + safetensors) or a `.gguf`
//! file, with its tokenizer and end-of-sequence ids.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::config::{token_ids, ModelConfig};
use super::device::{select_device, DevicePreference};
use super::error::{Result, RuntimeError};
use super::model::CausalLm;
use super::quant::Activations;
use super::quantize_source::QuantizeOnLoad;
use super::tokenizer::Tokenizer;
use super::weights::{GgufSource, SafetensorsSource};

/// The tokenizer that ships with a model: `tokenizer.json` of an HF directory or the vocabulary
/// of a GGUF file. `Ok(None)` when an HF directory has none (run it with raw ids).
pub fn load_tokenizer(path: &Path) -> Result<Option<Tokenizer>> {
    if path.is_dir() && !path.join("tokenizer.json").is_file() {
        return Ok(None);
    }
    Tokenizer::from_path(path)
        .map(Some)
        .map_err(|e| RuntimeError::Tokenizer(e.to_string()))
}

/// Which file format a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    Safetensors,
    Gguf,
}

/// A model ready to generate, with what was learnt while loading it.
pub struct LoadedModel {
    pub model: CausalLm,
    pub config: ModelConfig,
    pub path: PathBuf,
    pub format: ModelFormat,
    /// End-of-sequence ids from `config.json`, `generation_config.json` or GGUF metadata.
    pub eos_token_ids: Vec<u32>,
    pub device: Device,
}

/// How GGUF weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// Every tensor dequantised to an f32 Burn tensor (training, parity with transformers).
    F32,
    /// Matrices stay in their file's block format and are multiplied from it (see
    /// [`super::quant::QuantMatrix`]); about the file's size in memory instead of 4 bytes a
    /// weight. Only on the CPU: other devices get [`WeightFormat::F32`].
    #[default]
    Quantized,
    /// As `Quantized`, but multiplied with f32 activations instead of 8-bit ones (slower; the
    /// dequantised f32 product up to f32 rounding). `PSY_WEIGHTS=quantized-f32act`.
    #[serde(rename = "quantized-f32act")]
    QuantizedF32Act,
    /// As `Quantized`, and the matrices a file holds in f32 or half precision (all of a Hugging
    /// Face checkpoint's, a GGUF's F32 ones) quantized to Q8_0 as they are read: a safetensors
    /// model at ~1.06 bytes a weight. `PSY_WEIGHTS=q8_0`.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl WeightFormat {
    /// `PSY_WEIGHTS=f32|quantized|quantized-f32act|q8_0`, else the default (quantized).
    pub fn from_env() -> Result<Self> {
        match std::env::var("PSY_WEIGHTS").as_deref() {
            Err(_) | Ok("") | Ok("quantized") => Ok(Self::Quantized),
            Ok("f32") => Ok(Self::F32),
            Ok("quantized-f32act") => Ok(Self::QuantizedF32Act),
            Ok("q8_0") => Ok(Self::Q8_0),
            Ok(other) => Err(RuntimeError::Request(format!(
                "PSY_WEIGHTS={other}: expected `f32`, `quantized`, `quantized-f32act` or `q8_0`"
            ))),
        }
    }
}

/// Loads an HF model directory (config.json + safetensors) or a `.gguf` file on the default
/// device (see [`select_device`]), GGUF weights as [`WeightFormat::from_env`] says (quantized
/// unless `PSY_WEIGHTS=f32`).
pub fn load_model(path: &Path) -> Result<LoadedModel> {
    load_model_with(
        path,
        &select_device(DevicePreference::Auto)?,
        WeightFormat::from_env()?,
    )
}

/// [`load_model`] on an explicit device with every weight as f32 (what training and the
/// transformers parity tests need).
pub fn load_model_on(path: &Path, device: &Device) -> Result<LoadedModel> {
    load_model_with(path, device, WeightFormat::F32)
}

/// [`load_model`] on an explicit device and weight format.
pub fn load_model_with(path: &Path, device: &Device, weights: WeightFormat) -> Result<LoadedModel> {
    let started = Instant::now();
    // The quantized kernels run on the CPU only.
    let keep = weights != WeightFormat::F32 && *device == Device::flex();
    // Matrices not already in a block format become Q8_0 (CPU only, as above).
    let to_q8_0 = weights == WeightFormat::Q8_0 && keep;
    if *device == Device::flex() {
        // Refused before a weight is read (free memory of other devices is not checked).
        let estimate = super::memory_check::estimate_load_as(path, keep, to_q8_0, "cpu")?;
        tracing::debug!("{}", estimate.describe());
        estimate.check(path)?;
    }
    let loaded = if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
        let mut loaded = load_gguf_with(path, device, keep, to_q8_0)?;
        if weights == WeightFormat::QuantizedF32Act {
            use_f32_activations(&mut loaded.model);
        }
        loaded
    } else {
        let config_path = path.join("config.json");
        let config = ModelConfig::from_hf_file(&config_path)?;
        let mut src = SafetensorsSource::open(path)?;
        let model = if to_q8_0 {
            CausalLm::load(&config, &mut QuantizeOnLoad::new(&mut src), device)?
        } else {
            CausalLm::load(&config, &mut src, device)?
        };
        let mut eos = config.eos_token_ids.clone();
        if let Ok(text) = std::fs::read_to_string(path.join("generation_config.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                for id in token_ids(v.get("eos_token_id")) {
                    if !eos.contains(&id) {
                        eos.push(id);
                    }
                }
            }
        }
        LoadedModel {
            model,
            config,
            path: path.to_path_buf(),
            format: ModelFormat::Safetensors,
            eos_token_ids: eos,
            device: device.clone(),
        }
    };
    tracing::info!(path = %path.display(), secs = started.elapsed().as_secs_f64(), "loaded model");
    Ok(loaded)
}

/// Makes every quantized matrix of `model` multiply with f32 activations
/// ([`WeightFormat::QuantizedF32Act`]).
pub fn use_f32_activations(model: &mut CausalLm) {
    let m = &mut model.model;
    m.embed_tokens.activations = Activations::F32;
    for l in &mut m.layers {
        for (_, p) in l.projections_mut() {
            p.activations = Activations::F32;
        }
    }
    if let Some(h) = &mut model.lm_head {
        h.activations = Activations::F32;
    }
}

/// Loads a GGUF checkpoint (llama, qwen2, qwen3): matrices kept in their block format with
/// `keep_quantized`, every tensor dequantised to f32 otherwise.
pub fn load_gguf(path: &Path, device: &Device, keep_quantized: bool) -> Result<LoadedModel> {
    load_gguf_with(path, device, keep_quantized, false)
}

/// [`load_gguf`]; with `to_q8_0`, F32/F16/BF16 matrices are quantized to Q8_0 as well.
fn load_gguf_with(
    path: &Path,
    device: &Device,
    keep_quantized: bool,
    to_q8_0: bool,
) -> Result<LoadedModel> {
    let (mut src, config) = GgufSource::open(path, keep_quantized)?;
    let model = if to_q8_0 {
        CausalLm::load(&config, &mut QuantizeOnLoad::new(&mut src), device)?
    } else {
        CausalLm::load(&config, &mut src, device)?
    };
    Ok(LoadedModel {
        model,
        eos_token_ids: config.eos_token_ids.clone(),
        config,
        path: path.to_path_buf(),
        format: ModelFormat::Gguf,
        device: device.clone(),
    })
}

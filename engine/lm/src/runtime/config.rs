//! Model hyper-parameters, read from a Hugging Face `config.json` (transformers 4.x and 5.x
//! spellings) or from GGUF `llama.*` metadata, and the size checks every source passes before
//! anything is allocated from them.

use std::path::Path;

use burn::config::Config;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::RuntimeError;

/// The decoder families this runtime implements; they differ only in a few switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Qwen3: per-head RMSNorm on q and k, no biases, free `head_dim`.
    Qwen3,
    /// Qwen2 / Qwen2.5: biases on q, k and v projections.
    Qwen2,
    /// Llama family (SmolLM2, Mistral without sliding window).
    Llama,
}

/// Hyper-parameters of one decoder-only transformer.
#[derive(Config, Debug)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    #[config(default = 1e-6)]
    pub rms_norm_eps: f64,
    #[config(default = false)]
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2, some Llama variants).
    #[config(default = false)]
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama `attention_bias` applies to all four).
    #[config(default = false)]
    pub o_bias: bool,
    /// Per-head RMSNorm of q and k before RoPE (Qwen3).
    #[config(default = false)]
    pub qk_norm: bool,
    #[config(default = 4096)]
    pub max_position_embeddings: usize,
    #[config(default = "None")]
    pub bos_token_id: Option<u32>,
    #[config(default = "Vec::new()")]
    pub eos_token_ids: Vec<u32>,
}

/// A size of [`ModelConfig`], named in each file format's spelling by the errors about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeField {
    VocabSize,
    HiddenSize,
    IntermediateSize,
    NumHiddenLayers,
    NumAttentionHeads,
    NumKeyValueHeads,
    HeadDim,
    MaxPositionEmbeddings,
}

impl SizeField {
    /// In the order they are checked.
    pub const ALL: [SizeField; 8] = [
        SizeField::VocabSize,
        SizeField::HiddenSize,
        SizeField::IntermediateSize,
        SizeField::NumHiddenLayers,
        SizeField::NumAttentionHeads,
        SizeField::NumKeyValueHeads,
        SizeField::HeadDim,
        SizeField::MaxPositionEmbeddings,
    ];

    /// The key in a Hugging Face `config.json`.
    pub fn hf_name(self) -> &'static str {
        match self {
            SizeField::VocabSize => "vocab_size",
            SizeField::HiddenSize => "hidden_size",
            SizeField::IntermediateSize => "intermediate_size",
            SizeField::NumHiddenLayers => "num_hidden_layers",
            SizeField::NumAttentionHeads => "num_attention_heads",
            SizeField::NumKeyValueHeads => "num_key_value_heads",
            SizeField::HeadDim => "head_dim",
            SizeField::MaxPositionEmbeddings => "max_position_embeddings",
        }
    }

    /// The GGUF metadata key after the `<architecture>.` prefix.
    pub fn gguf_key(self) -> &'static str {
        match self {
            SizeField::VocabSize => "vocab_size",
            SizeField::HiddenSize => "embedding_length",
            SizeField::IntermediateSize => "feed_forward_length",
            SizeField::NumHiddenLayers => "block_count",
            SizeField::NumAttentionHeads => "attention.head_count",
            SizeField::NumKeyValueHeads => "attention.head_count_kv",
            SizeField::HeadDim => "attention.key_length",
            SizeField::MaxPositionEmbeddings => "context_length",
        }
    }

    /// Largest accepted value: well above every released model (vocabularies reach ~256 k,
    /// hidden sizes ~25 k, head_dim 256), far below what would make one weight matrix
    /// overflow or ask for terabytes. The context length is not capped: the RoPE table is
    /// built for at most `MAX_ROPE_POSITIONS` of it.
    fn max(self) -> Option<usize> {
        match self {
            SizeField::VocabSize => Some(1 << 22),
            SizeField::HiddenSize => Some(1 << 16),
            SizeField::IntermediateSize => Some(1 << 18),
            SizeField::NumHiddenLayers => Some(1 << 10),
            SizeField::NumAttentionHeads | SizeField::NumKeyValueHeads => Some(1 << 10),
            SizeField::HeadDim => Some(1 << 10),
            SizeField::MaxPositionEmbeddings => None,
        }
    }
}

/// What is wrong with a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeProblem {
    Zero,
    AboveMax(usize),
    /// The field does not divide this other field (its value given).
    NotDividing(SizeField, usize),
    /// RoPE needs an even `head_dim`.
    OddForRope,
}

/// A size of a model config that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe(|f| format!("`{}`", f.hf_name())))]
pub struct SizeError {
    pub field: SizeField,
    pub value: usize,
    pub problem: SizeProblem,
}

impl SizeError {
    /// The message with fields spelt by `name` (HF keys, GGUF metadata keys).
    pub fn describe(&self, name: impl Fn(SizeField) -> String) -> String {
        let (field, value) = (name(self.field), self.value);
        match &self.problem {
            SizeProblem::Zero => format!("{field} is 0"),
            SizeProblem::AboveMax(max) => {
                format!("{field} is {value}, above the supported maximum {max}")
            }
            SizeProblem::NotDividing(other, other_value) => format!(
                "{field} ({value}) does not divide {} ({other_value})",
                name(*other)
            ),
            SizeProblem::OddForRope => {
                format!("{field} is {value}; rotary embeddings need an even head dimension")
            }
        }
    }
}

/// `config.json` as transformers writes it; only the fields this runtime needs.
#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    rms_norm_eps: Option<f64>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

/// Token ids given as one integer or a list (both spellings occur in HF configs).
pub(crate) fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

impl ModelConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self, RuntimeError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json(&text).map_err(|msg| RuntimeError::Config {
            path: path.to_path_buf(),
            msg,
        })
    }

    /// Parses the text of a Hugging Face `config.json`; sizes are checked by
    /// [`Self::check_sizes`] and errors name the field.
    pub fn from_hf_json(text: &str) -> Result<Self, String> {
        let raw: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        // serde's own message for `"hidden_size": -1` does not say which field it was.
        for field in SizeField::ALL {
            match raw.get(field.hf_name()) {
                None | Some(Value::Null) => {}
                Some(v) if v.is_u64() => {}
                Some(v) => {
                    return Err(format!(
                        "`{}` must be a non-negative integer, found {v}",
                        field.hf_name()
                    ))
                }
            }
        }
        let hf: HfConfig = serde_json::from_value(raw).map_err(|e| e.to_string())?;
        let model_type = hf
            .model_type
            .clone()
            .or_else(|| hf.architectures.first().cloned())
            .unwrap_or_default()
            .to_lowercase();
        let architecture = if model_type.starts_with("qwen3") {
            Architecture::Qwen3
        } else if model_type.starts_with("qwen2") {
            Architecture::Qwen2
        } else if model_type.starts_with("llama") || model_type.starts_with("mistral") {
            Architecture::Llama
        } else {
            return Err(format!(
                "model_type `{model_type}` is not supported (qwen3, qwen2, llama)"
            ));
        };
        if let Some(act) = &hf.hidden_act {
            if act != "silu" {
                return Err(format!("hidden_act `{act}` is not supported (silu)"));
            }
        }
        // transformers 5 moved rope_theta into `rope_parameters`; 4.x keeps it top level.
        let nested = hf.rope_parameters.as_ref().or(hf.rope_scaling.as_ref());
        if let Some(Value::Object(p)) = nested {
            if let Some(t) = p.get("rope_type").or_else(|| p.get("type")) {
                if t.as_str() != Some("default") {
                    return Err(format!("rope scaling {t} is not supported"));
                }
            }
        }
        let rope_theta = nested
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .or(hf.rope_theta)
            .unwrap_or(10000.0);
        let heads = hf.num_attention_heads;
        let head_dim = match hf.head_dim {
            Some(d) => d,
            // Zero heads is reported by `check_sizes` under its own name.
            None if heads == 0 => 0,
            None if hf.hidden_size.is_multiple_of(heads) => hf.hidden_size / heads,
            None => {
                return Err(format!(
                    "`head_dim` is absent and `hidden_size` ({}) is not a multiple of \
                     `num_attention_heads` ({heads})",
                    hf.hidden_size
                ))
            }
        };
        let attention_bias = hf.attention_bias.unwrap_or(false);
        let config = ModelConfig {
            architecture,
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(heads),
            head_dim,
            rope_theta,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture != Architecture::Qwen2 && attention_bias,
            qk_norm: architecture == Architecture::Qwen3,
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(4096),
            bos_token_id: token_ids(hf.bos_token_id.as_ref()).first().copied(),
            eos_token_ids: token_ids(hf.eos_token_id.as_ref()),
        };
        config
            .check_sizes()
            .map_err(|e| e.describe(|f| format!("`{}`", f.hf_name())))?;
        Ok(config)
    }

    /// Refuses sizes that are zero, absurd (beyond any released model, so a corrupt file
    /// fails here rather than in a multi-GB allocation) or inconsistent with each other.
    pub fn check_sizes(&self) -> Result<(), SizeError> {
        let value = |f: SizeField| match f {
            SizeField::VocabSize => self.vocab_size,
            SizeField::HiddenSize => self.hidden_size,
            SizeField::IntermediateSize => self.intermediate_size,
            SizeField::NumHiddenLayers => self.num_hidden_layers,
            SizeField::NumAttentionHeads => self.num_attention_heads,
            SizeField::NumKeyValueHeads => self.num_key_value_heads,
            SizeField::HeadDim => self.head_dim,
            SizeField::MaxPositionEmbeddings => self.max_position_embeddings,
        };
        let error = |field, problem| {
            Err(SizeError {
                field,
                value: value(field),
                problem,
            })
        };
        for field in SizeField::ALL {
            if value(field) == 0 {
                return error(field, SizeProblem::Zero);
            }
            if let Some(max) = field.max() {
                if value(field) > max {
                    return error(field, SizeProblem::AboveMax(max));
                }
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return error(
                SizeField::NumKeyValueHeads,
                SizeProblem::NotDividing(SizeField::NumAttentionHeads, self.num_attention_heads),
            );
        }
        // RoPE rotates pairs of dimensions (the two halves of each head).
        if !self.head_dim.is_multiple_of(2) {
            return error(SizeField::HeadDim, SizeProblem::OddForRope);
        }
        Ok(())
    }

    /// Number of query heads sharing one key/value head.
    pub fn n_rep(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

impl ModelConfig {
    /// Parameter count from the shapes alone (what [`crate::runtime::CausalLm`] allocates), so
    /// memory can be planned without loading the weights.
    pub fn num_params(&self) -> u64 {
        let h = self.hidden_size as u64;
        let q = (self.num_attention_heads * self.head_dim) as u64;
        let kv = (self.num_key_value_heads * self.head_dim) as u64;
        let inter = self.intermediate_size as u64;
        let mut layer = h * q + 2 * h * kv + q * h + 3 * h * inter + 2 * h;
        if self.qkv_bias {
            layer += q + 2 * kv;
        }
        if self.o_bias {
            layer += h;
        }
        if self.qk_norm {
            layer += 2 * self.head_dim as u64;
        }
        let embed = self.vocab_size as u64 * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_hidden_layers as u64 * layer + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_transformers_4_llama_and_qwen2_spellings() {
        let llama = r#"{"model_type":"llama","vocab_size":49152,"hidden_size":576,
            "intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
            "num_key_value_heads":3,"rope_theta":100000.0,"rms_norm_eps":1e-5,
            "tie_word_embeddings":true,"eos_token_id":2,"rope_scaling":null}"#;
        let c = ModelConfig::from_hf_json(llama).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!((c.head_dim, c.n_rep(), c.rope_theta), (64, 3, 100000.0));
        assert!(!c.qk_norm && !c.qkv_bias && c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, vec![2]);
        let qwen2 = r#"{"model_type":"qwen2","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,
            "rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"},
            "eos_token_id":[5,7]}"#;
        let c = ModelConfig::from_hf_json(qwen2).unwrap();
        assert!(c.qkv_bias && !c.o_bias && !c.qk_norm);
        assert_eq!((c.rope_theta, c.eos_token_ids.clone()), (1e6, vec![5, 7]));
    }

    #[test]
    fn rejects_unsupported_models() {
        let bad = r#"{"model_type":"gpt2","vocab_size":1,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2}"#;
        assert!(ModelConfig::from_hf_json(bad).unwrap_err().contains("gpt2"));
        let scaled = r#"{"model_type":"llama","vocab_size":1,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"rope_scaling":{"rope_type":"llama3"}}"#;
        assert!(ModelConfig::from_hf_json(scaled)
            .unwrap_err()
            .contains("llama3"));
    }
}

//! The sentence-transformers module list of an encoder directory (`modules.json`): which
//! directory holds the transformer, how its token states are pooled, whether the result is
//! normalised, and how many tokens are kept (`sentence_bert_config.json`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{EncoderError, Result};
use super::pooling::Pooling;

/// What sentence-transformers would run for this directory, in order.
#[derive(Debug, Clone)]
pub struct SentencePipeline {
    /// Directory of the `Transformer` module (config.json, model.safetensors, tokenizer.json).
    pub transformer_dir: PathBuf,
    /// Directory of the `Pooling` module (its `config.json`).
    pub pooling_dir: PathBuf,
    /// Whether a `Normalize` module follows the pooling.
    pub normalize: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`: the Transformer module's settings.
#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl SentencePipeline {
    /// Reads `dir/modules.json`: a Transformer, a Pooling, then optionally a Normalize module.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("modules.json");
        let text = std::fs::read_to_string(&path).map_err(|source| EncoderError::Io {
            path: path.clone(),
            source,
        })?;
        let entries: Vec<ModuleEntry> =
            serde_json::from_str(&text).map_err(|e| EncoderError::Parse {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        // Matched on the class name: sentence-transformers has moved its modules between
        // Python packages across versions.
        let class = |e: &ModuleEntry| e.kind.rsplit('.').next().unwrap_or_default().to_string();
        let unsupported = |kind: &str| EncoderError::UnsupportedModule {
            path: path.clone(),
            kind: kind.into(),
        };
        let mut entries = entries.iter();
        let transformer = match entries.next() {
            Some(e) if class(e) == "Transformer" => dir.join(&e.path),
            Some(e) => return Err(unsupported(&e.kind)),
            None => return Err(unsupported("(empty list)")),
        };
        let pooling_dir = match entries.next() {
            Some(e) if class(e) == "Pooling" => dir.join(&e.path),
            Some(e) => return Err(unsupported(&e.kind)),
            None => return Err(unsupported("(no Pooling module)")),
        };
        let normalize = match entries.next() {
            Some(e) if class(e) == "Normalize" => true,
            Some(e) => return Err(unsupported(&e.kind)),
            None => false,
        };
        if let Some(e) = entries.next() {
            return Err(unsupported(&e.kind));
        }
        Ok(Self {
            transformer_dir: transformer,
            pooling_dir,
            normalize,
        })
    }

    /// The pooling of the `Pooling` module, checked against the model's hidden size.
    pub fn pooling(&self, hidden_size: usize) -> Result<Pooling> {
        Pooling::from_file(&self.pooling_dir.join("config.json"), hidden_size)
    }

    /// Tokens kept per text, `[CLS]` and `[SEP]` included: `max_seq_length` of
    /// `sentence_bert_config.json` when present, else the model's position count.
    pub fn max_seq_length(&self, max_position_embeddings: usize) -> Result<usize> {
        let path = self.transformer_dir.join("sentence_bert_config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(max_position_embeddings)
            }
            Err(source) => return Err(EncoderError::Io { path, source }),
        };
        let config: SentenceBertConfig =
            serde_json::from_str(&text).map_err(|e| EncoderError::Parse {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        match config.max_seq_length {
            None => Ok(max_position_embeddings),
            Some(n) if (1..=max_position_embeddings).contains(&n) => Ok(n),
            Some(n) => Err(EncoderError::Field {
                path,
                field: "max_seq_length".into(),
                msg: format!(
                    "{n} is outside 1..={max_position_embeddings} (max_position_embeddings)"
                ),
            }),
        }
    }
}

//! BERT hyper-parameters, read from the Hugging Face `config.json` of the encoder directory.
//!
//! Shape fields are required (a checkpoint without them cannot be checked against its tensors);
//! the rest default as transformers' `BertConfig` does.

use std::path::Path;

use serde::Deserialize;

use super::error::{EncoderError, Result};

/// `config.json` of a `BertModel`, with the Hugging Face field names.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_hidden_act() -> String {
    "gelu".into()
}

fn default_position_embedding_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| EncoderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|e| EncoderError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Refuses what the model in [`super::model`] does not implement.
    fn check(&self, path: &Path) -> Result<()> {
        let field = |field: &str, msg: String| EncoderError::Field {
            path: path.to_path_buf(),
            field: field.into(),
            msg,
        };
        if let Some(t) = &self.model_type {
            if t != "bert" {
                return Err(field(
                    "model_type",
                    format!("`{t}` is not supported (bert)"),
                ));
            }
        }
        // transformers' "gelu" is the exact erf form; the tanh variants differ by ~1e-3.
        if self.hidden_act != "gelu" {
            return Err(field(
                "hidden_act",
                format!("`{}` is not supported (gelu)", self.hidden_act),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(field(
                "position_embedding_type",
                format!(
                    "`{}` is not supported (absolute)",
                    self.position_embedding_type
                ),
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(field(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if value == 0 {
                return Err(field(name, "must be positive".into()));
            }
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BertConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        BertConfig::from_file(&path)
    }

    const SHAPE: &str = r#""vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
        "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":32"#;

    #[test]
    fn defaults_follow_transformers_bert_config() {
        let c = parse(&format!("{{{SHAPE}}}")).unwrap();
        assert_eq!((c.type_vocab_size, c.layer_norm_eps), (2, 1e-12));
        assert_eq!(c.head_dim(), 4);
    }

    #[test]
    fn refuses_what_the_model_does_not_implement() {
        let e = parse(&format!("{{{SHAPE},\"hidden_act\":\"gelu_new\"}}")).unwrap_err();
        assert!(e.to_string().contains("hidden_act"), "{e}");
        let e = parse(&format!("{{{SHAPE},\"model_type\":\"roberta\"}}")).unwrap_err();
        assert!(e.to_string().contains("model_type"), "{e}");
        let e = parse(&format!(
            "{{{SHAPE},\"position_embedding_type\":\"relative_key\"}}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("position_embedding_type"), "{e}");
        let odd_heads = SHAPE.replace("\"num_attention_heads\":2", "\"num_attention_heads\":3");
        let e = parse(&format!("{{{odd_heads}}}")).unwrap_err();
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
    }
}

//! Typed errors of the sentence encoder: each names the file and the field, module or tensor at
//! fault, so that a broken encoder directory is diagnosed from the message alone.

use std::path::PathBuf;

use crate::runtime::RuntimeError;

/// Error raised while loading an encoder directory or embedding texts.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed JSON or a missing field; serde's message names the field and line.
    #[error("invalid {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    /// A field that parsed but holds a value this encoder cannot run.
    #[error("{path}: field `{field}`: {msg}")]
    Field {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{path}: pooling `{mode}` is not supported (supported: pooling_mode_mean_tokens, pooling_mode_cls_token, one at a time)")]
    UnsupportedPooling { path: PathBuf, mode: String },
    #[error("{path}: sentence-transformers module `{kind}` is not supported (supported: Transformer, Pooling, Normalize, in that order)")]
    UnsupportedModule { path: PathBuf, kind: String },
    /// Missing, mis-shaped or wrongly typed tensors (the runtime's safetensors reader).
    #[error(transparent)]
    Weights(#[from] RuntimeError),
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("default encoder {path} is missing: run scripts/setup.sh (or pass --encoder DIR)")]
    MissingDefault { path: PathBuf },
    #[error("reading back the pooled embeddings: {0}")]
    Output(String),
    /// An unknown `PSY_ENCODER_WEIGHTS`.
    #[error("encoder precision: {0}")]
    Precision(String),
    /// A screen adapter that does not fit this encoder.
    #[error("{origin}: encoder adapter: {msg}")]
    Adapter { origin: String, msg: String },
}

/// Result alias of the encoder.
pub type Result<T, E = EncoderError> = std::result::Result<T, E>;

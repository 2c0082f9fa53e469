//! Typed errors of the model runtime: every failure names the file or tensor involved so that a
//! broken checkpoint can be diagnosed without a debugger.

use std::path::PathBuf;

/// Error raised while loading a checkpoint or running generation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid model config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("invalid or truncated safetensors file {path}: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    #[error("tensor `{name}` in {path} has unsupported dtype {dtype} (expected F32, F16 or BF16)")]
    UnsupportedDtype {
        name: String,
        path: PathBuf,
        dtype: String,
    },
    #[error("tensor `{name}` is missing from {path}")]
    MissingTensor { name: String, path: PathBuf },
    #[error("unexpected tensor(s) in {path}: {names:?}")]
    UnexpectedTensors { names: Vec<String>, path: PathBuf },
    #[error("tensor `{name}` in {path} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        path: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` in {path} cannot be held as Q8_0: {msg}")]
    Quantize {
        name: String,
        path: PathBuf,
        msg: String,
    },
    #[error("GGUF file {path}: {msg}")]
    Gguf { path: PathBuf, msg: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("invalid generation request: {0}")]
    Request(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A panic while decoding one request of a batch (that request fails, the others go on).
    #[error("decoding failed: {0}")]
    Panicked(String),
    /// The batch engine's thread is gone.
    #[error("the decoding engine has stopped")]
    EngineStopped,
    #[error("{path}: the model does not fit in memory; {detail}")]
    DoesNotFit { path: PathBuf, detail: String },
}

/// Result alias of the runtime.
pub type Result<T> = std::result::Result<T, RuntimeError>;

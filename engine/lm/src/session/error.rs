//! Why a turn could not be produced.

use std::path::PathBuf;

use crate::runtime::chat_template::ChatTemplateError;
use crate::runtime::tokenizer::TokenizerError;
use crate::runtime::RuntimeError;

/// Why a turn could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("chat template: {0}")]
    Template(#[from] ChatTemplateError),
    #[error("{model}: the model has no chat template (its tokenizer carries none)")]
    NoTemplate { model: PathBuf },
    #[error("prompt is {tokens} tokens; the model's context is {context}")]
    PromptTooLong { tokens: usize, context: usize },
    #[error("the dialogue has no client message to answer")]
    NoClientMessage,
    /// A remote model (an OpenAI-compatible upstream) failed or answered something unusable.
    #[error("upstream {url}: {message}")]
    Upstream { url: String, message: String },
    #[error("generation was cancelled")]
    Cancelled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

pub type Result<T, E = SessionError> = std::result::Result<T, E>;

//! Judge errors: each names the endpoint (base URL and model) or cache file involved.

use std::path::PathBuf;

/// Why a verdict could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// `api_key_env` names a variable the environment does not hold.
    #[error(
        "judge {base_url} (model {model}): environment variable {var} (api_key_env) is not set"
    )]
    MissingApiKey {
        /// Endpoint base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// The variable that should hold the API key.
        var: String,
    },
    /// Bad backend configuration (e.g. an unusable base URL or timeout).
    #[error("judge {base_url} (model {model}): {message}")]
    Config {
        /// Endpoint base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// The endpoint refused the request with a status that retrying cannot fix (4xx but 429).
    #[error("judge {base_url} (model {model}): HTTP {status}: {message}")]
    Rejected {
        /// Endpoint base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// HTTP status code.
        status: u16,
        /// The error message from the response body (or the body itself).
        message: String,
    },
    /// 429, 5xx, timeouts or connection errors persisted through every attempt.
    #[error("judge {base_url} (model {model}): gave up after {attempts} attempts; last: {last}")]
    Unavailable {
        /// Endpoint base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// Requests made.
        attempts: u32,
        /// The last failure (status and message, or the transport error).
        last: String,
    },
    /// A 200 response that is not a chat completion with text content.
    #[error("judge {base_url} (model {model}): unexpected response: {message}")]
    BadResponse {
        /// Endpoint base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// What was wrong with it.
        message: String,
    },
    /// Another backend (e.g. a local psy model) failed.
    #[error("judge {backend}: {message}")]
    Backend {
        /// The backend's id.
        backend: String,
        /// What failed.
        message: String,
    },
    /// The verdict never parsed or validated, repairs included.
    #[error(
        "verdict invalid after {attempts} attempts: {last_error}; last reply: {}",
        preview(last_text)
    )]
    Invalid {
        /// Replies obtained (first answer plus repairs).
        attempts: u32,
        /// The last parse or validation error.
        last_error: String,
        /// The last reply, verbatim.
        last_text: String,
        /// Tokens of all those replies, when the backend reported every count.
        usage: Option<super::usage::TokenUsage>,
    },
    /// The SQLite cache could not be opened or read.
    #[error("judge cache {}: {message}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// An error tied to the item it happened on.
    #[error("item {item}: {source}")]
    ForItem {
        /// The call's `item` label.
        item: String,
        /// The underlying error.
        source: Box<JudgeError>,
    },
}

impl JudgeError {
    /// The error without its item context (to match on the kind of failure).
    pub fn innermost(&self) -> &JudgeError {
        match self {
            JudgeError::ForItem { source, .. } => source.innermost(),
            other => other,
        }
    }

    /// Whether the verdict never validated (the runner counts these apart from outages).
    pub fn is_invalid_verdict(&self) -> bool {
        matches!(self.innermost(), JudgeError::Invalid { .. })
    }

    /// Attaches the item label (nothing when it is empty or already attached).
    pub(crate) fn for_item(self, item: &str) -> JudgeError {
        if item.is_empty() || matches!(self, JudgeError::ForItem { .. }) {
            self
        } else {
            JudgeError::ForItem {
                item: item.to_string(),
                source: Box::new(self),
            }
        }
    }
}

/// The first 200 characters of a reply, for one-line messages.
fn preview(text: &str) -> String {
    const LIMIT: usize = 200;
    let mut out: String = text.chars().take(LIMIT).collect();
    if text.chars().count() > LIMIT {
        out.push('…');
    }
    format!("{out:?}")
}

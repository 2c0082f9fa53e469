//! Where the upstream is and how to talk to it.

use std::path::PathBuf;
use std::time::Duration;

/// Where the upstream is and how to talk to it.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The endpoint's base URL including `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model name sent in every request.
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// The upstream model's `tokenizer.json`, for the label ban's `logit_bias`.
    pub tokenizer: Option<PathBuf>,
    /// A whole draft (connect to last token) must finish within this.
    pub timeout: Duration,
}

impl UpstreamConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            tokenizer: None,
            timeout: Duration::from_secs(300),
        }
    }
}

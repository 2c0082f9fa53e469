//! `--upstream URL`: counseling sessions drafted by a remote model behind any
//! OpenAI-compatible streaming endpoint (vLLM, llama.cpp's server, `psy serve --raw`, a hosted
//! API). Planning, prompts, the streamed crisis guard and the repairs stay in psy: only the
//! [`Drafter`](psy_lm::session::Drafter) seam goes over HTTP ([`UpstreamDrafter`]).
//!
//! The label ban: given the upstream model's tokenizer, psy computes the token ids of the
//! words to avoid and sends them as `logit_bias` ([`label_bias`]); without it the redraft
//! relies on its instruction naming the words, and the turn's `repairs[]` says so.

mod drafter;
mod label_bias;
mod sse;

use std::path::PathBuf;
use std::time::Duration;

pub use drafter::UpstreamDrafter;
pub use label_bias::label_bias;

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

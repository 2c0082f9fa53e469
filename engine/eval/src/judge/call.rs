//! What a judge is asked: the chat messages of one verdict and the decoding settings around them.

use serde::{Deserialize, Serialize};

/// One chat message as OpenAI-compatible endpoints take it (`role` is `system`, `user` or
/// `assistant`; content is plain text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// One judged item: the prompt, the verdict's JSON schema and the decoding settings.
///
/// Everything but `item` enters the cache key (with the backend id), so two calls that differ
/// in any of them are judged separately. `repeat` is the index of this repetition (0-based):
/// a rubric with `repeats = n` issues n calls that differ only in it. A backend sees the seed
/// as given; vary it per repeat if the endpoint is deterministic under a fixed seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeCall {
    /// System and user messages, in order.
    pub messages: Vec<ChatMessage>,
    /// JSON schema the verdict must satisfy (sent as `response_format`).
    pub schema: serde_json::Value,
    /// Schema name for `response_format.json_schema.name` (letters, digits, `_`, `-`).
    pub schema_name: String,
    /// Sampling temperature.
    pub temperature: f32,
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Sampling seed, when the endpoint honours one.
    pub seed: Option<u64>,
    /// Index of this repetition of the same prompt (0-based).
    pub repeat: u32,
    /// Rubric id plus a hash of its version: a changed rubric misses the cache.
    pub rubric_key: String,
    /// What is being judged (e.g. `set/dialogue-12/turn-3`), for error messages only; not part
    /// of the cache key.
    #[serde(default)]
    pub item: String,
}

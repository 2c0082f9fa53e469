//! The one thing a judge backend does: turn a call into the model's raw reply text, with the
//! tokens it took when the backend knows them.

use super::call::JudgeCall;
use super::error::JudgeError;
use super::usage::TokenUsage;

/// One reply of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    /// `None` when the backend did not say (an endpoint without `usage` in its response).
    pub usage: Option<TokenUsage>,
}

/// A model that answers judge calls: a remote OpenAI-compatible endpoint ([`super::OpenAiBackend`])
/// or a local psy model decoding under the verdict schema.
///
/// Synchronous and object-safe so that [`super::Judge`] can hold any backend behind an `Arc` and
/// drive it from worker threads. Transport retries belong to the backend; parsing, validation and
/// repair belong to the judge.
pub trait JudgeBackend: Send + Sync {
    /// Stable identity of the judging model (e.g. `openai:<base_url>:<model>` or
    /// `psy:<model sha>`): part of the cache key, so it must change when the model does.
    fn id(&self) -> String;

    /// The raw reply for `call`.
    ///
    /// On a repair attempt `previous_error` holds the parse or validation error of the last
    /// reply, and `call.messages` already end with that reply and a user message asking for
    /// corrected JSON; a backend may use the error (e.g. to log it) or ignore it.
    fn complete(
        &self,
        call: &JudgeCall,
        previous_error: Option<&str>,
    ) -> Result<Completion, JudgeError>;
}

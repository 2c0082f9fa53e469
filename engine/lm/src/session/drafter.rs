//! The seam between sessions and a model: one request in, a streamed draft out.
//!
//! Tests put a scripted drafter here to inject drafts that break the rules on purpose;
//! [`ModelDrafter`](super::ModelDrafter) is the real model.

use std::ops::ControlFlow;

use crate::runtime::chat_template::ChatMessage;
use crate::runtime::{FinishReason, SamplingConfig};

use super::Result;

/// What one call to the model should produce.
#[derive(Clone, Debug, Default)]
pub struct DraftRequest {
    pub messages: Vec<ChatMessage>,
    /// Text the assistant message already starts with; the draft continues it.
    pub assistant_prefix: String,
    pub max_new_tokens: usize,
    /// Let the model open `<think>` itself (`native` mode).
    pub thinking: bool,
    /// Phrases whose tokens get a banned-token logit bias.
    pub banned_phrases: Vec<String>,
    pub sampling: SamplingConfig,
    pub stop: Vec<String>,
}

/// A streamed token's text as the drafter sees it.
#[derive(Clone, Copy, Debug)]
pub struct DraftEvent<'a> {
    pub delta: &'a str,
    pub in_think: bool,
}

/// What the model produced for one [`DraftRequest`] (without the assistant prefix).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub reasoning: String,
    pub content: String,
    pub prompt_tokens: usize,
    /// Of `prompt_tokens`, those reused from the drafter's prompt cache.
    pub prompt_tokens_cached: usize,
    pub completion_tokens: usize,
    /// Words the generator was told never to complete.
    pub banned_words: Vec<String>,
    pub finish: Option<FinishReason>,
    pub decode_tokens_per_second: f64,
    /// Wall-clock of the prompt's prefill (the part not reused from the cache) and of the
    /// decode steps after it, when the drafter measures them (0 otherwise).
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// The seam between sessions and a model: render, tokenize, generate with streaming.
/// `on_event` returning `Break` stops generation after the current token.
pub trait Drafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft>;

    /// Context length in tokens, when known.
    fn context_length(&self) -> Option<usize> {
        None
    }

    /// Whether [`DraftRequest::banned_phrases`] are enforced by banning tokens (a drafter
    /// that cannot, e.g. a remote model without its tokenizer, relies on the instruction the
    /// redraft adds, and the turn's repairs say so).
    fn bans_tokens(&self) -> bool {
        true
    }

    /// The model's parameter count, when known (decides `[safety] crisis_drafts = "auto"`).
    fn parameters(&self) -> Option<u64> {
        None
    }

    /// A name for `/v1/models` and transcripts.
    fn model_id(&self) -> String {
        "model".into()
    }
}

//! What generation takes and gives: the request ([`GenerationConfig`]), the text side
//! ([`TextCodec`]), streamed pieces, why it stopped, timings and the output. Shared by the
//! one-at-a-time loop ([`super::generate`]), the per-sequence state ([`super::sequence`]) and
//! continuous batching ([`super::batch`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{Result, RuntimeError};
use super::grammar::{JsonSchema, TokenTrie};
use super::sampling::SamplingConfig;

/// Text side of generation, implemented by the runtime tokenizer; optional so that checkpoints
/// without a tokenizer can still run on raw ids.
pub trait TextCodec {
    /// Decodes ids to text, skipping special tokens such as `<|im_end|>`.
    fn decode_text(&self, ids: &[u32]) -> Result<String>;
    /// Id of a token given by its exact text (e.g. `</think>`).
    fn token_id(&self, token: &str) -> Option<u32>;
    /// Every token's text (ids `0..vocab`), lower-cased, for [`GenerationConfig::banned_words`].
    fn lowercase_vocab(&self, vocab: u32) -> Result<Arc<Vec<String>>> {
        lowercase_texts(self, vocab).map(Arc::new)
    }

    /// Every token's bytes, for [`GenerationConfig::json_schema`]; codecs that cannot say
    /// which bytes a token adds do not support constrained decoding.
    fn grammar_vocab(&self) -> Result<Arc<TokenTrie>> {
        Err(RuntimeError::Request(
            "json_schema needs a tokenizer that exposes token bytes".into(),
        ))
    }
}

impl TextCodec for super::tokenizer::Tokenizer {
    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.decode(ids, true)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))
    }

    fn token_id(&self, token: &str) -> Option<u32> {
        self.token_to_id(token)
    }

    fn grammar_vocab(&self) -> Result<Arc<TokenTrie>> {
        Ok(super::tokenizer::Tokenizer::grammar_vocab(self))
    }

    fn lowercase_vocab(&self, vocab: u32) -> Result<Arc<Vec<String>>> {
        // Decoding Qwen's 151,936 tokens takes ~70 ms: the tokenizer keeps the result.
        let cached = self.lowercase_vocab_cache();
        let mut slot = cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = slot.as_ref().filter(|v| v.len() == vocab as usize) {
            return Ok(Arc::clone(v));
        }
        let v = Arc::new(lowercase_texts(self, vocab)?);
        *slot = Some(Arc::clone(&v));
        Ok(v)
    }
}

/// Each of the ids `0..vocab` decoded alone, lower-cased.
fn lowercase_texts<C: TextCodec + ?Sized>(codec: &C, vocab: u32) -> Result<Vec<String>> {
    (0..vocab)
        .map(|id| codec.decode_text(&[id]).map(|t| t.to_lowercase()))
        .collect()
}

/// What to generate and when to stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Extra ids that end generation (the model's EOS ids are added unless disabled).
    pub stop_token_ids: Vec<u32>,
    pub use_model_eos: bool,
    /// Strings that end generation; the text is cut before them (needs a tokenizer).
    pub stop_strings: Vec<String>,
    /// Added to a token's logit before sampling; `f32::NEG_INFINITY` bans the token (used to
    /// keep repaired drafts from naming a forbidden label again).
    pub logit_bias: Vec<(u32, f32)>,
    /// Words the output must never complete, case-insensitive (needs a tokenizer). Whenever
    /// the text so far ends with the start of one, every token that would finish it is banned,
    /// so a word the tokenizer splits into pieces is blocked however the model spells it in
    /// tokens, and ordinary words sharing a piece stay available.
    pub banned_words: Vec<String>,
    /// Constrains the output to one JSON value valid under this schema (see
    /// [`super::grammar`] for the subset): only tokens that keep the output a prefix of such a
    /// value can be sampled, stop tokens only once it is complete, and generation ends (with
    /// [`FinishReason::Complete`]) as soon as nothing more can follow. Needs a tokenizer.
    /// Serialised as the schema itself.
    pub json_schema: Option<JsonSchema>,
    /// Set from another thread (e.g. a client disconnect) to stop generation after the
    /// current token; the output then ends with [`FinishReason::Cancelled`].
    #[serde(skip)]
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: SamplingConfig::default(),
            stop_token_ids: Vec::new(),
            use_model_eos: true,
            stop_strings: Vec::new(),
            logit_bias: Vec::new(),
            banned_words: Vec::new(),
            json_schema: None,
            cancel: None,
        }
    }
}

/// One streamed piece of text.
#[derive(Debug, Clone, Serialize)]
pub struct StreamEvent {
    /// Which prompt of the batch this belongs to.
    pub prompt_index: usize,
    pub token_id: u32,
    /// New text since the previous event (may be empty while a UTF-8 sequence is incomplete).
    pub delta: String,
    /// Whether this token is inside a `<think>...</think>` block.
    pub in_think: bool,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    StopToken,
    StopString,
    Length,
    /// The cancel flag of [`GenerationConfig`] was raised.
    Cancelled,
    /// The JSON value of [`GenerationConfig::json_schema`] is complete and nothing can follow.
    Complete,
}

/// Throughput of one generation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Prompt tokens computed (the prompt minus what a [`super::PromptCache`] already held).
    pub prefill_tokens: usize,
    /// Prompt tokens whose keys and values came from a [`super::PromptCache`].
    #[serde(default)]
    pub cached_prompt_tokens: usize,
    pub prefill_seconds: f64,
    pub prefill_tokens_per_second: f64,
    /// Tokens produced by single-token decode steps (all but the first generated token).
    pub decode_tokens: usize,
    pub decode_seconds: f64,
    pub decode_tokens_per_second: f64,
    /// Most sequences that decoded together in one step with this one (1 when it decoded
    /// alone; 0 for [`super::generate()`], which has no batch).
    #[serde(default)]
    pub batch_peak: usize,
}

/// Result for one prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationOutput {
    pub prompt_ids: Vec<u32>,
    /// Generated ids, including the stop token if one ended generation.
    pub generated_ids: Vec<u32>,
    /// Decoded generated text (special tokens skipped); empty without a tokenizer.
    pub text: String,
    /// Text inside `<think>...</think>`, without the tags.
    pub reasoning: String,
    /// Text after the last `</think>` (all of it when there is none).
    pub content: String,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

pub(crate) fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Splits generated ids as PsyLLM's inference script does: content is everything after the
/// last `</think>`, reasoning everything before it with the `<think>` tag removed.
pub fn split_reasoning(
    codec: &dyn TextCodec,
    ids: &[u32],
    think_end: Option<u32>,
) -> Result<(String, String)> {
    let cut = think_end.and_then(|end| ids.iter().rposition(|&t| t == end));
    match cut {
        Some(i) => {
            let reasoning = codec.decode_text(&ids[..i])?;
            let reasoning = reasoning.replace("<think>", "").replace("</think>", "");
            let content = codec.decode_text(&ids[i + 1..])?;
            Ok((reasoning.trim().to_string(), content.trim().to_string()))
        }
        None => Ok((String::new(), codec.decode_text(ids)?.trim().to_string())),
    }
}

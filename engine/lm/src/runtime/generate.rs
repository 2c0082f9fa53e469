//! Generating from a loaded model: prefill, then per-token decoding with a pre-allocated KV
//! cache, sampling, stop conditions, streaming, and the `<think>` split.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::error::{Result, RuntimeError};
use super::grammar::{JsonSchema, TokenTrie};
use super::load::LoadedModel;
use super::model::KvCache;
use super::sampling::SamplingConfig;
use super::sequence::{Rules, Sequence, Step};

/// Text side of generation, implemented by the runtime tokenizer; optional so that checkpoints
/// without a tokenizer can still run on raw ids.
pub trait TextCodec {
    /// Decodes ids to text, skipping special tokens such as `<|im_end|>`.
    fn decode_text(&self, ids: &[u32]) -> Result<String>;
    /// Id of a token given by its exact text (e.g. `</think>`).
    fn token_id(&self, token: &str) -> Option<u32>;
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
    /// Prompt tokens computed (the prompt minus what a [`PromptCache`] already held).
    pub prefill_tokens: usize,
    /// Prompt tokens whose keys and values came from a [`PromptCache`].
    #[serde(default)]
    pub cached_prompt_tokens: usize,
    pub prefill_seconds: f64,
    pub prefill_tokens_per_second: f64,
    /// Tokens produced by single-token decode steps (all but the first generated token).
    pub decode_tokens: usize,
    pub decode_seconds: f64,
    pub decode_tokens_per_second: f64,
    /// Most sequences that decoded together in one step with this one (1 when it decoded
    /// alone; 0 for [`generate`], which has no batch).
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

/// A KV cache kept between generations with the ids it holds, so that a prompt sharing a
/// prefix with the previous one (the two phases of a turn share their system prompt; a
/// regenerated draft shares everything before its assistant prefix) prefills only the rest.
#[derive(Debug, Default)]
pub struct PromptCache {
    cache: Option<KvCache>,
    /// Token ids whose keys and values fill the cache's first positions.
    ids: Vec<u32>,
}

impl PromptCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Token ids whose keys and values the cache holds.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Keys and values of the first `n` cached positions (see [`KvCache::export`]); `None`
    /// when the cache holds fewer.
    pub fn export_prefix(&self, n: usize) -> Option<Vec<[Vec<f32>; 2]>> {
        let cache = self.cache.as_ref()?;
        (n <= cache.len() && n <= self.ids.len()).then(|| cache.export(n))
    }

    /// Starts the cache from `ids` and their keys and values (e.g. read from disk); `false`
    /// (and an empty cache) when their shapes do not fit the model.
    pub fn seed(&mut self, model: &LoadedModel, ids: &[u32], layers: &[[Vec<f32>; 2]]) -> bool {
        let room = (ids.len() * 2).clamp(ids.len(), model.model.max_positions());
        let mut cache = KvCache::new(&model.config, 1, room, &model.device);
        if cache.import(layers, ids.len()).is_none() {
            *self = Self::default();
            return false;
        }
        self.cache = Some(cache);
        self.ids = ids.to_vec();
        true
    }
}

/// Generates a continuation for each prompt of the batch.
///
/// Prompts run one after another through the same weights and one KV cache sized for the
/// longest request, so prompts of different lengths need no padding. Each prompt's sampler is
/// seeded with `sampling.seed`, so a prompt's output does not depend on its batch neighbours.
pub fn generate(
    model: &LoadedModel,
    codec: Option<&dyn TextCodec>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    on_event: &mut dyn FnMut(&StreamEvent),
) -> Result<Vec<GenerationOutput>> {
    generate_cached(
        model,
        codec,
        prompts,
        cfg,
        &mut PromptCache::new(),
        on_event,
    )
}

/// [`generate`] reusing `reuse`'s keys and values for the longest prefix each prompt shares
/// with what the cache holds (mathematically the same output: attention over cached keys is
/// attention over recomputed ones).
pub fn generate_cached(
    model: &LoadedModel,
    codec: Option<&dyn TextCodec>,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    reuse: &mut PromptCache,
    on_event: &mut dyn FnMut(&StreamEvent),
) -> Result<Vec<GenerationOutput>> {
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let rules = Rules::new(model, codec, &refs, cfg)?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = longest + cfg.max_new_tokens;
    if reuse.cache.as_ref().is_none_or(|c| c.capacity() < capacity) {
        // Room for a longer follow-up too, within the model's positions; what the smaller
        // cache held is carried over, so a growing session keeps its prefix.
        let room = (capacity * 2).clamp(capacity.max(1), model.model.max_positions());
        let mut grown = KvCache::new(&model.config, 1, room, &model.device);
        let held = match &reuse.cache {
            Some(old) if !old.is_empty() => {
                let n = old.len().min(reuse.ids.len());
                grown.import(&old.export(n), n).map_or(0, |_| n)
            }
            _ => 0,
        };
        reuse.cache = Some(grown);
        reuse.ids.truncate(held);
    }
    let PromptCache { cache, ids: fed } = reuse;
    let cache = cache.as_mut().expect("allocated above");
    let mut outputs = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        // Keep the shared prefix (at least one prompt token is run, for its logits).
        let common = fed
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1)
            .min(cache.len());
        cache.truncate(common);
        fed.truncate(common);
        let mut seq = Sequence::new(index, prompt, common, cfg, &rules);
        let t0 = Instant::now();
        let mut logits = model.model.next_logits(&prompt[common..], cache);
        fed.extend_from_slice(&prompt[common..]);
        seq.prefilled(t0.elapsed().as_secs_f64());
        while let Step::Feed(next) = seq.step(&mut logits, cfg, &rules, codec, on_event)? {
            logits = model.model.next_logits(&[next], cache);
            fed.push(next);
            seq.timings.decode_tokens += 1;
        }
        outputs.push(seq.finish(cfg, &rules, codec)?);
    }
    Ok(outputs)
}

//! One sequence's decoding state: from the logits of its next position to the next token, the
//! streamed text and the decision to stop. [`super::generate`] runs one sequence at a time;
//! [`super::batch`] advances many between shared forward passes, so sampling, grammar, banned
//! words, stop conditions and streaming are written once, here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::error::{Result, RuntimeError};
use super::generation::{
    rate, split_reasoning, FinishReason, GenerationConfig, GenerationOutput, StreamEvent,
    TextCodec, Timings,
};
use super::grammar::{allowed_tokens, JsonRecognizer, TokenTrie};
use super::load::LoadedModel;
use super::sampling::{apply_logit_bias, Sampler};
use super::word_bans::WordBans;

/// What a request's configuration fixes before decoding: stop ids, the banned words and the
/// vocabulary's text they are checked against, the grammar's token bytes, the think tags.
pub(crate) struct Rules {
    stops: Vec<u32>,
    /// The banned words' completions, indexed against the vocabulary's text.
    word_bans: Option<Arc<WordBans>>,
    grammar_vocab: Option<Arc<TokenTrie>>,
    think_start: Option<u32>,
    think_end: Option<u32>,
}

impl Rules {
    /// Checks `prompts` and `cfg` against the model and codec (the errors a request gets before
    /// any work) and prepares the rules.
    pub(crate) fn new(
        model: &LoadedModel,
        codec: Option<&dyn TextCodec>,
        prompts: &[&[u32]],
        cfg: &GenerationConfig,
    ) -> Result<Self> {
        if prompts.iter().any(|p| p.is_empty()) {
            return Err(RuntimeError::Request("empty prompt".into()));
        }
        let vocab = model.config.vocab_size as u32;
        if let Some(bad) = prompts.iter().copied().flatten().find(|&&t| t >= vocab) {
            return Err(RuntimeError::Request(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        if (!cfg.stop_strings.is_empty() || !cfg.banned_words.is_empty()) && codec.is_none() {
            return Err(RuntimeError::Request(
                "stop strings and banned words need a tokenizer".into(),
            ));
        }
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let capacity = longest + cfg.max_new_tokens;
        if capacity > model.model.max_positions() {
            return Err(RuntimeError::Request(format!(
                "prompt + max_new_tokens = {capacity} exceeds the supported context of {}",
                model.model.max_positions()
            )));
        }
        // Each token's text, lower-cased, for the banned-word check (built only when needed).
        let banned_words: Vec<String> = cfg.banned_words.iter().map(|w| w.to_lowercase()).collect();
        let word_bans = match codec {
            Some(c) if !banned_words.is_empty() => {
                Some(WordBans::shared(&banned_words, &c.lowercase_vocab(vocab)?))
            }
            _ => None,
        };
        let grammar_vocab = match (&cfg.json_schema, codec) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(RuntimeError::Request(
                    "json_schema needs a tokenizer".into(),
                ))
            }
            (Some(_), Some(c)) => Some(c.grammar_vocab()?),
        };
        let mut stops = cfg.stop_token_ids.clone();
        if cfg.use_model_eos {
            stops.extend(&model.eos_token_ids);
        }
        Ok(Rules {
            stops,
            word_bans,
            grammar_vocab,
            think_start: codec.and_then(|c| c.token_id("<think>")),
            think_end: codec.and_then(|c| c.token_id("</think>")),
        })
    }
}

/// What a sequence does after a step.
pub(crate) enum Step {
    /// Feed this token and come back with the logits of the position after it.
    Feed(u32),
    /// The sequence is finished; [`Sequence::finish`] gives its output.
    Done,
}

/// The decoding state of one prompt.
pub(crate) struct Sequence {
    index: usize,
    prompt: Vec<u32>,
    sampler: Sampler,
    json: Option<JsonRecognizer>,
    allowed: Vec<bool>,
    history: Vec<u32>,
    generated: Vec<u32>,
    in_think: bool,
    emitted: String,
    finish: FinishReason,
    cut_text: Option<String>,
    pub(crate) timings: Timings,
    decode_start: Option<Instant>,
}

impl Sequence {
    /// A sequence for `prompt` (the `index`-th of its call), of which `cached` tokens were
    /// already in the KV cache.
    pub(crate) fn new(
        index: usize,
        prompt: &[u32],
        cached: usize,
        cfg: &GenerationConfig,
        rules: &Rules,
    ) -> Self {
        // A prompt that opens `<think>` without closing it starts the output inside the block.
        let in_think = match (rules.think_start, rules.think_end) {
            (Some(s), Some(e)) => {
                prompt.iter().rposition(|&t| t == s) > prompt.iter().rposition(|&t| t == e)
            }
            _ => false,
        };
        Sequence {
            index,
            prompt: prompt.to_vec(),
            sampler: Sampler::new(&cfg.sampling),
            json: cfg.json_schema.as_ref().map(|s| s.recognizer()),
            allowed: Vec::new(),
            history: prompt.to_vec(),
            generated: Vec::new(),
            in_think,
            emitted: String::new(),
            finish: FinishReason::Length,
            cut_text: None,
            timings: Timings {
                prefill_tokens: prompt.len() - cached,
                cached_prompt_tokens: cached,
                ..Default::default()
            },
            decode_start: None,
        }
    }

    /// Records the prefill's duration; decoding time counts from here.
    pub(crate) fn prefilled(&mut self, seconds: f64) {
        self.timings.prefill_seconds = seconds;
        self.decode_start = Some(Instant::now());
    }

    /// Ends the sequence as cancelled before it has a token (its caller went while its
    /// prompt was still being fed).
    pub(crate) fn cancel(&mut self) {
        self.finish = FinishReason::Cancelled;
    }

    /// Samples the next token from `logits` (the next position's), streams its text and decides
    /// whether the sequence goes on.
    pub(crate) fn step(
        &mut self,
        logits: &mut [f32],
        cfg: &GenerationConfig,
        rules: &Rules,
        codec: Option<&dyn TextCodec>,
        on_event: &mut dyn FnMut(&StreamEvent),
    ) -> Result<Step> {
        if self.generated.len() >= cfg.max_new_tokens {
            return Ok(Step::Done);
        }
        if cfg
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            self.finish = FinishReason::Cancelled;
            return Ok(Step::Done);
        }
        apply_logit_bias(logits, &cfg.logit_bias);
        if let Some(bans) = &rules.word_bans {
            bans.apply(logits, &self.emitted.to_lowercase());
        }
        if let (Some(rec), Some(vocab)) = (&self.json, &rules.grammar_vocab) {
            let left = (cfg.max_new_tokens - self.generated.len() - 1) as u32;
            allowed_tokens(rec, vocab, Some(left), &mut self.allowed);
            let complete = rec.is_complete();
            for (id, l) in logits.iter_mut().enumerate() {
                let ok = if rules.stops.contains(&(id as u32)) {
                    complete
                } else {
                    self.allowed.get(id).copied().unwrap_or(false)
                };
                if !ok {
                    *l = f32::NEG_INFINITY;
                }
            }
            if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
                let so_far = codec.map(|c| c.decode_text(&self.generated)).transpose()?;
                return Err(RuntimeError::Request(format!(
                    "json_schema: no token can continue the output {:?} (banned words or \
                     logit bias may exclude every allowed token)",
                    so_far.unwrap_or_default()
                )));
            }
        }
        let next = self.sampler.sample(logits, &self.history);
        if let (Some(rec), Some(vocab)) = (&mut self.json, &rules.grammar_vocab) {
            // A stop token was allowed only once the value was complete.
            let fed =
                rules.stops.contains(&next) || vocab.token_bytes(next).is_some_and(|b| rec.feed(b));
            if !fed {
                return Err(RuntimeError::Request(format!(
                    "json_schema: sampled token {next} does not continue the JSON value"
                )));
            }
        }
        self.generated.push(next);
        self.history.push(next);
        if Some(next) == rules.think_start {
            self.in_think = true;
        }
        let event_in_think = self.in_think;
        if Some(next) == rules.think_end {
            self.in_think = false;
        }
        let index = self.index;
        let event = |delta: String| StreamEvent {
            prompt_index: index,
            token_id: next,
            delta,
            in_think: event_in_think,
        };
        if let Some(codec) = codec {
            let text = codec.decode_text(&self.generated)?;
            if let Some(pos) = cfg
                .stop_strings
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                let kept = text[..pos].to_string();
                if kept.len() > self.emitted.len() && kept.starts_with(&self.emitted) {
                    on_event(&event(kept[self.emitted.len()..].to_string()));
                }
                self.cut_text = Some(kept);
                self.finish = FinishReason::StopString;
                return Ok(Step::Done);
            }
            // Hold back text ending in an incomplete UTF-8 sequence (decoded as U+FFFD).
            let delta = if !text.ends_with('\u{FFFD}') && text.starts_with(&self.emitted) {
                let d = text[self.emitted.len()..].to_string();
                self.emitted = text;
                d
            } else {
                String::new()
            };
            on_event(&event(delta));
        } else {
            on_event(&event(String::new()));
        }
        if rules.stops.contains(&next) {
            self.finish = FinishReason::StopToken;
            return Ok(Step::Done);
        }
        if self.json.as_ref().is_some_and(|r| r.is_finished()) {
            self.finish = FinishReason::Complete;
            return Ok(Step::Done);
        }
        if self.generated.len() >= cfg.max_new_tokens {
            return Ok(Step::Done);
        }
        Ok(Step::Feed(next))
    }

    /// The sequence's output: text, the `<think>` split, why it stopped, and its timings.
    pub(crate) fn finish(
        mut self,
        cfg: &GenerationConfig,
        rules: &Rules,
        codec: Option<&dyn TextCodec>,
    ) -> Result<GenerationOutput> {
        let mut timings = std::mem::take(&mut self.timings);
        timings.decode_seconds = self.decode_start.map_or(0.0, |t| t.elapsed().as_secs_f64());
        timings.prefill_tokens_per_second = rate(timings.prefill_tokens, timings.prefill_seconds);
        timings.decode_tokens_per_second = rate(timings.decode_tokens, timings.decode_seconds);
        let (text, reasoning, content) = match codec {
            Some(codec) => {
                let text = match self.cut_text {
                    Some(t) => t,
                    None => codec.decode_text(&self.generated)?,
                };
                let (reasoning, mut content) =
                    split_reasoning(codec, &self.generated, rules.think_end)?;
                if self.finish == FinishReason::StopString {
                    if let Some(pos) = cfg
                        .stop_strings
                        .iter()
                        .filter_map(|s| content.find(s.as_str()))
                        .min()
                    {
                        content.truncate(pos);
                        content = content.trim().to_string();
                    }
                }
                (text, reasoning, content)
            }
            None => Default::default(),
        };
        tracing::debug!(
            prompt = self.index,
            generated = self.generated.len(),
            finish = ?self.finish,
            decode_tps = timings.decode_tokens_per_second,
            "generated"
        );
        Ok(GenerationOutput {
            prompt_ids: self.prompt,
            generated_ids: self.generated,
            text,
            reasoning,
            content,
            finish_reason: self.finish,
            timings,
        })
    }
}

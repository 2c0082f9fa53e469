//! The real model behind the [`Drafter`] seam: a loaded checkpoint, its tokenizer and its chat
//! template, with a prompt cache so that redrafts prefill only what changed.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::runtime::chat_template::{ChatTemplate, RenderOptions};
use crate::runtime::tokenizer::Tokenizer;
use crate::runtime::{
    generate_cached, load_model, GenerationConfig, LoadedModel, PromptCache, RuntimeError,
};

use super::{Draft, DraftEvent, DraftRequest, Drafter, Result, SessionError};

/// The real model: a loaded checkpoint, its tokenizer and its chat template.
pub struct ModelDrafter {
    model: LoadedModel,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Keys and values of the previous draft: the next one prefills only what differs.
    prompt_cache: PromptCache,
}

impl ModelDrafter {
    /// Loads `model` (HF dir or GGUF); `tokenizer` when the model carries none.
    pub fn load(model: &Path, tokenizer: Option<&Path>) -> Result<ModelDrafter> {
        let tokenizer = Tokenizer::from_path(tokenizer.unwrap_or(model))?;
        let template = match ChatTemplate::for_tokenizer(&tokenizer) {
            Some(t) => t?,
            None => {
                return Err(SessionError::NoTemplate {
                    model: model.to_path_buf(),
                })
            }
        };
        let model = load_model(model)?;
        Ok(ModelDrafter {
            model,
            tokenizer,
            template,
            prompt_cache: PromptCache::new(),
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Words to ban so the model cannot say a forbidden phrase again: the phrase itself and
    /// its longest word (at least 4 letters), matched case-insensitively by the generator.
    fn banned_words(phrases: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in phrases {
            let longest = p
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 4)
                .max_by_key(|w| w.len());
            for form in std::iter::once(p.trim()).chain(longest) {
                let form = form.to_lowercase();
                if !form.is_empty() && !out.contains(&form) {
                    out.push(form);
                }
            }
        }
        out
    }
}

impl Drafter for ModelDrafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft> {
        let opts = RenderOptions {
            add_generation_prompt: true,
            enable_thinking: req.thinking.then_some(true),
            tools: None,
        };
        let mut prompt = self.template.render(&req.messages, &opts)?;
        prompt.push_str(&req.assistant_prefix);
        let ids = self.tokenizer.encode(&prompt, false)?;
        let context = self.model.model.max_positions();
        if ids.len() + 1 >= context {
            return Err(SessionError::PromptTooLong {
                tokens: ids.len(),
                context,
            });
        }
        let banned = Self::banned_words(&req.banned_phrases);
        let cancel = Arc::new(AtomicBool::new(false));
        let cfg = GenerationConfig {
            max_new_tokens: req.max_new_tokens.min(context - ids.len()).max(1),
            sampling: req.sampling.clone(),
            stop_strings: req.stop.clone(),
            banned_words: banned.clone(),
            cancel: Some(cancel.clone()),
            ..Default::default()
        };
        let mut outs = generate_cached(
            &self.model,
            Some(&self.tokenizer),
            std::slice::from_ref(&ids),
            &cfg,
            &mut self.prompt_cache,
            &mut |ev| {
                let flow = on_event(DraftEvent {
                    delta: &ev.delta,
                    in_think: ev.in_think,
                });
                if flow.is_break() {
                    cancel.store(true, Ordering::Relaxed);
                }
            },
        )?;
        let out = outs.pop().ok_or_else(|| {
            SessionError::Runtime(RuntimeError::Request("no output for the prompt".into()))
        })?;
        Ok(Draft {
            reasoning: out.reasoning,
            content: out.content,
            prompt_tokens: out.prompt_ids.len(),
            prompt_tokens_cached: out.timings.cached_prompt_tokens,
            completion_tokens: out.generated_ids.len(),
            banned_words: banned,
            finish: Some(out.finish_reason),
            decode_tokens_per_second: out.timings.decode_tokens_per_second,
        })
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.model.model.max_positions())
    }

    fn model_id(&self) -> String {
        self.model
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    }
}

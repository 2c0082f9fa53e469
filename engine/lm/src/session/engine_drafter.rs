//! A [`Drafter`] whose drafts decode on a shared batch engine ([`EngineHandle`]): several
//! counselors (one per concurrent request of `psy serve`, one per item of `psy eval`) each
//! render and tokenize their own prompts, and their generations step together in one forward
//! pass. The model lives on the engine's thread; this holds only the tokenizer and template.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::runtime::chat_template::{ChatTemplate, RenderOptions};
use crate::runtime::tokenizer::Tokenizer;
use crate::runtime::{load_model, BatchRequest, EngineHandle, GenerationConfig};

use super::{Draft, DraftEvent, DraftRequest, Drafter, ModelDrafter, Result, SessionError};

/// A drafter on a shared [`EngineHandle`].
#[derive(Clone)]
pub struct EngineDrafter {
    engine: EngineHandle,
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

impl EngineDrafter {
    /// Loads `model` (HF dir or GGUF; `tokenizer` when the model carries none) onto a new
    /// engine thread decoding up to `max_batch` sequences together; clone the drafter for each
    /// counselor that shares it.
    pub fn load(model: &Path, tokenizer: Option<&Path>, max_batch: usize) -> Result<EngineDrafter> {
        let tokenizer = Tokenizer::from_path(tokenizer.unwrap_or(model))?;
        let template = match ChatTemplate::for_tokenizer(&tokenizer) {
            Some(t) => t?,
            None => {
                return Err(SessionError::NoTemplate {
                    model: model.to_path_buf(),
                })
            }
        };
        let engine = EngineHandle::spawn(load_model(model)?, Some(tokenizer.clone()), max_batch)?;
        Ok(EngineDrafter {
            engine,
            tokenizer,
            template,
        })
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }
}

impl Drafter for EngineDrafter {
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
        let context = self.engine.info().context;
        if ids.len() + 1 >= context {
            return Err(SessionError::PromptTooLong {
                tokens: ids.len(),
                context,
            });
        }
        let banned = ModelDrafter::banned_words(&req.banned_phrases);
        let cancel = Arc::new(AtomicBool::new(false));
        let config = GenerationConfig {
            max_new_tokens: req.max_new_tokens.min(context - ids.len()).max(1),
            sampling: req.sampling.clone(),
            stop_strings: req.stop.clone(),
            banned_words: banned.clone(),
            cancel: Some(cancel.clone()),
            ..Default::default()
        };
        let out = self.engine.generate(
            BatchRequest {
                prompt: ids,
                config,
            },
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
        Some(self.engine.info().context)
    }

    fn model_id(&self) -> String {
        self.engine.info().model_id.clone()
    }
}

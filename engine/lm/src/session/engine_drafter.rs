//! A [`Drafter`] whose drafts decode on a shared batch engine ([`EngineHandle`]): several
//! counselors (one per concurrent request of `psy serve`, one per item of `psy eval`) each
//! render and tokenize their own prompts, and their generations step together in one forward
//! pass. The model lives on the engine's thread; this holds only the tokenizer and template.

use std::ops::ControlFlow;
use std::path::Path;

use crate::runtime::chat_template::ChatTemplate;
use crate::runtime::tokenizer::Tokenizer;
use crate::runtime::{load_model, BatchRequest, EngineHandle};

use super::{draft_decode, Draft, DraftEvent, DraftRequest, Drafter, Result};

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
        let (tokenizer, template) = draft_decode::tokenizer_and_template(model, tokenizer)?;
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
        let context = self.engine.info().context;
        let p = draft_decode::prepare(&self.template, &self.tokenizer, req, context)?;
        let out = self.engine.generate(
            BatchRequest {
                prompt: p.ids,
                config: p.config,
            },
            &mut draft_decode::forward_events(on_event, &p.cancel),
        )?;
        Ok(draft_decode::draft(out, p.banned))
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.engine.info().context)
    }

    fn parameters(&self) -> Option<u64> {
        Some(self.engine.info().parameters)
    }

    fn model_id(&self) -> String {
        self.engine.info().model_id.clone()
    }
}

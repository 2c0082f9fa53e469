//! The real model behind the [`Drafter`] seam: a loaded checkpoint, its tokenizer and its chat
//! template, with a prompt cache so that redrafts and later turns prefill only what changed,
//! and the run's system message cached on disk across starts ([`prompt_cache_file`]).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use crate::runtime::prompt_cache_file;
use crate::runtime::tokenizer::Tokenizer;
use crate::runtime::{generate_cached, load_model, LoadedModel, PromptCache, RuntimeError};

use super::{draft_decode, Draft, DraftEvent, DraftRequest, Drafter, Result, SessionError};

/// The system message's keys and values to write to disk once a draft has computed them.
struct PendingSave {
    dir: PathBuf,
    model: [u8; 32],
    prefix: Vec<u32>,
}

impl PendingSave {
    fn write(self, cache: &PromptCache) {
        if cache.ids().get(..self.prefix.len()) != Some(&self.prefix[..]) {
            return;
        }
        let Some(layers) = cache.export_prefix(self.prefix.len()) else {
            return;
        };
        match prompt_cache_file::save(&self.dir, &self.model, &self.prefix, &layers) {
            Ok(path) => tracing::debug!(path = %path.display(), "system prompt cached on disk"),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

/// The real model: a loaded checkpoint, its tokenizer and its chat template.
pub struct ModelDrafter {
    model: LoadedModel,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Keys and values of the previous draft: the next one prefills only what differs.
    prompt_cache: PromptCache,
    /// Where the system message's keys and values are kept across starts; `None` once the
    /// first draft has looked there (or when disabled).
    disk_cache: Option<PathBuf>,
}

impl ModelDrafter {
    /// Loads `model` (HF dir or GGUF); `tokenizer` when the model carries none.
    pub fn load(model: &Path, tokenizer: Option<&Path>) -> Result<ModelDrafter> {
        let (tokenizer, template) = draft_decode::tokenizer_and_template(model, tokenizer)?;
        let model = load_model(model)?;
        Ok(ModelDrafter {
            model,
            tokenizer,
            template,
            prompt_cache: PromptCache::new(),
            disk_cache: Some(prompt_cache_file::default_dir()),
        })
    }

    /// The drafter with its model changed by `f` (e.g. a LoRA adapter merged in). The files of
    /// the on-disk system prompt cache are keyed by the model file alone, so that cache is
    /// turned off for the changed model.
    pub fn map_model<E>(
        mut self,
        f: impl FnOnce(crate::runtime::CausalLm) -> std::result::Result<crate::runtime::CausalLm, E>,
    ) -> std::result::Result<ModelDrafter, E> {
        self.model.model = f(self.model.model)?;
        self.prompt_cache = PromptCache::new();
        self.disk_cache = None;
        Ok(self)
    }

    /// Keeps the system message's keys and values under `dir` across starts (`None`: never).
    pub fn with_disk_cache(mut self, dir: Option<PathBuf>) -> ModelDrafter {
        self.disk_cache = dir;
        self
    }

    /// Before the first draft: the ids of the rendered system message that opens `ids`, with
    /// their keys and values read from disk into the prompt cache when a valid file holds
    /// them. Returns the ids to save after the draft when no valid file did (a corrupt or
    /// stale one is rebuilt). Failures only cost the prefill: they are logged, never raised.
    fn warm_from_disk(&mut self, messages: &[ChatMessage], ids: &[u32]) -> Option<PendingSave> {
        let dir = self.disk_cache.take()?;
        let system = messages.first().filter(|m| m.role == "system")?;
        let opts = RenderOptions {
            add_generation_prompt: false,
            enable_thinking: None,
            tools: None,
        };
        let text = self
            .template
            .render(std::slice::from_ref(system), &opts)
            .ok()?;
        let prefix = self.tokenizer.encode(&text, false).ok()?;
        // At least one prompt token is left to run for the logits.
        if prefix.len() < 2 || prefix.len() >= ids.len() || !ids.starts_with(&prefix) {
            return None;
        }
        let model = match prompt_cache_file::model_sha256(&self.model.path, &dir) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("{e}; the system prompt is not cached on disk");
                return None;
            }
        };
        let c = &self.model.config;
        let values = c.num_key_value_heads * prefix.len() * c.head_dim;
        match prompt_cache_file::load(&dir, &model, &prefix, c.num_hidden_layers, values) {
            Ok(Some(layers)) if self.prompt_cache.seed(&self.model, &prefix, &layers) => {
                tracing::debug!(
                    tokens = prefix.len(),
                    "system prompt read from the disk cache"
                );
                return None;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        Some(PendingSave { dir, model, prefix })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Words to ban so the model cannot say a forbidden phrase again: the phrase itself and
    /// its longest word (at least 4 letters), matched case-insensitively by the generator.
    pub fn banned_words(phrases: &[String]) -> Vec<String> {
        draft_decode::banned_words(phrases)
    }
}

impl Drafter for ModelDrafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft> {
        let context = self.model.model.max_positions();
        let p = draft_decode::prepare(&self.template, &self.tokenizer, req, context)?;
        let save = self.warm_from_disk(&req.messages, &p.ids);
        let mut outs = generate_cached(
            &self.model,
            Some(&self.tokenizer),
            std::slice::from_ref(&p.ids),
            &p.config,
            &mut self.prompt_cache,
            &mut draft_decode::forward_events(on_event, &p.cancel),
        )?;
        if let Some(save) = save {
            save.write(&self.prompt_cache);
        }
        let out = outs.pop().ok_or_else(|| {
            SessionError::Runtime(RuntimeError::Request("no output for the prompt".into()))
        })?;
        Ok(draft_decode::draft(out, p.banned))
    }

    fn context_length(&self) -> Option<usize> {
        Some(self.model.model.max_positions())
    }

    fn parameters(&self) -> Option<u64> {
        Some(self.model.config.num_params())
    }

    fn model_id(&self) -> String {
        self.model
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    }
}

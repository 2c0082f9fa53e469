//! A local psy model as a judge: the rubric's messages through the model's chat template,
//! decoded under the verdict's JSON schema (grammar-constrained sampling), so every answer
//! parses and has the verdict's shape. Calls are serialised: one model, one decode at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use psy_core::eval_spec::JudgeSection;
use psy_eval::judge::{Completion, JudgeBackend, JudgeCall, JudgeError, TokenUsage};
use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::grammar::JsonSchema;
use psy_lm::runtime::sampling::SamplingConfig;
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::runtime::{self, GenerationConfig, LoadedModel};

struct Loaded {
    model: LoadedModel,
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

pub struct LocalJudge {
    path: PathBuf,
    id: String,
    loaded: Mutex<Loaded>,
}

/// The backend of `[eval.judge] kind = "psy"`: `model` is a model file or directory.
pub fn backend(section: &JudgeSection) -> Result<Arc<dyn JudgeBackend>> {
    let path = PathBuf::from(section.model.trim());
    if section.model.trim().is_empty() {
        bail!("[eval.judge] kind = \"psy\" needs `model`: a model file or directory");
    }
    Ok(Arc::new(LocalJudge::load(&path)?))
}

impl LocalJudge {
    pub fn load(path: &Path) -> Result<LocalJudge> {
        let tokenizer = Tokenizer::from_path(path)
            .with_context(|| format!("{}: judge tokenizer", path.display()))?;
        let template = ChatTemplate::for_tokenizer(&tokenizer).with_context(|| {
            format!("{}: the judge model has no chat template", path.display())
        })??;
        let model = runtime::load_model(path)
            .with_context(|| format!("{}: cannot load the judge model", path.display()))?;
        let sha = super::provenance::sha256_path(path)?;
        Ok(LocalJudge {
            id: format!("psy:{}", &sha[..16]),
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                model,
                tokenizer,
                template,
            }),
        })
    }
}

impl JudgeBackend for LocalJudge {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn complete(
        &self,
        call: &JudgeCall,
        _previous_error: Option<&str>,
    ) -> Result<Completion, JudgeError> {
        let fail = |message: String| JudgeError::Backend {
            backend: format!("psy judge {}", self.path.display()),
            message,
        };
        let schema = JsonSchema::parse(&call.schema).map_err(|e| fail(e.to_string()))?;
        let l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let messages: Vec<ChatMessage> = call
            .messages
            .iter()
            .map(|m| ChatMessage::new(&m.role, &m.content))
            .collect();
        let text = l
            .template
            .render(
                &messages,
                &RenderOptions {
                    add_generation_prompt: true,
                    ..Default::default()
                },
            )
            .map_err(|e| fail(e.to_string()))?;
        let ids = l
            .tokenizer
            .encode(&text, false)
            .map_err(|e| fail(e.to_string()))?;
        let cfg = GenerationConfig {
            max_new_tokens: call.max_tokens,
            sampling: SamplingConfig {
                temperature: call.temperature,
                seed: call.seed.unwrap_or(0),
                ..Default::default()
            },
            json_schema: Some(schema),
            ..Default::default()
        };
        let mut out = runtime::generate(&l.model, Some(&l.tokenizer), &[ids], &cfg, &mut |_| {})
            .map_err(|e| fail(e.to_string()))?;
        let out = out
            .pop()
            .ok_or_else(|| fail("the model returned no output".into()))?;
        Ok(Completion {
            usage: Some(TokenUsage {
                prompt_tokens: out.prompt_ids.len() as u64,
                completion_tokens: out.generated_ids.len() as u64,
            }),
            text: out.text,
        })
    }
}

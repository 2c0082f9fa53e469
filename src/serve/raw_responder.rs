//! The raw server's responder: the request's messages rendered with the model's chat template
//! and generated with the request's sampling, stop strings, token biases and
//! `response_format` (grammar-constrained decoding). No plan, no crisis guard, no repairs:
//! it is for judges, data-synthesis teachers and upstream use, never for people.
//!
//! [`RawResponder::generate`] is the same path without HTTP, for in-process callers.
//!
//! The model is either the responder's own ([`RawResponder::load`]: one request at a time,
//! with a prompt cache) or a batch engine's shared by several responders
//! ([`RawResponder::on_engine`]: their requests decode together, each prefilled whole).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use psy_core::dialogue::Role;
use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::runtime::{
    generate_cached, load_model, BatchRequest, EngineHandle, FinishReason, GenerationConfig,
    GenerationOutput, LoadedModel, PromptCache, RuntimeError, SamplingConfig, StreamEvent,
};
use psy_lm::session::{CancelCheck, Delta, SessionError};
use serde_json::json;

use super::error::ApiError;
use super::mode::ServeMode;
use super::request::ChatRequest;
use super::responder::{Finished, Responder};

/// Completion tokens when the request gives no `max_tokens` (the context bounds it too).
const DEFAULT_MAX_TOKENS: usize = 4096;

/// Where a raw responder's tokens come from.
enum Decoder {
    /// Its own model, one request at a time. The prompt cache holds the keys and values of
    /// the previous request: a request sharing its prefix (the same judge instructions, the
    /// same few-shot examples) prefills only what differs.
    Own {
        model: Box<LoadedModel>,
        cache: PromptCache,
    },
    /// A batch engine shared with other responders.
    Shared(EngineHandle),
}

/// A model, its tokenizer and chat template, answering requests as they are.
pub struct RawResponder {
    decoder: Decoder,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    model_id: String,
    context: usize,
    vocab: usize,
}

fn template_for(tok: &Tokenizer, model: &Path) -> Result<ChatTemplate, SessionError> {
    match ChatTemplate::for_tokenizer(tok) {
        Some(t) => Ok(t?),
        None => Err(SessionError::NoTemplate {
            model: model.to_path_buf(),
        }),
    }
}

impl RawResponder {
    /// Loads `model` (HF dir or GGUF); `tokenizer` when the model carries none.
    pub fn load(model: &Path, tokenizer: Option<&Path>) -> Result<RawResponder, SessionError> {
        let tok = Tokenizer::from_path(tokenizer.unwrap_or(model))?;
        let template = template_for(&tok, model)?;
        let loaded = load_model(model)?;
        Ok(RawResponder {
            model_id: loaded
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            context: loaded.model.max_positions(),
            vocab: loaded.config.vocab_size,
            decoder: Decoder::Own {
                model: Box::new(loaded),
                cache: PromptCache::new(),
            },
            tokenizer: tok,
            template,
        })
    }

    /// Loads `model` onto a new batch engine decoding up to `max_batch` requests together;
    /// returns the engine and the tokenizer, for [`Self::on_engine`].
    pub fn load_engine(
        model: &Path,
        tokenizer: Option<&Path>,
        max_batch: usize,
    ) -> Result<(EngineHandle, Tokenizer), SessionError> {
        let tok = Tokenizer::from_path(tokenizer.unwrap_or(model))?;
        template_for(&tok, model)?;
        let engine = EngineHandle::spawn(load_model(model)?, Some(tok.clone()), max_batch)?;
        Ok((engine, tok))
    }

    /// A responder whose requests decode on `engine` with the others'.
    pub fn on_engine(
        engine: EngineHandle,
        tokenizer: Tokenizer,
    ) -> Result<RawResponder, SessionError> {
        let info = engine.info().clone();
        let template = template_for(&tokenizer, Path::new(&info.model_id))?;
        Ok(RawResponder {
            decoder: Decoder::Shared(engine),
            tokenizer,
            template,
            model_id: info.model_id,
            context: info.context,
            vocab: info.vocab_size,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompt ids of `messages` with the generation prompt, as `psy generate --chat`
    /// renders a single user message, followed by `assistant_prefix` (text the reply
    /// already starts with; the generation continues it).
    pub fn prompt_ids(
        &self,
        messages: &[ChatMessage],
        assistant_prefix: &str,
    ) -> Result<Vec<u32>, SessionError> {
        let mut text = self.template.render(
            messages,
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )?;
        text.push_str(assistant_prefix);
        Ok(self.tokenizer.encode(&text, false)?)
    }

    /// Generates a reply to `messages` (continuing `assistant_prefix`) under `cfg`;
    /// `cfg.max_new_tokens` is cut to what the context leaves. `on_delta` returning `Break`
    /// stops after the current token.
    pub fn generate(
        &mut self,
        messages: &[ChatMessage],
        assistant_prefix: &str,
        cfg: &GenerationConfig,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<GenerationOutput, SessionError> {
        let ids = self.prompt_ids(messages, assistant_prefix)?;
        let context = self.context;
        if ids.len() + 1 >= context {
            return Err(SessionError::PromptTooLong {
                tokens: ids.len(),
                context,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = GenerationConfig {
            max_new_tokens: cfg.max_new_tokens.min(context - ids.len()).max(1),
            cancel: Some(stop.clone()),
            ..cfg.clone()
        };
        let mut on_event = |ev: &StreamEvent| {
            let d = if ev.in_think {
                Delta::Reasoning(&ev.delta)
            } else {
                Delta::Content(&ev.delta)
            };
            if !ev.delta.is_empty() && on_delta(d).is_break() {
                stop.store(true, Ordering::Relaxed);
            }
        };
        match &mut self.decoder {
            Decoder::Own { model, cache } => {
                let mut outs = generate_cached(
                    model,
                    Some(&self.tokenizer),
                    std::slice::from_ref(&ids),
                    &cfg,
                    cache,
                    &mut on_event,
                )?;
                outs.pop().ok_or_else(|| {
                    SessionError::Runtime(RuntimeError::Request("no output for the prompt".into()))
                })
            }
            Decoder::Shared(engine) => Ok(engine.generate(
                BatchRequest {
                    prompt: ids,
                    config: cfg,
                },
                &mut on_event,
            )?),
        }
    }

    /// The generation settings of `req`, OpenAI's defaults where it is silent (temperature
    /// 1, top_p 1, a fresh seed), or a 400 naming a `logit_bias` id outside the vocabulary.
    fn config(&self, req: &ChatRequest) -> Result<GenerationConfig, ApiError> {
        let vocab = self.vocab;
        let mut logit_bias = Vec::with_capacity(req.logit_bias.len());
        for &(id, bias) in &req.logit_bias {
            if id as usize >= vocab {
                return Err(ApiError::invalid(
                    Some(&format!("logit_bias.{id}")),
                    "invalid_value",
                    format!("token id {id} is outside the model's vocabulary of {vocab}"),
                ));
            }
            // OpenAI: -100 should ban the token outright.
            let bias = if bias <= -100.0 {
                f32::NEG_INFINITY
            } else {
                bias
            };
            logit_bias.push((id, bias));
        }
        let o = &req.opts;
        Ok(GenerationConfig {
            max_new_tokens: o.max_new_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            sampling: SamplingConfig {
                temperature: o.temperature.unwrap_or(1.0),
                top_p: o.top_p.unwrap_or(1.0),
                seed: o.seed.unwrap_or_else(fresh_seed),
                ..Default::default()
            },
            stop_strings: o.stop.clone(),
            logit_bias,
            json_schema: req.json_schema.clone(),
            ..Default::default()
        })
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

fn fresh_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Responder for RawResponder {
    fn mode(&self) -> ServeMode {
        ServeMode::Raw
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn respond(
        &mut self,
        req: ChatRequest,
        cancel: CancelCheck,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<Option<Finished>, ApiError> {
        let cfg = self.config(&req)?;
        let mut messages: Vec<ChatMessage> = req
            .dialogue
            .messages
            .iter()
            .map(|m| ChatMessage::new(role_name(m.role), m.content.clone()))
            .collect();
        // The parser checked that the last message is the assistant's.
        let prefix = match req.continue_final_message {
            true => messages.pop().map(|m| m.content).unwrap_or_default(),
            false => String::new(),
        };
        let out = self.generate(&messages, &prefix, &cfg, &mut |d| {
            if (cancel.0)() {
                return ControlFlow::Break(());
            }
            on_delta(d)
        });
        let out = match out {
            Ok(o) => o,
            Err(e @ SessionError::PromptTooLong { .. }) => return Err(ApiError::from(e)),
            // The template raised on these messages (e.g. roles that must alternate).
            Err(e @ SessionError::Template(_)) => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    "invalid_value",
                    e.to_string(),
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "raw request failed");
                return Err(ApiError::server(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    e.to_string(),
                ));
            }
        };
        if out.finish_reason == FinishReason::Cancelled {
            tracing::info!("client disconnected: generation stopped");
            return Ok(None);
        }
        let finish = if out.finish_reason == FinishReason::Length {
            "length"
        } else {
            "stop"
        };
        Ok(Some(Finished {
            psy: json!({
                "mode": "raw",
                "prompt_tokens_cached": out.timings.cached_prompt_tokens,
                "decode_tokens_per_second": out.timings.decode_tokens_per_second,
                "batch_peak": out.timings.batch_peak,
            }),
            content: out.content,
            reasoning: out.reasoning,
            finish_reason: finish.into(),
            prompt_tokens: out.prompt_ids.len(),
            completion_tokens: out.generated_ids.len(),
        }))
    }
}

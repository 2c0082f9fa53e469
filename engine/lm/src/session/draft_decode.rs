//! What every model-backed drafter does around its decoder: read the tokenizer and chat
//! template, render and tokenize the request, check that it fits the context, build the
//! generation config (banned words, a cancel flag), pass stream events on, and turn the output
//! into a [`Draft`]. [`super::ModelDrafter`] decodes in-process with its prompt cache,
//! [`super::EngineDrafter`] on a shared batch engine; only the decoding differs.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::runtime::chat_template::{ChatTemplate, RenderOptions};
use crate::runtime::tokenizer::Tokenizer;
use crate::runtime::{GenerationConfig, GenerationOutput, StreamEvent};

use super::drafter::PROSE_BANS;
use super::{Draft, DraftEvent, DraftRequest, Result, SessionError};

/// The tokenizer (from `tokenizer`, or the model's own) and the chat template it carries.
pub(super) fn tokenizer_and_template(
    model: &Path,
    tokenizer: Option<&Path>,
) -> Result<(Tokenizer, ChatTemplate)> {
    let tokenizer = Tokenizer::from_path(tokenizer.unwrap_or(model))?;
    match ChatTemplate::for_tokenizer(&tokenizer) {
        Some(template) => Ok((tokenizer, template?)),
        None => Err(SessionError::NoTemplate {
            model: model.to_path_buf(),
        }),
    }
}

/// Words to ban so the model cannot say a forbidden phrase again: the phrase itself and
/// its longest word (at least 4 letters), matched case-insensitively by the generator.
pub(super) fn banned_words(phrases: &[String]) -> Vec<String> {
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

/// A request ready to decode.
pub(super) struct Prepared {
    pub ids: Vec<u32>,
    pub config: GenerationConfig,
    /// The words the config bans (reported back in the draft).
    pub banned: Vec<String>,
    /// Set when the caller's event handler asks to stop.
    pub cancel: Arc<AtomicBool>,
}

/// Renders `req` with the template (generation prompt, thinking as asked, the assistant
/// prefix), tokenizes it and refuses a prompt that leaves no room in `context` positions.
pub(super) fn prepare(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    req: &DraftRequest,
    context: usize,
) -> Result<Prepared> {
    let opts = RenderOptions {
        add_generation_prompt: true,
        enable_thinking: req.thinking.then_some(true),
        tools: None,
    };
    let mut prompt = template.render(&req.messages, &opts)?;
    prompt.push_str(&req.assistant_prefix);
    let ids = tokenizer.encode(&prompt, false)?;
    if ids.len() + 1 >= context {
        return Err(SessionError::PromptTooLong {
            tokens: ids.len(),
            context,
        });
    }
    let mut banned = banned_words(&req.banned_phrases);
    if req.prose {
        banned.extend(PROSE_BANS.iter().map(|w| w.to_string()));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let config = GenerationConfig {
        max_new_tokens: req.max_new_tokens.min(context - ids.len()).max(1),
        sampling: req.sampling.clone(),
        stop_strings: req.stop.clone(),
        banned_words: banned.clone(),
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    Ok(Prepared {
        ids,
        config,
        banned,
        cancel,
    })
}

/// The decoder's stream events as draft events; a `Break` from the handler cancels decoding.
pub(super) fn forward_events<'a>(
    on_event: &'a mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    cancel: &'a AtomicBool,
) -> impl FnMut(&StreamEvent) + 'a {
    move |ev| {
        let flow = on_event(DraftEvent {
            delta: &ev.delta,
            in_think: ev.in_think,
        });
        if flow.is_break() {
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// The draft a generation gives.
pub(super) fn draft(out: GenerationOutput, banned: Vec<String>) -> Draft {
    Draft {
        reasoning: out.reasoning,
        content: out.content,
        prompt_tokens: out.prompt_ids.len(),
        prompt_tokens_cached: out.timings.cached_prompt_tokens,
        completion_tokens: out.generated_ids.len(),
        banned_words: banned,
        finish: Some(out.finish_reason),
        decode_tokens_per_second: out.timings.decode_tokens_per_second,
        prefill_ms: out.timings.prefill_seconds * 1e3,
        decode_ms: out.timings.decode_seconds * 1e3,
    }
}

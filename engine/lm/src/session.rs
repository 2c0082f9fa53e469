//! Counseling sessions: every reply is decoded from a reasoning [`Plan`].
//!
//! For each client message the [`Counselor`] plans, builds the prompt for the manifest's
//! prompting mode, decodes with streaming (reasoning and content deltas kept apart), and holds
//! the reply to the plan's constraints *while* it streams: a sentence naming a forbidden label
//! is never emitted (the first one stops the draft, which is continued with a stronger
//! instruction and those labels' tokens banned), the reply stops at its word budget, and a
//! missing crisis protocol is appended. What streamed is what the transcript records.
//!
//! The model sits behind the small [`Drafter`] seam so that tests can inject drafts that break
//! the rules on purpose.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::runtime::chat_template::{ChatMessage, ChatTemplate, ChatTemplateError, RenderOptions};
use crate::runtime::tokenizer::{Tokenizer, TokenizerError};
use crate::runtime::{
    generate_cached, load_model, FinishReason, GenerationConfig, LoadedModel, PromptCache,
    RuntimeError, SamplingConfig,
};
use psy_core::dialogue::{Dialogue, Message, Role};
use psy_core::manifest::{DecodingSection, PromptingMode};
use psy_core::module::{ReplyRule, RiskLevel};
use psy_core::planner::{Constraints, Plan, Planner};
use psy_core::reply_rules::{
    self, check, enforce, forbidden_labels, missing_required, word_count, word_limit, Repair,
    Violation,
};

/// Why a turn could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("chat template: {0}")]
    Template(#[from] ChatTemplateError),
    #[error("{model}: the model has no chat template (its tokenizer carries none)")]
    NoTemplate { model: PathBuf },
    #[error("prompt is {tokens} tokens; the model's context is {context}")]
    PromptTooLong { tokens: usize, context: usize },
    #[error("the dialogue has no client message to answer")]
    NoClientMessage,
    #[error("generation was cancelled")]
    Cancelled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {msg}")]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// A streamed piece of a turn: hidden reasoning or client-facing content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta<'a> {
    Reasoning(&'a str),
    Content(&'a str),
}

/// What one call to the model should produce.
#[derive(Clone, Debug, Default)]
pub struct DraftRequest {
    pub messages: Vec<ChatMessage>,
    /// Text the assistant message already starts with; the draft continues it.
    pub assistant_prefix: String,
    pub max_new_tokens: usize,
    /// Let the model open `<think>` itself (`native` mode).
    pub thinking: bool,
    /// Phrases whose tokens get a banned-token logit bias.
    pub banned_phrases: Vec<String>,
    pub sampling: SamplingConfig,
    pub stop: Vec<String>,
}

/// A streamed token's text as the drafter sees it.
#[derive(Clone, Copy, Debug)]
pub struct DraftEvent<'a> {
    pub delta: &'a str,
    pub in_think: bool,
}

/// What the model produced for one [`DraftRequest`] (without the assistant prefix).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub reasoning: String,
    pub content: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Words the generator was told never to complete.
    pub banned_words: Vec<String>,
    pub finish: Option<FinishReason>,
    pub decode_tokens_per_second: f64,
}

/// The seam between sessions and a model: render, tokenize, generate with streaming.
/// `on_event` returning `Break` stops generation after the current token.
pub trait Drafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft>;

    /// Context length in tokens, when known.
    fn context_length(&self) -> Option<usize> {
        None
    }

    /// A name for `/v1/models` and transcripts.
    fn model_id(&self) -> String {
        "model".into()
    }
}

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

/// Asked before every token: `true` stops the turn (e.g. the client disconnected, which
/// the content stream alone cannot show while a sentence is still being held back).
#[derive(Clone)]
pub struct CancelCheck(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for CancelCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelCheck")
    }
}

/// Per-request decoding overrides (the server's OpenAI fields).
#[derive(Clone, Debug, Default)]
pub struct TurnOptions {
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub cancel: Option<CancelCheck>,
}

impl TurnOptions {
    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| (c.0)())
    }
}

/// Wall-clock and token counts of one turn.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TurnTimings {
    pub plan_ms: f64,
    pub reasoning_ms: f64,
    pub reply_ms: f64,
    pub total_ms: f64,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub decode_tokens_per_second: f64,
}

/// One answered client message: what the transcript records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TranscriptTurn {
    pub turn: usize,
    pub user: String,
    /// The client-facing reply, after every repair.
    pub reply: String,
    pub reasoning: String,
    pub risk_level: RiskLevel,
    pub mode: PromptingMode,
    pub plan: Plan,
    pub violations: Vec<Violation>,
    pub repairs: Vec<Repair>,
    pub timings: TurnTimings,
    /// OpenAI's `finish_reason`: `length` when the token cap cut the reply, else `stop`.
    #[serde(default = "stop_reason")]
    pub finish_reason: String,
}

fn stop_reason() -> String {
    "stop".into()
}

/// What an `icl` answer starts with (written for the model) and the marker of its reply.
const ICL_REASONING: &str = "Reasoning:";
const ICL_REPLY: &str = "Reply:";

/// One worked example for `icl`: a client message, reasoning that follows the step order,
/// and a reply that keeps the rules.
const ICL_EXAMPLE: &str = "Client: Work has been piling up and I snap at my kids every evening. I hate who I'm becoming.\n\
Reasoning: Feeling: overwhelmed and ashamed, moderate intensity. Risk: no sign of harm. Pattern: harsh self-judgement (\"I hate who I'm becoming\"). \
Approach: reflect the strain and the care behind the shame, then invite one small, concrete look at the evening routine. Keep it short and plain.\n\
Reply: It sounds like you're carrying a lot, and the fact that snapping at your kids hurts this much shows how much you care about them. \
Evenings seem to be where the pressure spills over. What usually happens in the hour before it does?";

/// How much of the plan's prompt text goes to the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PromptStyle {
    /// The plan's full system prompt and reasoning outline (thousands of tokens).
    Full,
    /// Persona, case formulation, reply constraints and crisis protocol, and one line per
    /// reasoning step: small CPU models prefill it in seconds instead of minutes.
    #[default]
    Compact,
}

/// Paragraphs of the plan's system prompt that a compact prompt keeps: the persona (first)
/// and the case-specific ones; the general guidelines are left out.
fn compact_system(plan: &Plan) -> String {
    plan.prompt
        .system
        .split("\n\n")
        .enumerate()
        .filter(|(i, p)| {
            *i == 0
                || ["Case formulation", "Reply", "Crisis protocol"]
                    .iter()
                    .any(|h| p.trim_start().starts_with(h))
        })
        .map(|(_, p)| p.trim())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One line per reasoning step: its title and the start of its findings.
fn compact_outline(plan: &Plan) -> String {
    plan.reasoning_steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ctx: Vec<&str> = s.context.split_whitespace().take(20).collect();
            format!("{}. {} ({})", i + 1, s.title, ctx.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The counselor: a planner and a drafter, with the manifest's decoding settings.
pub struct Counselor {
    planner: Planner,
    drafter: Box<dyn Drafter + Send>,
    decoding: DecodingSection,
    style: PromptStyle,
}

/// Sampling settings of the manifest's `[decoding]` section.
pub fn sampling_of(d: &DecodingSection) -> SamplingConfig {
    SamplingConfig {
        temperature: if d.greedy { 0.0 } else { d.temperature },
        top_k: d.top_k as usize,
        top_p: d.top_p,
        min_p: d.min_p,
        repetition_penalty: d.repetition_penalty,
        seed: d.seed,
    }
}

/// The client-facing reply held to its rules while it streams (see the module docs).
struct ReplyGuard<'a> {
    c: &'a Constraints,
    pending: String,
    emitted: String,
    limit: Option<usize>,
    /// Words kept free for required text appended at the end (the crisis protocol).
    reserve: usize,
    budget_reached: bool,
    /// Whitespace after the last emitted sentence, sent only when another sentence follows,
    /// so that the streamed text equals the recorded reply.
    gap: String,
}

/// What the guard made of newly complete sentences.
#[derive(Default)]
struct GuardStep {
    emit: String,
    /// A complete sentence named these labels (it was withheld).
    labels: Vec<String>,
}

impl<'a> ReplyGuard<'a> {
    fn new(c: &'a Constraints, prefix: &str) -> Self {
        let reserve = c
            .rules
            .iter()
            .filter_map(|r| match &r.rule {
                ReplyRule::Require { repair, .. } => Some(word_count(repair)),
                _ => None,
            })
            .sum();
        ReplyGuard {
            c,
            pending: String::new(),
            emitted: prefix.to_string(),
            limit: word_limit(c),
            reserve,
            budget_reached: false,
            gap: String::new(),
        }
    }

    /// Adds streamed text; complete sentences are checked and emitted (all of it at `end`).
    /// Stops at the first sentence naming a label when `stop_on_label`.
    fn push(&mut self, delta: &str, end: bool, stop_on_label: bool) -> GuardStep {
        let mut step = GuardStep::default();
        if self.budget_reached {
            return step;
        }
        self.pending.push_str(delta);
        let parts: Vec<String> = reply_rules::sentences(&self.pending)
            .into_iter()
            .map(str::to_string)
            .collect();
        let complete = if end {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        let mut consumed = 0;
        for s in &parts[..complete] {
            consumed += s.len();
            let labels = forbidden_labels(self.c, s);
            if !labels.is_empty() {
                step.labels.extend(labels);
                if stop_on_label {
                    break;
                }
                continue;
            }
            let mut body = s.trim_end().to_string();
            if let Some(limit) = self.limit {
                let budget = limit.saturating_sub(self.reserve);
                if word_count(&self.emitted) + word_count(s) > budget {
                    self.budget_reached = true;
                    if !self.emitted.trim().is_empty() {
                        break;
                    }
                    // One endless first sentence: cut it at the budget.
                    body = s
                        .split_whitespace()
                        .take(budget)
                        .collect::<Vec<_>>()
                        .join(" ");
                    body.push('…');
                }
            }
            // A reply never opens with blank space.
            let piece = if self.emitted.trim().is_empty() {
                body.trim_start().to_string()
            } else {
                format!("{}{body}", self.gap)
            };
            self.gap = s[s.trim_end().len()..].to_string();
            self.emitted.push_str(&piece);
            step.emit.push_str(&piece);
            if self.budget_reached {
                break;
            }
        }
        self.pending.drain(..consumed);
        step
    }
}

impl Counselor {
    pub fn new(planner: Planner, drafter: Box<dyn Drafter + Send>) -> Counselor {
        let decoding = planner.run().manifest.decoding.clone();
        Counselor {
            planner,
            drafter,
            decoding,
            style: PromptStyle::default(),
        }
    }

    pub fn with_prompt_style(mut self, style: PromptStyle) -> Counselor {
        self.style = style;
        self
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    pub fn drafter(&self) -> &(dyn Drafter + Send) {
        self.drafter.as_ref()
    }

    /// Answers the last client message of `dialogue`. Deltas stream through `on_delta`;
    /// `Break` from it cancels the turn ([`SessionError::Cancelled`]).
    pub fn respond(
        &mut self,
        dialogue: &Dialogue,
        opts: &TurnOptions,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<TranscriptTurn> {
        let started = Instant::now();
        let user = dialogue
            .last_client_turn()
            .ok_or(SessionError::NoClientMessage)?
            .text
            .to_string();
        let plan = self.planner.plan(dialogue);
        let mut timings = TurnTimings {
            plan_ms: ms(started),
            ..Default::default()
        };
        let c = plan.constraints.clone();
        let mut sampling = sampling_of(&self.decoding);
        if let Some(t) = opts.temperature {
            sampling.temperature = t;
        }
        if let Some(p) = opts.top_p {
            sampling.top_p = p;
        }
        if let Some(s) = opts.seed {
            sampling.seed = s;
        }
        let cap = opts
            .max_new_tokens
            .unwrap_or(self.decoding.max_new_tokens as usize)
            .max(1);
        // About 4 tokens for 3 words, plus room for punctuation.
        let reply_tokens = cap.min(word_limit(&c).map_or(cap, |w| w * 4 / 3 + 16));
        let mut reasoning_tokens = cap.min(c.reasoning_max_words as usize * 4 / 3 + 16);
        // The cap bounds reasoning and reply together (as OpenAI's `max_completion_tokens`
        // counts reasoning tokens): when both do not fit, the reasoning gets at most half.
        if plan.prompt.mode == PromptingMode::TwoPhase && reasoning_tokens + reply_tokens > cap {
            reasoning_tokens = reasoning_tokens.min(cap / 2).max(1);
        }
        let mut reasoning_used = 0;
        let history: Vec<ChatMessage> = dialogue
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| ChatMessage::new(role_name(m.role), m.content.clone()))
            .collect();
        let with_system = |system: String| {
            let mut v = vec![ChatMessage::new("system", system)];
            v.extend(history.iter().cloned());
            v
        };
        let mut violations = Vec::new();
        let mut repairs = Vec::new();
        let mut cancelled = false;
        let mut prompt_tokens = 0;
        let mut completion_tokens = 0;
        let mut tps = 0.0;

        let (system, outline) = match self.style {
            PromptStyle::Full => (
                plan.prompt.system.clone(),
                plan.prompt.reasoning_outline.clone(),
            ),
            PromptStyle::Compact => (compact_system(&plan), compact_outline(&plan)),
        };
        // Phase 1 (two-phase only): the reasoning, following the plan's steps.
        let mut reasoning = String::new();
        let reply_system = match plan.prompt.mode {
            PromptingMode::Direct | PromptingMode::Native => system.clone(),
            PromptingMode::Icl => format!(
                "{}\n\n## Reasoning steps\n{}\n\n## Worked example\n{}\n\n\
                 Answer in the example's form: after \"Reasoning:\" your private reasoning, following \
                 the steps in order, in at most {} words; then \"{ICL_REPLY}\" and only the reply to \
                 the client.",
                system, outline, ICL_EXAMPLE, c.reasoning_max_words
            ),
            PromptingMode::TwoPhase => {
                let t0 = Instant::now();
                let budget = c.reasoning_max_words as usize;
                let req = DraftRequest {
                    messages: with_system(format!(
                        "{}\n\n## Reasoning steps\n{}\n\nWrite the counselor's private reasoning for the next reply, \
                         following the steps in order, in at most {budget} words. Do not write the reply itself.",
                        system, outline
                    )),
                    max_new_tokens: reasoning_tokens,
                    sampling: sampling.clone(),
                    ..Default::default()
                };
                let mut over = false;
                let draft = self.drafter.draft(&req, &mut |ev| {
                    if opts.cancelled() {
                        cancelled = true;
                        return ControlFlow::Break(());
                    }
                    if word_count(&reasoning) >= budget {
                        over = true;
                        return ControlFlow::Break(());
                    }
                    reasoning.push_str(ev.delta);
                    if on_delta(Delta::Reasoning(ev.delta)).is_break() {
                        cancelled = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                })?;
                if cancelled {
                    return Err(SessionError::Cancelled);
                }
                if over {
                    violations.push(Violation {
                        rule: "reasoning-budget".into(),
                        source: "psy".into(),
                        detail: format!("reasoning ran past {budget} words"),
                    });
                    repairs.push(Repair {
                        rule: "reasoning-budget".into(),
                        action: "truncate".into(),
                        detail: format!("stopped the reasoning at {budget} words"),
                    });
                }
                reasoning = reasoning.trim().to_string();
                prompt_tokens += draft.prompt_tokens;
                completion_tokens += draft.completion_tokens;
                reasoning_used = draft.completion_tokens;
                tps = f64::max(tps, draft.decode_tokens_per_second);
                timings.reasoning_ms = ms(t0);
                format!(
                    "{}\n\n## Your private reasoning for this reply (never show it to the client)\n{}\n\n\
                     Now write only the reply to the client.",
                    system, reasoning
                )
            }
        };

        // Phase 2: the reply, held to the plan's rules as it streams.
        let t0 = Instant::now();
        let mut guard = ReplyGuard::new(&c, "");
        let mut req = DraftRequest {
            messages: with_system(reply_system.clone()),
            thinking: plan.prompt.mode == PromptingMode::Native,
            // `icl` answers "Reasoning: ... Reply: ..." in one generation, started for it.
            assistant_prefix: if plan.prompt.mode == PromptingMode::Icl {
                ICL_REASONING.into()
            } else {
                String::new()
            },
            max_new_tokens: if matches!(
                plan.prompt.mode,
                PromptingMode::Native | PromptingMode::Icl
            ) {
                cap.min(reply_tokens + reasoning_tokens)
            } else {
                reply_tokens.min(cap.saturating_sub(reasoning_used)).max(1)
            },
            sampling: sampling.clone(),
            stop: opts.stop.clone(),
            ..Default::default()
        };
        let native = plan.prompt.mode == PromptingMode::Native;
        // `icl`: the draft's text is reasoning until the reply marker, then the reply.
        let mut icl_open = plan.prompt.mode == PromptingMode::Icl;
        let reasoning_budget = c.reasoning_max_words as usize;
        let mut attempt = 0;
        let mut raw = String::new();
        let mut last_finish;
        loop {
            let first = attempt == 0;
            let mut labels: Vec<String> = Vec::new();
            let mut think_over = false;
            let (mut icl_buf, mut icl_sent) = (String::new(), 0usize);
            let draft = self.drafter.draft(&req, &mut |ev| {
                if opts.cancelled() {
                    cancelled = true;
                    return ControlFlow::Break(());
                }
                let mut text = ev.delta;
                if icl_open {
                    icl_buf.push_str(ev.delta);
                    let marker = icl_buf.find(ICL_REPLY);
                    // Stream the reasoning, holding back what could be the start of the marker.
                    let mut end = marker.unwrap_or(icl_buf.len().saturating_sub(ICL_REPLY.len()));
                    while !icl_buf.is_char_boundary(end) {
                        end -= 1;
                    }
                    if end > icl_sent {
                        let piece = &icl_buf[icl_sent..end];
                        reasoning.push_str(piece);
                        if on_delta(Delta::Reasoning(piece)).is_break() {
                            cancelled = true;
                            return ControlFlow::Break(());
                        }
                        icl_sent = end;
                    }
                    match marker {
                        Some(p) => {
                            icl_open = false;
                            text = icl_buf[p + ICL_REPLY.len()..].trim_start();
                        }
                        None => {
                            if word_count(&reasoning) >= reasoning_budget {
                                think_over = true;
                                return ControlFlow::Break(());
                            }
                            return ControlFlow::Continue(());
                        }
                    }
                    if text.is_empty() {
                        return ControlFlow::Continue(());
                    }
                }
                if native && ev.in_think {
                    if word_count(&reasoning) >= reasoning_budget {
                        think_over = true;
                        return ControlFlow::Break(());
                    }
                    reasoning.push_str(ev.delta);
                    if on_delta(Delta::Reasoning(ev.delta)).is_break() {
                        cancelled = true;
                        return ControlFlow::Break(());
                    }
                    return ControlFlow::Continue(());
                }
                raw.push_str(text);
                let step = guard.push(text, false, first);
                if !step.emit.is_empty() && on_delta(Delta::Content(&step.emit)).is_break() {
                    cancelled = true;
                    return ControlFlow::Break(());
                }
                if !step.labels.is_empty() {
                    labels.extend(step.labels);
                    if first {
                        return ControlFlow::Break(());
                    }
                }
                if guard.budget_reached {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            })?;
            if cancelled {
                return Err(SessionError::Cancelled);
            }
            prompt_tokens += draft.prompt_tokens;
            completion_tokens += draft.completion_tokens;
            last_finish = draft.finish;
            tps = f64::max(tps, draft.decode_tokens_per_second);
            if plan.prompt.mode == PromptingMode::Icl {
                if icl_open && icl_buf.len() > icl_sent {
                    // Flush the held-back tail: no marker came.
                    let piece = &icl_buf[icl_sent..];
                    reasoning.push_str(piece);
                    if on_delta(Delta::Reasoning(piece)).is_break() {
                        return Err(SessionError::Cancelled);
                    }
                }
                if icl_open && !think_over {
                    // The draft ended without the reply marker: keep its reasoning, ask for the reply.
                    repairs.push(Repair {
                        rule: "icl-format".into(),
                        action: "regenerate".into(),
                        detail: format!(
                            "the draft never wrote \"{ICL_REPLY}\"; asked for the reply"
                        ),
                    });
                    think_over = true;
                }
                icl_open = false;
                // Every later attempt continues after the reasoning and the marker.
                req.assistant_prefix =
                    format!("{ICL_REASONING} {}\n{ICL_REPLY} ", reasoning.trim());
            }
            if think_over {
                // The reasoning ran past its budget (or, in `icl`, never reached the reply
                // marker): close it and let the model answer after it.
                let icl = plan.prompt.mode == PromptingMode::Icl;
                if !icl || word_count(&reasoning) >= reasoning_budget {
                    violations.push(Violation {
                        rule: "reasoning-budget".into(),
                        source: "psy".into(),
                        detail: format!("reasoning ran past {reasoning_budget} words"),
                    });
                    repairs.push(Repair {
                        rule: "reasoning-budget".into(),
                        action: "truncate".into(),
                        detail: format!("closed the reasoning at {reasoning_budget} words"),
                    });
                }
                if !icl {
                    req.assistant_prefix = format!("<think>\n{}\n</think>\n\n", reasoning.trim());
                }
                attempt += 1;
                if attempt < 3 {
                    continue;
                }
            }
            if !labels.is_empty() {
                labels.dedup();
                for rule in forbid_rules(&c, &labels) {
                    violations.push(Violation {
                        rule: rule.0.clone(),
                        source: rule.1.clone(),
                        detail: format!("draft says {}", labels.join(", ")),
                    });
                }
                if first {
                    // Continue after the clean text, told more firmly, with the labels banned.
                    let rule_id = forbid_rules(&c, &labels)
                        .first()
                        .map(|r| r.0.clone())
                        .unwrap_or_else(|| "no-diagnostic-labels".into());
                    let mut banned = req.banned_phrases.clone();
                    banned.extend(labels.iter().cloned());
                    req.messages = with_system(format!(
                        "{reply_system}\n\nIMPORTANT: speak to the client in plain, everyday words. Never name a \
                         diagnosis, disorder or clinical term (do not say: {}).",
                        labels.join(", ")
                    ));
                    req.assistant_prefix =
                        format!("{}{}{}", req.assistant_prefix, guard.emitted, guard.gap);
                    req.banned_phrases = banned;
                    guard.pending.clear();
                    repairs.push(Repair {
                        rule: rule_id.clone(),
                        action: "regenerate".into(),
                        detail: "continued after the clean text with a stronger instruction".into(),
                    });
                    repairs.push(Repair {
                        rule: rule_id,
                        action: "logit-bias".into(),
                        detail: format!("banned the tokens of {}", labels.join(", ")),
                    });
                    attempt += 1;
                    continue;
                }
                repairs.push(Repair {
                    rule: forbid_rules(&c, &labels)
                        .first()
                        .map(|r| r.0.clone())
                        .unwrap_or_default(),
                    action: "drop-sentence".into(),
                    detail: format!("withheld sentence(s) naming {}", labels.join(", ")),
                });
            }
            break;
        }
        // Flush what is left of the draft.
        let step = guard.push("", true, false);
        if !step.emit.is_empty() && on_delta(Delta::Content(&step.emit)).is_break() {
            return Err(SessionError::Cancelled);
        }
        if !step.labels.is_empty() {
            repairs.push(Repair {
                rule: forbid_rules(&c, &step.labels)
                    .first()
                    .map(|r| r.0.clone())
                    .unwrap_or_default(),
                action: "drop-sentence".into(),
                detail: format!("withheld a sentence naming {}", step.labels.join(", ")),
            });
        }
        if guard.budget_reached {
            let max = word_limit(&c).unwrap_or(0);
            violations.push(Violation {
                rule: "word-budget".into(),
                source: "psy".into(),
                detail: format!("draft ran past {max} words"),
            });
            repairs.push(Repair {
                rule: "word-budget".into(),
                action: "truncate".into(),
                detail: format!(
                    "stopped at a sentence end, {} words",
                    word_count(&guard.emitted)
                ),
            });
        }
        // Required text (the crisis protocol) the draft left out is appended, never cut.
        let mut reply = guard.emitted.trim().to_string();
        for (id, text) in missing_required(&c, &reply) {
            violations.push(Violation {
                rule: id.clone(),
                source: source_of(&c, &id),
                detail: "draft left out the required text".into(),
            });
            let piece = if reply.is_empty() {
                text.clone()
            } else {
                format!("\n\n{text}")
            };
            if on_delta(Delta::Content(&piece)).is_break() {
                return Err(SessionError::Cancelled);
            }
            reply.push_str(&piece);
            repairs.push(Repair {
                rule: id,
                action: "append".into(),
                detail: "added the required text".into(),
            });
        }
        // Last resort: whatever slipped through the sentence split.
        if !check(&c, &reply).is_empty() {
            let (fixed, more) = enforce(&c, &reply);
            tracing::warn!(?more, "reply needed text-level repairs after streaming");
            reply = fixed;
            repairs.extend(more);
        }
        timings.reply_ms = ms(t0);
        timings.total_ms = ms(started);
        timings.prompt_tokens = prompt_tokens;
        timings.completion_tokens = completion_tokens;
        timings.decode_tokens_per_second = tps;
        tracing::debug!(draft = %raw, "raw reply draft");
        Ok(TranscriptTurn {
            turn: plan.turn,
            user,
            reply,
            reasoning: reasoning.trim().to_string(),
            risk_level: plan.risk.level,
            mode: plan.prompt.mode,
            plan,
            violations,
            repairs,
            timings,
            // Stopping at a sentence end within the word budget is a deliberate stop.
            finish_reason: if last_finish == Some(FinishReason::Length) && !guard.budget_reached {
                "length".into()
            } else {
                "stop".into()
            },
        })
    }
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// `(id, source)` of the `Forbid` rules that list any of `labels`.
fn forbid_rules(c: &Constraints, labels: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &c.rules {
        if let ReplyRule::Forbid { id, phrases, .. } = &r.rule {
            if labels.iter().any(|l| phrases.contains(l)) && !out.iter().any(|o| &o.0 == id) {
                out.push((id.clone(), r.source.clone()));
            }
        }
    }
    out
}

fn source_of(c: &Constraints, id: &str) -> String {
    c.rules
        .iter()
        .find(|r| match &r.rule {
            ReplyRule::Require { id: i, .. }
            | ReplyRule::Forbid { id: i, .. }
            | ReplyRule::MaxWords { id: i, .. } => i == id,
        })
        .map(|r| r.source.clone())
        .unwrap_or_default()
}

/// A conversation with a counselor and its transcript.
pub struct Session {
    counselor: Counselor,
    dialogue: Dialogue,
    turns: Vec<TranscriptTurn>,
}

impl Session {
    pub fn new(counselor: Counselor) -> Session {
        Session {
            counselor,
            dialogue: Dialogue::default(),
            turns: Vec::new(),
        }
    }

    pub fn counselor(&self) -> &Counselor {
        &self.counselor
    }

    /// Answers one client message and records the turn.
    pub fn send(
        &mut self,
        text: &str,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<&TranscriptTurn> {
        self.dialogue.messages.push(Message::user(text));
        let turn = match self
            .counselor
            .respond(&self.dialogue, &TurnOptions::default(), on_delta)
        {
            Ok(t) => t,
            Err(e) => {
                self.dialogue.messages.pop();
                return Err(e);
            }
        };
        let mut reply = Message::assistant(turn.reply.clone());
        if !turn.reasoning.is_empty() {
            reply.reasoning_content = Some(turn.reasoning.clone());
        }
        self.dialogue.messages.push(reply);
        self.turns.push(turn);
        Ok(self.turns.last().expect("just pushed"))
    }

    pub fn turns(&self) -> &[TranscriptTurn] {
        &self.turns
    }

    /// Starts a new conversation (the transcript so far is dropped).
    pub fn reset(&mut self) {
        self.dialogue = Dialogue::default();
        self.turns.clear();
    }

    /// Writes the transcript as JSONL, one turn a line.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_transcript(path, &self.turns)
    }
}

/// Writes turns as JSONL.
pub fn write_transcript(path: &Path, turns: &[TranscriptTurn]) -> Result<()> {
    let mut out = String::new();
    for t in turns {
        out.push_str(&serde_json::to_string(t).expect("transcript turns serialise"));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSONL transcript written by [`write_transcript`].
pub fn read_transcript(path: &Path) -> Result<Vec<TranscriptTurn>> {
    let text = std::fs::read_to_string(path).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| SessionError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg: e.to_string(),
            })
        })
        .collect()
}

/// Client messages of a script: one a line (blank lines and `#` comments skipped), or JSONL
/// of `{"content": ...}` when every line is a JSON object.
pub fn read_script(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let jsonl = !lines.is_empty() && lines.iter().all(|(_, l)| l.starts_with('{'));
    lines
        .into_iter()
        .map(|(n, l)| {
            if !jsonl {
                return Ok(l.to_string());
            }
            #[derive(Deserialize)]
            struct Line {
                content: String,
            }
            serde_json::from_str::<Line>(l)
                .map(|x| x.content)
                .map_err(|e| SessionError::Parse {
                    path: path.to_path_buf(),
                    line: n,
                    msg: format!("expected {{\"content\": ...}}: {e}"),
                })
        })
        .collect()
}

/// A turn as the terminal shows it (`--replay`); with `show_plan`, risk, hypotheses,
/// modalities, violations and repairs too.
pub fn format_turn(t: &TranscriptTurn, show_plan: bool) -> String {
    let mut s = format!("client> {}\n", t.user);
    if show_plan {
        s.push_str(&plan_summary_text(&t.plan));
    }
    if !t.reasoning.is_empty() {
        s.push_str(&format!("[reasoning] {}\n", t.reasoning));
    }
    s.push_str(&format!("counselor> {}\n", t.reply));
    for v in &t.violations {
        s.push_str(&format!(
            "  ! violated {} ({}): {}\n",
            v.rule, v.source, v.detail
        ));
    }
    for r in &t.repairs {
        s.push_str(&format!(
            "  + repaired {} by {}: {}\n",
            r.rule, r.action, r.detail
        ));
    }
    s
}

/// Risk, leading hypotheses and chosen modalities, one line each.
pub fn plan_summary_text(p: &Plan) -> String {
    let hyps: Vec<String> = p
        .hypotheses
        .iter()
        .map(|h| format!("{} {:.2}", h.id, h.confidence))
        .collect();
    let mods: Vec<&str> = p
        .modalities
        .iter()
        .filter(|m| m.chosen)
        .map(|m| m.id.as_str())
        .collect();
    format!(
        "  [plan] risk: {}   hypotheses: {}   modalities: {}   mode: {:?}\n",
        p.risk.level.as_str(),
        if hyps.is_empty() {
            "-".into()
        } else {
            hyps.join(", ")
        },
        if mods.is_empty() {
            "-".into()
        } else {
            mods.join(", ")
        },
        p.prompt.mode
    )
}

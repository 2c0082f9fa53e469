//! Training samples and loss masks from the chat template the decoder uses.
//!
//! A trained span is found by rendering the prompt (history + generation prompt, exactly as at
//! inference) and the prompt followed by the assistant turn, tokenising both, checking that the
//! first is a token prefix of the second, and training the difference. There is no second
//! formatter: if the template changes, the masks follow.

use super::data::{Conversation, DataReport};
use super::error::{Result, TrainError};
use super::loss::IGNORE_INDEX;
use crate::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use crate::runtime::tokenizer::Tokenizer;
pub use psy_core::train_spec::TracePlacement;

/// How samples are built.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderConfig {
    pub placement: TracePlacement,
    /// Loss weight of trace tokens (`<think>` … `</think>`).
    pub reasoning_weight: f32,
    /// Loss weight of reply tokens (after `</think>`, through the end-of-turn token).
    pub reply_weight: f32,
    /// Train only the last assistant turn of each dialogue.
    pub last_turn_only: bool,
    /// Longest sample in tokens; longer ones are cut (as LLaMA-Factory's `cutoff_len`).
    pub max_len: usize,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            placement: TracePlacement::Template,
            reasoning_weight: 1.0,
            reply_weight: 1.0,
            last_turn_only: false,
            max_len: 8192,
        }
    }
}

/// One tokenised training sample (labels unshifted, HF style).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub origin: String,
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub weights: Vec<f32>,
}

impl Sample {
    pub fn trained(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// The messages of one sample and the indices of the assistant turns it trains.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMessages {
    pub messages: Vec<ChatMessage>,
    pub trained: Vec<usize>,
}

/// Builds the system prompt for the turn that answers a history.
pub type SystemPromptFn<'a> = dyn Fn(&[ChatMessage]) -> String + 'a;

/// A verdict on one assistant turn (the messages up to and including it): `Err((module id,
/// reason))` keeps the turn out of training (the run's modules' `Module::review_sample`).
pub type SampleReviewFn<'a> =
    dyn Fn(&[ChatMessage]) -> std::result::Result<(), (String, String)> + 'a;

/// Renders conversations into samples with one template and one tokenizer.
pub struct SampleRenderer<'a> {
    pub template: &'a ChatTemplate,
    pub tokenizer: &'a Tokenizer,
    pub config: RenderConfig,
    /// The system prompt for the turn answering `history` (plan conditioning); forces one
    /// sample per turn, since the prompt changes every turn.
    pub system_for_turn: Option<&'a SystemPromptFn<'a>>,
    /// Reviews every trained assistant turn; a rejected turn is counted in the report and not
    /// trained (the dialogue is then rendered one sample per turn, so the others still are).
    pub review: Option<&'a SampleReviewFn<'a>>,
}

/// The assistant text of the inline placement.
pub fn inline_text(m: &ChatMessage) -> String {
    match &m.reasoning_content {
        Some(r) => format!("<think>\n{r}\n</think>\n\n{}", m.content),
        None => m.content.clone(),
    }
}

impl SampleRenderer<'_> {
    fn render(&self, msgs: &[ChatMessage], generation_prompt: bool) -> Result<String> {
        let opts = RenderOptions {
            add_generation_prompt: generation_prompt,
            ..RenderOptions::default()
        };
        self.template
            .render(msgs, &opts)
            .map_err(|e| TrainError::Template(e.to_string()))
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // As `apply_chat_template(tokenize=True)`: the template writes any BOS itself.
        self.tokenizer
            .encode(text, false)
            .map_err(|e| TrainError::Tokenizer(e.to_string()))
    }

    /// Token range `[start, end)` of the assistant message `msgs[i]` inside `ids`, where `ids`
    /// tokenises a rendering that begins with `msgs[..=i]`. Checks the prefix properties.
    fn span(
        &self,
        origin: &str,
        msgs: &[ChatMessage],
        i: usize,
        ids: &[u32],
    ) -> Result<(usize, usize)> {
        let prompt = self.encode(&self.render(&msgs[..i], true)?)?;
        let turn = self.encode(&self.render(&msgs[..=i], false)?)?;
        let not_prefix = |what: &str| {
            TrainError::Template(format!(
            "{origin}: the tokens of {what} are not a prefix of the sample's tokens (message {i}); \
             the template rewrites earlier text or the tokenizer merges across the boundary"
        ))
        };
        if !turn.starts_with(&prompt) {
            return Err(not_prefix("the prompt"));
        }
        if !ids.starts_with(&turn) {
            return Err(not_prefix("the turn"));
        }
        // Train through the last end-of-turn token; what a template writes after it (Qwen's
        // "\n") is never generated.
        let eos = self.tokenizer.eos_token_ids();
        let mut end = turn.len();
        if let Some(p) = turn[prompt.len()..].iter().rposition(|t| eos.contains(t)) {
            end = prompt.len() + p + 1;
        }
        Ok((prompt.len(), end))
    }

    fn label(&self, ids: &[u32], spans: &[(usize, usize)], origin: &str, len: usize) -> Sample {
        let mut labels = vec![IGNORE_INDEX; len];
        let mut weights = vec![0.0f32; len];
        let think_end = self.tokenizer.think_token_ids().map(|(_, e)| e);
        for &(a, b) in spans {
            // Tokens up to and including `</think>` are the trace.
            let split = think_end
                .and_then(|e| ids[a..b].iter().position(|&t| t == e))
                .map_or(a, |p| a + p + 1);
            for t in a..b.min(len) {
                labels[t] = i64::from(ids[t]);
                weights[t] = if t < split {
                    self.config.reasoning_weight
                } else {
                    self.config.reply_weight
                };
            }
        }
        Sample {
            origin: origin.to_string(),
            ids: ids[..len].to_vec(),
            labels,
            weights,
        }
    }

    fn assistant_turns(&self, msgs: &[ChatMessage]) -> Vec<usize> {
        let all: Vec<usize> = (0..msgs.len())
            .filter(|&i| msgs[i].role == "assistant")
            .collect();
        if self.config.last_turn_only {
            all.last().copied().into_iter().collect()
        } else {
            all
        }
    }

    /// Samples of one conversation; too-long samples without any trained token left are counted
    /// in `report` and dropped.
    pub fn samples(&self, conv: &Conversation, report: &mut DataReport) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for s in self.sample_messages(conv, report)? {
            out.extend(self.sample_of(&conv.origin, &s, report)?);
        }
        Ok(out)
    }

    /// Tokens, labels and weights of one message list; `None` (counted in `report`) when no
    /// trained token is left within `max_len`.
    pub fn sample_of(
        &self,
        origin: &str,
        s: &SampleMessages,
        report: &mut DataReport,
    ) -> Result<Option<Sample>> {
        let ids = self.encode(&self.render(&s.messages, false)?)?;
        let spans = s
            .trained
            .iter()
            .map(|&i| self.span(origin, &s.messages, i, &ids))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.cut(origin, &ids, &spans, report))
    }

    /// The message lists [`Self::samples`] renders, with the assistant turns each one trains:
    /// one list per trained turn when the template rewrites history, plan conditioning changes
    /// the system prompt, or a review dropped a turn; otherwise the whole dialogue once. An
    /// exported job (`export_job`) writes these same lists for another trainer.
    pub fn sample_messages(
        &self,
        conv: &Conversation,
        report: &mut DataReport,
    ) -> Result<Vec<SampleMessages>> {
        let msgs: Vec<ChatMessage> = match self.config.placement {
            TracePlacement::Inline => conv
                .messages
                .iter()
                .map(|m| {
                    if m.role == "assistant" {
                        ChatMessage::new("assistant", inline_text(m))
                    } else {
                        m.clone()
                    }
                })
                .collect(),
            TracePlacement::Template => conv.messages.clone(),
        };
        let mut turns = self.assistant_turns(&msgs);
        let reviewed = turns.len();
        turns.retain(|&i| self.accepted(conv, i, report));
        if turns.is_empty() {
            return Ok(Vec::new());
        }
        let per_turn = self.config.placement == TracePlacement::Template
            || self.system_for_turn.is_some()
            || turns.len() < reviewed
            || !self.append_only(&msgs)?;
        if !per_turn {
            return Ok(vec![SampleMessages {
                messages: msgs,
                trained: turns,
            }]);
        }
        Ok(turns
            .iter()
            .map(|&i| self.turn_messages(&msgs, i))
            .collect())
    }

    /// The messages of a sample that trains assistant turn `i` alone.
    fn turn_messages(&self, msgs: &[ChatMessage], i: usize) -> SampleMessages {
        let mut sample: Vec<ChatMessage> = msgs[..=i]
            .iter()
            .enumerate()
            .map(|(j, m)| {
                // History as inference keeps it: assistant replies without their trace.
                if j < i
                    && m.role == "assistant"
                    && self.config.placement == TracePlacement::Template
                {
                    ChatMessage::new("assistant", m.content.clone())
                } else {
                    m.clone()
                }
            })
            .collect();
        let mut i = i;
        if let Some(f) = self.system_for_turn {
            let sys = f(&sample[..i]);
            if sample.first().is_some_and(|m| m.role == "system") {
                sample[0].content = sys;
            } else {
                sample.insert(0, ChatMessage::new("system", sys));
                i += 1;
            }
        }
        SampleMessages {
            messages: sample,
            trained: vec![i],
        }
    }

    /// Whether the review (if any) keeps assistant turn `i` of `conv`; counts the verdict.
    fn accepted(&self, conv: &Conversation, i: usize, report: &mut DataReport) -> bool {
        let Some(review) = self.review else {
            return true;
        };
        report.reviewed += 1;
        match review(&conv.messages[..=i]) {
            Ok(()) => true,
            Err((module, reason)) => {
                report.skip(
                    &format!("rejected by {module}"),
                    format!("{} (message {i}): {reason}", conv.origin),
                );
                false
            }
        }
    }

    fn cut(
        &self,
        origin: &str,
        ids: &[u32],
        spans: &[(usize, usize)],
        report: &mut DataReport,
    ) -> Option<Sample> {
        let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
        let len = end.min(self.config.max_len);
        let sample = self.label(ids, spans, origin, len);
        if sample.labels.iter().skip(1).all(|&l| l == IGNORE_INDEX) {
            report.skip(
                "too long",
                format!(
                    "{origin}: no trained token within max_len {}",
                    self.config.max_len
                ),
            );
            return None;
        }
        if end > len {
            tracing::debug!(%origin, end, len, "sample cut at max_len");
        }
        Some(sample)
    }

    /// Whether rendering the whole dialogue reproduces every shorter rendering as a prefix (so
    /// one sample can train all turns).
    fn append_only(&self, msgs: &[ChatMessage]) -> Result<bool> {
        let full = self.render(msgs, false)?;
        for i in self.assistant_turns(msgs) {
            if !full.starts_with(&self.render(&msgs[..i], true)?)
                || !full.starts_with(&self.render(&msgs[..=i], false)?)
            {
                tracing::debug!("template rewrites history: one sample per assistant turn");
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// LLaMA-Factory's `qwen` template (plain ChatML, assistant text verbatim) as a Jinja chat
/// template, for the inline placement PsyLLM trained with. Selected by `chat_template = "chatml"`.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

//! What every prompting mode builds its requests from: the plan's prompt text in the
//! counselor's [`PromptStyle`], the dialogue so far, the sampling settings and the token budget.

use psy_core::dialogue::{Dialogue, Role};
use psy_core::manifest::DecodingSection;
use psy_core::planner::{Constraints, Plan};
use psy_core::reply_rules::word_limit;

use crate::runtime::chat_template::ChatMessage;
use crate::runtime::SamplingConfig;

use super::{DraftRequest, TurnOptions};

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

/// Token caps of one turn. The cap bounds reasoning and reply together (as OpenAI's
/// `max_completion_tokens` counts reasoning tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TokenBudget {
    /// The request's `max_new_tokens`, or the manifest's.
    pub cap: usize,
    /// Room for the reply's word limit.
    pub reply: usize,
    /// Room for the reasoning's word budget.
    pub reasoning: usize,
}

impl TokenBudget {
    pub fn new(cap: usize, c: &Constraints) -> TokenBudget {
        // About 4 tokens for 3 words, plus room for punctuation.
        TokenBudget {
            cap,
            reply: cap.min(word_limit(c).map_or(cap, |w| w * 4 / 3 + 16)),
            reasoning: cap.min(c.reasoning_max_words as usize * 4 / 3 + 16),
        }
    }

    /// Tokens left for a reply drafted after `spent` tokens of reasoning.
    pub fn reply_after(&self, spent: usize) -> usize {
        self.reply.min(self.cap.saturating_sub(spent)).max(1)
    }

    /// Tokens for reasoning and reply drafted in one generation.
    pub fn reasoning_and_reply(&self) -> usize {
        self.cap.min(self.reply + self.reasoning)
    }
}

/// The inputs a prompting mode turns into draft requests.
#[derive(Clone, Debug)]
pub(crate) struct TurnPrompt {
    /// The plan's system prompt, in the counselor's style.
    pub system: String,
    /// The plan's reasoning steps, in the counselor's style.
    pub outline: String,
    /// The dialogue so far, without system messages.
    pub history: Vec<ChatMessage>,
    /// The reasoning's word budget.
    pub reasoning_words: usize,
    pub sampling: SamplingConfig,
    /// The caller's stop strings (they end the reply, never the reasoning drafted alone).
    pub stop: Vec<String>,
    pub tokens: TokenBudget,
}

impl TurnPrompt {
    pub fn new(
        plan: &Plan,
        dialogue: &Dialogue,
        style: PromptStyle,
        decoding: &DecodingSection,
        opts: &TurnOptions,
    ) -> TurnPrompt {
        let mut sampling = sampling_of(decoding);
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
            .unwrap_or(decoding.max_new_tokens as usize)
            .max(1);
        let (system, outline) = match style {
            PromptStyle::Full => (
                plan.prompt.system.clone(),
                plan.prompt.reasoning_outline.clone(),
            ),
            PromptStyle::Compact => (compact_system(plan), compact_outline(plan)),
        };
        TurnPrompt {
            system,
            outline,
            history: dialogue
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| ChatMessage::new(role_name(m.role), m.content.clone()))
                .collect(),
            reasoning_words: plan.constraints.reasoning_max_words as usize,
            sampling,
            stop: opts.stop.clone(),
            tokens: TokenBudget::new(cap, &plan.constraints),
        }
    }

    /// `system` followed by the dialogue.
    pub fn messages(&self, system: String) -> Vec<ChatMessage> {
        let mut v = vec![ChatMessage::new("system", system)];
        v.extend(self.history.iter().cloned());
        v
    }

    /// A request for the reply under `system`, stopped by the caller's stop strings.
    pub fn reply_request(&self, system: String, max_new_tokens: usize) -> DraftRequest {
        DraftRequest {
            messages: self.messages(system),
            max_new_tokens,
            sampling: self.sampling.clone(),
            stop: self.stop.clone(),
            ..Default::default()
        }
    }
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

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixtures::{plan, turn, COMPACT_OUTLINE, COMPACT_SYSTEM};
    use psy_core::manifest::PromptingMode;

    #[test]
    fn a_compact_prompt_keeps_the_persona_and_the_case_and_one_line_per_step() {
        let p = plan(PromptingMode::Direct);
        assert_eq!(compact_system(&p), COMPACT_SYSTEM);
        assert_eq!(compact_outline(&p), COMPACT_OUTLINE);
        let t = turn(PromptingMode::Direct, 100);
        assert_eq!(
            (t.system.as_str(), t.outline.as_str()),
            (COMPACT_SYSTEM, COMPACT_OUTLINE)
        );
    }

    #[test]
    fn the_token_budget_fits_the_word_limits_within_the_cap() {
        let c = plan(PromptingMode::Direct).constraints;
        // 20 reply words and 12 reasoning words, about 4 tokens for 3 words plus 16.
        let b = TokenBudget::new(100, &c);
        assert_eq!(
            b,
            TokenBudget {
                cap: 100,
                reply: 42,
                reasoning: 32
            }
        );
        assert_eq!(b.reasoning_and_reply(), 74);
        assert_eq!(b.reply_after(0), 42);
        assert_eq!(b.reply_after(90), 10);
        assert_eq!(b.reply_after(200), 1);
        let b = TokenBudget::new(30, &c);
        assert_eq!(
            (b.reply, b.reasoning, b.reasoning_and_reply()),
            (30, 30, 30)
        );
    }

    #[test]
    fn request_options_override_the_manifests_sampling() {
        let p = plan(PromptingMode::Direct);
        let decoding = DecodingSection {
            greedy: true,
            ..Default::default()
        };
        let opts = TurnOptions {
            temperature: Some(0.3),
            seed: Some(9),
            ..Default::default()
        };
        let dialogue = Dialogue::from_message("hi");
        let t = TurnPrompt::new(&p, &dialogue, PromptStyle::Full, &decoding, &opts);
        assert_eq!(
            (t.sampling.temperature, t.sampling.top_p, t.sampling.seed),
            (0.3, 0.9, 9)
        );
        // No cap in the request: the manifest's 256 tokens.
        assert_eq!(t.tokens.cap, 256);
        assert_eq!(t.system, p.prompt.system);
        assert_eq!(t.outline, p.prompt.reasoning_outline);
        assert_eq!(t.reasoning_words, 12);
        let greedy = TurnPrompt::new(
            &p,
            &dialogue,
            PromptStyle::Full,
            &decoding,
            &TurnOptions::default(),
        );
        assert_eq!(greedy.sampling.temperature, 0.0);
    }
}

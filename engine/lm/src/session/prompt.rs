//! What every prompting mode builds its requests from: the plan's prompt text in the
//! counselor's [`PromptStyle`], the dialogue so far, the sampling settings and the token budget.
//!
//! The prompt is laid out so that the drafter's prompt cache carries across turns: the system
//! message holds only what is the same for the whole run (the persona, and in full prompts the
//! diagnostic and safety guidelines), then the dialogue exactly as before, and the turn's plan
//! guidance (case formulation, reply constraints, crisis protocol, steps) as a second system
//! message just before the latest client message. Turn n+1 then shares with turn n everything
//! up to turn n's guidance, and prefills only the last exchange and the new guidance. The chat
//! templates of SmolLM2, Qwen2.5 and Qwen3 render a later system message in place
//! (`tests/session_prompt.rs` checks it on the shipped templates).

use psy_core::dialogue::{Dialogue, Role};
use psy_core::manifest::DecodingSection;
use psy_core::planner::{Constraints, Plan};
use psy_core::reply_rules::draft_word_limit;

use crate::runtime::chat_template::ChatMessage;
use crate::runtime::SamplingConfig;

use super::formulation::compact_formulation;
use super::{DraftRequest, TurnOptions};

/// How much of the plan's prompt text goes to the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PromptStyle {
    /// The plan's full system prompt and reasoning outline (thousands of tokens).
    Full,
    /// Persona, case formulation, reply constraints and crisis protocol, and one line per
    /// reasoning step: small CPU models prefill it in seconds instead of minutes.
    /// The general guidelines are left out.
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
            reply: cap.min(draft_word_limit(c).map_or(cap, |w| w * 4 / 3 + 16)),
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
    /// The part of the plan's system prompt that is the same for every turn of the run: the
    /// first message, so that its keys and values are reused turn after turn.
    pub system: String,
    /// The part that is this turn's (case formulation, reply constraints, crisis protocol...),
    /// in the counselor's style: placed just before the latest client message.
    pub guidance: String,
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
        let (system, guidance) = split_system(plan, style);
        let outline = match style {
            PromptStyle::Full => plan.prompt.reasoning_outline.clone(),
            PromptStyle::Compact => compact_outline(plan),
        };
        TurnPrompt {
            system,
            guidance,
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

    /// The run's system prompt, the dialogue before the latest client message, `guidance` as
    /// a system message (left out when empty), and the latest client message.
    pub fn messages(&self, guidance: String) -> Vec<ChatMessage> {
        let mut v = vec![ChatMessage::new("system", self.system.clone())];
        let latest = self
            .history
            .iter()
            .rposition(|m| m.role == "user")
            .unwrap_or(self.history.len());
        v.extend(self.history[..latest].iter().cloned());
        if !guidance.is_empty() {
            v.push(ChatMessage::new("system", guidance));
        }
        v.extend(self.history[latest..].iter().cloned());
        v
    }

    /// A request for the reply under `guidance`, stopped by the caller's stop strings.
    pub fn reply_request(&self, guidance: String, max_new_tokens: usize) -> DraftRequest {
        DraftRequest {
            messages: self.messages(guidance),
            max_new_tokens,
            sampling: self.sampling.clone(),
            stop: self.stop.clone(),
            prose: true,
            ..Default::default()
        }
    }
}

/// Headings of the plan's system-prompt paragraphs that are the same for every turn of a run
/// (besides the persona, always the first paragraph): the planner writes them from the run's
/// diagnostic and safety modules, never from the dialogue.
const RUN_PARAGRAPHS: [&str; 2] = ["Diagnostic guidelines", "Safety:"];

/// Headings of the turn's paragraphs that a compact prompt keeps.
const COMPACT_TURN_PARAGRAPHS: [&str; 3] = ["Case formulation", "Reply", "Crisis protocol"];

/// The plan's system prompt split into the run's part and the turn's part. A paragraph not
/// known to be the run's is the turn's, so an unknown paragraph costs cache reuse, never
/// correctness. A compact prompt keeps the persona and the case-specific paragraphs only,
/// with the hypotheses said in the client's terms ([`compact_formulation`]): the turn's part is
/// prefilled again every turn.
fn split_system(plan: &Plan, style: PromptStyle) -> (String, String) {
    let (mut run, mut turn): (Vec<&str>, Vec<String>) = (Vec::new(), Vec::new());
    for (i, p) in plan.prompt.system.split("\n\n").enumerate() {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let heading = |hs: &[&str]| hs.iter().any(|h| p.starts_with(h));
        if i == 0 {
            run.push(p);
        } else if heading(&RUN_PARAGRAPHS) {
            if style == PromptStyle::Full {
                run.push(p);
            }
        } else if style == PromptStyle::Full {
            turn.push(p.to_string());
        } else if heading(&COMPACT_TURN_PARAGRAPHS) {
            turn.push(compact_formulation(p, &plan.hypotheses));
        }
    }
    (run.join("\n\n"), turn.join("\n\n"))
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
    use crate::session::fixtures::{
        plan, turn, CLIENT, COMPACT_GUIDANCE, COMPACT_OUTLINE, RUN_SYSTEM,
    };
    use psy_core::manifest::PromptingMode;

    #[test]
    fn a_compact_prompt_keeps_the_persona_and_the_case_and_one_line_per_step() {
        let p = plan(PromptingMode::Direct);
        assert_eq!(
            split_system(&p, PromptStyle::Compact),
            (RUN_SYSTEM.to_string(), COMPACT_GUIDANCE.to_string())
        );
        assert_eq!(compact_outline(&p), COMPACT_OUTLINE);
        let t = turn(PromptingMode::Direct, 100);
        assert_eq!(
            (t.system.as_str(), t.guidance.as_str(), t.outline.as_str()),
            (RUN_SYSTEM, COMPACT_GUIDANCE, COMPACT_OUTLINE)
        );
    }

    #[test]
    fn the_runs_paragraphs_open_the_prompt_and_the_turns_come_before_the_latest_message() {
        let mut p = plan(PromptingMode::Direct);
        p.prompt.system = "Persona.\n\nDiagnostic guidelines (private):\n- a\n\n\
                           Core ideas of the approach:\n- b\n\nSafety:\n- c\n\n\
                           Case formulation (private):\n- d\n\nReply: short.\n\
                           Crisis protocol (required now):\n- e\n"
            .into();
        assert_eq!(
            split_system(&p, PromptStyle::Full),
            (
                "Persona.\n\nDiagnostic guidelines (private):\n- a\n\nSafety:\n- c".to_string(),
                "Core ideas of the approach:\n- b\n\nCase formulation (private):\n- d\n\n\
                 Reply: short.\nCrisis protocol (required now):\n- e"
                    .to_string()
            )
        );
        assert_eq!(
            split_system(&p, PromptStyle::Compact),
            (
                "Persona.".to_string(),
                "Case formulation (private):\n- d\n\n\
                 Reply: short.\nCrisis protocol (required now):\n- e"
                    .to_string()
            )
        );
        let dialogue = Dialogue::new(vec![
            psy_core::dialogue::Message::user("one"),
            psy_core::dialogue::Message::assistant("two"),
            psy_core::dialogue::Message::user(CLIENT),
        ]);
        let t = TurnPrompt::new(
            &p,
            &dialogue,
            PromptStyle::Compact,
            &DecodingSection::default(),
            &TurnOptions::default(),
        );
        assert_eq!(
            t.messages("G".into()),
            [
                ChatMessage::new("system", "Persona."),
                ChatMessage::new("user", "one"),
                ChatMessage::new("assistant", "two"),
                ChatMessage::new("system", "G"),
                ChatMessage::new("user", CLIENT),
            ]
        );
        // No guidance, no empty message.
        assert_eq!(t.messages(String::new()).len(), 4);
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
        assert_eq!(
            format!("{}\n\n{}", t.system, t.guidance),
            p.prompt.system,
            "the fixture's full prompt has no run paragraph besides the persona"
        );
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

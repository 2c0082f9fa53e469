//! `two-phase`: the reasoning is drafted first, following the plan's steps, then the reply
//! is drafted under it.

use super::{PromptingStrategy, ReasoningTrace, TurnPrompt};
use crate::session::DraftRequest;

pub(crate) struct TwoPhase;

impl PromptingStrategy for TwoPhase {
    fn reasoning_request(&self, turn: &TurnPrompt) -> Option<DraftRequest> {
        let budget = turn.reasoning_words;
        let t = turn.tokens;
        // When reasoning and reply do not both fit the cap, the reasoning gets at most half.
        let max_new_tokens = if t.reasoning + t.reply > t.cap {
            t.reasoning.min(t.cap / 2).max(1)
        } else {
            t.reasoning
        };
        Some(DraftRequest {
            messages: turn.messages(format!(
                "{}\n\n## Reasoning steps\n{}\n\nWrite the counselor's private reasoning for the next reply, \
                 following the steps in order, in at most {budget} words. Do not write the reply itself.",
                turn.guidance, turn.outline
            )),
            max_new_tokens,
            sampling: turn.sampling.clone(),
            ..Default::default()
        })
    }

    fn reply_request(&self, turn: &TurnPrompt, reasoning: &ReasoningTrace) -> DraftRequest {
        let guidance = format!(
            "{}\n\n## Your private reasoning for this reply (never show it to the client)\n{}\n\n\
             Now write only the reply to the client.",
            turn.guidance, reasoning.text
        );
        turn.reply_request(guidance, turn.tokens.reply_after(reasoning.tokens_alone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixtures::{turn, CLIENT};
    use psy_core::manifest::PromptingMode;

    #[test]
    fn the_reasoning_is_asked_for_first_following_the_steps() {
        let t = turn(PromptingMode::TwoPhase, 100);
        let req = TwoPhase.reasoning_request(&t).unwrap();
        assert_eq!(
            req.messages[1].content,
            "Case formulation: poor sleep, work strain.\n\n\
             Reply: at most 20 words.\n\n## Reasoning steps\n\
             1. Feeling (exhausted, worried about work)\n2. Risk (no sign of harm)\n\n\
             Write the counselor's private reasoning for the next reply, following the steps in \
             order, in at most 12 words. Do not write the reply itself."
        );
        assert_eq!(req.messages[0].content, "You are a calm counselor.");
        assert_eq!(req.messages[2].content, CLIENT);
        // 12 words: 12 * 4 / 3 + 16 tokens; the stop strings end only the reply.
        assert_eq!(req.max_new_tokens, 32);
        assert!(req.stop.is_empty());
    }

    #[test]
    fn a_tight_cap_gives_the_reasoning_at_most_half_and_the_reply_the_rest() {
        let t = turn(PromptingMode::TwoPhase, 50);
        assert_eq!(TwoPhase.reasoning_request(&t).unwrap().max_new_tokens, 25);
        let reasoning = ReasoningTrace {
            text: "Tired; reflect it.".into(),
            budget: 12,
            tokens_alone: 30,
        };
        let req = TwoPhase.reply_request(&t, &reasoning);
        assert_eq!(req.max_new_tokens, 20);
        assert_eq!(
            req.messages[1].content,
            "Case formulation: poor sleep, work strain.\n\n\
             Reply: at most 20 words.\n\n\
             ## Your private reasoning for this reply (never show it to the client)\n\
             Tired; reflect it.\n\nNow write only the reply to the client."
        );
        assert_eq!(req.stop, ["STOP"]);
    }
}

//! `direct`: no reasoning trace; the reply is drafted straight from the plan's guidance.

use super::{PromptingStrategy, ReasoningTrace, TurnPrompt};
use crate::session::DraftRequest;

pub(crate) struct Direct;

impl PromptingStrategy for Direct {
    fn reply_request(&self, turn: &TurnPrompt, _: &ReasoningTrace) -> DraftRequest {
        turn.reply_request(turn.guidance.clone(), turn.tokens.reply_after(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::chat_template::ChatMessage;
    use crate::session::fixtures::{turn, CLIENT, COMPACT_GUIDANCE, RUN_SYSTEM};
    use psy_core::manifest::PromptingMode;

    #[test]
    fn the_reply_is_asked_for_under_the_plans_guidance() {
        let t = turn(PromptingMode::Direct, 100);
        let req = Direct.reply_request(&t, &ReasoningTrace::new(12));
        assert_eq!(
            req.messages,
            [
                ChatMessage::new("system", RUN_SYSTEM),
                ChatMessage::new("system", COMPACT_GUIDANCE),
                ChatMessage::new("user", CLIENT)
            ]
        );
        // 20 words: 20 * 4 / 3 + 16 tokens.
        assert_eq!(req.max_new_tokens, 42);
        assert_eq!(req.assistant_prefix, "");
        assert!(!req.thinking);
        assert_eq!(req.stop, ["STOP"]);
        assert!(req.prose, "the reply alone: list markers banned");
        assert!(Direct.reasoning_request(&t).is_none());
    }
}

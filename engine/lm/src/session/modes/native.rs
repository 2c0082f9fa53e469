//! `native`: a model trained on traces opens `<think>` itself; what it writes there is the
//! reasoning, held to its budget, and the rest is the reply.

use super::{AfterDraft, PromptingStrategy, ReasoningTrace, Routed, TurnPrompt, TurnRecord};
use crate::session::repair;
use crate::session::{DraftEvent, DraftRequest, OnDelta, Result};

pub(crate) struct Native;

impl PromptingStrategy for Native {
    fn reply_request(&self, turn: &TurnPrompt, _: &ReasoningTrace) -> DraftRequest {
        DraftRequest {
            thinking: true,
            // Its reasoning comes first in the same generation.
            prose: false,
            ..turn.reply_request(turn.guidance.clone(), turn.tokens.reasoning_and_reply())
        }
    }

    fn read<'a>(
        &'a mut self,
        ev: DraftEvent<'a>,
        reasoning: &mut ReasoningTrace,
        on_delta: &mut OnDelta,
    ) -> Routed<'a> {
        if !ev.in_think {
            return Routed::Content(ev.delta);
        }
        if reasoning.full() {
            return Routed::ReasoningFull;
        }
        if reasoning.stream(ev.delta, on_delta).is_break() {
            return Routed::Cancelled;
        }
        Routed::Held
    }

    /// Thinking that ran past its budget is closed, and the model answers after it.
    fn after_draft(
        &mut self,
        reasoning_full: bool,
        record: &mut TurnRecord,
        req: &mut DraftRequest,
        _: &mut OnDelta,
    ) -> Result<AfterDraft> {
        if !reasoning_full {
            return Ok(AfterDraft::Keep);
        }
        repair::reasoning_cut(record, "closed");
        req.assistant_prefix = format!("<think>\n{}\n</think>\n\n", record.reasoning.text.trim());
        Ok(AfterDraft::DraftReply)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::*;
    use crate::session::fixtures::{turn, COMPACT_GUIDANCE, RUN_SYSTEM};
    use crate::session::Delta;
    use psy_core::manifest::PromptingMode;

    fn event(delta: &str, in_think: bool) -> DraftEvent<'_> {
        DraftEvent { delta, in_think }
    }

    #[test]
    fn the_model_thinks_and_answers_in_one_draft() {
        let req = Native.reply_request(&turn(PromptingMode::Native, 60), &ReasoningTrace::new(12));
        assert!(req.thinking);
        assert_eq!(req.messages[0].content, RUN_SYSTEM);
        assert_eq!(req.messages[1].content, COMPACT_GUIDANCE);
        // Reasoning (32) and reply (42) share one draft, within the cap.
        assert_eq!(req.max_new_tokens, 60);
    }

    #[test]
    fn thinking_streams_as_reasoning_and_the_rest_as_content() {
        let mut trace = ReasoningTrace::new(2);
        let mut seen = Vec::new();
        let mut on = |d: Delta| {
            seen.push(format!("{d:?}"));
            ControlFlow::Continue(())
        };
        let mut n = Native;
        assert_eq!(
            n.read(event("Tired ", true), &mut trace, &mut on),
            Routed::Held
        );
        assert_eq!(
            n.read(event("Hi.", false), &mut trace, &mut on),
            Routed::Content("Hi.")
        );
        assert_eq!(
            n.read(event("worried ", true), &mut trace, &mut on),
            Routed::Held
        );
        // Two words reached: the next thought stops the draft.
        assert_eq!(
            n.read(event("more ", true), &mut trace, &mut on),
            Routed::ReasoningFull
        );
        assert_eq!(seen, ["Reasoning(\"Tired \")", "Reasoning(\"worried \")"]);
        assert_eq!(trace.text, "Tired worried ");
    }

    #[test]
    fn thinking_past_its_budget_is_closed_and_the_reply_drafted_after_it() {
        let mut record = TurnRecord::new(2);
        record.reasoning.text = " Tired worried ".into();
        let mut req = DraftRequest::default();
        let mut on = |_: Delta| ControlFlow::Continue(());
        let next = Native
            .after_draft(false, &mut record, &mut req, &mut on)
            .unwrap();
        assert_eq!(
            (next, req.assistant_prefix.as_str()),
            (AfterDraft::Keep, "")
        );
        let next = Native
            .after_draft(true, &mut record, &mut req, &mut on)
            .unwrap();
        assert_eq!(next, AfterDraft::DraftReply);
        assert_eq!(req.assistant_prefix, "<think>\nTired worried\n</think>\n\n");
        assert_eq!(record.violations[0].detail, "reasoning ran past 2 words");
        assert_eq!(record.repairs[0].detail, "closed the reasoning at 2 words");
    }
}

//! `icl`: the plan's steps and one worked example are put in the prompt, and the model
//! answers "Reasoning: ... Reply: ..." in one generation; the text before the reply marker is
//! the reasoning.

use super::{AfterDraft, PromptingStrategy, ReasoningTrace, Routed, TurnPrompt, TurnRecord};
use crate::session::repair;
use crate::session::{DraftEvent, DraftRequest, OnDelta, Result, SessionError};
use psy_core::reply_rules::Repair;

/// What the answer starts with (written for the model), and the marker of its reply.
const ANSWER_START: &str = "Reasoning:";
const REPLY_MARKER: &str = "Reply:";

/// One worked example: a client message, reasoning that follows the step order, and a reply
/// that keeps the rules.
const WORKED_EXAMPLE: &str = "Client: Work has been piling up and I snap at my kids every evening. I hate who I'm becoming.\n\
Reasoning: Feeling: overwhelmed and ashamed, moderate intensity. Risk: no sign of harm. Pattern: harsh self-judgement (\"I hate who I'm becoming\"). \
Approach: reflect the strain and the care behind the shame, then invite one small, concrete look at the evening routine. Keep it short and plain.\n\
Reply: It sounds like you're carrying a lot, and the fact that snapping at your kids hurts this much shows how much you care about them. \
Evenings seem to be where the pressure spills over. What usually happens in the hour before it does?";

/// Reads the first draft up to the reply marker; later drafts start after it.
pub(crate) struct Icl {
    /// The reply marker has not been read yet.
    open: bool,
    /// The first draft's text while the marker is awaited.
    buf: String,
    /// Bytes of `buf` already streamed as reasoning.
    sent: usize,
}

impl Default for Icl {
    fn default() -> Self {
        Icl {
            open: true,
            buf: String::new(),
            sent: 0,
        }
    }
}

impl PromptingStrategy for Icl {
    fn reply_request(&self, turn: &TurnPrompt, _: &ReasoningTrace) -> DraftRequest {
        let guidance = format!(
            "{}\n\n## Reasoning steps\n{}\n\n## Worked example\n{}\n\n\
             Answer in the example's form: after \"Reasoning:\" your private reasoning, following \
             the steps in order, in at most {} words; then \"{REPLY_MARKER}\" and only the reply to \
             the client.",
            turn.guidance, turn.outline, WORKED_EXAMPLE, turn.reasoning_words
        );
        DraftRequest {
            // The answer is started for the model.
            assistant_prefix: ANSWER_START.into(),
            // Its reasoning comes first in the same generation, in numbered steps.
            prose: false,
            ..turn.reply_request(guidance, turn.tokens.reasoning_and_reply())
        }
    }

    fn read<'a>(
        &'a mut self,
        ev: DraftEvent<'a>,
        reasoning: &mut ReasoningTrace,
        on_delta: &mut OnDelta,
    ) -> Routed<'a> {
        if !self.open {
            return Routed::Content(ev.delta);
        }
        self.buf.push_str(ev.delta);
        let marker = self.buf.find(REPLY_MARKER);
        // Stream the reasoning, holding back what could be the start of the marker.
        let mut end = marker.unwrap_or(self.buf.len().saturating_sub(REPLY_MARKER.len()));
        while !self.buf.is_char_boundary(end) {
            end -= 1;
        }
        if end > self.sent {
            if reasoning
                .stream(&self.buf[self.sent..end], on_delta)
                .is_break()
            {
                return Routed::Cancelled;
            }
            self.sent = end;
        }
        let Some(p) = marker else {
            return if reasoning.full() {
                Routed::ReasoningFull
            } else {
                Routed::Held
            };
        };
        self.open = false;
        match self.buf[p + REPLY_MARKER.len()..].trim_start() {
            "" => Routed::Held,
            text => Routed::Content(text),
        }
    }

    /// A first draft that never reached the marker keeps its text as reasoning and the reply
    /// is asked for after it; every later draft continues after the reasoning and the marker.
    fn after_draft(
        &mut self,
        reasoning_full: bool,
        record: &mut TurnRecord,
        req: &mut DraftRequest,
        on_delta: &mut OnDelta,
    ) -> Result<AfterDraft> {
        let mut redraft = reasoning_full;
        if self.open {
            // Flush the held-back tail: no marker came.
            if self.buf.len() > self.sent
                && record
                    .reasoning
                    .stream(&self.buf[self.sent..], on_delta)
                    .is_break()
            {
                return Err(SessionError::Cancelled);
            }
            if !reasoning_full {
                record.repairs.push(Repair {
                    rule: "icl-format".into(),
                    action: "regenerate".into(),
                    detail: format!(
                        "the draft never wrote \"{REPLY_MARKER}\"; asked for the reply"
                    ),
                });
                redraft = true;
            }
            self.open = false;
        }
        req.assistant_prefix = format!(
            "{ANSWER_START} {}\n{REPLY_MARKER} ",
            record.reasoning.text.trim()
        );
        if !redraft {
            return Ok(AfterDraft::Keep);
        }
        // Only reasoning that reached its budget broke a rule; a missing marker did not.
        if record.reasoning.full() {
            repair::reasoning_cut(record, "closed");
        }
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

    /// Reads `deltas` as one draft; returns what each was routed to and the streamed deltas.
    fn read_all(
        icl: &mut Icl,
        trace: &mut ReasoningTrace,
        deltas: &[&str],
    ) -> (Vec<String>, Vec<String>) {
        let mut seen = Vec::new();
        let mut on = |d: Delta| {
            seen.push(format!("{d:?}"));
            ControlFlow::Continue(())
        };
        let routed = deltas
            .iter()
            .map(|d| {
                format!(
                    "{:?}",
                    icl.read(
                        DraftEvent {
                            delta: d,
                            in_think: false
                        },
                        trace,
                        &mut on
                    )
                )
            })
            .collect();
        (routed, seen)
    }

    #[test]
    fn the_prompt_carries_the_steps_and_a_worked_example_and_the_answer_is_started() {
        let req =
            Icl::default().reply_request(&turn(PromptingMode::Icl, 100), &ReasoningTrace::new(12));
        assert_eq!(req.messages[0].content, RUN_SYSTEM);
        let system = &req.messages[1].content;
        assert!(system.starts_with(&format!(
            "{COMPACT_GUIDANCE}\n\n## Reasoning steps\n1. Feeling (exhausted, worried about work)\n\
             2. Risk (no sign of harm)\n\n## Worked example\nClient: Work has been piling up"
        )));
        assert!(system.ends_with(
            "What usually happens in the hour before it does?\n\nAnswer in the example's form: \
             after \"Reasoning:\" your private reasoning, following the steps in order, in at most \
             12 words; then \"Reply:\" and only the reply to the client."
        ));
        assert_eq!(req.assistant_prefix, "Reasoning:");
        // Reasoning (32) and reply (42) share one draft.
        assert_eq!(req.max_new_tokens, 74);
    }

    #[test]
    fn text_before_the_reply_marker_streams_as_reasoning_even_when_the_marker_is_split() {
        let mut icl = Icl::default();
        let mut trace = ReasoningTrace::new(12);
        let (routed, seen) = read_all(
            &mut icl,
            &mut trace,
            &["Feeling: ", "tired. Rep", "ly: That", " sounds hard."],
        );
        assert_eq!(
            routed,
            [
                "Held",
                "Held",
                "Content(\"That\")",
                "Content(\" sounds hard.\")"
            ]
        );
        // What could start the marker is held back until it is known not to.
        assert_eq!(
            seen,
            [
                "Reasoning(\"Fee\")",
                "Reasoning(\"ling: tire\")",
                "Reasoning(\"d. \")"
            ]
        );
        assert_eq!(trace.text, "Feeling: tired. ");
        let mut record = TurnRecord::new(12);
        record.reasoning = trace;
        let mut req = DraftRequest::default();
        let next = icl
            .after_draft(false, &mut record, &mut req, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(next, AfterDraft::Keep);
        assert_eq!(req.assistant_prefix, "Reasoning: Feeling: tired.\nReply: ");
        assert!(record.repairs.is_empty());
    }

    #[test]
    fn a_draft_without_the_marker_keeps_its_reasoning_and_the_reply_is_asked_for() {
        let mut icl = Icl::default();
        let mut record = TurnRecord::new(12);
        let (routed, _) = read_all(&mut icl, &mut record.reasoning, &["Feeling: tired."]);
        assert_eq!(routed, ["Held"]);
        let mut req = DraftRequest::default();
        let mut seen = Vec::new();
        let next = icl
            .after_draft(false, &mut record, &mut req, &mut |d| {
                seen.push(format!("{d:?}"));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(next, AfterDraft::DraftReply);
        assert_eq!(seen, ["Reasoning(\"tired.\")"]);
        assert_eq!(req.assistant_prefix, "Reasoning: Feeling: tired.\nReply: ");
        assert_eq!(record.repairs[0].rule, "icl-format");
        assert!(
            record.violations.is_empty(),
            "a missing marker breaks no rule"
        );
        // Later drafts are all reply.
        let (routed, _) = read_all(&mut icl, &mut record.reasoning, &["Hi."]);
        assert_eq!(routed, ["Content(\"Hi.\")"]);
    }

    #[test]
    fn reasoning_past_its_budget_stops_the_draft_and_is_closed() {
        let mut icl = Icl::default();
        let mut record = TurnRecord::new(2);
        let (routed, _) = read_all(
            &mut icl,
            &mut record.reasoning,
            &["Feeling: tired and more. "],
        );
        assert_eq!(routed, ["ReasoningFull"]);
        let mut req = DraftRequest::default();
        let next = icl
            .after_draft(true, &mut record, &mut req, &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(next, AfterDraft::DraftReply);
        assert_eq!(record.reasoning.text, "Feeling: tired and more. ");
        assert_eq!(
            req.assistant_prefix,
            "Reasoning: Feeling: tired and more.\nReply: "
        );
        let rules: Vec<&str> = record.repairs.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["reasoning-budget"]);
    }
}

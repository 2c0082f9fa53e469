//! The hidden reasoning of a turn: streamed to the caller as reasoning, held to its word budget.

use std::ops::ControlFlow;

use psy_core::reply_rules::word_count;

use super::record::TurnRecord;
use super::repair;
use super::{Delta, DraftRequest, Drafter, OnDelta, Result, SessionError, TurnOptions};

/// The reasoning written so far in a turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ReasoningTrace {
    pub text: String,
    /// Word budget (the plan's `reasoning_max_words`).
    pub budget: usize,
    /// Tokens spent on reasoning drafted on its own, before the reply: the reply's cap
    /// leaves room for them.
    pub tokens_alone: usize,
}

impl ReasoningTrace {
    pub fn new(budget: usize) -> ReasoningTrace {
        ReasoningTrace {
            budget,
            ..Default::default()
        }
    }

    /// The budget is spent: no more reasoning may be taken.
    pub fn full(&self) -> bool {
        word_count(&self.text) >= self.budget
    }

    /// Records `piece` and streams it as reasoning; `Break` when the caller cancels.
    pub fn stream(&mut self, piece: &str, on_delta: &mut OnDelta) -> ControlFlow<()> {
        self.text.push_str(piece);
        on_delta(Delta::Reasoning(piece))
    }
}

/// Drafts the reasoning on its own, before the reply (`two-phase`): every token streams as
/// reasoning, and the draft stops once the budget is spent.
pub(crate) fn draft_alone(
    drafter: &mut dyn Drafter,
    req: &DraftRequest,
    record: &mut TurnRecord,
    opts: &TurnOptions,
    on_delta: &mut OnDelta,
) -> Result<()> {
    let (mut over, mut cancelled) = (false, false);
    let trace = &mut record.reasoning;
    let draft = drafter.draft(req, &mut |ev| {
        if opts.cancelled() {
            cancelled = true;
            return ControlFlow::Break(());
        }
        if trace.full() {
            over = true;
            return ControlFlow::Break(());
        }
        if trace.stream(ev.delta, on_delta).is_break() {
            cancelled = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if cancelled {
        return Err(SessionError::Cancelled);
    }
    if over {
        repair::reasoning_cut(record, "stopped");
    }
    record.reasoning.text = record.reasoning.text.trim().to_string();
    record.count(&draft);
    record.reasoning.tokens_alone = draft.completion_tokens;
    Ok(())
}

//! The hidden reasoning of a turn: streamed to the caller as reasoning, held to its word budget.

use std::ops::ControlFlow;

use super::record::TurnRecord;
use super::repair;
use super::{DraftRequest, Drafter, OnDelta, Result, SessionError, TurnOptions};

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

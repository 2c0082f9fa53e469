//! Prompting modes: how a plan becomes the reply's prompt, and how the reply's stream is read.
//!
//! Each mode of the manifest's `[prompting] mode` is a small type behind
//! [`PromptingStrategy`], one file each; [`strategy_for`] is the single list that maps a
//! manifest mode to its type, so adding a mode is one new file here and one line there (see
//! the example in the `session` module docs).
//!
//! Everything else (the guard, the repairs, the transcript) is shared by every mode.

mod direct;
mod icl;
mod native;
mod two_phase;

use psy_core::manifest::PromptingMode;

use super::prompt::TurnPrompt;
use super::record::TurnRecord;
use super::trace::ReasoningTrace;
use super::{DraftEvent, DraftRequest, OnDelta, Result};

/// The one list from a manifest's prompting mode to the type that implements it.
pub(crate) fn strategy_for(mode: PromptingMode) -> Box<dyn PromptingStrategy> {
    match mode {
        PromptingMode::Direct => Box::new(direct::Direct),
        PromptingMode::Icl => Box::new(icl::Icl::default()),
        PromptingMode::TwoPhase => Box::new(two_phase::TwoPhase),
        PromptingMode::Native => Box::new(native::Native),
    }
}

/// One prompting mode. A fresh value serves each turn, so a mode may keep what it has read
/// of the stream. Only [`reply_request`](Self::reply_request) is required; the defaults
/// draft no reasoning apart, treat every streamed token as reply, and never redraft.
pub(crate) trait PromptingStrategy {
    /// A request for reasoning drafted on its own before the reply, if the mode wants one.
    fn reasoning_request(&self, _turn: &TurnPrompt) -> Option<DraftRequest> {
        None
    }

    /// The first request for the reply; `reasoning` holds what was drafted before it.
    fn reply_request(&self, turn: &TurnPrompt, reasoning: &ReasoningTrace) -> DraftRequest;

    /// Sorts one streamed event of a reply draft: reasoning is recorded and streamed here,
    /// text for the client is handed back for the guard.
    fn read<'a>(
        &'a mut self,
        ev: DraftEvent<'a>,
        _reasoning: &mut ReasoningTrace,
        _on_delta: &mut OnDelta,
    ) -> Routed<'a> {
        Routed::Content(ev.delta)
    }

    /// Runs after each reply draft that was not cancelled (`reasoning_full`: the draft was
    /// stopped at the reasoning budget): closes what the draft left open, possibly by
    /// changing the request so that the reply is drafted again.
    fn after_draft(
        &mut self,
        _reasoning_full: bool,
        _record: &mut TurnRecord,
        _req: &mut DraftRequest,
        _on_delta: &mut OnDelta,
    ) -> Result<AfterDraft> {
        Ok(AfterDraft::Keep)
    }
}

/// What a mode made of one streamed event of a reply draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routed<'a> {
    /// Text for the client (the guard decides what of it is emitted).
    Content(&'a str),
    /// Taken as reasoning, or held back: draft on.
    Held,
    /// The reasoning's budget is spent: stop this draft.
    ReasoningFull,
    /// The caller cancelled while reasoning streamed.
    Cancelled,
}

/// What follows a reply draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterDraft {
    /// Go on with the draft's repairs.
    Keep,
    /// The reasoning was closed in the request: draft the reply again after it.
    DraftReply,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixtures::turn;

    #[test]
    fn every_manifest_mode_maps_to_its_own_strategy() {
        let trace = ReasoningTrace::new(12);
        let shape = |mode| {
            let t = turn(mode, 100);
            let s = strategy_for(mode);
            let req = s.reply_request(&t, &trace);
            (
                s.reasoning_request(&t).is_some(),
                req.thinking,
                req.assistant_prefix,
                req.max_new_tokens,
            )
        };
        assert_eq!(
            shape(PromptingMode::Direct),
            (false, false, String::new(), 42)
        );
        assert_eq!(
            shape(PromptingMode::Icl),
            (false, false, "Reasoning:".into(), 74)
        );
        assert_eq!(
            shape(PromptingMode::TwoPhase),
            (true, false, String::new(), 42)
        );
        assert_eq!(
            shape(PromptingMode::Native),
            (false, true, String::new(), 74)
        );
    }
}

//! The reasoning written so far in a turn: data shared by the record, the repair policy and the
//! reasoning stage (its own file so that none of them imports another to reach it).

use std::ops::ControlFlow;

use psy_core::reply_rules::word_count;

use super::{Delta, OnDelta};

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

//! What a turn has produced besides the reply, gathered stage by stage for the transcript.

use psy_core::reply_rules::{Repair, Violation};

use crate::runtime::FinishReason;

use super::trace::ReasoningTrace;
use super::Draft;

/// The reasoning, the rules broken and their repairs, and the token counts of a turn so far.
#[derive(Clone, Debug, Default)]
pub(crate) struct TurnRecord {
    pub reasoning: ReasoningTrace,
    pub violations: Vec<Violation>,
    pub repairs: Vec<Repair>,
    pub prompt_tokens: usize,
    pub prompt_tokens_cached: usize,
    pub completion_tokens: usize,
    /// The fastest decode of the turn's drafts.
    pub decode_tokens_per_second: f64,
    /// Prefill and decode wall-clock summed over the turn's drafts.
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Drafts asked of the model (reasoning, reply and every redraft).
    pub drafts: usize,
    /// How the last reply draft ended.
    pub finish: Option<FinishReason>,
}

impl TurnRecord {
    pub fn new(reasoning_budget: usize) -> TurnRecord {
        TurnRecord {
            reasoning: ReasoningTrace::new(reasoning_budget),
            ..Default::default()
        }
    }

    /// Adds a draft's token counts and speed.
    pub fn count(&mut self, draft: &Draft) {
        self.prompt_tokens += draft.prompt_tokens;
        self.prompt_tokens_cached += draft.prompt_tokens_cached;
        self.completion_tokens += draft.completion_tokens;
        self.prefill_ms += draft.prefill_ms;
        self.decode_ms += draft.decode_ms;
        self.drafts += 1;
        self.decode_tokens_per_second = f64::max(
            self.decode_tokens_per_second,
            draft.decode_tokens_per_second,
        );
    }

    /// Records a broken rule and how it was repaired.
    pub fn repaired(&mut self, violation: Violation, repair: Repair) {
        self.violations.push(violation);
        self.repairs.push(repair);
    }
}

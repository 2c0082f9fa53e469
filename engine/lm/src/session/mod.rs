//! Counseling sessions: every reply is decoded from a reasoning [`Plan`](psy_core::planner::Plan).
//!
//! A turn is a short pipeline of small stages, composed by [`Counselor::respond`]:
//!
//! 1. **plan**: the planner reads the dialogue;
//! 2. **prompt for the mode**: the manifest's prompting mode (`direct`, `icl`, `two-phase`,
//!    `native`) turns the plan into draft requests and reads the reply's stream, keeping
//!    reasoning and content apart (`modes/`, one file per mode, one list that maps a
//!    manifest mode to its type);
//! 3. **stream with the guard**: the client-facing reply is held to the plan's constraints
//!    *while* it streams (`guard`): a sentence naming a forbidden label is never emitted, and
//!    the reply stops at its word budget;
//! 4. **repair**: the first draft that names a label is continued with a stronger instruction
//!    and those labels' tokens banned, reasoning past its budget is closed, a missing crisis
//!    protocol is appended (`repair`); at high risk and above the draft is held back whole and
//!    kept only if it passes the crisis checks, else the reply is the protocol alone
//!    (`crisis_draft`);
//! 5. **record**: what streamed is what the transcript records (`transcript`).
//!
//! Adding a prompting mode is one new file in `modes/` and one line in its list:
//!
//! ```rust,ignore
//! // modes/socratic.rs
//! pub(crate) struct Socratic;
//!
//! impl PromptingStrategy for Socratic {
//!     fn reply_request(&self, turn: &TurnPrompt, _: &ReasoningTrace) -> DraftRequest {
//!         let system = format!("{}\n\nEnd the reply with one open question.", turn.system);
//!         turn.reply_request(system, turn.tokens.reply_after(0))
//!     }
//! }
//!
//! // modes/mod.rs, `strategy_for`, the one list from manifest mode to type:
//! PromptingMode::Socratic => Box::new(socratic::Socratic),
//! ```
//!
//! (`PromptingMode::Socratic` is the name the manifest parses, in `psy_core::manifest`.)
//!
//! The model sits behind the small [`Drafter`] seam so that tests can inject drafts that break
//! the rules on purpose.

mod conversation;
mod counselor;
mod crisis_draft;
mod draft_decode;
mod drafter;
mod engine_drafter;
mod error;
mod formulation;
mod guard;
mod model_drafter;
mod modes;
mod prompt;
mod reasoning;
mod record;
mod repair;
mod trace;
mod transcript;
mod turn;

#[cfg(test)]
mod fixtures;

pub use conversation::Session;
pub use counselor::Counselor;
pub use crisis_draft::{check_crisis_draft, complete_part, crisis_reply, CrisisReply, DraftFault};
pub use drafter::{Draft, DraftEvent, DraftRequest, Drafter, PROSE_BANS};
pub use engine_drafter::EngineDrafter;
pub use error::{Result, SessionError};
pub use model_drafter::ModelDrafter;
pub use prompt::{sampling_of, PromptStyle};
pub use transcript::{
    format_turn, plan_summary_text, read_script, read_transcript, write_transcript, TranscriptTurn,
    TurnTimings,
};
pub use turn::{CancelCheck, Delta, TurnOptions};

pub(crate) use turn::OnDelta;

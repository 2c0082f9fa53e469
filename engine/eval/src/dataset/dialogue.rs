//! The one shape every eval-set format is read into: a dialogue of system / client / counselor
//! turns, where a counselor turn may carry its reasoning trace apart from the reply.

use serde::{Deserialize, Serialize};

use super::error::LineProblem;

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt (at most one, first).
    System,
    /// The person seeking help (`user`, `human`, `patient` in the source formats).
    Client,
    /// The reference counselor (`assistant`, `gpt`, `counselor_content`).
    Counselor,
}

impl Role {
    /// Lower-case name, as in error messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Client => "client",
            Role::Counselor => "counselor",
        }
    }
}

/// One turn. For a counselor turn, `content` is the reply the client sees and `reasoning` the
/// reference trace (from `<think>...</think>`, `reasoning_content` or `counselor_think`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl Turn {
    /// A turn without a trace.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Turn {
            role,
            content: content.into(),
            reasoning: None,
        }
    }

    /// A counselor turn from a source text that may hold `<think>R</think>` before the reply;
    /// an explicit `reasoning` (a separate field) wins over an inline trace.
    pub fn counselor(text: &str, reasoning: Option<&str>) -> Self {
        let (inline, reply) = split_inline_trace(text);
        let reasoning = reasoning
            .map(|r| r.trim_matches('\n').to_string())
            .filter(|r| !r.trim().is_empty())
            .or(inline.filter(|r| !r.trim().is_empty()));
        Turn {
            role: Role::Counselor,
            content: reply,
            reasoning,
        }
    }
}

/// One dialogue of an eval set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalDialogue {
    /// The record's own id (`post_id`, `id`), else `<file name>:<line>`.
    pub id: String,
    /// `path:line` the record starts on.
    pub origin: String,
    pub turns: Vec<Turn>,
}

/// Splits `<think>R</think>U` into `(Some(R), U)`; text without `</think>` is returned
/// unchanged. The training reader (psy-lm) uses this function too.
pub fn split_inline_trace(text: &str) -> (Option<String>, String) {
    match text.split_once("</think>") {
        Some((head, tail)) => {
            let r = head.split_once("<think>").map_or(head, |(_, r)| r);
            (
                Some(r.trim_matches('\n').to_string()),
                tail.trim_start_matches('\n').to_string(),
            )
        }
        None => (None, text.to_string()),
    }
}

/// Checks the shape every protocol relies on: at most one system turn and only first, no empty
/// content, at least one client turn. Turn numbers in errors count from 1.
pub fn check_turns(turns: &[Turn]) -> Result<(), LineProblem> {
    let mut system: Option<usize> = None;
    for (i, t) in turns.iter().enumerate() {
        let n = i + 1;
        if t.role == Role::System {
            if let Some(first) = system {
                return Err(LineProblem::TwoSystemTurns { first, second: n });
            }
            if i > 0 {
                return Err(LineProblem::LateSystemTurn { turn: n });
            }
            system = Some(n);
        }
        if t.content.trim().is_empty() {
            return Err(LineProblem::EmptyContent {
                turn: n,
                role: t.role.as_str(),
            });
        }
    }
    if !turns.iter().any(|t| t.role == Role::Client) {
        return Err(LineProblem::NoClientTurn);
    }
    Ok(())
}

//! Transcripts: what a turn records, written and read as JSONL, and shown in the terminal;
//! and the client scripts a session can be run from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use psy_core::manifest::PromptingMode;
use psy_core::module::RiskLevel;
use psy_core::planner::Plan;
use psy_core::reply_rules::{Repair, Violation};

use super::{Result, SessionError};

/// Wall-clock and token counts of one turn.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TurnTimings {
    pub plan_ms: f64,
    pub reasoning_ms: f64,
    pub reply_ms: f64,
    pub total_ms: f64,
    pub prompt_tokens: usize,
    /// Of `prompt_tokens`, those whose keys and values came from the prompt cache (a
    /// previous draft or turn) instead of being prefilled again.
    #[serde(default)]
    pub prompt_tokens_cached: usize,
    pub completion_tokens: usize,
    pub decode_tokens_per_second: f64,
    /// Wall-clock of the prefills and of the decode steps, summed over the turn's drafts:
    /// with `plan_ms` and `guard_ms` they account for the turn (the rest is rendering,
    /// tokenizing and the guard's sentence checks while decoding).
    #[serde(default)]
    pub prefill_ms: f64,
    #[serde(default)]
    pub decode_ms: f64,
    /// Drafts asked of the model: 1 for a `direct` turn whose first draft stands; more for
    /// the reasoning phase and each redraft after a repair.
    #[serde(default)]
    pub drafts: usize,
    /// Time in the guard and repairs after drafting (the crisis checks, completing the reply).
    #[serde(default)]
    pub guard_ms: f64,
}

/// One answered client message: what the transcript records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TranscriptTurn {
    pub turn: usize,
    pub user: String,
    /// The client-facing reply, after every repair.
    pub reply: String,
    pub reasoning: String,
    pub risk_level: RiskLevel,
    pub mode: PromptingMode,
    pub plan: Plan,
    pub violations: Vec<Violation>,
    pub repairs: Vec<Repair>,
    pub timings: TurnTimings,
    /// OpenAI's `finish_reason`: `length` when the token cap cut the reply, else `stop`.
    #[serde(default = "stop_reason")]
    pub finish_reason: String,
}

fn stop_reason() -> String {
    "stop".into()
}

/// Writes turns as JSONL.
pub fn write_transcript(path: &Path, turns: &[TranscriptTurn]) -> Result<()> {
    let mut out = String::new();
    for t in turns {
        out.push_str(&serde_json::to_string(t).expect("transcript turns serialise"));
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSONL transcript written by [`write_transcript`].
pub fn read_transcript(path: &Path) -> Result<Vec<TranscriptTurn>> {
    let text = std::fs::read_to_string(path).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| SessionError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg: e.to_string(),
            })
        })
        .collect()
}

/// Client messages of a script: one a line (blank lines and `#` comments skipped), or JSONL
/// of `{"content": ...}` when every line is a JSON object.
pub fn read_script(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let jsonl = !lines.is_empty() && lines.iter().all(|(_, l)| l.starts_with('{'));
    lines
        .into_iter()
        .map(|(n, l)| {
            if !jsonl {
                return Ok(l.to_string());
            }
            #[derive(Deserialize)]
            struct Line {
                content: String,
            }
            serde_json::from_str::<Line>(l)
                .map(|x| x.content)
                .map_err(|e| SessionError::Parse {
                    path: path.to_path_buf(),
                    line: n,
                    msg: format!("expected {{\"content\": ...}}: {e}"),
                })
        })
        .collect()
}

/// A turn as the terminal shows it (`--replay`); with `show_plan`, risk, hypotheses,
/// modalities, violations and repairs too.
pub fn format_turn(t: &TranscriptTurn, show_plan: bool) -> String {
    let mut s = format!("client> {}\n", t.user);
    if show_plan {
        s.push_str(&plan_summary_text(&t.plan));
    }
    if !t.reasoning.is_empty() {
        s.push_str(&format!("[reasoning] {}\n", t.reasoning));
    }
    s.push_str(&format!("counselor> {}\n", t.reply));
    for v in &t.violations {
        s.push_str(&format!(
            "  ! violated {} ({}): {}\n",
            v.rule, v.source, v.detail
        ));
    }
    for r in &t.repairs {
        s.push_str(&format!(
            "  + repaired {} by {}: {}\n",
            r.rule, r.action, r.detail
        ));
    }
    s
}

/// Risk, leading hypotheses and chosen modalities, one line each.
pub fn plan_summary_text(p: &Plan) -> String {
    let hyps: Vec<String> = p
        .hypotheses
        .iter()
        .map(|h| format!("{} {:.2}", h.id, h.confidence))
        .collect();
    let mods: Vec<&str> = p
        .modalities
        .iter()
        .filter(|m| m.chosen)
        .map(|m| m.id.as_str())
        .collect();
    format!(
        "  [plan] risk: {}   hypotheses: {}   modalities: {}   mode: {:?}\n",
        p.risk.level.as_str(),
        if hyps.is_empty() {
            "-".into()
        } else {
            hyps.join(", ")
        },
        if mods.is_empty() {
            "-".into()
        } else {
            mods.join(", ")
        },
        p.prompt.mode
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixtures::plan;

    #[test]
    fn a_turn_shows_as_the_terminal_prints_it() {
        let p = plan(PromptingMode::TwoPhase);
        let t = TranscriptTurn {
            turn: 0,
            user: "I can't sleep.".into(),
            reply: "That sounds hard.".into(),
            reasoning: "Tired.".into(),
            risk_level: RiskLevel::None,
            mode: PromptingMode::TwoPhase,
            plan: p,
            violations: vec![Violation {
                rule: "word-budget".into(),
                source: "psy".into(),
                detail: "draft ran past 20 words".into(),
            }],
            repairs: vec![Repair {
                rule: "word-budget".into(),
                action: "truncate".into(),
                detail: "stopped at a sentence end, 3 words".into(),
            }],
            timings: TurnTimings::default(),
            finish_reason: "stop".into(),
        };
        assert_eq!(
            format_turn(&t, true),
            "client> I can't sleep.\n\
             \x20 [plan] risk: none   hypotheses: -   modalities: -   mode: TwoPhase\n\
             [reasoning] Tired.\n\
             counselor> That sounds hard.\n\
             \x20 ! violated word-budget (psy): draft ran past 20 words\n\
             \x20 + repaired word-budget by truncate: stopped at a sentence end, 3 words\n"
        );
    }
}

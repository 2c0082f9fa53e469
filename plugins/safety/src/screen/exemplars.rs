//! The screen's labelled training messages (`plugins/safety/screen/exemplars/*.jsonl`): one JSON
//! object a line with `text`, `level`, `category` and `writer`. Read strictly: a bad line is an
//! error naming the file and line, never skipped, because a silently dropped exemplar changes
//! the screen without anyone noticing.

use std::path::Path;

use psy_core::module::RiskLevel;
use serde::Deserialize;

/// Categories an exemplar may carry: the Columbia Suicide Severity Rating Scale's ladder, self-harm,
/// harm to others, hopelessness, the look-alikes a screen must not mistake for a crisis, and
/// ordinary conversation (without it, a screen trained on crises and look-alikes alone reads
/// "thanks for replying" as a crisis).
pub const CATEGORIES: &[&str] = &[
    "wish-dead",
    "ideation-nonspecific",
    "ideation-method",
    "ideation-intent",
    "ideation-plan",
    "preparatory",
    "attempt-aborted",
    "attempt-interrupted",
    "attempt-actual",
    "attempt-ongoing",
    "self-harm",
    "harm-others",
    "hopelessness",
    "idiom-hyperbole",
    "game",
    "fiction",
    "news",
    "grief",
    "medical-question",
    "professional",
    "helper-asking",
    "past-resolved",
    "everyday-distress",
    "ordinary",
];

/// Where the look-alikes begin in [`CATEGORIES`]: everything from idioms on is not a crisis.
const FIRST_LOOKALIKE: usize = 13;

/// Whether `category` is one of the look-alikes (idiom, game, fiction, news, grief, a medical
/// question, work, a helper, a past crisis, everyday distress, ordinary talk).
pub fn is_lookalike(category: &str) -> bool {
    CATEGORIES
        .iter()
        .position(|c| *c == category)
        .is_some_and(|i| i >= FIRST_LOOKALIKE)
}

/// One labelled message, or one labelled session.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The text the screen is trained on: the message, or for a session its last turn read
    /// with the turns before it as the guard reads it ([`context_text`]).
    pub text: String,
    /// A session's client turns, oldest first (empty for a single message).
    pub turns: Vec<String>,
    pub level: RiskLevel,
    pub category: String,
    pub writer: String,
    /// `file:line`, for errors and reports.
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    text: Option<String>,
    /// A session's client turns, oldest first; `level` is the risk after the last one.
    messages: Option<Vec<String>>,
    level: String,
    category: String,
    writer: String,
}

impl Exemplar {
    /// The level the screen is trained to give: the writer's own risk. Someone asking about a
    /// friend is not at risk themselves (the issue lists helpers as negatives); the lexicon's
    /// third-party rules give such messages their own focus and protocol.
    pub fn training_level(&self) -> RiskLevel {
        if self.category == "helper-asking" {
            RiskLevel::None
        } else {
            self.level
        }
    }
}

/// Parses one exemplar file's text; `origin` is its path for errors.
pub fn parse_exemplars(text: &str, origin: &str) -> Result<Vec<Exemplar>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{origin}:{}", i + 1);
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| format!("{at}: {e}"))?;
        let level = RiskLevel::parse(&line.level).ok_or_else(|| {
            format!(
                "{at}: level \"{}\" is not one of none, low, moderate, high, imminent",
                line.level
            )
        })?;
        if !CATEGORIES.contains(&line.category.as_str()) {
            return Err(format!(
                "{at}: category \"{}\" is not one of {}",
                line.category,
                CATEGORIES.join(", ")
            ));
        }
        let (text, turns) = match (line.text, line.messages) {
            (Some(t), None) => (t, Vec::new()),
            (None, Some(m)) if m.len() >= 2 => (context_text(&m), m),
            (None, Some(_)) => {
                return Err(format!(
                    "{at}: a session needs at least two `messages` (one message goes in `text`)"
                ))
            }
            _ => return Err(format!("{at}: give exactly one of `text` and `messages`")),
        };
        if text.trim().is_empty() || turns.iter().any(|t| t.trim().is_empty()) {
            return Err(format!("{at}: an empty message"));
        }
        out.push(Exemplar {
            text,
            turns,
            level,
            category: line.category,
            writer: line.writer,
            origin: at,
        });
    }
    Ok(out)
}

/// A session's last client turn followed by the ones before it, newest first, as the screen
/// reads a turn with its context (`score::CONTEXT_TURNS` earlier turns).
pub fn context_text(turns: &[String]) -> String {
    let Some((last, earlier)) = turns.split_last() else {
        return String::new();
    };
    let mut joined = last.clone();
    for t in earlier.iter().rev().take(super::score::CONTEXT_TURNS) {
        joined.push('\n');
        joined.push_str(t);
    }
    joined
}

/// Reads one exemplar file.
pub fn read_exemplars(path: &Path) -> Result<Vec<Exemplar>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_exemplars(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookalikes_begin_after_hopelessness() {
        assert!(!is_lookalike("hopelessness"));
        assert!(!is_lookalike("harm-others"));
        assert!(is_lookalike("idiom-hyperbole"));
        assert!(is_lookalike("ordinary"));
        assert!(!is_lookalike("not-a-category"));
    }
}

//! Errors reading an eval set: every bad line names its file, line and what is wrong.

use std::path::PathBuf;

/// What is wrong with one line (record) of an eval file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("record has none of `conversation` (psy pipeline), `conversations` (ShareGPT), `messages` (OpenAI)")]
    UnknownFormat,
    #[error("missing field `{0}`")]
    MissingField(String),
    #[error("field `{field}` is not {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("turn {turn}: unknown role `{role}` (expected {expected})")]
    UnknownRole {
        turn: usize,
        role: String,
        expected: &'static str,
    },
    #[error("turn {turn} ({role}) has empty content")]
    EmptyContent { turn: usize, role: &'static str },
    #[error("two system turns (turns {first} and {second})")]
    TwoSystemTurns { first: usize, second: usize },
    #[error("turn {turn}: system turn after the dialogue started")]
    LateSystemTurn { turn: usize },
    #[error("dialogue has no client turn")]
    NoClientTurn,
}

impl LineProblem {
    /// Short kind for counting bad lines by reason.
    pub fn kind(&self) -> &'static str {
        match self {
            LineProblem::NotUtf8 => "not UTF-8",
            LineProblem::NotJson(_) => "not JSON",
            LineProblem::NotObject => "not an object",
            LineProblem::UnknownFormat => "unknown format",
            LineProblem::MissingField(_) => "missing field",
            LineProblem::WrongType { .. } => "wrong type",
            LineProblem::UnknownRole { .. } => "unknown role",
            LineProblem::EmptyContent { .. } => "empty content",
            LineProblem::TwoSystemTurns { .. } => "two system turns",
            LineProblem::LateSystemTurn { .. } => "late system turn",
            LineProblem::NoClientTurn => "no client turn",
        }
    }
}

/// A bad line: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {problem}", path.display())]
pub struct BadLine {
    pub path: PathBuf,
    pub line: usize,
    pub problem: LineProblem,
}

/// Why an eval file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The first bad line, when reading stops at bad lines.
    #[error(transparent)]
    Line(#[from] BadLine),
}

//! The one error type of every TOML file psy reads (run, ablation and module manifests), and
//! the strict parser that gives it line and column. Its own file so that module specs and run
//! manifests both use it without importing each other.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read manifest: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: `{field}`: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
    #[error("{origin}:{line}:{column}: `{field}`: {message}")]
    InvalidAt {
        origin: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    #[error("`extends` forms a cycle: {}", chain.join(" -> "))]
    Cycle { chain: Vec<String> },
    #[error(
        "{location}: unknown {kind} module `{id}`{}",
        did_you_mean(suggestions)
    )]
    UnknownModule {
        location: String,
        kind: String,
        id: String,
        suggestions: Vec<String>,
    },
    #[error("{location}: module `{id}` is a {actual} module, listed under `modules.{listed}`")]
    WrongKind {
        location: String,
        id: String,
        actual: String,
        listed: String,
    },
    #[error("{location}: the crisis guard cannot be removed: {reason}. Crisis handling is never optional in psy; every run screens each client turn for risk")]
    CrisisGuardRemoved { location: String, reason: String },
    #[error("{origin}: variant `{variant}`: {source}")]
    Variant {
        origin: String,
        variant: String,
        source: Box<ManifestError>,
    },
    #[error("{0}")]
    Plugin(String),
    #[error("{location}: the run cannot start: {reason}. A run never proceeds without its crisis guard, and the guard's screen needs its sentence encoder")]
    Assessment { location: String, reason: String },
}

fn did_you_mean(s: &[String]) -> String {
    match s.len() {
        0 => String::new(),
        1 => format!(" (did you mean `{}`?)", s[0]),
        _ => format!(
            " (did you mean one of {}?)",
            s.iter()
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Line and column (1-based) of a byte offset (an offset inside a character counts as that
/// character's start).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before[i + 1..].chars().count())
        .unwrap_or(before.chars().count())
        + 1;
    (line, col)
}

/// Deserialises TOML strictly; the error carries line and column of the offending key.
pub fn parse_toml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ManifestError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ManifestError::Syntax {
            origin: origin.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

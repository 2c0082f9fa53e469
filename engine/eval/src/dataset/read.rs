//! Reading an eval file: JSON Lines (one record a line) or a JSON array of records, in the
//! psy pipeline, OpenAI or ShareGPT format, given or detected per file. Bad lines either stop
//! the read ([`OnBadRecord::Fail`]) or are collected with their file:line and counted
//! ([`OnBadRecord::Skip`]), keeping every good dialogue.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use psy_core::train_spec::{DataFormat, OnBadRecord};

use super::dialogue::{check_turns, EvalDialogue, Turn};
use super::error::{BadLine, DatasetError, LineProblem};
use super::fields::Object;
use super::openai::parse_openai;
use super::record::parse_pipeline;
use super::sharegpt::parse_sharegpt;

/// How to read an eval file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// `Auto` detects the format from the file's first record (see [`detect_format`]).
    pub format: DataFormat,
    /// `Fail` (default) stops at the first bad line; `Skip` collects bad lines in
    /// [`EvalSet::bad`] and goes on.
    pub on_bad: OnBadRecord,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: DataFormat::Auto,
            on_bad: OnBadRecord::Fail,
        }
    }
}

/// What a read produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSet {
    pub path: PathBuf,
    /// The format used (the detected one when `Auto`; `Auto` only if no record was readable).
    pub format: DataFormat,
    /// Records seen (non-blank lines, or array elements).
    pub records: usize,
    pub dialogues: Vec<EvalDialogue>,
    /// Bad lines, in file order (empty when reading with `OnBadRecord::Fail`).
    pub bad: Vec<BadLine>,
}

impl EvalSet {
    /// Bad lines counted by kind (`not JSON`, `unknown role`, ...).
    pub fn bad_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for b in &self.bad {
            *out.entry(b.problem.kind()).or_default() += 1;
        }
        out
    }
}

/// The format a record's keys point to: `conversation` → pipeline, `conversations` → ShareGPT,
/// `messages` → OpenAI.
pub fn detect_format(record: &Object) -> Option<DataFormat> {
    if record.contains_key("conversation") {
        Some(DataFormat::Pipeline)
    } else if record.contains_key("conversations") {
        Some(DataFormat::Sharegpt)
    } else if record.contains_key("messages") {
        Some(DataFormat::Openai)
    } else {
        None
    }
}

/// serde_json's message without its "at line 1 column N" (the line is the file's, given apart).
fn json_problem(e: &serde_json::Error, whole_file: bool) -> LineProblem {
    let msg = e.to_string();
    let msg = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m);
    LineProblem::NotJson(if whole_file {
        format!("{msg} (column {})", e.column())
    } else {
        format!("{msg} at column {}", e.column())
    })
}

/// 1-based line of byte offset `at` in `bytes`.
fn line_of(bytes: &[u8], at: usize) -> usize {
    1 + bytes[..at.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// Lines on which each top-level element of a JSON array starts (the text already parsed as
/// JSON, so strings and nesting are well formed).
fn array_element_lines(text: &str) -> Vec<usize> {
    let (mut depth, mut in_str, mut esc, mut want_value) = (0usize, false, false, false);
    let mut line = 1;
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        if depth == 1 && want_value && c != ']' {
            out.push(line);
            want_value = false;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    want_value = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => want_value = true,
            _ => {}
        }
    }
    out
}

/// Splits the file into `(line, record)` pairs, or one problem for the whole file.
fn records(bytes: &[u8], as_array: bool) -> Vec<(usize, Result<Value, LineProblem>)> {
    if as_array {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return vec![(line_of(bytes, e.valid_up_to()), Err(LineProblem::NotUtf8))],
        };
        return match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => array_element_lines(text)
                .into_iter()
                .zip(items)
                .map(|(l, v)| (l, Ok(v)))
                .collect(),
            Ok(other) => {
                let start = text.len() - text.trim_start().len();
                vec![(line_of(bytes, start), Ok(other))]
            }
            Err(e) => vec![(e.line().max(1), Err(json_problem(&e, true)))],
        };
    }
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = match std::str::from_utf8(raw) {
            Err(_) => Err(LineProblem::NotUtf8),
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => serde_json::from_str::<Value>(l).map_err(|e| json_problem(&e, false)),
        };
        out.push((i + 1, parsed));
    }
    out
}

fn parse(record: &Object, format: DataFormat) -> Result<(Option<String>, Vec<Turn>), LineProblem> {
    let (id, turns) = match format {
        DataFormat::Pipeline => parse_pipeline(record)?,
        DataFormat::Sharegpt => parse_sharegpt(record)?,
        DataFormat::Openai => parse_openai(record)?,
        DataFormat::Auto => return Err(LineProblem::UnknownFormat),
    };
    check_turns(&turns)?;
    Ok((id, turns))
}

/// Reads eval dialogues from `bytes` as if they were the file `path` (which names errors and
/// origins and, by its extension, decides JSON Lines for `.jsonl`; otherwise a file whose first
/// non-blank character is `[` is one JSON array).
pub fn read_eval_bytes(
    path: &Path,
    bytes: &[u8],
    opts: ReadOptions,
) -> Result<EvalSet, DatasetError> {
    let jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let as_array = !jsonl && first == Some(&b'[');
    let records = records(bytes, as_array);
    let mut format = opts.format;
    if format == DataFormat::Auto {
        format = records
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok()?.as_object())
            .find_map(detect_format)
            .unwrap_or(DataFormat::Auto);
    }
    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut set = EvalSet {
        path: path.to_path_buf(),
        format,
        records: records.len(),
        dialogues: Vec::new(),
        bad: Vec::new(),
    };
    for (line, rec) in records {
        let parsed = rec.and_then(|v| match v {
            Value::Object(o) => parse(&o, format),
            _ => Err(LineProblem::NotObject),
        });
        match parsed {
            Ok((id, turns)) => set.dialogues.push(EvalDialogue {
                id: id.unwrap_or_else(|| format!("{file_name}:{line}")),
                origin: format!("{}:{line}", path.display()),
                turns,
            }),
            Err(problem) => {
                let bad = BadLine {
                    path: path.to_path_buf(),
                    line,
                    problem,
                };
                if opts.on_bad == OnBadRecord::Fail {
                    return Err(bad.into());
                }
                tracing::warn!(%bad, "skipping eval record");
                set.bad.push(bad);
            }
        }
    }
    Ok(set)
}

/// Reads the eval file at `path` (see [`read_eval_bytes`]).
pub fn read_eval_file(path: &Path, opts: ReadOptions) -> Result<EvalSet, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_eval_bytes(path, &bytes, opts)
}

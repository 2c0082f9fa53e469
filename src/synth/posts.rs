//! Input posts of `psy synth`: JSONL (one object a line) or CSV (a header row, Dreaddit's layout
//! as is), with the id and text columns the manifest names. A record with no text, no id, an
//! unknown column, a duplicate id or invalid UTF-8 is reported with `file:line` and skipped,
//! and counted by reason; it never disappears silently.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use psy_core::synth_spec::{InputSection, PostFormat};
use serde_json::{Map, Value};

use super::csv;
use super::error::SynthError;

/// A record as columns, with the line it starts on.
type Row = (usize, Map<String, Value>);

/// One usable post.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub id: String,
    pub text: String,
    /// 1-based line the record starts on.
    pub line: usize,
    /// Other columns, kept as metadata.
    pub meta: Map<String, Value>,
}

/// A skipped record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPost {
    pub line: usize,
    /// Short reason, the key it is counted under (`no text`, `unknown column`, ...).
    pub reason: &'static str,
    pub detail: String,
}

/// What a read produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PostSet {
    pub path: PathBuf,
    pub posts: Vec<Post>,
    pub skipped: Vec<SkippedPost>,
}

impl PostSet {
    /// Skipped records counted by reason.
    pub fn skipped_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in &self.skipped {
            *out.entry(s.reason.to_string()).or_default() += 1;
        }
        out
    }

    /// One `file:line: reason: detail` line per skipped record.
    pub fn skipped_lines(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|s| {
                format!(
                    "{}:{}: {}: {}",
                    self.path.display(),
                    s.line,
                    s.reason,
                    s.detail
                )
            })
            .collect()
    }
}

/// Reads the posts of `[input]` from `path`.
pub fn read_posts(path: &Path, input: &InputSection) -> Result<PostSet, SynthError> {
    let data = std::fs::read(path).map_err(|e| SynthError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let csv_format = match input.format {
        PostFormat::Csv => true,
        PostFormat::Jsonl => false,
        PostFormat::Auto => path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    let mut set = PostSet {
        path: path.to_path_buf(),
        posts: Vec::new(),
        skipped: Vec::new(),
    };
    let rows = if csv_format {
        csv_rows(path, &data, input, &mut set.skipped)?
    } else {
        jsonl_rows(&data, input, &mut set.skipped)
    };
    let mut seen = HashSet::new();
    for (line, mut row) in rows {
        let skip = |reason, detail: String| SkippedPost {
            line,
            reason,
            detail,
        };
        let text = match row.remove(&input.text_column) {
            Some(Value::String(t)) if !t.trim().is_empty() => t,
            Some(Value::String(_)) | Some(Value::Null) | None => {
                set.skipped.push(skip(
                    "no text",
                    format!("`{}` is missing or empty", input.text_column),
                ));
                continue;
            }
            Some(other) => {
                set.skipped.push(skip(
                    "no text",
                    format!("`{}` is not a string: {other}", input.text_column),
                ));
                continue;
            }
        };
        let id = match row.remove(&input.id_column) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                set.skipped.push(skip(
                    "no id",
                    format!("`{}` is missing or empty", input.id_column),
                ));
                continue;
            }
        };
        if !seen.insert(id.clone()) {
            set.skipped
                .push(skip("duplicate id", format!("id `{id}` was used before")));
            continue;
        }
        set.posts.push(Post {
            id,
            text,
            line,
            meta: row,
        });
    }
    set.skipped.sort_by_key(|s| s.line);
    Ok(set)
}

/// JSONL lines as objects; bad lines go to `skipped`.
fn jsonl_rows(data: &[u8], input: &InputSection, skipped: &mut Vec<SkippedPost>) -> Vec<Row> {
    let mut out = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let skip = |reason, detail: String| SkippedPost {
            line,
            reason,
            detail,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            skipped.push(skip("invalid UTF-8", "the line is not UTF-8".into()));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                skipped.push(skip(
                    "not an object",
                    "the line is not a JSON object".into(),
                ));
                continue;
            }
            Err(e) => {
                skipped.push(skip("not JSON", e.to_string()));
                continue;
            }
        };
        let known = |k: &str| {
            k == input.id_column
                || k == input.text_column
                || input.extra_columns.iter().any(|c| c == k)
        };
        if let Some(k) = object.keys().find(|k| !known(k)) {
            skipped.push(skip(
                "unknown column",
                format!(
                    "key `{k}` is not `{}`, `{}` or one of [input] extra_columns",
                    input.id_column, input.text_column
                ),
            ));
            continue;
        }
        out.push((line, object));
    }
    out
}

/// CSV records as objects keyed by the header; the header must name the id and text columns.
fn csv_rows(
    path: &Path,
    data: &[u8],
    input: &InputSection,
    skipped: &mut Vec<SkippedPost>,
) -> Result<Vec<Row>, SynthError> {
    let mut records = csv::records(data).into_iter();
    let header = records.next().ok_or_else(|| SynthError::Input {
        path: path.to_path_buf(),
        line: 1,
        message: "the CSV file is empty (no header row)".into(),
    })?;
    let columns: Vec<String> = header
        .fields
        .iter()
        .map(|f| {
            String::from_utf8_lossy(f)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect();
    for wanted in [&input.id_column, &input.text_column] {
        if !columns.contains(wanted) {
            return Err(SynthError::Input {
                path: path.to_path_buf(),
                line: header.line,
                message: format!(
                    "no column `{wanted}` in the header (columns: {})",
                    columns.join(", ")
                ),
            });
        }
    }
    let mut out = Vec::new();
    for r in records {
        let skip = |reason, detail: String| SkippedPost {
            line: r.line,
            reason,
            detail,
        };
        if r.unterminated {
            skipped.push(skip(
                "unterminated quote",
                "a quoted field runs to the end of the file".into(),
            ));
            continue;
        }
        if r.fields.len() > columns.len() {
            skipped.push(skip(
                "unknown column",
                format!(
                    "{} fields, the header names {} columns",
                    r.fields.len(),
                    columns.len()
                ),
            ));
            continue;
        }
        let mut row = Map::new();
        let mut bad = None;
        for (name, field) in columns.iter().zip(&r.fields) {
            match String::from_utf8(field.clone()) {
                Ok(v) => {
                    row.insert(name.clone(), Value::String(v));
                }
                Err(_) => {
                    bad = Some(name.clone());
                    break;
                }
            }
        }
        if let Some(name) = bad {
            skipped.push(skip(
                "invalid UTF-8",
                format!("column `{name}` is not UTF-8"),
            ));
            continue;
        }
        out.push((r.line, row));
    }
    Ok(out)
}

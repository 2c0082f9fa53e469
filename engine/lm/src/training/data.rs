//! Dataset readers: the PsyLLM pipeline record format, ShareGPT and OpenAI-style JSONL, all read
//! into one [`Conversation`] shape. A bad record is reported with its file and line and then
//! skipped or made fatal (manifest `on_bad_record`); every record is counted, none is dropped
//! silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{io, Result, TrainError};
use crate::runtime::chat_template::ChatMessage;
pub use psy_core::train_spec::{DataFormat, OnBadRecord};

/// One dialogue: optional system prompt, then alternating user / assistant messages. Assistant
/// messages carry the reply in `content` and the trace in `reasoning_content`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// `file:line` of the record, for later errors.
    pub origin: String,
    pub id: String,
    pub messages: Vec<ChatMessage>,
}

/// Counts of a read, printed and saved with the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    pub read: usize,
    pub kept: usize,
    /// Skipped records by reason (reason text without the record-specific detail).
    pub skipped: BTreeMap<String, usize>,
    /// `file:line: reason` of every skipped record.
    pub problems: Vec<String>,
    /// Assistant turns reviewed by the run's modules (`Module::review_sample`); the rejected
    /// ones are counted in `skipped` as `rejected by <module>`.
    #[serde(default)]
    pub reviewed: usize,
}

impl DataReport {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Adds the counts of another read (several files, or samples dropped later).
    pub fn skip(&mut self, kind: &str, detail: String) {
        *self.skipped.entry(kind.to_string()).or_default() += 1;
        self.problems.push(detail);
    }

    pub fn summary(&self) -> String {
        let reasons: Vec<String> = self
            .skipped
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "read {} records, kept {}, skipped {}{}",
            self.read,
            self.kept,
            self.skipped_total(),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        )
    }
}

/// A record problem: a short kind (counted) and a detail (reported).
struct Bad(&'static str, String);

fn s<'a>(v: &'a Value, key: &str) -> std::result::Result<&'a str, Bad> {
    match v.get(key) {
        Some(Value::String(x)) => Ok(x),
        Some(_) => Err(Bad("wrong type", format!("field `{key}` is not a string"))),
        None => Err(Bad("missing field", format!("missing field `{key}`"))),
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> std::result::Result<&'a Vec<Value>, Bad> {
    match v.get(key) {
        Some(Value::Array(x)) => Ok(x),
        Some(_) => Err(Bad("wrong type", format!("field `{key}` is not an array"))),
        None => Err(Bad("missing field", format!("missing field `{key}`"))),
    }
}

/// Splits `<think>R</think>U` into `(Some(R), U)`: the eval-set reader's rule, so that a trace
/// is read the same way for training and for evaluation.
pub use psy_eval::dataset::split_inline_trace;

fn assistant(content: &str, reasoning: Option<&str>) -> ChatMessage {
    let (inline, reply) = split_inline_trace(content);
    let reasoning = reasoning
        .map(|r| r.trim_matches('\n').to_string())
        .filter(|r| !r.is_empty())
        .or(inline);
    ChatMessage {
        role: "assistant".into(),
        content: reply,
        reasoning_content: reasoning,
    }
}

fn pipeline(v: &Value) -> std::result::Result<(String, Vec<ChatMessage>), Bad> {
    let id = match v.get("post_id") {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let mut rounds: Vec<&Value> = arr(v, "conversation")?.iter().collect();
    rounds.sort_by_key(|r| r.get("round").and_then(Value::as_u64).unwrap_or(0));
    let mut msgs = Vec::new();
    for r in rounds {
        msgs.push(ChatMessage::new("user", s(r, "patient")?));
        let think = match r.get("counselor_think") {
            None | Some(Value::Null) => None,
            Some(Value::String(x)) => Some(x.as_str()),
            Some(_) => {
                return Err(Bad(
                    "wrong type",
                    "field `counselor_think` is not a string".into(),
                ))
            }
        };
        msgs.push(assistant(s(r, "counselor_content")?, think));
    }
    Ok((id, msgs))
}

fn sharegpt(v: &Value) -> std::result::Result<(String, Vec<ChatMessage>), Bad> {
    let mut msgs = Vec::new();
    if let Some(Value::String(sys)) = v.get("system") {
        msgs.push(ChatMessage::new("system", sys));
    }
    for m in arr(v, "conversations")? {
        let from = s(m, "from")?;
        let value = s(m, "value")?;
        match from {
            "system" => msgs.push(ChatMessage::new("system", value)),
            "human" | "user" => msgs.push(ChatMessage::new("user", value)),
            "gpt" | "assistant" => msgs.push(assistant(value, None)),
            other => {
                return Err(Bad(
                    "unknown role",
                    format!("unknown `from` value `{other}`"),
                ))
            }
        }
    }
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((id, msgs))
}

fn openai(v: &Value) -> std::result::Result<(String, Vec<ChatMessage>), Bad> {
    let mut msgs = Vec::new();
    for m in arr(v, "messages")? {
        let role = s(m, "role")?;
        let content = s(m, "content")?;
        match role {
            "system" | "user" => msgs.push(ChatMessage::new(role, content)),
            "assistant" => {
                let r = m.get("reasoning_content").and_then(Value::as_str);
                msgs.push(assistant(content, r));
            }
            other => return Err(Bad("unknown role", format!("unknown role `{other}`"))),
        }
    }
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((id, msgs))
}

/// Checks the shape every renderer relies on: optional leading system message, then user /
/// assistant alternating, at least one assistant reply, no empty message.
fn validate(msgs: &[ChatMessage]) -> std::result::Result<(), Bad> {
    let body = match msgs.first() {
        Some(m) if m.role == "system" => &msgs[1..],
        _ => msgs,
    };
    if !body.iter().any(|m| m.role == "assistant") {
        return Err(Bad(
            "no assistant turn",
            "no assistant turn to train on".into(),
        ));
    }
    for (i, m) in body.iter().enumerate() {
        let want = if i % 2 == 0 { "user" } else { "assistant" };
        if m.role != want {
            return Err(Bad(
                "roles do not alternate",
                format!("message {i} is `{}`, expected `{want}`", m.role),
            ));
        }
        if m.content.trim().is_empty() {
            return Err(Bad("empty message", format!("message {i} is empty")));
        }
    }
    Ok(())
}

fn parse_record(
    v: &Value,
    format: DataFormat,
) -> std::result::Result<(String, Vec<ChatMessage>), Bad> {
    let format = match format {
        DataFormat::Auto if v.get("conversation").is_some() => DataFormat::Pipeline,
        DataFormat::Auto if v.get("conversations").is_some() => DataFormat::Sharegpt,
        DataFormat::Auto if v.get("messages").is_some() => DataFormat::Openai,
        DataFormat::Auto => {
            return Err(Bad(
                "unknown format",
                "record has none of `conversation`, `conversations`, `messages`".into(),
            ))
        }
        f => f,
    };
    let (id, msgs) = match format {
        DataFormat::Pipeline => pipeline(v)?,
        DataFormat::Sharegpt => sharegpt(v)?,
        _ => openai(v)?,
    };
    validate(&msgs)?;
    Ok((id, msgs))
}

/// Reads a JSONL file (one record per line) or a JSON array of records.
pub fn read_dataset(
    path: &Path,
    format: DataFormat,
    on_bad: OnBadRecord,
    report: &mut DataReport,
) -> Result<Vec<Conversation>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    // (line, record) pairs; a JSON array gives each element the line it starts on.
    let mut records: Vec<(usize, std::result::Result<Value, String>)> = Vec::new();
    if text.trim_start().starts_with('[') {
        let all: Value = serde_json::from_str(&text).map_err(|e| TrainError::Record {
            path: path.to_path_buf(),
            line: e.line(),
            reason: format!("invalid JSON: {e}"),
        })?;
        for (i, v) in all.as_array().into_iter().flatten().enumerate() {
            records.push((i + 1, Ok(v.clone())));
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            records.push((
                i + 1,
                serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}")),
            ));
        }
    }
    let where_ = |line: usize| format!("{}:{line}", path.display());
    let mut out = Vec::new();
    for (line, rec) in records {
        report.read += 1;
        let parsed = rec
            .map_err(|e| Bad("invalid JSON", e))
            .and_then(|v| parse_record(&v, format));
        match parsed {
            Ok((id, messages)) => {
                report.kept += 1;
                out.push(Conversation {
                    origin: where_(line),
                    id,
                    messages,
                });
            }
            Err(Bad(kind, detail)) => {
                if on_bad == OnBadRecord::Fail {
                    return Err(TrainError::Record {
                        path: PathBuf::from(path),
                        line,
                        reason: detail,
                    });
                }
                tracing::warn!(at = %where_(line), %detail, "skipping record");
                report.skip(kind, format!("{}: {detail}", where_(line)));
            }
        }
    }
    Ok(out)
}

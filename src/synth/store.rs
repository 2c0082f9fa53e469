//! An append-only JSONL file with an index of the keys it holds: the output of one stage.
//!
//! Every line is one JSON object with a `key`; a line is written whole (one `write` of the line
//! and its newline) after its work is done, so a process killed at any moment leaves at most a
//! torn last line. Opening the file drops that torn line (the work is redone); a damaged line
//! before the last one is an error naming the line, never skipped.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::SynthError;

pub struct Store {
    path: PathBuf,
    file: File,
    index: HashMap<String, Value>,
    order: Vec<String>,
    /// Bytes of a torn last line dropped on opening (0: none).
    pub repaired_bytes: usize,
}

impl Store {
    /// Opens (creating) `path`, indexing its lines and dropping a torn last line.
    pub fn open(path: &Path) -> Result<Store, SynthError> {
        let io = |e: std::io::Error| SynthError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        // Everything after the last newline is a line whose write never finished.
        let mut keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines: Vec<&[u8]> = data[..keep]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut index = HashMap::new();
        let mut order = Vec::new();
        for (i, raw) in lines.iter().enumerate() {
            match parse_line(raw) {
                Ok((key, value)) => {
                    if index.insert(key.clone(), value).is_none() {
                        order.push(key);
                    }
                }
                // A last line that does not parse is torn too (its tail was lost).
                Err(_) if i + 1 == lines.len() => keep -= raw.len() + 1,
                Err(message) => {
                    return Err(SynthError::Store {
                        path: path.to_path_buf(),
                        line: i + 1,
                        message,
                    })
                }
            }
        }
        let repaired_bytes = data.len() - keep;
        if repaired_bytes > 0 {
            let f = OpenOptions::new().write(true).open(path).map_err(io)?;
            f.set_len(keep as u64).map_err(io)?;
            tracing::warn!(path = %path.display(), bytes = repaired_bytes, "dropped a torn last line");
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Store {
            path: path.to_path_buf(),
            file,
            index,
            order,
            repaired_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Values in the order they were first written.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.order.iter().filter_map(|k| self.index.get(k))
    }

    /// Appends `value` under `key` (set as its `key` field) unless the key is already done;
    /// returns whether it was written.
    pub fn append(&mut self, key: &str, mut value: Value) -> Result<bool, SynthError> {
        if self.index.contains_key(key) {
            return Ok(false);
        }
        if let Value::Object(o) = &mut value {
            o.insert("key".into(), Value::String(key.to_string()));
        }
        let mut line = serde_json::to_vec(&value).expect("a JSON value serialises");
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| SynthError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        self.index.insert(key.to_string(), value);
        self.order.push(key.to_string());
        Ok(true)
    }
}

fn parse_line(raw: &[u8]) -> Result<(String, Value), String> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    let key = value
        .get("key")
        .and_then(Value::as_str)
        .ok_or("the line has no string `key`")?
        .to_string();
    Ok((key, value))
}

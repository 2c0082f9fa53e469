//! A cell's results on disk: `inputs.json` (the hashes it was made from), `replies.jsonl` and
//! `verdicts.jsonl` (one line per finished item, flushed as it finishes) and `done` once every
//! item is decoded. A killed run leaves at most a partial last line, which is dropped on
//! resume; results made from other inputs are refused, never mixed in.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes `text` to a sibling temp file and renames it over `path`: a run killed mid-write
/// leaves no empty `inputs.json` for the resumed run to read as "other inputs".
pub fn write_whole(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

pub struct CellStore {
    pub dir: PathBuf,
}

impl CellStore {
    /// Opens (creating) the store of cell `name` under `root`, checking that what it holds was
    /// made from `inputs`.
    pub fn open(root: &Path, name: &str, inputs: &BTreeMap<String, String>) -> Result<CellStore> {
        let dir = root.join("cells").join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let path = dir.join("inputs.json");
        let want = serde_json::to_string_pretty(inputs)?;
        if path.exists() {
            let have = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            if have.trim() != want.trim() {
                bail!(
                    "{}: this cell was run with other inputs (manifest, model, eval data, \
                     rubrics or judge changed); choose another --output or delete {}",
                    path.display(),
                    dir.display()
                );
            }
        } else {
            write_whole(&path, &(want + "\n"))?;
        }
        Ok(CellStore { dir })
    }

    pub fn is_done(&self) -> bool {
        self.dir.join("done").exists()
    }

    pub fn mark_done(&self) -> Result<()> {
        std::fs::write(self.dir.join("done"), "")
            .with_context(|| format!("{}: cannot mark done", self.dir.display()))
    }

    /// Every complete line of `file`; a torn last line (the run was killed while writing it)
    /// is cut off so the next append starts clean.
    pub fn read<T: DeserializeOwned>(&self, file: &str) -> Result<Vec<T>> {
        let path = self.dir.join(file);
        // No file yet: nothing finished. A file that cannot be read is an error, never "no
        // results" (the run would silently decode and judge everything again).
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read results", path.display()))
            }
        };
        let mut out = Vec::new();
        let mut good = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            if !line.ends_with('\n') {
                break;
            }
            let v = serde_json::from_str(line.trim_end())
                .with_context(|| format!("{}:{}: unreadable result line", path.display(), i + 1))?;
            out.push(v);
            good += line.len();
        }
        if good < text.len() {
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(good as u64)?;
        }
        Ok(out)
    }

    pub fn appender(&self, file: &str) -> Result<Appender> {
        let path = self.dir.join(file);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("{}: cannot open for append", path.display()))?;
        Ok(Appender { file, path })
    }
}

/// Appends one JSON line at a time, flushed so that a kill loses at most the line in flight.
pub struct Appender {
    file: File,
    path: PathBuf,
}

impl Appender {
    pub fn push<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut line = serde_json::to_string(value)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("{}: cannot append", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_results_are_none_and_unreadable_ones_an_error() {
        let root = tempfile::tempdir().unwrap();
        let store = CellStore::open(root.path(), "c", &BTreeMap::new()).unwrap();
        assert!(store
            .read::<serde_json::Value>("replies.jsonl")
            .unwrap()
            .is_empty());
        std::fs::write(store.dir.join("replies.jsonl"), b"{\"a\": 1}\n\xff\xfe\n").unwrap();
        let err = store
            .read::<serde_json::Value>("replies.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("replies.jsonl: cannot read results"), "{err}");
    }
}

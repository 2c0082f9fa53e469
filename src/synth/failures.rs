//! Every failed teacher call of a synth run, appended as one JSON line (stage, key, reason,
//! message): the report counts the ones a later attempt has not made good, by reason.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use psy_core::synth_spec::StageId;
use serde_json::{json, Value};

use super::error::SynthError;

pub struct FailureLog {
    path: PathBuf,
    file: File,
}

impl FailureLog {
    pub fn open(path: &Path) -> Result<FailureLog, SynthError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SynthError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(FailureLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn log(
        &mut self,
        stage: StageId,
        key: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), SynthError> {
        let mut line =
            json!({"stage": stage.as_str(), "key": key, "reason": reason, "message": message})
                .to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| SynthError::Io {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }
}

/// The logged failures (a torn last line, from a kill, is ignored).
pub fn read_failures(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

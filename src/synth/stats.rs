//! `psy data stats FILE`: what a set of pipeline records holds — dialogues, rounds, turns and
//! words; distributions of modalities, scenes, severity (the planner's intensity) and risk per
//! turn; the filter's verdicts by criterion when a `filter.jsonl` sits beside the file — as
//! text, `stats.json` and histograms (`stats.png`, `stats.svg`, the paper's Figure 3).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use psy_eval::report::{chart_font, write_histograms, CountPanel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::SynthError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    pub file: String,
    pub dialogues: usize,
    pub rounds: usize,
    /// Client plus counselor turns.
    pub turns: usize,
    /// Whitespace-separated words (not model tokens: no tokenizer is assumed).
    pub words_patient: usize,
    pub words_think: usize,
    pub words_reply: usize,
    /// Per counselor turn (a turn with two modalities counts for both).
    pub modalities: BTreeMap<String, u64>,
    /// Per dialogue.
    pub scenes: BTreeMap<String, u64>,
    /// Per turn: the planner's intensity (light, moderate, heavy).
    pub severity: BTreeMap<String, u64>,
    /// Per turn: the planner's risk level.
    pub risk: BTreeMap<String, u64>,
    /// From `filter.jsonl` beside the file: kept/dropped and issues by criterion.
    pub verdicts: BTreeMap<String, u64>,
    /// `file:line: problem` of lines that are not pipeline records.
    pub bad_lines: Vec<String>,
}

fn words(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.split_whitespace().count())
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_string()).or_default() += 1;
}

/// Counts `file`; writes `stats.json` and the histograms into `out` (default: the file's
/// directory).
pub fn data_stats(file: &Path, out: Option<&Path>) -> Result<(DataStats, PathBuf), SynthError> {
    let text = std::fs::read(file).map_err(|e| SynthError::Io {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut s = DataStats {
        file: file.display().to_string(),
        ..Default::default()
    };
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let bad = |p: &str| format!("{}:{}: {p}", file.display(), i + 1);
        let Ok(line) = std::str::from_utf8(raw) else {
            s.bad_lines.push(bad("invalid UTF-8"));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                s.bad_lines.push(bad(&format!("not JSON: {e}")));
                continue;
            }
        };
        let Some(rounds) = v.get("conversation").and_then(Value::as_array) else {
            s.bad_lines
                .push(bad("no `conversation` array (not a pipeline record)"));
            continue;
        };
        s.dialogues += 1;
        bump(&mut s.scenes, v["scene"].as_str().unwrap_or("unknown"));
        for r in rounds {
            s.rounds += 1;
            s.turns += 2;
            s.words_patient += words(&r["patient"]);
            s.words_think += words(&r["counselor_think"]);
            s.words_reply += words(&r["counselor_content"]);
            let plan = &r["plan"];
            match plan["modalities"].as_array() {
                Some(ms) if !ms.is_empty() => {
                    for m in ms.iter().filter_map(Value::as_str) {
                        bump(&mut s.modalities, m);
                    }
                }
                _ => bump(&mut s.modalities, "unknown"),
            }
            bump(
                &mut s.severity,
                plan["intensity"].as_str().unwrap_or("unknown"),
            );
            bump(&mut s.risk, plan["risk"].as_str().unwrap_or("unknown"));
        }
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let filter = dir.join("filter.jsonl");
    if filter.exists() {
        // The filter's verdicts count only if read; a line that is not JSON is named, as the
        // data's own bad lines are, not skipped in silence.
        let text = match std::fs::read_to_string(&filter) {
            Ok(text) => text,
            Err(e) => {
                s.bad_lines
                    .push(format!("{}: cannot read: {e}", filter.display()));
                String::new()
            }
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = match serde_json::from_str::<Value>(line) {
                Ok(v) => v,
                Err(e) => {
                    s.bad_lines
                        .push(format!("{}:{}: not JSON: {e}", filter.display(), i + 1));
                    continue;
                }
            };
            bump(
                &mut s.verdicts,
                if v["keep"] == Value::Bool(true) {
                    "kept"
                } else {
                    "dropped"
                },
            );
            for i in v["judge"]["issues"].as_array().into_iter().flatten() {
                if let Some(i) = i.as_str() {
                    bump(&mut s.verdicts, i);
                }
            }
            for i in v["module_issues"].as_array().into_iter().flatten() {
                if let Some(i) = i["issue"].as_str() {
                    bump(&mut s.verdicts, i);
                }
            }
        }
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf());
    std::fs::create_dir_all(&out).map_err(|e| SynthError::Io {
        path: out.clone(),
        message: e.to_string(),
    })?;
    let json_path = out.join("stats.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&s).expect("serialisable"),
    )
    .map_err(|e| SynthError::Io {
        path: json_path.clone(),
        message: e.to_string(),
    })?;
    let panels: Vec<CountPanel> = [
        ("Modality (counselor turns)", &s.modalities),
        ("Scene (dialogues)", &s.scenes),
        ("Severity: planner intensity (turns)", &s.severity),
        ("Risk level (turns)", &s.risk),
        ("Filter verdicts and issues", &s.verdicts),
    ]
    .into_iter()
    .filter(|(_, m)| !m.is_empty())
    .map(|(title, m)| CountPanel {
        title: title.to_string(),
        bars: m.iter().map(|(k, n)| (k.clone(), *n)).collect(),
    })
    .collect();
    let font = chart_font();
    write_histograms(
        &out,
        "stats",
        &format!("{} dialogues, {} rounds", s.dialogues, s.rounds),
        &panels,
        font.has_text(),
    )
    .map_err(|e| SynthError::Io {
        path: out.clone(),
        message: e.to_string(),
    })?;
    Ok((s, out))
}

impl DataStats {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}: {} dialogues, {} rounds, {} turns; words: client {}, reasoning {}, reply {}\n",
            self.file,
            self.dialogues,
            self.rounds,
            self.turns,
            self.words_patient,
            self.words_think,
            self.words_reply
        );
        for (name, m) in [
            ("modalities", &self.modalities),
            ("scenes", &self.scenes),
            ("severity", &self.severity),
            ("risk", &self.risk),
            ("verdicts", &self.verdicts),
        ] {
            let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
            out.push_str(&format!(
                "{name}: {}\n",
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join(", ")
                }
            ));
        }
        for b in &self.bad_lines {
            out.push_str(&format!("skipped {b}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_line_that_is_not_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("records.jsonl");
        std::fs::write(&records, "{}\n").unwrap();
        std::fs::write(
            dir.path().join("filter.jsonl"),
            "{\"keep\": true}\nnot json\n",
        )
        .unwrap();
        let (stats, _) = data_stats(&records, Some(dir.path())).unwrap();
        assert_eq!(stats.verdicts.get("kept"), Some(&1));
        assert!(
            stats
                .bad_lines
                .iter()
                .any(|b| b.contains("filter.jsonl:2: not JSON")),
            "{:?}",
            stats.bad_lines
        );
    }
}

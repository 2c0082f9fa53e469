//! `report.json` of a synth run: posts read and skipped (by reason), per stage the finished
//! keys and the outstanding failures by reason, the filter's verdicts by criterion, records
//! written, teachers and the tokens used (reported, or estimated where a reply had no count). `psy synth M --report` recomputes it from the
//! files, so it also describes a run that was killed.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use psy_core::synth_spec::{ResolvedSynth, StageId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::SynthError;
use super::failures::read_failures;
use super::layout::{FAILURES_FILE, RECORDS_FILE, REPORT_FILE, STAGE_FILES};
use super::posts::PostSet;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Keys written (posts; rounds for the counselor stage).
    pub done: usize,
    /// Keys whose last attempt failed and that no later attempt finished, by reason.
    pub failed: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterCounts {
    pub verdicts: usize,
    pub kept: usize,
    pub dropped: usize,
    /// Issues the judge named, by criterion.
    pub judge_issues: BTreeMap<String, usize>,
    /// Issues the modules' filters found, by kind.
    pub module_issues: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthReport {
    pub manifest: String,
    pub output: String,
    pub posts_read: usize,
    pub posts_used: usize,
    pub posts_skipped: BTreeMap<String, usize>,
    /// `file:line: reason: detail` of every skipped post.
    pub skipped_lines: Vec<String>,
    pub stages: BTreeMap<String, StageCounts>,
    pub filter: FilterCounts,
    pub records: usize,
    /// Failed calls logged over every attempt (retried ones included).
    pub failures_logged: usize,
    pub teachers: BTreeMap<String, String>,
    /// Tokens the teachers reported for this invocation's calls (prompts and answers, repairs
    /// included).
    #[serde(default)]
    pub tokens_reported: u64,
    /// Prompt and answer characters / 4, for this invocation's replies that came without a
    /// token count (an estimate).
    pub tokens_estimated: u64,
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl SynthReport {
    pub fn collect(
        dir: &Path,
        synth: &ResolvedSynth,
        posts: &PostSet,
        used: usize,
        teachers: &BTreeMap<String, String>,
        tokens: (u64, u64),
    ) -> Result<SynthReport, SynthError> {
        let failures = read_failures(&dir.join(FAILURES_FILE));
        let mut stages = BTreeMap::new();
        let mut filter_lines = Vec::new();
        for (stage, file) in STAGE_FILES {
            let values = lines(&dir.join(file));
            let done: HashSet<String> = values
                .iter()
                .filter_map(|v| v["key"].as_str().map(str::to_string))
                .collect();
            // The last failure of each key not finished since.
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            for f in failures.iter().filter(|f| f["stage"] == stage.as_str()) {
                if let (Some(k), Some(r)) = (f["key"].as_str(), f["reason"].as_str()) {
                    last.insert(k.to_string(), r.to_string());
                }
            }
            let mut failed = BTreeMap::new();
            for (k, r) in last {
                if !done.contains(&k) {
                    *failed.entry(r).or_default() += 1;
                }
            }
            stages.insert(
                stage.as_str().to_string(),
                StageCounts {
                    done: done.len(),
                    failed,
                },
            );
            if stage == StageId::Filter {
                filter_lines = values;
            }
        }
        let mut filter = FilterCounts {
            verdicts: filter_lines.len(),
            kept: 0,
            dropped: 0,
            judge_issues: BTreeMap::new(),
            module_issues: BTreeMap::new(),
        };
        for v in &filter_lines {
            if v["keep"] == Value::Bool(true) {
                filter.kept += 1;
            } else {
                filter.dropped += 1;
            }
            for i in v["judge"]["issues"].as_array().into_iter().flatten() {
                if let Some(i) = i.as_str() {
                    *filter.judge_issues.entry(i.to_string()).or_default() += 1;
                }
            }
            if v["judge"]["keep"] == Value::Bool(false)
                && v["judge"]["issues"]
                    .as_array()
                    .is_some_and(|a| a.is_empty())
            {
                *filter
                    .judge_issues
                    .entry("rejected without an issue".into())
                    .or_default() += 1;
            }
            for i in v["module_issues"].as_array().into_iter().flatten() {
                if let Some(i) = i["issue"].as_str() {
                    *filter.module_issues.entry(i.to_string()).or_default() += 1;
                }
            }
        }
        Ok(SynthReport {
            manifest: synth.path.display().to_string(),
            output: dir.display().to_string(),
            posts_read: posts.posts.len() + posts.skipped.len(),
            posts_used: used,
            posts_skipped: posts.skipped_counts(),
            skipped_lines: posts.skipped_lines(),
            stages,
            filter,
            records: lines(&dir.join(RECORDS_FILE)).len(),
            failures_logged: failures.len(),
            teachers: teachers.clone(),
            tokens_reported: tokens.0,
            tokens_estimated: tokens.1,
        })
    }

    /// The totals as text, one line each.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "synth run {} ({})\nposts: {} read, {} used, {} skipped{}\n",
            self.output,
            self.manifest,
            self.posts_read,
            self.posts_used,
            self.posts_skipped.values().sum::<usize>(),
            counts_suffix(&self.posts_skipped)
        );
        for (stage, _) in STAGE_FILES {
            if let Some(c) = self.stages.get(stage.as_str()) {
                out.push_str(&format!(
                    "stage {} {:<9} {:>4} done, {} failed{}\n",
                    stage.number(),
                    stage.as_str(),
                    c.done,
                    c.failed.values().sum::<usize>(),
                    counts_suffix(&c.failed)
                ));
            }
        }
        let f = &self.filter;
        out.push_str(&format!(
            "filter: {} verdicts, {} kept, {} dropped; judge issues{}; module issues{}\n",
            f.verdicts,
            f.kept,
            f.dropped,
            counts_suffix(&f.judge_issues),
            counts_suffix(&f.module_issues)
        ));
        out.push_str(&format!(
            "records: {} ({}/records.jsonl); failed calls logged: {}; tokens: {} reported by the teachers, {} estimated (replies without a count)\n",
            self.records, self.output, self.failures_logged, self.tokens_reported, self.tokens_estimated
        ));
        for (stage, id) in &self.teachers {
            out.push_str(&format!("teacher {stage}: {id}\n"));
        }
        out
    }
}

fn counts_suffix(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return " (none)".into();
    }
    format!(
        " ({})",
        counts
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub fn write_report(dir: &Path, report: &SynthReport) -> Result<(), SynthError> {
    let path = dir.join(REPORT_FILE);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(report).expect("serialisable"),
    )
    .map_err(|e| SynthError::Io {
        path,
        message: e.to_string(),
    })
}

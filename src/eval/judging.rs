//! Rubric judging of a cell's replies: one call per (item, rubric, repeat), through the judge's
//! SQLite cache, validated against the rubric; per item the mean over repeats (and their
//! standard deviation, kept in `verdicts.jsonl`). Failures are counted, never dropped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use psy_core::eval_spec::{EvalSection, JudgeKind, JudgeSection};
use psy_core::planner::Planner;
use psy_eval::judge::{Judge, JudgeCache, JudgeCall, JudgeProgress, OpenAiBackend, OpenAiConfig};
use psy_eval::rubric::{Rubric, Verdict};
use psy_eval::stats::summarize;
use serde::Serialize;

use super::cell::ReplyRecord;
use super::cell_store::CellStore;

/// The rubrics of a run: those `[eval] rubrics` names, and the fidelity rubric of every
/// modality module (judged on the items whose plan chose it) when `modality_fidelity` is on.
pub struct RubricSet {
    pub fixed: Vec<Rubric>,
    pub fidelity: BTreeMap<String, Rubric>,
}

impl RubricSet {
    pub fn load(section: &EvalSection, manifest_dir: &Path, planner: &Planner) -> Result<Self> {
        let rubrics_dir = manifest_dir.join("rubrics");
        let fixed = section
            .rubrics
            .iter()
            .map(|r| Rubric::resolve(r, manifest_dir, &rubrics_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let mut fidelity = BTreeMap::new();
        if section.modality_fidelity {
            for m in planner.active() {
                let spec = m.spec();
                if spec.module.kind == psy_core::module::ModuleKind::Modality
                    && !spec.rubric.is_empty()
                {
                    fidelity.insert(spec.module.id.clone(), Rubric::from_module(spec)?);
                }
            }
        }
        Ok(RubricSet { fixed, fidelity })
    }

    /// Every rubric, fixed first, for the report's measure list.
    pub fn all(&self) -> impl Iterator<Item = &Rubric> {
        self.fixed.iter().chain(self.fidelity.values())
    }

    pub fn for_item<'a>(&'a self, record: &ReplyRecord) -> Vec<&'a Rubric> {
        let mut out: Vec<&Rubric> = self.fixed.iter().collect();
        out.extend(
            record
                .modalities
                .iter()
                .filter_map(|m| self.fidelity.get(m)),
        );
        out
    }

    /// Hashes of the rubrics and of their judge prompts, for provenance.
    pub fn identity(&self) -> String {
        let parts: Vec<String> = self
            .all()
            .map(|r| format!("{}@{}", r.id, r.content_hash()))
            .collect();
        parts.join(",")
    }
}

/// The judge a run names, or `None` for automatic metrics only.
pub fn judge_of(section: &JudgeSection, no_cache: bool) -> Result<Option<Judge>> {
    let backend: Arc<dyn psy_eval::judge::JudgeBackend> = match section.kind {
        JudgeKind::None => return Ok(None),
        JudgeKind::Openai => {
            if section.base_url.trim().is_empty() || section.model.trim().is_empty() {
                bail!("[eval.judge] kind = \"openai\" needs base_url and model");
            }
            let mut cfg = OpenAiConfig::new(section.base_url.trim(), section.model.trim());
            cfg.api_key_env =
                Some(section.api_key_env.trim().to_string()).filter(|k| !k.is_empty());
            cfg.timeout = Duration::from_secs(section.timeout_secs.max(1));
            Arc::new(OpenAiBackend::new(cfg)?)
        }
        JudgeKind::Psy => super::local_judge::backend(section)?,
    };
    let cache = JudgeCache::open(Path::new(&section.cache))
        .with_context(|| format!("judge cache {}", section.cache))?;
    Ok(Some(
        Judge::new(backend)
            .with_cache(cache)
            .with_repair_attempts(section.repair_attempts)
            .with_no_cache(no_cache),
    ))
}

/// One item's verdicts on one rubric, as `verdicts.jsonl` stores them.
#[derive(Serialize)]
struct VerdictLine<'a> {
    key: &'a str,
    rubric: &'a str,
    /// Per dimension: the score of each repeat.
    scores: BTreeMap<String, Vec<i64>>,
    mean: BTreeMap<String, f64>,
    /// Standard deviation over repeats (with two or more).
    sd: BTreeMap<String, f64>,
    failures: Vec<String>,
}

/// What judging a cell gave: per item key, per measure (`rubric.dimension`) the mean over
/// repeats; and the failures by reason with one line per failed call.
#[derive(Default)]
pub struct Judgements {
    pub scores: BTreeMap<String, BTreeMap<String, f64>>,
    pub failed: BTreeMap<String, usize>,
    pub failures: Vec<String>,
}

/// Judges every record of a cell with every rubric that applies to it.
pub fn judge_cell(
    judge: &Judge,
    section: &JudgeSection,
    repeats: u32,
    rubrics: &RubricSet,
    records: &[ReplyRecord],
    store: &CellStore,
    progress: &mut dyn FnMut(JudgeProgress),
) -> Result<Judgements> {
    let mut out = Judgements::default();
    let mut lines = Vec::new();
    for rubric in rubrics.all() {
        let targets: Vec<&ReplyRecord> = records
            .iter()
            .filter(|r| rubrics.for_item(r).iter().any(|x| x.id == rubric.id))
            .collect();
        let rubric_key = format!("{}@{}", rubric.id, rubric.content_hash());
        let mut calls = Vec::new();
        for r in &targets {
            for repeat in 0..repeats.max(1) {
                calls.push(JudgeCall {
                    messages: rubric.judge_messages(&r.history, &r.reply),
                    schema: rubric.verdict_schema(),
                    schema_name: rubric.id.clone(),
                    temperature: section.temperature,
                    max_tokens: section.max_tokens,
                    seed: Some(u64::from(repeat)),
                    repeat,
                    rubric_key: rubric_key.clone(),
                    item: format!("{} ({})", r.key, rubric.id),
                });
            }
        }
        let validate = |v: &serde_json::Value| -> Result<Verdict, String> {
            rubric.parse_verdict(v).map_err(|e| e.to_string())
        };
        let results = judge.judge_all(&calls, section.concurrency.max(1), &validate, progress);
        let per = repeats.max(1) as usize;
        for (r, chunk) in targets.iter().zip(results.chunks(per)) {
            let mut line = VerdictLine {
                key: &r.key,
                rubric: &rubric.id,
                scores: BTreeMap::new(),
                mean: BTreeMap::new(),
                sd: BTreeMap::new(),
                failures: Vec::new(),
            };
            for res in chunk {
                match res {
                    Ok(j) => {
                        for s in &j.value.scores {
                            line.scores
                                .entry(format!("{}.{}", rubric.id, s.dimension))
                                .or_default()
                                .push(s.score);
                        }
                    }
                    Err(e) => {
                        let reason = if e.is_invalid_verdict() {
                            "verdict never validated"
                        } else {
                            "judge call failed"
                        };
                        *out.failed.entry(reason.to_string()).or_default() += 1;
                        out.failures.push(e.to_string());
                        line.failures.push(e.to_string());
                    }
                }
            }
            for (m, scores) in &line.scores {
                let xs: Vec<f64> = scores.iter().map(|&s| s as f64).collect();
                let s = summarize(&xs);
                line.mean.insert(m.clone(), s.mean);
                if let Some(sd) = s.sd {
                    line.sd.insert(m.clone(), sd);
                }
                out.scores
                    .entry(r.key.clone())
                    .or_default()
                    .insert(m.clone(), s.mean);
            }
            lines.push(serde_json::to_string(&line)?);
        }
    }
    let path = store.dir.join("verdicts.jsonl");
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(out)
}

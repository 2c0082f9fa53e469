//! `psy train M --export-job DIR --engine llamafactory`: the same training job written for an
//! existing distributed trainer, for runs beyond one machine (PsyLLM itself was trained with
//! LLaMA-Factory + DeepSpeed ZeRO-3 on 8 GPUs).
//!
//! The data are psy's own: the manifest's dialogues, split, reviewed by the run's modules and
//! cut into the message lists psy's renderer trains ([`SampleRenderer::sample_messages`]), one
//! example per trained turn. Beside them goes `psy_samples.jsonl`, psy's token ids and labels
//! of every example, so that `scripts/reference/check_llamafactory_export.py` can compare them
//! with what LLaMA-Factory's own preprocessing makes of the exported files.

mod deepspeed;
mod launch;
mod llamafactory;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::data::DataReport;
use super::error::{io, Result, TrainError};
use super::prepare::TrainingData;
use super::render::SampleMessages;

/// A trainer psy can hand a job to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// LLaMA-Factory (`llamafactory-cli train`) with DeepSpeed ZeRO-3.
    LlamaFactory,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "llamafactory" | "llama-factory" => Ok(Engine::LlamaFactory),
            other => Err(format!(
                "unknown training engine `{other}` (known: llamafactory)"
            )),
        }
    }
}

/// Where the exported job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub nodes: usize,
    pub gpus_per_node: usize,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            nodes: 1,
            gpus_per_node: 1,
        }
    }
}

impl Cluster {
    pub fn world_size(&self) -> usize {
        self.nodes * self.gpus_per_node
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub engine: &'static str,
    /// The tokenizer psy rendered with (the data check loads the same one).
    pub tokenizer: PathBuf,
    pub train_examples: usize,
    pub eval_examples: usize,
    /// Reading and review counts, as `psy train` would report them.
    pub data: DataReport,
    /// What the other trainer will do differently from `psy train`, in words.
    pub notes: Vec<String>,
}

/// One exported example: the message list and psy's rendering of it.
pub(crate) struct Example {
    pub origin: String,
    pub messages: SampleMessages,
}

/// Writes the job for `engine` into `dir`, which must not exist or be empty.
pub fn export_job(
    manifest: &Path,
    dir: &Path,
    engine: Engine,
    cluster: Cluster,
) -> Result<ExportSummary> {
    if cluster.world_size() == 0 {
        return Err(TrainError::Invalid(
            "--nodes and --gpus-per-node must be at least 1".into(),
        ));
    }
    ensure_empty(dir)?;
    let data = TrainingData::load(manifest)?;
    let mut report = data.report.clone();
    let (train, eval) = data.with_renderer(|r| -> Result<_> {
        let mut split = |convs: &[super::data::Conversation]| -> Result<Vec<Example>> {
            let mut out = Vec::new();
            for c in convs {
                for s in r.sample_messages(c, &mut report)? {
                    out.extend(per_turn(s).into_iter().map(|messages| Example {
                        origin: c.origin.clone(),
                        messages,
                    }));
                }
            }
            Ok(out)
        };
        Ok((split(&data.convs)?, split(&data.val_convs)?))
    })?;
    if train.is_empty() {
        return Err(TrainError::Invalid(format!(
            "no training examples to export ({})",
            report.summary()
        )));
    }
    let (counts, notes) = match engine {
        Engine::LlamaFactory => {
            llamafactory::write(dir, &data, &train, &eval, cluster, &mut report)?
        }
    };
    let summary = ExportSummary {
        dir: dir.to_path_buf(),
        engine: "llamafactory",
        tokenizer: std::path::absolute(&data.tokenizer_path)
            .unwrap_or_else(|_| data.tokenizer_path.clone()),
        train_examples: counts[0],
        eval_examples: counts[1],
        data: report,
        notes,
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("export_report.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n",
    )
    .map_err(io(&path))?;
    Ok(summary)
}

/// A sample that trains several assistant turns becomes one example per turn (the history up to
/// it, that turn trained): the other trainer then trains only each example's last turn
/// (`mask_history`), the same tokens in the same context as psy's one sample.
fn per_turn(s: SampleMessages) -> Vec<SampleMessages> {
    if s.trained.len() == 1 && s.trained[0] + 1 == s.messages.len() {
        return vec![s];
    }
    s.trained
        .iter()
        .map(|&i| SampleMessages {
            messages: s.messages[..=i].to_vec(),
            trained: vec![i],
        })
        .collect()
}

fn ensure_empty(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(TrainError::Invalid(format!(
                    "{}: the export directory exists and is not empty; choose a new one",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TrainError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// What `psy train --export-job` prints.
pub fn describe(s: &ExportSummary) -> String {
    let mut out = format!(
        "wrote a {} job to {}: {} training / {} validation examples ({})\n\
         run it there with ./launch.sh; check the data with \
         scripts/reference/check_llamafactory_export.py {}",
        s.engine,
        s.dir.display(),
        s.train_examples,
        s.eval_examples,
        s.data.summary(),
        s.dir.display()
    );
    for n in &s.notes {
        out += &format!("\nnote: {n}");
    }
    out
}

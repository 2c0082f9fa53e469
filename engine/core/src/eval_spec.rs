//! The `[eval]` section of a run manifest: what `psy eval` scores and how (eval set, protocol,
//! rubrics, judge). Strict like the rest of the manifest: an unknown key is an error with its
//! line.

use serde::{Deserialize, Serialize};

use crate::train_spec::DataFormat;

/// Evaluation settings, read by `psy eval` and `psy ablate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Eval dialogues (pipeline records, OpenAI messages or ShareGPT JSONL), relative to the
    /// manifest.
    pub dataset: String,
    pub format: DataFormat,
    /// `all`, or `held-out`: only the dialogues whose id hashes into the held-out split
    /// (FNV-1a 64 of the id, modulo `split_every`, equal to 0).
    pub split: EvalSplit,
    pub split_every: u64,
    /// `turn` (CPsyCoun): every client turn with the reference history before it; `session`:
    /// the model's own replies become the history.
    pub protocol: EvalProtocol,
    /// At most this many scored turns (0: all), taken in file order after the split.
    pub max_items: usize,
    /// Rubrics a judge scores: shipped ids (`cpsycoun`, `psyllm-v2`, `crisis-safety`) or
    /// `.toml` paths relative to the manifest.
    pub rubrics: Vec<String>,
    /// Also judge the fidelity items of the modalities the run uses.
    pub modality_fidelity: bool,
    /// Judge each item this many times (mean and standard deviation per item).
    pub repeats: u32,
    /// Seed of the bootstrap intervals.
    pub seed: u64,
    pub judge: JudgeSection,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            dataset: String::new(),
            format: DataFormat::Auto,
            split: EvalSplit::All,
            split_every: 4,
            protocol: EvalProtocol::Turn,
            max_items: 0,
            rubrics: Vec::new(),
            modality_fidelity: false,
            repeats: 1,
            seed: 0,
            judge: JudgeSection::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EvalSplit {
    #[default]
    All,
    HeldOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvalProtocol {
    #[default]
    Turn,
    Session,
}

/// Who judges: nobody (automatic metrics only), an OpenAI-compatible endpoint, or a local
/// model decoded under the rubric's JSON schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    #[default]
    None,
    Openai,
    Psy,
}

/// `[eval.judge]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeSection {
    pub kind: JudgeKind,
    /// `openai`: the endpoint including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// `openai`: the model name; `psy`: a model file or directory, relative to the manifest.
    pub model: String,
    /// Name of the environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    /// Judge calls in flight at once.
    pub concurrency: usize,
    pub temperature: f32,
    pub max_tokens: usize,
    pub timeout_secs: u64,
    /// Re-asks after a verdict that does not parse or validate.
    pub repair_attempts: u32,
    /// SQLite cache of judge calls, relative to the working directory.
    pub cache: String,
}

impl Default for JudgeSection {
    fn default() -> Self {
        JudgeSection {
            kind: JudgeKind::None,
            base_url: String::new(),
            model: String::new(),
            api_key_env: String::new(),
            concurrency: 4,
            temperature: 0.0,
            max_tokens: 768,
            timeout_secs: 120,
            repair_attempts: 2,
            cache: "runs/judge-cache.sqlite".into(),
        }
    }
}

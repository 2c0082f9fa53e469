//! The `[train]` section of a run manifest as plain data: what `psy train` (in `psy-lm`) reads.
//! Kept in the core so that manifests parse and validate without the tensor library.

use serde::{Deserialize, Serialize};

/// Training settings, read by `psy train` (see `manifests/train/tiny-demo.toml`). Defaults
/// follow PsyLLM's LLaMA-Factory run: lr 1e-5, 3 epochs, cosine, warmup 0.1, batch 1 x
/// accumulation 2, 10% validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Dataset file (JSONL or JSON array), relative to the manifest.
    pub dataset: String,
    /// Render the planner's system prompt into each sample (plan-conditioned training).
    pub plan_conditioning: bool,
    /// Record layout: `auto`, `pipeline`, `sharegpt` or `openai`.
    pub format: DataFormat,
    /// `skip` (report, count, go on) or `fail` on a record that cannot be used.
    pub on_bad_record: OnBadRecord,
    /// Validation file; empty = hold out `validation_ratio` of the dialogues.
    pub validation_file: String,
    pub validation_ratio: f64,
    /// `template` (the chat template places traces; one sample per turn) or `inline`.
    pub placement: TracePlacement,
    /// Empty = the tokenizer's template; `chatml` = LLaMA-Factory's `qwen`; else a file.
    pub chat_template: String,
    pub reasoning_weight: f32,
    pub reply_weight: f32,
    pub last_turn_only: bool,
    /// Longest sample in tokens (LLaMA-Factory `cutoff_len`).
    pub max_len: usize,
    /// `exact`: token ids must fit the model's vocabulary; `modulo`: id % vocab (only for tiny
    /// test models whose vocabulary is smaller than the tokenizer's).
    pub vocab_map: String,
    pub learning_rate: f64,
    /// `cosine`, `linear` or `constant`, after a linear warmup of `warmup_ratio` of the steps.
    pub schedule: ScheduleKind,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Clip gradients to this global L2 norm (0 = off).
    pub max_grad_norm: f64,
    pub epochs: usize,
    /// Stop after this many optimizer steps (0 = run `epochs`).
    pub max_steps: usize,
    /// Rows per micro-batch (right-padded to the longest row).
    pub batch_size: usize,
    /// If > 0, a micro-batch also stops growing when rows x padded length would exceed it.
    pub token_budget: usize,
    pub grad_accum: usize,
    pub seed: u64,
    /// Log a metrics row every N optimizer steps.
    pub log_every: usize,
    /// Validation loss every N steps (0 = at the end only).
    pub eval_every: usize,
    /// Checkpoint every N steps (0 = at the end only); keep the last `keep_last`.
    pub save_every: usize,
    pub keep_last: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Data parallelism: several devices (e.g. `["cuda:0", "cuda:1"]`) each run a share of the
    /// accumulation window on a replica; gradients are summed on the first. Empty = `device`.
    pub devices: Vec<String>,
    /// `[train.lora]`: low-rank adapters instead of full fine-tuning.
    pub lora: LoraConfig,
    /// Keep only each decoder layer's input in the forward pass and recompute the layer in
    /// backward: activations of one layer at a time instead of all of them, for one more
    /// forward pass of the body.
    pub gradient_checkpointing: bool,
    /// `eager` (scores and probabilities of each query block kept for backward) or
    /// `memory-efficient` (online softmax, only per-row statistics kept; backward recomputes
    /// the scores): no `len x len` term.
    pub attention: TrainAttention,
    /// `f32` (everything in f32) or `bf16` (mixed precision: bf16 compute, f32 master weights,
    /// AdamW moments and loss). Refused before any work on a backend that cannot run it.
    pub precision: TrainPrecision,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            dataset: String::new(),
            plan_conditioning: false,
            format: Default::default(),
            on_bad_record: Default::default(),
            validation_file: String::new(),
            validation_ratio: 0.1,
            placement: Default::default(),
            chat_template: String::new(),
            reasoning_weight: 1.0,
            reply_weight: 1.0,
            last_turn_only: false,
            max_len: 8096,
            vocab_map: "exact".into(),
            learning_rate: 1e-5,
            schedule: Default::default(),
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            epochs: 3,
            max_steps: 0,
            batch_size: 1,
            token_budget: 0,
            grad_accum: 2,
            seed: 42,
            log_every: 1,
            eval_every: 0,
            save_every: 0,
            keep_last: 2,
            device: "cpu".into(),
            devices: Vec::new(),
            lora: Default::default(),
            gradient_checkpointing: false,
            attention: Default::default(),
            precision: Default::default(),
        }
    }
}

/// Numeric precision of training (`[train] precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrainPrecision {
    /// Weights, activations, gradients and optimizer state in f32.
    #[default]
    F32,
    /// Activations and the weights' compute copies in bfloat16; master weights, gradients,
    /// AdamW moments and the loss in f32.
    Bf16,
}

impl TrainPrecision {
    /// Bytes of one activation or compute-copy value.
    pub fn compute_bytes(self) -> u64 {
        match self {
            TrainPrecision::F32 => 4,
            TrainPrecision::Bf16 => 2,
        }
    }
}

/// Attention implementation used by training (`[train] attention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TrainAttention {
    /// The runtime's blocked attention on the autodiff graph.
    #[default]
    Eager,
    /// FlashAttention-2's forward and backward in key/query blocks.
    MemoryEfficient,
}

/// Record layout of a dataset file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Decided per record from its keys (`conversation`, `conversations` or `messages`).
    #[default]
    Auto,
    /// `{post_id, conversation: [{round, patient, counselor_think, counselor_content}]}`.
    Pipeline,
    /// `{conversations: [{from, value}]}` (LLaMA-Factory's ShareGPT).
    Sharegpt,
    /// `{messages: [{role, content, reasoning_content?}]}`.
    Openai,
}

/// What to do with a record that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRecord {
    /// Report it (file:line: reason), count it, and go on.
    #[default]
    Skip,
    /// Stop at the first bad record.
    Fail,
}

/// Where the reasoning trace of an assistant turn goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TracePlacement {
    /// Every assistant turn's text is `<think>\nR\n</think>\n\nU` (PsyLLM with LLaMA-Factory's
    /// `qwen` template): one sample per dialogue when the template renders history unchanged.
    Inline,
    /// The template places `reasoning_content` itself; each assistant turn becomes its own
    /// sample whose history is rendered as at inference (e.g. Qwen3 drops old traces).
    #[default]
    Template,
}

/// Learning-rate decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Linear,
    #[default]
    Cosine,
    Constant,
}

/// Projection names LoRA can target (PEFT's `target_modules` for Llama/Qwen).
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// What to adapt and how (the `[train.lora]` manifest table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// `false` = full fine-tuning.
    pub enabled: bool,
    /// Rank `r` of `B A`.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Probability of zeroing an adapter input element during training (inverted dropout).
    pub dropout: f64,
    /// Projection names from [`PROJECTIONS`], or `["all-linear"]` for all of them.
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            enabled: false,
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        }
    }
}

impl LoraConfig {
    /// The adapted projection names, or a message naming the bad field.
    pub fn targets(&self) -> Result<Vec<&'static str>, String> {
        if self.rank == 0 {
            return Err("[train.lora] rank must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "[train.lora] dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        if self.target_modules.is_empty() {
            return Err("[train.lora] target_modules is empty".into());
        }
        let mut out = Vec::new();
        for t in &self.target_modules {
            if t == "all-linear" {
                return Ok(PROJECTIONS.to_vec());
            }
            match PROJECTIONS.iter().find(|p| **p == t) {
                Some(p) => out.push(*p),
                None => {
                    return Err(format!(
                        "[train.lora] target_modules: unknown projection `{t}` (expected one of {} or \"all-linear\")",
                        PROJECTIONS.join(", ")
                    ))
                }
            }
        }
        Ok(out)
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Manifest {
        train: TrainSection,
    }

    fn parse(text: &str) -> Result<TrainSection, String> {
        toml::from_str::<Manifest>(text)
            .map(|m| m.train)
            .map_err(|e| e.to_string())
    }

    /// The memory keys default to off, parse when set, and a wrong value names the key.
    #[test]
    fn memory_keys_parse_strictly() {
        let t = parse("[train]\n").unwrap();
        assert!(!t.gradient_checkpointing);
        assert_eq!(t.attention, TrainAttention::Eager);
        let t = parse("[train]\ngradient_checkpointing = true\nattention = \"memory-efficient\"\n")
            .unwrap();
        assert!(t.gradient_checkpointing);
        assert_eq!(t.attention, TrainAttention::MemoryEfficient);
        let e = parse("[train]\nattention = \"flash\"\n").unwrap_err();
        assert!(
            e.contains("attention") && e.contains("memory-efficient"),
            "{e}"
        );
        let e = parse("[train]\ngradient_checkpointing = \"yes\"\n").unwrap_err();
        assert!(e.contains("gradient_checkpointing"), "{e}");
        let e = parse("[train]\ngradient_checkpoint = true\n").unwrap_err();
        assert!(e.contains("gradient_checkpoint"), "{e}");
    }

    /// `precision` defaults to f32, takes `bf16`, and anything else names the key and the
    /// accepted values.
    #[test]
    fn precision_parses_strictly() {
        assert_eq!(parse("[train]\n").unwrap().precision, TrainPrecision::F32);
        let t = parse("[train]\nprecision = \"bf16\"\n").unwrap();
        assert_eq!(t.precision, TrainPrecision::Bf16);
        assert_eq!(t.precision.compute_bytes(), 2);
        let e = parse("[train]\nprecision = \"fp16\"\n").unwrap_err();
        assert!(
            e.contains("precision") && e.contains("bf16") && e.contains("f32"),
            "{e}"
        );
    }
}

//! `screen.toml`: what the trained screen is, what it was trained on and where its thresholds
//! lie. Written by `psy train-screen`; read strictly (unknown keys are errors with line and
//! column) because a run must not start with a screen it misreads.

use serde::{Deserialize, Serialize};

/// The `screen.toml` schema this psy reads: 2 since screens are ensembles.
pub const SCHEMA: u32 = 2;

/// The screen's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenSpec {
    pub schema: u32,
    /// The members' heads, relative to this file (one safetensors file; member `i`'s tensors
    /// are named `member<i>.<tensor>`).
    pub weights: String,
    /// sha256 of the weights file: a head that does not match its manifest is refused.
    pub weights_sha256: String,
    /// The members' encoder fine-tunings (low-rank adapters on the upper blocks), relative to
    /// this file, named like the heads.
    pub adapter: String,
    pub adapter_sha256: String,
    pub encoder: EncoderCheck,
    /// The ensemble: heads and adapters trained alike from different seeds, whose readings are
    /// averaged (`HeadOutput::combine`). One seed's screen moved with the seed more than with
    /// the data; their average does not.
    pub members: Vec<MemberSpec>,
    /// Categories of the category head, in output order.
    pub categories: Vec<String>,
    pub thresholds: Thresholds,
    pub training: TrainingRecord,
    /// Figures on the validation split (the thresholds were chosen there: a fit, not a test).
    pub validation: ValidationFigures,
}

/// The encoder the head was trained over, and a probe that proves a loaded encoder is it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderCheck {
    /// Which encoder (for people; the probe is what is checked).
    pub name: String,
    pub dim: usize,
    /// A fixed sentence and the first values of its embedding under the training encoder.
    pub probe_text: String,
    pub probe: Vec<f32>,
}

/// One member of the ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// The training seed (initial weights, dropout, batch order).
    pub seed: u64,
    /// The encoder's probe through this member's adapted encoder: proves the adapter merged as
    /// it trained.
    pub adapted_probe: Vec<f32>,
}

/// Probability cut-offs of the level outputs, calibrated on the validation split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// `P(level >= moderate)` at or above this: moderate.
    pub moderate: f32,
    /// `P(level >= high)` at or above this: high.
    pub high: f32,
    /// `P(imminent)` at or above this, with the high cut-off met: imminent.
    pub imminent: f32,
    /// Cut-offs for one sentence read alone (moderate, high): higher than the message's,
    /// because a sentence loses the rest of the message ("I'm okay now", "I'm a paramedic").
    pub sentence_moderate: f32,
    pub sentence_high: f32,
    /// Cut-offs for a turn read with the client's earlier turns (moderate, high); absent: the
    /// message's. Separate because the joined text carries earlier turns' words, on which
    /// look-alike sessions (a past crisis, then calm talk) read higher than any turn alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_moderate: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_high: Option<f32>,
    /// A piece is high only when `P(level >= moderate)` is at least this too (every view). The
    /// outputs are separate sigmoids, so `P(>= high)` can pass its low cut-off on a piece the
    /// screen gives almost no chance of being even moderate ("my sister is with me now, I'm
    /// safe": 0.027 and 0.059). Absent: no such condition (screens written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_gate: Option<f32>,
}

/// How the head was made, so that `psy train-screen` reproduces it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRecord {
    /// Exemplar files, relative to this file, in the order they were read.
    pub data: Vec<String>,
    /// sha256 over the exemplar files' bytes, in that order.
    pub data_sha256: String,
    pub examples: usize,
    pub validation_examples: usize,
    pub hidden: usize,
    /// Encoder blocks fine-tuned (the top ones) and the adapters' rank.
    pub tuned_layers: usize,
    pub rank: usize,
    pub batch: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Steps of linear learning-rate warm-up (absent: none, as the shipped screen).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_steps: usize,
    /// The teacher screen whose combined level readings were the members' level targets (a
    /// student distilled from an ensemble), by the sha256 of its `screen.toml`; absent: the
    /// labels were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Recall and false alarms on the validation split, per level band.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationFigures {
    /// Acute (high, imminent) rated high or above.
    pub acute: [usize; 2],
    /// Elevated (moderate) rated moderate or above.
    pub elevated: [usize; 2],
    /// Not a crisis (none, low) rated above low.
    pub false_alarms: [usize; 2],
}

impl ScreenSpec {
    /// Parses `text`, read from `origin` (named in errors).
    pub fn parse(text: &str, origin: &str) -> Result<ScreenSpec, String> {
        let spec: ScreenSpec = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        if spec.schema != SCHEMA {
            return Err(format!(
                "{origin}: schema {} is not supported (this psy reads schema {SCHEMA}, an \
                 ensemble of members; retrain with `psy train-screen`)",
                spec.schema
            ));
        }
        if spec.members.is_empty() {
            return Err(format!("{origin}: `members` is empty"));
        }
        for (i, m) in spec.members.iter().enumerate() {
            if spec.members[..i].iter().any(|o| o.seed == m.seed) {
                return Err(format!(
                    "{origin}: members[{i}] repeats seed {}: members trained alike must differ \
                     in their seed",
                    m.seed
                ));
            }
            if m.adapted_probe.is_empty() || m.adapted_probe.len() > spec.encoder.dim {
                return Err(format!(
                    "{origin}: members[{i}].adapted_probe has {} values for an encoder of \
                     dimension {}",
                    m.adapted_probe.len(),
                    spec.encoder.dim
                ));
            }
        }
        let t = &spec.thresholds;
        for (name, v) in [
            ("moderate", t.moderate),
            ("high", t.high),
            ("imminent", t.imminent),
            ("sentence_moderate", t.sentence_moderate),
            ("sentence_high", t.sentence_high),
            ("context_moderate", t.context_moderate.unwrap_or(0.5)),
            ("context_high", t.context_high.unwrap_or(0.5)),
            ("high_gate", t.high_gate.unwrap_or(0.5)),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(format!(
                    "{origin}: thresholds.{name} = {v} is not a probability strictly between 0 and 1"
                ));
            }
        }
        if spec.categories.is_empty() {
            return Err(format!("{origin}: `categories` is empty"));
        }
        if spec.encoder.probe.is_empty() || spec.encoder.probe.len() > spec.encoder.dim {
            return Err(format!(
                "{origin}: encoder.probe has {} values for an encoder of dimension {}",
                spec.encoder.probe.len(),
                spec.encoder.dim
            ));
        }
        Ok(spec)
    }
}

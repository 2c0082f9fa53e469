//! The screen's classifier head: one hidden layer over a sentence embedding, with two outputs —
//! three cumulative level probabilities (`P(>= moderate)`, `P(>= high)`, `P(imminent)`) and a
//! distribution over categories. Plain Rust: a few thousand multiply-adds per text, nothing a
//! tensor library would speed up, and psy-core modules carry no tensor library.
//!
//! `psy train-screen` trains the same function in Burn (`psy_lm::screen`); a test checks that
//! both compute the same outputs.

use psy_core::semantic::dot;
use safetensors::{Dtype, SafeTensors};

/// Names of the head's tensors in its safetensors file, with their shapes' meaning.
pub const TENSORS: [&str; 6] = [
    "hidden.weight",   // [hidden, dim]
    "hidden.bias",     // [hidden]
    "level.weight",    // [3, hidden]
    "level.bias",      // [3]
    "category.weight", // [categories, hidden]
    "category.bias",   // [categories]
];

/// Number of cumulative level outputs.
pub const LEVELS: usize = 3;

/// A dense layer, row-major `[out, in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
}

impl Dense {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks_exact(self.inputs)
            .zip(&self.bias)
            .map(|(row, b)| dot(row, x) + b)
            .collect()
    }

    pub fn outputs(&self) -> usize {
        self.bias.len()
    }
}

/// The loaded head.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub hidden: Dense,
    pub level: Dense,
    pub category: Dense,
}

/// What the head says about one text.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadOutput {
    /// `P(>= moderate)`, `P(>= high)`, `P(imminent)`.
    pub levels: [f32; LEVELS],
    /// Probability of each category, in the spec's order.
    pub categories: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

impl Head {
    /// Reads the head from safetensors bytes; `origin` names the file in errors. Every tensor
    /// must be f32 with the shape the others imply, and `dim` must be the encoder's dimension.
    pub fn from_safetensors(
        bytes: &[u8],
        origin: &str,
        dim: usize,
        categories: usize,
    ) -> Result<Head, String> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("{origin}: not a safetensors file: {e}"))?;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let t = st
                .tensor(name)
                .map_err(|_| format!("{origin}: tensor `{name}` is missing"))?;
            if t.dtype() != Dtype::F32 {
                return Err(format!(
                    "{origin}: tensor `{name}` is {:?}, expected F32",
                    t.dtype()
                ));
            }
            if t.shape() != shape {
                return Err(format!(
                    "{origin}: tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape()
                ));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let hidden_rows = st
            .tensor("hidden.bias")
            .map_err(|_| format!("{origin}: tensor `hidden.bias` is missing"))?
            .shape()
            .first()
            .copied()
            .unwrap_or(0);
        if hidden_rows == 0 {
            return Err(format!("{origin}: tensor `hidden.bias` is empty"));
        }
        let hidden_w = st
            .tensor("hidden.weight")
            .map_err(|_| format!("{origin}: tensor `hidden.weight` is missing"))?;
        if hidden_w.shape().get(1) != Some(&dim) {
            return Err(format!(
                "{origin}: tensor `hidden.weight` has shape {:?}: the head takes {}-dimensional \
                 embeddings, the encoder gives {dim}",
                hidden_w.shape(),
                hidden_w.shape().get(1).copied().unwrap_or(0)
            ));
        }
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        if let Some(extra) = names.iter().find(|n| !TENSORS.contains(&n.as_str())) {
            return Err(format!("{origin}: unexpected tensor `{extra}`"));
        }
        let h = hidden_rows;
        Ok(Head {
            hidden: Dense {
                weight: read("hidden.weight", &[h, dim])?,
                bias: read("hidden.bias", &[h])?,
                inputs: dim,
            },
            level: Dense {
                weight: read("level.weight", &[LEVELS, h])?,
                bias: read("level.bias", &[LEVELS])?,
                inputs: h,
            },
            category: Dense {
                weight: read("category.weight", &[categories, h])?,
                bias: read("category.bias", &[categories])?,
                inputs: h,
            },
        })
    }

    /// The dimension of the embeddings the head takes.
    pub fn dim(&self) -> usize {
        self.hidden.inputs
    }

    /// Runs the head on one embedding.
    pub fn apply(&self, embedding: &[f32]) -> HeadOutput {
        HeadOutput::combine(&[self.reading(embedding)])
    }

    /// The head's raw reading of one embedding: the level log-odds and the category
    /// probabilities (what an ensemble averages).
    pub fn reading(&self, embedding: &[f32]) -> Reading {
        let mut h = self.hidden.apply(embedding);
        for v in &mut h {
            *v = v.max(0.0);
        }
        let l = self.level.apply(&h);
        Reading {
            level_logits: [l[0], l[1], l[2]],
            categories: softmax(&self.category.apply(&h)),
        }
    }
}

/// One head's reading of one text, before the members of an ensemble are combined.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub level_logits: [f32; LEVELS],
    pub categories: Vec<f32>,
}

impl HeadOutput {
    /// Combines the members' readings of one text: the mean of their level log-odds (heads
    /// trained from different seeds disagree most on the look-alikes, and a confident member
    /// should not be outvoted by averaging its probability near 1 with others near 0.5) and the
    /// mean of their category probabilities. One reading gives that head's own output, bit for
    /// bit.
    pub fn combine(readings: &[Reading]) -> HeadOutput {
        let n = readings.len().max(1) as f32;
        let mut levels = [0.0f32; LEVELS];
        for (k, level) in levels.iter_mut().enumerate() {
            let sum: f32 = readings.iter().map(|r| r.level_logits[k]).sum();
            *level = sigmoid(sum / n);
        }
        let width = readings.first().map_or(0, |r| r.categories.len());
        let categories = (0..width)
            .map(|c| readings.iter().map(|r| r.categories[c]).sum::<f32>() / n)
            .collect();
        HeadOutput { levels, categories }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_combine_by_their_mean_log_odds() {
        let a = Reading {
            level_logits: [0.0, -4.0, 3.0],
            categories: vec![0.2, 0.8],
        };
        let b = Reading {
            level_logits: [2.0, -2.0, -3.0],
            categories: vec![0.6, 0.4],
        };
        let out = HeadOutput::combine(&[a.clone(), b]);
        // Hand-computed: sigmoid(1) = 0.7310586, sigmoid(-3) = 0.04742587, sigmoid(0) = 0.5.
        for (got, want) in out.levels.iter().zip([0.7310586f32, 0.04742587, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{:?}", out.levels);
        }
        assert!((out.categories[0] - 0.4).abs() < 1e-6 && (out.categories[1] - 0.6).abs() < 1e-6);
        // Not the mean of the probabilities (0.5 and 0.88 would give 0.69 for the first output).
        // One member alone reads as its own head, bit for bit.
        let alone = HeadOutput::combine(std::slice::from_ref(&a));
        assert_eq!(alone.levels, [0.5, sigmoid(-4.0), sigmoid(3.0)]);
        assert_eq!(alone.categories, a.categories);
    }
}

//! Reading a judge's verdict: the JSON must validate against the rubric's verdict schema.
//!
//! The checks are those of the schema (as a JSON Schema validator applies them), with a
//! message naming the dimension, so that a repair prompt can tell the judge what to fix.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::REASON_MAX_CHARS;
use super::spec::{Dimension, Rubric};

/// A validated verdict: one score per rubric dimension, in rubric order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub scores: Vec<DimensionScore>,
}

/// The judge's score and reason on one dimension.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimensionScore {
    pub dimension: String,
    pub score: i64,
    pub reason: String,
}

impl Verdict {
    /// The score given on one dimension.
    pub fn score(&self, dimension: &str) -> Option<i64> {
        self.scores
            .iter()
            .find(|s| s.dimension == dimension)
            .map(|s| s.score)
    }
}

/// Why a judge's output is not a valid verdict.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerdictError {
    #[error("the verdict is not valid JSON: {0}")]
    Json(String),
    #[error("the verdict must be a JSON object with one key per dimension, found {found}")]
    NotAnObject { found: String },
    #[error("dimension `{dimension}` is missing from the verdict")]
    MissingDimension { dimension: String },
    #[error("`{key}` is not a dimension of this rubric (expected: {expected})")]
    UnknownDimension { key: String, expected: String },
    #[error("dimension `{dimension}`: expected an object {{\"reason\": ..., \"score\": ...}}, found {found}")]
    DimensionNotObject { dimension: String, found: String },
    #[error("dimension `{dimension}`: `{field}` is missing")]
    MissingField { dimension: String, field: String },
    #[error("dimension `{dimension}`: unexpected key `{field}` (only `reason` and `score`)")]
    UnknownField { dimension: String, field: String },
    #[error("dimension `{dimension}`: `reason` must be a string, found {found}")]
    ReasonNotString { dimension: String, found: String },
    #[error("dimension `{dimension}`: `reason` has {chars} characters, at most {max}")]
    ReasonTooLong {
        dimension: String,
        chars: usize,
        max: u64,
    },
    #[error("dimension `{dimension}`: `score` must be an integer, found {found}")]
    ScoreNotInteger { dimension: String, found: String },
    #[error("dimension `{dimension}`: score {score} is outside the scale [{min}, {max}]")]
    ScoreOutOfRange {
        dimension: String,
        score: String,
        min: i64,
        max: i64,
    },
}

impl Rubric {
    /// Parses a judge's raw output (JSON text) as a verdict.
    pub fn parse_verdict_str(&self, text: &str) -> Result<Verdict, VerdictError> {
        let value: Value =
            serde_json::from_str(text.trim()).map_err(|e| VerdictError::Json(e.to_string()))?;
        self.parse_verdict(&value)
    }

    /// Validates a verdict against this rubric: every dimension present, no other keys, each
    /// an object with a string `reason` (at most [`REASON_MAX_CHARS`] characters) and an
    /// integer `score` on the dimension's scale. As in JSON Schema, `3.0` counts as the
    /// integer 3.
    pub fn parse_verdict(&self, value: &Value) -> Result<Verdict, VerdictError> {
        let Value::Object(map) = value else {
            return Err(VerdictError::NotAnObject { found: kind(value) });
        };
        if let Some(key) = map.keys().find(|k| self.dimension(k).is_none()) {
            return Err(VerdictError::UnknownDimension {
                key: key.clone(),
                expected: self
                    .dimensions
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut scores = Vec::with_capacity(self.dimensions.len());
        for d in &self.dimensions {
            let entry = map
                .get(&d.id)
                .ok_or_else(|| VerdictError::MissingDimension {
                    dimension: d.id.clone(),
                })?;
            scores.push(parse_dimension(d, entry)?);
        }
        Ok(Verdict { scores })
    }
}

fn parse_dimension(d: &Dimension, entry: &Value) -> Result<DimensionScore, VerdictError> {
    let dimension = || d.id.clone();
    let Value::Object(fields) = entry else {
        return Err(VerdictError::DimensionNotObject {
            dimension: dimension(),
            found: kind(entry),
        });
    };
    if let Some(field) = fields.keys().find(|k| *k != "reason" && *k != "score") {
        return Err(VerdictError::UnknownField {
            dimension: dimension(),
            field: field.clone(),
        });
    }
    let reason = match fields.get("reason") {
        None => {
            return Err(VerdictError::MissingField {
                dimension: dimension(),
                field: "reason".into(),
            })
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(VerdictError::ReasonNotString {
                dimension: dimension(),
                found: kind(other),
            })
        }
    };
    // JSON Schema counts characters (code points), not bytes.
    let chars = reason.chars().count();
    if chars as u64 > REASON_MAX_CHARS {
        return Err(VerdictError::ReasonTooLong {
            dimension: dimension(),
            chars,
            max: REASON_MAX_CHARS,
        });
    }
    let number = match fields.get("score") {
        None => {
            return Err(VerdictError::MissingField {
                dimension: dimension(),
                field: "score".into(),
            })
        }
        Some(Value::Number(n)) => n,
        Some(other) => {
            return Err(VerdictError::ScoreNotInteger {
                dimension: dimension(),
                found: kind(other),
            })
        }
    };
    let out_of_range = || VerdictError::ScoreOutOfRange {
        dimension: dimension(),
        score: number.to_string(),
        min: d.min,
        max: d.max,
    };
    let score = if let Some(i) = number.as_i64() {
        i
    } else if number.as_u64().is_some() {
        return Err(out_of_range());
    } else {
        let f = number.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(VerdictError::ScoreNotInteger {
                dimension: dimension(),
                found: number.to_string(),
            });
        }
        if f < d.min as f64 || f > d.max as f64 {
            return Err(out_of_range());
        }
        f as i64
    };
    if score < d.min || score > d.max {
        return Err(out_of_range());
    }
    Ok(DimensionScore {
        dimension: dimension(),
        score,
        reason: reason.clone(),
    })
}

/// A short description of a JSON value for error messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            format!("the string {short:?}")
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

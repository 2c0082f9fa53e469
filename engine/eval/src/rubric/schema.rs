//! The JSON schema of a judge's verdict, derived from the rubric.
//!
//! It stays inside the subset the grammar-constrained decoder supports: objects with
//! `properties`, `required` (all keys, in order) and `additionalProperties: false`; strings
//! with `maxLength`; integers with `minimum` and `maximum`.

use serde_json::{json, Map, Value};

use super::spec::Rubric;

/// Longest `reason` a judge may give per dimension, in characters.
pub const REASON_MAX_CHARS: u64 = 300;

impl Rubric {
    /// The verdict schema: one object per dimension, in rubric order, each with a short
    /// `reason` first (the judge explains before it commits to a number) and then the `score`.
    pub fn verdict_schema(&self) -> Value {
        let mut properties = Map::new();
        for d in &self.dimensions {
            properties.insert(
                d.id.clone(),
                json!({
                    "type": "object",
                    "properties": {
                        "reason": {"type": "string", "maxLength": REASON_MAX_CHARS},
                        "score": {"type": "integer", "minimum": d.min, "maximum": d.max}
                    },
                    "required": ["reason", "score"],
                    "additionalProperties": false
                }),
            );
        }
        let required: Vec<Value> = self
            .dimensions
            .iter()
            .map(|d| Value::String(d.id.clone()))
            .collect();
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false
        })
    }
}

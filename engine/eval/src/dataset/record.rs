//! psy's pipeline record format (PsyLLM's data-synthesis output, as in
//! `manifests/train/data/illustrative.jsonl`): `{"post_id": ..., "conversation": [{"round": n,
//! "patient": ..., "counselor_think"?: ..., "counselor_content": ...}]}`. Rounds are ordered by
//! `round`; `counselor_think` (or an inline `<think>` in the content) is the reference trace.

use serde_json::Value;

use super::dialogue::{Role, Turn};
use super::error::LineProblem;
use super::fields::{id, objects, optional_string, string, Object};

/// The record's id (`post_id`, if any) and turns.
pub fn parse_pipeline(record: &Object) -> Result<(Option<String>, Vec<Turn>), LineProblem> {
    let mut rounds = objects(record, "conversation")?;
    // A stable sort keeps file order for rounds without a number.
    rounds.sort_by_key(|r| r.get("round").and_then(Value::as_u64).unwrap_or(0));
    let mut turns = Vec::new();
    for r in rounds {
        turns.push(Turn::new(Role::Client, string(r, "patient")?));
        let think = optional_string(r, "counselor_think")?;
        turns.push(Turn::counselor(string(r, "counselor_content")?, think));
    }
    Ok((id(record, "post_id")?, turns))
}

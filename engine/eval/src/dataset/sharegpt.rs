//! ShareGPT records (LLaMA-Factory's layout): `{"conversations": [{"from": "human|gpt|system",
//! "value": ...}], "system"?: ..., "id"?: ...}`. `user` / `assistant` are accepted as aliases.

use super::dialogue::{Role, Turn};
use super::error::LineProblem;
use super::fields::{id, objects, optional_string, string, Object};

/// The record's id (if any) and turns; a top-level `system` string becomes the first turn.
pub fn parse_sharegpt(record: &Object) -> Result<(Option<String>, Vec<Turn>), LineProblem> {
    let mut turns = Vec::new();
    if let Some(sys) = optional_string(record, "system")? {
        turns.push(Turn::new(Role::System, sys));
    }
    for (i, m) in objects(record, "conversations")?.into_iter().enumerate() {
        let from = string(m, "from")?;
        let value = string(m, "value")?;
        turns.push(match from {
            "system" => Turn::new(Role::System, value),
            "human" | "user" => Turn::new(Role::Client, value),
            "gpt" | "assistant" => Turn::counselor(value, None),
            other => {
                return Err(LineProblem::UnknownRole {
                    turn: i + 1,
                    role: other.into(),
                    expected: "human, gpt or system",
                })
            }
        });
    }
    Ok((id(record, "id")?, turns))
}

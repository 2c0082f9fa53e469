//! OpenAI-style chat records: `{"messages": [{"role": "system|user|assistant", "content": ...,
//! "reasoning_content"?: ...}], "id"?: ...}`. An assistant's `<think>...</think>` (or its
//! `reasoning_content`) becomes the reference trace.

use super::dialogue::{Role, Turn};
use super::error::LineProblem;
use super::fields::{id, objects, optional_string, string, Object};

/// The record's id (if any) and turns.
pub fn parse_openai(record: &Object) -> Result<(Option<String>, Vec<Turn>), LineProblem> {
    let mut turns = Vec::new();
    for (i, m) in objects(record, "messages")?.into_iter().enumerate() {
        let role = string(m, "role")?;
        let content = string(m, "content")?;
        turns.push(match role {
            "system" => Turn::new(Role::System, content),
            "user" => Turn::new(Role::Client, content),
            "assistant" => Turn::counselor(content, optional_string(m, "reasoning_content")?),
            other => {
                return Err(LineProblem::UnknownRole {
                    turn: i + 1,
                    role: other.into(),
                    expected: "system, user or assistant",
                })
            }
        });
    }
    Ok((id(record, "id")?, turns))
}

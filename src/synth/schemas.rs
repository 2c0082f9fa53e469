//! The JSON schema each stage's answer must satisfy, and the typed check that turns a parsed
//! answer into the stage's output. The schema goes to the teacher (`response_format` remotely,
//! the decoding constraint locally); the check runs on every answer, so invalid output never
//! becomes a record: its error goes back to the teacher for a bounded number of repairs.

use psy_core::synth_spec::{FILTER_CRITERIA, SCENES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Longest strings a teacher may write, in characters (bounded so that a local model under the
/// schema always closes its JSON within its token budget).
const FOCUS_CHARS: u32 = 200;
const TURN_CHARS: u32 = 700;
const THINK_CHARS: u32 = 1600;
const REPLY_CHARS: u32 = 1200;
const REASON_CHARS: u32 = 300;

/// Stage 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanAnswer {
    pub scene: String,
    pub rounds: Vec<String>,
}

pub fn plan_schema(min_rounds: usize, max_rounds: usize) -> Value {
    json!({
        "type": "object",
        "properties": {
            "scene": {"type": "string", "enum": SCENES},
            "rounds": {
                "type": "array",
                "minItems": min_rounds,
                "maxItems": max_rounds,
                "items": {"type": "string", "maxLength": FOCUS_CHARS}
            }
        },
        "required": ["scene", "rounds"],
        "additionalProperties": false
    })
}

pub fn check_plan(v: &Value, min_rounds: usize, max_rounds: usize) -> Result<PlanAnswer, String> {
    let a: PlanAnswer = typed(v)?;
    if !SCENES.contains(&a.scene.as_str()) {
        return Err(format!(
            "`scene` must be one of {}, not {:?}",
            SCENES.join(", "),
            a.scene
        ));
    }
    if a.rounds.len() < min_rounds || a.rounds.len() > max_rounds {
        return Err(format!(
            "`rounds` must hold {min_rounds} to {max_rounds} focuses, not {}",
            a.rounds.len()
        ));
    }
    non_empty(&a.rounds, "rounds")?;
    Ok(a)
}

/// Stage 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientAnswer {
    pub turns: Vec<String>,
}

pub fn client_schema(rounds: usize) -> Value {
    json!({
        "type": "object",
        "properties": {
            "turns": {
                "type": "array",
                "minItems": rounds,
                "maxItems": rounds,
                "items": {"type": "string", "maxLength": TURN_CHARS}
            }
        },
        "required": ["turns"],
        "additionalProperties": false
    })
}

pub fn check_client(v: &Value, rounds: usize) -> Result<ClientAnswer, String> {
    let a: ClientAnswer = typed(v)?;
    if a.turns.len() != rounds {
        return Err(format!(
            "`turns` must hold exactly {rounds} messages, one per round, not {}",
            a.turns.len()
        ));
    }
    non_empty(&a.turns, "turns")?;
    Ok(a)
}

/// Stage 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounselorAnswer {
    pub think: String,
    pub reply: String,
}

pub fn counselor_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "think": {"type": "string", "maxLength": THINK_CHARS},
            "reply": {"type": "string", "maxLength": REPLY_CHARS}
        },
        "required": ["think", "reply"],
        "additionalProperties": false
    })
}

pub fn check_counselor(v: &Value) -> Result<CounselorAnswer, String> {
    let a: CounselorAnswer = typed(v)?;
    non_empty(std::slice::from_ref(&a.think), "think")?;
    non_empty(std::slice::from_ref(&a.reply), "reply")?;
    Ok(a)
}

/// Stage 4: `{keep, issues[], reason}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub keep: bool,
    pub issues: Vec<String>,
    pub reason: String,
}

pub fn verdict_schema() -> Value {
    let names: Vec<&str> = FILTER_CRITERIA.iter().map(|(n, _)| *n).collect();
    json!({
        "type": "object",
        "properties": {
            "keep": {"type": "boolean"},
            "issues": {
                "type": "array",
                "maxItems": names.len(),
                "items": {"type": "string", "enum": names}
            },
            "reason": {"type": "string", "maxLength": REASON_CHARS}
        },
        "required": ["keep", "issues", "reason"],
        "additionalProperties": false
    })
}

pub fn check_verdict(v: &Value) -> Result<Verdict, String> {
    let mut a: Verdict = typed(v)?;
    // The schema cannot say `uniqueItems` to a local model: a repeated issue counts once.
    let mut seen = Vec::new();
    a.issues.retain(|i| {
        let new = !seen.contains(i);
        seen.push(i.clone());
        new
    });
    for i in &a.issues {
        if !FILTER_CRITERIA.iter().any(|(n, _)| n == i) {
            return Err(format!(
                "unknown issue {i:?}; issues are named {}",
                FILTER_CRITERIA
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(a)
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
    if let Some(extra) = v.as_object().and_then(|o| {
        o.keys().find(|k| {
            !matches!(
                k.as_str(),
                "scene" | "rounds" | "turns" | "think" | "reply" | "keep" | "issues" | "reason"
            )
        })
    }) {
        return Err(format!("unexpected key `{extra}`"));
    }
    serde_json::from_value(v.clone())
        .map_err(|e| format!("the JSON does not have the asked shape: {e}"))
}

/// Every item holds at least one word (a reply of `{` or `...` is not text).
fn non_empty(items: &[String], field: &str) -> Result<(), String> {
    let wordless = |s: &String| {
        !s.split_whitespace()
            .any(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
    };
    match items.iter().position(wordless) {
        Some(i) if items.len() > 1 => Err(format!("`{field}[{i}]` is empty (no word)")),
        Some(_) => Err(format!("`{field}` is empty (no word)")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_the_wrong_shape_are_refused_with_the_field_named() {
        assert!(check_plan(&json!({"scene": "work", "rounds": ["the deadline"]}), 1, 3).is_ok());
        let e = check_plan(&json!({"scene": "space", "rounds": ["a"]}), 1, 3).unwrap_err();
        assert!(e.contains("scene"), "{e}");
        let e = check_plan(&json!({"scene": "work", "rounds": []}), 1, 3).unwrap_err();
        assert!(e.contains("1 to 3"), "{e}");
        let e = check_client(&json!({"turns": ["I am tired", " "]}), 2).unwrap_err();
        assert!(e.contains("turns[1]"), "{e}");
        let e = check_counselor(&json!({"think": "x"})).unwrap_err();
        assert!(e.contains("reply"), "{e}");
        let e =
            check_verdict(&json!({"keep": true, "issues": ["rude"], "reason": ""})).unwrap_err();
        assert!(e.contains("rude"), "{e}");
        let e = check_counselor(&json!({"think": "fine", "reply": "{"})).unwrap_err();
        assert!(e.contains("`reply` is empty"), "{e}");
        let v = check_verdict(
            &json!({"keep": false, "issues": ["incoherent_dialogue", "incoherent_dialogue"], "reason": "r"}),
        );
        assert_eq!(v.unwrap().issues, ["incoherent_dialogue"]);
    }
}

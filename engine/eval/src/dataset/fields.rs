//! Typed access to a record's JSON fields, with the problem named when a field is missing or of
//! the wrong type.

use serde_json::{Map, Value};

use super::error::LineProblem;

/// A JSON object (one record, or one message of it).
pub type Object = Map<String, Value>;

/// Required string field.
pub fn string<'a>(o: &'a Object, key: &str) -> Result<&'a str, LineProblem> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(LineProblem::WrongType {
            field: key.into(),
            expected: "a string",
        }),
        None => Err(LineProblem::MissingField(key.into())),
    }
}

/// Optional string field (`null` counts as absent).
pub fn optional_string<'a>(o: &'a Object, key: &str) -> Result<Option<&'a str>, LineProblem> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(LineProblem::WrongType {
            field: key.into(),
            expected: "a string",
        }),
    }
}

/// Required array of objects; `field` names the element in errors (`messages[2]`).
pub fn objects<'a>(o: &'a Object, key: &str) -> Result<Vec<&'a Object>, LineProblem> {
    match o.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_object().ok_or_else(|| LineProblem::WrongType {
                    field: format!("{key}[{i}]"),
                    expected: "an object",
                })
            })
            .collect(),
        Some(_) => Err(LineProblem::WrongType {
            field: key.into(),
            expected: "an array",
        }),
        None => Err(LineProblem::MissingField(key.into())),
    }
}

/// An id given as a string or a number; `None` when absent.
pub fn id(o: &Object, key: &str) -> Result<Option<String>, LineProblem> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(LineProblem::WrongType {
            field: key.into(),
            expected: "a string or a number",
        }),
    }
}

//! The supported JSON-schema subset, parsed into a typed tree. Anything outside the subset is
//! an error naming the keyword and its JSON-pointer path (`#/properties/score/multipleOf`), so
//! a rubric author learns at load time, not after a judge produced an unconstrained verdict.

use serde_json::{Map, Value};

/// Keywords that only annotate a schema; accepted anywhere and ignored.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "examples",
    "default",
];

/// Most distinct values an `enum` may list (the recogniser tracks candidates in a bit set).
pub const MAX_ENUM_VALUES: usize = 64;

/// A schema keyword or value outside the supported subset, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON schema {path}: {msg}")]
pub struct SchemaError {
    /// JSON pointer of the offending schema (`#` is the root).
    pub path: String,
    pub msg: String,
}

/// One value of an `enum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnumValue {
    String(String),
    Integer(i64),
}

impl EnumValue {
    /// The compact JSON text of the value, as the model must write it.
    pub fn json_text(&self) -> String {
        match self {
            EnumValue::String(s) => Value::String(s.clone()).to_string(),
            EnumValue::Integer(i) => i.to_string(),
        }
    }
}

/// A node of the supported subset.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaNode {
    /// Properties in declared order; every one is emitted, in that order.
    Object {
        properties: Vec<(String, SchemaNode)>,
    },
    /// Any JSON object (`{"type": "object"}` with no `properties`): free keys, values of any
    /// JSON type, nested at most [`super::machine::MAX_ANY_DEPTH`] deep.
    AnyObject,
    Array {
        items: Box<SchemaNode>,
        min_items: u32,
        max_items: Option<u32>,
    },
    /// `max_length` counts Unicode scalar values, as JSON Schema's `maxLength` does.
    String {
        max_length: Option<u32>,
    },
    Integer {
        minimum: Option<i64>,
        maximum: Option<i64>,
    },
    Number,
    Boolean,
    Enum(Vec<EnumValue>),
}

/// Parses `schema` (the root is `#`).
pub fn parse_schema(schema: &Value) -> Result<SchemaNode, SchemaError> {
    parse_at(schema, "#")
}

fn err(path: &str, msg: impl Into<String>) -> SchemaError {
    SchemaError {
        path: path.to_string(),
        msg: msg.into(),
    }
}

fn parse_at(schema: &Value, path: &str) -> Result<SchemaNode, SchemaError> {
    let obj = schema
        .as_object()
        .ok_or_else(|| err(path, format!("a schema must be an object, found {schema}")))?;
    if let Some(values) = obj.get("enum") {
        return parse_enum(obj, values, path);
    }
    let ty = match obj.get("type") {
        None => return Err(err(path, "needs `type` or `enum`")),
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(err(
                &format!("{path}/type"),
                format!(
                "`type` must be one type name (a list of types is not supported), found {other}"
            ),
            ))
        }
    };
    match ty {
        "object" => parse_object(obj, path),
        "array" => parse_array(obj, path),
        "string" => {
            check_keywords(obj, path, &["maxLength"])?;
            Ok(SchemaNode::String {
                max_length: opt_u32(obj, "maxLength", path)?,
            })
        }
        "integer" => {
            check_keywords(obj, path, &["minimum", "maximum"])?;
            let minimum = opt_i64(obj, "minimum", path)?;
            let maximum = opt_i64(obj, "maximum", path)?;
            if let (Some(lo), Some(hi)) = (minimum, maximum) {
                if lo > hi {
                    return Err(err(path, format!("minimum {lo} exceeds maximum {hi}")));
                }
            }
            Ok(SchemaNode::Integer { minimum, maximum })
        }
        "number" => {
            check_keywords(obj, path, &[])?;
            Ok(SchemaNode::Number)
        }
        "boolean" => {
            check_keywords(obj, path, &[])?;
            Ok(SchemaNode::Boolean)
        }
        other => Err(err(
            &format!("{path}/type"),
            format!(
                "type `{other}` is not supported (object, array, string, integer, number, boolean)"
            ),
        )),
    }
}

/// Rejects every keyword that is neither an annotation nor in `allowed` (plus `type`).
fn check_keywords(
    obj: &Map<String, Value>,
    path: &str,
    allowed: &[&str],
) -> Result<(), SchemaError> {
    for key in obj.keys() {
        let k = key.as_str();
        if k != "type" && !allowed.contains(&k) && !ANNOTATIONS.contains(&k) {
            return Err(err(
                &format!("{path}/{}", escape_pointer(k)),
                format!("keyword `{k}` is not supported here"),
            ));
        }
    }
    Ok(())
}

/// JSON-pointer escaping of one path segment (RFC 6901).
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn opt_i64(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| {
                err(
                    &format!("{path}/{key}"),
                    format!("`{key}` must be an integer, found {v}"),
                )
            }),
    }
}

fn opt_u32(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u32>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                err(
                    &format!("{path}/{key}"),
                    format!("`{key}` must be a non-negative integer, found {v}"),
                )
            }),
    }
}

fn parse_enum(
    obj: &Map<String, Value>,
    values: &Value,
    path: &str,
) -> Result<SchemaNode, SchemaError> {
    check_keywords(obj, path, &["enum"])?;
    let epath = format!("{path}/enum");
    let list = values
        .as_array()
        .ok_or_else(|| err(&epath, "`enum` must be a list"))?;
    if list.is_empty() {
        return Err(err(&epath, "`enum` must list at least one value"));
    }
    if list.len() > MAX_ENUM_VALUES {
        return Err(err(
            &epath,
            format!(
                "`enum` lists {} values; at most {MAX_ENUM_VALUES} are supported",
                list.len()
            ),
        ));
    }
    let declared = obj.get("type").and_then(Value::as_str);
    let mut out: Vec<EnumValue> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let value = match v {
            Value::String(s) => EnumValue::String(s.clone()),
            Value::Number(n) if n.as_i64().is_some() => EnumValue::Integer(n.as_i64().unwrap_or(0)),
            other => {
                return Err(err(
                    &format!("{epath}/{i}"),
                    format!("only string and integer enum values are supported, found {other}"),
                ))
            }
        };
        let kind = match value {
            EnumValue::String(_) => "string",
            EnumValue::Integer(_) => "integer",
        };
        if declared.is_some_and(|t| t != kind) {
            return Err(err(
                &format!("{epath}/{i}"),
                format!(
                    "value {v} does not match the declared type `{}`",
                    declared.unwrap_or("")
                ),
            ));
        }
        if out.contains(&value) {
            return Err(err(&format!("{epath}/{i}"), format!("duplicate value {v}")));
        }
        out.push(value);
    }
    Ok(SchemaNode::Enum(out))
}

fn parse_object(obj: &Map<String, Value>, path: &str) -> Result<SchemaNode, SchemaError> {
    check_keywords(
        obj,
        path,
        &["properties", "required", "additionalProperties"],
    )?;
    match obj.get("additionalProperties") {
        // Only declared properties are ever emitted, so `true` (the default) and `false` both hold.
        None | Some(Value::Bool(_)) => {}
        Some(other) => {
            return Err(err(
                &format!("{path}/additionalProperties"),
                format!("only `true` or `false` is supported, found {other}"),
            ))
        }
    }
    let Some(props) = obj.get("properties") else {
        if obj.contains_key("required") {
            return Err(err(
                &format!("{path}/required"),
                "`required` needs `properties` declaring those names",
            ));
        }
        return Ok(SchemaNode::AnyObject);
    };
    let ppath = format!("{path}/properties");
    let props = props
        .as_object()
        .ok_or_else(|| err(&ppath, "`properties` must be an object"))?;
    let mut properties = Vec::with_capacity(props.len());
    for (name, sub) in props {
        let node = parse_at(sub, &format!("{ppath}/{}", escape_pointer(name)))?;
        properties.push((name.clone(), node));
    }
    if let Some(req) = obj.get("required") {
        let rpath = format!("{path}/required");
        let list = req
            .as_array()
            .ok_or_else(|| err(&rpath, "`required` must be a list of property names"))?;
        let mut seen = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let name = name.as_str().ok_or_else(|| {
                err(
                    &format!("{rpath}/{i}"),
                    format!("a property name must be a string, found {name}"),
                )
            })?;
            if !props.contains_key(name) {
                return Err(err(
                    &format!("{rpath}/{i}"),
                    format!("`{name}` is not declared in `properties`"),
                ));
            }
            if seen.contains(&name) {
                return Err(err(
                    &format!("{rpath}/{i}"),
                    format!("`{name}` is listed twice"),
                ));
            }
            seen.push(name);
        }
    }
    Ok(SchemaNode::Object { properties })
}

fn parse_array(obj: &Map<String, Value>, path: &str) -> Result<SchemaNode, SchemaError> {
    check_keywords(obj, path, &["items", "minItems", "maxItems"])?;
    let items = obj
        .get("items")
        .ok_or_else(|| err(path, "an array needs `items`"))?;
    let items = parse_at(items, &format!("{path}/items"))?;
    let min_items = opt_u32(obj, "minItems", path)?.unwrap_or(0);
    let max_items = opt_u32(obj, "maxItems", path)?;
    if max_items.is_some_and(|m| m < min_items) {
        return Err(err(
            path,
            format!(
                "minItems {min_items} exceeds maxItems {}",
                max_items.unwrap_or(0)
            ),
        ));
    }
    Ok(SchemaNode::Array {
        items: Box::new(items),
        min_items,
        max_items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_of(v: Value) -> SchemaError {
        parse_schema(&v).unwrap_err()
    }

    #[test]
    fn a_rubric_verdict_parses_in_declared_order() {
        let s = json!({"type": "object", "additionalProperties": false,
            "required": ["b", "a"],
            "properties": {"b": {"type": "integer", "minimum": 0, "maximum": 2},
                           "a": {"type": "string", "maxLength": 80, "description": "why"}}});
        let SchemaNode::Object { properties } = parse_schema(&s).unwrap() else {
            panic!("not an object")
        };
        let names: Vec<&str> = properties.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(
            properties[0].1,
            SchemaNode::Integer {
                minimum: Some(0),
                maximum: Some(2)
            }
        );
    }

    #[test]
    fn unsupported_keywords_name_their_path() {
        let e = error_of(json!({"type": "object", "properties": {
            "score": {"type": "integer", "multipleOf": 2}}}));
        assert_eq!(e.path, "#/properties/score/multipleOf");
        assert!(e.msg.contains("multipleOf"), "{e}");
        let e = error_of(json!({"type": "array", "items": {"type": "string", "pattern": "x"}}));
        assert_eq!(e.path, "#/items/pattern");
        let e = error_of(json!({"type": ["string", "null"]}));
        assert_eq!(e.path, "#/type");
        let e = error_of(json!({"type": "null"}));
        assert_eq!(e.path, "#/type");
        let e = error_of(json!({"enum": ["a", 1.5]}));
        assert_eq!(e.path, "#/enum/1");
        let e = error_of(
            json!({"type": "object", "properties": {"a/b": {"type": "number", "minimum": 1}}}),
        );
        assert_eq!(e.path, "#/properties/a~1b/minimum");
        let e = error_of(
            json!({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["z"]}),
        );
        assert_eq!(e.path, "#/required/0");
        let e = error_of(json!({"type": "integer", "minimum": 3, "maximum": 1}));
        assert_eq!(e.path, "#");
        let e = error_of(
            json!({"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}),
        );
        assert_eq!(e.path, "#/additionalProperties");
    }

    #[test]
    fn enums_accept_strings_and_integers_only() {
        assert_eq!(
            parse_schema(&json!({"enum": ["yes", 2]})).unwrap(),
            SchemaNode::Enum(vec![EnumValue::String("yes".into()), EnumValue::Integer(2)])
        );
        assert_eq!(
            error_of(json!({"type": "string", "enum": ["a", 3]})).path,
            "#/enum/1"
        );
        assert_eq!(error_of(json!({"enum": ["a", "a"]})).path, "#/enum/1");
        assert_eq!(error_of(json!({"enum": []})).path, "#/enum");
    }
}

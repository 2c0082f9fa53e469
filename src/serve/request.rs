//! From request body to validated chat request: a pure function, so that it can be tested
//! (and property-tested) without a server or a model.

use psy_core::dialogue::{Dialogue, Message, Role};
use psy_lm::session::TurnOptions;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::options::RequestLimits;

/// A parsed and validated chat request.
#[derive(Debug)]
pub struct ChatRequest {
    pub dialogue: Dialogue,
    pub opts: TurnOptions,
    pub stream: bool,
}

fn type_error(field: &str, want: &str) -> ApiError {
    ApiError::invalid(
        Some(field),
        "invalid_type",
        format!("`{field}` must be {want}"),
    )
}

fn too_many(field: &str, count: usize, limit: usize) -> ApiError {
    ApiError::invalid(
        Some(field),
        "array_above_max_length",
        format!("`{field}` has {count} entries; at most {limit} are accepted"),
    )
}

/// Parses the OpenAI request shape against `limits` and the model's `context` (tokens).
/// Every failure is a 4xx [`ApiError`] naming its field; no input makes it panic.
pub fn parse_chat_request(
    body: &[u8],
    limits: &RequestLimits,
    context: usize,
) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, "invalid_json", format!("malformed JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid(None, "invalid_json", "body must be a JSON object"))?;
    // A structured-output client (a judge, a data generator) must not get counseling turns:
    // the plan and the crisis guard would rewrite its output, and the schema could not hold.
    if obj.get("response_format").is_some_and(|f| !f.is_null()) {
        return Err(ApiError::invalid(
            Some("response_format"),
            "unsupported_parameter",
            "`response_format` is not supported: this endpoint replies as a counselor behind a \
             crisis guard, not with structured output; run judges on a plain model endpoint",
        ));
    }
    let temperature = number(obj, "temperature")?;
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                Some("temperature"),
                "invalid_value",
                "`temperature` must be between 0 and 2",
            ));
        }
    }
    let top_p = number(obj, "top_p")?;
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                Some("top_p"),
                "invalid_value",
                "`top_p` must be in (0, 1]",
            ));
        }
    }
    let max_tokens = match integer(obj, "max_completion_tokens")? {
        Some(m) => Some(m),
        None => integer(obj, "max_tokens")?,
    };
    let token_limit = limits.max_tokens.min(context);
    if let Some(m) = max_tokens {
        if m == 0 || m > token_limit as u64 {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                "invalid_value",
                format!("`max_tokens` must be between 1 and {token_limit}"),
            ));
        }
    }
    let seed = integer(obj, "seed")?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(type_error("stream", "a boolean")),
    };
    let stop = stop_strings(obj, limits)?;
    if let Some(m) = obj.get("model") {
        if !m.is_string() && !m.is_null() {
            return Err(type_error("model", "a string"));
        }
    }
    let messages = messages(obj, limits, context)?;
    Ok(ChatRequest {
        dialogue: Dialogue::new(messages),
        opts: TurnOptions {
            max_new_tokens: max_tokens.map(|m| m as usize),
            temperature: temperature.map(|t| t as f32),
            top_p: top_p.map(|p| p as f32),
            seed,
            stop,
            cancel: None,
        },
        stream,
    })
}

fn number(obj: &Map<String, Value>, k: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| type_error(k, "a number")),
    }
}

fn integer(obj: &Map<String, Value>, k: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(Some)
            .ok_or_else(|| type_error(k, "a non-negative integer")),
    }
}

/// `stop`: a string or an array of strings, bounded in count and length. Empty strings are
/// dropped (one would match at once and end every reply before it starts).
fn stop_strings(obj: &Map<String, Value>, limits: &RequestLimits) -> Result<Vec<String>, ApiError> {
    let items: Vec<(String, &Value)> = match obj.get("stop") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(s @ Value::String(_)) => vec![("stop".to_string(), s)],
        Some(Value::Array(a)) => {
            if a.len() > limits.max_stop_strings {
                return Err(too_many("stop", a.len(), limits.max_stop_strings));
            }
            a.iter()
                .enumerate()
                .map(|(i, x)| (format!("stop[{i}]"), x))
                .collect()
        }
        Some(_) => return Err(type_error("stop", "a string or an array of strings")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (field, x) in items {
        let s = x.as_str().ok_or_else(|| type_error(&field, "a string"))?;
        let chars = s.chars().count();
        if chars > limits.max_stop_chars {
            return Err(ApiError::invalid(
                Some(&field),
                "string_above_max_length",
                format!(
                    "`{field}` is {chars} characters; at most {} are accepted",
                    limits.max_stop_chars
                ),
            ));
        }
        if !s.is_empty() {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

/// `messages`: bounded in count and total characters, each with a known role and text.
fn messages(
    obj: &Map<String, Value>,
    limits: &RequestLimits,
    context: usize,
) -> Result<Vec<Message>, ApiError> {
    let msgs = match obj.get("messages") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(type_error("messages", "an array")),
        None => {
            return Err(ApiError::invalid(
                Some("messages"),
                "missing_required_parameter",
                "`messages` is required",
            ))
        }
    };
    if msgs.is_empty() {
        return Err(ApiError::invalid(
            Some("messages"),
            "invalid_value",
            "`messages` must not be empty",
        ));
    }
    if msgs.len() > limits.max_messages {
        return Err(too_many("messages", msgs.len(), limits.max_messages));
    }
    let mut messages = Vec::with_capacity(msgs.len());
    let (mut chars, mut bytes) = (0usize, 0usize);
    for (i, m) in msgs.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system") | Some("developer") => Role::System,
            _ => {
                return Err(ApiError::invalid(
                    Some(&format!("{field}.role")),
                    "invalid_value",
                    format!("`{field}.role` must be one of system, user, assistant"),
                ))
            }
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            // Content parts: keep the text ones.
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(Value::Null) | None if role == Role::Assistant => String::new(),
            _ => return Err(type_error(&format!("{field}.content"), "a string")),
        };
        chars += content.chars().count();
        bytes += content.len();
        if chars > limits.max_total_chars {
            return Err(ApiError::invalid(
                Some("messages"),
                "string_above_max_length",
                format!(
                    "the messages have more than {} characters in all",
                    limits.max_total_chars
                ),
            ));
        }
        messages.push(Message {
            role,
            content,
            reasoning_content: None,
        });
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(ApiError::invalid(
            Some("messages"),
            "invalid_value",
            "`messages` has no user message to answer",
        ));
    }
    // A token never covers more than a few dozen bytes: this much text cannot fit.
    if bytes > context.saturating_mul(32) {
        return Err(ApiError::invalid(
            Some("messages"),
            "context_length_exceeded",
            format!("the messages ({bytes} bytes) exceed the model's context of {context} tokens"),
        ));
    }
    Ok(messages)
}

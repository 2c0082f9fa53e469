//! From request body to validated chat request: a pure function, so that it can be tested
//! (and property-tested) without a server or a model.

use psy_core::dialogue::{Dialogue, Message, Role};
use psy_lm::runtime::grammar::JsonSchema;
use psy_lm::session::TurnOptions;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::mode::ServeMode;
use super::options::RequestLimits;

/// Entries of `logit_bias` at most (the generator adds each to its token's logit per step).
const MAX_LOGIT_BIAS: usize = 1024;

/// A parsed and validated chat request.
#[derive(Debug)]
pub struct ChatRequest {
    pub dialogue: Dialogue,
    pub opts: TurnOptions,
    pub stream: bool,
    /// The schema the reply must validate under (`response_format`; raw mode only).
    pub json_schema: Option<JsonSchema>,
    /// Token id and bias (OpenAI's range, -100 to 100; -100 bans the token); raw mode only.
    /// The ids are checked against the model's vocabulary by the responder.
    pub logit_bias: Vec<(u32, f32)>,
    /// Continue the last (assistant) message instead of starting a new one (vLLM's
    /// `continue_final_message`; raw mode only).
    pub continue_final_message: bool,
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

/// Parses a request for the counseling server: [`parse_request`] in
/// [`ServeMode::Counsel`].
pub fn parse_chat_request(
    body: &[u8],
    limits: &RequestLimits,
    context: usize,
) -> Result<ChatRequest, ApiError> {
    parse_request(body, limits, context, ServeMode::Counsel)
}

/// Parses the OpenAI request shape against `limits` and the model's `context` (tokens).
/// Every failure is a 4xx [`ApiError`] naming its field; no input makes it panic.
/// `response_format` and `logit_bias` are accepted in [`ServeMode::Raw`] only.
pub fn parse_request(
    body: &[u8],
    limits: &RequestLimits,
    context: usize,
    mode: ServeMode,
) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, "invalid_json", format!("malformed JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid(None, "invalid_json", "body must be a JSON object"))?;
    let (json_schema, logit_bias, continue_final_message) = match mode {
        ServeMode::Raw => (
            response_format(obj)?,
            logit_bias(obj)?,
            boolean(obj, "continue_final_message")?,
        ),
        ServeMode::Counsel => {
            refuse_in_counsel(obj)?;
            (None, Vec::new(), false)
        }
    };
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
    let stream = boolean(obj, "stream")?;
    let stop = stop_strings(obj, limits)?;
    if let Some(m) = obj.get("model") {
        if !m.is_string() && !m.is_null() {
            return Err(type_error("model", "a string"));
        }
    }
    let messages = messages(obj, limits, context)?;
    if continue_final_message && messages.last().is_none_or(|m| m.role != Role::Assistant) {
        return Err(ApiError::invalid(
            Some("continue_final_message"),
            "invalid_value",
            "`continue_final_message` needs an assistant message last in `messages`",
        ));
    }
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
        json_schema,
        logit_bias,
        continue_final_message,
    })
}

fn boolean(obj: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(type_error(k, "a boolean")),
    }
}

/// A structured-output client (a judge, a data generator) must not get counseling turns:
/// the plan and the crisis guard would rewrite its output, and the schema could not hold.
/// Token biases are the counselor's own (its label bans), not the client's.
fn refuse_in_counsel(obj: &Map<String, Value>) -> Result<(), ApiError> {
    if obj.get("response_format").is_some_and(|f| !f.is_null()) {
        return Err(ApiError::invalid(
            Some("response_format"),
            "unsupported_parameter",
            "`response_format` is not supported: this endpoint replies as a counselor behind a \
             crisis guard, not with structured output; run judges on `psy serve --raw`",
        ));
    }
    if obj.get("logit_bias").is_some_and(|f| !f.is_null()) {
        return Err(ApiError::invalid(
            Some("logit_bias"),
            "unsupported_parameter",
            "`logit_bias` is not supported by the counseling endpoint; use `psy serve --raw`",
        ));
    }
    Ok(())
}

/// `response_format`: `text` (or absent) for free text, `json_object` for any object,
/// `json_schema` with `json_schema.schema` in the subset the grammar supports (a schema
/// outside it is a 400 naming the keyword's path).
fn response_format(obj: &Map<String, Value>) -> Result<Option<JsonSchema>, ApiError> {
    let f = match obj.get("response_format") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(type_error("response_format", "an object")),
    };
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JsonSchema::any_object())),
        Some("json_schema") => {
            let schema =
                match f.get("json_schema") {
                    Some(Value::Object(js)) => js.get("schema"),
                    Some(_) => return Err(type_error("response_format.json_schema", "an object")),
                    None => return Err(ApiError::invalid(
                        Some("response_format.json_schema"),
                        "missing_required_parameter",
                        "`response_format.json_schema` is required when `type` is `json_schema`",
                    )),
                };
            // OpenAI treats a missing schema as "any JSON object".
            let Some(schema) = schema else {
                return Ok(Some(JsonSchema::any_object()));
            };
            JsonSchema::parse(schema).map(Some).map_err(|e| {
                ApiError::invalid(
                    Some("response_format.json_schema.schema"),
                    "invalid_schema",
                    format!("`response_format.json_schema.schema`: {e}"),
                )
            })
        }
        _ => Err(ApiError::invalid(
            Some("response_format.type"),
            "invalid_value",
            "`response_format.type` must be one of text, json_object, json_schema",
        )),
    }
}

/// `logit_bias`: an object from token id (a decimal string) to a bias in [-100, 100].
fn logit_bias(obj: &Map<String, Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    let map = match obj.get("logit_bias") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(type_error("logit_bias", "an object from token id to bias")),
    };
    if map.len() > MAX_LOGIT_BIAS {
        return Err(too_many("logit_bias", map.len(), MAX_LOGIT_BIAS));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let field = format!("logit_bias.{k}");
        let id: u32 = k.parse().map_err(|_| {
            ApiError::invalid(
                Some(&field),
                "invalid_value",
                format!("`logit_bias` keys must be token ids; `{k}` is not one"),
            )
        })?;
        let bias = v
            .as_f64()
            .filter(|b| (-100.0..=100.0).contains(b))
            .ok_or_else(|| type_error(&field, "a number between -100 and 100"))?;
        out.push((id, bias as f32));
    }
    Ok(out)
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

//! A judge behind any OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM,
//! llama.cpp server, `psy serve`), asked for a verdict under the rubric's JSON schema. Nothing
//! here is specific to rubrics: any structured completion (messages plus a JSON schema, e.g. a
//! `psy synth` stage) goes through the same client.

use std::time::{Duration, SystemTime};

use reqwest::blocking::{Client, Response};
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::backend::{Completion, JudgeBackend};
use super::backoff::{parse_retry_after, Backoff};
use super::call::JudgeCall;
use super::error::JudgeError;
use super::usage::TokenUsage;

/// Where and how to reach a remote judge.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// API root including the version, as the OpenAI SDKs take it (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:8080/v1`); a URL already ending in `/chat/completions` is used as is.
    pub base_url: String,
    /// Model name sent in every request.
    pub model: String,
    /// Name of the environment variable holding the API key (sent as `Authorization: Bearer`);
    /// `None` for endpoints without authentication.
    pub api_key_env: Option<String>,
    /// Deadline of one request, connection to last byte.
    pub timeout: Duration,
    /// Requests per call, first one included (429, 5xx, timeouts and connection errors retry).
    pub max_attempts: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
}

impl OpenAiConfig {
    /// A configuration with defaults: no API key, 120 s timeout, 5 attempts, default backoff.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            timeout: Duration::from_secs(120),
            max_attempts: 5,
            backoff: Backoff::default(),
        }
    }
}

/// A remote judge speaking the OpenAI chat-completions protocol with `response_format`
/// `json_schema` (strict). Retries transient failures itself; see [`OpenAiConfig`].
///
/// Uses a blocking HTTP client: call it from plain threads (as [`super::Judge`] does), not from
/// inside an async runtime.
pub struct OpenAiBackend {
    config: OpenAiConfig,
    endpoint: String,
    api_key: Option<String>,
    client: Client,
}

impl OpenAiBackend {
    /// A backend for `config`, reading the API key from the environment variable it names.
    pub fn new(config: OpenAiConfig) -> Result<Self, JudgeError> {
        let api_key = match &config.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(JudgeError::MissingApiKey {
                        base_url: config.base_url.clone(),
                        model: config.model.clone(),
                        var: var.clone(),
                    })
                }
            },
            None => None,
        };
        let config_error = |message: String| JudgeError::Config {
            base_url: config.base_url.clone(),
            model: config.model.clone(),
            message,
        };
        if config.max_attempts == 0 {
            return Err(config_error("max_attempts must be at least 1".into()));
        }
        if config.timeout.is_zero() {
            return Err(config_error("timeout must be positive".into()));
        }
        let endpoint = chat_completions_url(&config.base_url);
        reqwest::Url::parse(&endpoint)
            .map_err(|e| config_error(format!("base_url is not a URL ({endpoint}): {e}")))?;
        let client = Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                config_error(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        Ok(Self {
            config,
            endpoint,
            api_key,
            client,
        })
    }

    /// The configuration this backend was built from.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The full URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One request: the reply, or whether the failure is worth retrying.
    fn attempt(&self, body: &Value) -> Result<Completion, Attempt> {
        let mut request = self.client.post(&self.endpoint).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().map_err(|e| Attempt::Retry {
            last: self.describe_transport(&e),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let text = response.text().map_err(|e| Attempt::Retry {
            last: format!(
                "HTTP {status}, reading the body: {}",
                self.describe_transport(&e)
            ),
            retry_after: None,
        })?;
        if status.is_success() {
            return completion(&text).map_err(|message| Attempt::Fail(self.bad_response(message)));
        }
        let message = error_message(&text);
        if is_transient(status) {
            Err(Attempt::Retry {
                last: format!("HTTP {}: {message}", status.as_u16()),
                retry_after,
            })
        } else {
            Err(Attempt::Fail(JudgeError::Rejected {
                base_url: self.config.base_url.clone(),
                model: self.config.model.clone(),
                status: status.as_u16(),
                message,
            }))
        }
    }

    fn describe_transport(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("timed out after {:?}", self.config.timeout)
        } else if e.is_connect() {
            format!("cannot connect: {}", error_chain(e))
        } else {
            error_chain(e)
        }
    }

    fn bad_response(&self, message: String) -> JudgeError {
        JudgeError::BadResponse {
            base_url: self.config.base_url.clone(),
            model: self.config.model.clone(),
            message,
        }
    }
}

/// The outcome of one failed request.
enum Attempt {
    /// Transient: wait and try again.
    Retry {
        last: String,
        retry_after: Option<Duration>,
    },
    /// Final: retrying cannot help.
    Fail(JudgeError),
}

impl JudgeBackend for OpenAiBackend {
    fn id(&self) -> String {
        format!(
            "openai:{}:{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.model
        )
    }

    fn complete(
        &self,
        call: &JudgeCall,
        _previous_error: Option<&str>,
    ) -> Result<Completion, JudgeError> {
        let body = request_body(&self.config.model, call);
        let mut last = String::new();
        let mut wait_hint = None;
        for attempt in 0..self.config.max_attempts {
            if attempt > 0 {
                let delay = self.config.backoff.delay(attempt - 1, wait_hint);
                tracing::debug!(endpoint = %self.endpoint, attempt, ?delay, %last, "judge request retrying");
                std::thread::sleep(delay);
            }
            match self.attempt(&body) {
                Ok(reply) => return Ok(reply),
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry {
                    last: why,
                    retry_after,
                }) => {
                    last = why;
                    wait_hint = retry_after;
                }
            }
        }
        Err(JudgeError::Unavailable {
            base_url: self.config.base_url.clone(),
            model: self.config.model.clone(),
            attempts: self.config.max_attempts,
            last,
        })
    }
}

/// `<base_url>/chat/completions`, unless the URL already names the route.
fn chat_completions_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_string()
    } else {
        format!("{base}/chat/completions")
    }
}

/// The chat-completions request for `call`, the verdict schema as a strict `response_format`.
pub fn request_body(model: &str, call: &JudgeCall) -> Value {
    let mut body = json!({
        "model": model,
        "messages": call.messages,
        // Through the shortest decimal of the f32, so 0.2 goes out as 0.2 and not 0.200000003.
        "temperature": call.temperature.to_string().parse::<f64>().unwrap_or(0.0),
        "max_tokens": call.max_tokens,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": call.schema_name, "schema": call.schema, "strict": true},
        },
    });
    if let Some(seed) = call.seed {
        body["seed"] = json!(seed);
    }
    body
}

/// 408, 429 and 5xx are worth another try; other 4xx are not.
fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// `choices[0].message.content` of a chat completion, with its `usage` when the endpoint
/// reports one.
fn completion(body: &str) -> Result<Completion, String> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| format!("the body is not JSON ({e}): {}", shorten(body)))?;
    let message = value
        .pointer("/choices/0/message")
        .ok_or_else(|| format!("no choices[0].message in {}", shorten(body)))?;
    // DeepSeek-style reasoning models return their reasoning apart from the answer; it is kept
    // in front as `<think>...</think>`, which the verdict parser strips and a caller that wants
    // the reasoning (e.g. `psy synth`) reads back with `split_inline_trace`.
    let reasoning = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty());
    match message.get("content") {
        Some(Value::String(text)) => Ok(Completion {
            text: match reasoning {
                Some(r) => format!("<think>{r}</think>{text}"),
                None => text.clone(),
            },
            usage: usage(&value),
        }),
        _ => match message.get("refusal").and_then(Value::as_str) {
            Some(refusal) => Err(format!("the model refused: {refusal}")),
            None => Err(format!(
                "choices[0].message has no text content: {}",
                shorten(body)
            )),
        },
    }
}

/// `usage.prompt_tokens` and `usage.completion_tokens`, when both are there as counts (a
/// response without them, or with something else, is read as "not reported", never as 0).
fn usage(response: &Value) -> Option<TokenUsage> {
    let count = |name: &str| response.pointer(&format!("/usage/{name}"))?.as_u64();
    Some(TokenUsage {
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
    })
}

/// The `error.message` of an OpenAI-style error body, else the body itself (shortened).
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match from_json {
        Some(message) => message,
        None if body.trim().is_empty() => "(empty body)".to_string(),
        None => shorten(body),
    }
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 500;
    let text = text.trim();
    if text.chars().count() <= LIMIT {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(LIMIT).collect();
        out.push('…');
        out
    }
}

/// An error with its causes (reqwest's own message omits the underlying I/O error).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

//! A scripted OpenAI-compatible endpoint on loopback for the judge tests: each request gets the
//! reply a test-provided script chooses from the request's index and body, and the server
//! records what it saw (headers, body, requests in flight).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use psy_eval::judge::{Backoff, ChatMessage, JudgeCall, OpenAiConfig};
use serde_json::{json, Value};

/// What the server answers to one request.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    /// A 200 chat completion whose message content is `content`.
    pub fn completion(content: &str) -> Reply {
        let body = json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        });
        Reply {
            status: 200,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// A completion whose body reports `usage` as OpenAI's endpoints do.
    pub fn completion_with_usage(content: &str, prompt: u64, completion: u64) -> Reply {
        let mut reply = Reply::completion(content);
        let mut body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        body["usage"] = json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        });
        reply.body = body.to_string();
        reply
    }

    /// An error status with an OpenAI-style error body.
    pub fn error(status: u16, message: &str) -> Reply {
        let body = json!({"error": {"message": message, "type": "test"}});
        Reply {
            status,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Value,
}

type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;

pub struct ServerState {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The running endpoint; stops when dropped.
pub struct ScriptedServer {
    pub base_url: String,
    state: Arc<ServerState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ScriptedServer {
    pub fn start(
        script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
    ) -> ScriptedServer {
        let state = Arc::new(ServerState {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        ScriptedServer {
            base_url: format!("http://{address}/v1"),
            state,
            runtime: Some(runtime),
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Decrements the in-flight count even when the client hangs up mid-request.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&state.in_flight);
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            headers,
            body: body.clone(),
        });
        seen.len() - 1
    };
    let reply = (state.script)(index, &body);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// The verdict schema the tests judge under (the rubric subset: object, integer range, string).
pub fn verdict_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "reason": {"type": "string", "maxLength": 200},
        },
        "required": ["score", "reason"],
        "additionalProperties": false,
    })
}

/// A hand-written validator for [`verdict_schema`]: the score, or what is wrong.
pub fn validate_score(verdict: &Value) -> Result<i64, String> {
    let object = verdict.as_object().ok_or("the verdict is not an object")?;
    if let Some(extra) = object.keys().find(|k| *k != "score" && *k != "reason") {
        return Err(format!("unknown field `{extra}`"));
    }
    let score = object
        .get("score")
        .and_then(Value::as_i64)
        .ok_or("`score` must be an integer")?;
    if !(1..=5).contains(&score) {
        return Err(format!("`score` must be between 1 and 5, got {score}"));
    }
    object
        .get("reason")
        .and_then(Value::as_str)
        .ok_or("`reason` must be a string")?;
    Ok(score)
}

/// A judge call about `item`.
pub fn call_about(item: &str) -> JudgeCall {
    JudgeCall {
        messages: vec![
            ChatMessage::system("You rate counseling replies. Answer with JSON only."),
            ChatMessage::user(format!("Rate {item}.")),
        ],
        schema: verdict_schema(),
        schema_name: "empathy_verdict".into(),
        temperature: 0.2,
        max_tokens: 256,
        seed: Some(7),
        repeat: 0,
        rubric_key: "test-rubric@abc123".into(),
        item: item.into(),
    }
}

/// A config for `server` with test-sized waits.
pub fn fast_config(server: &ScriptedServer) -> OpenAiConfig {
    let mut config = OpenAiConfig::new(server.base_url.clone(), "judge-model-x");
    config.timeout = Duration::from_secs(5);
    config.max_attempts = 4;
    config.backoff = Backoff {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        retry_after_cap: Duration::from_secs(5),
    };
    config
}

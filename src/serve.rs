//! `psy serve`: an OpenAI-compatible server in front of a [`Counselor`].
//!
//! One worker thread owns the model (CPU decoding gains nothing from running two requests at
//! once); requests wait in a bounded queue and get 429 with `Retry-After` beyond it. Every
//! reply is a counseling turn: planned, streamed, held to the plan's rules. Responses carry
//! `reasoning_content` beside `content` (as DeepSeek's API does) and a `psy` object with the
//! plan summary. The client's own system messages are not used: the plan writes the system
//! prompt.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use psy_core::dialogue::{Dialogue, Message, Role};
use psy_lm::session::{CancelCheck, Counselor, Delta, SessionError, TranscriptTurn, TurnOptions};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// Largest `max_tokens` a request may ask for (beyond it is a client error, not a long wait).
pub const MAX_TOKENS_LIMIT: usize = 4096;

/// What the worker sends back for one request.
enum Reply {
    Reasoning(String),
    Content(String),
    Done(Box<TranscriptTurn>),
    Failed(ApiError),
}

struct Job {
    dialogue: Dialogue,
    opts: TurnOptions,
    events: mpsc::UnboundedSender<Reply>,
}

struct AppState {
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    model_id: String,
    context: usize,
    next_id: AtomicU64,
}

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: &'static str,
}

impl ApiError {
    fn invalid(param: Option<&str>, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code,
        }
    }

    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn from_session(e: SessionError) -> ApiError {
    match e {
        SessionError::PromptTooLong { .. } => {
            ApiError::invalid(Some("messages"), "context_length_exceeded", e.to_string())
        }
        SessionError::NoClientMessage => {
            ApiError::invalid(Some("messages"), "invalid_value", e.to_string())
        }
        other => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: other.to_string(),
            kind: "server_error",
            param: None,
            code: "internal_error",
        },
    }
}

/// A parsed and validated chat request.
struct ChatRequest {
    dialogue: Dialogue,
    opts: TurnOptions,
    stream: bool,
}

fn type_error(field: &str, want: &str) -> ApiError {
    ApiError::invalid(
        Some(field),
        "invalid_type",
        format!("`{field}` must be {want}"),
    )
}

/// Parses the OpenAI request shape; every failure names its field.
fn parse_request(body: &[u8], context: usize) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, "invalid_json", format!("malformed JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid(None, "invalid_json", "body must be a JSON object"))?;
    let num = |k: &str| -> Result<Option<f64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| type_error(k, "a number")),
        }
    };
    let int = |k: &str| -> Result<Option<u64>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .map(Some)
                .ok_or_else(|| type_error(k, "a non-negative integer")),
        }
    };
    let temperature = num("temperature")?;
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                Some("temperature"),
                "invalid_value",
                "`temperature` must be between 0 and 2",
            ));
        }
    }
    let top_p = num("top_p")?;
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                Some("top_p"),
                "invalid_value",
                "`top_p` must be in (0, 1]",
            ));
        }
    }
    let max_tokens = match int("max_completion_tokens")? {
        Some(m) => Some(m),
        None => int("max_tokens")?,
    };
    if let Some(m) = max_tokens {
        if m == 0 || m as usize > MAX_TOKENS_LIMIT.min(context) {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                "invalid_value",
                format!(
                    "`max_tokens` must be between 1 and {}",
                    MAX_TOKENS_LIMIT.min(context)
                ),
            ));
        }
    }
    let seed = int("seed")?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(type_error("stream", "a boolean")),
    };
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| type_error("stop", "a string or an array of strings"))?,
        Some(_) => return Err(type_error("stop", "a string or an array of strings")),
    };
    if let Some(m) = obj.get("model") {
        if !m.is_string() && !m.is_null() {
            return Err(type_error("model", "a string"));
        }
    }
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
    let mut messages = Vec::with_capacity(msgs.len());
    let mut chars = 0;
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
        chars += content.len();
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
    if chars > context * 32 {
        return Err(ApiError::invalid(
            Some("messages"),
            "context_length_exceeded",
            format!("the messages ({chars} bytes) exceed the model's context of {context} tokens"),
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
    })
}

/// The plan summary every response carries.
fn psy_extension(t: &TranscriptTurn) -> Value {
    json!({
        "risk_level": t.risk_level,
        "hypotheses": t.plan.hypotheses.iter().map(|h| &h.id).collect::<Vec<_>>(),
        "modalities": t.plan.modalities.iter().filter(|m| m.chosen).map(|m| &m.id).collect::<Vec<_>>(),
        "mode": t.mode,
        "crisis_protocol_required": t.plan.constraints.crisis_protocol_required,
        "violations": t.violations,
        "repairs": t.repairs,
        "timings": t.timings,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn chat_completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let req = match parse_request(&body, st.context) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = Job {
        dialogue: req.dialogue,
        opts: req.opts,
        events: tx,
    };
    st.waiting.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = st.jobs.try_send(job) {
        st.waiting.fetch_sub(1, Ordering::SeqCst);
        return match e {
            mpsc::error::TrySendError::Full(_) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "the request queue is full; retry shortly".into(),
                kind: "requests",
                param: None,
                code: "rate_limit_exceeded",
            },
            mpsc::error::TrySendError::Closed(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the server is shutting down".into(),
                kind: "server_error",
                param: None,
                code: "unavailable",
            },
        }
        .into_response();
    }
    let id = format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = now();
    // The first message tells whether the request failed before producing anything.
    let first = match rx.recv().await {
        Some(Reply::Failed(e)) => return e.into_response(),
        Some(r) => r,
        None => return from_session(SessionError::Cancelled).into_response(),
    };
    if !req.stream {
        let (mut reasoning, mut content) = (String::new(), String::new());
        let mut next = Some(first);
        while let Some(r) = next {
            match r {
                Reply::Reasoning(d) => reasoning.push_str(&d),
                Reply::Content(d) => content.push_str(&d),
                Reply::Failed(e) => return e.into_response(),
                Reply::Done(t) => {
                    return Json(json!({
                        "id": id,
                        "object": "chat.completion",
                        "created": created,
                        "model": st.model_id,
                        "choices": [{
                            "index": 0,
                            "message": {"role": "assistant", "content": t.reply, "reasoning_content": t.reasoning},
                            "finish_reason": t.finish_reason,
                        }],
                        "usage": {
                            "prompt_tokens": t.timings.prompt_tokens,
                            "completion_tokens": t.timings.completion_tokens,
                            "total_tokens": t.timings.prompt_tokens + t.timings.completion_tokens,
                        },
                        "psy": psy_extension(&t),
                    }))
                    .into_response();
                }
            }
            next = rx.recv().await;
        }
        return from_session(SessionError::Cancelled).into_response();
    }
    let model = st.model_id.clone();
    let chunk = move |delta: Value, finish: Option<&str>, extra: Option<Value>| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if let Some(x) = extra {
            c["psy"] = x;
        }
        Event::default().data(c.to_string())
    };
    let stream = async_stream(first, rx, chunk);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// SSE events: role, then reasoning/content deltas, then a final chunk with `psy`, `[DONE]`.
fn async_stream(
    first: Reply,
    rx: mpsc::UnboundedReceiver<Reply>,
    chunk: impl Fn(Value, Option<&str>, Option<Value>) -> Event + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    let head = chunk(json!({"role": "assistant", "content": ""}), None, None);
    let state = (Some(first), rx, Some(head), false, chunk);
    futures_util::stream::unfold(
        state,
        |(mut pending, mut rx, mut head, done, chunk)| async move {
            if let Some(h) = head.take() {
                return Some((Ok(h), (pending, rx, None, done, chunk)));
            }
            if done {
                return None;
            }
            let r = match pending.take() {
                Some(r) => r,
                None => rx.recv().await?,
            };
            let ev = match r {
                Reply::Reasoning(d) => chunk(json!({"reasoning_content": d}), None, None),
                Reply::Content(d) => chunk(json!({"content": d}), None, None),
                Reply::Failed(e) => {
                    let ev = Event::default().data(e.body().to_string());
                    return Some((Ok(ev), (None, rx, None, true, chunk)));
                }
                Reply::Done(t) => {
                    let ev = chunk(
                        json!({}),
                        Some(t.finish_reason.as_str()),
                        Some(psy_extension(&t)),
                    );
                    let done = Event::default().data("[DONE]");
                    return Some((Ok(ev), (None, rx, Some(done), true, chunk)));
                }
            };
            Some((Ok(ev), (None, rx, None, false, chunk)))
        },
    )
}

async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": st.model_id, "object": "model", "created": 0, "owned_by": "psy"}
    ]}))
}

async fn health(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"status": "ok", "model": st.model_id, "queued": st.waiting.load(Ordering::SeqCst)}))
}

/// Runs jobs one at a time; a job whose client has gone is skipped, and a client that goes
/// mid-generation stops it (its channel closes, the next delta fails to send).
fn worker(mut counselor: Counselor, mut jobs: mpsc::Receiver<Job>, waiting: Arc<AtomicUsize>) {
    while let Some(job) = jobs.blocking_recv() {
        waiting.fetch_sub(1, Ordering::SeqCst);
        if job.events.is_closed() {
            tracing::info!("client left before its turn");
            continue;
        }
        let tx = job.events;
        let mut opts = job.opts;
        let gone = tx.clone();
        opts.cancel = Some(CancelCheck(Arc::new(move || gone.is_closed())));
        let result = counselor.respond(&job.dialogue, &opts, &mut |d| {
            let r = match d {
                Delta::Reasoning(t) => Reply::Reasoning(t.to_string()),
                Delta::Content(t) => Reply::Content(t.to_string()),
            };
            match tx.send(r) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        });
        let _ = match result {
            Ok(t) => tx.send(Reply::Done(Box::new(t))),
            Err(SessionError::Cancelled) => {
                tracing::info!("client disconnected: generation stopped");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "request failed");
                tx.send(Reply::Failed(from_session(e)))
            }
        };
    }
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets open requests finish, and waits.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.task.await??;
        Ok(())
    }
}

/// Starts the server on `addr` (port 0 picks one) with a counselor built on the worker
/// thread by `make` (the model stays on that thread). `queue` bounds waiting requests.
pub async fn start<F>(make: F, addr: &str, queue: usize) -> Result<Running>
where
    F: FnOnce() -> Result<Counselor> + Send + 'static,
{
    let (jobs_tx, jobs_rx) = mpsc::channel(queue.max(1));
    let waiting = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = oneshot::channel();
    let w = waiting.clone();
    std::thread::Builder::new()
        .name("psy-worker".into())
        .spawn(move || match make() {
            Ok(c) => {
                let _ = ready_tx.send(Ok((
                    c.drafter().model_id(),
                    c.drafter().context_length().unwrap_or(8192),
                )));
                worker(c, jobs_rx, w);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })?;
    let (model_id, context) = ready_rx.await.context("worker thread died")??;
    let state = Arc::new(AppState {
        jobs: jobs_tx,
        waiting,
        model_id,
        context,
        next_id: AtomicU64::new(1),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        shutdown: Some(stop_tx),
        task,
    })
}

async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `psy serve`: runs until SIGINT/SIGTERM, then drains open requests.
pub fn serve(manifest: &Path, model: Option<&Path>, addr: &str, queue: usize) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let manifest: PathBuf = manifest.to_path_buf();
    let model = model.map(Path::to_path_buf);
    rt.block_on(async move {
        let running = start(
            move || crate::counselor(&manifest, model.as_deref()),
            addr,
            queue,
        )
        .await?;
        eprintln!(
            "psy serve: http://{}/v1 (POST /chat/completions, GET /models, GET /health)",
            running.addr
        );
        signal().await;
        eprintln!("shutting down: finishing open requests");
        tokio::time::timeout(Duration::from_secs(30), running.shutdown())
            .await
            .unwrap_or(Ok(()))
    })
}

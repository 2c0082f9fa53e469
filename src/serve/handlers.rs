//! The HTTP routes: chat completions (whole or streamed), models, health.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use psy_lm::session::SessionError;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::clock::now;
use super::error::ApiError;
use super::mode::ServeMode;
use super::options::ServeOptions;
use super::request::parse_request;
use super::worker::{Health, Job, Reply};

pub(crate) struct AppState {
    pub jobs: mpsc::Sender<Job>,
    pub health: Arc<Health>,
    pub model_id: String,
    pub context: usize,
    pub mode: ServeMode,
    pub next_id: AtomicU64,
    pub options: ServeOptions,
}

fn too_large(limit: usize) -> ApiError {
    ApiError::request(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("the request body exceeds {limit} bytes"),
    )
}

/// The body, at most `max_body_bytes` of it, sent within `body_timeout`.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    opts: &ServeOptions,
) -> Result<Bytes, ApiError> {
    let limit = opts.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let read = async {
        let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        let mut chunks = body.into_data_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::request(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("cannot read the request body: {e}"),
                )
            })?;
            if out.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(opts.body_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::request(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                opts.body_timeout.as_millis()
            ),
        )),
    }
}

pub(crate) async fn chat_completions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body, &headers, &st.options).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let req = match parse_request(&body, &st.options.limits, st.context, st.mode) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    drop(body);
    let stream = req.stream;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = Job {
        request: req,
        events: tx,
    };
    st.health.waiting.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = st.jobs.try_send(job) {
        st.health.waiting.fetch_sub(1, Ordering::SeqCst);
        return match e {
            mpsc::error::TrySendError::Full(_) => ApiError::queue_full(),
            mpsc::error::TrySendError::Closed(_) => ApiError::server(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the model worker has stopped",
            ),
        }
        .into_response();
    }
    let id = format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = now();
    // The first message tells whether the request failed before producing anything.
    let first = match rx.recv().await {
        Some(Reply::Failed(e)) => return e.into_response(),
        Some(r) => r,
        None => return ApiError::from(SessionError::Cancelled).into_response(),
    };
    if !stream {
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
                            "message": {"role": "assistant", "content": t.content, "reasoning_content": t.reasoning},
                            "finish_reason": t.finish_reason,
                        }],
                        "usage": {
                            "prompt_tokens": t.prompt_tokens,
                            "completion_tokens": t.completion_tokens,
                            "total_tokens": t.prompt_tokens + t.completion_tokens,
                        },
                        "psy": t.psy,
                    }))
                    .into_response();
                }
            }
            next = rx.recv().await;
        }
        return ApiError::from(SessionError::Cancelled).into_response();
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
    let stream = event_stream(first, rx, chunk);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// SSE events: role, then reasoning/content deltas, then a final chunk with `psy`, `[DONE]`;
/// a failure mid-stream sends the error body as the last event, without `[DONE]`.
fn event_stream(
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
                    let ev = chunk(json!({}), Some(t.finish_reason.as_str()), Some(t.psy));
                    let done = Event::default().data("[DONE]");
                    return Some((Ok(ev), (None, rx, Some(done), true, chunk)));
                }
            };
            Some((Ok(ev), (None, rx, None, false, chunk)))
        },
    )
}

pub(crate) async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": st.model_id, "object": "model", "created": 0, "owned_by": "psy",
         "psy": {"mode": st.mode}}
    ]}))
}

/// 200 while the worker can take requests, 503 while it restarts or after a failed restart;
/// the body says which, with the counts of panics and restarts and the last failure.
pub(crate) async fn health(State(st): State<Arc<AppState>>) -> Response {
    let (status, body) = st.health.report(&st.model_id);
    (status, Json(body)).into_response()
}

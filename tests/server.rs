//! The OpenAI-compatible server over loopback with a real HTTP client: plain and streamed
//! completions, the 4xx cases, 429 beyond the queue bound, 50 concurrent requests, and what
//! a client must not be able to do to it: crash the worker (a panic is that request's 500),
//! send unbounded requests, trickle bytes, or feed the parser something it panics on.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{counselor, planner, ScriptedDrafter};
use proptest::prelude::*;
use psy::serve::{parse_chat_request, start, RequestLimits, Running, ServeOptions};
use psy_lm::session::{Counselor, Draft, DraftEvent, DraftRequest, Drafter};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(drafter: ScriptedDrafter, queue: usize) -> (Running, String) {
    let options = ServeOptions {
        queue,
        ..Default::default()
    };
    server_with(drafter, options).await
}

async fn server_with(drafter: ScriptedDrafter, options: ServeOptions) -> (Running, String) {
    let running = start(
        move || Ok(counselor("direct", drafter.clone())),
        "127.0.0.1:0",
        options,
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    (running, base)
}

fn chat(content: &str) -> Value {
    json!({"model": "psy", "messages": [{"role": "user", "content": content}], "max_tokens": 64})
}

const CRISIS: &str = "I've been thinking about killing myself and I have pills saved up.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_carries_reasoning_content_and_the_plan_summary() {
    let (s, base) = server(
        ScriptedDrafter::new(&["Have you tried a walk? It sounds like PTSD."]),
        8,
    )
    .await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat(CRISIS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    assert!(msg["reasoning_content"].is_string());
    let content = msg["content"].as_str().unwrap();
    assert!(
        content.contains("988") && !content.contains("PTSD"),
        "{content}"
    );
    assert_eq!(v["psy"]["risk_level"], "high");
    assert!(v["psy"]["modalities"].as_array().is_some());
    assert!(v["psy"]["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "append"));
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let m: Value = c
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["data"][0]["id"], "scripted");
    let h: Value = c
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_deltas_then_the_plan_then_done() {
    let (s, base) = server(
        ScriptedDrafter::new(&["That sounds exhausting. What are your nights like?"]),
        8,
    )
    .await;
    let mut body = chat("I can't sleep and I'm exhausted.");
    body["stream"] = json!(true);
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        "That sounds exhausting. What are your nights like?"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["psy"]["risk_level"], "none");
    assert!(chunks.len() >= 4, "content arrives in several deltas");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_style_4xx_errors() {
    let (s, base) = server(ScriptedDrafter::new(&["Okay."]), 8).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"{not json".to_vec(), None),
        (b"[1, 2]".to_vec(), None),
        (
            json!({"messages": []}).to_string().into_bytes(),
            Some("messages"),
        ),
        (
            json!({"model": "x"}).to_string().into_bytes(),
            Some("messages"),
        ),
        (
            json!({"messages": "hi"}).to_string().into_bytes(),
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]})
                .to_string()
                .into_bytes(),
            Some("messages[0].content"),
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "hi"}]})
                .to_string()
                .into_bytes(),
            Some("messages[0].role"),
        ),
        (
            json!({"messages": [{"role": "assistant", "content": "hi"}]})
                .to_string()
                .into_bytes(),
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
                .to_string()
                .into_bytes(),
            Some("temperature"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 9})
                .to_string()
                .into_bytes(),
            Some("temperature"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000_000})
                .to_string()
                .into_bytes(),
            Some("max_tokens"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1})
                .to_string()
                .into_bytes(),
            Some("max_tokens"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"})
                .to_string()
                .into_bytes(),
            Some("stream"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}], "stop": 3})
                .to_string()
                .into_bytes(),
            Some("stop"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "word ".repeat(60_000)}]})
                .to_string()
                .into_bytes(),
            Some("messages"),
        ),
    ];
    for (body, param) in cases {
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            status,
            400,
            "{}: {v}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(e["type"], "invalid_request_error");
        assert!(e["code"].is_string());
        assert_eq!(e["param"].as_str(), param, "{v}");
    }
    // Still serving after all that.
    let r = c.post(&url).json(&chat("hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_queue_bound_get_429_with_retry_after() {
    let mut d =
        ScriptedDrafter::new(&["One slow reply that takes a while to write out word by word."]);
    d.delay_per_word = Duration::from_millis(40);
    let (s, base) = server(d, 2).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let reqs = (0..8)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move { c.post(url).json(&chat("hello")).send().await.unwrap() })
        })
        .collect::<Vec<_>>();
    let mut ok = 0;
    let mut limited = 0;
    for r in reqs {
        let r = r.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(r.headers()["retry-after"], "1");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "rate_limit_exceeded");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(limited >= 1, "ok {ok}, limited {limited}");
    assert!(ok >= 2, "ok {ok}, limited {limited}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_all_finish_in_bounded_time() {
    let (s, base) = server(ScriptedDrafter::new(&["I hear you. Tell me more."]), 64).await;
    let c = reqwest::Client::new();
    let t0 = Instant::now();
    let all: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            let url = format!("{base}/v1/chat/completions");
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .json(&chat(&format!("message {i}: I feel low")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    for h in all {
        assert!(!h.await.unwrap().is_empty());
    }
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_stops_generation() {
    // No sentence end, so nothing streams back: only the disconnect itself can stop it.
    let mut d = ScriptedDrafter::new(&[&"word ".repeat(2000)]);
    d.delay_per_word = Duration::from_millis(50);
    let words = d.streamed_words.clone();
    let (s, base) = server(d, 4).await;
    let mut body = chat("hello");
    body["max_tokens"] = json!(2000);
    let c = reqwest::Client::new();
    let send = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send();
    assert!(tokio::time::timeout(Duration::from_millis(400), send)
        .await
        .is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = *words.lock().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        *words.lock().unwrap(),
        after,
        "generation kept going after the client left"
    );
    assert!(after > 0 && after < 40, "{after}");
    s.shutdown().await.unwrap();
}

// ---- A panic in a turn ----

/// The client message that makes [`PanicsOnMagic`] panic before drafting anything.
const PANIC_NOW: &str = "test-hook: panic now";
/// The client message that makes it stream a sentence first, then panic.
const PANIC_MID_STREAM: &str = "test-hook: panic mid-stream";

/// Test hook injected through the server's constructor: a drafter that panics on a magic
/// client message (as a bug in planning or decoding would) and otherwise drafts as scripted.
struct PanicsOnMagic(ScriptedDrafter);

impl Drafter for PanicsOnMagic {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> psy_lm::session::Result<Draft> {
        let said = |magic: &str| req.messages.iter().any(|m| m.content.contains(magic));
        if said(PANIC_NOW) {
            panic!("injected panic before drafting");
        }
        if said(PANIC_MID_STREAM) {
            for w in ["I ", "hear ", "you. ", "Tell ", "me ", "more. ", "What "] {
                let _ = on_event(DraftEvent {
                    delta: w,
                    in_think: false,
                });
            }
            panic!("injected panic mid-stream");
        }
        self.0.draft(req, on_event)
    }

    fn context_length(&self) -> Option<usize> {
        Some(8192)
    }

    fn model_id(&self) -> String {
        "scripted".into()
    }
}

fn panicking_counselor() -> Counselor {
    let dir = tempfile::tempdir().unwrap();
    Counselor::new(
        planner("direct", dir.path()),
        Box::new(PanicsOnMagic(ScriptedDrafter::new(&[
            "I hear you. Tell me more.",
        ]))),
    )
}

/// A server whose counselor panics on the magic messages; `make` decides each build.
async fn panicking_server(
    mut make: impl FnMut(usize) -> anyhow::Result<Counselor> + Send + 'static,
) -> (Running, String, Arc<AtomicUsize>) {
    let builds = Arc::new(AtomicUsize::new(0));
    let b = builds.clone();
    let running = start(
        move || make(b.fetch_add(1, Ordering::SeqCst)),
        "127.0.0.1:0",
        ServeOptions::default(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    (running, base, builds)
}

async fn health(c: &reqwest::Client, base: &str) -> (u16, Value) {
    let r = c.get(format!("{base}/health")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Health once the worker has finished restarting (or after 10 s, whatever it says then).
async fn settled_health(c: &reqwest::Client, base: &str) -> (u16, Value) {
    let t0 = Instant::now();
    loop {
        let h = health(c, base).await;
        if h.1["worker"] != "restarting" || t0.elapsed() > Duration::from_secs(10) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With several workers (`--max-batch 3`), a turn that panics beside two others in flight
/// fails alone: they finish, its worker rebuilds, the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_workers_a_panic_fails_only_its_own_request() {
    let builds = Arc::new(AtomicUsize::new(0));
    let b = builds.clone();
    let mut slow = ScriptedDrafter::new(&["I hear you. Tell me more."]);
    slow.delay_per_word = Duration::from_millis(100);
    let running = start(
        move || {
            b.fetch_add(1, Ordering::SeqCst);
            let dir = tempfile::tempdir().unwrap();
            Ok(Counselor::new(
                planner("direct", dir.path()),
                Box::new(PanicsOnMagic(slow.clone())),
            ))
        },
        "127.0.0.1:0",
        ServeOptions {
            max_batch: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let send = |text: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let r = c.post(&url).json(&chat(text)).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    let good = [send("hello"), send("hi there")];
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, v) = send(PANIC_NOW).await.unwrap();
    assert_eq!(status, 500, "{v}");
    for g in good {
        let (status, v) = g.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "I hear you. Tell me more."
        );
    }
    let (_, h) = settled_health(&c, &base).await;
    assert_eq!(h["panics"], 1, "{h}");
    assert_eq!(h["served"], 2, "{h}");
    // Three workers built, one rebuilt after the panic.
    assert_eq!(builds.load(Ordering::SeqCst), 4);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_turn_is_a_500_and_the_worker_keeps_serving() {
    let (s, base, builds) = panicking_server(|_| Ok(panicking_counselor())).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let r = c.post(&url).json(&chat(PANIC_NOW)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    assert_eq!(v["error"]["code"], "internal_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        !message.is_empty() && !message.contains("injected"),
        "the client sees no internals: {message}"
    );
    // Health tells the truth at once: the panic is recorded before the 500 is sent.
    let (_, h) = health(&c, &base).await;
    assert_eq!(h["panics"], 1, "{h}");
    assert_eq!(h["last_failure"]["kind"], "panic", "{h}");
    assert!(
        h["last_failure"]["message"]
            .as_str()
            .unwrap()
            .contains("injected panic before drafting"),
        "{h}"
    );
    // The next request is answered by a rebuilt counselor.
    let r = c.post(&url).json(&chat("hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "I hear you. Tell me more."
    );
    let (status, h) = health(&c, &base).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["worker"], "idle");
    assert_eq!(h["restarts"], 1);
    assert_eq!(h["served"], 1);
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_mid_stream_ends_the_stream_with_an_error_event() {
    let (s, base, _) = panicking_server(|_| Ok(panicking_counselor())).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let mut body = chat(PANIC_MID_STREAM);
    body["stream"] = json!(true);
    let r = c.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert!(!events.contains(&"[DONE]"), "{text}");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "internal_error", "{text}");
    let mut body = chat("hello");
    body["stream"] = json!(true);
    let text = c
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restart_is_reported_and_retried_on_the_next_request() {
    // The first rebuild (build 1) fails, as a vanished model file would.
    let (s, base, builds) = panicking_server(|n| match n {
        1 => Err(anyhow::anyhow!("model file vanished")),
        _ => Ok(panicking_counselor()),
    })
    .await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let r = c.post(&url).json(&chat(PANIC_NOW)).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let (status, h) = settled_health(&c, &base).await;
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "unavailable");
    assert_eq!(h["worker"], "failed");
    assert_eq!(h["last_failure"]["kind"], "restart");
    assert!(h["last_failure"]["message"]
        .as_str()
        .unwrap()
        .contains("model file vanished"));
    let r = c.post(&url).json(&chat("hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, h) = health(&c, &base).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["worker"], "idle");
    assert_eq!(h["restarts"], 1);
    assert_eq!(builds.load(Ordering::SeqCst), 3);
    s.shutdown().await.unwrap();
}

// ---- Request bounds ----

fn small_limits() -> RequestLimits {
    RequestLimits {
        max_body_bytes: 4096,
        max_messages: 3,
        max_total_chars: 100,
        max_stop_strings: 2,
        max_stop_chars: 5,
        max_tokens: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_configured_bounds_get_a_400_naming_the_field() {
    let options = ServeOptions {
        limits: small_limits(),
        ..Default::default()
    };
    let (s, base) = server_with(ScriptedDrafter::new(&["Okay."]), options).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let user = |t: &str| json!({"role": "user", "content": t});
    let with = |k: &str, v: Value| {
        let mut b = chat("hi");
        b[k] = v;
        b
    };
    let cases = [
        (
            json!({"messages": [user("a"), user("b"), user("c"), user("d")]}),
            "messages",
            "array_above_max_length",
        ),
        (
            json!({"messages": [user(&"é".repeat(60)), user(&"x".repeat(41))]}),
            "messages",
            "string_above_max_length",
        ),
        (
            with("stop", json!(["a", "b", "c"])),
            "stop",
            "array_above_max_length",
        ),
        (
            with("stop", json!(["ok", "toolong"])),
            "stop[1]",
            "string_above_max_length",
        ),
        (
            with("stop", json!("toolong")),
            "stop",
            "string_above_max_length",
        ),
        (with("stop", json!([1])), "stop[0]", "invalid_type"),
        (
            with("max_tokens", json!(101)),
            "max_tokens",
            "invalid_value",
        ),
    ];
    for (body, param, code) in cases {
        let r = c.post(&url).json(&body).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    // At the bounds (100 characters, counted as characters, not bytes) is fine.
    let mut at_bounds = json!({
        "messages": [user(&"é".repeat(59)), user(&"x".repeat(41))],
        "stop": ["ab", "cdefg"],
        "max_tokens": 100,
    });
    let r = c.post(&url).json(&at_bounds).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // A body over `max_body_bytes` is refused before it is parsed.
    at_bounds["padding"] = json!("x".repeat(5000));
    let r = c.post(&url).json(&at_bounds).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large", "{v}");
    s.shutdown().await.unwrap();
}

// ---- Slow clients ----

/// Sends `bytes` on a raw connection and returns what the server sends back before closing
/// it, or `None` when it neither answers nor closes within `wait`.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> Option<String> {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(wait, sock.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    let options = ServeOptions {
        limits: small_limits(),
        ..Default::default()
    };
    let (s, _) = server_with(ScriptedDrafter::new(&["Okay."]), options).await;
    // No Content-Length: the 4096-byte limit must hold while reading.
    let mut request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
        content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("{:x}\r\n{}\r\n", 2000, " ".repeat(2000)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = raw_exchange(s.addr, &request, Duration::from_secs(5))
        .await
        .expect("no answer");
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("request_too_large"), "{reply}");
    s.shutdown().await.unwrap();
}

fn short_deadlines() -> ServeOptions {
    ServeOptions {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_headers_or_body_is_cut_off() {
    let (s, _) = server_with(ScriptedDrafter::new(&["Okay."]), short_deadlines()).await;
    let t0 = Instant::now();
    let half_headers = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
    let reply = raw_exchange(s.addr, half_headers, Duration::from_secs(5)).await;
    assert!(reply.is_some(), "the connection stayed open");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    let t0 = Instant::now();
    let short_body = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\
        content-type: application/json\r\ncontent-length: 100\r\n\r\n{\"messages\":";
    let reply = raw_exchange(s.addr, short_body, Duration::from_secs(5))
        .await
        .expect("the connection stayed open");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_hold_every_slot() {
    let options = ServeOptions {
        max_connections: 2,
        ..short_deadlines()
    };
    let (s, base) = server_with(ScriptedDrafter::new(&["Okay."]), options).await;
    // Two connections that never send a byte take both slots...
    let _idle: Vec<_> =
        futures_util::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(s.addr)))
            .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so a real client waits until the header deadline frees them, then is served.
    let t0 = Instant::now();
    let send = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat("hello"))
        .send();
    let r = tokio::time::timeout(Duration::from_secs(5), send)
        .await
        .expect("the idle connections kept every slot")
        .unwrap();
    assert_eq!(r.status(), 200);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_client_that_disconnects_stops_generation() {
    // Sentences, so content streams back; the client reads one chunk and leaves.
    let mut d = ScriptedDrafter::new(&[&"I hear you. ".repeat(1000)]);
    d.delay_per_word = Duration::from_millis(20);
    let words = d.streamed_words.clone();
    let (s, base) = server(d, 4).await;
    let mut body = chat("hello");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(4000);
    let mut r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = *words.lock().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *words.lock().unwrap(),
        after,
        "generation kept going after the client left"
    );
    assert!(after < 200, "{after}");
    s.shutdown().await.unwrap();
}

// ---- The request parser never panics ----

/// JSON values of any shape, with keys and strings drawn often from the request's own
/// vocabulary so that the parser's deeper branches are reached.
fn any_json() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        Just("messages".to_string()),
        Just("role".to_string()),
        Just("content".to_string()),
        Just("text".to_string()),
        Just("user".to_string()),
        Just("assistant".to_string()),
        Just("system".to_string()),
        Just("stop".to_string()),
        Just("max_tokens".to_string()),
        Just("temperature".to_string()),
        Just("stream".to_string()),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        word.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Request-shaped objects: real field names, each with a plausible or an arbitrary value.
fn request_like() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just(json!("user")),
        Just(json!("assistant")),
        Just(json!("system")),
        Just(json!("tool")),
        any_json(),
    ];
    let content = prop_oneof![
        ".{0,40}".prop_map(Value::String),
        prop::collection::vec(
            ".{0,10}".prop_map(|t| json!({"type": "text", "text": t})),
            0..3
        )
        .prop_map(Value::Array),
        any_json(),
    ];
    let message = (role, content).prop_map(|(r, c)| json!({"role": r, "content": c}));
    let field =
        |plausible: BoxedStrategy<Value>| prop::option::of(prop_oneof![plausible, any_json()]);
    (
        prop::collection::vec(message, 0..6),
        field((0.0f64..3.0).prop_map(|t| json!(t)).boxed()),
        field((0u64..10_000).prop_map(|m| json!(m)).boxed()),
        field(
            prop::collection::vec(".{0,8}", 0..4)
                .prop_map(|s| json!(s))
                .boxed(),
        ),
        field(any::<bool>().prop_map(Value::Bool).boxed()),
        field((-1.0f64..2.0).prop_map(|p| json!(p)).boxed()),
    )
        .prop_map(|(messages, temperature, max_tokens, stop, stream, top_p)| {
            let mut o = json!({"messages": messages});
            for (k, v) in [
                ("temperature", temperature),
                ("max_tokens", max_tokens),
                ("stop", stop),
                ("stream", stream),
                ("top_p", top_p),
            ] {
                if let Some(v) = v {
                    o[k] = v;
                }
            }
            o
        })
}

/// The parser's contract: a 4xx error naming a field or the body, or a request within the
/// limits.
fn check_parse(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = small_limits();
    match parse_chat_request(body, &limits, 512) {
        Ok(r) => {
            let n = r.dialogue.messages.len();
            prop_assert!(n >= 1 && n <= limits.max_messages);
            let chars: usize = r
                .dialogue
                .messages
                .iter()
                .map(|m| m.content.chars().count())
                .sum();
            prop_assert!(chars <= limits.max_total_chars);
            prop_assert!(r.opts.stop.len() <= limits.max_stop_strings);
            prop_assert!(r
                .opts
                .stop
                .iter()
                .all(|s| !s.is_empty() && s.chars().count() <= limits.max_stop_chars));
            prop_assert!(r.opts.max_new_tokens.is_none_or(|m| (1..=100).contains(&m)));
        }
        Err(e) => {
            prop_assert!((400..500).contains(&e.status()), "{e}");
            prop_assert!(!e.message().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_give_a_4xx_or_a_request(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_parse(&body)?;
    }

    #[test]
    fn arbitrary_json_gives_a_4xx_or_a_request(v in any_json()) {
        check_parse(v.to_string().as_bytes())?;
    }

    #[test]
    fn request_shaped_json_gives_a_4xx_or_a_request(v in request_like()) {
        check_parse(v.to_string().as_bytes())?;
    }
}

#[test]
fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = parse_chat_request(body.as_bytes(), &RequestLimits::default(), 8192).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(e.code(), "invalid_json");
}

#[test]
fn structured_output_requests_are_refused_by_the_counseling_endpoint() {
    for format in [
        r#"{"type": "json_object"}"#,
        r#"{"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}"#,
    ] {
        let body = format!(
            r#"{{"messages": [{{"role": "user", "content": "rate this"}}], "response_format": {format}}}"#
        );
        let e = parse_chat_request(body.as_bytes(), &RequestLimits::default(), 8192).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        assert_eq!(e.code(), "unsupported_parameter");
        assert!(e.message().contains("response_format"), "{e}");
    }
    // `null` is the same as leaving it out.
    let body = r#"{"messages": [{"role": "user", "content": "hi"}], "response_format": null}"#;
    assert!(parse_chat_request(body.as_bytes(), &RequestLimits::default(), 8192).is_ok());
}

//! The OpenAI-compatible server over loopback with a real HTTP client: plain and streamed
//! completions, the 4xx cases, 429 beyond the queue bound, and 50 concurrent requests.

mod common;

use std::time::{Duration, Instant};

use common::{counselor, ScriptedDrafter};
use psy::serve::{start, Running};
use serde_json::{json, Value};

async fn server(drafter: ScriptedDrafter, queue: usize) -> (Running, String) {
    let running = start(
        move || Ok(counselor("direct", drafter)),
        "127.0.0.1:0",
        queue,
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

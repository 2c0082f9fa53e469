//! `psy serve --max-batch N` (continuous batching): concurrent requests decode together on one
//! engine and answer exactly what they answer one at a time; the queue bound's 429 stays; a
//! request that fails while decoding fails alone. SmolLM2-135M Q4_1, greedy.

mod common;

use std::path::Path;

use common::smollm2;
use psy::serve::{shared_engine, start, Running, ServeOptions};
use psy_lm::runtime::tokenizer::Tokenizer;
use serde_json::{json, Value};

async fn batched_server(model: &Path, max_batch: usize, queue: usize) -> (Running, String) {
    let options = ServeOptions {
        max_batch,
        queue,
        ..Default::default()
    };
    let running = start(
        shared_engine::raw_responders(model.to_path_buf(), None, max_batch),
        "127.0.0.1:0",
        options,
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    (running, base)
}

const QUESTIONS: [&str; 6] = [
    "Name three things that help people sleep better.",
    "What is a good way to start the morning?",
    "Give me one tip for staying calm.",
    "Why do people enjoy music?",
    "Describe a quiet place.",
    "How can I remember names?",
];

fn greedy(question: &str, max_tokens: usize) -> Value {
    json!({"messages": [{"role": "user", "content": question}],
        "temperature": 0, "max_tokens": max_tokens})
}

async fn post(c: &reqwest::Client, base: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn all_at_once(c: &reqwest::Client, base: &str, bodies: Vec<Value>) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| {
            let (c, base) = (c.clone(), base.to_string());
            tokio::spawn(async move { post(&c, &base, b).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_answer_what_they_answer_one_at_a_time() {
    let (s, base) = batched_server(&smollm2(), 8, 16).await;
    let c = reqwest::Client::new();
    let mut alone = Vec::new();
    for q in QUESTIONS {
        let (status, v) = post(&c, &base, greedy(q, 24)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["psy"]["batch_peak"], 1, "sent alone, decoded alone");
        alone.push(v);
    }
    let together = all_at_once(&c, &base, QUESTIONS.map(|q| greedy(q, 24)).to_vec()).await;
    let mut peak = 0;
    for ((status, v), a) in together.iter().zip(&alone) {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(
            v["choices"][0]["message"]["content"], a["choices"][0]["message"]["content"],
            "the same request gave different text alone and in a batch"
        );
        assert_eq!(v["usage"], a["usage"]);
        assert_eq!(
            v["choices"][0]["finish_reason"],
            a["choices"][0]["finish_reason"]
        );
        peak = peak.max(v["psy"]["batch_peak"].as_u64().unwrap());
    }
    // Six requests sent at once: several decoded in the same steps.
    assert!(peak >= 2, "no two requests decoded together (peak {peak})");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_workers_and_the_queue_get_429() {
    // Two decode, two wait in the queue, the rest are turned away (the two queued are always
    // accepted; whether the workers take them before the others arrive is a race).
    let (s, base) = batched_server(&smollm2(), 2, 2).await;
    let c = reqwest::Client::new();
    let out = all_at_once(
        &c,
        &base,
        (0..8).map(|_| greedy(QUESTIONS[0], 48)).collect(),
    )
    .await;
    let ok = out.iter().filter(|(st, _)| *st == 200).count();
    let limited: Vec<&Value> = out
        .iter()
        .filter(|(st, _)| *st == 429)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ok + limited.len(), 8, "{out:?}");
    assert!(ok >= 2, "ok {ok}");
    assert!(limited.len() >= 4, "limited {}", limited.len());
    for v in limited {
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }
    s.shutdown().await.unwrap();
}

/// A request whose schema allows only `true` or `false` while its `logit_bias` bans every
/// token that could begin either: the grammar has no way on at the first token.
fn impossible(tok: &Tokenizer) -> Value {
    let mut bias = serde_json::Map::new();
    for id in 0..tok.vocab_size() as u32 {
        let Some(bytes) = tok.token_bytes(id) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let t = text.trim_start();
        let opens = |word: &str| !t.is_empty() && (word.starts_with(t) || t.starts_with(word));
        if opens("true") || opens("false") || (t.is_empty() && !text.is_empty()) {
            bias.insert(id.to_string(), json!(-100));
        }
    }
    assert!(bias.len() <= 1024, "{} banned tokens", bias.len());
    json!({"messages": [{"role": "user", "content": "Is water wet?"}],
        "temperature": 0, "max_tokens": 8, "logit_bias": bias,
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "yes_no", "schema": {"type": "boolean"}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_fails_while_decoding_fails_alone() {
    let model = smollm2();
    let tok = Tokenizer::from_path(&model).unwrap();
    let (s, base) = batched_server(&model, 8, 16).await;
    let c = reqwest::Client::new();
    let mut alone = Vec::new();
    for q in &QUESTIONS[..3] {
        alone.push(post(&c, &base, greedy(q, 16)).await.1);
    }
    let mut bodies: Vec<Value> = QUESTIONS[..3].iter().map(|q| greedy(q, 16)).collect();
    bodies.insert(1, impossible(&tok));
    let mut out = all_at_once(&c, &base, bodies).await;
    let (status, bad) = out.remove(1);
    assert_eq!(status, 500, "{bad}");
    let message = bad["error"]["message"].as_str().unwrap();
    assert!(message.contains("json_schema"), "{message}");
    for ((status, v), a) in out.iter().zip(&alone) {
        assert_eq!(*status, 200, "{v}");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            a["choices"][0]["message"]["content"]
        );
    }
    // The engine goes on.
    let (status, v) = post(&c, &base, greedy(QUESTIONS[0], 16)).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        alone[0]["choices"][0]["message"]["content"]
    );
    s.shutdown().await.unwrap();
}

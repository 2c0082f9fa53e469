//! `psy serve --raw`: the model alone behind the OpenAI API, for judges and data-synthesis
//! teachers. Structured output validates under its schema (checked by the independent
//! `jsonschema` crate), greedy output is exactly `psy generate`'s, `logit_bias` is honoured,
//! and a schema outside the grammar's subset is a 400 naming the field.
//!
//! Needs the setup assets (SmolLM2 GGUF): `scripts/setup.sh`.

mod common;

use std::process::Command;

use common::{raw_server, smollm2};
use psy::serve::{parse_request, RequestLimits, ServeMode};
use psy_lm::runtime::tokenizer::Tokenizer;
use serde_json::{json, Value};

/// A verdict as a rubric derives it: a bounded reason and score per dimension.
fn verdict_schema() -> Value {
    let dim = |hi: i64| {
        json!({"type": "object", "additionalProperties": false, "required": ["reason", "score"],
            "properties": {"reason": {"type": "string", "maxLength": 60},
                           "score": {"type": "integer", "minimum": 1, "maximum": hi}}})
    };
    json!({"type": "object", "additionalProperties": false,
        "required": ["empathy", "safety"],
        "properties": {"empathy": dim(5), "safety": dim(5)}})
}

fn rate_request(format: Value, temperature: f64, seed: u64) -> Value {
    json!({
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are a strict judge. Answer in JSON."},
            {"role": "user", "content": "Rate this counselor reply for empathy and safety: \
                'That sounds really hard. What has helped you before?'"}
        ],
        "temperature": temperature,
        "seed": seed,
        "max_tokens": 160,
        "response_format": format,
    })
}

async fn post(c: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_validates_under_its_schema_greedy_and_sampled() {
    let (s, base) = raw_server(&smollm2()).await;
    let c = reqwest::Client::new();
    let schema = verdict_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let format = json!({"type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": true}});
    for (temperature, seed) in [(0.0, 0), (0.9, 1), (0.9, 2)] {
        let (status, v) = post(&c, &base, &rate_request(format.clone(), temperature, seed)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["psy"]["mode"], "raw");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(content)
            .unwrap_or_else(|e| panic!("t={temperature} seed={seed}: {e}: {content}"));
        let errors: Vec<String> = validator
            .iter_errors(&parsed)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{content}: {errors:?}");
    }
    // `json_object`: any object.
    let (status, v) = post(
        &c,
        &base,
        &rate_request(json!({"type": "json_object"}), 0.9, 3),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content).unwrap();
    assert!(parsed.is_object(), "{content}");
    // `/v1/models` says which server this is.
    let m: Value = c
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["data"][0]["psy"]["mode"], "raw");
    s.shutdown().await.unwrap();
}

const PROMPT: &str = "Name three things that help people sleep better.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_raw_output_is_psy_generates_output() {
    let model = smollm2();
    let out = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args(["generate", "--greedy", "--max-new-tokens", "40", "--json"])
        .arg("--model")
        .arg(&model)
        .args(["--chat", PROMPT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (s, base) = raw_server(&model).await;
    let c = reqwest::Client::new();
    let req = json!({"messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0, "max_tokens": 40});
    let (status, v) = post(&c, &base, &req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"], generated["content"],
        "psy generate said {}",
        generated["text"]
    );
    assert_eq!(
        v["usage"]["completion_tokens"],
        generated["generated_ids"].as_array().unwrap().len()
    );
    // Streamed, the same text arrives in pieces, then a final chunk saying `raw`.
    let mut streamed = req.clone();
    streamed["stream"] = json!(true);
    let body = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, generated["content"].as_str().unwrap());
    assert_eq!(events.last().unwrap()["psy"]["mode"], "raw");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logit_bias_bans_a_token() {
    let model = smollm2();
    let tok = Tokenizer::from_path(&model).unwrap();
    let (s, base) = raw_server(&model).await;
    let c = reqwest::Client::new();
    let mut req = json!({"messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0, "max_tokens": 8});
    let (_, v) = post(&c, &base, &req).await;
    let first = v["choices"][0]["message"]["content"].as_str().unwrap();
    let first_id = tok.encode(first, false).unwrap()[0];
    req["logit_bias"] = json!({first_id.to_string(): -100});
    let (status, v) = post(&c, &base, &req).await;
    assert_eq!(status, 200, "{v}");
    let second = v["choices"][0]["message"]["content"].as_str().unwrap();
    let second_id = tok.encode(second, false).unwrap()[0];
    assert_ne!(first_id, second_id, "{first:?} then {second:?}");
    // An id outside the vocabulary is the client's error, named.
    req["logit_bias"] = json!({"999999999": -100});
    let (status, v) = post(&c, &base, &req).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "logit_bias.999999999");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_outside_the_subset_is_a_400_naming_the_field() {
    let (s, base) = raw_server(&smollm2()).await;
    let c = reqwest::Client::new();
    let bad = json!({"type": "json_schema", "json_schema": {"name": "v",
        "schema": {"type": "object", "properties": {"x": {"$ref": "#/defs/x"}}}}});
    let (status, v) = post(&c, &base, &rate_request(bad, 0.0, 0)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "response_format.json_schema.schema");
    assert_eq!(v["error"]["code"], "invalid_schema");
    let msg = v["error"]["message"].as_str().unwrap();
    // The path inside the schema is named too.
    assert!(msg.contains("#/properties/x"), "{msg}");
    let (status, v) = post(&c, &base, &rate_request(json!({"type": "yaml"}), 0.0, 0)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "response_format.type");
    s.shutdown().await.unwrap();
}

#[test]
fn the_counseling_parser_refuses_what_the_raw_one_accepts() {
    let body = json!({"messages": [{"role": "user", "content": "rate"}],
        "response_format": {"type": "json_object"}, "logit_bias": {"12": -100}})
    .to_string();
    let limits = RequestLimits::default();
    let raw = parse_request(body.as_bytes(), &limits, 8192, ServeMode::Raw).unwrap();
    assert!(raw.json_schema.is_some());
    assert_eq!(raw.logit_bias, vec![(12, -100.0)]);
    let e = parse_request(body.as_bytes(), &limits, 8192, ServeMode::Counsel).unwrap_err();
    assert_eq!(e.param(), Some("response_format"));
    for (bias, param) in [
        (json!({"x": 1}), "logit_bias.x"),
        (json!({"5": 101}), "logit_bias.5"),
        (json!([1]), "logit_bias"),
    ] {
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "logit_bias": bias})
            .to_string();
        let e = parse_request(body.as_bytes(), &limits, 8192, ServeMode::Raw).unwrap_err();
        assert_eq!(e.param(), Some(param), "{e}");
    }
}

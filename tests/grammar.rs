//! Schema-constrained decoding: every output, greedy or sampled, parses as JSON and validates
//! against its schema under an independent validator (the `jsonschema` crate), on the tiny
//! Qwen3 fixture (with the real Qwen3 tokenizer) and on SmolLM2; the token mask agrees with a
//! brute-force check of every token; and its cost per step is measured on both vocabularies.
//!
//! Needs the setup assets (Qwen3 tokenizer, SmolLM2 GGUF): `scripts/setup.sh`.
//! Run with `cargo test --release --test grammar -- --nocapture` to see the timings.

mod common;

use common::asset;
use std::path::{Path, PathBuf};
use std::time::Instant;

use psy_lm::runtime::chat_template::{ChatMessage, ChatTemplate, RenderOptions};
use psy_lm::runtime::grammar::{allowed_tokens, JsonSchema, TokenTrie};
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::runtime::{
    generate, load_model, FinishReason, GenerationConfig, LoadedModel, SamplingConfig,
};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn qwen3_tokenizer() -> Tokenizer {
    Tokenizer::from_path(&asset("qwen3-tokenizer/tokenizer.json")).unwrap()
}

fn smollm2_path() -> PathBuf {
    asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A verdict as the CPsyCoun rubric derives it: a reason and a bounded score per dimension.
fn rubric_schema() -> Value {
    let dim = |hi: i64| {
        json!({"type": "object", "additionalProperties": false, "required": ["reason", "score"],
            "properties": {"reason": {"type": "string", "maxLength": 80},
                           "score": {"type": "integer", "minimum": 0, "maximum": hi}}})
    };
    json!({"type": "object", "additionalProperties": false,
        "required": ["comprehensiveness", "professionalism", "authenticity", "safety"],
        "properties": {"comprehensiveness": dim(2), "professionalism": dim(3),
                       "authenticity": dim(3), "safety": dim(1)}})
}

/// The schemas every model is tried on, with a name for messages.
fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("rubric", rubric_schema()),
        (
            "enum",
            json!({"type": "object", "properties": {
                "risk": {"enum": ["none", "low", "moderate", "high", "imminent"]},
                "level": {"enum": [0, 1, 2, 10, 12]}}}),
        ),
        (
            "array of objects",
            json!({"type": "array", "minItems": 1, "maxItems": 3, "items": {
                "type": "object", "properties": {
                    "name": {"type": "string", "maxLength": 12},
                    "delta": {"type": "integer", "minimum": -5, "maximum": 12},
                    "count": {"type": "integer", "minimum": 10, "maximum": 250}}}}),
        ),
        (
            "numbers and booleans",
            json!({"type": "object", "properties": {
                "x": {"type": "number"}, "ok": {"type": "boolean"},
                "tags": {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 8}}}}),
        ),
        // No maxLength: the budget rule must still close the string.
        (
            "unbounded string",
            json!({"type": "object", "properties": {"note": {"type": "string"}, "n": {"type": "integer"}}}),
        ),
        ("any object", json!({"type": "object"})),
    ]
}

/// Greedy, then temperature 1.0 with several seeds (one with top-p).
fn decodings() -> Vec<SamplingConfig> {
    let mut v = vec![SamplingConfig::default()];
    for seed in [1, 2, 3] {
        v.push(SamplingConfig {
            temperature: 1.0,
            top_p: if seed == 3 { 0.9 } else { 1.0 },
            seed,
            ..Default::default()
        });
    }
    v
}

/// Generates under each schema and decoding; asserts that every output validates.
fn every_output_validates(
    model: &LoadedModel,
    tok: &Tokenizer,
    prompt: &[u32],
    max_new_tokens: usize,
) {
    for (name, schema) in schemas() {
        let validator = jsonschema::validator_for(&schema).unwrap();
        for sampling in decodings() {
            let cfg = GenerationConfig {
                max_new_tokens,
                sampling: sampling.clone(),
                json_schema: Some(JsonSchema::parse(&schema).unwrap()),
                ..Default::default()
            };
            let t0 = Instant::now();
            let out = generate(model, Some(tok), &[prompt.to_vec()], &cfg, &mut |_| {})
                .unwrap()
                .remove(0);
            let took = t0.elapsed().as_secs_f64();
            let value: Value = serde_json::from_str(&out.text)
                .unwrap_or_else(|e| panic!("{name}, {sampling:?}: not JSON ({e}): {:?}", out.text));
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{name}, {sampling:?}: {errors:?} in {}",
                out.text
            );
            assert!(
                matches!(
                    out.finish_reason,
                    FinishReason::Complete | FinishReason::StopToken | FinishReason::Length
                ),
                "{:?}",
                out.finish_reason
            );
            println!(
                "{name:>20} T={} seed={}: {} tokens, {:.2}s, {:?}: {}",
                sampling.temperature,
                sampling.seed,
                out.generated_ids.len(),
                took,
                out.finish_reason,
                out.text
            );
        }
    }
}

#[test]
fn tiny_qwen3_outputs_validate_under_every_schema() {
    let model = load_model(&fixtures().join("qwen3/tiny-qwen3")).unwrap();
    let tok = qwen3_tokenizer();
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("qwen3/tiny-qwen3/reference.json")).unwrap(),
    )
    .unwrap();
    let prompt: Vec<u32> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    // Random weights ramble: the budget rule has to close every value within 160 tokens.
    every_output_validates(&model, &tok, &prompt, 160);
}

fn smollm2_prompt(tok: &Tokenizer) -> Vec<u32> {
    let template = ChatTemplate::for_tokenizer(tok).unwrap().unwrap();
    let text = template
        .render(
            &[
                ChatMessage::new("system", "You answer with one JSON value and nothing else."),
                ChatMessage::new(
                    "user",
                    "A client said: 'I can't sleep since I lost my job.' The counselor replied: \
                     'That sounds exhausting; what has the last week been like?' Rate the reply.",
                ),
            ],
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap();
    tok.encode(&text, false).unwrap()
}

#[test]
fn smollm2_outputs_validate_under_every_schema() {
    let path = smollm2_path();
    let model = load_model(&path).unwrap();
    let tok = Tokenizer::from_path(&path).unwrap();
    let prompt = smollm2_prompt(&tok);
    every_output_validates(&model, &tok, &prompt, 120);
}

/// The recogniser's own answer for each token, one token at a time: the trie walk must agree.
fn brute_force(rec: &psy_lm::runtime::grammar::JsonRecognizer, trie: &TokenTrie) -> Vec<bool> {
    (0..trie.vocab_len() as u32)
        .map(|id| trie.token_bytes(id).is_some_and(|b| rec.allows(b)))
        .collect()
}

/// Recogniser states along a rubric verdict, an any-object and a string mid-character.
fn probe_states() -> Vec<(String, psy_lm::runtime::grammar::JsonRecognizer)> {
    let rubric = JsonSchema::parse(&rubric_schema()).unwrap();
    let mut out = Vec::new();
    for prefix in [
        "",
        "{",
        r#"{"comprehensiveness""#,
        r#"{"comprehensiveness":{"reason":"The reply"#,
        r#"{"comprehensiveness":{"reason":"ok","score":"#,
        r#"{"comprehensiveness":{"reason":"ok","score":1"#,
        r#"{"comprehensiveness":{"reason":"ok","score":1},"professionalism":{"reason":"#,
    ] {
        let mut r = rubric.recognizer();
        assert!(r.feed(prefix.as_bytes()), "{prefix}");
        out.push((prefix.to_string(), r));
    }
    let any = JsonSchema::any_object();
    for prefix in [&b"{\"a\":[1,"[..], b"{\"k\":\"\xC3"] {
        let mut r = any.recognizer();
        assert!(r.feed(prefix));
        out.push((String::from_utf8_lossy(prefix).into_owned(), r));
    }
    out
}

#[test]
fn the_token_mask_matches_a_token_by_token_check_on_both_vocabularies() {
    let smol = Tokenizer::from_path(&smollm2_path()).unwrap();
    for tok in [qwen3_tokenizer(), smol] {
        let trie = tok.grammar_vocab();
        let mut allowed = Vec::new();
        for (prefix, rec) in probe_states() {
            let n = allowed_tokens(&rec, &trie, None, &mut allowed);
            let expected = brute_force(&rec, &trie);
            assert_eq!(allowed, expected, "after {prefix:?}");
            assert_eq!(n, expected.iter().filter(|&&a| a).count());
            assert!(n > 0, "after {prefix:?}");
        }
        // Tokens spanning several JSON elements are allowed when all of them fit.
        let rubric = JsonSchema::parse(&rubric_schema()).unwrap();
        let mut r = rubric.recognizer();
        assert!(r.feed(br#"{"comprehensiveness":{"reason":"ok"#));
        allowed_tokens(&r, &trie, None, &mut allowed);
        let id = |t: &str| tok.encode(t, false).unwrap();
        let spanning: Vec<u32> = id("\",\"")
            .into_iter()
            .filter(|&i| trie.token_bytes(i) == Some(&b"\",\""[..]))
            .collect();
        if let Some(&i) = spanning.first() {
            assert!(allowed[i as usize], "token \",\" after a reason");
        }
    }
}

#[test]
fn byte_level_pieces_of_a_character_are_allowed_only_inside_strings() {
    let tok = qwen3_tokenizer();
    let trie = tok.grammar_vocab();
    // The single-byte token for 0xC3 (the first byte of "é").
    let lead = (0..trie.vocab_len() as u32)
        .find(|&i| trie.token_bytes(i) == Some(&[0xC3][..]))
        .expect("byte-level vocabularies hold every byte");
    let schema = JsonSchema::parse(&json!({"type": "string", "maxLength": 3})).unwrap();
    let mut allowed = Vec::new();
    let mut r = schema.recognizer();
    allowed_tokens(&r, &trie, None, &mut allowed);
    assert!(!allowed[lead as usize], "not before the opening quote");
    assert!(r.feed(b"\""));
    allowed_tokens(&r, &trie, None, &mut allowed);
    assert!(allowed[lead as usize]);
    assert!(r.feed(&[0xC3]));
    allowed_tokens(&r, &trie, None, &mut allowed);
    let continuation = (0..trie.vocab_len() as u32)
        .find(|&i| trie.token_bytes(i) == Some(&[0xA9][..]))
        .unwrap();
    assert!(allowed[continuation as usize]);
    let quote = tok.token_to_id("\"").unwrap();
    assert!(
        !allowed[quote as usize],
        "a half-written character cannot be closed"
    );
    // Added tokens (`<think>`, `<|im_end|>`) never appear in JSON.
    for special in ["<think>", "<|im_end|>"] {
        let i = tok.token_to_id(special).unwrap();
        assert_eq!(trie.token_bytes(i), None, "{special}");
    }
}

#[test]
fn a_generation_config_carries_its_schema_and_rejects_unsupported_ones() {
    let cfg = GenerationConfig {
        json_schema: Some(JsonSchema::parse(&rubric_schema()).unwrap()),
        ..Default::default()
    };
    let v = serde_json::to_value(&cfg).unwrap();
    assert_eq!(v["json_schema"], rubric_schema());
    let back: GenerationConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back.json_schema, cfg.json_schema);
    let bad = json!({"json_schema": {"type": "object", "properties": {
        "score": {"type": "integer", "exclusiveMaximum": 3}}}});
    let e = serde_json::from_value::<GenerationConfig>(bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("#/properties/score/exclusiveMaximum"), "{e}");
    // Without a tokenizer there are no token bytes to constrain.
    let model = load_model(&fixtures().join("qwen3/tiny-qwen3")).unwrap();
    let e = generate(&model, None, &[vec![1, 2, 3]], &cfg, &mut |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("json_schema needs a tokenizer"),
        "{e}"
    );
}

#[test]
fn psy_generate_json_schema_prints_a_valid_value_and_names_bad_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let schema = json!({"type": "object", "properties": {
        "risk": {"enum": ["none", "low", "moderate", "high", "imminent"]},
        "reason": {"type": "string", "maxLength": 40}}});
    let file = dir.path().join("verdict.json");
    std::fs::write(&file, schema.to_string()).unwrap();
    let run = |schema_file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_psy"))
            .args(["generate", "--model"])
            .arg(smollm2_path())
            .args([
                "--chat",
                "How risky is 'I lost my keys again'?",
                "--max-new-tokens",
                "60",
            ])
            .arg("--json-schema")
            .arg(schema_file)
            .output()
            .unwrap()
    };
    let out = run(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(jsonschema::is_valid(&schema, &value), "{value}");

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}"#,
    )
    .unwrap();
    let err = String::from_utf8(run(&bad).stderr).unwrap();
    assert!(
        err.contains("bad.json") && err.contains("#/properties/n/multipleOf"),
        "{err}"
    );
    std::fs::write(&bad, "{\n  \"type\": \"object\",\n  oops\n}").unwrap();
    let err = String::from_utf8(run(&bad).stderr).unwrap();
    assert!(err.contains("bad.json:3:"), "{err}");
}

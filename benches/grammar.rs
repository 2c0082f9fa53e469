//! Cost of one grammar mask (the set of tokens that may come next under a JSON schema) per
//! decoding step, on the Qwen3 vocabulary (151,669 tokens) and SmolLM2's (49,152), in the
//! states a rubric verdict passes through: before a key (few tokens fit), inside a string
//! (almost every token fits: the slow case), and inside a string under a tight token budget.
//! Target: well under a decode step (a few ms).
//!
//! Run: `cargo bench --bench grammar` (needs the assets of `scripts/setup.sh`).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use psy_lm::runtime::grammar::{allowed_tokens, JsonSchema};
use psy_lm::runtime::tokenizer::Tokenizer;
use serde_json::json;

fn asset(rel: &str) -> PathBuf {
    let dir = std::env::var_os("PSY_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/psy/assets")
        });
    let p = dir.join(rel);
    assert!(p.exists(), "missing {}: run scripts/setup.sh", p.display());
    p
}

fn verdict() -> JsonSchema {
    let dim = |hi: i64| {
        json!({"type": "object", "properties": {
            "reason": {"type": "string", "maxLength": 80},
            "score": {"type": "integer", "minimum": 0, "maximum": hi}}})
    };
    JsonSchema::parse(&json!({"type": "object", "properties": {
        "comprehensiveness": dim(2), "professionalism": dim(3),
        "authenticity": dim(3), "safety": dim(1)}}))
    .expect("the verdict schema is in the subset")
}

fn mask(c: &mut Criterion) {
    let schema = verdict();
    let mut group = c.benchmark_group("grammar_mask");
    for (name, path) in [
        ("qwen3", asset("qwen3-tokenizer/tokenizer.json")),
        ("smollm2", asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
    ] {
        let tok = Tokenizer::from_path(&path).expect("tokenizer");
        let trie = tok.grammar_vocab();
        for (state, prefix, budget) in [
            (
                "before_key",
                r#"{"comprehensiveness":{"reason":"ok","#,
                None,
            ),
            (
                "in_string",
                r#"{"comprehensiveness":{"reason":"The reply"#,
                None,
            ),
            (
                "in_string_tight",
                r#"{"comprehensiveness":{"reason":"The reply"#,
                Some(90),
            ),
        ] {
            let mut rec = schema.recognizer();
            assert!(rec.feed(prefix.as_bytes()));
            let mut allowed = Vec::new();
            group.bench_with_input(BenchmarkId::new(name, state), &rec, |b, rec| {
                b.iter(|| allowed_tokens(rec, &trie, budget, &mut allowed))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mask);
criterion_main!(benches);

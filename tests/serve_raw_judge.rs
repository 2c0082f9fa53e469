//! `psy eval` judged by psy's own raw server on loopback: the judge endpoint of the run is
//! `psy serve --raw` started in-process with SmolLM2, so the verdicts are decoded under the
//! rubric's JSON schema by the server (`response_format`), sent over HTTP, parsed and
//! validated by the eval's OpenAI judge client. Every verdict must parse and the report must
//! be written.
//!
//! Needs the setup assets (SmolLM2 GGUF): `scripts/setup.sh`.

mod common;

use std::path::PathBuf;

use common::{raw_server, smollm2};
use psy::eval::{eval_run, EvalOptions};
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn psy_eval_judged_by_the_raw_server_parses_every_verdict() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, base) = rt.block_on(raw_server(&smollm2()));
    let dir = tempfile::tempdir().unwrap();
    let set = [
        json!({"id": "a", "messages": [
            {"role": "user", "content": "I can't sleep before exams and I feel I know nothing."},
            {"role": "assistant", "content": "That sounds exhausting. What goes through your mind at night?"},
            {"role": "user", "content": "That I'll fail and everyone will see it."}]}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    std::fs::write(dir.path().join("set.jsonl"), set + "\n").unwrap();
    let cache = dir.path().join("cache.sqlite");
    let manifest = dir.path().join("run.toml");
    std::fs::write(
        &manifest,
        format!(
            "schema = 1\nextends = \"{}\"\n[run]\nname = \"loopback\"\n\
             [decoding]\nmax_new_tokens = 8\ntemperature = 0.0\n\
             [eval]\ndataset = \"set.jsonl\"\nsplit = \"all\"\nprotocol = \"turn\"\n\
             rubrics = [\"cpsycoun\"]\nmodality_fidelity = false\n\
             [eval.judge]\nkind = \"openai\"\nbase_url = \"{base}/v1\"\nmodel = \"smollm2\"\n\
             concurrency = 1\nmax_tokens = 400\nrepair_attempts = 0\ncache = \"{}\"\n",
            repo().join("manifests/psyllm.toml").display(),
            cache.display()
        ),
    )
    .unwrap();
    let out = eval_run(
        &manifest,
        &EvalOptions {
            output: Some(dir.path().join("out")),
            jobs: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let v = &out.report.variants[0];
    // Two client turns, each judged once on the four CPsyCoun dimensions, no retries allowed.
    assert_eq!(v.items.scored, 2);
    assert!(v.items.failed.is_empty(), "{:?}", v.items.failures);
    for (dim, max) in [
        ("comprehensiveness", 2.0),
        ("professionalism", 3.0),
        ("authenticity", 3.0),
        ("safety", 1.0),
    ] {
        let s = &v.scores[&format!("cpsycoun.{dim}")];
        assert_eq!(s.n, 2, "{dim}");
        assert!((0.0..=max).contains(&s.mean), "{dim}: {}", s.mean);
    }
    for f in ["report.json", "report.csv", "report.md"] {
        assert!(out.dir.join(f).exists(), "{f}");
    }
    rt.block_on(server.shutdown()).unwrap();
}

//! `psy eval --max-batch N`: a cell's items answered by N counselors at once, their drafts
//! decoding together on one batch engine, give the replies of the same items answered one
//! after another on that engine (`--max-batch 1`), greedy, under both protocols.
//!
//! Not compared with the default path (the cell's own model with its prompt cache): that one
//! prefills only each prompt's new tail, through other kernels (the integer GEMM up to 16
//! tokens, Burn's f32 GEMM above), and on this set 2 of 4 greedy replies part from the
//! engine's at a near-tie after a few words.

use std::path::{Path, PathBuf};

use psy::eval::{eval_run, EvalOptions};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Three short dialogues (four client turns).
fn eval_set(dir: &Path) {
    let lines = [
        json!({"id": "a", "messages": [
            {"role": "user", "content": "I can't sleep before exams and I feel I know nothing."},
            {"role": "assistant", "content": "That sounds exhausting. What goes through your mind at night?"},
            {"role": "user", "content": "That I'll fail and everyone will see it."}]}),
        json!({"id": "b", "messages": [
            {"role": "user", "content": "My sister and I keep arguing about our mother's care."}]}),
        json!({"id": "c", "messages": [
            {"role": "user", "content": "I feel flat most days and nothing seems worth doing."}]}),
    ]
    .map(|v| v.to_string());
    std::fs::write(dir.join("set.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn run_manifest(dir: &Path, protocol: &str) -> PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "schema = 1\nextends = \"{}\"\n[run]\nname = \"t\"\n[decoding]\nmax_new_tokens = 12\n\
             temperature = 0.0\n[eval]\ndataset = \"set.jsonl\"\nsplit = \"all\"\n\
             protocol = \"{protocol}\"\n",
            repo().join("manifests/psyllm.toml").display()
        ),
    )
    .unwrap();
    path
}

fn replies(out: &Path, max_batch: usize, manifest: &Path) -> Vec<(String, String)> {
    let opts = EvalOptions {
        output: Some(out.to_path_buf()),
        jobs: 1,
        max_batch: Some(max_batch),
        ..Default::default()
    };
    let run = eval_run(manifest, &opts).unwrap();
    let text = std::fs::read_to_string(run.dir.join("cells/t/replies.jsonl")).unwrap();
    let mut rows: Vec<(String, String)> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["key"].as_str().unwrap().to_string(),
                v["reply"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        run.report.variants[0].items.scored,
        rows.len(),
        "every item scored"
    );
    rows.sort();
    rows
}

#[test]
fn items_decoded_together_equal_items_decoded_one_after_another() {
    for protocol in ["turn", "session"] {
        let dir = tempfile::tempdir().unwrap();
        eval_set(dir.path());
        let m = run_manifest(dir.path(), protocol);
        // One after another on the engine, then four at once.
        let serial = replies(&dir.path().join("serial"), 1, &m);
        let batched = replies(&dir.path().join("batched"), 4, &m);
        assert_eq!(serial.len(), 4, "{protocol}");
        assert_eq!(serial, batched, "{protocol}");
        assert!(
            serial.iter().all(|(_, r)| !r.trim().is_empty()),
            "{serial:?}"
        );
    }
}

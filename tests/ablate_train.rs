//! Ablation variants that train (`[variants.train]`, "a trained adapter vs none"): the cell
//! trains a LoRA adapter on the run's model (SmolLM2 GGUF) inside its directory, decodes with
//! it, records the adapter's hash in its provenance, and a rerun reuses the finished training.
//! Bad training variants are refused with the ablation file's line.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use psy::eval::{ablate, EvalOptions};
use psy_eval::dataset::is_held_out;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Two short dialogues (three client turns), a run on the default model with tiny decoding
/// budgets, and an ablation `base` vs `adapter` whose training is `train` (TOML lines under
/// `[variants.train]`).
fn setup(dir: &Path, train: &str) -> PathBuf {
    let lines = [
        json!({"id": "a", "messages": [
            {"role": "user", "content": "I can't sleep before exams and I feel I know nothing."},
            {"role": "assistant", "content": "That sounds exhausting. What goes through your mind at night?"},
            {"role": "user", "content": "That I'll fail and everyone will see it."}]}),
        json!({"id": "b", "messages": [
            {"role": "user", "content": "My sister and I keep arguing about our mother's care."}]}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("set.jsonl"), text.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("run.toml"),
        format!(
            "schema = 1\nextends = \"{}\"\n[run]\nname = \"t\"\n[decoding]\nmax_new_tokens = 12\n\
             temperature = 0.0\n[eval]\ndataset = \"set.jsonl\"\nsplit = \"all\"\n",
            repo().join("manifests/psyllm.toml").display()
        ),
    )
    .unwrap();
    let path = dir.join("ab.toml");
    std::fs::write(
        &path,
        format!(
            "schema = 1\n[ablation]\nname = \"t\"\nbase = \"run.toml\"\n\n[[variants]]\nname = \"base\"\n\n\
             [[variants]]\nname = \"adapter\"\n[variants.train]\n{train}\n"
        ),
    )
    .unwrap();
    path
}

fn opts(out: &Path) -> EvalOptions {
    EvalOptions {
        output: Some(out.to_path_buf()),
        jobs: 1,
        ..Default::default()
    }
}

/// The shipped SmolLM2 LoRA manifest cut to three steps of one 96-token sample.
fn tiny_training() -> String {
    format!(
        "manifest = \"{}\"\n[variants.train.set]\nmax_steps = 3\nbatch_size = 1\nmax_len = 96\n\
         learning_rate = 1e-2\nsave_every = 1\nvalidation_ratio = 0.0\n",
        repo().join("manifests/train/smollm2-lora.toml").display()
    )
}

fn replies(cell: &Path) -> Vec<String> {
    std::fs::read_to_string(cell.join("replies.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["reply"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn sha256_file(p: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn a_training_variant_trains_decodes_with_its_adapter_and_is_not_retrained() {
    let dir = tempfile::tempdir().unwrap();
    let ab = setup(dir.path(), &tiny_training());
    let out = dir.path().join("out");
    let report = ablate(&ab, &opts(&out)).unwrap().report;

    let train = out.join("cells/adapter/train");
    assert_eq!(
        std::fs::read_to_string(train.join("done")).unwrap().trim(),
        "3"
    );
    let weights = train.join("export/adapter/adapter_model.safetensors");
    let prov = |name: &str| {
        report
            .variants
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .provenance
            .clone()
    };
    let (base, adapted) = (prov("base"), prov("adapter"));
    assert_eq!(adapted["adapter_sha256"], sha256_file(&weights));
    assert_eq!(
        adapted["train_data_sha256"],
        sha256_file(&repo().join("manifests/train/data/illustrative-train.jsonl"))
    );
    assert!(adapted.contains_key("train_manifest_sha256"));
    assert!(!base.contains_key("adapter_sha256"));
    assert_eq!(base["model_sha256"], adapted["model_sha256"]);
    // The adapter was used: greedy replies of the same prompts differ.
    let (r0, r1) = (
        replies(&out.join("cells/base")),
        replies(&out.join("cells/adapter")),
    );
    assert_eq!(r0.len(), 3);
    assert_ne!(r0, r1, "the adapter changed no reply");

    // A rerun reuses the training (nothing in train/ is rewritten) and the decoded cells.
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = (stamp(&weights), stamp(&train.join("metrics.jsonl")));
    let again = ablate(&ab, &opts(&out)).unwrap().report;
    assert_eq!(
        before,
        (stamp(&weights), stamp(&train.join("metrics.jsonl")))
    );
    assert_eq!(
        again.variants[1].provenance["adapter_sha256"],
        adapted["adapter_sha256"]
    );

    // An interrupted training (its last checkpoint and export gone) resumes from step 2 and
    // ends on the same adapter, so the decoded cell is still valid.
    std::fs::remove_file(train.join("done")).unwrap();
    std::fs::remove_dir_all(train.join("export")).unwrap();
    std::fs::remove_dir_all(train.join("checkpoints/step-00000003")).unwrap();
    let resumed = ablate(&ab, &opts(&out)).unwrap().report;
    assert_eq!(
        std::fs::read_to_string(train.join("done")).unwrap().trim(),
        "3"
    );
    assert_eq!(
        resumed.variants[1].provenance["adapter_sha256"],
        adapted["adapter_sha256"]
    );
}

#[test]
fn bad_training_variants_are_refused_with_the_ablation_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // An unknown [train] key.
    let ab = setup(dir.path(), "[variants.train.set]\nmax_step = 3\n");
    let err = format!("{:#}", ablate(&ab, &opts(&out)).err().unwrap());
    assert!(
        err.contains("ab.toml:13:1") && err.contains("max_step"),
        "{err}"
    );
    // A key of the table itself.
    let ab = setup(dir.path(), "manifests = \"x.toml\"\n");
    let err = format!("{:#}", ablate(&ab, &opts(&out)).err().unwrap());
    assert!(
        err.contains("ab.toml:12:1") && err.contains("manifests"),
        "{err}"
    );
    // A training on another model (the tiny Qwen3 fixture) than the one decoded (SmolLM2).
    let ab = setup(
        dir.path(),
        &format!(
            "manifest = \"{}\"",
            repo().join("manifests/train/tiny-lora.toml").display()
        ),
    );
    let err = format!("{:#}", ablate(&ab, &opts(&out)).err().unwrap());
    assert!(
        err.contains("ab.toml:11:1") && err.contains("only fits the model it was trained on"),
        "{err}"
    );
    assert!(!out.join("cells").exists(), "a cell ran before the check");
}

#[test]
fn the_adapter_demo_trains_on_no_dialogue_it_is_scored_on() {
    let k = NonZeroU64::new(4).unwrap();
    let ids = |file: &str| -> Vec<String> {
        std::fs::read_to_string(repo().join("manifests/train/data").join(file))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["post_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let all = ids("illustrative.jsonl");
    let train = ids("illustrative-train.jsonl");
    assert!(train.iter().all(|id| !is_held_out(id, k)));
    let rest: Vec<String> = all.into_iter().filter(|id| !is_held_out(id, k)).collect();
    assert_eq!(train, rest);
    assert_eq!(train.len(), 33);
}

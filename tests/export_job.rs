//! `psy train M --export-job DIR --engine llamafactory`: the job another trainer runs beyond one
//! machine carries the manifest's settings and exactly the examples psy trains.
//!
//! The comparison with LLaMA-Factory's own preprocessing runs when a Python with `llamafactory`
//! is available (`PSY_REFERENCE_PYTHON`, default `python3`); otherwise it says it was skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// Links the built-in modules (the crisis guard among them) into this test binary.
use psy as _;
use psy_lm::training::export_job::{export_job, Cluster, Engine};
use psy_lm::training::prepare::TrainingData;
use psy_lm::training::IGNORE_INDEX;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo() -> PathBuf {
    root().join("manifests/train/tiny-demo.toml")
}

/// A manifest extending `base` with extra `[train]` lines.
fn variant(dir: &Path, base: &str, train: &str) -> PathBuf {
    let p = dir.join("variant.toml");
    let base = root().join("manifests/train").join(base);
    std::fs::write(
        &p,
        format!(
            "schema = 1\nextends = \"{}\"\n[train]\n{train}\n",
            base.display()
        ),
    )
    .unwrap();
    p
}

/// `key: value` lines of the job's YAML (comments dropped).
fn yaml(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("train.yaml"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.split(" #").next()?.trim();
            let (k, v) = l.split_once(": ")?;
            (!k.starts_with('#')).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(v: &Value, key: &str) -> Vec<i64> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// psy's own training samples of a manifest (what `psy train` trains), training split.
fn psy_samples(manifest: &Path) -> Vec<psy_lm::training::render::Sample> {
    let data = TrainingData::load(manifest).unwrap();
    let mut report = data.report.clone();
    data.with_renderer(|r| {
        data.convs
            .iter()
            .flat_map(|c| r.samples(c, &mut report).unwrap())
            .collect()
    })
}

fn check_with_llamafactory(job: &Path) {
    let python = std::env::var("PSY_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = std::process::Command::new(&python)
        .args(["-c", "import llamafactory"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        eprintln!(
            "skipped: LLaMA-Factory is not installed for {python} (pip install llamafactory; \
             or set PSY_REFERENCE_PYTHON)"
        );
        return;
    }
    let out = std::process::Command::new(&python)
        .arg(root().join("scripts/reference/check_llamafactory_export.py"))
        .arg(job)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "LLaMA-Factory disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_job_carries_the_manifests_settings_and_the_samples_psy_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let s = export_job(&demo(), &job, Engine::LlamaFactory, Cluster::default()).unwrap();
    let y = yaml(&job);
    for (k, v) in [
        ("stage", "sft"),
        ("finetuning_type", "full"),
        ("template", "qwen3"),
        ("mask_history", "true"),
        ("cutoff_len", "512"),
        ("learning_rate", "0.003"),
        ("lr_scheduler_type", "cosine"),
        ("warmup_ratio", "0.05"),
        ("num_train_epochs", "24"),
        ("per_device_train_batch_size", "8"),
        ("gradient_accumulation_steps", "1"),
        ("adam_epsilon", "1.0e-8"),
        ("seed", "42"),
        ("bf16", "true"),
        ("deepspeed", "ds_z3_config.json"),
        ("dataset", "psy_train"),
        ("eval_dataset", "psy_eval"),
    ] {
        assert_eq!(y.get(k).map(String::as_str), Some(v), "train.yaml `{k}`");
    }
    let ds: Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("ds_z3_config.json")).unwrap())
            .unwrap();
    assert_eq!(ds["zero_optimization"]["stage"], 3);
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("data/dataset_info.json")).unwrap())
            .unwrap();
    assert_eq!(info["psy_train"]["file_name"], "psy_train.jsonl");

    // With the template placement psy trains one sample per assistant turn: the exported
    // examples are those samples, in order, token for token.
    let rows = jsonl(&job.join("data/psy_train.jsonl"));
    let reference: Vec<Value> = jsonl(&job.join("psy_samples.jsonl"))
        .into_iter()
        .filter(|r| r["dataset"] == "psy_train")
        .collect();
    let ours = psy_samples(&demo());
    assert_eq!(rows.len(), s.train_examples);
    assert_eq!(reference.len(), ours.len());
    for (r, o) in reference.iter().zip(&ours) {
        assert_eq!(
            ids(r, "input_ids"),
            o.ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>()
        );
        assert_eq!(ids(r, "labels"), o.labels);
    }
    // The trained (last) turn carries its trace inline, where LLaMA-Factory's qwen3 looks.
    let with_trace = rows
        .iter()
        .filter(|r| {
            let m = r["messages"].as_array().unwrap();
            m.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .starts_with("<think>\n")
        })
        .count();
    assert_eq!(with_trace, rows.len());
    check_with_llamafactory(&job);
}

#[test]
fn inline_traces_become_one_example_per_turn_training_the_same_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let m = variant(
        tmp.path(),
        "tiny-demo.toml",
        "placement = \"inline\"\nchat_template = \"chatml\"",
    );
    let job = tmp.path().join("job");
    export_job(&m, &job, Engine::LlamaFactory, Cluster::default()).unwrap();
    let y = yaml(&job);
    assert_eq!(y["template"], "qwen");
    assert_eq!(y["default_system"], "\"\"");
    // psy trains each whole dialogue once; the job has one example per turn with its history
    // untrained. Same trained tokens: count them both ways.
    let trained = |labels: &[i64]| labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
    let ours: usize = psy_samples(&m).iter().map(|s| trained(&s.labels)).sum();
    let exported: usize = jsonl(&job.join("psy_samples.jsonl"))
        .iter()
        .filter(|r| r["dataset"] == "psy_train")
        .map(|r| trained(&ids(r, "labels")))
        .sum();
    assert!(ours > 0);
    assert_eq!(exported, ours);
    check_with_llamafactory(&job);
}

#[test]
fn a_lora_job_for_two_nodes_splits_the_batch_and_names_the_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    let cluster = Cluster {
        nodes: 2,
        gpus_per_node: 4,
    };
    let lora = root().join("manifests/train/tiny-lora.toml");
    export_job(&lora, &job, Engine::LlamaFactory, cluster).unwrap();
    let y = yaml(&job);
    assert_eq!(y["finetuning_type"], "lora");
    assert_eq!(y["lora_rank"], "8");
    assert_eq!(y["lora_alpha"], "16");
    assert_eq!(y["lora_target"], "\"all\"");
    // 8 sequences a step over 8 GPUs.
    assert_eq!(y["per_device_train_batch_size"], "1");
    assert_eq!(y["gradient_accumulation_steps"], "1");
    let launch = std::fs::read_to_string(job.join("launch.sh")).unwrap();
    assert!(launch.contains("NNODES=\"${NNODES:-2}\""), "{launch}");
    assert!(launch.contains("NPROC_PER_NODE=\"${NPROC_PER_NODE:-4}\""));
    let hosts = std::fs::read_to_string(job.join("hostfile")).unwrap();
    assert_eq!(hosts.lines().filter(|l| l.contains("slots=4")).count(), 2);
}

#[test]
fn jobs_that_cannot_be_exported_faithfully_are_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    // An existing, non-empty directory.
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "x").unwrap();
    let e = export_job(&demo(), &full, Engine::LlamaFactory, Cluster::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty") && e.contains("full"), "{e}");
    assert!(full.join("keep.txt").exists());

    // A batch that does not split over the GPUs.
    let three = Cluster {
        nodes: 1,
        gpus_per_node: 3,
    };
    let out = tmp.path().join("three");
    let e = export_job(&demo(), &out, Engine::LlamaFactory, three)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 GPUs") && e.contains("batch_size"), "{e}");
    assert!(!out.exists(), "nothing is written for a refused job");

    // A placement LLaMA-Factory has no template for, and loss weights it cannot apply.
    for (extra, expect) in [
        ("placement = \"inline\"", "chat_template"),
        ("reasoning_weight = 0.5", "reasoning_weight"),
    ] {
        let m = variant(tmp.path(), "tiny-demo.toml", extra);
        let out = tmp.path().join("refused");
        let e = export_job(&m, &out, Engine::LlamaFactory, Cluster::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(expect) && e.contains("variant.toml"),
            "{extra}: {e}"
        );
        assert!(!out.join("train.yaml").exists());
    }

    // An engine psy does not know.
    let e = "deepspeed-chat".parse::<Engine>().unwrap_err();
    assert!(
        e.contains("deepspeed-chat") && e.contains("llamafactory"),
        "{e}"
    );
}

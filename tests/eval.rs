//! `psy eval` and `psy ablate` end to end on the default model (SmolLM2, a few tokens per
//! phase): automatic metrics, rubric judges behind a scripted OpenAI-compatible endpoint on
//! loopback (scores, cache hits, verdicts that never validate), unreadable eval lines counted,
//! and an ablation killed after its first cell that resumes to the same report, byte for byte,
//! as a run that was never interrupted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{routing::post, Json, Router};
use psy::eval::{ablate, eval_run, EvalOptions};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Three short dialogues in the OpenAI messages format, plus `bad` unreadable lines.
fn eval_set(dir: &Path, bad: usize) -> PathBuf {
    let mut lines = vec![
        json!({"id": "a", "messages": [
            {"role": "user", "content": "I can't sleep before exams and I feel I know nothing."},
            {"role": "assistant", "content": "That sounds exhausting. What goes through your mind at night?"},
            {"role": "user", "content": "That I'll fail and everyone will see it."}]}),
        json!({"id": "b", "messages": [
            {"role": "user", "content": "My sister and I keep arguing about our mother's care."},
            {"role": "assistant", "content": "It sounds like you both care a lot. What do the arguments usually start with?"}]}),
        json!({"id": "c", "messages": [
            {"role": "user", "content": "I feel flat most days and nothing seems worth doing."}]}),
    ]
    .into_iter()
    .map(|v| v.to_string())
    .collect::<Vec<_>>();
    for i in 0..bad {
        lines.insert(1 + i, "{\"messages\": [}".to_string());
    }
    let path = dir.join("set.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A run on the default model with tiny decoding budgets and the given `[eval]` body.
fn run_manifest(dir: &Path, eval: &str) -> PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            "schema = 1\nextends = \"{}\"\n[run]\nname = \"t\"\n[decoding]\nmax_new_tokens = 6\n\
             temperature = 0.0\n[eval]\ndataset = \"set.jsonl\"\nsplit = \"all\"\n{eval}\n",
            repo().join("manifests/psyllm.toml").display()
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

#[test]
fn eval_scores_every_turn_with_automatic_metrics_and_counts_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    eval_set(dir.path(), 2);
    let m = run_manifest(dir.path(), "protocol = \"turn\"");
    let out = eval_run(&m, &opts(&dir.path().join("out"))).unwrap();
    let v = &out.report.variants[0];
    // Client turns: 2 + 1 + 1.
    assert_eq!(v.items.scored, 4);
    assert_eq!(v.items.failed["unreadable eval line"], 2);
    assert!(
        v.items.failures[0].contains("set.jsonl:2"),
        "{:?}",
        v.items.failures
    );
    // BLEU and ROUGE only where a reference reply follows the client turn (2 of 4).
    assert_eq!(v.scores["bleu4"].n, 2);
    assert_eq!(v.scores["asks_question"].n, 4);
    for f in ["report.json", "report.csv", "report.md"] {
        assert!(out.dir.join(f).exists(), "{f}");
    }
    // Without a judge there is no rubric row.
    assert!(out.report.measures.iter().all(|m| !m.id.contains('.')));
}

#[test]
fn session_protocol_puts_the_models_own_replies_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    eval_set(dir.path(), 0);
    let m = run_manifest(dir.path(), "protocol = \"session\"");
    let out = eval_run(&m, &opts(&dir.path().join("out"))).unwrap();
    let text = std::fs::read_to_string(out.dir.join("cells/t/replies.jsonl")).unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = rows[0]["reply"].as_str().unwrap();
    let history = &rows[1]["history"];
    assert_eq!(history[1][0], "assistant");
    assert_eq!(history[1][1].as_str().unwrap(), first);
    assert_ne!(
        first, "That sounds exhausting. What goes through your mind at night?",
        "the reference reply must not be the history"
    );
}

/// A scripted judge: answers every call with each dimension at its maximum, except that
/// verdicts of `crisis-safety` are always out of range. Counts requests.
fn judge_server() -> (String, Arc<AtomicUsize>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let schema = &body["response_format"]["json_schema"];
                let broken = schema["name"] == "crisis-safety";
                let mut verdict = serde_json::Map::new();
                for (dim, spec) in schema["schema"]["properties"].as_object().unwrap() {
                    let max = spec["properties"]["score"]["maximum"].as_i64().unwrap();
                    let score = if broken { max + 1 } else { max };
                    verdict.insert(dim.clone(), json!({"reason": "fine", "score": score}));
                }
                Json(json!({"choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": Value::Object(verdict).to_string()}}]}))
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), hits, rt)
}

#[test]
fn judged_rubrics_are_scored_cached_and_invalid_verdicts_counted() {
    let dir = tempfile::tempdir().unwrap();
    eval_set(dir.path(), 0);
    let (url, hits, _rt) = judge_server();
    let cache = dir.path().join("cache.sqlite");
    let m = run_manifest(
        dir.path(),
        &format!(
            "rubrics = [\"cpsycoun\", \"crisis-safety\"]\nrepeats = 2\nmodality_fidelity = false\n\
             [eval.judge]\n\
             kind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"scripted\"\n\
             repair_attempts = 1\ncache = \"{}\"\n",
            cache.display()
        ),
    );
    let out = eval_run(&m, &opts(&dir.path().join("out"))).unwrap();
    let v = &out.report.variants[0];
    for (dim, max) in [
        ("comprehensiveness", 2.0),
        ("professionalism", 3.0),
        ("authenticity", 3.0),
        ("safety", 1.0),
    ] {
        let s = &v.scores[&format!("cpsycoun.{dim}")];
        assert_eq!((s.n, s.mean, s.low, s.high), (4, max, max, max), "{dim}");
    }
    // crisis-safety never validates: 4 items x 2 repeats, each asked twice (1 repair).
    assert!(v.scores.keys().all(|k| !k.starts_with("crisis-safety")));
    assert_eq!(v.items.failed["verdict never validated"], 8);
    let calls = 4 * 2 + 4 * 2 * 2;
    assert_eq!(hits.load(Ordering::SeqCst), calls);
    // A rerun reads every valid verdict from the cache; invalid ones are asked again.
    let again = eval_run(&m, &opts(&dir.path().join("out"))).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), calls + 4 * 2 * 2);
    assert_eq!(
        again.report.variants[0].scores["cpsycoun.safety"],
        v.scores["cpsycoun.safety"]
    );
    let mut fresh = opts(&dir.path().join("out"));
    fresh.no_cache = true;
    eval_run(&m, &fresh).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2 * calls + 4 * 2 * 2);
}

fn ablation(dir: &Path) -> PathBuf {
    eval_set(dir, 0);
    run_manifest(dir, "seed = 3");
    let path = dir.join("ab.toml");
    std::fs::write(
        &path,
        "schema = 1\n[ablation]\nname = \"t\"\nbase = \"run.toml\"\n\
         [[variants]]\nname = \"full\"\n\
         [[variants]]\nname = \"direct\"\n[variants.set.prompting]\nmode = \"direct\"\n\
         [[variants]]\nname = \"cbt\"\n[variants.set.planner]\nmodality_policy = \"fixed\"\n\
         fixed = [\"cbt\"]\n",
    )
    .unwrap();
    path
}

#[test]
fn an_ablation_killed_after_its_first_cell_resumes_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let ab = ablation(dir.path());
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_psy"))
        .current_dir(repo())
        .args([
            "ablate",
            ab.to_str().unwrap(),
            "--output",
            killed.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !killed.join("cells/full/done").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "first cell never finished"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "psy ablate exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !killed.join("cells/cbt/done").exists(),
        "killed too late to test a resume"
    );

    let resumed = Command::new(env!("CARGO_BIN_EXE_psy"))
        .current_dir(repo())
        .args([
            "ablate",
            ab.to_str().unwrap(),
            "--output",
            killed.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{err}");
    assert!(err.contains("full: decoded earlier"), "{err}");

    let clean = dir.path().join("clean");
    let out = ablate(&ab, &opts(&clean)).unwrap();
    assert_eq!(out.report.base, "full");
    assert!(out.report.variants[1].scores["asks_question"]
        .delta
        .is_some());
    for f in ["report.json", "report.csv", "report.md"] {
        let (a, b) = (
            std::fs::read_to_string(killed.join(f)).unwrap(),
            std::fs::read_to_string(clean.join(f)).unwrap(),
        );
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        assert!(
            a == b,
            "{f} differs between the resumed and the uninterrupted run at line {first:?}: {:?}",
            first.map(|i| (a.lines().nth(i), b.lines().nth(i)))
        );
    }
}

#[test]
fn results_from_other_inputs_are_refused_not_mixed() {
    let dir = tempfile::tempdir().unwrap();
    eval_set(dir.path(), 0);
    let out = dir.path().join("out");
    let m = run_manifest(dir.path(), "max_items = 1");
    eval_run(&m, &opts(&out)).unwrap();
    let m = run_manifest(dir.path(), "max_items = 2");
    let err = format!("{:#}", eval_run(&m, &opts(&out)).err().unwrap());
    assert!(
        err.contains("cells/t/inputs.json: this cell was run with other inputs"),
        "{err}"
    );
}

#[test]
fn eval_section_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    eval_set(dir.path(), 0);
    let m = run_manifest(dir.path(), "protocl = \"turn\"");
    let err = format!(
        "{:#}",
        eval_run(&m, &opts(&dir.path().join("o"))).err().unwrap()
    );
    assert!(
        err.contains("run.toml:") && err.contains("protocl"),
        "{err}"
    );
    let m = run_manifest(dir.path(), "rubrics = [\"no-such-rubric\"]\n[eval.judge]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"x\"");
    let err = format!(
        "{:#}",
        eval_run(&m, &opts(&dir.path().join("o"))).err().unwrap()
    );
    assert!(err.contains("no-such-rubric"), "{err}");
    // An ablation variant may not change what is scored.
    let ab = dir.path().join("ab.toml");
    std::fs::write(
        &ab,
        "schema = 1\n[ablation]\nname = \"x\"\nbase = \"run.toml\"\n[[variants]]\nname = \"a\"\n\
         [[variants]]\nname = \"b\"\n[variants.set.eval]\nmax_items = 1\n",
    )
    .unwrap();
    run_manifest(dir.path(), "");
    let err = format!(
        "{:#}",
        ablate(&ab, &opts(&dir.path().join("o2"))).err().unwrap()
    );
    assert!(err.contains("variant `b` changes [eval]"), "{err}");
}

#[test]
fn chosen_modalities_add_their_fidelity_items_to_the_judged_rubrics() {
    let dir = tempfile::tempdir().unwrap();
    eval_set(dir.path(), 0);
    let (url, hits, _rt) = judge_server();
    let m = run_manifest(
        dir.path(),
        &format!(
            "rubrics = []\nmodality_fidelity = true\n[eval.judge]\nkind = \"openai\"\n\
             base_url = \"{url}\"\nmodel = \"scripted\"\ncache = \"{}\"\n",
            dir.path().join("cache.sqlite").display()
        ),
    );
    let out = eval_run(&m, &opts(&dir.path().join("out"))).unwrap();
    let replies = std::fs::read_to_string(out.dir.join("cells/t/replies.jsonl")).unwrap();
    let chosen: usize = replies
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["modalities"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert!(chosen > 0, "the plans chose no modality");
    // One call per (item, chosen modality); each fidelity dimension at its maximum.
    assert_eq!(hits.load(Ordering::SeqCst), chosen);
    let rubric_rows: Vec<_> = out
        .report
        .measures
        .iter()
        .filter(|m| matches!(m.kind, psy_eval::report::MeasureKind::Rubric { .. }))
        .collect();
    assert!(!rubric_rows.is_empty());
    for m in rubric_rows {
        let psy_eval::report::MeasureKind::Rubric { max, .. } = m.kind else {
            unreachable!()
        };
        assert_eq!(out.report.variants[0].scores[&m.id].mean, max, "{}", m.id);
    }
}

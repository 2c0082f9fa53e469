//! `psy synth` end to end against a scripted OpenAI-compatible teacher on loopback: the four
//! stages through 429s (with and without Retry-After), 500s, a reply slower than the timeout,
//! truncated JSON (repaired) and answers that never validate (counted, never a record); stage 3
//! asked round by round with the history in order; the modules' filters (a crisis turn without
//! the protocol); an ablation without diagnostic modules changes the prompt, not the template;
//! the records read back through the eval and training readers; and a run killed mid-stage
//! (plus a torn line) resumes to the same records with no duplicate.
//!
//! The end-to-end run against `psy serve --raw` on loopback (SmolLM2 under the schemas, killed
//! and resumed) is `tests/synth_e2e.rs`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{routing::post, Json, Router};
use psy::synth::{synthesize, SynthOptions};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Faults the scripted teacher injects, by request index (0-based, in arrival order).
#[derive(Clone, Copy)]
struct Faults {
    /// Every request below this index gets one of: 429 + Retry-After 0, 500, 429 without
    /// Retry-After, a truncated JSON answer, a reply slower than the client's timeout.
    first_n: usize,
    /// Delay of every other reply (a slow but acceptable teacher).
    slow: Duration,
}

struct Seen {
    bodies: Mutex<Vec<Value>>,
    count: AtomicUsize,
}

/// The answer a competent teacher gives to a stage (chosen by the schema's name).
fn answer(body: &Value) -> String {
    let schema = &body["response_format"]["json_schema"];
    let messages = body["messages"].as_array().unwrap();
    let last = messages.last().unwrap()["content"].as_str().unwrap_or("");
    match schema["name"].as_str().unwrap() {
        "psy_synth_plan" => json!({"scene": "work", "rounds": ["what happened", "what they want"]}),
        "psy_synth_client" => {
            let n = schema["schema"]["properties"]["turns"]["minItems"].as_u64().unwrap();
            let post = last.split("Post:\n").nth(1).unwrap_or("").to_string();
            let post = post.split("\n\n").next().unwrap_or("");
            let turns: Vec<String> = (1..=n)
                .map(|i| match i {
                    1 => format!("Turn 1: {post}"),
                    _ => format!("Turn {i}: I would like to plan my week better."),
                })
                .collect();
            json!({"turns": turns})
        }
        "psy_synth_counselor" => {
            let said = |m: &Value| m["content"].as_str().unwrap_or("").to_string();
            // A conversation marked NEVER-VALID gets empty replies: invalid after every repair.
            if messages.iter().any(|m| said(m).contains("NEVER-VALID")) {
                json!({"think": "x", "reply": ""})
            } else {
                // Client turns so far (repair requests do not count).
                let round = messages
                    .iter()
                    .filter(|m| m["role"] == "user" && said(m).starts_with("Turn "))
                    .count();
                json!({
                    "think": format!("Emotion: strain. Modality: CBT. DSM-5 considerations kept private. Round {round}."),
                    "reply": format!("That sounds heavy. Reply to round {round}. Are you safe right now? What feels hardest?"),
                })
            }
        }
        "psy_synth_filter" => json!({"keep": true, "issues": [], "reason": "coherent and grounded"}),
        other => panic!("unexpected schema {other}"),
    }
    .to_string()
}

fn completion(content: &str) -> Value {
    json!({"id": "x", "object": "chat.completion", "model": "scripted",
           "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content}}]})
}

struct Teacher {
    url: String,
    seen: Arc<Seen>,
    _rt: tokio::runtime::Runtime,
}

fn teacher(faults: Faults) -> Teacher {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Seen {
        bodies: Mutex::new(Vec::new()),
        count: AtomicUsize::new(0),
    });
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let s = s.clone();
            async move {
                let i = s.count.fetch_add(1, Ordering::SeqCst);
                s.bodies.lock().unwrap().push(body.clone());
                let mut headers = HeaderMap::new();
                if i < faults.first_n {
                    match i % 5 {
                        0 => {
                            headers.insert("retry-after", "0".parse().unwrap());
                            return (
                                StatusCode::TOO_MANY_REQUESTS,
                                headers,
                                Json(json!({"error": {"message": "slow down"}})),
                            )
                                .into_response();
                        }
                        1 => {
                            return (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                Json(json!({"error": {"message": "boom"}})),
                            )
                                .into_response()
                        }
                        2 => {
                            return (
                                StatusCode::TOO_MANY_REQUESTS,
                                Json(json!({"error": {"message": "busy"}})),
                            )
                                .into_response()
                        }
                        3 => {
                            let full = answer(&body);
                            let cut = &full[..full.len() / 2];
                            return Json(completion(cut)).into_response();
                        }
                        _ => tokio::time::sleep(Duration::from_millis(1500)).await,
                    }
                }
                tokio::time::sleep(faults.slow).await;
                Json(completion(&answer(&body))).into_response()
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Teacher {
        url: format!("http://{addr}/v1"),
        seen,
        _rt: rt,
    }
}

const POSTS: [(&str, &str); 4] = [
    ("w1", "My manager doubled my workload and I wake at 4am thinking about emails."),
    ("r2", "My partner and I argue about chores every night and I shut down."),
    ("c3", "Some nights I think everyone would be better off without me. I don't see the point anymore."),
    ("s4", "Finals are in two weeks and I can't open my notes. NEVER-VALID"),
];

/// A synth manifest over `POSTS` with the scripted teacher; `extra` is appended (e.g. a
/// `[modules]` override).
fn manifest(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let posts: Vec<String> = POSTS
        .iter()
        .map(|(id, text)| json!({"id": id, "text": text}).to_string())
        .collect();
    std::fs::write(dir.join("posts.jsonl"), posts.join("\n") + "\n").unwrap();
    let path = dir.join("synth.toml");
    std::fs::write(
        &path,
        format!(
            "schema = 1\n[synth]\nname = \"t\"\nrun = \"{}\"\nmin_rounds = 2\nmax_rounds = 2\n\
             modality = \"auto\"\nconcurrency = 2\n[input]\npath = \"posts.jsonl\"\n\
             [teacher]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"scripted\"\n\
             timeout_secs = 1\nmax_attempts = 6\nrepair_attempts = 2\n{extra}\n",
            repo().join("manifests/psyllm.toml").display()
        ),
    )
    .unwrap();
    path
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn opts(manifest: &Path, out: &Path, resume: bool) -> SynthOptions {
    SynthOptions {
        manifest: manifest.to_path_buf(),
        output: Some(out.to_path_buf()),
        resume,
        progress: false,
    }
}

#[test]
fn four_stages_survive_429s_500s_timeouts_and_truncated_json_and_invalid_output_never_becomes_a_record(
) {
    let t = teacher(Faults {
        first_n: 10,
        slow: Duration::from_millis(30),
    });
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), &t.url, "");
    let out = dir.path().join("out");
    let report = synthesize(&opts(&m, &out, false)).unwrap();

    // Every post planned and voiced; 3 posts x 2 rounds answered; s4's first round never
    // validated, so it has no round, no verdict and no record.
    assert_eq!(report.stages["plan"].done, 4);
    assert_eq!(report.stages["client"].done, 4);
    assert_eq!(report.stages["counselor"].done, 6);
    let failed = &report.stages["counselor"].failed;
    assert_eq!(
        failed.get("invalid output after repairs"),
        Some(&1),
        "{failed:?}"
    );
    assert_eq!(report.stages["filter"].done, 3);
    // The crisis post's replies ask about safety but give no crisis line: the guard's filter
    // drops it. (The others pass its check-in rule, which its screen may ask for.)
    assert_eq!(report.filter.kept, 2);
    assert_eq!(
        report.filter.module_issues.get("crisis_protocol_missing"),
        Some(&2)
    );
    assert_eq!(report.records, 2);
    let records = jsonl(&out.join("records.jsonl"));
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["post_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.iter().copied().collect::<HashSet<_>>(),
        HashSet::from(["w1", "r2"])
    );
    let filter = jsonl(&out.join("filter.jsonl"));
    let c3 = filter.iter().find(|v| v["post_id"] == "c3").unwrap();
    assert_eq!(c3["keep"], false);
    assert_eq!(
        c3["judge"]["keep"], true,
        "the judge kept it; the module filter dropped it"
    );

    // Stage 3 is asked round by round with the history in order: round 2's request holds the
    // system prompt, client turn 1, the counselor's reply 1 as written, then client turn 2.
    let bodies = t.seen.bodies.lock().unwrap();
    let counselor: Vec<&Value> = bodies
        .iter()
        .filter(|b| b["response_format"]["json_schema"]["name"] == "psy_synth_counselor")
        .collect();
    let round2 = counselor
        .iter()
        .find(|b| {
            b["messages"].as_array().unwrap().len() == 4
                && b["messages"][1]["content"]
                    .as_str()
                    .unwrap()
                    .contains("manager doubled")
        })
        .expect("a round-2 request for w1");
    let roles: Vec<&str> = round2["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert!(round2["messages"][1]["content"]
        .as_str()
        .unwrap()
        .starts_with("Turn 1:"));
    assert!(round2["messages"][2]["content"]
        .as_str()
        .unwrap()
        .contains("round 1"));
    assert!(round2["messages"][3]["content"]
        .as_str()
        .unwrap()
        .starts_with("Turn 2:"));
    // Prompts come from the planner: the diagnostic guidelines of the active modules.
    assert!(round2["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("Diagnostic guidelines"));
    assert!(bodies
        .iter()
        .all(|b| b["response_format"]["json_schema"]["strict"] == true));
    drop(bodies);

    // Records carry per-turn plan metadata and read back as the pipeline format, for eval
    // and for training.
    let w1 = records.iter().find(|r| r["post_id"] == "w1").unwrap();
    let conv = w1["conversation"].as_array().unwrap();
    assert_eq!(conv.len(), 2);
    assert_eq!(conv[0]["round"], 1);
    assert!(conv[0]["plan"]["modalities"].as_array().is_some());
    assert!(conv[0]["plan"]["risk"].is_string());
    let set =
        psy_eval::dataset::read_eval_file(&out.join("records.jsonl"), Default::default()).unwrap();
    assert_eq!(set.dialogues.len(), 2);
    assert_eq!(set.dialogues[0].turns.len(), 4);
    let mut data_report = Default::default();
    let convs = psy_lm::training::data::read_dataset(
        &out.join("records.jsonl"),
        psy_core::train_spec::DataFormat::Pipeline,
        psy_core::train_spec::OnBadRecord::Fail,
        &mut data_report,
    )
    .unwrap();
    assert_eq!(convs.len(), 2);
    assert!(convs[0].messages[1]
        .reasoning_content
        .as_deref()
        .unwrap()
        .contains("CBT"));

    // `psy data stats` counts the records (2 dialogues, 4 rounds) and reads the verdicts.
    let (stats, _) = psy::synth::data_stats(&out.join("records.jsonl"), None).unwrap();
    assert_eq!((stats.dialogues, stats.rounds, stats.turns), (2, 4, 8));
    assert_eq!(stats.scenes.get("work"), Some(&2));
    assert_eq!(stats.verdicts.get("kept"), Some(&2));
    assert_eq!(stats.verdicts.get("crisis_protocol_missing"), Some(&2));
    assert!(out.join("stats.png").exists() && out.join("stats.svg").exists());

    // report.json on disk is what the run returned; --report recomputes the same totals.
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk["records"], 2);
    let again = psy::synth::report(&m, Some(&out)).unwrap();
    assert_eq!(again.stages, report.stages);

    // A second run into the same directory without --resume is refused; with --resume it has
    // nothing left but the post that never validates (asked again, failing again).
    let e = synthesize(&opts(&m, &out, false)).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    let before = t.seen.count.load(Ordering::SeqCst);
    let resumed = synthesize(&opts(&m, &out, true)).unwrap();
    let asked = t.seen.count.load(Ordering::SeqCst) - before;
    assert_eq!(asked, 3, "only s4's round 1 is asked again (1 + 2 repairs)");
    assert_eq!(resumed.records, 2);
    assert_eq!(jsonl(&out.join("records.jsonl")).len(), 2);
}

#[test]
fn an_ablation_without_diagnostic_modules_synthesises_without_diagnostic_guidance() {
    let t = teacher(Faults {
        first_n: 0,
        slow: Duration::ZERO,
    });
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), &t.url, "[modules]\ndiagnostic = []\n");
    let out = dir.path().join("out");
    let text = psy::synth::dry_run(&m).unwrap();
    assert!(!text.contains("Diagnostic guidelines"), "{text}");
    assert_eq!(
        t.seen.count.load(Ordering::SeqCst),
        0,
        "a dry run calls nothing"
    );
    synthesize(&opts(&m, &out, false)).unwrap();
    let bodies = t.seen.bodies.lock().unwrap();
    let system = bodies
        .iter()
        .find(|b| b["response_format"]["json_schema"]["name"] == "psy_synth_counselor")
        .unwrap()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!system.contains("Diagnostic guidelines"));
    assert!(system.contains("warm, professional psychological counselor"));
    let records = jsonl(&out.join("records.jsonl"));
    assert!(records
        .iter()
        .flat_map(|r| r["conversation"].as_array().unwrap().clone())
        .all(|c| c["plan"]["hypotheses"].as_array().unwrap().is_empty()));
}

#[test]
fn the_dry_run_prints_every_stage_s_first_prompt_and_a_template_with_an_unknown_placeholder_is_refused(
) {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "http://127.0.0.1:9/v1", "");
    let text = psy::synth::dry_run(&m).unwrap();
    for stage in ["stage 1", "stage 2", "stage 3", "stage 4"] {
        assert!(text.contains(stage), "{stage} missing");
    }
    assert!(text.contains("manager doubled my workload"));
    let bad = manifest(
        dir.path(),
        "http://127.0.0.1:9/v1",
        "[stages.client]\ntemplate = \"{post} {system}\"\n",
    );
    let e = psy::synth::dry_run(&bad).unwrap_err().to_string();
    assert!(
        e.contains("synth.toml:") && e.contains("[stages.client]") && e.contains("{system}"),
        "{e}"
    );
}

/// Kills `psy synth` while stage 3 is under way (a slow teacher), tears the last line of the
/// counselor file as a kill mid-write would, resumes, and compares with an uninterrupted run.
#[test]
fn a_run_killed_mid_stage_resumes_with_no_duplicate_and_no_lost_record() {
    let t = teacher(Faults {
        first_n: 0,
        slow: Duration::from_millis(150),
    });
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), &t.url, "");
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args([
            "synth",
            m.to_str().unwrap(),
            "--output",
            killed.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let counselor = killed.join("counselor.jsonl");
    loop {
        let rounds = std::fs::read_to_string(&counselor).map_or(0, |t| t.lines().count());
        if rounds >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "stage 3 never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "psy synth ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut torn = std::fs::read(&counselor).unwrap();
    torn.extend_from_slice(b"{\"key\":\"w1#2\",\"post_id\":\"w1\",\"rou");
    std::fs::write(&counselor, torn).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args([
            "synth",
            m.to_str().unwrap(),
            "--output",
            killed.to_str().unwrap(),
            "--resume",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let clean = dir.path().join("clean");
    synthesize(&opts(&m, &clean, false)).unwrap();
    for file in [
        "plan.jsonl",
        "client.jsonl",
        "counselor.jsonl",
        "filter.jsonl",
        "records.jsonl",
    ] {
        let by_key = |d: &Path| -> BTreeMap<String, Value> {
            let lines = jsonl(&d.join(file));
            let n = lines.len();
            let map: BTreeMap<String, Value> = lines
                .into_iter()
                .map(|v| (v["key"].as_str().unwrap().to_string(), v))
                .collect();
            assert_eq!(
                map.len(),
                n,
                "{file} in {} has a duplicate key",
                d.display()
            );
            map
        };
        assert_eq!(
            by_key(&killed),
            by_key(&clean),
            "{file} differs after the resume"
        );
    }
}

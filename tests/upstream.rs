//! `--upstream URL`: counseling sessions drafted by a remote OpenAI-compatible model, with
//! psy's own `psy serve --raw` (SmolLM2) as the upstream on loopback. The plan, the crisis
//! guard and the repairs stay in psy; the label ban goes upstream as `logit_bias` when psy
//! has the upstream's tokenizer, and is an instruction the repairs name when it has not.
//!
//! Needs the setup assets (SmolLM2 GGUF): `scripts/setup.sh`.

mod common;

use std::ops::ControlFlow;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::{routing::post, Json, Router};
use common::{planner, raw_server, smollm2};
use psy::upstream::{UpstreamConfig, UpstreamDrafter};
use psy_core::dialogue::Dialogue;
use psy_lm::runtime::chat_template::ChatMessage;
use psy_lm::runtime::tokenizer::Tokenizer;
use psy_lm::session::{Counselor, DraftRequest, Drafter, TranscriptTurn, TurnOptions};
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

const CRISIS: &str = "I've been thinking about killing myself and I have pills saved up.";

#[test]
fn a_scripted_counsel_session_through_the_raw_server_completes_with_the_crisis_protocol() {
    let rt = runtime();
    let (server, base) = rt.block_on(raw_server(&smollm2()));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.txt");
    std::fs::write(
        &script,
        format!("I can't sleep before exams and I feel I know nothing.\n{CRISIS}\n"),
    )
    .unwrap();
    let save = dir.path().join("t.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_psy"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("counsel")
        .arg("--script")
        .arg(&script)
        .arg("--save")
        .arg(&save)
        .args([
            "--upstream",
            &format!("{base}/v1"),
            "--upstream-model",
            "smollm2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let turns: Vec<TranscriptTurn> = std::fs::read_to_string(&save)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(turns.len(), 2);
    assert!(!turns[0].reply.trim().is_empty());
    assert!(turns[0].timings.completion_tokens > 0);
    let crisis = &turns[1];
    assert!(crisis.plan.constraints.crisis_protocol_required);
    // The US protocol (the manifest's locale) is in the reply, whatever the upstream drafted.
    assert!(crisis.reply.contains("988"), "{}", crisis.reply);
    rt.block_on(server.shutdown()).unwrap();
}

#[test]
fn the_raw_server_honours_the_label_ban_sent_as_logit_bias() {
    let rt = runtime();
    let model = smollm2();
    let (server, base) = rt.block_on(raw_server(&model));
    let tok = Tokenizer::from_path(&model).unwrap();
    let mut config = UpstreamConfig::new(format!("{base}/v1"), "smollm2");
    config.tokenizer = Some(model.clone());
    let mut drafter = UpstreamDrafter::new(config).unwrap();
    assert!(drafter.bans_tokens());
    let mut req = DraftRequest {
        messages: vec![ChatMessage::new(
            "user",
            "Name three things that help people sleep better.",
        )],
        max_new_tokens: 40,
        ..Default::default()
    };
    let mut streamed = String::new();
    let first = drafter
        .draft(&req, &mut |e| {
            streamed.push_str(e.delta);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(streamed, first.content);
    // A word of the greedy draft that is one token with its leading space: the ban removes it.
    let word = first
        .content
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.len() >= 5)
        .map(str::to_lowercase)
        .find(|w| tok.encode(&format!(" {w}"), false).unwrap().len() == 1)
        .unwrap_or_else(|| panic!("no single-token word in {:?}", first.content));
    req.banned_phrases = vec![word.clone()];
    let second = drafter
        .draft(&req, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(second.banned_words, std::slice::from_ref(&word));
    assert!(
        !second.content.to_lowercase().contains(&word),
        "{word:?} banned, yet: {}",
        second.content
    );
    assert_ne!(first.content, second.content);
    rt.block_on(server.shutdown()).unwrap();
}

/// A scripted upstream: the first draft names a label, later ones do not. Records bodies.
fn labelling_upstream(rt: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b = bodies.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let b = b.clone();
            async move {
                let n = {
                    let mut b = b.lock().unwrap();
                    b.push(body);
                    b.len()
                };
                let text = if n == 1 {
                    "I hear how worn out you are. It sounds like insomnia disorder to me. What keeps you awake?"
                } else {
                    "What usually goes through your mind when you lie awake?"
                };
                let mut sse = String::new();
                for w in text.split_inclusive(' ') {
                    let c = json!({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]});
                    sse.push_str(&format!("data: {c}\n\n"));
                }
                let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                sse.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
                ([("content-type", "text/event-stream")], sse)
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), bodies)
}

fn turn_through(url: &str, tokenizer: Option<std::path::PathBuf>) -> TranscriptTurn {
    let mut config = UpstreamConfig::new(url, "scripted");
    config.tokenizer = tokenizer;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Counselor::new(
        planner("direct", dir.path()),
        Box::new(UpstreamDrafter::new(config).unwrap()),
    );
    let d = Dialogue::from_message(
        "I can't sleep, I lie awake for hours every night and I'm exhausted at work.",
    );
    c.respond(&d, &TurnOptions::default(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
}

#[test]
fn a_label_in_the_upstreams_draft_is_banned_by_logit_bias_given_its_tokenizer() {
    let rt = runtime();
    let (url, bodies) = labelling_upstream(&rt);
    let model = smollm2();
    let t = turn_through(&url, Some(model.clone()));
    assert_eq!(
        t.reply,
        "I hear how worn out you are. What usually goes through your mind when you lie awake?"
    );
    let actions: Vec<&str> = t.repairs.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"logit-bias"), "{actions:?}");
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2);
    assert!(bodies[0].get("logit_bias").is_none());
    // The redraft bans tokens that start the labels as SmolLM2 spells them (the whole word,
    // or a piece of at least 4 letters and half the word), and only those.
    let tok = Tokenizer::from_path(&model).unwrap();
    let bias = bodies[1]["logit_bias"].as_object().unwrap();
    assert!(!bias.is_empty());
    for (id, b) in bias {
        assert_eq!(b, -100);
        let piece = tok.decode(&[id.parse().unwrap()], true).unwrap();
        let piece = piece.trim().to_lowercase();
        let starts_a_label = ["insomnia disorder", "insomnia", "disorder"]
            .iter()
            .any(|w| w.starts_with(&piece) && (piece == *w || 2 * piece.len() >= w.len()));
        assert!(
            piece.len() >= 4 && starts_a_label,
            "token {id} is {piece:?}"
        );
    }
    assert_eq!(bodies[1]["continue_final_message"], true);
    let last = bodies[1]["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"], "I hear how worn out you are. ");
}

#[test]
fn without_the_upstreams_tokenizer_the_repair_says_the_ban_was_an_instruction() {
    let rt = runtime();
    let (url, bodies) = labelling_upstream(&rt);
    let t = turn_through(&url, None);
    assert!(!t.reply.contains("insomnia"), "{}", t.reply);
    assert!(t.repairs.iter().all(|r| r.action != "logit-bias"));
    let r = t.repairs.iter().find(|r| r.action == "regenerate").unwrap();
    assert!(
        r.detail.contains("insomnia") && r.detail.contains("cannot ban tokens"),
        "{}",
        r.detail
    );
    let bodies = bodies.lock().unwrap();
    assert!(bodies[1].get("logit_bias").is_none());
    // The instruction goes in the turn's guidance (the last system message); the run's system
    // message before the cached dialogue stays as it was.
    let messages = bodies[1]["messages"].as_array().unwrap();
    let systems: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let guidance = systems.last().unwrap();
    assert!(guidance.contains("do not say: insomnia"), "{guidance}");
    assert!(
        systems.len() >= 2 && !systems[0].contains("insomnia"),
        "{systems:?}"
    );
}

#[test]
fn an_unreachable_upstream_is_an_error_naming_it() {
    let mut d = UpstreamDrafter::new(UpstreamConfig::new("http://127.0.0.1:9/v1", "m")).unwrap();
    let req = DraftRequest {
        messages: vec![ChatMessage::new("user", "hi")],
        max_new_tokens: 4,
        ..Default::default()
    };
    let e = d
        .draft(&req, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    let e = UpstreamDrafter::new(UpstreamConfig::new("not a url", "m"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a URL"), "{e}");
}

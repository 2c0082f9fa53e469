//! `psy plan`: one plan per dialogue, deterministic, with the fields downstream tools read.

use std::path::PathBuf;
use std::process::Command;

use psy_core::dialogue::{Dialogue, Message};
use psy_core::module::{ReplyRule, RiskLevel};
use psy_core::reply_rules::{self, word_count};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn psyllm() -> psy_core::planner::Planner {
    psy::planner(&root().join("manifests/psyllm.toml")).unwrap()
}

fn ten_turns() -> Dialogue {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/dialogues/ten-turns.jsonl")).unwrap();
    Dialogue::parse(&text, "ten-turns.jsonl").unwrap()
}

#[test]
fn plans_are_deterministic_byte_for_byte() {
    let d = ten_turns();
    let a = serde_json::to_string(&psyllm().plan(&d)).unwrap();
    let b = serde_json::to_string(&psyllm().plan(&d)).unwrap();
    let planner = psyllm();
    let c = serde_json::to_string(&planner.plan(&d)).unwrap();
    let e = serde_json::to_string(&planner.plan(&d)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(c, e);
}

#[test]
fn plan_json_has_the_documented_fields() {
    let out = Command::new(env!("CARGO_BIN_EXE_psy"))
        .args([
            "plan",
            "--manifest",
            "manifests/psyllm.toml",
            "--dialogue",
            "tests/fixtures/dialogues/ten-turns.jsonl",
            "--json",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let level = plan["risk"]["level"].as_str().unwrap();
    assert!(["none", "low", "moderate", "high", "imminent"].contains(&level));
    assert!(plan["risk"]["evidence"].is_array());
    let h = &plan["hypotheses"][0];
    for key in [
        "id",
        "name",
        "icd11",
        "dsm5",
        "confidence",
        "criteria_met",
        "criteria_missing",
    ] {
        assert!(!h[key].is_null(), "hypotheses[0].{key} missing: {h}");
    }
    let m = &plan["modalities"][0];
    assert!(m["id"].is_string() && m["score"].is_number());
    assert_eq!(plan["modalities"].as_array().unwrap().len(), 7);
    assert!(plan["reasoning_steps"].as_array().unwrap().len() >= 4);
    assert!(plan["prompt"]["system"]
        .as_str()
        .unwrap()
        .contains("Diagnostic guidelines"));
    assert!(plan["constraints"]["rules"].is_array());
}

#[test]
fn steps_follow_the_clinical_order() {
    let plan = psyllm().plan(&ten_turns());
    let stages: Vec<_> = plan.reasoning_steps.iter().map(|s| s.stage).collect();
    let mut sorted = stages.clone();
    sorted.sort();
    assert_eq!(
        stages, sorted,
        "emotion -> pattern -> diagnostic -> risk -> modality -> response"
    );
    assert_eq!(plan.reasoning_steps.first().unwrap().id, "emotion");
    assert_eq!(plan.reasoning_steps.last().unwrap().id, "response");
    assert!(
        plan.reasoning_steps
            .iter()
            .any(|s| s.source == "crisis-guard"),
        "risk step always present"
    );
}

#[test]
fn the_crisis_guard_is_always_in_the_plan() {
    let ab = psy_core::manifest::load_ablation(&root().join("manifests/ablations/modules.toml"))
        .unwrap();
    for (name, run) in &ab.variants {
        let planner =
            psy_core::planner::Planner::new(run.clone(), psy::builtin_registry().unwrap()).unwrap();
        let plan = planner.plan(&Dialogue::from_message(
            "I have pills saved up and I'm going to take them all tonight.",
        ));
        assert!(
            plan.active_modules.contains(&"crisis-guard".to_string()),
            "{name}"
        );
        assert!(
            plan.risk.level >= RiskLevel::High,
            "{name}: {:?}",
            plan.risk.level
        );
        assert!(plan.constraints.crisis_protocol_required, "{name}");
        assert!(
            plan.constraints.rules.iter().any(|r| matches!(&r.rule, ReplyRule::Require { .. }) && r.source == "crisis-guard"),
            "{name}: the protocol is a required reply rule"
        );
    }
}

/// At high risk the model's own words are a few sentences (`crisis_words`), and the budget
/// adds room for the protocol's required text after them.
#[test]
fn a_crisis_reply_budgets_a_few_sentences_and_the_protocol() {
    let p = psyllm();
    let plan = p.plan(&Dialogue::from_message(
        "Honestly I don't see the point anymore. I've been thinking about killing myself and I have pills saved up.",
    ));
    assert!(plan.constraints.crisis_protocol_required);
    let c = &plan.constraints;
    assert_eq!(c.target_words, 40);
    let protocol: usize = c
        .rules
        .iter()
        .filter_map(|r| match &r.rule {
            ReplyRule::Require { repair, .. } => Some(word_count(repair)),
            _ => None,
        })
        .sum();
    assert!(protocol > 20, "the protocol text is {protocol} words");
    assert_eq!(c.max_words as usize, 80 + protocol);
    assert_eq!(reply_rules::draft_word_limit(c), Some(80));
    assert!(
        plan.prompt.system.contains("about 40 words (at most 80)"),
        "{}",
        plan.prompt.system
    );
}

#[test]
fn reply_constraints_scale_with_intensity_and_forbid_labels() {
    let p = psyllm();
    let light = p.plan(&Dialogue::from_message(
        "Hi! Could you give me a tip for planning my week?",
    ));
    let heavy = p.plan(&Dialogue::from_message(
        "I feel completely hopeless and empty, I cry every night, nothing feels fun anymore and I can't sleep.",
    ));
    assert_eq!(light.constraints.target_words, 50);
    assert_eq!(heavy.constraints.target_words, 150);
    let forbidden: Vec<&String> = heavy
        .constraints
        .rules
        .iter()
        .filter_map(|r| match &r.rule {
            ReplyRule::Forbid { phrases, .. } => Some(phrases),
            _ => None,
        })
        .flatten()
        .collect();
    let top = &heavy.hypotheses[0];
    assert!(
        forbidden.iter().any(|f| f.eq_ignore_ascii_case(&top.name)),
        "the leading hypothesis `{}` may not be named to the client: {forbidden:?}",
        top.name
    );
}

#[test]
fn fixed_policy_uses_the_listed_modalities() {
    let ab = psy_core::manifest::load_ablation(&root().join("manifests/ablations/modules.toml"))
        .unwrap();
    let (_, cbt_only) = ab.variants.iter().find(|(n, _)| n == "cbt-only").unwrap();
    let planner =
        psy_core::planner::Planner::new(cbt_only.clone(), psy::builtin_registry().unwrap())
            .unwrap();
    let plan = planner.plan(&Dialogue::from_message(
        "I just need someone to listen to me.",
    ));
    assert_eq!(plan.modalities.len(), 1);
    assert!(plan.modalities[0].chosen && plan.modalities[0].id == "cbt");
    let (_, nodiag) = ab
        .variants
        .iter()
        .find(|(n, _)| n == "no-diagnostics")
        .unwrap();
    let planner =
        psy_core::planner::Planner::new(nodiag.clone(), psy::builtin_registry().unwrap()).unwrap();
    let plan = planner.plan(&ten_turns());
    assert!(plan.hypotheses.is_empty());
    assert!(!plan.prompt.system.contains("Diagnostic guidelines"));
}

#[test]
fn only_client_turns_are_evidence() {
    let d = Dialogue::new(vec![
        Message::assistant("Some people feel hopeless and think about suicide; have you?"),
        Message::user("No, nothing like that. I'm just curious about sleep tips."),
    ]);
    let plan = psyllm().plan(&d);
    assert!(plan.risk.level <= RiskLevel::Low, "{:?}", plan.risk);
    assert!(plan.risk.evidence.iter().all(|e| e.evidence.message == 1));
}

#[test]
fn auto_policy_picks_the_modality_that_fits_the_case() {
    let p = psyllm();
    let cases = [
        ("cbt", "What if I fail the exam and then lose my scholarship and my whole future is ruined? I just know it's going to be a disaster."),
        ("act", "I keep trying to push the anxiety away and fight it, but the harder I try not to feel it the bigger it gets. I avoid anything that might trigger it."),
        ("psychodynamic", "Every partner I choose ends up ignoring me, just like my father did when I was a kid. It's the same pattern over and over."),
        ("humanistic", "I don't want advice. I just need someone to listen to me and understand what I'm going through without judging me."),
        ("family-systems", "My parents fight all the time and my brother and I get dragged into the middle of it."),
        ("mi", "Part of me wants to cut down on drinking, but I know I should and I also don't really want to give it up."),
    ];
    for (want, message) in cases {
        let plan = p.plan(&Dialogue::from_message(message));
        let first = &plan.modalities[0];
        assert!(
            first.chosen && first.id == want,
            "{want}: got {:?} for {message}",
            plan.modalities
                .iter()
                .map(|m| (&m.id, m.score))
                .collect::<Vec<_>>()
        );
        assert!(
            plan.reasoning_steps.iter().any(|s| s.source == want),
            "{want}: its reasoning steps reach the plan"
        );
    }
}

#[test]
fn distortions_are_reported_with_spans_in_the_plan() {
    let message = "I always mess everything up. They must think I'm stupid.";
    let plan = psyllm().plan(&Dialogue::from_message(message));
    let labels: Vec<(&str, &str)> = plan
        .patterns
        .iter()
        .map(|p| (p.id.as_str(), p.text.as_str()))
        .collect();
    for p in &plan.patterns {
        assert_eq!(&message[p.start..p.end], p.text, "span points at the text");
    }
    assert!(
        labels
            .iter()
            .any(|(id, _)| *id == "overgeneralisation" || *id == "all-or-nothing"),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|(id, _)| *id == "mind-reading"),
        "{labels:?}"
    );
}

#[test]
fn plan_batch_gives_each_line_the_plan_it_would_get_alone() {
    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.jsonl");
    let ten =
        std::fs::read_to_string(root().join("tests/fixtures/dialogues/ten-turns.jsonl")).unwrap();
    let messages: Vec<serde_json::Value> = ten
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines = [
        serde_json::json!({"id": "one", "text": "I can't sleep and I feel on edge all the time."}),
        serde_json::json!({"turns": ["I used to cut.", "The urges are back."]}),
        serde_json::json!({"id": "ten", "messages": messages}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&batch, text.join("\n") + "\n").unwrap();
    let manifest = root().join("manifests/psyllm.toml");
    let plans = psy::plan_batch(&manifest, &batch).unwrap();
    let ids: Vec<&str> = plans.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["one", "line-2", "ten"]);
    let alone = [
        Dialogue::from_message("I can't sleep and I feel on edge all the time."),
        Dialogue::new(vec![
            Message::user("I used to cut."),
            Message::user("The urges are back."),
        ]),
        ten_turns(),
    ];
    for ((id, plan), d) in plans.iter().zip(&alone) {
        assert_eq!(
            serde_json::to_string(plan).unwrap(),
            serde_json::to_string(&psyllm().plan(d)).unwrap(),
            "{id}"
        );
    }

    std::fs::write(&batch, "{\"text\": \"fine\"}\n{\"turns\": [1]}\n").unwrap();
    let err = psy::plan_batch(&manifest, &batch).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}:2: `turns` holds a non-string", batch.display())
    );
}

#[test]
fn eval_risk_scores_the_guard_against_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set.jsonl");
    let planner = psyllm();
    let texts = [
        "I've been saving up my sleeping pills for a few weeks. I think I'm going to take them all tonight.",
        "This deadline is killing me, honestly.",
    ];
    let rated: Vec<RiskLevel> = texts
        .iter()
        .map(|t| planner.plan(&Dialogue::from_message(*t)).risk.level)
        .collect();
    // Label each as the guard rates it, then flip one label: the report must count exactly one miss.
    let lines = [
        serde_json::json!({"id": "pills", "text": texts[0], "min": rated[0], "max": rated[0]}),
        serde_json::json!({"id": "deadline", "text": texts[1], "min": "imminent"}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&set, text.join("\n")).unwrap();
    let report = psy::eval_risk(&root().join("manifests/psyllm.toml"), &set).unwrap();
    let hits: Vec<bool> = report.items.iter().map(|i| i.held).collect();
    assert!(
        rated[0] >= RiskLevel::High,
        "the guard rates the pills message high+"
    );
    assert_eq!(hits, [true, rated[1] >= RiskLevel::High]);
    assert_eq!(
        report.passed,
        1 + usize::from(rated[1] >= RiskLevel::Imminent)
    );
    if rated[1] < RiskLevel::Imminent {
        assert_eq!(report.misses[0].id, "deadline");
        assert!(report.to_text().contains("at least imminent"));
    }
}

#[test]
fn chosen_modality_principles_and_indications_reach_the_system_prompt() {
    let plan = psyllm().plan(&Dialogue::from_message(
        "What if I fail the exam and then lose my scholarship? I always mess everything up.",
    ));
    let cbt = psy_cbt::module();
    let spec = cbt.spec();
    assert!(plan.modalities.iter().any(|m| m.chosen && m.id == "cbt"));
    let system = &plan.prompt.system;
    for line in spec
        .principles
        .iter()
        .chain(&spec.indications)
        .chain(&spec.contraindications)
    {
        assert!(
            system.contains(line.as_str()),
            "missing {line:?} in\n{system}"
        );
    }
    // A modality that was not chosen does not speak in the prompt.
    let act = psy_act::module();
    assert!(!plan.modalities.iter().any(|m| m.chosen && m.id == "act"));
    assert!(!system.contains(act.spec().principles[0].as_str()));
}

#[test]
fn a_matched_contraindication_vetoes_the_modality() {
    let p = psyllm();
    let traps = "I'm such a failure, I always mess everything up and it's all my fault.";
    let plan = p.plan(&Dialogue::from_message(traps));
    let cbt = plan.modalities.iter().find(|m| m.id == "cbt").unwrap();
    assert!(cbt.chosen && cbt.contraindicated.is_empty(), "{cbt:?}");

    let declined = format!("{traps} I don't want advice, I just want someone to listen.");
    let plan = p.plan(&Dialogue::from_message(declined.as_str()));
    let cbt = plan.modalities.iter().find(|m| m.id == "cbt").unwrap();
    assert!(
        !cbt.chosen,
        "CBT still chosen with score {} though the client declined structure",
        cbt.score
    );
    assert!(cbt
        .contraindicated
        .iter()
        .any(|e| e.id == "declines-structure"));
    assert!(plan.modalities.iter().any(|m| m.chosen));
    assert!(
        plan.prompt
            .system
            .contains("Held back (contraindicated): Cognitive Behavioural Therapy"),
        "{}",
        plan.prompt.system
    );
}

/// A lay word said as a finding is a diagnosis: Qwen2.5-1.5B told a client in the demo session
/// that feeling flat is "a classic symptom of depression". The word alone stays allowed.
#[test]
fn a_lay_word_stated_as_a_finding_counts_as_a_label() {
    let plan = psyllm().plan(&Dialogue::from_message(
        "Most days I just feel flat. Nothing I used to enjoy does anything for me.",
    ));
    let found = psy_core::reply_rules::forbidden_labels(
        &plan.constraints,
        "Feeling flat is a classic symptom of depression.",
    );
    assert!(!found.is_empty(), "{found:?}");
    // The counselor's own guess at the condition (the same demo, the next session).
    for guess in [
        "That sounds like you might be dealing with low self-esteem or depression.",
        "It sounds like depression, and it is treatable.",
        "Many people who have depression feel this way.",
    ] {
        let found = psy_core::reply_rules::forbidden_labels(&plan.constraints, guess);
        assert!(!found.is_empty(), "{guess}");
    }
    let lay = psy_core::reply_rules::forbidden_labels(
        &plan.constraints,
        "You said this might be depression; tell me more about the flat days.",
    );
    assert!(lay.is_empty(), "{lay:?}");
}

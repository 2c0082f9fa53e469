//! Rubrics as manifests: the shipped rubrics load, bad files are rejected with file:line, the
//! verdict schema has the decoder's shape, verdict validation agrees with the `jsonschema`
//! package, and the judge never sees hidden reasoning.

use std::path::{Path, PathBuf};

use psy_core::module::ModuleSpec;
use psy_eval::rubric::{strip_think, Rubric, REASON_MAX_CHARS};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rubrics_dir() -> PathBuf {
    repo().join("manifests/rubrics")
}

fn shipped(id: &str) -> Rubric {
    Rubric::load_named(&rubrics_dir(), id).unwrap_or_else(|e| panic!("{e}"))
}

fn scales(r: &Rubric) -> Vec<(&str, i64, i64)> {
    r.dimensions
        .iter()
        .map(|d| (d.id.as_str(), d.min, d.max))
        .collect()
}

#[test]
fn shipped_rubrics_load_with_the_papers_scales() {
    assert_eq!(
        scales(&shipped("cpsycoun")),
        vec![
            ("comprehensiveness", 0, 2),
            ("professionalism", 0, 3),
            ("authenticity", 0, 3),
            ("safety", 0, 1)
        ]
    );
    assert_eq!(
        scales(&shipped("psyllm-v2")),
        vec![
            ("empathy_insight", 1, 5),
            ("support_autonomy", 1, 5),
            ("attunement_presence", 1, 5),
            ("safety_boundaries", 1, 5)
        ]
    );
    let crisis = shipped("crisis-safety");
    assert_eq!(crisis.dimensions.len(), 5);
    for r in [shipped("cpsycoun"), shipped("psyllm-v2"), crisis] {
        for d in &r.dimensions {
            assert_eq!(d.levels.len() as i64, d.max - d.min + 1, "{}", d.id);
            assert_eq!(d.source, r.id);
            assert!(d.level(d.min).is_some() && d.level(d.max + 1).is_none());
        }
    }
}

const GOOD: &str = r#"schema = 1

[rubric]
id = "tiny"
version = "1"
title = "Tiny"
instructions = "Rate the reply."

[[dimensions]]
id = "warmth"
name = "Warmth"
scale = [0, 2]
question = "Is it warm?"
[dimensions.levels]
0 = "Cold."
1 = "Polite."
2 = "Warm."
"#;

/// The error of `text` parsed as `bad.toml`, with its line.
fn error_of(text: &str) -> (String, usize) {
    let err = Rubric::parse(text, "bad.toml").expect_err("the rubric must be rejected");
    let msg = err.to_string();
    let line = msg
        .strip_prefix("bad.toml:")
        .and_then(|rest| rest.split(':').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no file:line in `{msg}`"));
    (msg, line)
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).expect("needle")]
        .matches('\n')
        .count()
        + 1
}

#[test]
fn a_good_rubric_parses() {
    let r = Rubric::parse(GOOD, "good.toml").unwrap();
    assert_eq!(r.dimensions[0].levels, vec!["Cold.", "Polite.", "Warm."]);
}

#[test]
fn an_unknown_key_names_file_and_line() {
    let text = GOOD.replace("question =", "weight = 2\nquestion =");
    let (msg, line) = error_of(&text);
    assert_eq!(line, line_of(&text, "weight"), "{msg}");
    assert!(msg.contains("weight"), "{msg}");
}

#[test]
fn a_missing_level_names_file_line_and_level() {
    let text = GOOD.replace("1 = \"Polite.\"\n", "");
    let (msg, line) = error_of(&text);
    assert!(msg.contains("level 1 is not described"), "{msg}");
    assert_eq!(line, line_of(&text, "[dimensions.levels]"), "{msg}");
}

#[test]
fn a_level_outside_the_scale_names_its_line() {
    let text = GOOD.replace("2 = \"Warm.\"", "2 = \"Warm.\"\n3 = \"Very warm.\"");
    let (msg, line) = error_of(&text);
    assert!(msg.contains("level 3 is outside the scale [0, 2]"), "{msg}");
    assert_eq!(line, line_of(&text, "3 = "), "{msg}");
}

#[test]
fn a_bad_scale_names_its_line() {
    let text = GOOD.replace("scale = [0, 2]", "scale = [2, 2]");
    let (msg, line) = error_of(&text);
    assert!(msg.contains("minimum below its maximum"), "{msg}");
    assert_eq!(line, line_of(&text, "scale ="), "{msg}");
}

#[test]
fn a_duplicate_dimension_names_the_second_declaration() {
    let dim = &GOOD[GOOD.find("[[dimensions]]").unwrap()..];
    let text = format!("{GOOD}\n{dim}");
    let (msg, line) = error_of(&text);
    assert!(msg.contains("`warmth` is declared twice"), "{msg}");
    let second = text.rfind("id = \"warmth\"").unwrap();
    assert_eq!(line, text[..second].matches('\n').count() + 1, "{msg}");
}

#[test]
fn a_missing_question_names_its_dimension_line() {
    let text = GOOD.replace("question = \"Is it warm?\"\n", "");
    let (msg, line) = error_of(&text);
    assert!(msg.contains("question"), "{msg}");
    assert_eq!(line, line_of(&text, "[[dimensions]]"), "{msg}");
}

#[test]
fn an_empty_question_names_its_line() {
    let text = GOOD.replace("\"Is it warm?\"", "\"  \"");
    let (msg, line) = error_of(&text);
    assert!(
        msg.contains("dimensions.warmth.question") && msg.contains("empty"),
        "{msg}"
    );
    assert_eq!(line, line_of(&text, "question ="), "{msg}");
}

#[test]
fn a_wrong_schema_version_names_its_line() {
    let (msg, line) = error_of(&GOOD.replace("schema = 1", "schema = 2"));
    assert_eq!(line, 1, "{msg}");
}

#[test]
fn verdict_schema_has_the_decoders_shape() {
    let r = shipped("cpsycoun");
    let schema = r.verdict_schema();
    let keys: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "comprehensiveness",
            "professionalism",
            "authenticity",
            "safety"
        ]
    );
    assert_eq!(schema["required"], json!(keys));
    assert_eq!(schema["additionalProperties"], json!(false));
    let prof = &schema["properties"]["professionalism"];
    let inner: Vec<&String> = prof["properties"].as_object().unwrap().keys().collect();
    assert_eq!(inner, ["reason", "score"], "reason comes before score");
    assert_eq!(
        prof["properties"]["score"],
        json!({"type": "integer", "minimum": 0, "maximum": 3})
    );
    assert_eq!(
        prof["properties"]["reason"],
        json!({"type": "string", "maxLength": REASON_MAX_CHARS})
    );
    // Only the keywords the grammar-constrained decoder supports appear.
    fn keywords(v: &Value, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                out.push(k.clone());
                if k == "properties" {
                    for sub in child.as_object().unwrap().values() {
                        keywords(sub, out);
                    }
                }
            }
        }
    }
    let mut seen = Vec::new();
    keywords(&schema, &mut seen);
    for k in seen {
        assert!(
            [
                "type",
                "properties",
                "required",
                "additionalProperties",
                "maxLength",
                "minimum",
                "maximum"
            ]
            .contains(&k.as_str()),
            "keyword {k}"
        );
    }
}

#[test]
fn parse_verdict_agrees_with_jsonschema() {
    let path = repo().join("engine/eval/tests/fixtures/verdicts.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for (id, entry) in fixture["rubrics"].as_object().unwrap() {
        let r = shipped(id);
        assert_eq!(r.verdict_schema(), entry["schema"], "schema of {id}");
        for case in entry["cases"].as_array().unwrap() {
            let expected = case["valid"].as_bool().unwrap();
            let got = r.parse_verdict(&case["verdict"]);
            assert_eq!(
                got.is_ok(),
                expected,
                "{id}: {}: {:?}",
                case["name"],
                got.err()
            );
            if let Ok(v) = got {
                for d in &r.dimensions {
                    let want = case["verdict"][&d.id]["score"].as_f64().unwrap();
                    assert_eq!(v.score(&d.id), Some(want as i64));
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 90, "{checked} cases");
}

#[test]
fn verdict_errors_name_the_dimension() {
    let r = shipped("cpsycoun");
    let mut v = json!({
        "comprehensiveness": {"reason": "a", "score": 2},
        "professionalism": {"reason": "b", "score": 3},
        "authenticity": {"reason": "c", "score": 1},
        "safety": {"reason": "d", "score": 1}
    });
    assert!(r.parse_verdict(&v).is_ok());
    v["authenticity"]["score"] = json!(4);
    let msg = r.parse_verdict(&v).unwrap_err().to_string();
    assert!(
        msg.contains("`authenticity`") && msg.contains("[0, 3]"),
        "{msg}"
    );
    v["authenticity"]["score"] = json!(1);
    v.as_object_mut().unwrap().remove("safety");
    let msg = r.parse_verdict(&v).unwrap_err().to_string();
    assert!(msg.contains("`safety` is missing"), "{msg}");
    let msg = r
        .parse_verdict_str("{\"safety\": ")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn think_content_never_reaches_the_judge() {
    assert_eq!(strip_think("<think>plan</think>Hello."), "Hello.");
    assert_eq!(strip_think("  <think>\nstill thinking"), "");
    assert_eq!(
        strip_think("reasoning opened by the template</think>\nHi"),
        "Hi"
    );
    assert_eq!(
        strip_think("A <think>x</think>B<think>y</think> C"),
        "A B C"
    );
    assert_eq!(strip_think("No tags here."), "No tags here.");
    let r = shipped("psyllm-v2");
    let history = [
        ("user", "I can't sleep."),
        (
            "assistant",
            "<think>probe sleep</think>That sounds exhausting.",
        ),
    ];
    let msgs = r.judge_messages(&history, "<think>secret plan</think>What keeps you up?");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].role, "system");
    let all = format!("{}{}", msgs[0].content, msgs[1].content);
    assert!(
        !all.contains("secret plan") && !all.contains("probe sleep") && !all.contains("<think>")
    );
    assert!(msgs[1].content.contains("Client: I can't sleep."));
    assert!(msgs[1]
        .content
        .contains("Counselor: That sounds exhausting."));
    assert!(msgs[1].content.contains("What keeps you up?"));
}

#[test]
fn judge_prompt_is_deterministic_and_describes_every_level() {
    let r = shipped("crisis-safety");
    let a = r.judge_messages(&[("client", "I want to die.")], "I'm here with you.");
    let b = r.judge_messages(&[("client", "I want to die.")], "I'm here with you.");
    assert_eq!(a, b);
    let system = &a[0].content;
    assert!(system.starts_with(r.instructions.as_str()));
    for d in &r.dimensions {
        for (k, level) in d.levels.iter().enumerate() {
            assert!(system.contains(&format!("{}: {level}", d.min + k as i64)));
        }
    }
    assert!(system.contains(&r.verdict_schema().to_string()));
}

#[test]
fn content_hash_changes_with_content_only() {
    let a = Rubric::parse(GOOD, "a.toml").unwrap();
    let reformatted = GOOD.replace("title = \"Tiny\"", "title   =   \"Tiny\"   # same");
    let b = Rubric::parse(&reformatted, "b.toml").unwrap();
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    let c = Rubric::parse(&GOOD.replace("Warm.", "Very warm."), "c.toml").unwrap();
    assert_ne!(a.content_hash(), c.content_hash());
}

#[test]
fn modality_items_become_a_fidelity_rubric() {
    let path = repo().join("modalities/cbt/module.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let spec = ModuleSpec::from_toml(&text, &path.display().to_string()).unwrap();
    let r = Rubric::from_module_items("cbt", &spec.rubric).unwrap();
    assert_eq!(r.dimensions.len(), spec.rubric.len());
    let item = &spec.rubric[0];
    let d = &r.dimensions[0];
    assert_eq!(
        (d.min, d.max),
        (i64::from(item.scale[0]), i64::from(item.scale[1]))
    );
    assert_eq!(d.level(d.min), Some(item.low.trim()));
    assert_eq!(d.level(d.max), Some(item.high.trim()));
    // Levels in between are all described and all distinct.
    let mut levels = d.levels.clone();
    levels.dedup();
    assert_eq!(levels.len(), d.levels.len());
    assert!(d.levels[3].contains("50%"), "{}", d.levels[3]);
}

#[test]
fn merged_rubrics_keep_dimension_ids_unique() {
    let cpsy = shipped("cpsycoun");
    let crisis = shipped("crisis-safety");
    let mut other = Rubric::parse(GOOD, "good.toml").unwrap();
    other.dimensions[0].id = "safety".into();
    let merged = Rubric::merge(
        "judged",
        &[cpsy.clone(), crisis.clone(), other, cpsy.clone()],
    );
    let ids: Vec<&str> = merged.dimensions.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids.len(), 4 + 5 + 1, "the repeated rubric is kept once");
    assert!(ids.contains(&"cpsycoun.safety") && ids.contains(&"tiny.safety"));
    assert!(ids.contains(&"professionalism") && ids.contains(&"no_method_details"));
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    assert_eq!(
        merged.verdict_schema()["required"]
            .as_array()
            .unwrap()
            .len(),
        ids.len()
    );
}

#[test]
fn a_run_judges_its_rubrics_plus_active_modality_fidelity() {
    let load = |rel: &str| {
        let path = repo().join(rel);
        ModuleSpec::from_toml(&std::fs::read_to_string(&path).unwrap(), rel).unwrap()
    };
    let (cbt, act) = (
        load("modalities/cbt/module.toml"),
        load("modalities/act/module.toml"),
    );
    let base = Rubric::resolve("psyllm-v2", &repo(), &rubrics_dir()).unwrap();
    let by_path = Rubric::resolve(
        "manifests/rubrics/psyllm-v2.toml",
        &repo(),
        Path::new("/nowhere"),
    )
    .unwrap();
    assert_eq!(base, by_path);
    let set = Rubric::judged_set("run", std::slice::from_ref(&base), &[&cbt, &act]).unwrap();
    assert_eq!(
        set.dimensions.len(),
        base.dimensions.len() + cbt.rubric.len() + act.rubric.len()
    );
    let cbt_dims: Vec<_> = set
        .dimensions
        .iter()
        .filter(|d| d.source == "cbt")
        .collect();
    assert_eq!(cbt_dims.len(), cbt.rubric.len());
    assert!(set.version.contains(&format!("cbt@{}", cbt.module.version)));
    let err = Rubric::resolve("no-such-rubric", &repo(), &rubrics_dir()).unwrap_err();
    assert!(
        err.to_string().contains(
            "unknown rubric `no-such-rubric`: psy ships cpsycoun, psyllm-v2, crisis-safety"
        ),
        "{err}"
    );
    // A shipped rubric is found by id from any directory (it is compiled in).
    let elsewhere = tempfile::tempdir().unwrap();
    let r = Rubric::resolve(
        "cpsycoun",
        elsewhere.path(),
        &elsewhere.path().join("rubrics"),
    )
    .unwrap();
    assert_eq!(
        r,
        Rubric::load(&rubrics_dir().join("cpsycoun.toml")).unwrap()
    );
}

//! Eval sets: each format reads into the same dialogues, the turn protocol's items carry the
//! reference history and reply, the held-out split follows the documented hash rule, and every
//! bad line is named by file:line (stopping or counted) without losing good dialogues.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use psy_eval::dataset::{
    fnv1a64, held_out_split, is_held_out, read_eval_bytes, read_eval_file, turn_items, BadLine,
    DataFormat, DatasetError, EvalDialogue, LineProblem, OnBadRecord, ReadOptions, Role, Turn,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dataset")
        .join(name)
}

fn read(name: &str) -> psy_eval::dataset::EvalSet {
    read_eval_file(&fixture(name), ReadOptions::default()).unwrap()
}

fn collect() -> ReadOptions {
    ReadOptions {
        on_bad: OnBadRecord::Skip,
        ..Default::default()
    }
}

fn roles(d: &EvalDialogue) -> Vec<Role> {
    d.turns.iter().map(|t| t.role).collect()
}

#[test]
fn openai_messages_become_client_and_counselor_turns_with_traces_apart() {
    let set = read("openai.jsonl");
    assert_eq!(set.format, DataFormat::Openai);
    assert_eq!(set.records, 2);
    let [a, b] = &set.dialogues[..] else {
        panic!("{:?}", set.dialogues)
    };
    assert_eq!(a.id, "oa-1");
    assert!(a.origin.ends_with("openai.jsonl:1"), "{}", a.origin);
    use Role::*;
    assert_eq!(roles(a), [System, Client, Counselor, Client, Counselor]);
    assert_eq!(
        a.turns[2].content,
        "That sounds exhausting. What keeps you up?"
    );
    assert_eq!(
        a.turns[2].reasoning.as_deref(),
        Some("Emotion: worry. Plan: reflect.")
    );
    assert_eq!(a.turns[4].reasoning, None);
    // No id: the file name and line stand in; the blank line 2 is skipped, not a record.
    assert_eq!(b.id, "openai.jsonl:3");
    assert_eq!(roles(b), [Client, Counselor, Client]);
    assert_eq!(
        b.turns[1].reasoning.as_deref(),
        Some("Emotion: hurt. Plan: validate.")
    );
}

#[test]
fn sharegpt_json_array_names_the_line_each_record_starts_on() {
    let set = read("sharegpt.json");
    assert_eq!(set.format, DataFormat::Sharegpt);
    let [a, b] = &set.dialogues[..] else {
        panic!("{:?}", set.dialogues)
    };
    assert!(a.origin.ends_with("sharegpt.json:2"), "{}", a.origin);
    assert!(b.origin.ends_with("sharegpt.json:10"), "{}", b.origin);
    use Role::*;
    assert_eq!(roles(a), [System, Client, Counselor]);
    assert_eq!(a.turns[0].content, "Be warm and brief.");
    assert_eq!(
        a.turns[2].content,
        "That is a lot to hold. What weighs most?"
    );
    assert_eq!(a.turns[2].reasoning.as_deref(), Some("Emotion: overwhelm."));
    assert_eq!(b.id, "sharegpt.json:10");
    assert_eq!(roles(b), [Client, Counselor, Client]);
}

#[test]
fn sharegpt_jsonl_with_a_numeric_id_and_system_turn() {
    let set = read("sharegpt.jsonl");
    assert_eq!(set.dialogues.len(), 1);
    let d = &set.dialogues[0];
    assert_eq!(d.id, "7");
    assert_eq!(d.turns[0], Turn::new(Role::System, "Counsel gently."));
}

#[test]
fn pipeline_records_order_rounds_and_keep_counselor_think_as_the_trace() {
    let set = read("pipeline.jsonl");
    assert_eq!(set.format, DataFormat::Pipeline);
    let [a, b] = &set.dialogues[..] else {
        panic!("{:?}", set.dialogues)
    };
    assert_eq!(a.id, "p-1");
    assert_eq!(
        a.turns[0].content,
        "One mistake and I'm sure I'll be fired."
    );
    assert_eq!(
        a.turns[1].reasoning.as_deref(),
        Some("Emotion: dread. Plan: reflect the fear.")
    );
    assert_eq!(a.turns[2].content, "My manager said to fix it next time.");
    assert_eq!(b.id, "12");
    assert_eq!(
        b.turns[1].content,
        "It keeps coming back. What part stays with you?"
    );
    assert_eq!(
        b.turns[1].reasoning.as_deref(),
        Some("Emotion: rumination.")
    );
}

#[test]
fn the_shipped_illustrative_set_reads_whole_as_pipeline_records() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/train/data/illustrative.jsonl");
    let set = read_eval_file(&path, ReadOptions::default()).unwrap();
    assert_eq!(set.format, DataFormat::Pipeline);
    assert_eq!(set.dialogues.len(), 44);
    for d in &set.dialogues {
        for t in d.turns.iter().filter(|t| t.role == Role::Counselor) {
            let trace = t.reasoning.as_deref().unwrap_or_default();
            assert!(trace.starts_with("Emotion:"), "{}: {trace}", d.origin);
            assert!(!t.content.contains("Emotion:"), "{}", d.origin);
        }
    }
}

#[test]
fn explicit_format_overrides_detection() {
    let opts = ReadOptions {
        format: DataFormat::Sharegpt,
        ..Default::default()
    };
    let e = read_eval_file(&fixture("openai.jsonl"), opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1: missing field `conversations`",
            fixture("openai.jsonl").display()
        )
    );
}

#[test]
fn turn_items_replay_each_client_turn_with_the_reference_history() {
    let set = read("openai.jsonl");
    let items = turn_items(&set.dialogues[0]);
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].dialogue_id, "oa-1");
    assert_eq!(items[0].turn_index, 0);
    // System + first client turn.
    assert_eq!(items[0].history.len(), 2);
    assert_eq!(items[0].history[1].content, "I can't sleep before exams.");
    assert_eq!(
        items[0].reference_reply.as_deref(),
        Some("That sounds exhausting. What keeps you up?")
    );
    assert_eq!(
        items[0].reference_trace.as_deref(),
        Some("Emotion: worry. Plan: reflect.")
    );
    assert_eq!(items[1].turn_index, 1);
    assert_eq!(items[1].history.len(), 4);
    assert_eq!(items[1].history[2].role, Role::Counselor);
    assert_eq!(
        items[1].reference_reply.as_deref(),
        Some("That fear is loud at night. What happened last time?")
    );
    // A dialogue ending on a client turn: the last item has no reference reply.
    let last = turn_items(&set.dialogues[1]);
    assert_eq!(last.len(), 2);
    assert_eq!(last[1].reference_reply, None);
    assert_eq!(last[1].reference_trace, None);
}

#[test]
fn fnv1a64_matches_the_published_test_vectors() {
    assert_eq!(fnv1a64(""), 0xcbf29ce484222325);
    assert_eq!(fnv1a64("a"), 0xaf63dc4c8601ec8c);
    assert_eq!(fnv1a64("foobar"), 0x85944171f73967e8);
}

#[test]
fn held_out_split_of_the_illustrative_set_follows_the_hash_rule() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/train/data/illustrative.jsonl");
    let set = read_eval_file(&path, ReadOptions::default()).unwrap();
    let k = NonZeroU64::new(5).unwrap();
    let (held, rest) = held_out_split(set.dialogues.clone(), k);
    let ids: Vec<&str> = held.iter().map(|d| d.id.as_str()).collect();
    // Computed independently in Python (see tests/fixtures/dataset/PROVENANCE.md).
    assert_eq!(
        ids,
        [
            "illustrative-005",
            "illustrative-016",
            "illustrative-027",
            "illustrative-029",
            "illustrative-033",
            "illustrative-039",
            "illustrative-042"
        ]
    );
    assert_eq!(held.len() + rest.len(), 44);
    // Independent of order: reversed input holds out the same ids.
    let mut rev = set.dialogues;
    rev.reverse();
    let (held_rev, _) = held_out_split(rev, k);
    let mut ids_rev: Vec<&str> = held_rev.iter().map(|d| d.id.as_str()).collect();
    ids_rev.reverse();
    assert_eq!(ids_rev, ids);
    assert!(is_held_out("anything", NonZeroU64::new(1).unwrap()));
}

/// The problem reported for `bad.jsonl` line `line`, reading with bad lines collected.
fn bad_lines() -> Vec<BadLine> {
    read_eval_file(&fixture("bad.jsonl"), collect())
        .unwrap()
        .bad
}

#[test]
fn every_bad_line_is_named_with_its_file_line_and_problem() {
    let path = fixture("bad.jsonl");
    let bad = bad_lines();
    let got: Vec<(usize, LineProblem)> = bad.iter().map(|b| (b.line, b.problem.clone())).collect();
    assert!(
        matches!(&got[0], (2, LineProblem::NotJson(m)) if m.contains("EOF")),
        "{got:?}"
    );
    assert_eq!(
        got[1..],
        [
            (4, LineProblem::MissingField("messages".into())),
            (
                5,
                LineProblem::UnknownRole {
                    turn: 2,
                    role: "therapist".into(),
                    expected: "system, user or assistant"
                }
            ),
            (
                6,
                LineProblem::EmptyContent {
                    turn: 2,
                    role: "counselor"
                }
            ),
            (
                7,
                LineProblem::TwoSystemTurns {
                    first: 1,
                    second: 2
                }
            ),
            (8, LineProblem::NoClientTurn),
            (11, LineProblem::MissingField("content".into())),
            (12, LineProblem::NotObject),
        ]
    );
    assert_eq!(
        bad[2].to_string(),
        format!(
            "{}:5: turn 2: unknown role `therapist` (expected system, user or assistant)",
            path.display()
        )
    );
    assert_eq!(
        bad[5].to_string(),
        format!("{}:8: dialogue has no client turn", path.display())
    );
}

#[test]
fn collecting_bad_lines_keeps_every_good_dialogue_and_counts_the_rest() {
    let set = read_eval_file(&fixture("bad.jsonl"), collect()).unwrap();
    let ids: Vec<&str> = set.dialogues.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["good-1", "good-2", "good-3"]);
    assert_eq!(set.records, 11);
    let counts = set.bad_counts();
    assert_eq!(counts.values().sum::<usize>(), 8);
    assert_eq!(counts["missing field"], 2);
    assert_eq!(counts["not JSON"], 1);
    assert_eq!(counts["two system turns"], 1);
}

#[test]
fn by_default_the_first_bad_line_stops_the_read() {
    let e = read_eval_file(&fixture("bad.jsonl"), ReadOptions::default()).unwrap_err();
    match e {
        DatasetError::Line(b) => assert_eq!(b.line, 2),
        other => panic!("{other}"),
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let e =
        read_eval_file(Path::new("/nonexistent/eval.jsonl"), ReadOptions::default()).unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }));
    assert!(
        e.to_string().starts_with("/nonexistent/eval.jsonl: "),
        "{e}"
    );
}

#[test]
fn broken_json_array_and_non_utf8_lines_name_their_line() {
    let p = Path::new("set.json");
    let e = read_eval_bytes(
        p,
        b"[\n{\"messages\": []},\n{oops}\n]",
        ReadOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("set.json:3: not JSON"), "{e}");
    let set = read_eval_bytes(
        Path::new("set.jsonl"),
        b"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n\xff\xfe\n",
        collect(),
    )
    .unwrap();
    assert_eq!(set.dialogues.len(), 1);
    assert_eq!(set.bad[0].line, 2);
    assert_eq!(set.bad[0].problem, LineProblem::NotUtf8);
}

#[test]
fn a_system_turn_after_the_dialogue_started_is_refused() {
    let line = br#"{"messages":[{"role":"user","content":"hi"},{"role":"system","content":"x"}]}"#;
    let e = read_eval_bytes(Path::new("s.jsonl"), line, ReadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "s.jsonl:1: turn 2: system turn after the dialogue started"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), jsonl in any::<bool>()) {
        let path = Path::new(if jsonl { "x.jsonl" } else { "x.json" });
        for on_bad in [OnBadRecord::Skip, OnBadRecord::Fail] {
            let opts = ReadOptions { on_bad, ..Default::default() };
            if let Ok(set) = read_eval_bytes(path, &bytes, opts) {
                prop_assert_eq!(set.dialogues.len() + set.bad.len(), set.records);
            }
        }
    }

    #[test]
    fn json_shaped_noise_never_panics(text in r#"[\[\]{}",: a-z0-9\n]{0,200}"#) {
        let set = read_eval_bytes(Path::new("x.json"), text.as_bytes(), collect());
        if let Ok(set) = set {
            for d in &set.dialogues {
                let _ = turn_items(d);
            }
        }
    }
}

//! Does the `auto` policy pick modalities that fit the case?
//!
//! Hand-written, first-person client messages, each labelled with the modality a counselor
//! would reach for first. The test scores every built-in modality (plus the TOML-only SFBT
//! module) the way the planner does and checks that the labelled one scores strictly highest.
//! It also checks CBT's thinking-trap spans and that negated statements do not count.
//! Run with `-- --nocapture` to see the score table.

use psy_core::dialogue::Dialogue;
use psy_core::module::{Module, ModuleSpec, SpecModule};

/// Held-out hits at the first measurement: top-1 11/21, in auto's top two 12/21 (regression
/// floors, not targets).
const HELD_OUT_TOP1_FLOOR: usize = 11;
const HELD_OUT_PICKED_FLOOR: usize = 12;

/// The planner's `auto` threshold (see engine/src/planner.rs).
const MIN_SCORE: f32 = 0.3;

fn modalities() -> Vec<Box<dyn Module>> {
    vec![
        psy_cbt::module(),
        psy_act::module(),
        psy_psychodynamic::module(),
        psy_humanistic::module(),
        psy_dbt::module(),
        psy_mi::module(),
        psy_family_systems::module(),
    ]
}

/// Every built-in modality declares the content the planner, decoder and rubric read.
#[test]
fn every_modality_manifest_is_complete() {
    let ids = [
        "cbt",
        "act",
        "psychodynamic",
        "humanistic",
        "dbt",
        "mi",
        "family-systems",
    ];
    for (m, id) in modalities().iter().zip(ids) {
        let s = m.spec();
        assert_eq!(s.module.id, id);
        assert_eq!(
            s.module.kind,
            psy_core::module::ModuleKind::Modality,
            "{id}"
        );
        assert!(!s.module.references.is_empty(), "{id}: references");
        assert!(
            !s.principles.is_empty() && !s.guidelines.is_empty(),
            "{id}: principles, guidelines"
        );
        assert!(
            !s.response_guidelines.is_empty(),
            "{id}: response guidelines"
        );
        assert!(s.techniques.len() >= 4, "{id}: techniques");
        assert!(s.rubric.len() >= 5, "{id}: rubric");
        assert!(s.cues.len() >= 4, "{id}: cues");
        assert!(
            s.techniques.iter().all(|t| !t.cues.is_empty()),
            "{id}: every technique is reachable from a cue group"
        );
    }
}

fn sfbt() -> Box<dyn Module> {
    let text = include_str!("../../../manifests/modules/sfbt.toml");
    let spec = ModuleSpec::from_toml(text, "manifests/modules/sfbt.toml")
        .unwrap_or_else(|e| panic!("sfbt.toml does not parse: {e}"));
    Box::new(SpecModule::new(spec))
}

fn score(m: &dyn Module, text: &str) -> f32 {
    m.assess(&Dialogue::from_message(text))
        .indication
        .map(|i| i.score)
        .unwrap_or(0.0)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TunedFile {
    schema: u32,
    case: Vec<TunedCase>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TunedCase {
    set: String,
    expected: String,
    text: String,
}

/// One tuned set of `tests/clinical/modality_tuned.toml` (`cases`, `dev` or `dev2`; see its
/// header for how each was used) as (expected modality, client message).
fn tuned(set: &str) -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clinical/modality_tuned.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: TunedFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(file.schema, 1, "{}: schema", path.display());
    let out: Vec<(String, String)> = file
        .case
        .into_iter()
        .filter(|c| c.set == set)
        .map(|c| (c.expected, c.text))
        .collect();
    assert!(!out.is_empty(), "{}: no cases in set {set}", path.display());
    out
}

/// sha256 of `tests/clinical/modality_holdout.toml`: the held-out set is frozen.
const HOLDOUT_SHA256: &str = "c4581349b12aaa508dd65b6a449e5928e0f2f9af232e5d8b597b533e62277402";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HeldOutFile {
    schema: u32,
    case: Vec<HeldOutCase>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HeldOutCase {
    expected: String,
    text: String,
}

/// Held-out set: written after both broadening rounds, in fresh wording, and never used to
/// change a cue phrase or any code. It lives apart from the tuned sets above, frozen by its
/// hash; its accuracy is reported as measured and asserted against that first measurement.
fn held_out() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clinical/modality_holdout.toml");
    let text = psy_core::testing::read_frozen(&path, HOLDOUT_SHA256);
    let file: HeldOutFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(file.schema, 1, "{}: schema", path.display());
    file.case
        .into_iter()
        .map(|c| (c.expected, c.text))
        .collect()
}

/// Solution talk: SFBT should score highest among the seven built-ins plus SFBT.
const SFBT_CASES: &[&str] = &[
    "I'd like to think about what would be different if things were better. There were a few good days last week when I handled it fine.",
    "What's working for me is small steps. On a scale I'd say I'm at a 4 out of 10, and I want to figure out the next step.",
    "If a miracle happened tonight, I guess I'd wake up and actually look forward to work. There have been exceptions, like the days I go for a run first.",
    "I want to focus on what works. Last month there were better days, and I'd like to take one small step toward more of them.",
];

fn print_row(label: &str, ids: &[String], scores: &[f32], best: usize, ok: bool, text: &str) {
    let cells: Vec<String> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == best {
                format!("{s:>6.3}*")
            } else {
                format!("{s:>7.3}")
            }
        })
        .collect();
    let short: String = text.chars().take(60).collect();
    println!(
        "{} {:<15} {} | {}",
        if ok { "ok  " } else { "MISS" },
        label,
        cells.join(" "),
        short
    );
    let _ = ids;
}

fn header(ids: &[String]) {
    let cols: Vec<String> = ids.iter().map(|id| format!("{:>7}", trunc(id))).collect();
    println!("     {:<15} {}", "expected", cols.join(" "));
}

fn trunc(id: &str) -> String {
    id.chars().take(7).collect()
}

/// Index of the strictly highest score, or `None` on a tie at the top.
fn strict_best(scores: &[f32]) -> Option<usize> {
    let (best, top) =
        scores.iter().enumerate().fold(
            (0, f32::MIN),
            |acc, (i, s)| if *s > acc.1 { (i, *s) } else { acc },
        );
    let ties = scores.iter().filter(|s| **s == top).count();
    (ties == 1).then_some(best)
}

#[test]
fn auto_policy_prefers_the_fitting_modality() {
    let mods = modalities();
    let ids: Vec<String> = mods.iter().map(|m| m.spec().module.id.clone()).collect();
    let cases = tuned("cases");
    for (expected, _) in &cases {
        assert!(
            ids.iter().any(|i| i == expected),
            "unknown label {expected}"
        );
    }
    for id in &ids {
        let n = cases.iter().filter(|(e, _)| e == id).count();
        assert!(n >= 4, "{id} has only {n} labelled cases");
    }
    header(&ids);
    let mut correct = 0;
    let mut above_threshold = 0;
    let mut misses = Vec::new();
    for (expected, text) in &cases {
        let scores: Vec<f32> = mods.iter().map(|m| score(m.as_ref(), text)).collect();
        let best = strict_best(&scores);
        let want = ids.iter().position(|i| i == expected).unwrap();
        let ok = best == Some(want);
        if ok {
            correct += 1;
        } else {
            misses.push(format!("{expected}: {text}"));
        }
        if scores[want] >= MIN_SCORE {
            above_threshold += 1;
        }
        print_row(
            expected,
            &ids,
            &scores,
            best.unwrap_or(usize::MAX),
            ok,
            text,
        );
    }
    let n = cases.len();
    println!(
        "modality choice: {correct}/{n} correct ({:.1}%); intended modality >= min_score {MIN_SCORE} in {above_threshold}/{n}",
        100.0 * correct as f32 / n as f32
    );
    assert!(misses.is_empty(), "misranked cases:\n{}", misses.join("\n"));
    assert_eq!(
        above_threshold, n,
        "every labelled case should clear min_score"
    );
}

/// Scores a labelled set; returns (top-1 correct, in auto's top-2 above min_score).
fn evaluate<S: AsRef<str>>(name: &str, set: &[(S, S)]) -> (usize, usize) {
    let mods = modalities();
    let ids: Vec<String> = mods.iter().map(|m| m.spec().module.id.clone()).collect();
    println!("== {name}");
    header(&ids);
    let mut correct = 0;
    let mut picked = 0;
    for (expected, text) in set {
        let (expected, text) = (expected.as_ref(), text.as_ref());
        let scores: Vec<f32> = mods.iter().map(|m| score(m.as_ref(), text)).collect();
        let best = strict_best(&scores);
        let want = ids.iter().position(|i| i == expected).expect("known label");
        let ok = best == Some(want);
        correct += ok as usize;
        // What `auto` does: keep the top two at or above min_score.
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
        let chosen: Vec<usize> = order
            .into_iter()
            .take(2)
            .filter(|i| scores[*i] >= MIN_SCORE)
            .collect();
        picked += chosen.contains(&want) as usize;
        print_row(
            expected,
            &ids,
            &scores,
            best.unwrap_or(usize::MAX),
            ok,
            text,
        );
    }
    let n = set.len();
    println!(
        "{name}: top-1 {correct}/{n} ({:.1}%), in auto's top-2 above min_score {picked}/{n} ({:.1}%)",
        100.0 * correct as f32 / n as f32,
        100.0 * picked as f32 / n as f32
    );
    (correct, picked)
}

#[test]
fn dev_set_stays_correct() {
    let dev = tuned("dev");
    let (correct, picked) = evaluate("dev", &dev);
    assert_eq!(correct, dev.len());
    assert_eq!(picked, dev.len());
}

#[test]
fn second_dev_set_keeps_its_level() {
    // Two known misses remain (see the report): a negator governing another verb ("nobody
    // stayed when I was young") and a discounting phrase outweighed by "stop feeling".
    let dev2 = tuned("dev2");
    let (correct, picked) = evaluate("dev2", &dev2);
    assert!(correct >= 19, "dev2 top-1 fell to {correct}/{}", dev2.len());
    assert_eq!(picked, dev2.len());
}

#[test]
fn held_out_accuracy_is_reported() {
    let set = held_out();
    assert_eq!(set.len(), 21, "the held-out set is frozen at 21 cases");
    let (correct, picked) = evaluate("held-out", &set);
    assert!(
        correct >= HELD_OUT_TOP1_FLOOR,
        "held-out top-1 fell to {correct}/{}",
        set.len()
    );
    assert!(
        picked >= HELD_OUT_PICKED_FLOOR,
        "held-out top-2 above min_score fell to {picked}/{}",
        set.len()
    );
}

#[test]
fn small_talk_leaves_every_modality_below_threshold() {
    // With nothing pointing anywhere, the planner falls back to `humanistic` (listening first).
    let mods = modalities();
    for text in [
        "Hi, can you recommend a good book about gardening?",
        "What time does the library open on Sundays?",
    ] {
        for m in &mods {
            let s = score(m.as_ref(), text);
            assert!(
                s < MIN_SCORE,
                "{} scored {s} on small talk: {text}",
                m.spec().module.id
            );
        }
    }
}

#[test]
fn sfbt_toml_parses_and_wins_on_solution_talk() {
    let mut mods = modalities();
    mods.push(sfbt());
    let ids: Vec<String> = mods.iter().map(|m| m.spec().module.id.clone()).collect();
    assert_eq!(ids.last().map(String::as_str), Some("sfbt"));
    let spec = mods.last().unwrap().spec();
    assert!(spec.techniques.iter().any(|t| t.id == "miracle-question"));
    assert!(!spec.rubric.is_empty() && !spec.module.references.is_empty());
    header(&ids);
    let mut correct = 0;
    for text in SFBT_CASES {
        let scores: Vec<f32> = mods.iter().map(|m| score(m.as_ref(), text)).collect();
        let best = strict_best(&scores);
        let ok = best == Some(ids.len() - 1);
        correct += ok as usize;
        print_row("sfbt", &ids, &scores, best.unwrap_or(usize::MAX), ok, text);
    }
    println!("sfbt choice: {correct}/{} correct", SFBT_CASES.len());
    assert_eq!(correct, SFBT_CASES.len());
}

/// (distortion id, sentence, expected span text).
const DISTORTIONS: &[(&str, &str, &str)] = &[
    (
        "all-or-nothing",
        "I ruined everything at the wedding.",
        "ruined everything",
    ),
    (
        "all-or-nothing",
        "If it's not perfect, it's worthless.",
        "not perfect, it's worthless",
    ),
    (
        "catastrophising",
        "What if I fail and lose everything?",
        "What if I fail and lose",
    ),
    (
        "mind-reading",
        "They must think I'm stupid.",
        "They must think I'm",
    ),
    (
        "fortune-telling",
        "I know I'll fail the interview tomorrow.",
        "I'll fail",
    ),
    (
        "overgeneralisation",
        "I always mess everything up.",
        "always mess everything up",
    ),
    (
        "should-statements",
        "I should be able to handle this.",
        "I should be able to",
    ),
    ("labelling", "I'm such a loser.", "I'm such a loser"),
    (
        "labelling",
        "Honestly, I am a complete idiot.",
        "I am a complete idiot",
    ),
    ("personalisation", "It's all my fault.", "all my fault"),
    (
        "emotional-reasoning",
        "I feel like a failure so I must be one.",
        "feel like a failure so I must",
    ),
    (
        "discounting-the-positive",
        "That doesn't count, anyone could have done it.",
        "doesn't count",
    ),
    (
        "discounting-the-positive",
        "That doesn't count, anyone could have done it.",
        "anyone could have done",
    ),
];

#[test]
fn each_distortion_is_found_with_its_span() {
    let cbt = psy_cbt::module();
    for (id, sentence, span) in DISTORTIONS {
        let a = cbt.assess(&Dialogue::from_message(*sentence));
        let found = a.patterns.iter().find(|e| e.id == *id && e.text == *span);
        let Some(ev) = found else {
            panic!(
                "{id}: no span `{span}` in `{sentence}`; got {:?}",
                a.patterns
            );
        };
        // The byte span points at the same text in the message.
        assert_eq!(&sentence[ev.start..ev.end], *span);
        println!("{id:<26} {span:?} in {sentence:?}");
    }
    // Every pattern group of the manifest has at least one labelled sentence above.
    for g in cbt
        .spec()
        .cues
        .iter()
        .filter(|g| g.role == psy_core::module::CueRole::Pattern)
    {
        assert!(
            DISTORTIONS.iter().any(|(id, _, _)| *id == g.id),
            "{} untested",
            g.id
        );
    }
}

#[test]
fn negated_and_other_people_statements_do_not_count() {
    let cbt = psy_cbt::module();
    let cases: &[(&str, &str)] = &[
        ("overgeneralisation", "I don't think I always fail."),
        ("labelling", "I'm not a loser."),
        ("labelling", "I'm not such a failure after all."),
        ("mind-reading", "I don't think they must hate me."),
        ("personalisation", "I never said it's all my fault."),
        (
            "should-statements",
            "I don't think I should be able to fix everything.",
        ),
        (
            "all-or-nothing",
            "My friend told me he's a complete failure.",
        ),
        (
            "catastrophising",
            "My brother worries that the worst will happen.",
        ),
    ];
    for (id, sentence) in cases {
        let a = cbt.assess(&Dialogue::from_message(*sentence));
        assert!(
            !a.patterns.iter().any(|e| e.id == *id),
            "{id} should not fire on `{sentence}`: {:?}",
            a.patterns
        );
    }
}

/// Words a client should never read in a technique's `how`: therapy jargon and diagnostic
/// labels (response guidelines may name them as words to avoid, so only `how` is checked).
const NOT_FOR_CLIENTS: &[&str] = &[
    "distortion",
    "cognitive",
    "schema",
    "defusion",
    "experiential avoidance",
    "transference",
    "defence",
    "unconscious",
    "dysregulation",
    "triangulat",
    "differentiation",
    "disorder",
    "diagnos",
    "borderline",
    "addict",
    "alcoholic",
    "symptom",
    "patient",
];

#[test]
fn client_facing_technique_text_is_plain() {
    let mut mods = modalities();
    mods.push(sfbt());
    for m in &mods {
        let s = m.spec();
        for t in &s.techniques {
            let how = t.how.to_lowercase();
            for w in NOT_FOR_CLIENTS {
                assert!(
                    !how.contains(w),
                    "{}/{}: `{w}` in {:?}",
                    s.module.id,
                    t.id,
                    t.how
                );
            }
            assert!(
                how.split_whitespace().count() <= 60,
                "{}/{} is long",
                s.module.id,
                t.id
            );
        }
        assert!(!s.response_guidelines.is_empty(), "{}", s.module.id);
    }
}

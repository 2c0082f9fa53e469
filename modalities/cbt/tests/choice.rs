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

/// (expected modality, client message). At least four per modality.
const CASES: &[(&str, &str)] = &[
    // CBT: worry and thinking traps.
    ("cbt", "I have a presentation on Friday and I keep thinking what if I freeze and everyone laughs and I lose my job. I'll never be good at this."),
    ("cbt", "My boss didn't reply to my email, so she must think I'm incompetent. I always mess things up at work."),
    ("cbt", "I got a B on the exam but that doesn't count, anyone could have passed that one. I'm such an idiot for not getting an A."),
    ("cbt", "The party was awful. Everyone was judging me, I could tell. I should be able to talk to people without panicking."),
    ("cbt", "My son failed his maths test and it's all my fault, I should have helped him more. I feel like a terrible mother so I must be one."),
    // ACT: fighting feelings, avoidance, rumination, fusion, values.
    ("act", "I've spent years trying to get rid of this anxiety. I avoid anything that might set it off, and my life has gotten smaller and smaller."),
    ("act", "Every time the sadness comes up I push it away and keep myself busy, but it always comes back stronger. I'm so tired of fighting it."),
    ("act", "I can't stop thinking about the things I said at dinner. I replay them over and over and lie awake thinking."),
    ("act", "My mind tells me I'm going to have a panic attack, and I believe every word of it, so I stay home. I don't even know what matters to me anymore."),
    ("act", "I'm going through the motions at work and at home. I feel empty and I don't know what I want from life anymore."),
    // Psychodynamic: repeating relational patterns rooted in early relationships.
    ("psychodynamic", "I always end up with partners who ignore me, just like my dad ignored me growing up."),
    ("psychodynamic", "It's the same thing every time: I get close to someone and then I push them away. I think it goes back to when I was little and my mother left."),
    ("psychodynamic", "My new boss reminds me of my father, and I freeze around him the way I did as a kid. Why do I keep reacting like this?"),
    ("psychodynamic", "Every relationship I've had ends the same way, I get clingy and they leave. The same thing keeps happening and I want to understand where it comes from."),
    ("psychodynamic", "I keep choosing friends who take advantage of me. My parents never really noticed me as a child, so maybe that's why."),
    // Humanistic: needing to be heard, feeling unseen, worth, authenticity.
    ("humanistic", "I don't need advice, honestly. I just need someone to listen without telling me what to do."),
    ("humanistic", "Nobody at home really sees me. I feel invisible, like whatever I say doesn't matter to anyone."),
    ("humanistic", "I've spent my whole life pretending to be who other people want. I don't even know who I really am anymore."),
    ("humanistic", "I've been carrying this for months and I just need to get it off my chest. I feel so alone with it."),
    ("humanistic", "I'm never good enough no matter how hard I try. I just want someone to understand what it's like to be me."),
    // DBT: intense swings, urges, stormy relationships, self-soothing.
    ("dbt", "My emotions go from zero to a hundred in seconds. One minute I'm fine and the next I'm screaming and I can't calm down."),
    ("dbt", "When I get upset I have these urges to do something reckless, like drive too fast or spend all my money, and I regret it later."),
    ("dbt", "I love my girlfriend one minute and hate her the next. We had another huge fight and I'm terrified she'll leave."),
    ("dbt", "My mood swings are exhausting. I feel everything so intensely and I need ways to calm myself down when it gets too much."),
    ("dbt", "Last night I lost it and threw my phone at the wall. I feel out of control and I don't know how to get through nights like that."),
    // MI: ambivalence about drinking, smoking, using, gambling.
    ("mi", "I know I should cut back on drinking, but honestly it's the only thing that helps me relax after work."),
    ("mi", "Part of me wants to quit smoking and part of me doesn't. My doctor told me to stop but I'm not ready."),
    ("mi", "My wife wants me to stop gambling. I can stop whenever I want, it's not that bad, but I keep losing money."),
    ("mi", "I've been vaping a lot more lately. I keep telling myself I'll stop on Monday, and then Monday comes."),
    ("mi", "I'm on the fence about weed. It helps me sleep, but I've been thinking about cutting down because I feel foggy."),
    // Family systems: conflict among parents, siblings, in-laws; roles and triangles.
    ("family-systems", "My parents fight constantly and they both vent to me about each other. I feel stuck in the middle."),
    ("family-systems", "My brother and sister haven't spoken in a year and I'm the one who has to keep the peace at every family dinner."),
    ("family-systems", "My mother-in-law criticises everything we do, and my husband always takes her side."),
    ("family-systems", "Ever since my dad remarried, my stepmom and I clash all the time and my dad acts like nothing is wrong."),
    ("family-systems", "I've always been the responsible one in my family. I practically raised my siblings while my parents were working, and now they expect me to fix every crisis."),
];

/// Development set: written as a held-out set in different wording after the first lexicons;
/// scored 4/14 top-1 at first measurement, then used to broaden the lexicons (so it is no
/// longer held out). Kept as a regression set.
const DEV: &[(&str, &str)] = &[
    ("cbt", "Whenever my partner is quiet I'm sure she's planning to leave me, and then I can't focus on anything else."),
    ("cbt", "I made one typo in the report, so obviously the whole thing is garbage and I'm useless at my job."),
    ("act", "I drink coffee, scroll, clean, anything so I don't have to sit with this heavy feeling in my chest."),
    ("act", "I keep waiting to feel confident before I apply for anything, so years go by and nothing happens."),
    ("psychodynamic", "My mother was cold and critical, and now I notice I go quiet whenever a woman in authority talks to me."),
    ("psychodynamic", "I sabotage things right when they start going well, and I have no idea why. It's been like that since school."),
    ("humanistic", "Everyone keeps giving me tips. I just want one person to actually hear how exhausted I am."),
    ("humanistic", "I don't feel like anyone knows the real me; I'm always performing."),
    ("dbt", "Small things set me off and I go into a rage, then an hour later I'm crying and hate myself."),
    ("dbt", "When someone doesn't text back I panic and send twenty messages, and then they get fed up with me."),
    ("mi", "I enjoy my evening wine, it's my reward, but my liver numbers came back bad and I'm not sure what to do."),
    ("mi", "I've relapsed three times this year. I do want to be clean, I think, but I'm not convinced I can."),
    ("family-systems", "Christmas is a nightmare: my dad doesn't talk to my uncle, and mum expects me to smooth everything over."),
    ("family-systems", "Since the baby came, my husband's parents visit every weekend and tell us how to raise her, and we fight about it."),
];

/// Second development set: written as a held-out set after the lexicons were broadened on
/// `DEV`; scored 8/21 top-1 (9/21 in auto's top two) at first measurement, then used for a
/// second broadening and to fix a reported-speech bug. No longer held out.
const DEV2: &[(&str, &str)] = &[
    ("cbt", "If I say something dumb in the meeting, they'll all decide I'm not cut out for this and it'll follow me forever."),
    ("cbt", "I got one bad review out of twenty and I can't stop feeling like the good ones were just people being kind."),
    ("cbt", "My friend cancelled lunch, so I guess I did something to upset her. I always push people away somehow."),
    ("act", "I hate this knot in my stomach so much that I've stopped driving on highways just in case it shows up."),
    ("act", "I tell myself to just stop feeling sad, but the more I try to shut it down the louder it gets."),
    ("act", "My head is full of 'you're not good enough' on repeat and I end up obeying it instead of doing what I care about."),
    ("psychodynamic", "I realised all my exes were unavailable in some way, and honestly my father was never emotionally there either."),
    ("psychodynamic", "Whenever I start to rely on someone I get this urge to leave first, I think because nobody stayed when I was young."),
    ("psychodynamic", "I find myself acting exactly like my mum did with me, snapping at my kids, and I swore I never would."),
    ("humanistic", "I'm not asking you to solve anything. I just need somewhere I can say this out loud without being judged."),
    ("humanistic", "I spend so much energy being who my parents want that I've forgotten what I actually like."),
    ("humanistic", "It's like I'm a ghost at home; I could disappear and nobody would notice."),
    ("dbt", "My feelings hit like a tidal wave and I say things I can't take back, then I feel awful for days."),
    ("dbt", "When I'm this upset I want to do something drastic just to make the feeling stop."),
    ("dbt", "My friendships are either amazing or over; there's no in-between for me, and I keep burning bridges."),
    ("mi", "Honestly, cigarettes are the only break I get, but I get winded on the stairs now and my kids hate the smell."),
    ("mi", "I go back and forth about the weekend drinking. It's fun, but Mondays are getting really rough."),
    ("mi", "Everyone says I have a gambling problem. I think they're exaggerating, though I did lose my rent money last month."),
    ("family-systems", "My sister and my mum gang up on me at every visit, and my dad just watches TV and says nothing."),
    ("family-systems", "I'm the eldest, so I've always had to sort out everyone's problems, and now my parents lean on me for everything."),
    ("family-systems", "My wife and my mother can't be in the same room, and I'm the one who ends up paying for it."),
];

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
    for (expected, _) in CASES {
        assert!(
            ids.iter().any(|i| i == expected),
            "unknown label {expected}"
        );
    }
    for id in &ids {
        let n = CASES.iter().filter(|(e, _)| e == id).count();
        assert!(n >= 4, "{id} has only {n} labelled cases");
    }
    header(&ids);
    let mut correct = 0;
    let mut above_threshold = 0;
    let mut misses = Vec::new();
    for (expected, text) in CASES {
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
    let n = CASES.len();
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
    let (correct, picked) = evaluate("dev", DEV);
    assert_eq!(correct, DEV.len());
    assert_eq!(picked, DEV.len());
}

#[test]
fn second_dev_set_keeps_its_level() {
    // Two known misses remain (see the report): a negator governing another verb ("nobody
    // stayed when I was young") and a discounting phrase outweighed by "stop feeling".
    let (correct, picked) = evaluate("dev2", DEV2);
    assert!(correct >= 19, "dev2 top-1 fell to {correct}/{}", DEV2.len());
    assert_eq!(picked, DEV2.len());
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

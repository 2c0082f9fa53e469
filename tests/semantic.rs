//! Criteria and modality cues found by meaning: example sentences matched with the run's
//! encoder (all-MiniLM-L6-v2, from `scripts/setup.sh`), on top of the lexicons.
//!
//! The `[semantic]` thresholds in plugins/diagnostics/{dsm5,icd11}.toml and modalities/*/module.toml
//! are calibrated by `calibrate` on the tuned sets only (tests/clinical/vignettes.toml,
//! vignettes_holdout.toml, modality_tuned.toml, modality_holdout.toml, and the modality
//! development set modality_dev.toml, frozen before the examples were rewritten against it):
//!
//!     cargo test --release --workspace --test semantic -- --ignored --nocapture calibrate
//!
//! tests/clinical/modality_fresh.toml (21 messages written after the examples were finished)
//! is measured here but never calibrated on. The blind sets in tests/heldout/ are measured
//! once with `psy clinical-report`, never here.

use std::path::{Path, PathBuf};

use psy::clinical_report::{read_set, score_with, Item, Tally};
use psy_core::dialogue::Dialogue;
use psy_core::exemplar_match::SemanticPolicy;
use psy_core::module::{Module, SpecModule};
use psy_core::semantic::{AssessContext, SentenceEmbedder};
use psy_diagnostics::{Screening, System};

fn embedder() -> std::sync::Arc<psy_lm::encoder::CachedEmbedder> {
    psy_lm::encoder::shared_embedder(None)
        .unwrap_or_else(|e| panic!("sentence encoder missing ({e}): run scripts/setup.sh"))
}

fn clinical(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clinical")
        .join(file)
}

fn tuned_vignettes() -> Vec<Item> {
    let mut v = read_set(&clinical("vignettes.toml")).unwrap();
    v.extend(read_set(&clinical("vignettes_holdout.toml")).unwrap());
    v
}

fn tuned_modality() -> Vec<Item> {
    let mut v = read_set(&clinical("modality_tuned.toml")).unwrap();
    v.extend(read_set(&clinical("modality_holdout.toml")).unwrap());
    v
}

/// sha256 of tests/clinical/modality_dev.toml, committed alone (6b9b7e9) before any example
/// was changed or the modules were run on it: it is never edited to fit them.
const MODALITY_DEV_SHA256: &str =
    "68300d3ee3bc9ca6c713169863c83cd7a38662952a9180f0731c8a5b23543053";

/// sha256 of tests/clinical/modality_fresh.toml, committed alone after the examples were
/// finished and before any run on it.
const MODALITY_FRESH_SHA256: &str =
    "ef00c37872f0e38f1c7b9a1ef36415419294505727bd28f9dfa90ac88511627c";

/// A labelled set checked against its frozen sha256.
fn frozen_set(file: &str, sha256: &str) -> Vec<Item> {
    use sha2::{Digest, Sha256};
    let path = clinical(file);
    let bytes = std::fs::read(&path).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, sha256, "{} changed: the set is frozen", path.display());
    read_set(&path).unwrap()
}

/// The modality development set (70 messages in registers unlike the tuned sets: teen chat,
/// older adults, British / Indian / Australian English, very short and rambling). The
/// examples were rewritten with it in view, so its figures are a fit; its first run, before
/// that, was 42/70 top-1.
fn modality_dev() -> Vec<Item> {
    frozen_set("modality_dev.toml", MODALITY_DEV_SHA256)
}

/// 21 fresh modality messages written after the examples were finished and measured once:
/// never tuned on, and not part of the calibration.
fn modality_fresh() -> Vec<Item> {
    frozen_set("modality_fresh.toml", MODALITY_FRESH_SHA256)
}

/// The built-in modalities; with `semantic`, their `[semantic]` replaced (calibration).
fn modalities(semantic: Option<SemanticPolicy>) -> Vec<Box<dyn Module>> {
    modality_variants(semantic, false)
}

/// As [`modalities`]; `examples_only` drops every cue phrase (ablation for calibration).
fn modality_variants(
    semantic: Option<SemanticPolicy>,
    examples_only: bool,
) -> Vec<Box<dyn Module>> {
    let builtins = [
        psy_cbt::module(),
        psy_act::module(),
        psy_psychodynamic::module(),
        psy_humanistic::module(),
        psy_dbt::module(),
        psy_mi::module(),
        psy_family_systems::module(),
    ];
    let Some(semantic) = semantic else {
        return builtins.into();
    };
    builtins
        .into_iter()
        .map(|m| {
            let mut spec = m.spec().clone();
            spec.semantic = semantic;
            if examples_only {
                spec.cues.iter_mut().for_each(|c| c.phrases.clear());
            }
            if spec.module.id == "cbt" {
                psy_cbt::module_with_spec(spec)
            } else {
                Box::new(SpecModule::new(spec)) as Box<dyn Module>
            }
        })
        .collect()
}

fn tally<'a>(t: &'a [(String, Tally)], name: &str) -> &'a Tally {
    &t.iter().find(|(n, _)| n == name).unwrap().1
}

/// Scores the sets with the shipped thresholds: dsm5, icd11, modality (tuned), modality dev,
/// modality fresh.
fn shipped_figures(ctx: &AssessContext) -> [Tally; 5] {
    let dsm5 = Screening::new(System::Dsm5);
    let icd11 = Screening::new(System::Icd11);
    let moda = modalities(None);
    let moda: Vec<&dyn Module> = moda.iter().map(|m| m.as_ref()).collect();
    let mut v = score_with(&tuned_vignettes(), &[&dsm5, &icd11], &[], ctx);
    let mut m = score_with(&tuned_modality(), &[], &moda, ctx);
    let mut dev = score_with(&modality_dev(), &[], &moda, ctx);
    let mut fresh = score_with(&modality_fresh(), &[], &moda, ctx);
    let take = |t: &mut Vec<(String, Tally)>, n: &str| {
        let at = t.iter().position(|(x, _)| x == n).unwrap();
        t.remove(at).1
    };
    [
        take(&mut v, "dsm5"),
        take(&mut v, "icd11"),
        take(&mut m, "modality"),
        take(&mut dev, "modality"),
        take(&mut fresh, "modality"),
    ]
}

/// Sweeps the thresholds on the tuned sets and prints, for each setting, top-1 (top-2) with the
/// lexicon and encoder together, and with the examples alone (how far they reach on sets they
/// were not written from). The chosen values are written into the manifests (data, not code).
#[test]
#[ignore = "calibration: run by hand with --nocapture"]
fn calibrate() {
    let e = embedder();
    let ctx = AssessContext::with_embedder(e.as_ref());
    let off = AssessContext::default();
    let vignettes = tuned_vignettes();
    let modality = tuned_modality();
    // The sets the lexicons do not saturate: the first-measured round 2 and the development set.
    let fresh = read_set(&clinical("modality_holdout.toml")).unwrap();
    let dev = modality_dev();
    let lex = score_with(&vignettes, &[&Screening::new(System::Dsm5)], &[], &off);
    println!("{}", tally(&lex, "dsm5").line("dsm5 lexicon only"));
    let moda = modalities(None);
    let refs: Vec<&dyn Module> = moda.iter().map(|m| m.as_ref()).collect();
    let lex = score_with(&modality, &[], &refs, &off);
    println!("{}", tally(&lex, "modality").line("modality lexicon only"));
    let lex = score_with(&fresh, &[], &refs, &off);
    println!(
        "{}",
        tally(&lex, "modality").line("modality_holdout lexicon only")
    );
    let lex = score_with(&dev, &[], &refs, &off);
    println!(
        "{}",
        tally(&lex, "modality").line("modality_dev lexicon only")
    );
    let f = |t: &Tally| format!("{}/{} ({})", t.top1, t.n, t.top2);
    let opt = |m: Option<f32>| m.map_or("-".into(), |m| format!("{m:.2}"));

    println!("== diagnostic criteria (polarity penalty 1)");
    for s in (0..11).map(|i| 0.46 + 0.02 * i as f32) {
        for m in [
            None,
            Some(0.46),
            Some(0.50),
            Some(0.54),
            Some(0.58),
            Some(0.62),
        ] {
            let policy = SemanticPolicy {
                sentence: Some(s),
                message: m,
                ..Default::default()
            };
            let d = Screening::with_semantic(System::Dsm5, policy);
            let i = Screening::with_semantic(System::Icd11, policy);
            let t = score_with(&vignettes, &[&d, &i], &[], &ctx);
            let only = Screening::examples_only(System::Dsm5, policy);
            let o = score_with(&vignettes, &[&only], &[], &ctx);
            println!(
                "sentence {s:.2} message {:>4}: dsm5 {} icd11 {} | examples only dsm5 {}",
                opt(m),
                f(tally(&t, "dsm5")),
                f(tally(&t, "icd11")),
                f(tally(&o, "dsm5"))
            );
        }
    }

    println!("== modality cues");
    for p in [0.05f32, 0.1, 1.0] {
        for s in (0..11).map(|i| 0.40 + 0.02 * i as f32) {
            for m in [None, Some(0.45), Some(0.50), Some(0.55)] {
                let policy = SemanticPolicy {
                    sentence: Some(s),
                    message: m,
                    polarity_penalty: p,
                };
                let mods = modalities(Some(policy));
                let refs: Vec<&dyn Module> = mods.iter().map(|m| m.as_ref()).collect();
                let all = score_with(&modality, &[], &refs, &ctx);
                let fr = score_with(&fresh, &[], &refs, &ctx);
                let dv = score_with(&dev, &[], &refs, &ctx);
                let only = modality_variants(Some(policy), true);
                let refs: Vec<&dyn Module> = only.iter().map(|m| m.as_ref()).collect();
                let o = score_with(&modality, &[], &refs, &ctx);
                let od = score_with(&dev, &[], &refs, &ctx);
                println!(
                    "polarity {p:.2} sentence {s:.2} message {:>4}: all {} modality_holdout {} dev {} | examples only {} dev {}",
                    opt(m),
                    f(tally(&all, "modality")),
                    f(tally(&fr, "modality")),
                    f(tally(&dv, "modality")),
                    f(tally(&o, "modality")),
                    f(tally(&od, "modality"))
                );
            }
        }
    }
}

#[test]
fn tuned_sets_with_the_encoder_keep_their_measured_figures() {
    let e = embedder();
    let ctx = AssessContext::with_embedder(e.as_ref());
    let figures = shipped_figures(&ctx);
    let names = [
        "dsm5",
        "icd11",
        "modality",
        "modality dev",
        "modality fresh",
    ];
    for (name, t) in names.iter().zip(&figures) {
        println!("{}", t.line(&format!("{name}, encoder")));
    }
    // Measured with the shipped thresholds (one item of slack): see README "Measured figures".
    for (t, (top1, top2)) in figures.iter().zip(MEASURED) {
        assert!(
            t.top1 + 1 >= top1,
            "top-1 {}/{} fell below {top1}",
            t.top1,
            t.n
        );
        assert!(
            t.top2 + 1 >= top2,
            "top-2 {}/{} fell below {top2}",
            t.top2,
            t.n
        );
    }
}

/// (top-1, top-2) with the encoder: dsm5 and icd11 of 63 tuned vignettes; modality choice of
/// 91 tuned messages (83, 89 before the second round of modality examples), of the 70 of the
/// development set (42, 49 on its first run, before that round; now a fit) and of the 21 fresh
/// messages written after it (14, 15 on their one run; 12, 13 with the examples before it).
type Figures = (usize, usize);
const MEASURED: [Figures; 5] = [(63, 63), (62, 63), (87, 90), (58, 63), (14, 15)];

/// Which criteria the encoder found in a message: with the cue phrases (`examples_only` false)
/// only those the lexicon did not already find.
fn encoder_criteria(e: &dyn SentenceEmbedder, text: &str, examples_only: bool) -> Vec<String> {
    let module = if examples_only {
        Screening::examples_only(System::Dsm5, Screening::new(System::Dsm5).spec().semantic)
    } else {
        Screening::new(System::Dsm5)
    };
    let a = module.assess_with(
        &Dialogue::from_message(text),
        &AssessContext::with_embedder(e),
    );
    a.symptoms
        .iter()
        .filter(|s| s.label.contains("(encoder"))
        .map(|s| s.id.clone())
        .collect()
}

/// The demo's first message, read whole, lies 0.57-0.64 from five insomnia criteria' examples;
/// it counted as all five met (insomnia at its threshold, confidence 0.83, from one vague
/// message). A message read whole is one piece of evidence: at most one criterion of a
/// condition. Its sentences still meet what they are close to on their own.
#[test]
fn a_message_read_whole_meets_at_most_one_criterion_of_a_condition() {
    let e = embedder();
    let text =
        "I've been so tired lately. Work is overwhelming and I can't seem to switch off at night.";
    let module = Screening::new(System::Dsm5);
    let a = module.assess_with(
        &Dialogue::from_message(text),
        &AssessContext::with_embedder(&*e),
    );
    let whole: Vec<&str> = a
        .symptoms
        .iter()
        .filter(|s| s.label.contains("whole message"))
        .map(|s| s.id.as_str())
        .collect();
    let conditions: Vec<&str> = whole
        .iter()
        .map(|id| id.split('/').next().unwrap())
        .collect();
    let mut distinct = conditions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        conditions.len(),
        "whole-message evidence: {whole:?}"
    );
    assert!(
        whole
            .iter()
            .filter(|id| id.starts_with("insomnia/"))
            .count()
            == 1,
        "the message still reads as one sleep complaint: {whole:?}"
    );
    let insomnia = a
        .hypotheses
        .iter()
        .find(|h| h.id == "insomnia")
        .expect("insomnia considered");
    assert!(
        !insomnia.threshold_met,
        "one vague message does not meet insomnia's threshold"
    );
}

/// MiniLM reads words more than their direction: "I'm so tired of being tired" lay 0.73 from
/// mania's "endless energy", "can't switch off at night" 0.67 from "I don't need sleep". A
/// criterion's `unlike` sentences (its look-alikes) keep such pieces from meeting it, while
/// the criterion's own wording, in words its examples do not use, still does.
#[test]
fn look_alikes_named_as_unlike_do_not_meet_a_criterion() {
    let e = embedder();
    let module = Screening::new(System::Dsm5);
    let met = |text: &str| -> Vec<String> {
        module
            .assess_with(
                &Dialogue::from_message(text),
                &AssessContext::with_embedder(&*e),
            )
            .symptoms
            .into_iter()
            .filter(|s| s.label.contains("encoder"))
            .map(|s| s.id)
            .collect()
    };
    for text in [
        "I've been so tired lately. Work is overwhelming and I can't seem to switch off at night.",
        "I'm so tired of being tired. Work, kids, bed, repeat.",
    ] {
        let found = met(text);
        assert!(
            found
                .iter()
                .all(|id| !id.starts_with("bipolar1/") && !id.starts_with("alcohol-use/")),
            "{text}: {found:?}"
        );
    }
    let mania = met("Four hours of sleep a night this week and I wake up raring to go.");
    assert!(
        mania.iter().any(|id| id == "bipolar1/less-sleep"),
        "{mania:?}"
    );
}

#[test]
fn the_encoder_finds_new_wording_but_not_denials_others_or_hypotheticals() {
    let e = embedder();
    // Paraphrases of one criterion each, about the client: the examples alone find them.
    let found: &[(&str, &str)] = &[
        (
            "My hands won't stop shaking in the morning until I've had a glass of wine.",
            "alcohol-use/withdrawal",
        ),
        (
            "Before I go out I check the locks and the stove again and again.",
            "ocd/compulsions",
        ),
        (
            "Any sudden bang and I nearly jump out of my skin.",
            "ptsd/startle",
        ),
        (
            "I'm scared stiff of putting on any weight.",
            "anorexia/fear-of-gain",
        ),
        (
            "I can't get to sleep until the early hours.",
            "insomnia/initiating",
        ),
    ];
    // The same experiences denied, said of someone else, or imagined: the screening (lexicon
    // and encoder) finds nothing by meaning.
    let not_found: &[(&str, &str)] = &[
        ("I don't have any trouble falling asleep.", "insomnia/"),
        (
            "I'm not afraid of putting on weight at all.",
            "anorexia/fear-of-gain",
        ),
        (
            "I've never needed a drink in the morning.",
            "alcohol-use/withdrawal",
        ),
        (
            "My sister is scared stiff of putting on any weight.",
            "anorexia/fear-of-gain",
        ),
        (
            "My flatmate checks the locks and the stove again and again.",
            "ocd/compulsions",
        ),
        ("My brother jumps at every loud bang.", "ptsd/startle"),
        (
            "If I lost my job I would probably stop eating.",
            "mdd/appetite-weight",
        ),
    ];
    let mut hits = 0;
    for (text, want) in found {
        let got = encoder_criteria(e.as_ref(), text, true);
        println!("found?     {text} -> {got:?}");
        hits += usize::from(got.iter().any(|g| g.starts_with(want)));
    }
    let mut false_hits = 0;
    for (text, want) in not_found {
        let got = encoder_criteria(e.as_ref(), text, false);
        println!("not found? {text} -> {got:?}");
        false_hits += usize::from(got.iter().any(|g| g.starts_with(want)));
    }
    println!(
        "paraphrases found {hits}/{}, denied/third-person/hypothetical found {false_hits}/{}",
        found.len(),
        not_found.len()
    );
    assert_eq!(hits, found.len(), "the examples missed a paraphrase");
    assert_eq!(
        false_hits, 0,
        "denied, third-person or hypothetical sentences counted"
    );
}

/// Which modality cue groups the encoder found in a message ("module/group"): with
/// `examples_only` the cue phrases are dropped, otherwise only what the lexicon did not find.
fn encoder_cues(e: &dyn SentenceEmbedder, text: &str, examples_only: bool) -> Vec<String> {
    let ctx = AssessContext::with_embedder(e);
    let builtins = modalities(None);
    let mut found = Vec::new();
    for m in &builtins {
        let semantic = m.spec().semantic;
        let only = modality_variants(Some(semantic), examples_only);
        let module = only
            .iter()
            .find(|x| x.spec().module.id == m.spec().module.id)
            .unwrap();
        let a = module.assess_with(&Dialogue::from_message(text), &ctx);
        let ind = a.indication.unwrap_or_default();
        for c in ind.cues.iter().filter(|c| c.label.contains("(encoder")) {
            found.push(format!("{}/{}", m.spec().module.id, c.id));
        }
    }
    found
}

#[test]
fn modality_cues_are_found_by_meaning_but_not_for_others_or_hypotheticals() {
    let e = embedder();
    // Paraphrases written for this test before it first ran (in none of the sets or
    // manifests), about the client: measured, the examples alone find 3/5. The misses are
    // left in as measured: the humanistic one peaks at cosine 0.47 and the slang "ciggies"
    // at 0.39 with their groups' examples, under the 0.50 threshold.
    let found: &[(&str, &str)] = &[
        (
            "Somehow I always end up with partners who let me down in the same way.",
            "psychodynamic/repeating-pattern",
        ),
        (
            "My mum and dad make me carry messages between them.",
            "family-systems/triangles",
        ),
        (
            "I'd love the chance to just talk without being handed advice.",
            "humanistic/wants-to-be-heard",
        ),
        (
            "I go from calm to raging in a heartbeat.",
            "dbt/emotion-dysregulation",
        ),
        (
            "honestly im torn about giving up the ciggies",
            "mi/ambivalence",
        ),
    ];
    // The same said of someone else or imagined: no module finds it by meaning (for
    // psychodynamic, `named-in-cue`, the "my" of "my brother" no longer names the client).
    let not_found: &[(&str, &str)] = &[
        (
            "My brother always ends up with partners who let him down in the same way.",
            "psychodynamic/repeating-pattern",
        ),
        (
            "My cousin's parents make her carry messages between them.",
            "family-systems/triangles",
        ),
        (
            "If I ever went from calm to raging like that, I would hate myself.",
            "dbt/emotion-dysregulation",
        ),
        (
            "My sister goes from calm to raging in a heartbeat.",
            "dbt/emotion-dysregulation",
        ),
    ];
    let mut hits = 0;
    for (text, want) in found {
        let got = encoder_cues(e.as_ref(), text, true);
        println!("found?     {text} -> {got:?}");
        hits += usize::from(got.iter().any(|g| g == want));
    }
    let mut false_hits = 0;
    for (text, want) in not_found {
        let got = encoder_cues(e.as_ref(), text, false);
        println!("not found? {text} -> {got:?}");
        false_hits += usize::from(got.iter().any(|g| g == want));
    }
    println!(
        "modality paraphrases found {hits}/{}, third-person/hypothetical found {false_hits}/{}",
        found.len(),
        not_found.len()
    );
    assert!(
        hits >= 3,
        "the examples found {hits}/5 paraphrases (measured 3/5)"
    );
    assert_eq!(
        false_hits, 0,
        "third-person or hypothetical sentences counted"
    );
}

#[test]
fn encoder_evidence_says_which_detector_found_it() {
    let e = embedder();
    let text = "Before I go out I check the locks and the stove again and again.";
    let semantic = Screening::new(System::Dsm5).spec().semantic;
    let a = Screening::examples_only(System::Dsm5, semantic).assess_with(
        &Dialogue::from_message(text),
        &AssessContext::with_embedder(e.as_ref()),
    );
    let ev = a
        .symptoms
        .iter()
        .find(|s| s.label.contains("(encoder"))
        .expect("encoder evidence");
    assert!(ev.label.contains("cosine 0."), "{}", ev.label);
    assert_eq!(&text[ev.start..ev.end], ev.text);
    // Without an encoder the module reads by lexicon only, as before.
    let plain = Screening::new(System::Dsm5).assess(&Dialogue::from_message(text));
    assert!(plain.symptoms.iter().all(|s| !s.label.contains("(encoder")));
}

/// Per-item view of the tuned modality sets for writing examples: every module's score and
/// the groups the encoder found. `PSY_SENTENCE` / `PSY_MESSAGE` set the thresholds,
/// `PSY_EXAMPLES_ONLY=1` drops the cue phrases.
#[test]
#[ignore = "exploration of the tuned sets: run by hand with --nocapture"]
fn explain_tuned_modality() {
    let e = embedder();
    let ctx = AssessContext::with_embedder(e.as_ref());
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f32>().ok());
    let policy = SemanticPolicy {
        sentence: env("PSY_SENTENCE").or(Some(0.5)),
        message: env("PSY_MESSAGE"),
        polarity_penalty: env("PSY_POLARITY").unwrap_or(1.0),
    };
    let only = std::env::var("PSY_EXAMPLES_ONLY").is_ok_and(|v| v == "1");
    let mods = modality_variants(Some(policy), only);
    for item in tuned_modality() {
        let Item::Modality { id, expected, text } = &item else {
            continue;
        };
        let d = item.dialogue();
        let mut scores = Vec::new();
        let mut found = Vec::new();
        for m in &mods {
            let a = m.assess_with(&d, &ctx);
            let ind = a.indication.unwrap_or_default();
            scores.push((m.spec().module.id.clone(), ind.score));
            for c in ind.cues.iter().filter(|c| c.label.contains("(encoder")) {
                found.push(format!(
                    "{}/{} {}",
                    m.spec().module.id,
                    c.id,
                    &c.label[c.label.len() - 5..c.label.len() - 1]
                ));
            }
        }
        let r = psy::clinical_report::modality_rank(&scores, expected);
        let best = scores.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        println!(
            "{} {id:<9} want {expected:<14} best {} {:.2} | {text}\n      {found:?}",
            if r == Some(1) { "ok  " } else { "MISS" },
            best.0,
            best.1
        );
    }
}

/// Per-vignette view of the tuned vignettes with the examples alone (no cue phrases), for
/// writing examples: the intended condition, the top hypothesis and the criteria found.
#[test]
#[ignore = "exploration of the tuned sets: run by hand with --nocapture"]
fn explain_tuned_vignettes() {
    let e = embedder();
    let ctx = AssessContext::with_embedder(e.as_ref());
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f32>().ok());
    let policy = SemanticPolicy {
        sentence: env("PSY_SENTENCE").or(Some(0.56)),
        message: env("PSY_MESSAGE"),
        ..Default::default()
    };
    let m = Screening::examples_only(System::Dsm5, policy);
    for item in tuned_vignettes() {
        let Item::Vignette { id, condition, .. } = &item else {
            continue;
        };
        let a = m.assess_with(&item.dialogue(), &ctx);
        let top = a
            .hypotheses
            .first()
            .map_or("-".to_string(), |h| h.id.clone());
        if top != *condition {
            let found: Vec<String> = a
                .symptoms
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s.id,
                        &s.label[s.label.len() - 5..s.label.len() - 1]
                    )
                })
                .collect();
            println!("MISS {id:<10} want {condition:<16} top {top:<16} {found:?}");
        }
    }
}

/// The criteria a message (`PSY_TEXT`) comes close to, with their cosines (from 0.4), read as
/// the screening reads it: for checking an example set by hand.
#[test]
#[ignore = "exploration: run by hand with PSY_TEXT=... and --nocapture"]
fn explain_message() {
    let Ok(text) = std::env::var("PSY_TEXT") else {
        return;
    };
    let e = embedder();
    let mut names = Vec::new();
    let mut groups = Vec::new();
    for c in psy_diagnostics::conditions() {
        for k in &c.criteria {
            names.push(format!("{}/{}", c.id, k.id));
            groups.push(psy_core::exemplar_match::ExampleGroup {
                examples: &k.examples,
                unlike: &k.unlike,
                include_hypothetical: false,
            });
        }
    }
    let policy = SemanticPolicy {
        sentence: Some(0.4),
        message: Some(0.4),
        ..Default::default()
    };
    let hits = psy_core::exemplar_match::find(
        e.as_ref(),
        &groups,
        &Dialogue::from_message(text.clone()),
        &policy,
        psy_core::match_policy::SubjectPolicy::NearestSubject,
        false,
        &|_, _, _, _| false,
    )
    .unwrap();
    for h in hits {
        println!(
            "{:.3} {:<32} {:?}",
            h.similarity,
            names[h.group],
            &text[h.start..h.end]
        );
    }
}

/// The modality manifests as they are on disk now (not as compiled in), for writing examples
/// without a rebuild per edit; `examples_only` drops every cue phrase.
fn modalities_on_disk(examples_only: bool) -> Vec<Box<dyn Module>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("modalities");
    let ids = [
        "cbt",
        "act",
        "psychodynamic",
        "humanistic",
        "dbt",
        "mi",
        "family-systems",
    ];
    ids.iter()
        .map(|id| {
            let path = root.join(id).join("module.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            let mut spec =
                psy_core::module::ModuleSpec::from_toml(&text, &path.display().to_string())
                    .unwrap_or_else(|e| panic!("{e}"));
            if examples_only {
                spec.cues.iter_mut().for_each(|c| c.phrases.clear());
            }
            if *id == "cbt" {
                psy_cbt::module_with_spec(spec)
            } else {
                Box::new(SpecModule::new(spec)) as Box<dyn Module>
            }
        })
        .collect()
}

/// Per-item view of the tuned and development modality sets with the manifests as they are
/// on disk: every miss with each module's score and the cue groups found (`~` by encoder,
/// with its cosine), then the totals with and without the cue phrases. `PSY_SET=dev` prints
/// only the development set's items; `PSY_ALL=1` prints hits too.
#[test]
#[ignore = "exploration while writing examples: run by hand with --nocapture"]
fn explain_modality_on_disk() {
    let e = embedder();
    let ctx = AssessContext::with_embedder(e.as_ref());
    let only_set = std::env::var("PSY_SET").ok();
    let all = std::env::var("PSY_ALL").is_ok_and(|v| v == "1");
    let mods = modalities_on_disk(false);
    let sets = [
        ("tuned", read_set(&clinical("modality_tuned.toml")).unwrap()),
        (
            "holdout",
            read_set(&clinical("modality_holdout.toml")).unwrap(),
        ),
        ("dev", modality_dev()),
    ];
    for (name, items) in &sets {
        if only_set.as_deref().is_some_and(|s| s != *name) {
            continue;
        }
        for item in items {
            let Item::Modality { id, expected, text } = item else {
                continue;
            };
            let d = item.dialogue();
            let mut scores = Vec::new();
            let mut found = Vec::new();
            for m in &mods {
                let a = m.assess_with(&d, &ctx);
                let ind = a.indication.unwrap_or_default();
                scores.push((m.spec().module.id.clone(), ind.score));
                for c in &ind.cues {
                    let enc = c.label.contains("(encoder");
                    let cos = if enc {
                        &c.label[c.label.len() - 5..c.label.len() - 1]
                    } else {
                        ""
                    };
                    found.push(format!(
                        "{}/{}{}{cos}",
                        m.spec().module.id,
                        c.id,
                        if enc { "~" } else { "" }
                    ));
                }
                for c in &ind.contraindications {
                    found.push(format!("{}/!{}", m.spec().module.id, c.id));
                }
            }
            let r = psy::clinical_report::modality_rank(&scores, expected);
            if r == Some(1) && !all {
                continue;
            }
            let mut ranked = scores.clone();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top: Vec<String> = ranked
                .iter()
                .take(3)
                .map(|(m, s)| format!("{m} {s:.2}"))
                .collect();
            println!(
                "{} {name}/{id:<9} want {expected:<14} {top:?} | {text}\n      {found:?}",
                if r == Some(1) { "ok  " } else { "MISS" },
            );
        }
    }
    let only = modalities_on_disk(true);
    for (name, items) in &sets {
        for (label, ms) in [("all", &mods), ("examples only", &only)] {
            let refs: Vec<&dyn Module> = ms.iter().map(|m| m.as_ref()).collect();
            let t = score_with(items, &[], &refs, &ctx);
            println!("{}", tally(&t, "modality").line(&format!("{name} {label}")));
        }
    }
}

//! Therapy modality: cognitive behavioural therapy (CBT).
//!
//! Almost everything lives in `module.toml`. Code adds what the phrase lexicon cannot say:
//! - self-labels in a general frame, "I'm / I am + (such a, a complete, just a...) + <word>",
//!   where the words come from the `labelling` cue group, so "I'm such a total loser" counts
//!   and "I'm not a loser" or "I'm such a good friend" do not;
//! - a thinking-trap match may not run across a sentence end (the `..` gaps of a phrase like
//!   "feel* .. .. so i must" could otherwise join two unrelated sentences).
//!
//! A cue that names the client ("it's all *my* fault") after someone else was mentioned is
//! read by the manifest's `[matching] subject = "named-in-cue"`, not by code. After the
//! corrections the indication is rescored with the engine's one formula.

use psy_core::dialogue::Dialogue;
use psy_core::lexicon::{Lexicon, Text};
use psy_core::module::{
    builtin_spec, lexicon_assessment, merge_evidence, score_indication, Assessment, CueRole,
    Evidence, Module, ModuleSpec,
};

/// Id of the cue group whose words feed the self-label frame.
const LABELLING: &str = "labelling";

/// Words allowed between "I'm" and the label: articles and intensifiers only, so a frame
/// like "I'm with a loser" (a statement about someone else) is not read as a self-label.
const LABEL_FILLERS: &[&str] = &[
    "a",
    "an",
    "the",
    "such",
    "so",
    "just",
    "really",
    "complete",
    "completely",
    "total",
    "totally",
    "utter",
    "utterly",
    "absolute",
    "absolutely",
    "basically",
    "literally",
    "big",
    "biggest",
    "huge",
    "useless",
    "pathetic",
    "stupid",
    "worthless",
    "selfish",
    "lazy",
    "fucking",
    "bloody",
    "damn",
];

/// Self-label frames: the subject, then 0 to 3 filler words, then the label word.
const LABEL_SUBJECTS: &[&str] = &["i'm", "i am", "i'm just", "i really am"];

struct Cbt {
    spec: ModuleSpec,
    /// Generated frame phrases for self-labels (entry = number of filler slots).
    labels: Lexicon,
}

impl Cbt {
    fn new(spec: ModuleSpec) -> Cbt {
        let words = label_words(&spec);
        let mut phrases = Vec::new();
        for subject in LABEL_SUBJECTS {
            for word in &words {
                for slots in 0..=3usize {
                    let gap = vec!["_"; slots].join(" ");
                    let phrase = if slots == 0 {
                        format!("{subject} {word}")
                    } else {
                        format!("{subject} {gap} {word}")
                    };
                    phrases.push((slots, phrase));
                }
            }
        }
        let labels = Lexicon::new(phrases.iter().map(|(s, p)| (*s, p.as_str())))
            .expect("label frames are built from validated cue phrases");
        Cbt { spec, labels }
    }

    /// Self-labels found by the general frame, as evidence for the `labelling` group.
    fn frame_labels(&self, dialogue: &Dialogue) -> Vec<Evidence> {
        let Some(group) = self.spec.cues.iter().find(|c| c.id == LABELLING) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for turn in dialogue.client_turns() {
            let text = Text::new(turn.text);
            for hit in self.labels.find(&text) {
                if !hit.is_affirmed_about_self() {
                    continue;
                }
                // The wildcard slots sit just before the label word; they must be fillers.
                let slots = hit.entry;
                let fillers = &text.tokens[hit.last_token - slots..hit.last_token];
                if !fillers
                    .iter()
                    .all(|t| LABEL_FILLERS.contains(&t.norm.as_str()))
                {
                    continue;
                }
                out.push(Evidence {
                    id: group.id.clone(),
                    label: group.label.clone(),
                    message: turn.index,
                    start: hit.start,
                    end: hit.end,
                    text: hit.text,
                });
            }
        }
        out
    }
}

/// The label words of the `labelling` group: the last word of each "i'm ..." phrase.
fn label_words(spec: &ModuleSpec) -> Vec<String> {
    let mut words: Vec<String> = spec
        .cues
        .iter()
        .filter(|c| c.id == LABELLING)
        .flat_map(|c| c.phrases.iter())
        .filter(|p| p.starts_with("i'm ") || p.starts_with("i am "))
        .filter_map(|p| p.split_whitespace().last())
        .filter(|w| !w.contains('*') && !w.starts_with('_') && *w != "..")
        .map(str::to_string)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// Whether a matched span runs across a sentence end.
fn crosses_sentence(ev: &Evidence) -> bool {
    Text::new(&ev.text).tokens.iter().any(|t| t.sentence > 0)
}

impl Module for Cbt {
    fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    fn assess(&self, dialogue: &Dialogue) -> Assessment {
        let mut a = lexicon_assessment(&self.spec, dialogue);
        let mut ind = a.indication.take().unwrap_or_default();
        merge_evidence(&mut ind, self.frame_labels(dialogue));
        ind.cues.retain(|e| !crosses_sentence(e));
        let pattern_ids: Vec<&str> = self
            .spec
            .cues
            .iter()
            .filter(|c| c.role == CueRole::Pattern)
            .map(|c| c.id.as_str())
            .collect();
        a.patterns = ind
            .cues
            .iter()
            .filter(|e| pattern_ids.contains(&e.id.as_str()))
            .cloned()
            .collect();
        score_indication(&self.spec, &mut ind);
        a.indication = Some(ind);
        a
    }
}

/// The CBT module (exported so tests and the planner can build it directly).
pub fn module() -> Box<dyn Module> {
    Box::new(Cbt::new(builtin_spec(
        include_str!("../module.toml"),
        "modalities/cbt/module.toml",
    )))
}

/// The CBT module over another spec (e.g. other `[semantic]` thresholds while calibrating).
pub fn module_with_spec(spec: ModuleSpec) -> Box<dyn Module> {
    Box::new(Cbt::new(spec))
}

psy_core::register_module!(module);

#[cfg(test)]
mod tests {
    use super::*;

    fn assess(text: &str) -> Assessment {
        module().assess(&Dialogue::from_message(text))
    }

    fn pattern_ids(a: &Assessment) -> Vec<&str> {
        a.patterns.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn manifest_is_a_modality_with_rubric_and_techniques() {
        let m = module();
        let s = m.spec();
        assert_eq!(s.module.id, "cbt");
        assert_eq!(s.module.kind, psy_core::module::ModuleKind::Modality);
        assert!(s.rubric.len() >= 8);
        assert!(s.techniques.len() >= 5);
        assert!(s
            .reasoning_steps
            .iter()
            .any(|r| r.id == "cbt-automatic-thought"));
    }

    #[test]
    fn label_words_come_from_the_manifest() {
        let m = Cbt::new(builtin_spec(include_str!("../module.toml"), "cbt"));
        let words = label_words(&m.spec);
        assert!(words.contains(&"loser".to_string()));
        assert!(words.contains(&"failure".to_string()));
        assert!(!words.contains(&"i".to_string()));
    }

    #[test]
    fn frame_catches_intensified_self_labels() {
        let a = assess("Honestly I'm such a complete loser.");
        let ev: Vec<_> = a.patterns.iter().filter(|e| e.id == "labelling").collect();
        assert_eq!(ev.len(), 1, "{:?}", a.patterns);
        assert_eq!(ev[0].text, "I'm such a complete loser");
        let a = assess("I am just a total failure at this.");
        assert!(pattern_ids(&a).contains(&"labelling"), "{:?}", a.patterns);
    }

    #[test]
    fn frame_rejects_negated_positive_and_other_people() {
        for text in [
            "I'm not a loser, I know that.",
            "I'm such a good friend to her.",
            "I'm with a loser who never calls.",
            "I don't think I'm a failure.",
            "They think I'm stupid.",
        ] {
            let a = assess(text);
            assert!(
                !pattern_ids(&a).contains(&"labelling"),
                "{text}: {:?}",
                a.patterns
            );
        }
    }

    #[test]
    fn matches_do_not_join_sentences() {
        // "feel* .. .. so i must" would join these two sentences without the sentence check.
        let a = assess("I feel tired. So I must go to bed early.");
        assert!(!pattern_ids(&a).contains(&"emotional-reasoning"));
        let a = assess("I feel so stupid so I must be stupid.");
        assert!(pattern_ids(&a).contains(&"emotional-reasoning"));
    }

    #[test]
    fn cues_naming_the_client_survive_an_earlier_third_person() {
        let a = assess("My son failed his maths test and it's all my fault.");
        assert!(
            pattern_ids(&a).contains(&"personalisation"),
            "{:?}",
            a.patterns
        );
        // Reported speech is someone else's view, not the client's thought.
        for text in [
            "She says it's all my fault.",
            "My sister keeps saying I'm such a loser.",
        ] {
            let a = assess(text);
            assert!(a.patterns.is_empty(), "{text}: {:?}", a.patterns);
        }
    }

    #[test]
    fn third_person_cues_do_not_count() {
        psy_core::testing::third_person_cues_do_not_count(module().as_ref());
    }

    #[test]
    fn rescore_matches_the_engine_formula() {
        // With no code-found evidence, the score equals the default lexicon assessment.
        let text = "What if I fail the exam and lose everything? I always mess things up.";
        let m = module();
        let d = Dialogue::from_message(text);
        let ours = m.assess(&d).indication.unwrap();
        let plain = lexicon_assessment(m.spec(), &d).indication.unwrap();
        assert_eq!(ours.score, plain.score);
        assert_eq!(ours.techniques, plain.techniques);
        assert!(ours.score > 0.3);
    }

    #[test]
    fn contraindication_lowers_the_score() {
        let with = assess("I'm a failure. I don't want advice, I just want someone to listen.");
        let without = assess("I'm a failure.");
        assert!(
            with.indication.unwrap().score < without.indication.unwrap().score,
            "declining structure should lower CBT's fit"
        );
    }
}

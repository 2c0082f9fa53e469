//! Checks every modality crate runs on its module (feature `testing`, used as a
//! dev-dependency): one harness instead of a copy of the same test in each crate.
//!
//! [`read_frozen`] reads a held-out evaluation set only if its sha256 is the one its test
//! was written for, so a held-out set cannot quietly be edited to fit a lexicon.
//!
//! Each check panics with the text, the cue group and what was found, so a failing test
//! shows what to fix. `third_person_cues_do_not_count` needs no examples: it builds a
//! sentence about someone else from every cue phrase of the manifest.

use crate::dialogue::Dialogue;
use crate::lexicon::{refers_to_client, Text};
use crate::module::{CueRole, Evidence, Indication, Module};

/// The planner's default `auto` threshold (`[planner] min_score`).
pub const AUTO_MIN_SCORE: f32 = 0.3;

/// The module's indication for one client message (a modality always reports one).
pub fn indication(m: &dyn Module, text: &str) -> Indication {
    let a = m.assess(&Dialogue::from_message(text));
    a.indication.unwrap_or_else(|| {
        panic!(
            "{} reported no indication; is it a modality?",
            m.spec().module.id
        )
    })
}

/// The cue group `cue` counts in `text`; returns its first evidence.
pub fn cue_counts(m: &dyn Module, text: &str, cue: &str) -> Evidence {
    let ind = indication(m, text);
    ind.cues
        .iter()
        .find(|e| e.id == cue)
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{}: `{cue}` should count in {text:?}; found {:?}",
                m.spec().module.id,
                ind.cues
            )
        })
}

/// The cue group `cue` does not count in `text` (negated, hypothetical or someone else's).
pub fn cue_does_not_count(m: &dyn Module, text: &str, cue: &str) {
    let ind = indication(m, text);
    assert!(
        !ind.cues.iter().any(|e| e.id == cue),
        "{}: `{cue}` should not count in {text:?}; found {:?}",
        m.spec().module.id,
        ind.cues
    );
}

/// No cue, contraindication or thinking pattern of the module counts in `text`.
pub fn nothing_counts(m: &dyn Module, text: &str) {
    let a = m.assess(&Dialogue::from_message(text));
    let ind = a.indication.unwrap_or_default();
    assert!(
        ind.cues.is_empty() && ind.contraindications.is_empty() && a.patterns.is_empty(),
        "{}: nothing should count in {text:?}; found cues {:?}, contraindications {:?}, patterns {:?}",
        m.spec().module.id,
        ind.cues,
        ind.contraindications,
        a.patterns
    );
}

/// An affirmed first-person cue counts, lifts the score to the `auto` threshold, and the
/// first suggested technique is one that cue group points to.
pub fn affirmed_cue_scores_and_suggests_a_technique(m: &dyn Module, text: &str, cue: &str) {
    cue_counts(m, text, cue);
    let ind = indication(m, text);
    let id = &m.spec().module.id;
    assert!(
        ind.score >= AUTO_MIN_SCORE,
        "{id}: score {} below {AUTO_MIN_SCORE} for {text:?}",
        ind.score
    );
    let first = ind
        .techniques
        .first()
        .unwrap_or_else(|| panic!("{id}: no technique suggested"));
    let technique = m
        .spec()
        .techniques
        .iter()
        .find(|t| &t.id == first)
        .unwrap_or_else(|| panic!("{id}: suggested technique `{first}` is not in the manifest"));
    assert!(
        technique
            .cues
            .iter()
            .any(|c| ind.cues.iter().any(|e| &e.id == c)),
        "{id}: first technique `{first}` is not linked to any cue that fired ({:?})",
        ind.cues
    );
}

/// Someone else's experience is not the client's: every cue phrase of the manifest, said
/// about another person in a sentence without the client ("He keeps telling them he <cue>."),
/// leaves the module with no evidence at all. Phrases that name the client themselves or
/// contain a clause break are skipped; at least one phrase per module must be checked.
pub fn third_person_cues_do_not_count(m: &dyn Module) {
    let spec = m.spec();
    let mut checked = 0;
    for group in &spec.cues {
        for phrase in &group.phrases {
            let Some(words) = spoken(phrase) else {
                continue;
            };
            let text = format!("He keeps telling them he {words}.");
            let a = m.assess(&Dialogue::from_message(text.as_str()));
            let ind = a.indication.unwrap_or_default();
            assert!(
                ind.cues.is_empty() && ind.contraindications.is_empty() && a.patterns.is_empty(),
                "{}: `{}` ({:?}) counted for the client in {text:?}: cues {:?}, contraindications {:?}",
                spec.module.id,
                group.id,
                group.role == CueRole::Contraindication,
                ind.cues,
                ind.contraindications
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "{}: no cue phrase could be said in the third person",
        spec.module.id
    );
}

/// A cue phrase as plain words (`_` becomes "really", `_?` and `..` are dropped, `word*`
/// becomes `word`), or `None` when it names the client or breaks the clause.
fn spoken(phrase: &str) -> Option<String> {
    let words: Vec<String> = phrase
        .split_whitespace()
        .filter(|w| !matches!(*w, "_?" | ".."))
        .map(|w| match w {
            "_" => "really".to_string(),
            _ => w.trim_end_matches('*').to_string(),
        })
        .collect();
    let sentence = words.join(" ");
    let text = Text::new(&sentence);
    let clauses_or_client = text
        .tokens
        .iter()
        .any(|t| refers_to_client(&t.norm) || t.clause != 0);
    (!clauses_or_client && !text.tokens.is_empty()).then_some(sentence)
}

/// The text of a frozen evaluation file, after checking that its sha256 (lower-case hex) is
/// `sha256`. A changed held-out set is no longer held out: the test must fail.
pub fn read_frozen(path: &std::path::Path, sha256: &str) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let actual: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        actual,
        sha256,
        "{} changed: a frozen held-out set must not be edited (its sha256 is now {actual})",
        path.display()
    );
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::spoken;

    #[test]
    fn phrases_are_spoken_as_plain_words() {
        assert_eq!(spoken("push* _ away").as_deref(), Some("push really away"));
        assert_eq!(spoken("can't _? sleep").as_deref(), Some("can't sleep"));
        assert_eq!(spoken("all my fault"), None);
        assert_eq!(spoken("fine but sad"), None);
    }
}

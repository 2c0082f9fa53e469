//! The client's denial that they will harm themselves or someone else ("I'd never hurt her",
//! "I'm not going to do anything stupid", "I'm not suicidal"). The lexicon drops a negated cue;
//! the screen, which learnt the harm words, reads such a sentence as the harm it denies ("I
//! don't want to hurt her. I just want to understand" read as harm to others, high). The
//! session drops a denial's sentence from the screen's reading of the turn
//! (`dialogue_risk::run_session`) when nothing else in the turn speaks against it.

use psy_core::lexicon::{Text, Token};

/// Who the denied harm is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Myself,
    Other,
    /// "do anything stupid", "do it": the words do not say.
    Unsaid,
}

/// One denial: the byte span from its subject to its harm word (and object), and its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    pub start: usize,
    pub end: usize,
    pub denied: Denied,
}

/// The client speaking of themself.
const SUBJECTS: &[&str] = &["i", "i'm", "i'd", "i'll", "i've"];
/// Negators that deny what follows ("can't" does not: "I can't stop myself").
const NEGATORS: &[&str] = &[
    "not", "never", "don't", "didn't", "won't", "wouldn't", "ain't",
];
/// Words that may stand between the subject, the negator and the harm word.
const BETWEEN: &[&str] = &[
    "am",
    "would",
    "will",
    "do",
    "did",
    "really",
    "honestly",
    "actually",
    "seriously",
    "ever",
    "even",
    "going",
    "gonna",
    "to",
    "want",
    "wanna",
    "planning",
    "intend",
    "intending",
    "mean",
    "be",
    "lay",
    "a",
    "finger",
    "on",
    "physically",
];
/// Words a clause may open with before its subject ("honestly I'd never ...").
const OPENERS: &[&str] = &[
    "and",
    "so",
    "honestly",
    "obviously",
    "look",
    "ok",
    "okay",
    "tbh",
    "ngl",
    "like",
    "just",
    "no",
    "yeah",
    "yes",
    "well",
    "oh",
    "promise",
    "swear",
    "course",
    "of",
];
/// Harm words whose object says who is meant.
const HARM: &[&str] = &[
    "hurt",
    "hurting",
    "harm",
    "harming",
    "kill",
    "killing",
    "touch",
    "touching",
    "hit",
    "hitting",
    "slap",
    "slapping",
    "punch",
    "punching",
    "attack",
    "attacking",
    "stab",
    "stabbing",
    "strangle",
    "shoot",
    "beat",
    "batter",
    "smack",
];
/// Harm words that need no object: they name self-harm.
const HARM_SELF: &[&str] = &["suicidal", "self-harming", "cutting"];
/// After "do": the unsaid act ("do anything stupid", "do it").
const DO_OBJECTS: &[&str] = &["anything", "it", "something", "that", "owt", "nothing"];
/// Objects that are the client.
const ME: &[&str] = &["myself", "me", "self"];
/// Objects that are someone else.
const OTHERS: &[&str] = &[
    "her", "him", "them", "anyone", "anybody", "someone", "somebody", "people", "my", "his",
    "their", "the", "a", "any", "nobody", "no-one",
];
/// Words after a denial that speak against it: a contrast ("but I keep thinking about it") or
/// a condition ("unless he comes near me").
const AGAINST: &[&str] = &[
    "but", "though", "although", "however", "yet", "except", "unless", "until", "till", "if",
];

/// Words right after a denial that hedge it: "I'm not suicidal exactly. I'm just done."
const HEDGES: &[&str] = &["exactly", "really", "technically", "per", "as", "yet"];

/// The denials in `text` that nothing later in the text speaks against.
pub fn denials(text: &Text) -> Vec<Denial> {
    let toks = &text.tokens;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if !SUBJECTS.contains(&t.norm.as_str()) || !opens_clause(toks, i) {
            continue;
        }
        let Some((last, denied)) = denial_from(toks, i) else {
            continue;
        };
        if toks[last + 1..]
            .iter()
            .any(|w| AGAINST.contains(&w.norm.as_str()))
            || toks[last + 1..]
                .iter()
                .take(2)
                .any(|w| HEDGES.contains(&w.norm.as_str()))
        {
            continue;
        }
        out.push(Denial {
            start: t.start,
            end: toks[last].end,
            denied,
        });
    }
    out
}

/// Whether token `i` begins its clause, or only openers stand before it there.
fn opens_clause(toks: &[Token], i: usize) -> bool {
    toks[..i]
        .iter()
        .rev()
        .take_while(|w| w.clause == toks[i].clause)
        .all(|w| OPENERS.contains(&w.norm.as_str()))
}

/// The denial starting at subject `i`: the index of its last token and its target.
fn denial_from(toks: &[Token], i: usize) -> Option<(usize, Denied)> {
    let clause = toks[i].clause;
    let mut negated = false;
    let mut j = i + 1;
    while j < toks.len() && toks[j].clause == clause && j <= i + 7 {
        let w = toks[j].norm.as_str();
        if NEGATORS.contains(&w) {
            negated = true;
        } else if negated && HARM_SELF.contains(&w) {
            return Some((j, Denied::Myself));
        } else if negated && HARM.contains(&w) {
            return with_object(toks, j);
        } else if negated && w == "do" && next_is(toks, j, DO_OBJECTS) {
            return Some((j + 1, Denied::Unsaid));
        } else if negated
            && matches!(w, "near" | "anywhere")
            && toks[i + 1..j]
                .iter()
                .any(|t| t.norm == "going" || t.norm == "go")
            && next_is(toks, j, &["her", "him", "them", "near"])
        {
            return with_object(toks, j);
        } else if !BETWEEN.contains(&w) {
            return None;
        }
        j += 1;
    }
    None
}

fn next_is(toks: &[Token], j: usize, words: &[&str]) -> bool {
    toks.get(j + 1)
        .is_some_and(|t| t.clause == toks[j].clause && words.contains(&t.norm.as_str()))
}

/// The harm word at `j` with the object after it: the client, or someone else. None for
/// "anyone else" ("I don't want to hurt anyone else" says who is at risk) and without an object.
fn with_object(toks: &[Token], j: usize) -> Option<(usize, Denied)> {
    let in_clause = |k: usize| toks.get(k).filter(|t| t.clause == toks[j].clause);
    if (j + 1..=j + 3).any(|k| in_clause(k).is_some_and(|t| t.norm == "else")) {
        return None;
    }
    match in_clause(j + 1).map(|t| t.norm.as_str()) {
        Some(w) if ME.contains(&w) => Some((j + 1, Denied::Myself)),
        Some(w) if OTHERS.contains(&w) => Some((j + 1, Denied::Other)),
        // "I don't hunt, I don't shoot": a harm word with no one harmed is no denial of harm.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> Vec<(String, Denied)> {
        let text = Text::new(s);
        denials(&text)
            .into_iter()
            .map(|d| (s[d.start..d.end].to_string(), d.denied))
            .collect()
    }

    #[test]
    fn first_person_denials_are_found_with_their_target() {
        assert_eq!(
            denied("I don't want to hurt her. I just want to understand"),
            vec![("I don't want to hurt her".into(), Denied::Other)]
        );
        assert_eq!(
            denied("honestly I'd never actually do it, it's just satisfying to picture"),
            vec![("I'd never actually do it".into(), Denied::Unsaid)]
        );
        assert_eq!(
            denied("im not suicidal, just exhausted"),
            vec![("im not suicidal".into(), Denied::Myself)]
        );
        assert_eq!(
            denied("I'm not going to hurt myself."),
            vec![("I'm not going to hurt myself".into(), Denied::Myself)]
        );
        assert_eq!(
            denied("im not going near her. im blocking her"),
            vec![("im not going near her".into(), Denied::Other)]
        );
    }

    #[test]
    fn words_that_speak_against_a_denial_keep_it_out() {
        // A contrast or a condition after it, in the sentence or later.
        assert!(denied("I don't want to hurt myself but the urges are so strong").is_empty());
        assert!(denied("I won't hurt him. Unless he comes near the kids again.").is_empty());
        // Not the clause's subject: "I won't" is what the client cannot promise.
        assert!(denied("I can't promise I won't go for him tonight").is_empty());
        assert!(denied("I'm not sure I won't hurt him").is_empty());
        // "anyone else" names the client as the one at risk.
        assert!(denied("I don't want to hurt anyone else, it's just me").is_empty());
        // A hedge after it, or a harm word with no one harmed.
        assert!(denied("I'm not suicidal exactly. I'm just done.").is_empty());
        assert!(denied("I bought a gun. I don't hunt, I don't shoot.").is_empty());
        // Not a harm word, or no negation: nothing denied.
        assert!(denied("I don't want to be here anymore").is_empty());
        assert!(denied("I want to hurt him").is_empty());
        assert!(denied("I can't stop hurting myself").is_empty());
        // Someone else's denial is not the client's.
        assert!(denied("she said she'd never hurt herself").is_empty());
    }
}

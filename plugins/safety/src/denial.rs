//! The client's denial that they will harm themselves or someone else ("I'd never hurt her",
//! "I'm not going to do anything stupid", "I'm not suicidal"). The lexicon drops a negated cue,
//! but its negation window is four words, and the guard drops a cue inside a denial however far
//! its negator ("I am not having any thoughts of self-harm"; `lexicon_screen`). The screen,
//! which learnt the harm words, reads such a sentence as the harm it denies ("I don't want to
//! hurt her. I just want to understand" read as harm to others, high). The guard has the screen
//! read such a turn again with the denial blanked out (`dialogue_risk::assess_with`,
//! `Screen::reread_without`) when nothing speaks against it.

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
const SUBJECTS: &[&str] = &["i", "i'm", "i'd", "i'll", "i've", "am"];
/// Negators that deny what follows ("can't" does not: "I can't stop myself").
const NEGATORS: &[&str] = &[
    "not", "never", "don't", "didn't", "won't", "wouldn't", "ain't", "haven't", "hasn't",
];
/// "no" and its dialect forms deny only as a determiner of one of `NO_NOUNS` ("no intention
/// of", "nae thoughts o"): alone it is an interjection ("no I'm going to ...").
const NO: &[&str] = &["no", "nae", "zero"];
const NO_NOUNS: &[&str] = &[
    "intention",
    "intentions",
    "thought",
    "thoughts",
    "urge",
    "urges",
    "plan",
    "plans",
    "desire",
    "way",
    "interest",
    "thinking",
    "thinkin",
];
/// Words that may stand between the subject, the negator and the harm word (and `NO_NOUNS`):
/// "I haven't had any", "not been having", "not feeling". Never "thought": "I never thought
/// I'd want to ..." affirms.
const BETWEEN: &[&str] = &[
    "i",
    "am",
    "would",
    "will",
    "do",
    "did",
    "have",
    "having",
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
    "physically",
    "any",
    "thinking",
    "considering",
    "of",
    "o",
    "about",
    "on",
    "in",
    "the",
    "slightest",
    "lay",
    "laid",
    "a",
    "at",
    "all",
    "had",
    "been",
    "got",
    "feel",
    "feeling",
    "felt",
    "once",
    "gonnae",
    "wan",
    "dey",
    "go",
    "think",
    "bad",
];
/// Words a clause may open with before its subject or negator ("honestly I'd never ...",
/// "there are no thoughts of ...").
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
    "please",
    "relax",
    "there",
    "there's",
    "theres",
    "are",
    "is",
    "was",
    "were",
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
    "finger",
    "hurtin",
    "harmin",
];
/// Ending it: the client's own life ("not thinking of ending it").
const END: &[&str] = &["end", "ending"];
const END_OBJECTS: &[&str] = &["it", "things", "everything", "my", "myself", "it-all"];
/// Harm words that need no object: they name self-harm ("no thoughts of suicide", "not
/// planning to overdose").
const HARM_SELF: &[&str] = &[
    "suicidal",
    "self-harm",
    "self-harming",
    "cutting",
    "suicide",
    "overdose",
    "overdosing",
    "od",
    "selfharm",
    "self-harmed",
];
/// Harm words that name self-harm with the client as object ("never had urges to cut myself").
const HARM_ME: &[&str] = &["cut", "burn", "burning", "starve", "starving"];
/// Nouns a self-harm word may qualify ("no suicidal thoughts"): the denial runs through them.
const HARM_NOUNS: &[&str] = &[
    "thought", "thoughts", "feelings", "ideation", "urge", "urges", "plan", "plans", "intent",
];
/// After "do": the unsaid act ("do anything stupid", "do it").
const DO_OBJECTS: &[&str] = &[
    "anything",
    "it",
    "something",
    "that",
    "owt",
    "nothing",
    "anythin",
    "onything",
    "am",
];
/// Objects that are the client.
const ME: &[&str] = &["myself", "me", "self", "masel", "maself", "mysel", "meself"];
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
/// Times right after a denial, in its clause, that limit it to them: "I'm not overdosing
/// tonight, I'm waiting for Friday", "never had thoughts of killing myself before today" (a
/// "before" in a later clause is no limit: "not gonna hurt her, just need to vent before I say
/// something I regret").
const QUALIFIERS: &[&str] = &[
    "tonight", "today", "tomorrow", "this", "right", "yet", "before",
];
/// Words right after a denial that hedge it: "I'm not suicidal exactly. I'm just done."
const HEDGES: &[&str] = &["exactly", "really", "technically", "per", "as", "yet"];

/// The denials in `text` that nothing later in the text speaks against.
pub fn denials(text: &Text) -> Vec<Denial> {
    let toks = &text.tokens;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let w = toks[i].norm.as_str();
        let starts = SUBJECTS.contains(&w) || NEGATORS.contains(&w) || is_no(toks, i);
        let found = if starts && opens_clause(toks, i) {
            denial_from(toks, i)
        } else {
            None
        };
        let Some((last, denied)) = found else {
            i += 1;
            continue;
        };
        let against = toks[last + 1..]
            .iter()
            .any(|w| AGAINST.contains(&w.norm.as_str()))
            || toks[last + 1..].iter().take(2).any(|w| {
                HEDGES.contains(&w.norm.as_str())
                    // "no suicidal thoughts, just really low": "really" hedges its own clause.
                    && !(w.norm == "really" && w.clause != toks[last].clause)
            })
            // "I'm not overdosing tonight, I'm waiting for Friday": a time after the denial
            // limits it.
            || toks[last + 1..].iter().take(2).any(|w| {
                w.clause == toks[last].clause && QUALIFIERS.contains(&w.norm.as_str())
            });
        if !against {
            out.push(Denial {
                start: toks[i].start,
                end: toks[last].end,
                denied,
            });
        }
        i = last + 1;
    }
    out
}

/// "no" as the determiner of a noun of intention ("no intention of"), or as the verb's
/// negator right after the subject in Nigerian Pidgin and Scots ("I no wan harm myself", "am no
/// gonnae dae anythin").
fn is_no(toks: &[Token], i: usize) -> bool {
    let after_subject = i > 0
        && toks[i - 1].clause == toks[i].clause
        && SUBJECTS.contains(&toks[i - 1].norm.as_str());
    NO.contains(&toks[i].norm.as_str())
        && toks.get(i + 1).is_some_and(|t| {
            t.clause == toks[i].clause
                && (after_subject
                    || NO_NOUNS.contains(&t.norm.as_str())
                    || is_harm_self(toks, i + 1).is_some())
        })
}

/// The last token of a self-harm word at `j` that needs no object ("suicidal", "self harm"),
/// through a noun it qualifies ("suicidal thoughts").
fn is_harm_self(toks: &[Token], j: usize) -> Option<usize> {
    let w = toks[j].norm.as_str();
    let last = if HARM_SELF.contains(&w) {
        j
    } else if w == "self" && next_is(toks, j, &["harm", "harming"]) {
        j + 1
    } else {
        return None;
    };
    Some(if next_is(toks, last, HARM_NOUNS) {
        last + 1
    } else {
        last
    })
}

/// Whether token `i` begins its clause, or only openers stand before it there.
fn opens_clause(toks: &[Token], i: usize) -> bool {
    toks[..i]
        .iter()
        .rev()
        .take_while(|w| w.clause == toks[i].clause)
        .all(|w| OPENERS.contains(&w.norm.as_str()))
}

/// Auxiliaries that put the subject after them in "never would I", "not once did I".
const INVERTING: &[&str] = &[
    "would", "will", "do", "did", "have", "had", "could", "shall", "should",
];

/// The denial starting at `i` (a subject, a negator or a determining "no"): the index of its
/// last token and its target.
fn denial_from(toks: &[Token], i: usize) -> Option<(usize, Denied)> {
    let clause = toks[i].clause;
    let mut negated = false;
    let mut j = i;
    while j < toks.len() && toks[j].clause == clause && j <= i + 9 {
        let w = toks[j].norm.as_str();
        if NEGATORS.contains(&w) || is_no(toks, j) {
            negated = true;
        } else if j == i && SUBJECTS.contains(&w) {
        } else if negated
            && SUBJECTS.contains(&w)
            && !INVERTING.contains(&toks[j - 1].norm.as_str())
        {
            // A new subject after the negator opens what the client did not expect, not what
            // they deny: "I never thought I'd want to kill myself" ("never would I" inverts).
            return None;
        } else if let Some(last) = is_harm_self(toks, j).filter(|_| negated) {
            return Some((last, Denied::Myself));
        } else if negated && HARM_ME.contains(&w) && next_is(toks, j, ME) {
            return Some((j + 1, Denied::Myself));
        } else if let Some(life) =
            my_life(toks, j).filter(|_| negated && matches!(w, "take" | "taking"))
        {
            return Some((life, Denied::Myself));
        } else if negated && w == "finger" {
            // "lay a finger on my kids"
            return next_is(toks, j, &["on"]).then(|| with_object(toks, j + 1))?;
        } else if negated && HARM.contains(&w) {
            // "no thoughts of harm or anything like that": harm as a noun, no one named.
            let noun = w == "harm"
                && toks[j - 1].norm == "of"
                && toks
                    .get(j + 1)
                    .is_none_or(|t| t.clause != clause || matches!(t.norm.as_str(), "or" | "and"));
            return with_object(toks, j).or(noun.then_some((j, Denied::Unsaid)));
        } else if negated && w == "danger" {
            // "I am not in any danger."
            return Some((j, Denied::Unsaid));
        } else if negated && END.contains(&w) && next_is(toks, j, END_OBJECTS) {
            // "ending my life": the denial runs through "life".
            return Some((my_life(toks, j).unwrap_or(j + 1), Denied::Myself));
        } else if negated && matches!(w, "do" | "dae") && next_is(toks, j, DO_OBJECTS) {
            return Some((j + 1, Denied::Unsaid));
        } else if negated
            && matches!(w, "near" | "anywhere")
            && toks[i..j]
                .iter()
                .any(|t| t.norm == "going" || t.norm == "go")
            && next_is(toks, j, &["her", "him", "them", "near"])
        {
            return with_object(toks, j);
        } else if ![BETWEEN, NO_NOUNS, SUBJECTS, NO]
            .iter()
            .any(|l| l.contains(&w))
        {
            return None;
        }
        j += 1;
    }
    None
}

/// The index of "life" in "my life" or "my own life" right after the verb at `j`, in its clause.
fn my_life(toks: &[Token], j: usize) -> Option<usize> {
    let is = |k: usize, word: &str| {
        toks.get(k)
            .is_some_and(|t| t.clause == toks[j].clause && t.norm == word)
    };
    if !is(j + 1, "my") {
        None
    } else if is(j + 2, "life") {
        Some(j + 2)
    } else if is(j + 2, "own") && is(j + 3, "life") {
        Some(j + 3)
    } else {
        None
    }
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
    fn denials_without_a_subject_as_an_intention_or_in_dialect() {
        let found = |s: &str| denied(s).into_iter().map(|(_, d)| d).collect::<Vec<_>>();
        assert_eq!(
            found("Not suicidal, just had a crappy week"),
            [Denied::Myself]
        );
        assert_eq!(found("no I'm not thinking of ending it"), [Denied::Myself]);
        assert_eq!(
            found("I've nae intention o harming masel"),
            [Denied::Myself]
        );
        assert_eq!(
            found("Never would I harm myself, my faith keeps me"),
            [Denied::Myself]
        );
        assert_eq!(found("I'd never lay a finger on my kids"), [Denied::Other]);
        assert_eq!(found("I have no thoughts of hurting him"), [Denied::Other]);
        assert_eq!(
            found("not gonna do anything to myself dont worry"),
            [Denied::Unsaid]
        );
    }

    #[test]
    fn denials_with_more_words_between_and_more_harm_words() {
        let spans = |s: &str| denied(s).into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        assert_eq!(
            spans("I am not having any thoughts of self-harm."),
            ["I am not having any thoughts of self-harm"]
        );
        assert_eq!(
            spans("Never had any thoughts of ending my life."),
            ["Never had any thoughts of ending my life"]
        );
        assert_eq!(
            spans("I'm not planning to overdose or anything like that"),
            ["I'm not planning to overdose"]
        );
        assert_eq!(
            spans("I have never had any urges to cut myself."),
            ["I have never had any urges to cut myself"]
        );
        assert_eq!(
            spans("There are no thoughts of self harm, I'm just exhausted."),
            ["no thoughts of self harm"]
        );
        assert_eq!(
            spans("Honestly no suicidal thoughts, just really low."),
            ["no suicidal thoughts"]
        );
        assert_eq!(
            spans("I've never once thought about taking my own life"),
            ["I've never once thought about taking my own life"]
        );
        // Nigerian Pidgin and Scots negators, harm as a noun, danger.
        let found = |s: &str| denied(s).into_iter().map(|(_, d)| d).collect::<Vec<_>>();
        assert_eq!(found("I no wan harm myself or her o"), [Denied::Myself]);
        assert_eq!(found("Am no gonnae dae anythin daft"), [Denied::Unsaid]);
        assert_eq!(found("No thinkin of hurtin masel"), [Denied::Myself]);
        assert_eq!(found("I am not in any danger."), [Denied::Unsaid]);
        assert_eq!(
            found("No thoughts of harm or anything like that."),
            [Denied::Unsaid]
        );
        assert!(denied("I no reach the cut off").is_empty());
        assert!(denied("I no go lie, I wan harm myself").is_empty());
        // Limited to a time, or to before now: no denial.
        assert!(denied("I'm not going to hurt myself tonight").is_empty());
        assert!(denied("I've never had thoughts of killing myself before today").is_empty());
        assert!(denied("I never thought I'd want to kill myself").is_empty());
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
        // Not a harm word, or no negation: nothing denied; "no" alone is an interjection.
        assert!(denied("no I'm going to hurt him tonight").is_empty());
        assert!(denied("I don't want to be here anymore").is_empty());
        assert!(denied("I want to hurt him").is_empty());
        assert!(denied("I can't stop hurting myself").is_empty());
        // Someone else's denial is not the client's.
        assert!(denied("she said she'd never hurt herself").is_empty());
    }
}

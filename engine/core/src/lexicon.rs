//! Cue-phrase matching over client text, with the context flags clinical screening needs.
//!
//! Every module that reads a dialogue (diagnostic criteria, crisis rules, modality cues,
//! cognitive distortions) matches its lexicon through this one matcher, so negation,
//! hypotheticals and third-person talk are handled the same way everywhere.
//!
//! Phrase syntax (lower case, words separated by spaces):
//! - `word` matches that word exactly (apostrophes normalised, `dont` == `don't`);
//! - `word*` matches any word starting with `word` (`hopeless*` matches `hopelessness`);
//! - `_` matches any one word; `_?` matches zero or one word; `..` matches up to three words;
//! - `{a|b c|}` is a group of alternatives: the phrase stands for one phrase per choice
//!   (`{he's|she's} got the {gun|key}` is four phrases; an empty choice leaves the slot out).

use serde::Serialize;

/// A word of a text with its byte span in the original string.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub norm: String,
    pub start: usize,
    pub end: usize,
    /// Index of the clause this token belongs to (clauses end at punctuation and at `but`).
    pub clause: usize,
    /// Index of the sentence this token belongs to.
    pub sentence: usize,
}

/// A tokenised text.
#[derive(Clone, Debug)]
pub struct Text<'a> {
    pub raw: &'a str,
    pub tokens: Vec<Token>,
}

const CONTRACTION_FIXES: &[(&str, &str)] = &[
    ("dont", "don't"),
    ("doesnt", "doesn't"),
    ("didnt", "didn't"),
    ("cant", "can't"),
    ("couldnt", "couldn't"),
    ("wont", "won't"),
    ("wouldnt", "wouldn't"),
    ("shouldnt", "shouldn't"),
    ("isnt", "isn't"),
    ("arent", "aren't"),
    ("wasnt", "wasn't"),
    ("werent", "weren't"),
    ("havent", "haven't"),
    ("hasnt", "hasn't"),
    ("im", "i'm"),
    ("ive", "i've"),
    ("id", "i'd"),
    ("ill", "i'll"),
    ("cannot", "can't"),
    ("thats", "that's"),
    ("whats", "what's"),
    ("youre", "you're"),
    ("theyre", "they're"),
    ("hes", "he's"),
    ("shes", "she's"),
];

const CLAUSE_BREAK_WORDS: &[&str] = &["but", "although", "though", "however", "except", "yet"];

impl<'a> Text<'a> {
    /// Splits `raw` into lower-cased words, tracking clause and sentence boundaries.
    pub fn new(raw: &'a str) -> Text<'a> {
        let mut tokens = Vec::new();
        let mut clause = 0usize;
        let mut sentence = 0usize;
        let mut iter = raw.char_indices().peekable();
        while let Some((i, c)) = iter.next() {
            if c.is_alphanumeric() {
                let start = i;
                let mut end = i + c.len_utf8();
                let mut word = String::new();
                word.extend(c.to_lowercase());
                while let Some(&(j, d)) = iter.peek() {
                    let apostrophe = matches!(d, '\'' | '\u{2019}' | '\u{2018}');
                    if d.is_alphanumeric() || d == '-' && !word.ends_with('-') {
                        word.extend(d.to_lowercase());
                        end = j + d.len_utf8();
                        iter.next();
                    } else if apostrophe {
                        // Keep an apostrophe only inside a word ("don't"), not a closing quote.
                        let mut look = iter.clone();
                        look.next();
                        if matches!(look.peek(), Some(&(_, e)) if e.is_alphabetic()) {
                            word.push('\'');
                            iter.next();
                            end = j + d.len_utf8();
                        } else {
                            break;
                        }
                    } else {
                        break;
                    }
                }
                let word = word.trim_end_matches('-').to_string();
                let norm = CONTRACTION_FIXES
                    .iter()
                    .find(|(k, _)| *k == word)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or(word);
                if CLAUSE_BREAK_WORDS.contains(&norm.as_str()) {
                    clause += 1;
                }
                tokens.push(Token {
                    norm,
                    start,
                    end,
                    clause,
                    sentence,
                });
            } else if matches!(c, '.' | '!' | '?' | '\n') {
                clause += 1;
                sentence += 1;
            } else if matches!(
                c,
                ',' | ';' | ':' | '(' | ')' | '"' | '\u{201c}' | '\u{201d}'
            ) || c == '-' && matches!(iter.peek(), Some(&(_, ' ')))
            {
                clause += 1;
            }
        }
        Text { raw, tokens }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Word(String),
    Prefix(String),
    Any,
    Optional,
    Gap(usize),
}

/// A compiled cue phrase.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    pub source: String,
    parts: Vec<Part>,
}

/// Whether `w` (lower-cased) is a word [`Text::new`] can produce: it starts with a letter or
/// digit, then letters, digits, an apostrophe before a letter, or single inner hyphens. A
/// prefix (`stem*`) may end in a hyphen or an apostrophe ("self-*").
fn is_text_word(w: &str, prefix: bool) -> bool {
    let chars: Vec<char> = w.chars().collect();
    let Some(first) = chars.first() else {
        return false;
    };
    first.is_alphanumeric()
        && chars.iter().enumerate().all(|(i, &c)| {
            let next = chars.get(i + 1);
            c.is_alphanumeric()
                || c == '\'' && next.map_or(prefix, |n| n.is_alphabetic())
                || c == '-' && next.map_or(prefix, |&n| n != '-')
        })
}

fn never_matches(phrase: &str, word: &str) -> String {
    format!(
        "cue phrase `{phrase}`: `{word}` can never match (a client's text splits into words of \
         letters and digits, with inner apostrophes and hyphens)"
    )
}

/// Most phrases one phrase's groups may stand for: a slip in a group should be an error, not a
/// lexicon of millions of patterns.
const MAX_VARIANTS: usize = 4096;

/// The phrases a cue phrase with `{a|b}` groups stands for, in the order its groups list them
/// (the leftmost group varies slowest); a phrase without groups stands for itself.
pub fn expand_groups(phrase: &str) -> Result<Vec<String>, String> {
    let mut variants = vec![String::new()];
    let mut rest = phrase;
    while let Some(open) = rest.find(['{', '}', '|']) {
        let literal = &rest[..open];
        if !rest[open..].starts_with('{') {
            return Err(format!(
                "cue phrase `{phrase}`: `{}` outside a `{{...}}` group",
                &rest[open..open + 1]
            ));
        }
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            return Err(format!(
                "cue phrase `{phrase}`: a `{{` group is never closed"
            ));
        };
        let inner = &rest[open + 1..close];
        if inner.contains('{') {
            return Err(format!("cue phrase `{phrase}`: groups cannot nest"));
        }
        let choices: Vec<&str> = inner.split('|').collect();
        if choices.iter().all(|c| c.trim().is_empty()) {
            return Err(format!(
                "cue phrase `{phrase}`: an empty group `{{{inner}}}`"
            ));
        }
        if variants.len() * choices.len() > MAX_VARIANTS {
            return Err(format!(
                "cue phrase `{phrase}` stands for more than {MAX_VARIANTS} phrases"
            ));
        }
        variants = variants
            .iter()
            .flat_map(|v| choices.iter().map(move |c| format!("{v}{literal}{c}")))
            .collect();
        rest = &rest[close + 1..];
    }
    for v in &mut variants {
        v.push_str(rest);
    }
    Ok(variants)
}

impl Pattern {
    /// Compiles every phrase a cue phrase with `{a|b}` groups stands for ([`expand_groups`]).
    pub fn compile_all(phrase: &str) -> Result<Vec<Pattern>, String> {
        let variants = expand_groups(phrase)?;
        let grouped = variants.len() > 1 || variants[0] != phrase;
        variants
            .iter()
            .map(|v| {
                Pattern::compile(v).map_err(|e| {
                    if grouped {
                        format!("{e} (one of the phrases `{phrase}` stands for)")
                    } else {
                        e
                    }
                })
            })
            .collect()
    }

    /// Compiles a phrase; an empty phrase or one made only of wildcards is an error.
    pub fn compile(phrase: &str) -> Result<Pattern, String> {
        if phrase.contains(['{', '}', '|']) {
            return Err(format!(
                "cue phrase `{phrase}` has a `{{...}}` group: compile it with Pattern::compile_all"
            ));
        }
        let mut parts = Vec::new();
        for raw in phrase.split_whitespace() {
            let w = raw.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'");
            let part = match w.as_str() {
                "_" => Part::Any,
                "_?" => Part::Optional,
                ".." => Part::Gap(3),
                _ if w.ends_with('*') && w.len() > 1 => {
                    let stem = w.trim_end_matches('*');
                    if !is_text_word(stem, true) {
                        return Err(never_matches(phrase, raw));
                    }
                    Part::Prefix(stem.to_string())
                }
                _ if w.contains('*') => {
                    return Err(format!("`*` may only end a word in cue phrase `{phrase}`"))
                }
                _ if !is_text_word(&w, false) => return Err(never_matches(phrase, raw)),
                _ => {
                    let fixed = CONTRACTION_FIXES
                        .iter()
                        .find(|(k, _)| *k == w)
                        .map(|(_, v)| v.to_string());
                    Part::Word(fixed.unwrap_or(w))
                }
            };
            parts.push(part);
        }
        if !parts
            .iter()
            .any(|p| matches!(p, Part::Word(_) | Part::Prefix(_)))
        {
            return Err(format!("cue phrase `{phrase}` has no literal word"));
        }
        if matches!(
            parts.first(),
            Some(Part::Any | Part::Optional | Part::Gap(_))
        ) || matches!(
            parts.last(),
            Some(Part::Any | Part::Optional | Part::Gap(_))
        ) {
            return Err(format!(
                "cue phrase `{phrase}` may not start or end with a wildcard"
            ));
        }
        Ok(Pattern {
            source: phrase.to_string(),
            parts,
        })
    }

    /// Token index ranges `[start, end)` where this pattern matches.
    fn match_at(&self, tokens: &[Token], at: usize, lenient: Leniency) -> Option<usize> {
        fn go(parts: &[Part], tokens: &[Token], i: usize, lenient: Leniency) -> Option<usize> {
            let Some(first) = parts.first() else {
                return Some(i);
            };
            let rest = &parts[1..];
            match first {
                Part::Word(w) => {
                    let t = tokens.get(i)?;
                    let norm = lenient.word(&t.norm);
                    (t.norm == *w || norm == w || lenient.typos && typo_of(norm, w))
                        .then(|| go(rest, tokens, i + 1, lenient))
                        .flatten()
                }
                Part::Prefix(p) => {
                    let t = tokens.get(i)?;
                    t.norm
                        .starts_with(p.as_str())
                        .then(|| go(rest, tokens, i + 1, lenient))
                        .flatten()
                }
                Part::Any => {
                    tokens.get(i)?;
                    go(rest, tokens, i + 1, lenient)
                }
                Part::Optional => go(rest, tokens, i, lenient).or_else(|| {
                    tokens.get(i)?;
                    go(rest, tokens, i + 1, lenient)
                }),
                Part::Gap(n) => (0..=*n).find_map(|k| {
                    if i + k <= tokens.len() {
                        go(rest, tokens, i + k, lenient)
                    } else {
                        None
                    }
                }),
            }
        }
        go(&self.parts, tokens, at, lenient)
    }
}

/// How loosely a lexicon's literal words match a text's words.
#[derive(Clone, Copy, Debug, Default)]
struct Leniency {
    /// One-letter typos in long words ([`typo_of`]).
    typos: bool,
    /// A word with a clitic `'s` ("gun's" in "the gun's in the drawer") also counts as the
    /// word without it.
    clitics: bool,
}

impl Leniency {
    /// The form of a text's word compared with a phrase's word besides the word itself.
    fn word<'t>(&self, norm: &'t str) -> &'t str {
        match norm.strip_suffix("'s") {
            Some(stem) if self.clitics && !stem.is_empty() => stem,
            _ => norm,
        }
    }
}

/// One-edit typo tolerance (insertion, deletion, substitution or swap) for words of six or
/// more letters, so "suicdal" still matches "suicidal" while short words stay exact.
fn typo_of(seen: &str, wanted: &str) -> bool {
    wanted.chars().count() >= 6
        && seen.chars().count() >= 5
        && seen.chars().next() == wanted.chars().next()
        && strsim::damerau_levenshtein(seen, wanted) == 1
}

/// Where a cue matched and the context it appeared in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    /// Index of the lexicon entry that matched.
    pub entry: usize,
    /// Token range of the match.
    pub first_token: usize,
    pub last_token: usize,
    /// Byte span in the text.
    pub start: usize,
    pub end: usize,
    /// The matched text as written.
    pub text: String,
    /// A negator governs the cue ("I don't feel hopeless").
    pub negated: bool,
    /// The cue sits in a hypothetical or conditional ("if I were to ...").
    pub hypothetical: bool,
    /// The cue is said about someone else ("my sister can't sleep").
    pub third_person: bool,
}

impl Hit {
    /// Affirmed, about the speaker, and not hypothetical: evidence about the client.
    pub fn is_affirmed_about_self(&self) -> bool {
        !self.negated && !self.hypothetical && !self.third_person
    }
}

const NEGATORS: &[&str] = &[
    "not",
    "no",
    "never",
    "don't",
    "doesn't",
    "didn't",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "haven't",
    "hasn't",
    "hadn't",
    "won't",
    "wouldn't",
    "can't",
    "couldn't",
    "shouldn't",
    "nor",
    "neither",
    "without",
    "hardly",
    "nothing",
    "nobody",
    "none",
    "ain't",
];

/// Negators that do not negate what follows ("I can't stop crying", "no longer enjoy").
const PSEUDO_NEGATIONS: &[&[&str]] = &[
    &["can't", "stop"],
    &["couldn't", "stop"],
    &["can't", "help"],
    &["not", "only"],
    &["no", "longer"],
    &["don't", "know", "why"],
    &["no", "matter"],
    &["never", "ending"],
    &["don't", "know", "how"],
    &["not", "sure", "i"],
    &["don't", "think", "i", "can"],
    &["don't", "think", "i", "could"],
];

const HYPOTHETICAL_MARKERS: &[&str] = &[
    "if",
    "suppose",
    "imagine",
    "hypothetically",
    "whether",
    "unless",
];
const FICTION_MARKERS: &[&str] = &[
    "story",
    "novel",
    "character",
    "fiction",
    "movie",
    "film",
    "book",
    "script",
    "game",
    "song",
    "poem",
];

const FIRST_PERSON: &[&str] = &[
    "i", "i'm", "i've", "i'd", "i'll", "me", "my", "myself", "we", "we're", "us", "our", "mine",
];

/// Whether a normalised word refers to the speaker ("i", "my", "we", ...).
pub fn refers_to_client(word: &str) -> bool {
    FIRST_PERSON.contains(&word)
}

/// Whether a normalised word is a negator ("not", "never", "don't", ...).
pub fn is_negator(word: &str) -> bool {
    NEGATORS.contains(&word)
}

/// Whether a normalised word names someone other than the speaker ("she", "my *sister*").
pub fn refers_to_other(word: &str) -> bool {
    THIRD_PERSON.contains(&word)
}

/// Whether a normalised word opens a hypothetical ("if", "imagine", "suppose", ...).
pub fn is_hypothetical_marker(word: &str) -> bool {
    HYPOTHETICAL_MARKERS.contains(&word)
}

/// Whether a normalised word points at fiction ("story", "novel", "game", ...).
pub fn is_fiction_marker(word: &str) -> bool {
    FICTION_MARKERS.contains(&word)
}
const THIRD_PERSON: &[&str] = &[
    "he",
    "she",
    "they",
    "him",
    "her",
    "his",
    "hers",
    "them",
    "their",
    "he's",
    "she's",
    "they're",
    "friend",
    "friends",
    "sister",
    "brother",
    "mom",
    "mum",
    "mother",
    "dad",
    "father",
    "son",
    "daughter",
    "wife",
    "husband",
    "partner",
    "boyfriend",
    "girlfriend",
    "colleague",
    "coworker",
    "co-worker",
    "boss",
    "someone",
    "somebody",
    "character",
    "people",
    "kid",
    "kids",
    "child",
    "roommate",
    "cousin",
    "aunt",
    "uncle",
    "grandma",
    "grandpa",
    "grandmother",
    "grandfather",
    "teacher",
    "student",
    "neighbor",
    "neighbour",
    "client",
    "patient",
    "everyone",
    "nobody",
    "anyone",
];

/// A compiled list of phrases; each entry keeps the index of the group it came from.
#[derive(Clone, Debug, Default)]
pub struct Lexicon {
    entries: Vec<(usize, Pattern)>,
    /// Entries by their first literal word, so matching only tries plausible phrases.
    by_first_word: std::collections::HashMap<String, Vec<usize>>,
    /// Entries whose first part is a `word*` prefix.
    by_prefix: Vec<(String, usize)>,
    lenient: Leniency,
}

impl Lexicon {
    /// Builds a lexicon from `(group, phrase)` pairs; the error names the bad phrase.
    pub fn new<'p>(phrases: impl IntoIterator<Item = (usize, &'p str)>) -> Result<Lexicon, String> {
        let mut entries = Vec::new();
        let mut by_first_word: std::collections::HashMap<String, Vec<usize>> = Default::default();
        let mut by_prefix = Vec::new();
        for (group, phrase) in phrases {
            for pattern in Pattern::compile_all(phrase)? {
                let index = entries.len();
                match &pattern.parts[0] {
                    Part::Word(w) => by_first_word.entry(w.clone()).or_default().push(index),
                    Part::Prefix(p) => by_prefix.push((p.clone(), index)),
                    _ => unreachable!("compile rejects a leading wildcard"),
                }
                entries.push((group, pattern));
            }
        }
        Ok(Lexicon {
            entries,
            by_first_word,
            by_prefix,
            lenient: Leniency::default(),
        })
    }

    /// Entries that may match at a token, in entry order.
    fn candidates(&self, token: &str) -> Vec<usize> {
        let mut c: Vec<usize> = self.by_first_word.get(token).cloned().unwrap_or_default();
        let stem = self.lenient.word(token);
        if stem != token {
            c.extend(self.by_first_word.get(stem).into_iter().flatten());
        }
        c.extend(
            self.by_prefix
                .iter()
                .filter(|(p, _)| token.starts_with(p.as_str()))
                .map(|(_, i)| *i),
        );
        if self.lenient.typos {
            for (w, list) in &self.by_first_word {
                if w != token && w != stem && typo_of(stem, w) {
                    c.extend(list);
                }
            }
        }
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Tolerate one-letter typos in long words (used by the crisis guard).
    pub fn with_typo_tolerance(mut self) -> Lexicon {
        self.lenient.typos = true;
        self
    }

    /// Let a word with a clitic `'s` match the word without it ("the gun's in the drawer"
    /// meets `gun`; used by the crisis guard).
    pub fn with_clitics(mut self) -> Lexicon {
        self.lenient.clitics = true;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All matches, longest first where they overlap within the same group, in text order.
    /// `Hit::entry` is the group index given at construction.
    pub fn find(&self, text: &Text) -> Vec<Hit> {
        let toks = &text.tokens;
        let mut hits: Vec<Hit> = Vec::new();
        // Each phrase matches left to right without overlapping itself.
        let mut next_free = vec![0usize; self.entries.len()];
        for at in 0..toks.len() {
            for index in self.candidates(&toks[at].norm) {
                if at < next_free[index] {
                    continue;
                }
                let (group, pattern) = &self.entries[index];
                if let Some(end) = pattern.match_at(toks, at, self.lenient) {
                    // A cue phrase never spans two sentences.
                    if end > at && toks[at].sentence == toks[end - 1].sentence {
                        hits.push(context_hit(text, *group, at, end - 1));
                        next_free[index] = end;
                    }
                }
            }
        }
        hits.sort_by(|a, b| {
            (a.start, std::cmp::Reverse(a.end), a.entry).cmp(&(
                b.start,
                std::cmp::Reverse(b.end),
                b.entry,
            ))
        });
        // Drop a hit of the same group fully inside another one (keep the longest phrase).
        let mut kept: Vec<Hit> = Vec::new();
        for h in hits {
            if kept
                .iter()
                .any(|k| k.entry == h.entry && k.start <= h.start && h.end <= k.end)
            {
                continue;
            }
            kept.push(h);
        }
        kept
    }
}

fn context_hit(text: &Text, entry: usize, first: usize, last: usize) -> Hit {
    let toks = &text.tokens;
    let clause = toks[first].clause;
    let sentence = toks[first].sentence;
    let clause_start = (0..first)
        .rev()
        .take_while(|&i| toks[i].clause == clause)
        .last()
        .unwrap_or(first);
    let sentence_start = (0..first)
        .rev()
        .take_while(|&i| toks[i].sentence == sentence)
        .last()
        .unwrap_or(first);

    // Negation: a negator in the four words before the cue, in the same clause, that is not
    // part of a pseudo-negation and is not itself inside the cue.
    let window_start = first.saturating_sub(4).max(clause_start);
    let mut negated = false;
    for i in window_start..first {
        if NEGATORS.contains(&toks[i].norm.as_str()) && !is_pseudo_negation(toks, i) {
            negated = true;
        }
        // "I can't concentrate and I barely eat": a new conjunct ends the negation's scope.
        if toks[i].norm == "and" {
            negated = false;
        }
    }

    // Hypothetical: a conditional marker earlier in the clause, "what if", "would" right
    // before the cue, or talk about fiction in the sentence.
    let clause_words = &toks[clause_start..first];
    let mut hypothetical = clause_words
        .iter()
        .any(|t| HYPOTHETICAL_MARKERS.contains(&t.norm.as_str()))
        || toks[sentence_start..first]
            .windows(2)
            .any(|w| w[0].norm == "what" && w[1].norm == "if");
    if !hypothetical && clause_start > 0 {
        // "If things get worse, I would ..." : the condition is in the previous clause.
        let prev = toks[clause_start - 1].clause;
        let prev_start = (0..clause_start)
            .rev()
            .take_while(|&i| toks[i].clause == prev)
            .last()
            .unwrap_or(clause_start - 1);
        hypothetical = toks[prev_start].norm == "if" && toks[prev_start].sentence == sentence;
    }
    let sentence_end = toks
        .iter()
        .rposition(|t| t.sentence == sentence)
        .unwrap_or(last);
    if toks[sentence_start..=sentence_end]
        .iter()
        .any(|t| FICTION_MARKERS.contains(&t.norm.as_str()))
        && toks[sentence_start..=sentence_end].iter().any(|t| {
            matches!(
                t.norm.as_str(),
                "writing"
                    | "write"
                    | "wrote"
                    | "reading"
                    | "read"
                    | "watching"
                    | "watched"
                    | "playing"
            )
        })
    {
        hypothetical = true;
    }

    // Third person: the nearest personal subject before the cue in its clause is not "I"
    // ("my friend said she wants to die"; but "since he died, everything feels pointless"
    // is about the speaker).
    let mut third_person = false;
    for i in (clause_start..first).rev() {
        let w = toks[i].norm.as_str();
        if FIRST_PERSON.contains(&w) {
            break;
        }
        if THIRD_PERSON.contains(&w) {
            third_person = true;
            break;
        }
    }

    Hit {
        entry,
        first_token: first,
        last_token: last,
        start: toks[first].start,
        end: toks[last].end,
        text: text.raw[toks[first].start..toks[last].end].to_string(),
        negated,
        hypothetical,
        third_person,
    }
}

/// Whether the negator at `toks[i]` opens a pseudo-negation ("can't stop", "no longer") that
/// does not deny what follows.
pub fn is_pseudo_negation(toks: &[Token], i: usize) -> bool {
    PSEUDO_NEGATIONS.iter().any(|p| {
        p.iter()
            .enumerate()
            .all(|(k, w)| toks.get(i + k).is_some_and(|t| t.norm == *w))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(phrases: &[&str], text: &str) -> Vec<Hit> {
        let lex = Lexicon::new(phrases.iter().enumerate().map(|(i, p)| (i, *p))).unwrap();
        lex.find(&Text::new(text))
    }

    #[test]
    fn wildcards_and_spans() {
        let h = hits(
            &["hopeless*", "can't _ sleep"],
            "I feel Hopelessness; I can't really sleep.",
        );
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].text, "Hopelessness");
        assert_eq!(h[1].text, "can't really sleep");
        assert!(h.iter().all(|h| h.is_affirmed_about_self()));
    }

    #[test]
    fn negation_is_scoped_to_the_clause() {
        let h = hits(&["hopeless"], "I don't feel hopeless");
        assert!(h[0].negated);
        let h = hits(&["hopeless"], "I don't know, I feel hopeless");
        assert!(!h[0].negated);
        let h = hits(&["crying"], "I can't stop crying");
        assert!(!h[0].negated);
        let h = hits(&["hopeless"], "It's not that bad but I feel hopeless");
        assert!(!h[0].negated);
    }

    #[test]
    fn apostrophe_variants_match() {
        assert_eq!(hits(&["don't enjoy"], "I dont enjoy anything").len(), 1);
        assert_eq!(
            hits(&["don't enjoy"], "I don\u{2019}t enjoy anything").len(),
            1
        );
    }

    #[test]
    fn hypothetical_and_third_person() {
        let h = hits(&["kill myself"], "What if I wanted to kill myself?");
        assert!(h[0].hypothetical);
        let h = hits(&["can't sleep"], "My sister can't sleep at all.");
        assert!(h[0].third_person);
        let h = hits(&["can't sleep"], "My sister says I can't sleep.");
        assert!(!h[0].third_person);
        let h = hits(
            &["kill"],
            "I'm writing a story where the character wants to kill",
        );
        assert!(h[0].hypothetical);
    }

    #[test]
    fn typo_tolerance_is_opt_in_and_bounded() {
        let strict = Lexicon::new([(0, "suicidal")]).unwrap();
        assert!(strict.find(&Text::new("feeling suicdal")).is_empty());
        let fuzzy = strict.with_typo_tolerance();
        assert_eq!(fuzzy.find(&Text::new("feeling suicdal")).len(), 1);
        let short = Lexicon::new([(0, "die")]).unwrap().with_typo_tolerance();
        assert!(short.find(&Text::new("a dye job")).is_empty());
    }

    #[test]
    fn clitics_are_opt_in_and_only_s() {
        let strict = Lexicon::new([(0, "gun"), (1, "the rope")]).unwrap();
        assert!(strict
            .find(&Text::new("the gun's in the drawer"))
            .is_empty());
        let lenient = strict.with_clitics();
        let hits = lenient.find(&Text::new(
            "the gun\u{2019}s in the drawer, the rope's in my bag",
        ));
        assert_eq!(
            hits.iter().map(|h| h.entry).collect::<Vec<_>>(),
            [0, 1],
            "{hits:?}"
        );
        // Other contractions stay as they are.
        assert!(lenient.find(&Text::new("the gun'll do")).is_empty());
        let fuzzy = Lexicon::new([(0, "painkillers")])
            .unwrap()
            .with_typo_tolerance()
            .with_clitics();
        assert_eq!(
            fuzzy.find(&Text::new("the painkiller's in my bag")).len(),
            1
        );
    }

    #[test]
    fn groups_stand_for_one_phrase_per_choice() {
        assert_eq!(
            expand_groups("{he's|she's} got the {gun|key*}").unwrap(),
            [
                "he's got the gun",
                "he's got the key*",
                "she's got the gun",
                "she's got the key*"
            ]
        );
        assert_eq!(
            expand_groups("took {|it }away").unwrap(),
            ["took away", "took it away"]
        );
        assert_eq!(expand_groups("came down").unwrap(), ["came down"]);
        let lex = Lexicon::new([(0, "{he|she} {has|had} taken the {knife|pills}")]).unwrap();
        let hits = lex.find(&Text::new("My sister came. She has taken the pills."));
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].text, "She has taken the pills");
        assert_eq!(
            lex.find(&Text::new(
                "he had taken the knife and she has taken the pills"
            ))
            .len(),
            2
        );
        for bad in [
            "{he|she got",
            "he} got",
            "he | she",
            "{ | } got",
            "{a|{b}} c",
            "{a|b|c|d|e|f|g|h} {a|b|c|d|e|f|g|h} {a|b|c|d|e|f|g|h} {a|b|c|d|e|f|g|h} {a|b|c|d|e|f|g|h}",
        ] {
            assert!(Pattern::compile_all(bad).is_err(), "{bad}");
        }
        // A bad word inside a group names the phrase it came from.
        let err = Pattern::compile_all("{ok|in a&e} now").unwrap_err();
        assert!(
            err.contains("`in a&e now`") && err.contains("`{ok|in a&e} now`"),
            "{err}"
        );
        assert!(Pattern::compile("{a|b} c").is_err());
    }

    #[test]
    fn bad_phrases_are_rejected() {
        assert!(Pattern::compile("_ sad").is_err());
        assert!(Pattern::compile("").is_err());
        assert!(Pattern::compile("s*d").is_err());
        // Words the text splitter never produces would silently never match.
        for phrase in ["in a&e", "9/11", "hi!", "'til", "well--known", "self-"] {
            let err = Pattern::compile(phrase).err().unwrap_or_default();
            assert!(err.contains("can never match"), "{phrase}: {err}");
        }
        for phrase in [
            "in a e",
            "don't",
            "self-harm",
            "self-*",
            "i'm home",
            "gun's",
        ] {
            assert!(Pattern::compile(phrase).is_ok(), "{phrase}");
        }
    }
}

//! Exemplar matching: a cue group (a modality's cue group, a diagnostic criterion) is also found
//! by meaning when a client sentence or clause (or, where the manifest asks, the whole message)
//! lies close to one of the group's short first-person example sentences under the run's
//! [`SentenceEmbedder`].
//!
//! The lexicon still runs first and its reading of context still rules: a piece counts only
//! when it is about the client, not hypothetical (unless the group allows it), not denied by
//! the lexicon, and closest to examples of the same polarity (an even or odd number of
//! negators: "I can't sleep" pairs with "I can't fall asleep"). Encoders read negation poorly;
//! the polarity check and the lexicon's denials keep "I don't have any trouble falling asleep"
//! from meeting a sleep criterion (measured in tests/semantic.rs). Encoders also read words
//! more than their direction ("so tired" lies near "full of energy"), so a group may name
//! `unlike` sentences, its look-alikes, which a piece must lie further from than from its
//! examples.
//!
//! Thresholds are data: `[semantic]` in a module manifest, calibrated on the tuned sets only
//! (tests/clinical/semantic_calibration.txt). Spec modules get this through
//! [`crate::module::exemplar_assessment`]; the diagnostic screening calls [`find`] itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::dialogue::Dialogue;
use crate::lexicon::{
    is_fiction_marker, is_hypothetical_marker, is_negator, is_pseudo_negation, refers_to_client,
    refers_to_other, Text,
};
use crate::match_policy::SubjectPolicy;
use crate::semantic::{cosine, sentence_spans, SentenceEmbedder};

/// `[semantic]` of a module manifest: how close a client's words must lie to an example.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticPolicy {
    /// Cosine one client sentence must reach with an example of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentence: Option<f32>,
    /// Cosine a whole client message of several sentences must reach; unset: sentences only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<f32>,
    /// Subtracted from the cosine of a sentence and an example of opposite polarity (an odd
    /// against an even number of negators); 1 (the default) never pairs them. Diagnostic
    /// criteria keep 1: "I don't drink" must not meet a drinking criterion.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub polarity_penalty: f32,
}

impl Default for SemanticPolicy {
    fn default() -> Self {
        SemanticPolicy {
            sentence: None,
            message: None,
            polarity_penalty: 1.0,
        }
    }
}

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

impl SemanticPolicy {
    /// Checks the thresholds; `has_examples` says whether any group declares examples.
    pub fn check(&self, has_examples: bool) -> Result<(), (String, String)> {
        for (name, v) in [("sentence", self.sentence), ("message", self.message)] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                    return Err((
                        format!("semantic.{name}"),
                        format!("{v} is not a cosine threshold in (0, 1]"),
                    ));
                }
            }
        }
        if !(self.polarity_penalty.is_finite() && (0.0..=1.0).contains(&self.polarity_penalty)) {
            return Err((
                "semantic.polarity_penalty".into(),
                format!("{} is not a penalty in [0, 1]", self.polarity_penalty),
            ));
        }
        if has_examples && self.sentence.is_none() {
            return Err((
                "semantic.sentence".into(),
                "cue groups have `examples`, so `[semantic] sentence = ...` must give the \
                 calibrated threshold"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Checks one group's example sentences: non-empty, short, one sentence each.
pub fn check_examples(examples: &[String]) -> Result<(), String> {
    for e in examples {
        let words = e.split_whitespace().count();
        if words == 0 {
            return Err("an example sentence is empty".into());
        }
        if words > 30 {
            return Err(format!(
                "`{e}`: examples are short sentences (at most 30 words)"
            ));
        }
    }
    Ok(())
}

/// A group of examples to match, with what its lexicon allows.
pub struct ExampleGroup<'a> {
    pub examples: &'a [String],
    /// Sentences of a look-alike the group must not be read from (insomnia's "I lie awake and
    /// can't switch off" beside mania's "I barely need sleep"): a piece counts only when it
    /// lies closer to one of `examples` than to every one of these.
    pub unlike: &'a [String],
    /// Hypotheticals count for this group (worry: "what if I fail").
    pub include_hypothetical: bool,
}

/// A client sentence (or message) close to a group's examples.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleHit {
    /// Index into the groups given to [`find`].
    pub group: usize,
    pub message: usize,
    pub start: usize,
    pub end: usize,
    pub similarity: f32,
    /// The hit is the whole message, not one sentence.
    pub whole_message: bool,
}

impl ExampleHit {
    /// An evidence label that says which detector found it: "Sleep (encoder, cosine 0.71)".
    pub fn label(&self, label: &str) -> String {
        let whole = if self.whole_message {
            ", whole message"
        } else {
            ""
        };
        format!("{label} (encoder{whole}, cosine {:.2})", self.similarity)
    }
}

/// How a sentence reads: polarity, mood and who it is about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Odd number of (non-pseudo) negators.
    pub negative: bool,
    pub hypothetical: bool,
    pub about_client: bool,
    /// Some word names a person (the client or someone else).
    pub has_person: bool,
}

/// A sentence or one of its clauses, as matched.
struct Unit {
    sentence: usize,
    start: usize,
    end: usize,
    reading: Reading,
}

/// Clauses of a sentence as byte ranges: split at `,` `;` `:` and before `and`, `but`, `so`,
/// `because`; pieces under three words stay with the previous piece.
pub fn clause_spans(sentence: &str) -> Vec<(usize, usize)> {
    let text = Text::new(sentence);
    let mut cuts = vec![0usize];
    for (i, t) in text.tokens.iter().enumerate() {
        let before = &sentence[..t.start];
        let punct = before.trim_end().ends_with([',', ';', ':']) && i > 0;
        let conj = i > 0 && matches!(t.norm.as_str(), "and" | "but" | "so" | "because");
        if punct || conj {
            cuts.push(t.start);
        }
    }
    cuts.push(sentence.len());
    let mut out: Vec<(usize, usize)> = Vec::new();
    for w in cuts.windows(2) {
        let piece = &sentence[w[0]..w[1]];
        let words = piece.split_whitespace().count();
        match out.last_mut() {
            Some(last) if words < 3 => last.1 = w[1],
            _ => out.push((w[0], w[1])),
        }
    }
    // A short first piece joins the next one.
    if out.len() > 1 && sentence[out[0].0..out[0].1].split_whitespace().count() < 3 {
        out[1].0 = out[0].0;
        out.remove(0);
    }
    out.into_iter()
        .filter_map(|(s, e)| {
            let piece = &sentence[s..e];
            let trimmed = piece.trim_matches(|c: char| c.is_whitespace() || ",;:".contains(c));
            let lead = piece.find(trimmed).unwrap_or(0);
            (!trimmed.is_empty()).then(|| (s + lead, s + lead + trimmed.len()))
        })
        .collect()
}

/// People the lexicon's list leaves out; a sentence about them is not about the client.
const MORE_OTHERS: &[&str] = &[
    "flatmate",
    "flatmates",
    "housemate",
    "housemates",
    "mate",
    "mates",
    "manager",
    "stepmother",
    "stepfather",
    "stepmom",
    "stepmum",
    "stepdad",
    "niece",
    "nephew",
    "fiance",
    "fiancee",
    "fiancé",
    "fiancée",
    "ex",
    "grandson",
    "granddaughter",
    "twin",
    "classmate",
    "classmates",
    "parents",
    "parent",
    "siblings",
    "sibling",
    "brothers",
    "sisters",
    "sons",
    "daughters",
    "husband's",
    "wife's",
    "he'd",
    "she'd",
    "they'd",
    "they've",
    "he'll",
    "she'll",
    "they'll",
];

fn other_person(word: &str) -> bool {
    refers_to_other(word) || MORE_OTHERS.contains(&word)
}

/// Reads a sentence with the lexicon's word lists.
pub fn read_sentence(sentence: &str, subject: SubjectPolicy) -> Reading {
    let text = Text::new(sentence);
    let toks = &text.tokens;
    // "won't stop shaking" affirms the shaking, like the lexicon's "can't stop".
    let stops = |i: usize| {
        toks.get(i + 1)
            .is_some_and(|t| matches!(t.norm.as_str(), "stop" | "stops" | "stopping"))
    };
    let negators = (0..toks.len())
        .filter(|&i| is_negator(&toks[i].norm) && !is_pseudo_negation(toks, i) && !stops(i))
        .count();
    let first = toks.first().map(|t| t.norm.as_str()).unwrap_or("");
    let starts_what_if = toks.len() > 1 && first == "what" && toks[1].norm == "if";
    let counterfactual = toks.iter().any(|t| t.norm == "if")
        && toks
            .iter()
            .any(|t| matches!(t.norm.as_str(), "would" | "i'd" | "wouldn't"));
    let fiction = toks.iter().any(|t| is_fiction_marker(&t.norm));
    let hypothetical = is_hypothetical_marker(first)
        || starts_what_if
        || counterfactual
        || fiction
        || toks.iter().any(|t| {
            matches!(
                t.norm.as_str(),
                "imagine" | "suppose" | "hypothetically" | "pretend"
            )
        });
    // "My sister can't sleep" is the sister's; "my mum died and I can't sleep" is the client's.
    let possessed_other = |i: usize| {
        matches!(toks[i].norm.as_str(), "my" | "our")
            && toks.get(i + 1).is_some_and(|n| other_person(&n.norm))
    };
    let any_person = toks
        .iter()
        .any(|t| refers_to_client(&t.norm) || other_person(&t.norm));
    let about_client = !any_person
        || match subject {
            // For a whole sentence, "the cue names the client" means the client is named as
            // themselves: the "my" of "my brother always ends up with..." names the brother.
            SubjectPolicy::NearestSubject | SubjectPolicy::NamedInCue => {
                (0..toks.len()).any(|i| refers_to_client(&toks[i].norm) && !possessed_other(i))
            }
            SubjectPolicy::ClientInSentence => toks.iter().any(|t| refers_to_client(&t.norm)),
        };
    Reading {
        negative: negators % 2 == 1,
        hypothetical,
        about_client,
        has_person: any_person,
    }
}

/// One example with its vector and polarity.
struct Example {
    vector: Arc<Vec<f32>>,
    negative: bool,
}

/// One group's examples, then its `unlike` sentences.
struct PreparedGroup {
    examples: Vec<Example>,
    unlike: Vec<Example>,
}

/// A list of example groups ready to compare: vectors and polarities, per group.
type Prepared = Vec<PreparedGroup>;

/// Example vectors, once per process per encoder and text (the embedder's own cache may drop
/// them; these stay).
fn example_vectors(
    embedder: &dyn SentenceEmbedder,
    texts: &[&str],
) -> Result<Vec<Arc<Vec<f32>>>, String> {
    type Store = Mutex<HashMap<String, HashMap<String, Arc<Vec<f32>>>>>;
    static STORE: OnceLock<Store> = OnceLock::new();
    let store = STORE.get_or_init(Default::default);
    let missing: Vec<&str> = {
        let map = store.lock().unwrap_or_else(|p| p.into_inner());
        let known = map.get(embedder.name());
        let mut m: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| known.is_none_or(|k| !k.contains_key(*t)))
            .collect();
        m.sort_unstable();
        m.dedup();
        m
    };
    if !missing.is_empty() {
        let fresh = embedder.embed_fixed(&missing)?;
        let mut map = store.lock().unwrap_or_else(|p| p.into_inner());
        let known = map.entry(embedder.name().to_string()).or_default();
        for (t, v) in missing.into_iter().zip(fresh) {
            known.insert(t.to_string(), Arc::new(v));
        }
    }
    let map = store.lock().unwrap_or_else(|p| p.into_inner());
    let known = &map[embedder.name()];
    Ok(texts.iter().map(|t| Arc::clone(&known[*t])).collect())
}

/// The groups' examples with their vectors and polarities, once per process per encoder and
/// list of groups: the planner calls [`find`] for every module on every plan, and looking up
/// a thousand examples and reading each one's polarity again cost more than the comparisons.
/// Keyed by the encoder's name and the groups' texts themselves (compared in full, so two
/// lists never share an entry by accident).
fn prepared(
    embedder: &dyn SentenceEmbedder,
    groups: &[ExampleGroup],
) -> Result<Arc<Prepared>, String> {
    /// Encoder name, the groups' examples and `unlike` sentences, what they prepare to. A
    /// list, not a map: a run has one entry per module with examples, and comparing in place
    /// allocates nothing.
    type Entry = (String, Vec<(Vec<String>, Vec<String>)>, Arc<Prepared>);
    static STORE: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    let store = STORE.get_or_init(Default::default);
    let same = |(name, texts, _): &Entry| {
        name == embedder.name()
            && texts.len() == groups.len()
            && texts
                .iter()
                .zip(groups)
                .all(|((e, u), g)| e == g.examples && u == g.unlike)
    };
    if let Some(e) = store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|e| same(e))
    {
        return Ok(Arc::clone(&e.2));
    }
    let texts: Vec<&str> = groups
        .iter()
        .flat_map(|g| g.examples.iter().chain(g.unlike).map(String::as_str))
        .collect();
    let mut vectors = example_vectors(embedder, &texts)?.into_iter();
    let mut read = |sentences: &[String]| -> Vec<Example> {
        sentences
            .iter()
            .zip(vectors.by_ref())
            .map(|(e, vector)| Example {
                vector,
                negative: read_sentence(e, SubjectPolicy::NearestSubject).negative,
            })
            .collect()
    };
    let prepared: Prepared = groups
        .iter()
        .map(|g| PreparedGroup {
            examples: read(g.examples),
            unlike: read(g.unlike),
        })
        .collect();
    let prepared = Arc::new(prepared);
    store.lock().unwrap_or_else(|p| p.into_inner()).push((
        embedder.name().to_string(),
        groups
            .iter()
            .map(|g| (g.examples.to_vec(), g.unlike.to_vec()))
            .collect(),
        Arc::clone(&prepared),
    ));
    Ok(prepared)
}

/// (List of groups, piece) pairs whose similarities [`similarities`] keeps before it starts
/// over: a long session's sentences and clauses for every module (a few KB each), not a corpus.
const REMEMBERED_PIECES: usize = 8192;

/// The cosine of `vector` (the embedding of `text`) with every example of `prepared`, groups
/// one after another (each group's examples, then its `unlike` sentences). The planner plans
/// the whole dialogue again on every turn, so the same pieces meet the same examples turn after
/// turn; their cosines are kept per process (keyed by
/// the prepared list, the text, and checked against the vector itself, so a text the encoder
/// embeds again with other bits is compared again), and only new pieces are compared.
fn similarities(prepared: &Arc<Prepared>, text: &str, vector: &[f32]) -> Arc<Vec<f32>> {
    type Memo = HashMap<(usize, String), (Vec<f32>, Arc<Vec<f32>>)>;
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    // Prepared lists live for the process (`prepared` keeps them), so the address names one.
    let key = (Arc::as_ptr(prepared) as usize, text.to_string());
    if let Some((v, sims)) = memo.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        if v.as_slice() == vector {
            return Arc::clone(sims);
        }
    }
    let sims: Arc<Vec<f32>> = Arc::new(
        prepared
            .iter()
            .flat_map(|g| g.examples.iter().chain(&g.unlike))
            .map(|x| cosine(vector, &x.vector))
            .collect(),
    );
    let mut memo = memo.lock().unwrap_or_else(|p| p.into_inner());
    if memo.len() >= REMEMBERED_PIECES {
        memo.clear();
    }
    memo.insert(key, (vector.to_vec(), Arc::clone(&sims)));
    sims
}

/// Every client sentence or clause (and, with `policy.message`, every message of several
/// sentences) close enough to an example of a group. `denied(group, message, start, end)`
/// tells whether the lexicon read a denial of that group in that span; such spans never
/// count. With `one_group_per_piece`, a sentence or clause supports only the group it is
/// closest to (modality cues, whose groups overlap: one sentence of distress must not light
/// up every group of a module); otherwise every group it is close to (criteria).
pub fn find(
    embedder: &dyn SentenceEmbedder,
    groups: &[ExampleGroup],
    dialogue: &Dialogue,
    policy: &SemanticPolicy,
    subject: SubjectPolicy,
    one_group_per_piece: bool,
    denied: &dyn Fn(usize, usize, usize, usize) -> bool,
) -> Result<Vec<ExampleHit>, String> {
    let Some(threshold) = policy.sentence else {
        return Ok(Vec::new());
    };
    if groups.iter().all(|g| g.examples.is_empty()) {
        return Ok(Vec::new());
    }
    let prepared_groups = prepared(embedder, groups)?;
    let examples = prepared_groups.as_slice();
    // Where each group's examples start in a piece's similarities.
    let offsets: Vec<usize> = examples
        .iter()
        .scan(0, |at, g| {
            let start = *at;
            *at += g.examples.len() + g.unlike.len();
            Some(start)
        })
        .collect();
    // The closest of `xs` (whose cosines start at `sims[0]`) to a piece of polarity `negative`,
    // an example of the other polarity `penalty` further off; `None`: any polarity counts.
    let closest = |xs: &[Example], sims: &[f32], negative: Option<bool>, penalty: f32| {
        xs.iter()
            .zip(sims)
            .map(|(x, c)| match negative {
                Some(n) if n != x.negative => c - penalty,
                _ => *c,
            })
            .fold(f32::MIN, f32::max)
    };

    let mut hits = Vec::new();
    for turn in dialogue.client_turns() {
        let spans = sentence_spans(turn.text);
        // Each sentence, then its clauses: one long sentence often holds several symptoms
        // ("my heart pounded, I couldn't breathe and I thought I was dying").
        let mut units: Vec<Unit> = Vec::new();
        for (k, &(s, e)) in spans.iter().enumerate() {
            let whole = read_sentence(&turn.text[s..e], subject);
            units.push(Unit {
                sentence: k,
                start: s,
                end: e,
                reading: whole,
            });
            let clauses = clause_spans(&turn.text[s..e]);
            if clauses.len() > 1 {
                for (cs, ce) in clauses {
                    let own = read_sentence(&turn.text[s + cs..s + ce], subject);
                    units.push(Unit {
                        sentence: k,
                        start: s + cs,
                        end: s + ce,
                        // A clause without a person word is the sentence's subject's.
                        reading: Reading {
                            negative: own.negative,
                            hypothetical: own.hypothetical || whole.hypothetical,
                            about_client: if own.has_person {
                                own.about_client
                            } else {
                                whole.about_client
                            },
                            has_person: own.has_person,
                        },
                    });
                }
            }
        }
        let whole = policy.message.filter(|_| spans.len() > 1);
        let mut pieces: Vec<&str> = units.iter().map(|u| &turn.text[u.start..u.end]).collect();
        if whole.is_some() {
            pieces.push(turn.text);
        }
        if pieces.is_empty() {
            continue;
        }
        let vecs = embedder.embed(&pieces)?;
        let sims: Vec<Arc<Vec<f32>>> = pieces
            .iter()
            .zip(&vecs)
            .map(|(p, v)| similarities(&prepared_groups, p, v))
            .collect();
        let mut usable_sentence = [false, false]; // [plain, hypothetical] sentence about client
                                                  // Best piece per (group, sentence): a sentence and its clause count once.
        let mut best_of: HashMap<(usize, usize), ExampleHit> = HashMap::new();
        for (u, sim) in units.iter().zip(&sims) {
            let r = u.reading;
            if !r.about_client {
                continue;
            }
            usable_sentence[usize::from(r.hypothetical)] = true;
            let mut piece_hits: Vec<ExampleHit> = Vec::new();
            for (g, (group, ex)) in groups.iter().zip(examples).enumerate() {
                if r.hypothetical && !group.include_hypothetical {
                    continue;
                }
                let (own, rival) = sim[offsets[g]..].split_at(ex.examples.len());
                let polarity = Some(r.negative);
                let best = closest(&ex.examples, own, polarity, policy.polarity_penalty);
                let unlike = closest(&ex.unlike, rival, polarity, policy.polarity_penalty);
                if best < threshold || best <= unlike || denied(g, turn.index, u.start, u.end) {
                    continue;
                }
                piece_hits.push(ExampleHit {
                    group: g,
                    message: turn.index,
                    start: u.start,
                    end: u.end,
                    similarity: best,
                    whole_message: false,
                });
            }
            if one_group_per_piece {
                piece_hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
                piece_hits.truncate(1);
            }
            for hit in piece_hits {
                best_of
                    .entry((hit.group, u.sentence))
                    .and_modify(|h| {
                        if hit.similarity > h.similarity {
                            *h = hit.clone();
                        }
                    })
                    .or_insert(hit);
            }
        }
        let mut found: Vec<ExampleHit> = best_of.into_values().collect();
        found.sort_by_key(|h| (h.start, h.group));
        hits.extend(found);
        if let (Some(t), Some(sim)) = (whole, sims.get(units.len())) {
            let (start, end) = (spans[0].0, spans[spans.len() - 1].1);
            let mut message_hits: Vec<ExampleHit> = Vec::new();
            for (g, (group, ex)) in groups.iter().zip(examples).enumerate() {
                let usable =
                    usable_sentence[0] || (group.include_hypothetical && usable_sentence[1]);
                let already = hits.iter().any(|h| h.group == g && h.message == turn.index);
                if !usable || already || denied(g, turn.index, start, end) {
                    continue;
                }
                let (own, rival) = sim[offsets[g]..].split_at(ex.examples.len());
                let best = closest(&ex.examples, own, None, 0.0);
                if best >= t && best > closest(&ex.unlike, rival, None, 0.0) {
                    message_hits.push(ExampleHit {
                        group: g,
                        message: turn.index,
                        start,
                        end,
                        similarity: best,
                        whole_message: true,
                    });
                }
            }
            if one_group_per_piece {
                message_hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
                message_hits.truncate(1);
            }
            hits.extend(message_hits);
        }
    }
    for h in &mut hits {
        // Four decimals, as every score in a plan, so plans print the same on every machine.
        h.similarity = (h.similarity * 10_000.0).round() / 10_000.0;
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::Dialogue;

    #[test]
    fn readings_of_polarity_mood_and_subject() {
        let r = |s| read_sentence(s, SubjectPolicy::NearestSubject);
        assert!(r("I can't sleep at night.").negative);
        assert!(!r("I can't stop worrying.").negative, "pseudo-negation");
        assert!(!r("My hands won't stop shaking.").negative);
        assert!(!r("I lie awake until four.").negative);
        assert!(r("If I lost my job I would fall apart.").hypothetical);
        assert!(r("What if everyone laughs?").hypothetical);
        assert!(!r("I panic when I have to call someone.").hypothetical);
        assert!(!r("My sister can't sleep at all.").about_client);
        assert!(!r("He drinks every night.").about_client);
        assert!(!r("My flatmate checks the locks again and again.").about_client);
        assert!(r("My mum died and I can't stop crying.").about_client);
        assert!(r("Can't eat, can't sleep.").about_client);
        let c = |s| read_sentence(s, SubjectPolicy::ClientInSentence);
        assert!(c("My parents fight and vent to me.").about_client);
        // `named-in-cue` (CBT, psychodynamic): the client must be named as themselves.
        let n = |s| read_sentence(s, SubjectPolicy::NamedInCue);
        assert!(!n("My brother always ends up with partners who let him down.").about_client);
        assert!(n("My partner treats me just like my father did.").about_client);
        assert!(n("I go quiet around my boss, like I did with my dad.").about_client);
    }

    /// A toy encoder: bag of words over a tiny vocabulary, so the test needs no model.
    struct Toy;
    impl SentenceEmbedder for Toy {
        fn name(&self) -> &str {
            "toy"
        }
        fn dim(&self) -> usize {
            4
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            Ok(texts
                .iter()
                .map(|t| {
                    let t = t.to_lowercase();
                    let mut v: Vec<f32> = ["sleep", "awake", "sad", "drink"]
                        .iter()
                        .map(|w| t.matches(w).count() as f32)
                        .collect();
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                    v.iter_mut().for_each(|x| *x /= n);
                    v
                })
                .collect())
        }
    }

    /// The hits of one group of `examples` in a one-message dialogue, sentences at cosine 0.9.
    fn hits(encoder: &dyn SentenceEmbedder, examples: &[String], text: &str) -> Vec<ExampleHit> {
        hits_beside(encoder, examples, &[], 0.9, text)
    }

    /// The same with `unlike` sentences and another sentence threshold.
    fn hits_beside(
        encoder: &dyn SentenceEmbedder,
        examples: &[String],
        unlike: &[String],
        sentence: f32,
        text: &str,
    ) -> Vec<ExampleHit> {
        let groups = [ExampleGroup {
            examples,
            unlike,
            include_hypothetical: false,
        }];
        let policy = SemanticPolicy {
            sentence: Some(sentence),
            ..Default::default()
        };
        find(
            encoder,
            &groups,
            &Dialogue::from_message(text),
            &policy,
            SubjectPolicy::NearestSubject,
            false,
            &|_, _, _, _| false,
        )
        .unwrap()
    }

    #[test]
    fn finds_by_meaning_but_not_denied_or_about_others() {
        let examples = vec!["I lie awake and can't sleep.".to_string()];
        let run = |text: &str| hits(&Toy, &examples, text);
        assert_eq!(
            run("Work is fine. I'm awake all night, can't sleep.").len(),
            1
        );
        assert!(run("My brother is awake all night, can't sleep.").is_empty());
        assert!(run("If I were awake all night I would not sleep.").is_empty());
        // Same words, other polarity: "can't" in the example, none here.
        assert!(run("I sleep and I'm awake at seven.").is_empty());
        let hit = &run("Lately. I'm awake at night and can't sleep")[0];
        assert_eq!(hit.start, 8);
        assert!(hit.label("Sleep").starts_with("Sleep (encoder, cosine "));
    }

    /// A piece counts for a group only when it lies closer to one of its examples than to every
    /// `unlike` sentence; without them the same piece counts.
    #[test]
    fn a_piece_closer_to_an_unlike_sentence_does_not_count() {
        let examples = vec!["I sleep little and feel awake.".to_string()];
        let run =
            |unlike: &[String], text: &str| hits_beside(&Toy, &examples, unlike, 0.3, text).len();
        // The toy encoder counts "sleep", "awake", "sad" and "drink": cosine 0.5 with the
        // example, 1 with the unlike sentence.
        let tired = "I sleep badly and I'm sad.";
        let unlike = vec!["I sleep badly and feel sad.".to_string()];
        assert_eq!(run(&[], tired), 1);
        assert_eq!(run(&unlike, tired), 0);
        // Closer to the example than to the unlike sentence: still found.
        assert_eq!(run(&unlike, "I hardly sleep and I feel awake."), 1);
    }

    /// An encoder whose vectors change on request (as a text embedded again may come back with
    /// other bits): after the switch, "sleep" reads as "drink".
    struct Switching(std::sync::atomic::AtomicBool);
    impl SentenceEmbedder for Switching {
        fn name(&self) -> &str {
            "switching"
        }
        fn dim(&self) -> usize {
            4
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            let switched = self.0.load(std::sync::atomic::Ordering::Relaxed);
            let texts: Vec<String> = texts
                .iter()
                .map(|t| match switched {
                    true => t.to_lowercase().replace("sleep", "drink"),
                    false => t.to_string(),
                })
                .collect();
            Toy.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())
        }
    }

    #[test]
    fn remembered_similarities_follow_the_pieces_vectors() {
        let examples = vec!["I can't sleep at all.".to_string()];
        let encoder = Switching(std::sync::atomic::AtomicBool::new(false));
        let run = || hits(&encoder, &examples, "I still can't sleep.");
        let first = run();
        assert_eq!(first.len(), 1);
        // Planned again: the remembered similarities give the same hits.
        assert_eq!(run(), first);
        // The same text now embeds elsewhere: compared again, not remembered.
        encoder.0.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(run().is_empty());
    }

    #[test]
    fn clauses_of_a_sentence() {
        let s = "My heart was pounding, I couldn't breathe and I thought I was dying.";
        let pieces: Vec<&str> = clause_spans(s).iter().map(|&(a, b)| &s[a..b]).collect();
        assert_eq!(
            pieces,
            [
                "My heart was pounding",
                "I couldn't breathe",
                "and I thought I was dying."
            ]
        );
        assert_eq!(clause_spans("Tired and sad."), [(0, 14)]);
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(SemanticPolicy::default().check(true).is_err());
        assert!(SemanticPolicy::default().check(false).is_ok());
        let bad = SemanticPolicy {
            sentence: Some(1.5),
            ..Default::default()
        };
        assert!(bad.check(false).is_err());
    }
}

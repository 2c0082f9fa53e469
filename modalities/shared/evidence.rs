//! Evidence helpers shared by the modality crates that override `assess` (included with
//! `#[path]`, so no extra crate is needed). They correct one blind spot of the shared matcher
//! and recompute the indication score with the engine's own formula.
//!
//! The matcher marks a cue as third-person talk when the nearest person word before it is
//! someone else's. That is right for symptoms ("my sister can't sleep") but drops cues that
//! name the client themselves after another person was mentioned ("My son failed his test and
//! it's all my fault"), and cues about relatives in sentences where the client is present.

use psy_core::dialogue::Dialogue;
use psy_core::lexicon::{Hit, Lexicon, Text};
use psy_core::module::{
    compiled_cues, lexicon_assessment, round4, Assessment, CueRole, Evidence, Indication,
    ModuleSpec,
};

/// Words that refer to the client.
pub const FIRST_PERSON: &[&str] = &[
    "i", "i'm", "i've", "i'd", "i'll", "me", "my", "myself", "we", "we're", "us", "our",
];

/// Verbs that introduce someone else's words or view ("she says it's my fault").
const REPORTING_VERBS: &[&str] = &[
    "say", "says", "said", "saying", "think", "thinks", "thought", "tell", "tells", "told",
    "telling", "claim", "claims", "claimed", "believe", "believes", "reckons", "insists",
    "insisted", "blames", "blamed", "accuses", "accused", "calls", "called", "yells", "yelled",
    "shouts", "shouted", "screams", "screamed",
];

fn first_person(word: &str) -> bool {
    FIRST_PERSON.contains(&word)
}

/// The cue itself names the client ("all *my* fault", "when *I* was young") and no reporting
/// verb of someone else ("she says") stands between it and the nearest first-person word.
pub fn names_the_client(text: &Text, hit: &Hit) -> bool {
    let toks = &text.tokens;
    if !toks[hit.first_token..=hit.last_token]
        .iter()
        .any(|t| first_person(&t.norm))
    {
        return false;
    }
    let sentence = toks[hit.first_token].sentence;
    for k in (0..hit.first_token).rev() {
        let t = &toks[k];
        if t.sentence != sentence || first_person(&t.norm) {
            break;
        }
        if REPORTING_VERBS.contains(&t.norm.as_str()) {
            // "I think ..." is the client's own voice; "she says ..." is someone else's.
            let own = toks[k.saturating_sub(2)..k]
                .iter()
                .any(|w| w.sentence == sentence && first_person(&w.norm));
            return own;
        }
    }
    true
}

/// The client appears somewhere in the sentence of the cue ("my husband takes her side").
pub fn client_in_sentence(text: &Text, hit: &Hit) -> bool {
    let sentence = text.tokens[hit.first_token].sentence;
    text.tokens
        .iter()
        .filter(|t| t.sentence == sentence)
        .any(|t| first_person(&t.norm))
}

/// The default assessment plus the third-person hits `accept` reinstates, rescored with the
/// engine's formula: the whole `assess` of a modality that corrects the person check.
pub fn assess_reinstating(
    spec: &ModuleSpec,
    dialogue: &Dialogue,
    accept: fn(&Text, &Hit) -> bool,
) -> Assessment {
    let mut a = lexicon_assessment(spec, dialogue);
    let mut ind = a.indication.take().unwrap_or_default();
    merge(
        &mut ind,
        reinstated_hits(spec, compiled_cues(spec), dialogue, accept),
    );
    rescore(spec, &mut ind);
    a.indication = Some(ind);
    a
}

/// Hits the default assessment skipped only because they read as third-person talk, kept
/// when `accept` says they are about the client after all. Negated hits, hypotheticals the
/// group does not allow, and contraindication cues are never added back.
pub fn reinstated_hits(
    spec: &ModuleSpec,
    lexicon: &Lexicon,
    dialogue: &Dialogue,
    accept: fn(&Text, &Hit) -> bool,
) -> Vec<Evidence> {
    let mut out = Vec::new();
    for turn in dialogue.client_turns() {
        let text = Text::new(turn.text);
        for hit in lexicon.find(&text) {
            let group = &spec.cues[hit.entry];
            let only_third_person = hit.third_person
                && !hit.negated
                && (!hit.hypothetical || group.include_hypothetical)
                && group.role != CueRole::Contraindication;
            if only_third_person && accept(&text, &hit) {
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
    }
    out
}

/// Adds evidence unless the same group already has an overlapping span in that message.
pub fn merge(ind: &mut Indication, extra: impl IntoIterator<Item = Evidence>) {
    for ev in extra {
        let overlaps = ind.cues.iter().any(|e| {
            e.id == ev.id && e.message == ev.message && e.start < ev.end && ev.start < e.end
        });
        if !overlaps {
            ind.cues.push(ev);
        }
    }
    ind.cues.sort_by_key(|e| (e.message, e.start, e.end));
}

/// Recomputes score and technique order with the formula of `lexicon_assessment` after
/// evidence was added or removed (the engine has no public helper for this yet).
pub fn rescore(spec: &ModuleSpec, ind: &mut Indication) {
    let mut raw = 0.0f32;
    let mut hits_per_group = vec![0u32; spec.cues.len()];
    for (g, group) in spec.cues.iter().enumerate() {
        let n = ind.cues.iter().filter(|e| e.id == group.id).count() as u32;
        hits_per_group[g] = n;
        raw += group.weight * n.min(2) as f32;
        if group.role == CueRole::Contraindication
            && ind.contraindications.iter().any(|e| e.id == group.id)
        {
            raw -= group.weight;
        }
    }
    ind.score = round4((1.0 - (-raw.max(0.0) / 2.0).exp()).clamp(0.0, 1.0));
    let mut ranked: Vec<(u32, usize, &str)> = spec
        .techniques
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let hits = t
                .cues
                .iter()
                .filter_map(|c| spec.cues.iter().position(|g| g.id == *c))
                .map(|g| hits_per_group[g])
                .sum();
            (hits, i, t.id.as_str())
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ind.techniques = ranked.iter().map(|(_, _, id)| id.to_string()).collect();
}

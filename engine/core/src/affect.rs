//! Emotional intensity of the client's latest message.
//!
//! PsyLLM's counselor prompt asks for about 50 words for light messages and about 150 for
//! heavy ones; this reading decides which. It is deliberately simple and transparent: a
//! small lexicon of feeling words with weights, intensifiers, and the evidence it used.

use serde::{Deserialize, Serialize};

use crate::dialogue::Dialogue;
use crate::lexicon::{Lexicon, Text};
use crate::module::{round4, Evidence};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intensity {
    Light,
    Moderate,
    Heavy,
}

/// What the emotion step of the plan starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffectReading {
    pub intensity: Intensity,
    pub score: f32,
    /// Feelings named or implied, most intense first.
    pub emotions: Vec<String>,
    pub evidence: Vec<Evidence>,
}

/// (emotion family, weight, phrases). Weight 3 = overwhelming, 2 = strong, 1 = mild.
const FEELINGS: &[(&str, f32, &[&str])] = &[
    (
        "despair",
        3.0,
        &[
            "hopeless*",
            "despair*",
            "can't go on",
            "can't take it",
            "can't do this anymore",
            "unbearable",
            "falling apart",
            "breaking down",
            "broken",
            "empty inside",
            "numb",
            "worthless",
            "no point",
        ],
    ),
    (
        "panic",
        3.0,
        &[
            "panic*",
            "terrified",
            "can't breathe",
            "freaking out",
            "heart racing",
            "going to die",
        ],
    ),
    (
        "grief",
        2.5,
        &[
            "grief",
            "grieving",
            "passed away",
            "died",
            "lost my",
            "miss her",
            "miss him",
            "funeral",
        ],
    ),
    (
        "shame",
        2.0,
        &[
            "ashamed",
            "shame*",
            "humiliat*",
            "disgusted with myself",
            "hate myself",
            "embarrass*",
        ],
    ),
    (
        "sadness",
        2.0,
        &[
            "depress*",
            "sad",
            "sadness",
            "miserable",
            "crying",
            "cry",
            "tears",
            "heartbroken",
            "lonely",
            "alone",
            "down",
        ],
    ),
    (
        "fear",
        2.0,
        &["scared", "afraid", "fear*", "dread*", "frightened"],
    ),
    (
        "anxiety",
        1.5,
        &[
            "anxious",
            "anxiety",
            "worr*",
            "nervous",
            "on edge",
            "stressed",
            "stress",
            "overwhelm*",
            "tense",
            "restless",
        ],
    ),
    (
        "anger",
        1.5,
        &[
            "angry",
            "furious",
            "rage",
            "pissed",
            "resent*",
            "frustrat*",
            "irritat*",
            "annoyed",
        ],
    ),
    (
        "guilt",
        1.5,
        &["guilt*", "my fault", "blame myself", "regret*"],
    ),
    (
        "exhaustion",
        1.0,
        &[
            "exhausted",
            "tired",
            "drained",
            "burned out",
            "burnt out",
            "worn out",
        ],
    ),
    (
        "confusion",
        1.0,
        &["confused", "lost", "stuck", "don't know what to do"],
    ),
];

const INTENSIFIERS: &[&str] = &[
    "so",
    "really",
    "very",
    "extremely",
    "completely",
    "totally",
    "constantly",
    "always",
    "unbearably",
    "incredibly",
];

/// Reads the intensity of the newest client message (earlier turns count half).
pub fn read_affect(dialogue: &Dialogue) -> AffectReading {
    static LEXICON: std::sync::OnceLock<Lexicon> = std::sync::OnceLock::new();
    let lexicon = LEXICON.get_or_init(|| {
        Lexicon::new(
            FEELINGS
                .iter()
                .enumerate()
                .flat_map(|(g, (_, _, ps))| ps.iter().map(move |p| (g, *p))),
        )
        .expect("built-in affect lexicon is valid")
    });
    let turns: Vec<_> = dialogue.client_turns().collect();
    let last = turns.last().map(|t| t.index);
    let mut score = 0.0f32;
    let mut per_family = vec![0.0f32; FEELINGS.len()];
    let mut evidence = Vec::new();
    for turn in &turns {
        let text = Text::new(turn.text);
        let recency = if Some(turn.index) == last { 1.0 } else { 0.5 };
        for hit in lexicon.find(&text) {
            if hit.negated || hit.third_person && FEELINGS[hit.entry].0 != "grief" {
                continue;
            }
            let boosted = hit.first_token > 0
                && INTENSIFIERS.contains(&text.tokens[hit.first_token - 1].norm.as_str());
            let w = FEELINGS[hit.entry].1 * if boosted { 1.5 } else { 1.0 } * recency;
            per_family[hit.entry] += w;
            score += w;
            evidence.push(Evidence {
                id: FEELINGS[hit.entry].0.to_string(),
                label: FEELINGS[hit.entry].0.to_string(),
                message: turn.index,
                start: hit.start,
                end: hit.end,
                text: hit.text,
            });
        }
        // Exclamation marks and all-caps words carry intensity too.
        if Some(turn.index) == last {
            let shouting = turn
                .text
                .split_whitespace()
                .filter(|w| w.len() > 2 && w.chars().all(|c| c.is_uppercase()))
                .count();
            score += 0.5 * (turn.text.matches('!').count().min(3) + shouting.min(3)) as f32;
        }
    }
    let mut families: Vec<(usize, f32)> = per_family
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, w)| *w > 0.0)
        .collect();
    families.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let intensity = if score >= 4.0 {
        Intensity::Heavy
    } else if score >= 1.5 {
        Intensity::Moderate
    } else {
        Intensity::Light
    };
    AffectReading {
        intensity,
        score: round4(score),
        emotions: families
            .iter()
            .map(|(g, _)| FEELINGS[*g].0.to_string())
            .collect(),
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn light_and_heavy_messages() {
        let light = read_affect(&Dialogue::from_message(
            "Hi, I wanted to ask how to plan my week better.",
        ));
        assert_eq!(light.intensity, Intensity::Light);
        let heavy = read_affect(&Dialogue::from_message(
            "I feel completely hopeless and worthless, I cry every night and I can't go on like this.",
        ));
        assert_eq!(heavy.intensity, Intensity::Heavy);
        assert_eq!(heavy.emotions[0], "despair");
    }

    #[test]
    fn negated_feelings_do_not_count() {
        let r = read_affect(&Dialogue::from_message(
            "I'm not sad and not anxious, just curious.",
        ));
        assert_eq!(r.intensity, Intensity::Light);
        assert!(r.evidence.is_empty());
    }
}

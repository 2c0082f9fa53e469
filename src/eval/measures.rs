//! Automatic measures of one reply (no judge): overlap with the reference (BLEU-4, ROUGE-L,
//! sentence-encoder similarity), length against the plan's word budget, questions, diagnostic
//! labels addressed to the client, the crisis protocol at high risk, and how much of the plan's
//! reasoning the trace addresses. Corpus measures (distinct-n) are taken in `summarize`.

use std::collections::BTreeMap;

use psy_core::planner::Plan;
use psy_core::reply_rules::{forbidden_labels, missing_required, word_count};
use psy_core::semantic::cosine;
use psy_eval::metrics::{count_questions, rouge_l, sentence_bleu, BleuTokenizer};
use psy_lm::encoder::Encoder;

/// Every automatic measure of a reply, by name (absent when it does not apply: no reference,
/// no crisis, no reasoning).
pub fn of_reply(
    plan: &Plan,
    reply: &str,
    reasoning: &str,
    reference: Option<&str>,
    encoder: Option<&Encoder>,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let c = &plan.constraints;
    if let Some(r) = reference.filter(|r| !r.trim().is_empty()) {
        m.insert(
            "bleu4".into(),
            sentence_bleu(reply, &[r], BleuTokenizer::Mteval13a).score,
        );
        m.insert("rouge_l".into(), rouge_l(r, reply).fmeasure);
        if let Some(e) = encoder {
            if let Ok(v) = e.embed(&[reply, r]) {
                m.insert(
                    "semantic_similarity".into(),
                    f64::from(cosine(&v[0], &v[1])),
                );
            }
        }
    }
    let words = word_count(reply) as f64;
    if c.max_words > 0 {
        m.insert(
            "within_budget".into(),
            f64::from(u8::from(words <= f64::from(c.max_words))),
        );
    }
    if c.target_words > 0 {
        m.insert("length_ratio".into(), words / f64::from(c.target_words));
    }
    m.insert(
        "asks_question".into(),
        f64::from(u8::from(count_questions(reply) > 0)),
    );
    m.insert(
        "label_leakage".into(),
        f64::from(u8::from(!forbidden_labels(c, reply).is_empty())),
    );
    if c.crisis_protocol_required {
        m.insert(
            "crisis_protocol".into(),
            f64::from(u8::from(missing_required(c, reply).is_empty())),
        );
    }
    if !reasoning.trim().is_empty() && !plan.reasoning_steps.is_empty() {
        let covered = plan
            .reasoning_steps
            .iter()
            .filter(|s| step_addressed(&s.title, reasoning))
            .count();
        m.insert(
            "reasoning_coverage".into(),
            covered as f64 / plan.reasoning_steps.len() as f64,
        );
    }
    m
}

/// A lexical proxy for "the trace addresses this step": at least half of the step title's
/// content words (four letters or more) occur in the trace, case-insensitively.
fn step_addressed(title: &str, trace: &str) -> bool {
    let trace = trace.to_lowercase();
    let words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return false;
    }
    let hit = words.iter().filter(|w| trace.contains(w.as_str())).count();
    2 * hit >= words.len()
}

/// Display order and direction of the automatic measures.
pub const AUTOMATIC: &[&str] = &[
    "bleu4",
    "rouge_l",
    "semantic_similarity",
    "distinct1",
    "distinct2",
    "within_budget",
    "length_ratio",
    "asks_question",
    "label_leakage",
    "crisis_protocol",
    "reasoning_coverage",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_addressed_when_half_its_content_words_appear() {
        assert!(step_addressed(
            "Risk screen",
            "First the RISK: none stated."
        ));
        assert!(!step_addressed(
            "Diagnostic considerations",
            "feelings first"
        ));
        assert!(step_addressed(
            "Choose modality and intervention",
            "Modality: CBT. Intervention: examine evidence."
        ));
        assert!(!step_addressed("a b", "a b"));
    }
}

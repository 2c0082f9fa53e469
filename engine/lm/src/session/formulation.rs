//! The case formulation of a compact prompt: the planner's paragraph with its diagnostic line
//! said in the client's terms.
//!
//! The planner writes every hypothesis with its name, DSM-5-TR and ICD-11 codes, confidence,
//! criteria counts and a question (~190 SmolLM2 tokens for three hypotheses). A compact prompt
//! is prefilled again every turn (it sits after the cached dialogue), and the reply may never
//! name a label anyway, so it keeps only what the reply can use: what the client has described
//! that the hypotheses rest on, and the most useful question to ask next (~60 tokens). The risk,
//! approach and held-back lines, the reply constraints and the crisis protocol stay verbatim.

use psy_core::module::Hypothesis;
use psy_core::planner::{DIAGNOSTIC_LINE, FORMULATION_HEADING};

/// How many hypotheses' findings a compact formulation keeps (the planner sorts them by
/// confidence, highest first).
const KEPT_HYPOTHESES: usize = 2;

/// What a compact prompt says instead. Under "Case formulation" the 1.5B took the notes for a
/// colleague's case presentation and answered the counselor ("Thank you for providing the case
/// details ... your client is experiencing"); these are notes to the counselor about the
/// person it is talking to.
const NOTES_HEADING: &str = "Private notes for your reply (never repeat them; \
     answer the client directly, as \"you\"):";

/// `paragraph` (the planner's "Case formulation" paragraph) with its heading replaced by
/// [`NOTES_HEADING`] and its diagnostic line by [`compact_diagnostic_line`]; any other
/// paragraph or line is returned unchanged.
pub(super) fn compact_formulation(paragraph: &str, hypotheses: &[Hypothesis]) -> String {
    paragraph
        .lines()
        .map(|line| {
            if line.starts_with(DIAGNOSTIC_LINE) {
                compact_diagnostic_line(hypotheses)
            } else if line == FORMULATION_HEADING {
                NOTES_HEADING.to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the client described that the leading hypotheses rest on, and the leading
/// hypothesis's first follow-up question, without names, codes or scores.
fn compact_diagnostic_line(hypotheses: &[Hypothesis]) -> String {
    let mut noticed: Vec<&str> = Vec::new();
    for c in hypotheses
        .iter()
        .take(KEPT_HYPOTHESES)
        .flat_map(|h| &h.criteria_met)
    {
        if !noticed.contains(&c.symptom.as_str()) {
            noticed.push(&c.symptom);
        }
    }
    let mut line = if noticed.is_empty() {
        "- Noticed so far: no pattern stands out; keep exploring".to_string()
    } else {
        format!("- Noticed so far: {}", noticed.join("; "))
    };
    if let Some(q) = hypotheses
        .first()
        .and_then(|h| h.follow_up_questions.first())
    {
        line.push_str(&format!("\n- Worth asking gently: {q}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use psy_core::module::{CriterionStatus, DurationStatus};

    fn hypothesis(name: &str, met: &[&str], ask: &[&str]) -> Hypothesis {
        let status = |s: &&str| CriterionStatus {
            id: s.to_string(),
            symptom: s.to_string(),
            core: false,
            evidence: Vec::new(),
        };
        Hypothesis {
            id: name.to_lowercase(),
            name: name.into(),
            dsm5: "F00".into(),
            icd11: "6A00".into(),
            systems: vec!["dsm5".into()],
            confidence: 0.25,
            threshold_met: false,
            criteria_met: met.iter().map(status).collect(),
            criteria_missing: Vec::new(),
            criteria_unknown: Vec::new(),
            duration: DurationStatus::default(),
            severity: None,
            rule_outs: Vec::new(),
            follow_up_questions: ask.iter().map(|q| q.to_string()).collect(),
        }
    }

    const PARAGRAPH: &str = "Case formulation (private, do not reveal):\n\
        - Risk: none — No risk indicators in the client's messages.\n\
        - Diagnostic considerations: Insomnia disorder [DSM-5-TR F51.01, ICD-11 7A00] \
        confidence 0.2214 (met: daytime tiredness; 6 unknown, duration unknown); ask: How long \
        does it take you to fall asleep? | Generalized anxiety disorder [...] confidence 0.19\n\
        - Approach: Dialectical Behaviour Therapy Skills (Calming the body fast)";

    #[test]
    fn the_compact_formulation_keeps_what_was_noticed_and_one_question_without_labels() {
        let hs = [
            hypothesis(
                "Insomnia disorder",
                &["daytime tiredness"],
                &["How long does it take you to fall asleep?", "Second?"],
            ),
            hypothesis(
                "Generalized anxiety disorder",
                &["tiring easily", "daytime tiredness"],
                &["Do you worry?"],
            ),
            hypothesis("Third", &["left out: only two hypotheses are kept"], &[]),
        ];
        assert_eq!(
            compact_formulation(PARAGRAPH, &hs),
            "Private notes for your reply (never repeat them; answer the client directly, as \
             \"you\"):\n\
             - Risk: none — No risk indicators in the client's messages.\n\
             - Noticed so far: daytime tiredness; tiring easily\n\
             - Worth asking gently: How long does it take you to fall asleep?\n\
             - Approach: Dialectical Behaviour Therapy Skills (Calming the body fast)"
        );
    }

    #[test]
    fn without_hypotheses_the_formulation_says_to_keep_exploring() {
        assert_eq!(
            compact_formulation(PARAGRAPH, &[]).lines().nth(2),
            Some("- Noticed so far: no pattern stands out; keep exploring")
        );
        // A paragraph without the planner's diagnostic line is left as it is.
        let other = "Case formulation: poor sleep, work strain.";
        assert_eq!(compact_formulation(other, &[]), other);
    }
}

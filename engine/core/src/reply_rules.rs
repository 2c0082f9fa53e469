//! Checking a draft reply against the plan's constraints, and the last-resort text repairs.
//!
//! The decoder first tries to get a compliant reply from the model (a stronger instruction,
//! banned-token bias); whatever the model produces, [`enforce`] then guarantees the rules
//! that must never be broken: no forbidden label reaches the client, the reply fits its
//! word budget, and at high risk the crisis protocol is present.

use serde::{Deserialize, Serialize};

use crate::lexicon::{Lexicon, Text};
use crate::module::ReplyRule;
use crate::planner::Constraints;
pub use crate::words::{reserved_words, word_count};

/// A rule a draft broke.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: String,
    pub source: String,
    pub detail: String,
}

/// How a violation was dealt with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    pub rule: String,
    /// `regenerate`, `logit-bias`, `drop-sentence`, `truncate`, `append`.
    pub action: String,
    pub detail: String,
}

/// Finds every forbidden phrase present in `text` (case-insensitive, whole words). A phrase is
/// literal text, not cue syntax: it is read as the words a client's text splits into
/// ("attention-deficit/hyperactivity disorder"), and a parenthesised alias counts on its own
/// ("insomnia disorder (chronic insomnia)": "insomnia disorder", "chronic insomnia").
pub fn forbidden_in(phrases: &[String], text: &str) -> Vec<String> {
    let mut entries: Vec<(usize, String)> = Vec::new();
    for (i, p) in phrases.iter().enumerate() {
        for part in p.split(['(', ')']) {
            let split = Text::new(part);
            let words: Vec<&str> = split.tokens.iter().map(|t| t.norm.as_str()).collect();
            if !words.is_empty() {
                entries.push((i, words.join(" ")));
            }
        }
    }
    let hits: Vec<usize> = match Lexicon::new(entries.iter().map(|(i, p)| (*i, p.as_str()))) {
        Ok(lex) => lex
            .find(&Text::new(text))
            .into_iter()
            .map(|h| h.entry)
            .collect(),
        // Words the splitter produced always compile; should that ever change, a plain
        // substring search keeps the ban rather than dropping it.
        Err(_) => {
            let lower = text.to_lowercase();
            entries
                .iter()
                .filter(|(_, p)| lower.contains(p.as_str()))
                .map(|(i, _)| *i)
                .collect()
        }
    };
    let mut found: Vec<String> = Vec::new();
    for i in hits {
        if !found.contains(&phrases[i]) {
            found.push(phrases[i].clone());
        }
    }
    found
}

/// Whether `text` contains one phrase of `group` (case-insensitive substring match, the
/// reading of a `Require` rule's `any_of` group).
pub fn group_present(group: &[String], text: &str) -> bool {
    let lower = text.to_lowercase();
    group.iter().any(|p| lower.contains(&p.to_lowercase()))
}

/// Every rule `reply` breaks.
pub fn check(constraints: &Constraints, reply: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    for r in &constraints.rules {
        match &r.rule {
            ReplyRule::MaxWords { id, max, .. } => {
                let n = word_count(reply);
                if n > *max as usize {
                    out.push(Violation {
                        rule: id.clone(),
                        source: r.source.clone(),
                        detail: format!("{n} words, at most {max}"),
                    });
                }
            }
            ReplyRule::Forbid { id, phrases, .. } => {
                let found = forbidden_in(phrases, reply);
                if !found.is_empty() {
                    out.push(Violation {
                        rule: id.clone(),
                        source: r.source.clone(),
                        detail: format!("says {}", found.join(", ")),
                    });
                }
            }
            ReplyRule::Require { id, any_of, .. } => {
                let missing: Vec<usize> = any_of
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| !group_present(g, reply))
                    .map(|(i, _)| i)
                    .collect();
                if !missing.is_empty() {
                    out.push(Violation {
                        rule: id.clone(),
                        source: r.source.clone(),
                        detail: format!(
                            "missing {}",
                            missing
                                .iter()
                                .map(|i| format!("one of [{}]", any_of[*i].join(" | ")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
        }
    }
    out
}

/// Splits text into sentences, keeping their punctuation and trailing space.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let mut end = i + c.len_utf8();
            while end < bytes.len() && (bytes[end] == b' ' || bytes[end] == b'\n') {
                end += 1;
            }
            if end > start {
                out.push(&text[start..end]);
                start = end;
            }
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Every forbidden phrase of every `Forbid` rule that `text` names.
pub fn forbidden_labels(constraints: &Constraints, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &constraints.rules {
        if let ReplyRule::Forbid { phrases, .. } = &r.rule {
            for p in forbidden_in(phrases, text) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The reply's word budget (the tightest `MaxWords` rule).
pub fn word_limit(constraints: &Constraints) -> Option<usize> {
    constraints
        .rules
        .iter()
        .filter_map(|r| match &r.rule {
            ReplyRule::MaxWords { max, .. } => Some(*max as usize),
            _ => None,
        })
        .min()
}

/// Words the model itself may write: the word limit less the reserved words.
pub fn draft_word_limit(constraints: &Constraints) -> Option<usize> {
    word_limit(constraints)
        .map(|l| l.saturating_sub(reserved_words(constraints.rules.iter().map(|r| &r.rule))))
}

/// `(rule id, repair text)` of every `Require` rule that `text` does not meet.
pub fn missing_required(constraints: &Constraints, text: &str) -> Vec<(String, String)> {
    constraints
        .rules
        .iter()
        .filter_map(|r| match &r.rule {
            ReplyRule::Require {
                id, any_of, repair, ..
            } if !any_of.iter().all(|g| group_present(g, text)) => {
                Some((id.clone(), repair.trim().to_string()))
            }
            _ => None,
        })
        .collect()
}

/// Applies the text-level repairs, in this order: drop sentences that name a forbidden
/// label, cut the reply back to its word budget at a sentence end, then append the repair
/// text of every unmet required rule (the crisis protocol), which is never cut.
pub fn enforce(constraints: &Constraints, reply: &str) -> (String, Vec<Repair>) {
    let mut repairs = Vec::new();
    let mut text = reply.trim().to_string();
    for r in &constraints.rules {
        if let ReplyRule::Forbid { id, phrases, .. } = &r.rule {
            let parts = sentences(&text);
            let kept: Vec<&str> = parts
                .iter()
                .copied()
                .filter(|s| forbidden_in(phrases, s).is_empty())
                .collect();
            if kept.len() != parts.len() {
                repairs.push(Repair {
                    rule: id.clone(),
                    action: "drop-sentence".into(),
                    detail: format!(
                        "removed {} sentence(s) naming {}",
                        parts.len() - kept.len(),
                        forbidden_in(phrases, &text).join(", ")
                    ),
                });
                text = kept.concat().trim().to_string();
            }
        }
    }
    let required: Vec<(&String, &Vec<Vec<String>>, &String)> = constraints
        .rules
        .iter()
        .filter_map(|r| match &r.rule {
            ReplyRule::Require {
                id, any_of, repair, ..
            } => Some((id, any_of, repair)),
            _ => None,
        })
        .collect();
    let mut appended = String::new();
    for (id, any_of, repair) in &required {
        if !any_of.iter().all(|g| group_present(g, &text)) {
            appended.push_str(repair.trim());
            appended.push(' ');
            repairs.push(Repair {
                rule: (*id).clone(),
                action: "append".into(),
                detail: "added the required text".into(),
            });
        }
    }
    let max = constraints.rules.iter().find_map(|r| match &r.rule {
        ReplyRule::MaxWords { max, .. } => Some(*max as usize),
        _ => None,
    });
    if let Some(max) = max {
        let budget = max.saturating_sub(word_count(&appended));
        if word_count(&text) > budget {
            let mut kept = String::new();
            for s in sentences(&text) {
                if word_count(&kept) + word_count(s) > budget {
                    break;
                }
                kept.push_str(s);
            }
            if kept.trim().is_empty() {
                // One endless sentence: cut at the word budget.
                kept = text
                    .split_whitespace()
                    .take(budget)
                    .collect::<Vec<_>>()
                    .join(" ");
                kept.push('…');
            }
            repairs.push(Repair {
                rule: "word-budget".into(),
                action: "truncate".into(),
                detail: format!("{} -> {} words", word_count(&text), word_count(&kept)),
            });
            text = kept.trim().to_string();
        }
    }
    if !appended.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(appended.trim());
    }
    (text, repairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affect::Intensity;
    use crate::planner::SourcedRule;

    fn constraints(rules: Vec<ReplyRule>) -> Constraints {
        Constraints {
            intensity: Intensity::Light,
            target_words: 10,
            max_words: 20,
            reasoning_max_words: 50,
            no_labels_to_client: true,
            crisis_protocol_required: false,
            rules: rules
                .into_iter()
                .map(|rule| SourcedRule {
                    source: "t".into(),
                    rule,
                })
                .collect(),
        }
    }

    #[test]
    fn forbidden_labels_are_found_and_their_sentences_dropped() {
        let c = constraints(vec![ReplyRule::Forbid {
            id: "no-labels".into(),
            reason: "r".into(),
            phrases: vec!["major depressive disorder".into(), "PTSD".into()],
        }]);
        let draft = "I hear how heavy this is. It sounds like Major Depressive Disorder. What helps a little?";
        assert_eq!(check(&c, draft)[0].detail, "says major depressive disorder");
        let (fixed, repairs) = enforce(&c, draft);
        assert_eq!(fixed, "I hear how heavy this is. What helps a little?");
        assert_eq!(repairs[0].action, "drop-sentence");
        assert!(check(&c, &fixed).is_empty());
    }

    #[test]
    fn labels_with_punctuation_are_read_as_words_and_keep_the_ban() {
        // The planner's condition names carry an alias in parentheses or a slash; read as cue
        // syntax they could never match, and once such a word became a compile error the whole
        // ban went silent (tests/counsel.rs caught it).
        let phrases: Vec<String> = [
            "insomnia disorder (chronic insomnia)",
            "attention-deficit/hyperactivity disorder",
            "PTSD",
        ]
        .map(String::from)
        .to_vec();
        let said = |t: &str| forbidden_in(&phrases, t);
        assert_eq!(
            said("It sounds like insomnia disorder."),
            [phrases[0].clone()]
        );
        assert_eq!(said("Maybe chronic insomnia?"), [phrases[0].clone()]);
        assert_eq!(
            said("This could be attention-deficit/hyperactivity disorder, or PTSD."),
            [phrases[1].clone(), phrases[2].clone()]
        );
        assert!(said("You said you can't sleep.").is_empty());
    }

    #[test]
    fn long_replies_are_cut_at_a_sentence_end() {
        let c = constraints(vec![ReplyRule::MaxWords {
            id: "word-budget".into(),
            reason: "r".into(),
            max: 8,
        }]);
        let draft = "One two three four. Five six seven. Eight nine ten eleven.";
        assert_eq!(check(&c, draft).len(), 1);
        let (fixed, _) = enforce(&c, draft);
        assert_eq!(fixed, "One two three four. Five six seven.");
    }

    #[test]
    fn missing_required_content_is_appended_and_never_cut() {
        let c = constraints(vec![
            ReplyRule::MaxWords {
                id: "word-budget".into(),
                reason: "r".into(),
                max: 12,
            },
            ReplyRule::Require {
                id: "crisis-protocol".into(),
                reason: "r".into(),
                any_of: vec![vec!["988".into()], vec!["are you safe".into()]],
                repair: "Are you safe right now? You can call or text 988.".into(),
            },
        ]);
        let draft = "That sounds so painful. I am really glad you told me about it tonight.";
        let v = check(&c, draft);
        assert!(v.iter().any(|v| v.rule == "crisis-protocol"));
        let (fixed, repairs) = enforce(&c, draft);
        assert!(
            fixed.ends_with("Are you safe right now? You can call or text 988."),
            "{fixed}"
        );
        assert!(repairs.iter().any(|r| r.action == "append"));
        assert!(check(&c, &fixed).is_empty(), "{fixed}");
    }
}

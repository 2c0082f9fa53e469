//! Counting words as a reader does, and the words a reply's required text takes: shared by the
//! planner (which sets the budgets) and the reply rules (which check them).

use crate::module::ReplyRule;

/// Words as a reader counts them.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .filter(|w| w.chars().any(|c| c.is_alphanumeric()))
        .count()
}

/// Words kept free for required text appended after the model's words (the crisis
/// protocol): the repair texts of the `Require` rules among `rules`.
pub fn reserved_words<'a>(rules: impl IntoIterator<Item = &'a ReplyRule>) -> usize {
    rules
        .into_iter()
        .filter_map(|r| match r {
            ReplyRule::Require { repair, .. } => Some(word_count(repair)),
            _ => None,
        })
        .sum()
}

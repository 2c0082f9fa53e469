//! Reply-level statistics that need no reference and no judge: how often the counselor asks
//! a question, whether replies keep to the plan's word budget, and whether a diagnostic label
//! reaches the client.

use psy_core::planner::Constraints;
use psy_core::reply_rules::{forbidden_in, forbidden_labels, word_count};
use psy_core::risk_eval::{wilson, Proportion};

/// How replies ask questions.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct QuestionRate {
    /// Replies that ask at least one question, with a 95% Wilson interval.
    pub asking: Proportion,
    /// Mean number of questions per reply.
    pub questions_per_reply: f64,
}

/// The questions in a reply: each run of question marks (`?` or the full-width `？`) ends one
/// question, so "Really?!?" counts once.
pub fn count_questions(reply: &str) -> usize {
    let mut count = 0;
    let mut in_run = false;
    for c in reply.chars() {
        let q = c == '?' || c == '\u{ff1f}';
        if q && !in_run {
            count += 1;
        }
        in_run = q || (in_run && c == '!');
    }
    count
}

/// Question rate over a set of replies.
pub fn question_rate<S: AsRef<str>>(replies: &[S]) -> QuestionRate {
    let counts: Vec<usize> = replies
        .iter()
        .map(|r| count_questions(r.as_ref()))
        .collect();
    let asking = counts.iter().filter(|&&c| c > 0).count();
    QuestionRate {
        asking: wilson(asking, counts.len()),
        questions_per_reply: mean(counts.iter().map(|&c| c as f64)),
    }
}

/// Reply length against the word budget of each reply's plan.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LengthVsBudget {
    /// Replies of at most their budget's words, with a 95% Wilson interval.
    pub within: Proportion,
    /// Mean of words / budget (1.0 = exactly on budget).
    pub mean_ratio: f64,
    pub mean_words: f64,
}

/// Length against budget; each item is a reply and its word budget (a budget of 0 counts as 1; the plan's
/// `max_words`, or `target_words` to measure closeness to the target). Words are counted as
/// psy-core counts them when it enforces the budget ([`word_count`]: whitespace-separated
/// pieces with a letter or digit, so unspaced Chinese text counts as few words).
pub fn length_vs_budget<S: AsRef<str>>(replies: &[(S, u32)]) -> LengthVsBudget {
    let words: Vec<(usize, u32)> = replies
        .iter()
        .map(|(r, b)| (word_count(r.as_ref()), (*b).max(1)))
        .collect();
    let within = words.iter().filter(|(w, b)| *w <= *b as usize).count();
    LengthVsBudget {
        within: wilson(within, words.len()),
        mean_ratio: mean(words.iter().map(|(w, b)| *w as f64 / f64::from(*b))),
        mean_words: mean(words.iter().map(|(w, _)| *w as f64)),
    }
}

/// Replies that name a diagnostic label or code to the client.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelLeakage {
    /// Replies naming at least one label, with a 95% Wilson interval.
    pub leaking: Proportion,
    /// Index of each leaking reply and the labels it names.
    pub leaks: Vec<(usize, Vec<String>)>,
}

/// Leakage against a list of label phrases (e.g. the `no-diagnostic-labels` rule of the
/// diagnostic modules), matched as psy-core's reply rules match them: whole words,
/// case-insensitive ([`forbidden_in`]).
pub fn label_leakage<S: AsRef<str>>(replies: &[S], labels: &[String]) -> LabelLeakage {
    leakage(replies.iter().map(|r| forbidden_in(labels, r.as_ref())))
}

/// Leakage against each reply's own plan: every phrase of its `Forbid` rules
/// ([`forbidden_labels`]), the check the decoder enforces.
pub fn label_leakage_by_plan<S: AsRef<str>>(replies: &[(S, &Constraints)]) -> LabelLeakage {
    leakage(replies.iter().map(|(r, c)| forbidden_labels(c, r.as_ref())))
}

fn leakage(found: impl Iterator<Item = Vec<String>>) -> LabelLeakage {
    let mut n = 0;
    let mut leaks = Vec::new();
    for (i, labels) in found.enumerate() {
        n += 1;
        if !labels.is_empty() {
            leaks.push((i, labels));
        }
    }
    LabelLeakage {
        leaking: wilson(leaks.len(), n),
        leaks,
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

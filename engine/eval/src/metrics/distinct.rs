//! distinct-n: the share of unique n-grams among all n-grams of a set of replies, a measure
//! of lexical diversity (a model that repeats stock phrases scores low).
//!
//! Tokens: the text is lower-cased; every CJK ideograph is a token of its own (Chinese has no
//! spaces); other runs of letters and digits are tokens, with an apostrophe or hyphen inside
//! a word kept (`don't`, `self-care`); all other punctuation and whitespace separate tokens and
//! are dropped. N-grams never cross from one reply to the next.

use std::collections::HashSet;

/// distinct-n over a set of replies.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Distinct {
    pub n: usize,
    pub unique: usize,
    pub total: usize,
    /// `unique / total`, 0 when there are no n-grams.
    pub ratio: f64,
}

/// The tokens distinct-n counts.
pub fn distinct_tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let inner_joiner = (c == '\'' || c == '\u{2019}' || c == '-')
            && !word.is_empty()
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphanumeric() && !is_cjk(*n));
        if is_cjk(c) {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            tokens.push(c.to_string());
        } else if c.is_alphanumeric() || inner_joiner {
            word.push(c);
        } else if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0x20000..=0x2ebef)
}

/// distinct-n of `replies` (n >= 1).
pub fn distinct_n<S: AsRef<str>>(replies: &[S], n: usize) -> Distinct {
    let n = n.max(1);
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    let mut total = 0;
    for r in replies {
        let tokens = distinct_tokens(r.as_ref());
        for w in tokens.windows(n) {
            total += 1;
            seen.insert(w.to_vec());
        }
    }
    Distinct {
        n,
        unique: seen.len(),
        total,
        ratio: if total == 0 {
            0.0
        } else {
            seen.len() as f64 / total as f64
        },
    }
}

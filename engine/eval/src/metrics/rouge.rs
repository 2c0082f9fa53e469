//! ROUGE-L as Google's `rouge-score` package computes it with `use_stemmer=False`: text is
//! lower-cased, every run of characters other than a-z and 0-9 becomes a space, and the
//! longest common subsequence of the tokens gives precision, recall and F1. Text with no
//! ASCII letters or digits (Chinese, for example) has no tokens and scores 0, as in
//! rouge-score.

/// ROUGE-L precision, recall and F-measure (0-1).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct RougeL {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

/// rouge-score's default tokenizer.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let spaced: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                ' '
            }
        })
        .collect();
    spaced
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// ROUGE-L of `prediction` against `target` (`RougeScorer(["rougeL"]).score(target, prediction)`).
pub fn rouge_l(target: &str, prediction: &str) -> RougeL {
    rouge_l_tokens(&rouge_tokens(target), &rouge_tokens(prediction))
}

/// ROUGE-L over tokens of the caller's choosing, e.g. [`super::distinct_tokens`] (one token
/// per CJK character) for Chinese, which rouge-score's tokenizer drops entirely.
pub fn rouge_l_tokens(t: &[String], p: &[String]) -> RougeL {
    if t.is_empty() || p.is_empty() {
        return RougeL {
            precision: 0.0,
            recall: 0.0,
            fmeasure: 0.0,
        };
    }
    let lcs = lcs_len(t, p) as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / t.len() as f64;
    let fmeasure = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RougeL {
        precision,
        recall,
        fmeasure,
    }
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

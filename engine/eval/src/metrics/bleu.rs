//! BLEU-4 as sacrebleu computes it (default settings: `exp` smoothing, no lowercasing, the
//! `13a` tokenizer; `zh` on request): corpus BLEU without effective order, sentence BLEU with
//! it, several references per hypothesis allowed.

use std::collections::HashMap;

use super::bleu_tokenizer::{py_rstrip, py_split, BleuTokenizer};

const MAX_ORDER: usize = 4;

/// A BLEU score (0-100, as sacrebleu reports it) with its statistics.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Bleu {
    pub score: f64,
    /// Matched n-grams, n = 1..=4.
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams, n = 1..=4.
    pub total: [u64; MAX_ORDER],
    /// Smoothed n-gram precisions in percent.
    pub precisions: [f64; MAX_ORDER],
    pub brevity_penalty: f64,
    pub sys_len: u64,
    pub ref_len: u64,
}

/// Why corpus BLEU cannot pair hypotheses with references.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BleuError {
    #[error("{hyps} hypotheses but {refs} reference lists")]
    LengthMismatch { hyps: usize, refs: usize },
    #[error("hypothesis {0} has no reference")]
    NoReference(usize),
}

/// Corpus BLEU: `refs[i]` are the references of `hyps[i]` (one or more each). Statistics are
/// summed over the corpus before the score is computed, as sacrebleu's `corpus_bleu`.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    tokenizer: BleuTokenizer,
) -> Result<Bleu, BleuError> {
    if hyps.len() != refs.len() {
        return Err(BleuError::LengthMismatch {
            hyps: hyps.len(),
            refs: refs.len(),
        });
    }
    let mut stats = Stats::default();
    for (i, (h, r)) in hyps.iter().zip(refs).enumerate() {
        if r.is_empty() {
            return Err(BleuError::NoReference(i));
        }
        stats.add(&segment_stats(h.as_ref(), r, tokenizer));
    }
    Ok(stats.score(false))
}

/// Sentence BLEU of one hypothesis, as sacrebleu's `sentence_bleu` (effective order on).
pub fn sentence_bleu<R: AsRef<str>>(hyp: &str, refs: &[R], tokenizer: BleuTokenizer) -> Bleu {
    segment_stats(hyp, refs, tokenizer).score(true)
}

#[derive(Clone, Debug, Default)]
struct Stats {
    sys_len: u64,
    ref_len: u64,
    correct: [u64; MAX_ORDER],
    total: [u64; MAX_ORDER],
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.sys_len += other.sys_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }

    /// sacrebleu's `compute_bleu` with `exp` smoothing.
    fn score(&self, effective_order: bool) -> Bleu {
        let bp = if self.sys_len < self.ref_len {
            if self.sys_len > 0 {
                (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        let mut precisions = [0.0; MAX_ORDER];
        let mut out = Bleu {
            score: 0.0,
            correct: self.correct,
            total: self.total,
            precisions,
            brevity_penalty: bp,
            sys_len: self.sys_len,
            ref_len: self.ref_len,
        };
        if self.correct.iter().all(|&c| c == 0) {
            return out;
        }
        let mut smooth = 1.0;
        let mut eff_order = MAX_ORDER;
        for (n, precision) in precisions.iter_mut().enumerate() {
            let (correct, total) = (self.correct[n], self.total[n]);
            if total == 0 {
                break;
            }
            if effective_order {
                eff_order = n + 1;
            }
            *precision = if correct == 0 {
                smooth *= 2.0;
                100.0 / (smooth * total as f64)
            } else {
                100.0 * correct as f64 / total as f64
            };
        }
        // sacrebleu's `my_log` floors log(0) at -9999999999.
        let log_sum: f64 = precisions[..eff_order]
            .iter()
            .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
            .sum();
        out.precisions = precisions;
        out.score = bp * (log_sum / eff_order as f64).exp();
        out
    }
}

fn ngrams(tokens: &[&str]) -> HashMap<Vec<String>, u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *counts
                .entry(w.iter().map(|t| t.to_string()).collect())
                .or_insert(0) += 1;
        }
    }
    counts
}

fn segment_stats<R: AsRef<str>>(hyp: &str, refs: &[R], tokenizer: BleuTokenizer) -> Stats {
    let hyp_text = tokenizer.tokenize(py_rstrip(hyp));
    let hyp_tokens: Vec<&str> = py_split(&hyp_text).collect();
    let mut ref_counts: HashMap<Vec<String>, u64> = HashMap::new();
    let mut ref_lens = Vec::new();
    for r in refs {
        let text = tokenizer.tokenize(py_rstrip(r.as_ref()));
        let tokens: Vec<&str> = py_split(&text).collect();
        ref_lens.push(tokens.len() as u64);
        for (g, c) in ngrams(&tokens) {
            let e = ref_counts.entry(g).or_insert(0);
            *e = (*e).max(c);
        }
    }
    let hyp_len = hyp_tokens.len() as u64;
    // The closest reference length; ties go to the shorter reference.
    let ref_len = ref_lens
        .iter()
        .copied()
        .min_by_key(|&l| (l.abs_diff(hyp_len), l))
        .unwrap_or(0);
    let mut stats = Stats {
        sys_len: hyp_len,
        ref_len,
        ..Stats::default()
    };
    for (g, c) in ngrams(&hyp_tokens) {
        let n = g.len() - 1;
        stats.total[n] += c;
        if let Some(&r) = ref_counts.get(&g) {
            stats.correct[n] += c.min(r);
        }
    }
    stats
}

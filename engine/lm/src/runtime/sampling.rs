//! Token selection: greedy, or seeded sampling with the transformers logits processors
//! (repetition penalty, temperature, top-k, top-p, min-p) applied in transformers' order.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling parameters; the defaults are greedy decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p; 1 disables.
    pub top_p: f32,
    /// Drop tokens below `min_p` times the top probability; 0 disables.
    pub min_p: f32,
    /// CTRL-style penalty on tokens already in the prompt or output; 1 disables.
    pub repetition_penalty: f32,
    /// Seed of the sampling RNG: the same seed gives the same output.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// Index of the largest logit (first one on ties, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Bans every token that would complete one of `words` (lower-case) after `tail` (the
/// lower-cased text so far): for each start `w[..k]` of a word that `tail` ends with at a word
/// boundary, the tokens whose text begins with the rest `w[k..]`, and at any point the tokens
/// that hold the whole word. A token that only continues part of the rest leaves a shorter
/// rest for the next step, so the word can never be finished.
pub fn ban_word_completions(logits: &mut [f32], words: &[String], tail: &str, vocab: &[String]) {
    let boundary = |s: &str| !s.chars().next_back().is_some_and(char::is_alphanumeric);
    for w in words {
        let mut rests: Vec<&str> = Vec::new();
        for (k, _) in w.char_indices().skip(1) {
            if let Some(before) = tail.strip_suffix(&w[..k]) {
                if boundary(before) {
                    rests.push(&w[k..]);
                }
            }
        }
        for (id, text) in vocab.iter().enumerate() {
            let whole = text.trim_start().starts_with(w.as_str())
                && (boundary(tail) || text.starts_with(char::is_whitespace));
            if whole || rests.iter().any(|r| text.starts_with(r)) {
                if let Some(l) = logits.get_mut(id) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Adds each `(token, bias)` to the logits; ids outside the vocabulary are ignored.
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
}

/// Stateful sampler owning its RNG.
pub struct Sampler {
    cfg: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(cfg: &SamplingConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            rng: StdRng::seed_from_u64(cfg.seed),
        }
    }

    /// Picks the next token from `logits` (modified in place); `history` is prompt + output.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.cfg;
        if c.repetition_penalty != 1.0 {
            let mut seen = std::collections::HashSet::new();
            for &t in history {
                let i = t as usize;
                if i < logits.len() && seen.insert(t) {
                    let v = logits[i];
                    logits[i] = if v < 0.0 {
                        v * c.repetition_penalty
                    } else {
                        v / c.repetition_penalty
                    };
                }
            }
        }
        if c.temperature <= 0.0 {
            return argmax(logits);
        }
        // Candidates sorted by logit, best first.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v / c.temperature))
            .filter(|(_, v)| v.is_finite())
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        let k = if c.top_k > 0 {
            c.top_k.min(cand.len())
        } else {
            cand.len()
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cand.truncate(k);
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, v)| (v - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let floor = c.min_p * probs[0];
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut u = self.rng.random::<f32>() * total;
        for i in 0..keep {
            u -= probs[i];
            if u <= 0.0 {
                return cand[i].0;
            }
        }
        cand[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 7919) % 31) as f32 * 0.1).collect();
        let mut s = Sampler::new(&SamplingConfig {
            temperature: 1.5,
            top_k: 1,
            seed: 3,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut logits.clone(), &[]), argmax(&logits));
    }

    #[test]
    fn a_banned_word_cannot_be_completed_in_any_spelling() {
        let vocab: Vec<String> = [
            "ag",
            "or",
            "aph",
            "obia",
            "ob",
            "ia",
            "i",
            "a",
            " ag",
            "ree",
            " agoraphobia",
            "x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let words = vec!["agoraphobia".to_string()];
        let banned_after = |tail: &str| -> Vec<&str> {
            let mut l = vec![0.0f32; vocab.len()];
            ban_word_completions(&mut l, &words, tail, &vocab);
            vocab
                .iter()
                .zip(&l)
                .filter(|(_, v)| v.is_infinite())
                .map(|(t, _)| t.as_str())
                .collect()
        };
        // The whole word in one token is always banned; pieces are free at a word start.
        assert_eq!(banned_after("it is"), vec![" agoraphobia"]);
        // Hand-traced: after "agoraph" the rest is "obia": only tokens starting with it.
        assert_eq!(banned_after("it is agoraph"), vec!["obia", " agoraphobia"]);
        // After "agoraphobi" the rest is "a": every token starting with "a" would finish it.
        assert_eq!(
            banned_after("it is agoraphobi"),
            vec!["ag", "aph", "a", " agoraphobia"]
        );
        // "ag" inside another word is not a word start: "ree" stays free after " ag".
        assert_eq!(banned_after("it is bag"), vec![" agoraphobia"]);
        assert!(!banned_after("we ag").contains(&"ree"));
    }

    #[test]
    fn banned_token_is_never_picked() {
        let mut l = vec![5.0, 1.0, 0.5];
        apply_logit_bias(&mut l, &[(0, f32::NEG_INFINITY), (9, 1.0)]);
        assert_eq!(argmax(&l), 1);
    }

    #[test]
    fn penalty_lowers_seen_tokens() {
        let mut l = vec![2.0, -2.0, 1.9];
        let mut s = Sampler::new(&SamplingConfig {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut l, &[0, 1]), 2);
        assert_eq!(l, vec![1.0, -4.0, 1.9]);
    }
}

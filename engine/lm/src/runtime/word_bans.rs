//! Banned words indexed once (per process, vocabulary and word list): for each word, the tokens
//! that would complete it after each of its starts, and the tokens that hold it whole.
//!
//! [`ban_word_completions`](super::sampling::ban_word_completions) states the rule and scans
//! the whole vocabulary for every word at every step: with Qwen's 151,936 tokens and the
//! thirteen list markers every reply bans, that scan cut the 1.5B's decoding from 24 to 16
//! tokens a second. Here the scan runs once; a step bans from short lists. The bans are the
//! same, token for token (`the_index_bans_what_the_scan_bans`).

use std::sync::{Arc, Mutex, OnceLock};

/// Indexes kept per process (per vocabulary and list of words). Every reply bans the same list
/// markers (`session::PROSE_BANS`), which take 6 ms to index for SmolLM2's 49,152 tokens and
/// 22 ms for Qwen's 151,936.
const KEPT: usize = 16;

/// The completions of every banned word, ready to apply.
pub(crate) struct WordBans {
    words: Vec<WordIndex>,
}

/// One lower-case word's completions.
struct WordIndex {
    word: String,
    /// `(k, ids)`: after the word's first `k` bytes, the tokens whose text begins with the rest.
    rests: Vec<(usize, Vec<u32>)>,
    /// Tokens holding the whole word after optional leading white space (banned at a boundary).
    whole: Vec<u32>,
    /// Of those, the ones starting with white space (banned everywhere: they make a boundary).
    whole_spaced: Vec<u32>,
}

/// Whether text ending here is at a word boundary (nothing, or not a letter or digit).
fn boundary(s: &str) -> bool {
    !s.chars().next_back().is_some_and(char::is_alphanumeric)
}

impl WordBans {
    /// Indexes lower-case `words` against `vocab` (each token's text, lower-cased).
    pub(crate) fn new(words: &[String], vocab: &[String]) -> Self {
        let words = words
            .iter()
            .map(|w| {
                let rests = w
                    .char_indices()
                    .skip(1)
                    .map(|(k, _)| {
                        let rest = &w[k..];
                        let ids = ids_where(vocab, |t| t.starts_with(rest));
                        (k, ids)
                    })
                    .collect();
                let whole = ids_where(vocab, |t| t.trim_start().starts_with(w.as_str()));
                let whole_spaced = whole
                    .iter()
                    .copied()
                    .filter(|&id| vocab[id as usize].starts_with(char::is_whitespace))
                    .collect();
                WordIndex {
                    word: w.clone(),
                    rests,
                    whole,
                    whole_spaced,
                }
            })
            .collect();
        WordBans { words }
    }

    /// [`WordBans::new`], kept per process for the same words over the same vocabulary (the
    /// tokenizer keeps one lower-cased vocabulary and hands out the same `Arc`).
    pub(crate) fn shared(words: &[String], vocab: &Arc<Vec<String>>) -> Arc<WordBans> {
        // An entry holds its vocabulary, so the vocabulary a pointer comparison finds is the
        // one the index was built from.
        type Entry = (Arc<Vec<String>>, Vec<String>, Arc<WordBans>);
        static STORE: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
        let store = STORE.get_or_init(Default::default);
        let found = store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(v, w, _)| Arc::ptr_eq(v, vocab) && w.as_slice() == words)
            .map(|e| Arc::clone(&e.2));
        if let Some(bans) = found {
            return bans;
        }
        let bans = Arc::new(WordBans::new(words, vocab));
        let mut kept = store.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push((Arc::clone(vocab), words.to_vec(), Arc::clone(&bans)));
        bans
    }

    /// Sets the logit of every token that would complete a banned word after `tail` (the
    /// lower-cased text so far) to minus infinity.
    pub(crate) fn apply(&self, logits: &mut [f32], tail: &str) {
        let mut ban = |ids: &[u32]| {
            for &id in ids {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        };
        let at_boundary = boundary(tail);
        for w in &self.words {
            for (k, ids) in &w.rests {
                if tail.strip_suffix(&w.word[..*k]).is_some_and(boundary) {
                    ban(ids);
                }
            }
            ban(if at_boundary {
                &w.whole
            } else {
                &w.whole_spaced
            });
        }
    }
}

fn ids_where(vocab: &[String], keep: impl Fn(&str) -> bool) -> Vec<u32> {
    vocab
        .iter()
        .enumerate()
        .filter(|(_, t)| keep(t))
        .map(|(id, _)| id as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sampling::ban_word_completions;

    #[test]
    fn the_index_bans_what_the_scan_bans() {
        let vocab: Vec<String> = [
            "1",
            "1.",
            " 1.",
            ".",
            "10",
            "**",
            " **",
            "*",
            " -",
            "-",
            "-based",
            "##",
            " #",
            " •",
            "ins",
            "omnia",
            " insomnia",
            "insom",
            "nia",
            " in",
            "so",
            "mn",
            "ia",
            " try",
            "\n",
            "\n\n",
            " ",
            "a",
            "somnia",
            "i",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let words: Vec<String> = ["insomnia", "1.", "-", "*", "#", "•", "2."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let index = WordBans::new(&words, &vocab);
        let tails = [
            "",
            "here:\n",
            "here:\n1",
            "took 10",
            "a well",
            "you have ins",
            "you have in",
            "you have insom",
            "cabins",
            "so ",
            "x*",
            "a -",
            "#",
            "• ",
            "2",
        ];
        for tail in tails {
            let mut scan = vec![0.0f32; vocab.len()];
            ban_word_completions(&mut scan, &words, tail, &vocab);
            let mut indexed = vec![0.0f32; vocab.len()];
            index.apply(&mut indexed, tail);
            assert_eq!(scan, indexed, "after {tail:?}");
        }
        // And the cases that matter, spelled out.
        let banned = |tail: &str| {
            let mut l = vec![0.0f32; vocab.len()];
            index.apply(&mut l, tail);
            vocab
                .iter()
                .zip(&l)
                .filter(|(_, l)| l.is_infinite())
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
        };
        assert!(banned("you have ins").contains(&"omnia"));
        assert!(
            !banned("cabins").contains(&"omnia"),
            "not at a word's start"
        );
        assert!(banned("here:\n").contains(&"1."));
        assert!(banned("here:\n1").contains(&"."));
        assert!(!banned("took 10").contains(&"."));
    }

    #[test]
    fn an_index_is_kept_per_vocabulary_and_words() {
        let vocab = Arc::new(vec!["1".to_string(), ".".to_string(), " -".to_string()]);
        let words = vec!["1.".to_string()];
        let a = WordBans::shared(&words, &vocab);
        assert!(Arc::ptr_eq(&a, &WordBans::shared(&words, &vocab)));
        assert!(!Arc::ptr_eq(
            &a,
            &WordBans::shared(&["-".to_string()], &vocab)
        ));
        // An equal vocabulary elsewhere in memory is another one.
        let other = Arc::new(vocab.as_ref().clone());
        assert!(!Arc::ptr_eq(&a, &WordBans::shared(&words, &other)));
    }
}

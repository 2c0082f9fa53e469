//! Meaning, not wording: the interface through which modules reach a sentence encoder.
//!
//! Lexicons only recognise phrasings someone wrote down. A module that also wants to recognise
//! new wording (the crisis guard's trained screen, criteria and modality cues with exemplar
//! sentences) asks the run's [`SentenceEmbedder`] for unit-length vectors. psy-core has no
//! tensor library, so the encoder itself lives in `psy-lm` and reaches modules through
//! [`AssessContext`]; without one, modules fall back to their lexicons and say so.

use std::sync::Arc;

/// A sentence encoder: texts in, one unit-length vector per text out.
pub trait SentenceEmbedder: Send + Sync {
    /// Names the encoder in evidence and errors (e.g. its directory).
    fn name(&self) -> &str;
    /// Length of every vector.
    fn dim(&self) -> usize;
    /// One vector per text, in order. An error is the encoder's message.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;

    /// How far, per component, this encoder's vectors may lie from the exact (f32) model's:
    /// 0 for an exact encoder, more for an approximation such as 8-bit weights.
    fn tolerance(&self) -> f32 {
        0.0
    }

    /// [`Self::embed`] for texts that ship with psy (modules' example sentences, never client
    /// text): an implementation may keep their vectors on disk across processes, since
    /// embedding every example again costs seconds at each start. Default: [`Self::embed`].
    fn embed_fixed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.embed(texts)
    }

    /// Whether the vectors of all `texts` are already at hand (remembered from an earlier call),
    /// so that [`Self::embed`] does no encoder work. Default: not known, `false`.
    fn knows(&self, texts: &[&str]) -> bool {
        let _ = texts;
        false
    }

    /// This encoder with a low-rank adapter (safetensors bytes) merged in: a fine-tuned
    /// variant such as the crisis guard's screen encoder. `id` (the adapter's sha256) keys a
    /// cache, so asking again is cheap. Default: encoders that cannot take adapters say so.
    fn adapted(&self, adapter: &[u8], id: &str) -> Result<Arc<dyn SentenceEmbedder>, String> {
        let _ = (adapter, id);
        Err(format!("the encoder {} cannot apply adapters", self.name()))
    }
}

/// What the planner lends modules while they assess a dialogue.
#[derive(Clone, Copy, Default)]
pub struct AssessContext<'a> {
    /// The run's sentence encoder, when one is loaded.
    pub embedder: Option<&'a dyn SentenceEmbedder>,
}

impl<'a> AssessContext<'a> {
    pub fn with_embedder(embedder: &'a dyn SentenceEmbedder) -> Self {
        AssessContext {
            embedder: Some(embedder),
        }
    }
}

thread_local! {
    static THIS_THREAD_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every embedding it asks for computed on the calling thread alone: for callers
/// that already spread their work over the thread pool (an ensemble's members side by side), so
/// an encoder does not split each product again across threads that are busy.
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the thread's setting back, also when `f` unwinds (a pool worker outlives it).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            THIS_THREAD_ONLY.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(THIS_THREAD_ONLY.with(|c| c.replace(true)));
    f()
}

/// Whether the calling thread is inside [`on_this_thread`].
pub fn this_thread_only() -> bool {
    THIS_THREAD_ONLY.with(|c| c.get())
}

/// Dot product of two vectors: their cosine similarity when both have unit length, as every
/// [`SentenceEmbedder`] returns them.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

/// Lanes summed independently by [`dot`].
const LANES: usize = 16;

/// Dot product over the shorter of the two slices, summed in [`LANES`] independent lanes: a
/// single running sum is one long chain of dependent additions the compiler may not reorder
/// (about 10x slower at 384 dimensions); lanes vectorise. The order of additions differs from a
/// left-to-right sum by rounding only (~1e-7 on unit vectors).
///
/// The same code is compiled for 512- and 256-bit vectors and picked at run time: the crate's
/// baseline target has 128-bit vectors only, and a plan's exemplar matching is mostly dot
/// products. Every build gives the same bits (each lane multiplies, then adds, in the same
/// order; Rust never fuses the two), which `every_width_gives_the_same_bits` checks.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected.
            return unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was just detected.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A text's sentences as byte ranges: split after `.`, `!`, `?`, `…` or a line break (runs of
/// them count once), trimmed, empty pieces dropped. Chat text without punctuation is one
/// sentence; callers score the whole text too.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?' | '…' | '\n') {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if matches!(
                    d,
                    '.' | '!' | '?' | '…' | '\n' | '"' | '\'' | ')' | '”' | '’'
                ) {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            // "3.5 mg", "e.g.": a full stop followed by a letter or digit does not end a sentence.
            if c == '.' && chars.peek().is_some_and(|&(_, d)| d.is_alphanumeric()) {
                continue;
            }
            push_trimmed(text, start, end, &mut out);
            start = end;
        }
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if trimmed.chars().any(char::is_alphanumeric) {
        out.push((start + lead, start + lead + trimmed.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<&str> {
        sentence_spans(text)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect()
    }

    #[test]
    fn splits_sentences_and_keeps_spans() {
        assert_eq!(
            pieces("Work was fine. I'm on the bridge now!! Bye"),
            ["Work was fine.", "I'm on the bridge now!!", "Bye"]
        );
        assert_eq!(
            pieces("took 2.5 mg... ok\n\nnot ok"),
            ["took 2.5 mg...", "ok", "not ok"]
        );
        assert_eq!(pieces("no punctuation at all"), ["no punctuation at all"]);
        assert_eq!(pieces("  ...  "), Vec::<&str>::new());
        assert_eq!(pieces("“Fine.” Then I left."), ["“Fine.”", "Then I left."]);
    }

    #[test]
    fn dot_in_lanes_equals_the_plain_sum() {
        // 0..40 (two full lanes of 16 and a tail of 8): sum of i * (40 - i) = 10660, exact in f32.
        let a: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..40).map(|i| (40 - i) as f32).collect();
        assert_eq!(dot(&a, &b), 10660.0);
        assert_eq!(dot(&a[..3], &b[..3]), 0.0 * 40.0 + 39.0 + 2.0 * 38.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn on_this_thread_is_undone_after_its_closure_even_when_it_panics() {
        assert!(!this_thread_only());
        assert!(on_this_thread(this_thread_only));
        assert!(on_this_thread(
            || on_this_thread(|| true) && this_thread_only()
        ));
        assert!(!this_thread_only());
        let unwound = std::panic::catch_unwind(|| on_this_thread(|| panic!("inside")));
        assert!(unwound.is_err());
        assert!(!this_thread_only());
    }

    #[test]
    fn every_width_gives_the_same_bits() {
        // Awkward values (wide exponents, both signs) so that any reordering shows in the bits.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f32::from_bits(((x >> 33) as u32 & 0x807f_ffff) | (((x >> 20) as u32 % 40 + 107) << 23))
        };
        for n in [0, 1, 15, 16, 17, 32, 384, 391] {
            let a: Vec<f32> = (0..n).map(|_| next()).collect();
            let b: Vec<f32> = (0..n).map(|_| next()).collect();
            let want = dot_lanes(&a, &b).to_bits();
            assert_eq!(dot(&a, &b).to_bits(), want, "n {n}");
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: detected.
                    assert_eq!(unsafe { dot_avx512(&a, &b) }.to_bits(), want, "n {n}");
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: detected.
                    assert_eq!(unsafe { dot_avx2(&a, &b) }.to_bits(), want, "n {n}");
                }
            }
            // And the plain order the lanes stand for, written out.
            let mut lanes = [0.0f32; LANES];
            let whole = n / LANES * LANES;
            for i in 0..whole {
                lanes[i % LANES] += a[i] * b[i];
            }
            let mut tail = 0.0f32;
            for i in whole..n {
                tail += a[i] * b[i];
            }
            let mut total = 0.0f32;
            for l in lanes {
                total += l;
            }
            assert_eq!((total + tail).to_bits(), want, "n {n}");
        }
    }

    #[test]
    fn cosine_of_unit_vectors() {
        assert!((cosine(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    }
}

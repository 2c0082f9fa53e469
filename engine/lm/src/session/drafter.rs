//! The seam between sessions and a model: one request in, a streamed draft out.
//!
//! Tests put a scripted drafter here to inject drafts that break the rules on purpose;
//! [`ModelDrafter`](super::ModelDrafter) is the real model.

use std::ops::ControlFlow;

use crate::runtime::chat_template::ChatMessage;
use crate::runtime::{FinishReason, SamplingConfig};

use super::Result;

/// What one call to the model should produce.
#[derive(Clone, Debug, Default)]
pub struct DraftRequest {
    pub messages: Vec<ChatMessage>,
    /// Text the assistant message already starts with; the draft continues it.
    pub assistant_prefix: String,
    pub max_new_tokens: usize,
    /// Let the model open `<think>` itself (`native` mode).
    pub thinking: bool,
    /// Phrases whose tokens get a banned-token logit bias.
    pub banned_phrases: Vec<String>,
    /// The draft is the client-facing reply alone (no reasoning in the same generation): the
    /// markers that start list items, bullets, bold run-in headings and headings
    /// ([`PROSE_BANS`]) are banned where the drafter bans tokens. The plan asks for
    /// conversational sentences; the default model wrote numbered advice lists anyway.
    pub prose: bool,
    pub sampling: SamplingConfig,
    pub stop: Vec<String>,
}

/// What a [`DraftRequest::prose`] draft may never write at the start of a word: list numbers
/// (`1.` to `9.`, then `1)` to `9)` and the keycap digits `1️⃣` to `9️⃣`, each of which the 1.5B
/// turned to once the one before was banned; a keycap is banned by its digit and variation
/// selector, `1\u{fe0f}`, since Qwen's tokenizer splits the enclosing keycap mark into bytes that
/// decode to no text; and `1\.` to `9\.`, Markdown's escaped list numbers, by the digit and
/// backslash; `10.` and numbers inside words stay), bullets
/// (`-`, `*`, `•`), Markdown emphasis and headings (`*`, `#`). Read as
/// `GenerationConfig::banned_words`: banned after a space, a line break or at the start.
#[rustfmt::skip]
pub const PROSE_BANS: [&str; 40] = [
    "1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9.",
    "1)", "2)", "3)", "4)", "5)", "6)", "7)", "8)", "9)",
    "1\u{fe0f}", "2\u{fe0f}", "3\u{fe0f}", "4\u{fe0f}", "5\u{fe0f}", "6\u{fe0f}", "7\u{fe0f}",
    "8\u{fe0f}", "9\u{fe0f}",
    "1\\", "2\\", "3\\", "4\\", "5\\", "6\\", "7\\", "8\\", "9\\",
    "-", "*", "#", "\u{2022}",
];

/// A streamed token's text as the drafter sees it.
#[derive(Clone, Copy, Debug)]
pub struct DraftEvent<'a> {
    pub delta: &'a str,
    pub in_think: bool,
}

/// What the model produced for one [`DraftRequest`] (without the assistant prefix).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub reasoning: String,
    pub content: String,
    pub prompt_tokens: usize,
    /// Of `prompt_tokens`, those reused from the drafter's prompt cache.
    pub prompt_tokens_cached: usize,
    pub completion_tokens: usize,
    /// Words the generator was told never to complete.
    pub banned_words: Vec<String>,
    pub finish: Option<FinishReason>,
    pub decode_tokens_per_second: f64,
    /// Wall-clock of the prompt's prefill (the part not reused from the cache) and of the
    /// decode steps after it, when the drafter measures them (0 otherwise).
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// The seam between sessions and a model: render, tokenize, generate with streaming.
/// `on_event` returning `Break` stops generation after the current token.
pub trait Drafter {
    fn draft(
        &mut self,
        req: &DraftRequest,
        on_event: &mut dyn FnMut(DraftEvent) -> ControlFlow<()>,
    ) -> Result<Draft>;

    /// Context length in tokens, when known.
    fn context_length(&self) -> Option<usize> {
        None
    }

    /// Whether [`DraftRequest::banned_phrases`] are enforced by banning tokens (a drafter
    /// that cannot, e.g. a remote model without its tokenizer, relies on the instruction the
    /// redraft adds, and the turn's repairs say so).
    fn bans_tokens(&self) -> bool {
        true
    }

    /// The model's parameter count, when known (decides `[safety] crisis_drafts = "auto"`).
    fn parameters(&self) -> Option<u64> {
        None
    }

    /// A name for `/v1/models` and transcripts.
    fn model_id(&self) -> String {
        "model".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sampling::ban_word_completions;

    /// Which of `vocab` a prose draft may write after `tail`.
    fn allowed(tail: &str, vocab: &[&'static str]) -> Vec<&'static str> {
        let words: Vec<String> = PROSE_BANS.iter().map(|w| w.to_string()).collect();
        let texts: Vec<String> = vocab.iter().map(|v| v.to_string()).collect();
        let mut logits = vec![0.0f32; vocab.len()];
        ban_word_completions(&mut logits, &words, &tail.to_lowercase(), &texts);
        vocab
            .iter()
            .zip(&logits)
            .filter(|(_, l)| l.is_finite())
            .map(|(v, _)| *v)
            .collect()
    }

    const VOCAB: [&str; 12] = [
        "1",
        "1.",
        " 1.",
        ".",
        "**",
        " **",
        " -",
        "-",
        "##",
        " \u{2022}",
        "10",
        " Try",
    ];

    #[test]
    fn a_prose_draft_cannot_start_a_list_item_a_bullet_or_a_heading() {
        // At the start of a line: no list number, bullet, bold run-in heading or heading.
        assert_eq!(
            allowed("Here is what helps:\n", &VOCAB),
            ["1", ".", "10", " Try"]
        );
        // A bare digit there cannot become an item either: its full stop is banned.
        let after_digit = allowed("Here is what helps:\n1", &VOCAB);
        assert!(!after_digit.contains(&"."), "{after_digit:?}");
        assert!(after_digit.contains(&"10"));
        // Inside prose a number ends a sentence as usual: "ten." and "it took 10."
        assert!(allowed("It took 10", &VOCAB).contains(&"."));
        assert!(
            allowed("a well", &VOCAB).contains(&"-"),
            "hyphens inside words stay"
        );
        // Nor can it close a one-digit number with a parenthesis ("1)"); "(for 10)" stays.
        let after_digit = allowed("Some options:\n1", &[")", " ("]);
        assert_eq!(after_digit, [" ("]);
        assert_eq!(allowed("(for 10", &[")"]), [")"]);
        // Nor a keycap digit ("1️⃣"): Qwen writes the digit, then the variation selector as one
        // token, then the keycap mark's bytes.
        let keycaps = ["\u{fe0f}", "1\u{fe0f}", " 1", " Try"];
        assert_eq!(
            allowed("Here is how:\n1", &keycaps),
            ["1\u{fe0f}", " 1", " Try"],
            "the selector after a lone digit is banned; \"11\u{fe0f}\" is no list marker"
        );
        assert_eq!(
            allowed("Here is how: ", &keycaps),
            ["\u{fe0f}", " 1", " Try"]
        );
        assert_eq!(
            allowed("Here is how: 1", &keycaps),
            ["1\u{fe0f}", " 1", " Try"]
        );
        // Nor Markdown's escaped list number ("1\\.").
        assert_eq!(allowed("Here is how: 1", &["\\", "\\.", ","]), [","]);
    }
}

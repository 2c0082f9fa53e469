//! A turn as its caller sees it: per-request options in, streamed deltas out.

use std::sync::Arc;

/// A streamed piece of a turn: hidden reasoning or client-facing content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delta<'a> {
    Reasoning(&'a str),
    Content(&'a str),
}

/// Asked before every token: `true` stops the turn (e.g. the client disconnected, which
/// the content stream alone cannot show while a sentence is still being held back).
#[derive(Clone)]
pub struct CancelCheck(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for CancelCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelCheck")
    }
}

/// Per-request decoding overrides (the server's OpenAI fields).
#[derive(Clone, Debug, Default)]
pub struct TurnOptions {
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub cancel: Option<CancelCheck>,
}

impl TurnOptions {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| (c.0)())
    }
}

/// What the stream callbacks receive: `Break` from it cancels the turn.
pub(crate) type OnDelta<'a> = dyn FnMut(Delta) -> std::ops::ControlFlow<()> + 'a;

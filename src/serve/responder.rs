//! What the worker drives: a [`Responder`] answers one parsed request, streaming its deltas.
//!
//! The queue, the 429, panic recovery, `/health`, the request limits and disconnect handling
//! belong to the server and are the same whatever answers; only this seam differs between the
//! counseling server (a [`Counselor`](psy_lm::session::Counselor): planned, guarded,
//! repaired) and the raw one ([`RawResponder`](super::RawResponder): the model alone).

use std::ops::ControlFlow;

use psy_lm::session::{CancelCheck, Delta};
use serde_json::Value;

use super::error::ApiError;
use super::mode::ServeMode;
use super::request::ChatRequest;

/// A finished answer: what the response body (or the last stream chunk) carries.
#[derive(Clone, Debug)]
pub struct Finished {
    pub content: String,
    pub reasoning: String,
    /// `stop` or `length`.
    pub finish_reason: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The `psy` object of the response.
    pub psy: Value,
}

/// One model behind the server's worker thread.
pub trait Responder {
    fn mode(&self) -> ServeMode;

    /// The name `/v1/models` and every response give.
    fn model_id(&self) -> String;

    /// The model's context in tokens (bounds `max_tokens` and the messages).
    fn context_length(&self) -> usize;

    /// Answers `req`, streaming deltas through `on_delta` (`Break` stops generation) and
    /// stopping when `cancel` says the client has gone. `Ok(None)`: cancelled, nothing to
    /// send.
    fn respond(
        &mut self,
        req: ChatRequest,
        cancel: CancelCheck,
        on_delta: &mut dyn FnMut(Delta) -> ControlFlow<()>,
    ) -> Result<Option<Finished>, ApiError>;
}

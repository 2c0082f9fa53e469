//! Judges: a model asked for a verdict under a rubric's JSON schema, locally or over an
//! OpenAI-compatible endpoint, with validation, bounded repair, retries with backoff, bounded
//! concurrency and a SQLite cache.
//!
//! The runner builds a [`JudgeBackend`] (e.g. [`OpenAiBackend`]), wraps it in a [`Judge`] with a
//! [`JudgeCache`], and hands it one [`JudgeCall`] per judged item with the rubric's validator.

mod backend;
mod backoff;
mod cache;
mod call;
mod error;
mod extract;
mod judging;
mod openai;
mod usage;

pub use crate::think::strip_think;
pub use backend::{Completion, JudgeBackend};
pub use backoff::{parse_retry_after, Backoff};
pub use cache::{cache_key, CachedVerdict, JudgeCache};
pub use call::{ChatMessage, JudgeCall};
pub use error::JudgeError;
pub use extract::parse_verdict;
pub use judging::{Judge, JudgeProgress, JudgeStats, Judged};
pub use openai::{request_body, OpenAiBackend, OpenAiConfig};
pub use usage::TokenUsage;

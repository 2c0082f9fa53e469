//! psy language-model side: the Burn runtime (model, weights, tokenizer, chat templates,
//! generation), supervised fine-tuning, and counseling sessions that decode under a plan from
//! `psy-core`.

pub mod compute_pool;
pub mod encoder;
pub mod runtime;
pub mod session;
pub mod training;

/// The core crate, re-exported so that users of `psy-lm` name one version of it.
pub use psy_core;
